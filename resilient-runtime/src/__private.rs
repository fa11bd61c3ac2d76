//! Items used by code that `#[resilient]` generates. Not public API: no semver
//! guarantee; the facade pins the macro and the runtime to the same exact version.

pub use crate::breaker;
pub use crate::bulkhead;
pub use crate::cache::{CacheKey, Fragment, KeyPart, KeyTemplate};
pub use crate::execute::{
    Admission, CacheEnter, CacheLoad, Call, ClassifyError, Failure, FromRejection, never_negative,
    rejected,
};
pub use crate::policy::{Backoff, Policy, Preset};
pub use crate::registry::Registration;
pub use crate::runtime::RuntimeRef;
pub use crate::{Classify, Rejection};
pub use ::core;
pub use ::inventory;
pub use ::tokio::time::sleep_until;

/// Implemented only for `Result`: `#[resilient]` needs an error channel.
#[diagnostic::on_unimplemented(
    message = "`#[resilient]` functions must return a `Result`, not `{Self}`",
    label = "this is not a `Result`",
    note = "the resilience layer reports timeouts and rejections through the error type"
)]
pub trait ResilientReturn {
    /// The success type.
    type Ok;
    /// The error type.
    type Err;
}

impl<T, E> ResilientReturn for Result<T, E> {
    type Ok = T;
    type Err = E;
}

/// Checks the return type of an annotated function.
#[inline(always)]
pub const fn assert_return<R: ResilientReturn>() {}

/// Checks the error type of an annotated function.
#[inline(always)]
pub const fn assert_error<E: FromRejection + ClassifyError>() {}

/// Clones a by-value argument for the next attempt.
#[diagnostic::on_unimplemented(
    message = "`{Self}` must be `Clone` because `#[resilient]` runs the body again with a fresh copy of every by-value argument",
    label = "this argument is cloned for each attempt",
    note = "derive or implement `Clone`, take the argument by reference, or set `retry = 0`"
)]
pub trait CloneForRetry: Sized {
    /// A fresh copy for one attempt.
    fn clone_for_retry(&self) -> Self;
}

impl<T: Clone> CloneForRetry for T {
    #[inline(always)]
    fn clone_for_retry(&self) -> Self {
        self.clone()
    }
}

/// Checks that a cached value can be stored and shared between callers.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be cached: cached values must be `Clone + Send + Sync + 'static`",
    label = "the cached value type",
    note = "every hit returns a clone, shared across threads"
)]
pub trait Cacheable: Clone + Send + Sync + 'static {}

impl<T: Clone + Send + Sync + 'static> Cacheable for T {}

/// Checks the `Ok` type of a cached function.
#[inline(always)]
pub const fn assert_cacheable<T: Cacheable>() {}

/// `Option::is_none`, as the `fn(&V) -> bool` that marks negative results.
#[inline]
pub fn is_none<T>(v: &Option<T>) -> bool {
    v.is_none()
}
