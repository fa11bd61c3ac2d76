//! The `#[resilient]` attribute. Use it through the `resilient` crate, which re-exports it
//! together with the runtime it expands to.
//!
//! The stages live in one file each: `attr.rs` parses the arguments (with `template.rs`
//! for cache key templates), `ast.rs` models the annotated item, `valid.rs` checks it,
//! `expand.rs` generates code and `fallback.rs` produces the output when any stage fails.

mod ast;
mod attr;
mod expand;
mod fallback;
mod suggest;
mod template;
mod valid;

use proc_macro::TokenStream;

/// Runs an `async fn` under a resilience policy: retries driven by error class, a timeout
/// per attempt, a deadline for the whole call, a circuit breaker, a bulkhead and a cache.
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
/// | [`cache`](#cache) | key template, like `"user:<id>"` | none |
/// | [`ttl_s`](#ttl_s) | integer > 0 | the runtime's, 60 |
/// | [`stale_s`](#stale_s) | integer | 0 |
/// | [`cache_capacity`](#cache_capacity) | integer > 0 | the runtime's, 10000 |
/// | [`cache_none`](#cache_none) | `true` or `false` | `false` |
/// | [`invalidate`](#invalidate) | key template or list of them, repeatable | none |
/// | [`invalidate_prefix`](#invalidate_prefix) | key template or list of them, repeatable | none |
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
/// ## `cache`
///
/// Caches the function's successful results under a key built from a template: literal
/// text and placeholders in angle brackets. A placeholder names a parameter (`<id>`) or a
/// field of one (`<filter.org_id>`, `<pair.0>`); `<` and `>` are reserved for
/// placeholders and cannot appear as text. The receiver cannot appear in a key.
///
/// ```
/// # use resilient::{resilient, Rejection};
/// # #[derive(Clone)] pub struct User;
/// pub struct Users;
///
/// impl Users {
///     #[resilient(cache = "member:<user_id>:<org_id>", ttl_s = 300)]
///     pub async fn membership(&self, user_id: i64, org_id: &str) -> Result<String, Rejection> {
///         Ok(format!("{user_id}@{org_id}"))
///     }
/// }
/// # fn main() {}
/// ```
///
/// A call first looks its key up. A fresh hit returns a clone of the value at once,
/// without the breaker, the bulkhead or the body. On a miss, one caller runs the body
/// under the policy while the other callers of the same key wait for its outcome, failure
/// included. Errors are never cached. When the load fails for any reason but a `Caller`
/// error (the database, a timeout, an open breaker, a full bulkhead), the last value is
/// served if it is within its [`stale_s`](#stale_s) window. The fallback's answer is
/// returned, not cached.
///
/// - Each value must implement `resilient::cache::KeyPart`: integers, strings, `bool`,
///   `char`, byte slices, `Option` and references to them do; implement it for your own
///   id types. Keys are exact and typed but not tied to a Rust type: `7_i64`, `&7_i64`
///   and `7_u8` make the same key, as do a `String` and a `&str` with the same text.
/// - The key is built from the arguments before the body runs.
/// - The cached type (`T` in `Result<T, E>`) must be `Clone + Send + Sync + 'static`.
/// - Each function has a cache of its own, even when two share a template;
///   [`invalidate`](#invalidate) reaches every cache whose template matches.
///
/// Without the attribute, a cached call is `Runtime::execute_cached`:
///
/// ```
/// # use resilient::{resilient, Rejection, Runtime};
/// use resilient::cache::{CacheKey, Fragment, KeyTemplate};
/// use resilient::policy::Policy;
///
/// #[resilient(cache = "user:<id>", ttl_s = 1800)]
/// async fn name(id: i64) -> Result<String, Rejection> {
///     Ok(format!("user {id}"))
/// }
///
/// // behaves like
/// static USER: KeyTemplate =
///     KeyTemplate::new("user:<id>", &[Fragment::Lit("user:"), Fragment::Hole("id")]);
/// static NAME: Policy = Policy::new("name", module_path!()).cache(&USER).ttl_s(1800);
///
/// async fn name_by_hand(rt: &Runtime, id: i64) -> Result<String, Rejection> {
///     let key = CacheKey::new().lit("user:").part(&id);
///     rt.execute_cached(&NAME, key, || async move { Ok(format!("user {id}")) }).await
/// }
/// # fn main() {}
/// ```
///
/// The seed guide's three caches, and the writes that keep them current:
///
/// ```
/// use resilient::{resilient, Classify, ErrorClass, Rejection, Runtime};
///
/// # #[derive(Debug, thiserror::Error)]
/// # pub enum RepoError {
/// #     #[error(transparent)]
/// #     Resilience(#[from] Rejection),
/// # }
/// # impl Classify for RepoError {
/// #     fn class(&self) -> ErrorClass {
/// #         match self {
/// #             RepoError::Resilience(r) => r.class(),
/// #         }
/// #     }
/// # }
/// #[derive(Debug, Clone, PartialEq)]
/// pub struct Profile {
///     pub id: i64,
///     pub name: String,
/// }
///
/// pub struct ProfilePatch {
///     pub user_id: i64,
///     pub name: String,
/// }
///
/// pub struct Repo;
///
/// #[resilient]
/// impl Repo {
///     /// Fresh for 30 minutes, served up to a day longer while the database is down.
///     #[resilient(policy = "read", cache = "user:<id>", ttl_s = 1800, stale_s = 86400)]
///     pub async fn profile(&self, id: i64) -> Result<Profile, RepoError> {
///         Ok(Profile { id, name: format!("user {id}") })
///     }
///
///     /// 2 minutes fresh, 1 hour stale.
///     #[resilient(policy = "read", cache = "subscription:<user_id>", ttl_s = 120, stale_s = 3600)]
///     pub async fn subscription_status(&self, user_id: i64) -> Result<String, RepoError> {
///         let _ = user_id;
///         Ok("active".to_owned())
///     }
///
///     /// 5 minutes fresh, 2 hours stale.
///     #[resilient(policy = "read", cache = "projects:<org_id>", ttl_s = 300, stale_s = 7200)]
///     pub async fn projects(&self, org_id: i64) -> Result<Vec<String>, RepoError> {
///         let _ = org_id;
///         Ok(vec!["apollo".to_owned()])
///     }
///
///     /// The write receives a struct: its key names a field.
///     #[resilient(policy = "write", invalidate = "user:<patch.user_id>")]
///     pub async fn update_profile(&self, patch: &ProfilePatch) -> Result<(), RepoError> {
///         let _ = &patch.name;
///         Ok(())
///     }
///
///     #[resilient(policy = "write", invalidate = ["subscription:<user_id>", "projects:<org_id>"])]
///     pub async fn cancel(&self, user_id: i64, org_id: i64) -> Result<(), RepoError> {
///         let _ = (user_id, org_id);
///         Ok(())
///     }
/// }
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// let rt = Runtime::builder().build().expect("every invalidation matches a cache");
/// rt.scope(async {
///     assert_eq!(Repo.profile(1).await.unwrap().name, "user 1");
///     let patch = ProfilePatch { user_id: 1, name: "Ada".to_owned() };
///     Repo.update_profile(&patch).await.unwrap();
/// })
/// .await;
/// # });
/// ```
///
/// ## `ttl_s`
///
/// How long a cached value stays fresh, in seconds. Defaults to the runtime's default
/// TTL, 60 s unless `RuntimeBuilder::default_ttl` changes it. Must be greater than 0.
///
/// ```
/// # use resilient::{resilient, Rejection};
/// #[resilient(cache = "plan:<org_id>", ttl_s = 600)]
/// async fn plan(org_id: i64) -> Result<String, Rejection> {
///     Ok(format!("plan of {org_id}"))
/// }
/// # fn main() {}
/// ```
///
/// ## `stale_s`
///
/// How long past its TTL a value may still be served when a load fails, in seconds
/// (stale-if-error). Defaults to 0: an expired value is never served. Stale values are
/// counted as such in the cache's statistics.
///
/// ```
/// # use resilient::{resilient, Rejection};
/// /// Fresh for a minute; for a day more when the database cannot answer.
/// #[resilient(cache = "settings:<org_id>", ttl_s = 60, stale_s = 86_400)]
/// async fn settings(org_id: i64) -> Result<Vec<String>, Rejection> {
///     let _ = org_id;
///     Ok(Vec::new())
/// }
/// # fn main() {}
/// ```
///
/// `ttl_s`, `stale_s`, `cache_capacity` and `cache_none` are an error without `cache`.
///
/// ## `cache_capacity`
///
/// The most entries the function's cache holds; beyond it, entries are evicted. Defaults to the runtime's default, 10,000 unless
/// `RuntimeBuilder::default_cache_capacity` changes it. Must be greater than 0.
///
/// ```
/// # use resilient::{resilient, Rejection};
/// #[resilient(cache = "country:<code>", ttl_s = 86_400, cache_capacity = 300)]
/// async fn country(code: &str) -> Result<String, Rejection> {
///     Ok(code.to_uppercase())
/// }
/// # fn main() {}
/// ```
///
/// ## `cache_none`
///
/// Whether `Ok(None)` is cached, for a function returning `Result<Option<T>, E>`. Off by
/// default: a cached "not found" would hide a row that a function without the matching
/// `invalidate` creates later. Turn it on for lookups that are often negative and
/// expensive.
///
/// `Ok(None)` is recognised when the signature spells the `Ok` type `Option<..>`:
/// `Result<Option<User>, E>`, or an alias's first argument as in
/// `RepoResult<Option<User>>`. Behind an alias that hides the `Option` (`type Found =
/// Result<Option<User>, E>`), `Ok(None)` is cached like any value, and `cache_none` is an
/// error because it would have no effect.
///
/// ```
/// # use resilient::{resilient, Rejection};
/// #[resilient(cache = "coupon:<code>", ttl_s = 30, cache_none = true)]
/// async fn coupon(code: String) -> Result<Option<u32>, Rejection> {
///     Ok((code == "WELCOME").then_some(10))
/// }
/// # fn main() {}
/// ```
///
/// ## `invalidate`
///
/// Keys a write removes from the caches: after it succeeds, and after a failure that may
/// have applied it (an `Ambiguous` error, an attempt timeout, the deadline). Failures
/// that applied nothing (any other error class, an open breaker, a full bulkhead) leave
/// the caches alone. Templates are
/// written as for [`cache`](#cache) and are built before the body runs. A template
/// matches the cached templates with the same literal text and placeholders at the same
/// places; placeholder names and parameter types may differ (`id: &i64` invalidates what
/// `id: i64` cached).
///
/// Repeat the option or give a list, or both. A function cannot both `cache` and
/// `invalidate`.
///
/// ```
/// # use resilient::{resilient, Rejection};
/// #[resilient(cache = "user:<id>")]
/// async fn user(id: i64) -> Result<String, Rejection> {
///     Ok(format!("user {id}"))
/// }
///
/// #[resilient(cache = "org:<id>")]
/// async fn org(id: i64) -> Result<String, Rejection> {
///     Ok(format!("org {id}"))
/// }
///
/// #[resilient(policy = "write", invalidate = ["user:<user_id>", "org:<org_id>"])]
/// async fn join(user_id: &i64, org_id: &i64) -> Result<(), Rejection> {
///     let _ = (user_id, org_id);
///     Ok(())
/// }
/// # fn main() {}
/// ```
///
/// A template that matches no cached template of the program is most likely a typo: the
/// runtime refuses to start (`RuntimeBuilder::build` lists it).
///
/// ## `invalidate_prefix`
///
/// Like [`invalidate`](#invalidate), for every cached key that starts with the prefix:
/// `"member:<user_id>:"` covers `"member:<user_id>:<org_id>"` for every organisation. It
/// costs the same however many entries match. The prefix must end on a fragment boundary
/// of the cached template (after literal text or a placeholder), and may be up to 8
/// fragments long; a longer one clears the whole cache.
///
/// ```
/// # use resilient::{resilient, Rejection};
/// #[resilient(cache = "member:<user_id>:<org_id>")]
/// async fn role(user_id: i64, org_id: i64) -> Result<String, Rejection> {
///     Ok(format!("{user_id}@{org_id}"))
/// }
///
/// #[resilient(invalidate_prefix = "member:<user_id>:")]
/// async fn delete_user(user_id: i64) -> Result<(), Rejection> {
///     let _ = user_id;
///     Ok(())
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
