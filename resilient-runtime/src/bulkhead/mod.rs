//! Bulkheads: a limit on concurrent calls plus a bounded FIFO queue.

mod acquire;
mod spec;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex, MutexGuard};

pub use acquire::Acquire;
pub use spec::{BulkheadSpec, READ, REPORT, WRITE};

use crate::Rejection;
use crate::padded::CachePadded;
use acquire::Waiter;

/// A live bulkhead: at most `max_concurrent` calls hold a permit at once and up to
/// `max_queue` more wait for one, in arrival order. Anyone beyond that is rejected at
/// once with [`Rejection::BulkheadFull`].
///
/// Taking a free permit while nobody waits is a single compare-and-swap, with no lock
/// and no allocation; only callers that must queue touch the queue's mutex.
///
/// A bulkhead with `max_concurrent == 0` rejects every call (it never queues, since
/// no permit could ever be handed to a waiter).
///
/// Waiting is not bounded here: drop the [`Acquire`] future (for example through
/// `tokio::time::timeout`) to give up, and the caller leaves the queue.
///
/// ```
/// use resilient_runtime::bulkhead::Bulkhead;
///
/// let rt = tokio::runtime::Builder::new_current_thread()
///     .enable_time()
///     .build()
///     .expect("runtime");
/// rt.block_on(async {
///     let bulkhead = Bulkhead::new("exports", 1, 0);
///
///     let answer = bulkhead.execute(async { 42 }).await;
///     assert_eq!(answer, Ok(42));
///
///     let permit = bulkhead.acquire().await.expect("a slot is free");
///     assert_eq!(bulkhead.executing(), 1);
///     // Full, and no queue: rejected at once.
///     assert!(bulkhead.acquire().await.is_err());
///     assert!(bulkhead.try_acquire().is_none());
///     drop(permit);
///     assert_eq!(bulkhead.executing(), 0);
///     assert_eq!(bulkhead.rejected(), 1);
/// });
/// ```
pub struct Bulkhead {
    name: &'static str,
    max_concurrent: usize,
    max_queue: usize,
    /// Permits in existence, including those granted to a waiter not yet polled. Alone on
    /// its cache lines: it is the one field every call writes, and the loads of the
    /// fields around it (`waiting` first) must not pull it away from the writers.
    executing: CachePadded<AtomicUsize>,
    /// Callers that reserved a queue place and have not yet been granted or left.
    /// Incremented before the caller enters `queue`, so it may briefly exceed its length.
    waiting: AtomicUsize,
    queue: Mutex<VecDeque<Arc<Waiter>>>,
    rejected: AtomicU64,
    peak_executing: AtomicUsize,
    peak_waiting: AtomicUsize,
}

/// A point-in-time view of a [`Bulkhead`]'s counters.
///
/// The fields are read one by one without a lock, so under load they may not
/// describe one single instant.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BulkheadSnapshot {
    /// The bulkhead's name.
    pub name: &'static str,
    /// Calls allowed to execute at once.
    pub max_concurrent: usize,
    /// Calls allowed to wait for a slot.
    pub max_queue: usize,
    /// Permits currently held.
    pub executing: usize,
    /// Callers currently waiting for a permit.
    pub waiting: usize,
    /// Callers rejected since creation or the last [`Bulkhead::reset_stats`].
    pub rejected_total: u64,
    /// Highest `executing` seen since creation or the last reset.
    pub peak_executing: usize,
    /// Highest `waiting` seen since creation or the last reset.
    pub peak_waiting: usize,
}

/// The right to run one call inside a [`Bulkhead`]. Dropping it frees the slot, handing
/// it straight to the oldest waiter if there is one.
#[must_use = "the bulkhead slot is released as soon as the permit is dropped"]
pub struct BulkheadPermit<'a> {
    bulkhead: &'a Bulkhead,
}

impl Bulkhead {
    /// A bulkhead admitting `max_concurrent` calls at once with up to `max_queue` waiting.
    ///
    /// `max_concurrent == 0` makes a bulkhead that rejects everything.
    pub fn new(name: &'static str, max_concurrent: usize, max_queue: usize) -> Self {
        Self {
            name,
            max_concurrent,
            max_queue,
            executing: CachePadded(AtomicUsize::new(0)),
            waiting: AtomicUsize::new(0),
            queue: Mutex::new(VecDeque::new()),
            rejected: AtomicU64::new(0),
            peak_executing: AtomicUsize::new(0),
            peak_waiting: AtomicUsize::new(0),
        }
    }

    /// A bulkhead with the name and limits of a declared [`BulkheadSpec`].
    pub fn from_spec(spec: &BulkheadSpec) -> Self {
        Self::new(spec.name(), spec.max_concurrent(), spec.max_queue())
    }

    /// The bulkhead's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Calls allowed to execute at once.
    pub fn max_concurrent(&self) -> usize {
        self.max_concurrent
    }

    /// Calls allowed to wait for a slot.
    pub fn max_queue(&self) -> usize {
        self.max_queue
    }

