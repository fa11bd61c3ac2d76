//! Per-operation metrics: atomic counters and a lock-free latency histogram on the hot
//! path, a ring of recent errors on the failure path, and export through the `metrics`
//! facade.
//!
//! Counters only ever grow; [`reset`](crate::Runtime::reset_metrics) moves a baseline
//! instead, so snapshots count "since the last reset" (the seed's semantics) while the
//! Prometheus counters stay monotonic.

mod export;
mod histogram;
mod recent;
pub(crate) mod striped;

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub use export::METRIC_NAMES;
pub(crate) use histogram::AtomicHistogram;
pub use histogram::LatencySummary;
pub use recent::RecentError;
pub(crate) use recent::RecentErrors;
pub use recent::redact;

use crate::{ErrorClass, Rejection};

/// Index of an [`ErrorClass`] in per-class arrays.
const fn class_index(c: ErrorClass) -> usize {
    match c {
        ErrorClass::Transient => 0,
        ErrorClass::Unavailable => 1,
        ErrorClass::Ambiguous => 2,
        ErrorClass::Caller => 3,
        ErrorClass::Rejected => 4,
    }
}

const CLASSES: [ErrorClass; 5] = [
    ErrorClass::Transient,
    ErrorClass::Unavailable,
    ErrorClass::Ambiguous,
    ErrorClass::Caller,
    ErrorClass::Rejected,
];

/// The counters of one operation. Each field is written by one `fetch_add` where it happens.
#[derive(Default)]
pub(crate) struct OpMetrics {
    pub(crate) successes: striped::Striped,
    failures: [AtomicU64; 5],
    pub(crate) retries: AtomicU64,
    pub(crate) attempt_timeouts: AtomicU64,
    pub(crate) deadlines_exceeded: AtomicU64,
    pub(crate) rejected_breaker_open: AtomicU64,
    pub(crate) rejected_bulkhead_full: AtomicU64,
    pub(crate) rejected_shutting_down: AtomicU64,
    pub(crate) fallbacks: AtomicU64,
    latency: Option<AtomicHistogram>,
    /// One call in this many is timed, at random.
    latency_sample: u32,
    /// Calls chosen for timing, counted only when sampling (`latency_sample > 1`);
    /// otherwise every call is timed and the call counters say how many.
    timed_calls: striped::Striped,
    baseline: Mutex<Option<Baseline>>,
}

#[derive(Clone, Default)]
struct Baseline {
    counters: Counters,
    latency: Vec<u64>,
    timed_calls: u64,
}

/// Plain copies of the counters, for snapshots and baselines.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counters {
    /// Calls that returned (successes + failures).
    pub calls: u64,
    /// Calls that returned `Ok` (a stale value served counts as a success).
    pub successes: u64,
    /// Calls that returned `Err`, by the class of the final error.
    pub failures: FailuresByClass,
    /// Retries (attempts after the first).
    pub retries: u64,
    /// Attempts cut by their `timeout_ms`.
    pub attempt_timeouts: u64,
    /// Calls cut by their `deadline_ms`.
    pub deadlines_exceeded: u64,
    /// Calls rejected before running.
    pub rejections: Rejections,
    /// Calls answered by their fallback.
    pub fallbacks: u64,
}

/// Failures by error class.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct FailuresByClass {
    /// Transient failures.
    pub transient: u64,
    /// The database was unavailable.
    pub unavailable: u64,
    /// The outcome is unknown.
    pub ambiguous: u64,
    /// Caller errors.
    pub caller: u64,
    /// Rejections by the resilience layer.
    pub rejected: u64,
}

impl FailuresByClass {
    fn from_array(a: [u64; 5]) -> Self {
        FailuresByClass {
            transient: a[0],
            unavailable: a[1],
            ambiguous: a[2],
            caller: a[3],
            rejected: a[4],
        }
    }

    /// The count for one class.
    pub fn get(&self, c: ErrorClass) -> u64 {
        [
            self.transient,
            self.unavailable,
            self.ambiguous,
            self.caller,
            self.rejected,
        ][class_index(c)]
    }

    /// All failures.
    pub fn total(&self) -> u64 {
        self.transient + self.unavailable + self.ambiguous + self.caller + self.rejected
    }
}

/// Rejections by reason.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Rejections {
    /// The breaker was open (or half-open and full).
    pub breaker_open: u64,
    /// The bulkhead and its queue were full.
    pub bulkhead_full: u64,
    /// The runtime was shutting down.
    pub shutting_down: u64,
}

impl Counters {
    fn minus(&self, b: &Counters) -> Counters {
        let f = |a: u64, b: u64| a.saturating_sub(b);
        Counters {
            calls: f(self.calls, b.calls),
            successes: f(self.successes, b.successes),
            failures: FailuresByClass::from_array(
                CLASSES.map(|c| f(self.failures.get(c), b.failures.get(c))),
            ),
            retries: f(self.retries, b.retries),
            attempt_timeouts: f(self.attempt_timeouts, b.attempt_timeouts),
            deadlines_exceeded: f(self.deadlines_exceeded, b.deadlines_exceeded),
            rejections: Rejections {
                breaker_open: f(self.rejections.breaker_open, b.rejections.breaker_open),
                bulkhead_full: f(self.rejections.bulkhead_full, b.rejections.bulkhead_full),
                shutting_down: f(self.rejections.shutting_down, b.rejections.shutting_down),
            },
            fallbacks: f(self.fallbacks, b.fallbacks),
        }
    }

