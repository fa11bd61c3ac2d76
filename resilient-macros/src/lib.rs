//! The `#[resilient]` attribute. Use it through the `resilient` crate, which re-exports it
//! together with the runtime it expands to.
//!
//! The stages live in one file each: `attr.rs` parses the arguments, `ast.rs` models the
//! annotated item, `valid.rs` checks it, `expand.rs` generates code and `fallback.rs`
//! produces the output when any stage fails.

mod ast;
mod attr;
mod expand;
mod fallback;
mod suggest;
mod valid;

use proc_macro::TokenStream;

/// Runs an `async fn` under a resilience policy: retries driven by error class, a timeout
/// per attempt, a deadline for the whole call, a circuit breaker and a bulkhead.
///
/// ```
/// use resilient::{resilient, Classify, ErrorClass, Rejection};
///
/// #[derive(Debug, thiserror::Error)]
/// pub enum RepoError {
///     #[error("user {0} not found")]
///     NotFound(i64),
///     #[error(transparent)]
///     Resilience(#[from] Rejection),
/// }
///
/// impl Classify for RepoError {
///     fn class(&self) -> ErrorClass {
///         match self {
///             RepoError::NotFound(_) => ErrorClass::Caller,
///             RepoError::Resilience(r) => r.class(),
///         }
///     }
/// }
///
/// pub struct UserRepo;
///
/// #[resilient]
/// impl UserRepo {
///     /// Reads are idempotent: transient, unavailable and ambiguous failures are retried.
///     #[resilient(policy = "read")]
///     pub async fn find_user(&self, id: i64) -> Result<String, RepoError> {
///         if id < 0 {
///             return Err(RepoError::NotFound(id));
///         }
///         Ok(format!("user {id}"))
///     }
///
///     /// A write is retried only when nothing was applied, unless declared idempotent.
///     #[resilient(retry = 5, timeout_ms = 10_000, bulkhead = "write")]
///     pub async fn rename(&self, id: i64, name: String) -> Result<(), RepoError> {
///         let _ = (id, name);
///         Ok(())
///     }
/// }
/// # fn main() {}
/// ```
///
/// Calls find the runtime through `Runtime::scope` (one runtime per task, handy in tests)
/// or `Runtime::install_global`. Without one they fail with `Rejection::NoRuntime`.
///
/// # Requirements
///
/// - The function is an `async fn` with a body: a free function, an inherent method or a
///   method of a trait impl. On a trait's method declaration, put the attribute on the
///   implementation instead.
/// - It returns `Result<T, E>`, spelled directly or through an alias such as
///   `type RepoResult<T> = Result<T, RepoError>`.
/// - `E` implements `From<resilient::Rejection>` (timeouts, an open breaker or a full
///   bulkhead reach the caller through it) and `resilient::Classify` (the error's class
///   decides whether an attempt is retried and whether the breaker counts it).
///
/// A violation is a compile error that points at the signature or the type at fault.
///
/// # What it expands to
///
/// The body stays in the function and is run once per attempt, as
/// `Runtime::execute` would run a closure:
///
/// ```
/// # use resilient::{resilient, Rejection, Runtime};
/// # use resilient::policy::Policy;
/// #[resilient(retry = 2, timeout_ms = 500)]
/// async fn load(id: i64) -> Result<i64, Rejection> {
///     Ok(id)
/// }
///
/// // behaves like
/// static LOAD: Policy = Policy::new("load", module_path!()).retry(2).timeout_ms(500);
///
/// async fn load_by_hand(rt: &Runtime, id: i64) -> Result<i64, Rejection> {
///     rt.execute(&LOAD, || async move { Ok(id) }).await
/// }
/// # fn main() {}
/// ```
///
/// Unlike a closure, each attempt borrows the receiver and the arguments afresh, so the body
/// may use `&mut self`. The policy is a `static` registered with the runtime's registry;
/// the runtime validates it at startup and shows it as the operation's effective policy.
///
/// # Options
///
/// Every option is optional. Explicit options override the `policy` preset, which overrides
/// the defaults.
///
/// | option | type | default |
/// |---|---|---|
/// | [`retry`](#retry) | integer, 0 to 10 | 0 |
/// | [`backoff`](#backoff) | `"exponential"`, `"fixed"` or `"none"` | `"exponential"` |
/// | [`delay_ms`](#delay_ms) | integer | 100 |
/// | [`max_delay_ms`](#max_delay_ms) | integer | 10000 |
/// | [`jitter`](#jitter) | `true` or `false` | `true` |
/// | [`timeout_ms`](#timeout_ms) | integer > 0 | 30000 |
/// | [`deadline_ms`](#deadline_ms) | integer > 0 | every attempt's timeout plus every delay |
/// | [`bulkhead`](#bulkhead) | `"read"`, `"write"`, `"report"`, a path or `false` | none |
/// | [`breaker`](#breaker) | `"database"`, a path or `false` | `"database"` |
/// | [`idempotent`](#idempotent) | `true` or `false` | `true`, except for writes |
/// | [`policy`](#policy) | `"read"`, `"write"` or `"report"` | none |
/// | [`fallback`](#fallback) | path to an `async fn` | none |
/// | [`name`](#name) | string | see [Operation names](#operation-names) |
///
/// ## `retry`
///
/// Retries after the first attempt: `retry = 3` makes up to 4 attempts. At most 10. An
/// error is retried only if its class allows it: `Transient` and `Unavailable` always,
/// `Ambiguous` only when the operation is [`idempotent`](#idempotent), `Caller` and the
/// runtime's own rejections never.
///
/// ```
/// # use resilient::{resilient, Rejection};
/// #[resilient(retry = 3)]
/// async fn count_users() -> Result<u64, Rejection> {
///     Ok(0)
/// }
/// # fn main() {}
/// ```
///
/// ## `backoff`
///
/// The wait before each retry: `"exponential"` (`delay_ms · 2^k`, capped at
/// `max_delay_ms`), `"fixed"` (`delay_ms` every time) or `"none"` (retry at once).
/// Backoff options are an error on an operation that never retries, and `delay_ms`,
/// `max_delay_ms` and `jitter` are an error with `backoff = "none"`, since they would have
/// no effect.
///
/// ```
/// # use resilient::{resilient, Rejection};
/// #[resilient(retry = 2, backoff = "fixed", delay_ms = 250)]
/// async fn refresh() -> Result<(), Rejection> {
///     Ok(())
/// }
/// # fn main() {}
/// ```
///
/// ## `delay_ms`
///
/// The base delay of the backoff, in milliseconds. It may not exceed `max_delay_ms`.
///
/// ## `max_delay_ms`
///
/// The cap on any single delay, in milliseconds. It may not be less than `delay_ms`.
///
/// ```
/// # use resilient::{resilient, Rejection};
/// #[resilient(retry = 6, delay_ms = 50, max_delay_ms = 1_000)]
/// async fn sync_counters() -> Result<(), Rejection> {
///     Ok(())
/// }
/// # fn main() {}
/// ```
///
/// ## `jitter`
///
/// Full jitter (each delay drawn from `[0, delay]`), on by default so that many callers
/// do not retry in lockstep.
///
/// ```
/// # use resilient::{resilient, Rejection};
/// #[resilient(retry = 2, jitter = false)]
/// async fn predictable() -> Result<(), Rejection> {
///     Ok(())
/// }
/// # fn main() {}
/// ```
///
/// ## `timeout_ms`
///
/// The limit on each attempt, in milliseconds. An attempt that runs longer is dropped and
/// fails with `Rejection::Timeout`, an `Ambiguous` failure (the statement may have been
/// applied), retried only when the operation is idempotent.
///
/// ```
/// # use resilient::{resilient, Rejection};
/// #[resilient(timeout_ms = 2_000)]
/// async fn quick_lookup(id: i64) -> Result<i64, Rejection> {
///     Ok(id)
/// }
/// # fn main() {}
/// ```
///
/// ## `deadline_ms`
///
/// The limit on the whole call (bulkhead queueing, every attempt and every backoff sleep),
/// in milliseconds. It may not be less than the attempt timeout, whether that comes from
/// `timeout_ms`, the preset or the default.
///
/// ```
/// # use resilient::{resilient, Rejection};
/// #[resilient(retry = 3, timeout_ms = 1_000, deadline_ms = 2_500)]
/// async fn bounded() -> Result<(), Rejection> {
///     Ok(())
/// }
/// # fn main() {}
/// ```
///
/// ## `bulkhead`
///
/// The bulkhead that limits concurrent calls: a built-in by name (`"read"`, `"write"`,
/// `"report"`), a custom `static` by path, or `false` for none. Only built-ins are
/// strings, so a misspelled name does not compile. The `write` bulkhead makes the
/// operation non-idempotent by default.
///
/// ```
/// # use resilient::{resilient, Rejection};
/// use resilient::bulkhead::BulkheadSpec;
///
/// /// Exports: 2 at a time, 4 waiting.
/// static EXPORTS: BulkheadSpec = BulkheadSpec::new("exports", 2, 4);
///
/// #[resilient(bulkhead = EXPORTS)]
/// async fn export_users() -> Result<(), Rejection> {
///     Ok(())
/// }
///
/// #[resilient(bulkhead = "read")]
/// async fn list_users() -> Result<(), Rejection> {
///     Ok(())
/// }
/// # fn main() {}
/// ```
///
/// ## `breaker`
///
/// The circuit breaker the operation reports to: the built-in `"database"` (the default),
/// a custom `static` by path, or `false` for none. `breaker = true` is an error: name a
/// breaker or leave the option out.
///
/// ```
/// # use resilient::{resilient, Rejection};
/// use resilient::breaker::BreakerSpec;
///
/// static REPLICA: BreakerSpec = BreakerSpec::new("replica").failure_threshold(3);
///
/// #[resilient(breaker = REPLICA)]
/// async fn read_replica() -> Result<(), Rejection> {
///     Ok(())
/// }
/// # fn main() {}
/// ```
///
/// ## `idempotent`
///
/// Whether running the operation twice is harmless, which allows retrying `Ambiguous`
/// failures (a lost connection or a timeout after the statement was sent). Defaults to
/// `true`, except with `policy = "write"` or `bulkhead = "write"`.
///
/// ```
/// # use resilient::{resilient, Rejection};
/// /// An upsert: safe to repeat.
/// #[resilient(policy = "write", idempotent = true)]
/// async fn upsert_setting(key: String, value: String) -> Result<(), Rejection> {
///     let _ = (key, value);
///     Ok(())
/// }
/// # fn main() {}
/// ```
///
/// ## `policy`
///
/// A preset, applied before the explicit options:
///
/// | preset | retry | timeout | bulkhead | idempotent |
/// |---|---|---|---|---|
/// | `"read"` | 2 (3 attempts) | 5 s | `read` | yes |
/// | `"write"` | 4 (5 attempts) | 10 s | `write` | no |
/// | `"report"` | 0 | 30 s | `report` | yes |
///
/// ```
/// # use resilient::{resilient, Rejection};
/// #[resilient(policy = "read", timeout_ms = 1_000)]
/// async fn find(id: i64) -> Result<i64, Rejection> {
///     Ok(id)
/// }
/// # fn main() {}
/// ```
///
/// ## `fallback`
///
/// An `async fn` that answers once the policy gives up. It takes the same arguments as the
/// annotated function, the receiver first (`Self::cached(self, id)`), and returns the same
/// type. It is not called for `Caller` errors: a fallback must not hide "not found".
///
/// ```
/// # use resilient::{resilient, Rejection};
/// pub struct Repo;
///
/// impl Repo {
///     #[resilient(retry = 2, fallback = Self::cached_count)]
///     pub async fn count(&self, table: &str) -> Result<u64, Rejection> {
///         let _ = table;
///         Ok(42)
///     }
///
///     async fn cached_count(&self, table: &str) -> Result<u64, Rejection> {
///         let _ = table;
///         Ok(0)
///     }
/// }
/// # fn main() {}
/// ```
///
/// ## `name`
///
/// Overrides the operation's name in the registry, logs and metrics.
///
/// ```
/// # use resilient::{resilient, Rejection};
/// #[resilient(name = "users::lookup")]
/// async fn find(id: i64) -> Result<i64, Rejection> {
///     Ok(id)
/// }
/// # fn main() {}
/// ```
///
/// # Operation names
///
/// An operation is named after its function (`find_user`). Put `#[resilient]`, without
/// options, on the enclosing `impl` block (inherent or trait impl) to name its annotated
/// methods `Type::method` (`UserRepo::find_user`): the type is the last segment of the
/// self type, without generics. `name = ".."` overrides both. The impl-level attribute
/// recognises methods marked `#[resilient]` or `#[resilient::resilient]`; it cannot see
/// the attribute through another import name.
///
/// # Arguments across attempts
///
/// When the operation may run its body more than once (`retry` above 0, from the option or
/// the preset) or has a fallback, each attempt works on its own clone of every argument
/// taken by value, so those arguments must be `Clone`; the error points at the argument
/// that is not. Arguments taken by reference are not cloned, and the receiver (`&self`,
/// `&mut self`, `self`, `self: Arc<Self>`) is borrowed by each attempt in turn: to move
/// out of an owned `self`, clone it in the body. Without retries and fallback, arguments
/// are used as they are.
///
/// # Attributes and lints
///
/// Doc comments and other attributes are kept. `#[track_caller]` is forwarded, but rustc
/// ignores it on an `async fn` (rust#110011), so the caller's location is not kept. Lints
/// on the function still apply: `dead_code` still reports an unused annotated function.
/// With an `impl Trait` in the return type, the friendly checks of the return and error
/// types are skipped; the compiler still reports a missing impl, less precisely.
#[proc_macro_attribute]
pub fn resilient(args: TokenStream, item: TokenStream) -> TokenStream {
    let item = proc_macro2::TokenStream::from(item);
    match expand::attribute(args.into(), item.clone()) {
        Ok(expanded) => expanded.into(),
        Err(error) => fallback::expand(item, &error).into(),
    }
}
