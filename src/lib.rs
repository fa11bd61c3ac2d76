//! # resilient
//!
//! Database access that keeps working through bad days: one attribute on an async
//! repository method gives it retries driven by error class, per-attempt timeouts and
//! a total deadline, a circuit breaker, a bulkhead and a cache.
//!
//! ```
//! use resilient::{resilient, Classify, ErrorClass, Rejection, Runtime};
//!
//! #[derive(Debug, thiserror::Error)]
//! enum RepoError {
//!     #[error("user not found")]
//!     NotFound,
//!     #[error("database unavailable")]
//!     Unavailable,
//!     #[error(transparent)]
//!     Resilience(#[from] Rejection),
//! }
//!
//! impl Classify for RepoError {
//!     fn class(&self) -> ErrorClass {
//!         match self {
//!             RepoError::NotFound => ErrorClass::Caller,
//!             RepoError::Unavailable => ErrorClass::Unavailable,
//!             RepoError::Resilience(r) => r.class(),
//!         }
//!     }
//! }
//!
//! struct Users;
//!
//! #[resilient]
//! impl Users {
//!     /// Up to 3 attempts, 5 s each, in the `read` bulkhead.
//!     #[resilient(policy = "read")]
//!     async fn find(&self, id: i64) -> Result<String, RepoError> {
//!         if id == 0 { Err(RepoError::NotFound) } else { Ok(format!("user {id}")) }
//!     }
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
//! // Validates every annotated operation at startup, listing every problem.
//! let rt = Runtime::builder().build().expect("valid configuration");
//! let found = rt.scope(Users.find(7)).await;
//! assert_eq!(found.unwrap(), "user 7");
//! let op = rt.operations().find(|p| p.name() == "Users::find").expect("registered");
//! assert_eq!(op.attempts(), 3);
//! # });
//! ```
//!
//! # Composition order
//!
//! ```text
//!  call ──► cache ──► deadline ──► retry ──► breaker ──► bulkhead ──► attempt timeout ──► body
//!           (fresh     (whole call)  (loop)    (permit)    (permit,      (per attempt,
//!            hit:                                          FIFO queue)   lazily armed)
//!            return)
//! ```
//!
//! - A fresh cache hit returns at once; a miss loads through everything to its right,
//!   once per key however many callers wait.
//! - The deadline covers the bulkhead wait, every attempt and every backoff sleep.
//! - Each attempt takes a breaker permit, then a bulkhead permit; a failed attempt gives
//!   its bulkhead slot back **before** the backoff sleep.
//! - A rejection by an open breaker or a full bulkhead is never retried and never counts
//!   as a breaker failure.
//! - An ambiguous failure (the write may have been applied) is retried only when the
//!   operation is idempotent.
//!
//! # Where things are
//!
//! - [`resilient`](macro@resilient): every attribute option, with examples.
//! - [`Runtime`]: the holder of breakers, bulkheads, caches and pools; how calls find it.
//! - [`Classify`] and [`ErrorClass`]: which errors are retried and which count against
//!   the breaker.
//! - [`Rejection`]: the one error type for everything the resilience layer refuses.
//! - [`cache`], [`breaker`], [`bulkhead`], [`retry`], [`timeout`]: each policy, also
//!   usable without the attribute.
//! - [`metrics`] and [`Snapshot`]: what the on-call engineer sees.

#![warn(missing_docs)]

pub use resilient_macros::resilient;
pub use resilient_runtime::*;

/// Items used by generated code. Not public API; no semver guarantee. The facade pins
/// `resilient-macros` and `resilient-runtime` to one exact version, so the code the macro
/// generates always matches the runtime it calls.
#[doc(hidden)]
pub mod __private {
    pub use resilient_runtime::__private::*;
}
