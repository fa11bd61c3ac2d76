//! The one error type for everything the resilience layer refuses to do.

use std::time::Duration;

/// A call refused or cut short by the resilience layer itself.
///
/// The user's error type receives it through `From<Rejection>`; see
/// [`Classify`](crate::Classify) for the usual enum shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Rejection {
    /// The circuit breaker is open (or half-open with every trial slot taken).
    #[error("circuit breaker `{breaker}` is open")]
    BreakerOpen {
        /// The breaker's name.
        breaker: &'static str,
    },
    /// The bulkhead's concurrency limit and its queue are both full.
    #[error("bulkhead `{bulkhead}` is full ({executing} executing, {waiting} waiting)")]
    BulkheadFull {
        /// The bulkhead's name.
        bulkhead: &'static str,
        /// Calls executing when this one was rejected.
        executing: usize,
        /// Calls waiting in the queue when this one was rejected.
        waiting: usize,
    },
    /// One attempt ran longer than its `timeout_ms`. Its future was dropped.
    #[error("attempt timed out after {after:?}")]
    Timeout {
        /// The attempt timeout that fired.
        after: Duration,
    },
    /// The whole call, waits and backoff sleeps included, ran past `deadline_ms`.
    #[error("deadline of {deadline:?} exceeded")]
    DeadlineExceeded {
        /// The call's deadline.
        deadline: Duration,
    },
    /// The runtime is shutting down and admits no new calls.
    #[error("the resilience runtime is shutting down")]
    ShuttingDown,
    /// No runtime is installed for this task or process.
    #[error(
        "no resilient runtime is installed: call `Runtime::install_global` or run the call inside `Runtime::scope`"
    )]
    NoRuntime,
    /// This caller waited for another caller's load of the same cache key, and that load
    /// failed with no stale value to serve. The loading caller got the error itself.
    #[error("the shared load of a cached value by `{operation}` failed ({class})")]
    SharedLoadFailed {
        /// The operation whose load failed.
        operation: &'static str,
        /// The class of the error the load failed with.
        class: crate::ErrorClass,
    },
    /// The operation was not registered when the runtime was built.
    #[error("operation `{operation}` is not registered with this runtime")]
    NotRegistered {
        /// The operation's name.
        operation: &'static str,
    },
}
