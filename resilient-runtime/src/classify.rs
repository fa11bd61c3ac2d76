//! Error classes: the one question the runtime asks about every error.

use crate::Rejection;

/// What a failed attempt means for retry and for the circuit breaker.
///
/// | class | retried | counted by the breaker | examples |
/// |---|---|---|---|
/// | [`Transient`](ErrorClass::Transient) | yes | no | serialization failure `40001`, deadlock `40P01` (the server rolled back) |
/// | [`Unavailable`](ErrorClass::Unavailable) | yes | yes | pool checkout timed out, connection refused, `53300`, `57P01`, `57P03` |
/// | [`Ambiguous`](ErrorClass::Ambiguous) | only when the operation is idempotent | yes | connection lost after the statement was sent, attempt timed out |
/// | [`Caller`](ErrorClass::Caller) | no | no | not found, constraint violation `23xxx`, bad input |
/// | [`Rejected`](ErrorClass::Rejected) | no | no | our own rejections: breaker open, bulkhead full, shutting down |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorClass {
    /// Nothing was applied and the database is healthy; a retry is safe.
    Transient,
    /// Nothing was applied because the database could not be reached or is overloaded.
    /// A retry is safe, and the failure counts against the circuit breaker.
    Unavailable,
    /// The statement may or may not have been applied. Retried only when the
    /// operation is idempotent; counts against the circuit breaker.
    Ambiguous,
    /// The caller's fault, not the database's. Never retried, never counted.
    Caller,
    /// A rejection by the resilience layer itself. Never retried, never counted.
    Rejected,
}

impl ErrorClass {
    /// Whether a failure of this class may be retried by an operation with the given idempotency.
    #[inline]
    pub const fn is_retryable(self, idempotent: bool) -> bool {
        match self {
            ErrorClass::Transient | ErrorClass::Unavailable => true,
            ErrorClass::Ambiguous => idempotent,
            ErrorClass::Caller | ErrorClass::Rejected => false,
        }
    }

    /// Whether a failure of this class counts as a failure for the circuit breaker.
    #[inline]
    pub const fn counts_for_breaker(self) -> bool {
        matches!(self, ErrorClass::Unavailable | ErrorClass::Ambiguous)
    }

    /// A short lowercase name, used in logs and metric labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Transient => "transient",
            ErrorClass::Unavailable => "unavailable",
            ErrorClass::Ambiguous => "ambiguous",
            ErrorClass::Caller => "caller",
            ErrorClass::Rejected => "rejected",
        }
    }
}

impl std::fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Tells the runtime which [`ErrorClass`] an error belongs to.
///
/// The runtime implements it for [`Rejection`] and, with a database feature, for
/// `diesel::result::Error` and the pool's errors. A repository's own error type opts in
/// with one impl; variants that wrap a classified error delegate to it (`Db(e) => e.class()`):
///
/// ```
/// use resilient_runtime::{Classify, ErrorClass, Rejection};
///
/// #[derive(Debug, thiserror::Error)]
/// enum RepoError {
///     #[error("deadlock detected")]
///     Deadlock,
///     #[error(transparent)]
///     Resilience(#[from] Rejection),
///     #[error("user {0} not found")]
///     NotFound(i64),
/// }
///
/// impl Classify for RepoError {
///     fn class(&self) -> ErrorClass {
///         match self {
///             RepoError::Deadlock => ErrorClass::Transient,
///             RepoError::Resilience(r) => r.class(),
///             RepoError::NotFound(_) => ErrorClass::Caller,
///         }
///     }
///
///     fn describe(&self) -> Option<String> {
///         Some(self.to_string())
///     }
/// }
///
/// assert_eq!(RepoError::NotFound(7).class(), ErrorClass::Caller);
/// ```
pub trait Classify {
    /// The class of this error.
    fn class(&self) -> ErrorClass;

    /// A description for logs and the health dashboard's recent errors. The runtime
    /// removes credentials from it before keeping it. `None` (the default) keeps only
    /// the class; delegate to wrapped errors, e.g. `Some(self.to_string())`.
    fn describe(&self) -> Option<String> {
        None
    }
}

impl Classify for Rejection {
    fn class(&self) -> ErrorClass {
        match self {
            Rejection::Timeout { .. } => ErrorClass::Ambiguous,
            _ => ErrorClass::Rejected,
        }
    }

    fn describe(&self) -> Option<String> {
        Some(self.to_string())
    }
}

impl<T: Classify + ?Sized> Classify for &T {
    fn class(&self) -> ErrorClass {
        (**self).class()
    }

    fn describe(&self) -> Option<String> {
        (**self).describe()
    }
}

impl<T: Classify + ?Sized> Classify for Box<T> {
    fn class(&self) -> ErrorClass {
        (**self).class()
    }

    fn describe(&self) -> Option<String> {
        (**self).describe()
    }
}
