//! The lock-free, count-based failure-rate window.

use std::fmt;
use std::sync::atomic::{AtomicI32, AtomicU8, AtomicU64, Ordering};

use super::FailureRateWindow;

const EMPTY: u8 = 0;
const SUCCESS: u8 = 1;
const FAILURE: u8 = 2;

/// Largest window accepted; larger configured sizes are clamped to it.
pub(super) const MAX_WINDOW: u32 = 1024;

/// The last `size` recorded outcomes, as a ring of slots.
///
/// Each writer claims a slot with a `fetch_add` on the cursor and `swap`s its outcome in;
/// the value it swapped out tells it exactly how to adjust the two counters. Because every
/// change to a slot is paired with its own delta, the counters always converge to the
/// slots' contents, whatever the interleaving, with no lock. Between a swap and its
/// delta they may be briefly off by a few (even negative), so readers clamp.
pub(super) struct FailureWindow {
    slots: Box<[AtomicU8]>,
    cursor: AtomicU64,
    recorded: AtomicI32,
    failures: AtomicI32,
    minimum_calls: u32,
    rate_percent: u32,
}

impl FailureWindow {
    /// `config` must already be normalized (see `normalize` in the parent module).
    pub(super) fn new(config: &FailureRateWindow) -> Self {
        let size = config.size.clamp(1, MAX_WINDOW);
        Self {
            slots: (0..size).map(|_| AtomicU8::new(EMPTY)).collect(),
            cursor: AtomicU64::new(0),
            recorded: AtomicI32::new(0),
            failures: AtomicI32::new(0),
            minimum_calls: config.minimum_calls.max(1),
            rate_percent: u32::from(config.failure_rate_percent),
        }
    }

    pub(super) fn record(&self, failed: bool) {
        // `slots` is never empty (size >= 1), and the modulo keeps the index in range.
        let len = self.slots.len() as u64;
        let index = (self.cursor.fetch_add(1, Ordering::Relaxed) % len) as usize;
        if let Some(slot) = self.slots.get(index) {
            let new = if failed { FAILURE } else { SUCCESS };
            let old = slot.swap(new, Ordering::Relaxed);
            self.apply(old, new);
        }
    }

    /// Empties every slot. Concurrent `record`s stay consistent with the counters; they
    /// may land either before or after the clear.
    pub(super) fn clear(&self) {
        for slot in self.slots.iter() {
            let old = slot.swap(EMPTY, Ordering::Relaxed);
            self.apply(old, EMPTY);
        }
    }

    fn apply(&self, old: u8, new: u8) {
        let recorded = i32::from(new != EMPTY) - i32::from(old != EMPTY);
        let failures = i32::from(new == FAILURE) - i32::from(old == FAILURE);
        if recorded != 0 {
            self.recorded.fetch_add(recorded, Ordering::Relaxed);
        }
        if failures != 0 {
            self.failures.fetch_add(failures, Ordering::Relaxed);
        }
    }

    /// `(recorded, failures)`, clamped to what the ring can hold.
    pub(super) fn counts(&self) -> (u32, u32) {
        let cap = self.slots.len() as i32;
        let recorded = self.recorded.load(Ordering::Relaxed).clamp(0, cap);
        let failures = self.failures.load(Ordering::Relaxed).clamp(0, recorded);
        (recorded as u32, failures as u32)
    }

    /// Whether the window alone says the breaker should open.
    pub(super) fn tripped(&self) -> bool {
        let (recorded, failures) = self.counts();
        recorded >= self.minimum_calls
            && u64::from(failures) * 100 >= u64::from(self.rate_percent) * u64::from(recorded)
    }

    /// Failed share of the recorded outcomes, in percent; 0 when the window is empty.
    pub(super) fn failure_rate_percent(&self) -> f64 {
        match self.counts() {
            (0, _) => 0.0,
            (recorded, failures) => f64::from(failures) * 100.0 / f64::from(recorded),
        }
    }
}

impl fmt::Debug for FailureWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (recorded, failures) = self.counts();
        f.debug_struct("FailureWindow")
            .field("size", &self.slots.len())
            .field("recorded", &recorded)
            .field("failures", &failures)
            .finish()
    }
}