    /// Adds `other` into `self` (for totals over operations).
    pub fn add(&mut self, o: &Counters) {
        let mut classes = CLASSES.map(|c| self.failures.get(c));
        for (i, c) in CLASSES.iter().enumerate() {
            classes[i] += o.failures.get(*c);
        }
        self.calls += o.calls;
        self.successes += o.successes;
        self.failures = FailuresByClass::from_array(classes);
        self.retries += o.retries;
        self.attempt_timeouts += o.attempt_timeouts;
        self.deadlines_exceeded += o.deadlines_exceeded;
        self.rejections.breaker_open += o.rejections.breaker_open;
        self.rejections.bulkhead_full += o.rejections.bulkhead_full;
        self.rejections.shutting_down += o.rejections.shutting_down;
        self.fallbacks += o.fallbacks;
    }
}

impl std::fmt::Debug for OpMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpMetrics")
            .field("totals", &self.totals())
            .finish()
    }
}

impl OpMetrics {
    /// `latency`: keep a histogram, timing one call in `latency_sample`.
    pub(crate) fn new(latency: bool, latency_sample: u32) -> Self {
        OpMetrics {
            latency: latency.then(AtomicHistogram::new),
            latency_sample: latency_sample.max(1),
            ..OpMetrics::default()
        }
    }

    #[inline]
    pub(crate) fn failure(&self, class: ErrorClass) {
        self.failures[class_index(class)].fetch_add(1, Ordering::Relaxed);
    }

    /// Whether to time this call: always without sampling; else one call in
    /// `latency_sample`, drawn at random (a per-thread rotation would starve an operation
    /// whose calls alternate with another's), and counted.
    #[inline]
    pub(crate) fn time_this_call(&self, stripe: usize) -> bool {
        if self.latency.is_none() {
            return false;
        }
        if self.latency_sample <= 1 {
            return true;
        }
        let chosen = fastrand::u32(..self.latency_sample) == 0;
        if chosen {
            self.timed_calls.add(stripe, 1, Ordering::Relaxed);
        }
        chosen
    }

    /// Timed calls since `base`: each timed call either recorded a latency or never
    /// waited, and counts as zero.
    fn timed_since(&self, calls: u64, base: &Baseline) -> u64 {
        if self.latency_sample <= 1 {
            calls
        } else {
            self.timed_calls
                .sum(Ordering::Relaxed)
                .wrapping_sub(base.timed_calls)
        }
    }

    /// Records the latency of a call that waited. A call that never waited is not
    /// recorded: readers count it as zero, from the call counters (one in
    /// `latency_sample` of them), which saves a write on the fastest path.
    #[inline]
    pub(crate) fn latency(&self, d: Duration) {
        if let Some(h) = &self.latency {
            h.record(d);
        }
    }

    pub(crate) fn rejected(&self, r: &Rejection) {
        let counter = match r {
            Rejection::BreakerOpen { .. } => &self.rejected_breaker_open,
            Rejection::BulkheadFull { .. } => &self.rejected_bulkhead_full,
            Rejection::ShuttingDown => &self.rejected_shutting_down,
            Rejection::DeadlineExceeded { .. } => &self.deadlines_exceeded,
            _ => return,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The counters since the beginning (monotonic).
    pub(crate) fn totals(&self) -> Counters {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let failures =
            FailuresByClass::from_array(CLASSES.map(|c| l(&self.failures[class_index(c)])));
        let successes = self.successes.sum(Ordering::Relaxed);
        Counters {
            calls: successes + failures.total(),
            successes,
            failures,
            retries: l(&self.retries),
            attempt_timeouts: l(&self.attempt_timeouts),
            deadlines_exceeded: l(&self.deadlines_exceeded),
            rejections: Rejections {
                breaker_open: l(&self.rejected_breaker_open),
                bulkhead_full: l(&self.rejected_bulkhead_full),
                shutting_down: l(&self.rejected_shutting_down),
            },
            fallbacks: l(&self.fallbacks),
        }
    }

    /// The counters and latency since the last reset.
    pub(crate) fn since_reset(&self) -> (Counters, LatencySummary) {
        let base = self
            .baseline
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .unwrap_or_default();
        let counters = self.totals().minus(&base.counters);
        let timed = self.timed_since(counters.calls, &base);
        let latency = self
            .latency
            .as_ref()
            .map(|h| h.summary_since(&base.latency, timed))
            .unwrap_or_default();
        (counters, latency)
    }

    /// The latency over the whole life of the operation.
    pub(crate) fn latency_total(&self) -> LatencySummary {
        self.latency
            .as_ref()
            .map(|h| {
                let timed = self.timed_since(self.totals().calls, &Baseline::default());
                h.summary_since(&[], timed)
            })
            .unwrap_or_default()
    }

    pub(crate) fn reset(&self) {
        let base = Baseline {
            counters: self.totals(),
            latency: self
                .latency
                .as_ref()
                .map(AtomicHistogram::counts)
                .unwrap_or_default(),
            timed_calls: self.timed_calls.sum(Ordering::Relaxed),
        };
        *self.baseline.lock().unwrap_or_else(|e| e.into_inner()) = Some(base);
    }
}

#[cfg(test)]
mod tests;