    /// Takes a permit if one is free and nobody is waiting; never waits.
    ///
    /// Refusing while others wait keeps the queue fair: a caller that never queues
    /// must not take the slot a waiter is about to be handed. A refusal here is not
    /// counted in [`rejected`](Self::rejected).
    ///
    /// The fast path counts itself in with one `fetch_add` and, if the bulkhead was
    /// full, gives the slot back at once. A caller racing that give-back, at full
    /// capacity, may be refused (or queued, and granted by the give-back) for those
    /// nanoseconds although the last real holder has just left.
    #[inline]
    pub fn try_acquire(&self) -> Option<BulkheadPermit<'_>> {
        if self.waiting.load(SeqCst) == 0 && self.take_free_slot() {
            Some(BulkheadPermit { bulkhead: self })
        } else {
            None
        }
    }

    /// Waits for a permit in FIFO order, or fails at once with
    /// [`Rejection::BulkheadFull`] if the queue is full too.
    ///
    /// When a slot is free and nobody waits, the returned future is ready on its first
    /// poll. Dropping it while queued leaves the queue; dropping it after it was granted
    /// a permit (but before it was polled) passes that permit on.
    pub fn acquire(&self) -> Acquire<'_> {
        Acquire::new(self)
    }

    /// Waits for a permit (or is rejected), then runs `fut` while holding it.
    ///
    /// `fut` is not polled at all if the call is rejected.
    pub async fn execute<T, F: Future<Output = T>>(&self, fut: F) -> Result<T, Rejection> {
        let permit = self.acquire().await?;
        let output = fut.await;
        drop(permit);
        Ok(output)
    }

    /// Permits currently held.
    pub fn executing(&self) -> usize {
        // A fast-path taker that found the bulkhead full counts itself for an instant.
        self.executing.load(Relaxed).min(self.max_concurrent)
    }

    /// Callers currently waiting for a permit.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Relaxed)
    }

    /// Callers rejected since creation or the last [`reset_stats`](Self::reset_stats).
    pub fn rejected(&self) -> u64 {
        self.rejected.load(Relaxed)
    }

    /// The current counters.
    pub fn snapshot(&self) -> BulkheadSnapshot {
        BulkheadSnapshot {
            name: self.name,
            max_concurrent: self.max_concurrent,
            max_queue: self.max_queue,
            executing: self.executing(),
            waiting: self.waiting(),
            rejected_total: self.rejected(),
            peak_executing: self.peak_executing.load(Relaxed),
            peak_waiting: self.peak_waiting.load(Relaxed),
        }
    }

    /// Zeroes the rejection count and restarts the peaks.
    ///
    /// The peaks restart from the current counts rather than from zero, so that a peak
    /// is never below what is executing or waiting right now (when idle, that is zero).
    pub fn reset_stats(&self) {
        self.rejected.store(0, Relaxed);
        self.peak_executing.store(self.executing(), Relaxed);
        self.peak_waiting.store(self.waiting(), Relaxed);
    }

    /// Claims a slot if fewer than `max_concurrent` are taken, ignoring the queue.
    ///
    /// SeqCst because the lost-wakeup argument in `acquire.rs` orders this against
    /// the `waiting` counter.
    /// Takes a slot if one is free, outside the queue's lock: one `fetch_add`, the
    /// single read-for-ownership of `executing` that a load followed by a CAS would make
    /// two under contention. A taker that finds the bulkhead full gives the slot back
    /// through [`release`](Self::release), exactly as if it had taken a free slot and
    /// released it at once, which hands it to a waiter if one came meanwhile.
    #[inline]
    fn take_free_slot(&self) -> bool {
        let before = self.executing.fetch_add(1, SeqCst);
        if before < self.max_concurrent {
            raise_peak(&self.peak_executing, before + 1);
            true
        } else {
            self.release();
            false
        }
    }

    /// Takes a slot if one is free, never counting past `max_concurrent`: under the
    /// queue's lock, where giving a slot back through `release` would take the lock again.
    #[inline]
    fn take_slot(&self) -> bool {
        // SeqCst reads too: the no-lost-wakeup argument (acquire.rs) places a failed
        // attempt's read of `executing` in the single total order of SeqCst operations.
        let mut current = self.executing.load(SeqCst);
        loop {
            if current >= self.max_concurrent {
                return false;
            }
            match self
                .executing
                .compare_exchange_weak(current, current + 1, SeqCst, SeqCst)
            {
                Ok(_) => {
                    raise_peak(&self.peak_executing, current + 1);
                    return true;
                }
                Err(actual) => current = actual,
            }
        }
    }

    /// Gives a slot back: one RMW and one load when nobody waits.
    #[inline]
    fn release(&self) {
        self.executing.fetch_sub(1, SeqCst);
        if self.waiting.load(SeqCst) != 0 {
            self.hand_off();
        }
    }

    fn lock_queue(&self) -> MutexGuard<'_, VecDeque<Arc<Waiter>>> {
        // The queue holds no invariant a panicking holder could break half-way
        // (each critical section is a push, a removal or pop-and-grant), so a
        // poisoned lock is safe to keep using.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Keeps `peak` at least `value`, without an RMW when the peak is already higher.
#[inline]
fn raise_peak(peak: &AtomicUsize, value: usize) {
    if value > peak.load(Relaxed) {
        peak.fetch_max(value, Relaxed);
    }
}

impl fmt::Debug for Bulkhead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bulkhead")
            .field("name", &self.name)
            .field("max_concurrent", &self.max_concurrent)
            .field("max_queue", &self.max_queue)
            .field("executing", &self.executing())
            .field("waiting", &self.waiting())
            .field("rejected", &self.rejected())
            .finish()
    }
}

impl Drop for BulkheadPermit<'_> {
    #[inline]
    fn drop(&mut self) {
        self.bulkhead.release();
    }
}

impl fmt::Debug for BulkheadPermit<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BulkheadPermit")
            .field("bulkhead", &self.bulkhead.name)
            .finish()
    }
}
