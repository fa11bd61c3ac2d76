//! The runtime behind `#[resilient]`. Use it through the `resilient` crate, which
//! re-exports everything here; see that crate for the user guide.
//!
//! Layout: one module per policy ([`retry`], [`breaker`], [`bulkhead`], [`timeout`]),
//! each knowing nothing of the others or of databases; [`policy`] describes one
//! operation; `execute` is the one place that composes them (see
//! [`Runtime::execute`] for the order); [`Runtime`] holds the named instances.

#![warn(missing_docs)]

pub mod breaker;
pub mod bulkhead;
pub mod cache;
mod classify;
#[cfg(feature = "dashboard")]
pub mod dashboard;
pub mod db;
mod error;
mod execute;
pub mod metrics;
mod padded;
pub mod policy;
pub mod registry;
pub mod retry;
mod runtime;
pub mod timeout;

#[doc(hidden)]
pub mod __private;

pub use classify::{Classify, ErrorClass};
pub use error::Rejection;
pub use runtime::{
    BuildError, OperationSnapshot, PolicyView, Problem, Runtime, RuntimeBuilder, RuntimeRef,
    ShutdownReport, Snapshot,
};
