//! The static declaration of a bulkhead.

/// A named bulkhead as declared in code: a limit on concurrent calls plus a bounded FIFO queue.
///
/// Built-in bulkheads are [`READ`](crate::bulkhead::READ), [`WRITE`](crate::bulkhead::WRITE)
/// and [`REPORT`](crate::bulkhead::REPORT). Declare a custom one as a `static` and
/// reference it by path, so that a typo fails to compile:
///
/// ```
/// use resilient_runtime::bulkhead::BulkheadSpec;
///
/// pub static EXPORTS: BulkheadSpec = BulkheadSpec::new("exports", 2, 4);
/// // #[resilient(bulkhead = EXPORTS)]
/// assert_eq!(EXPORTS.max_concurrent(), 2);
/// ```
///
/// The runtime builder may still resize any bulkhead by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BulkheadSpec {
    name: &'static str,
    max_concurrent: usize,
    max_queue: usize,
}

impl BulkheadSpec {
    /// A bulkhead admitting `max_concurrent` calls at once with up to `max_queue` waiting.
    pub const fn new(name: &'static str, max_concurrent: usize, max_queue: usize) -> Self {
        Self {
            name,
            max_concurrent,
            max_queue,
        }
    }

    /// The bulkhead's name.
    pub const fn name(&self) -> &'static str {
        self.name
    }

    /// Calls allowed to execute at once.
    pub const fn max_concurrent(&self) -> usize {
        self.max_concurrent
    }

    /// Calls allowed to wait for a slot.
    pub const fn max_queue(&self) -> usize {
        self.max_queue
    }
}

/// Built-in bulkhead for reads: 50 concurrent, 100 waiting.
pub static READ: BulkheadSpec = BulkheadSpec::new("read", 50, 100);
/// Built-in bulkhead for writes: 20 concurrent, 50 waiting.
pub static WRITE: BulkheadSpec = BulkheadSpec::new("write", 20, 50);
/// Built-in bulkhead for reports: 5 concurrent, 10 waiting.
pub static REPORT: BulkheadSpec = BulkheadSpec::new("report", 5, 10);
