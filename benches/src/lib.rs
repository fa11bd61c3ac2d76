//! The harness and the hand-written baselines shared by the benchmarks of issue 7.
//!
//! - [`harness`]: a thread-CPU-time clock, interleaved rounds, medians, the two-thread
//!   runner, and the child process that measures a second runtime configuration.
//! - [`floor`]: the hand-written atomic floor every stack is compared with.
//! - [`ops`]: the benchmarked operations, raw and annotated with `#[resilient]`.
//!
//! See `BENCHMARKS.md` at the root of the workspace for the figures and how to
//! reproduce them.

pub mod floor;
pub mod harness;
pub mod ops;
