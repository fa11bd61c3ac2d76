//! # resilient
//!
//! Database access that keeps working through bad days: one attribute on an async
//! repository method gives it retries driven by error class, per-attempt timeouts and
//! a total deadline, a circuit breaker and a bulkhead.
//!
//! See the [`resilient`](macro@resilient) attribute for every option, [`Runtime`] for
//! the runtime that holds breakers and bulkheads, and [`Classify`] for how errors are
//! sorted into retryable and not.

#![warn(missing_docs)]

pub use resilient_macros::resilient;
pub use resilient_runtime::{
    BuildError, Classify, ErrorClass, Problem, Rejection, Runtime, RuntimeBuilder, ShutdownReport, breaker,
    bulkhead, policy, registry, retry, timeout,
};

/// Items used by generated code. Not public API; no semver guarantee. The facade pins
/// `resilient-macros` and `resilient-runtime` to one exact version, so the code the macro
/// generates always matches the runtime it calls.
#[doc(hidden)]
pub mod __private {
    pub use resilient_runtime::__private::*;
}
