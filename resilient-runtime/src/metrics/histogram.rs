//! A lock-free latency histogram, read out through hdrhistogram.
//!
//! Recording is one relaxed `fetch_add` on a log-linear bucket (32 sub-buckets per power
//! of two: about 3 % relative precision), so concurrent calls never wait for each other.
//! Reading builds an `hdrhistogram::Histogram` from the buckets for the percentiles.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;

const SUB_BITS: u32 = 5;
const SUB: usize = 1 << SUB_BITS;
/// Octaves above the linear range: values up to 2^(SUB_BITS + OCTAVES) µs (about 76 h).
const OCTAVES: usize = 33;
const BUCKETS: usize = SUB * (OCTAVES + 1);

/// Stripes of the histogram (see [`super::striped`]): fewer than the counters', as each
/// holds every bucket.
const HIST_STRIPES: usize = 4;

/// Latencies in microseconds, `HIST_STRIPES` copies of the buckets side by side.
pub(crate) struct AtomicHistogram {
    buckets: Box<[AtomicU64]>,
}

impl AtomicHistogram {
    pub(crate) fn new() -> Self {
        AtomicHistogram {
            buckets: (0..BUCKETS * HIST_STRIPES)
                .map(|_| AtomicU64::new(0))
                .collect(),
        }
    }

    #[inline]
    fn index(us: u64) -> usize {
        if us < SUB as u64 {
            return us as usize;
        }
        let octave = (63 - us.leading_zeros()) - SUB_BITS + 1;
        let sub = (us >> (octave - 1)) as usize & (SUB - 1);
        (octave as usize * SUB + sub).min(BUCKETS - 1)
    }

    /// The smallest value that falls into bucket `i`.
    fn lower(i: usize) -> u64 {
        let (octave, sub) = (i / SUB, (i % SUB) as u64);
        if octave == 0 {
            sub
        } else {
            (SUB as u64 + sub) << (octave - 1)
        }
    }

    #[inline]
    pub(crate) fn record(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let stripe = super::striped::stripe() % HIST_STRIPES;
        self.buckets[stripe * BUCKETS + Self::index(us)].fetch_add(1, Ordering::Relaxed);
    }

    /// The counts, bucket by bucket.
    pub(crate) fn counts(&self) -> Vec<u64> {
        let mut counts = vec![0u64; BUCKETS];
        for stripe in self.buckets.chunks_exact(BUCKETS) {
            for (c, b) in counts.iter_mut().zip(stripe) {
                *c += b.load(Ordering::Relaxed);
            }
        }
        counts
    }

    /// Builds an hdrhistogram of the counts above `baseline` (same length, or empty),
    /// with the calls that never waited: those of `timed` calls not recorded, which took
    /// no measurable time (see [`OpMetrics::latency`](super::OpMetrics::latency)).
    pub(crate) fn summary_since(&self, baseline: &[u64], timed: u64) -> LatencySummary {
        let mut h = match Histogram::<u64>::new(3) {
            Ok(h) => h,
            Err(_) => return LatencySummary::default(),
        };
        let mut counts = self.counts();
        for (c, b) in counts.iter_mut().zip(baseline) {
            *c = c.saturating_sub(*b);
        }
        let recorded: u64 = counts.iter().sum();
        counts[0] += timed.saturating_sub(recorded);
        for (i, n) in counts.into_iter().enumerate() {
            if n > 0 {
                // Record the bucket's midpoint: the error stays within half a bucket.
                let lo = Self::lower(i);
                let hi = if i + 1 < BUCKETS {
                    Self::lower(i + 1)
                } else {
                    lo
                };
                let _ = h.record_n(lo + (hi - lo) / 2, n);
            }
        }
        LatencySummary::from_hdr(&h)
    }
}

/// Latency percentiles of an operation, in milliseconds.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct LatencySummary {
    /// Calls measured.
    pub count: u64,
    /// Fastest call.
    pub min_ms: f64,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Slowest call.
    pub max_ms: f64,
    /// Mean.
    pub mean_ms: f64,
}

impl LatencySummary {
    fn from_hdr(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return LatencySummary::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        LatencySummary {
            count: h.len(),
            min_ms: ms(h.min()),
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            max_ms: ms(h.max()),
            mean_ms: h.mean() / 1000.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_ordered_and_tight() {
        let mut last = 0;
        for us in (0..200_000u64).step_by(7).chain([u64::MAX / 2, u64::MAX]) {
            let i = AtomicHistogram::index(us);
            assert!(i >= last || us > 1 << 37, "index must not decrease");
            last = i;
            let lo = AtomicHistogram::lower(i);
            assert!(lo <= us, "{us} below its bucket {lo}");
            if us < 1 << 37 {
                let hi = AtomicHistogram::lower(i + 1);
                assert!(us < hi, "{us} above its bucket [{lo}, {hi})");
                assert!(
                    (hi - lo) as f64 <= (lo as f64 / 16.0).max(1.0),
                    "bucket too wide at {us}"
                );
            }
        }
    }

    #[test]
    fn percentiles_come_out_within_precision() {
        let h = AtomicHistogram::new();
        for ms in 1..=1000u64 {
            h.record(Duration::from_millis(ms));
        }
        let s = h.summary_since(&[], 0);
        assert_eq!(s.count, 1000);
        for (got, want) in [
            (s.p50_ms, 500.0),
            (s.p90_ms, 900.0),
            (s.p99_ms, 990.0),
            (s.max_ms, 1000.0),
            (s.min_ms, 1.0),
        ] {
            assert!((got - want).abs() / want < 0.04, "got {got}, want {want}");
        }
        let base = h.counts();
        h.record(Duration::from_millis(5));
        assert_eq!(h.summary_since(&base, 0).count, 1);
    }

    #[test]
    fn calls_that_never_waited_count_as_zero() {
        let h = AtomicHistogram::new();
        for _ in 0..10 {
            h.record(Duration::from_millis(8));
        }
        // 30 timed calls, 10 recorded: 20 took no measurable time.
        let s = h.summary_since(&[], 30);
        assert_eq!(s.count, 30);
        assert_eq!((s.min_ms, s.p50_ms), (0.0, 0.0));
        assert!(s.p90_ms > 7.0 && s.max_ms > 7.0, "{s:?}");
    }
}
