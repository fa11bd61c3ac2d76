//! Export through the `metrics` facade, with Prometheus naming.

use crate::Runtime;
use crate::breaker::BreakerState;

/// Every metric [`Runtime::publish_metrics`] emits, with its labels and meaning.
///
/// Counters are monotonic (a [`reset`](Runtime::reset_metrics) does not touch them).
/// Latency is exported as a summary: one gauge per quantile plus `_count` and `_sum`.
pub const METRIC_NAMES: &[(&str, &str, &str)] = &[
    ("resilient_calls_total", "operation", "calls that returned"),
    (
        "resilient_call_successes_total",
        "operation",
        "calls that returned Ok",
    ),
    (
        "resilient_call_failures_total",
        "operation, class",
        "calls that returned Err, by error class",
    ),
    (
        "resilient_retries_total",
        "operation",
        "attempts after the first",
    ),
    (
        "resilient_attempt_timeouts_total",
        "operation",
        "attempts cut by timeout_ms",
    ),
    (
        "resilient_deadlines_exceeded_total",
        "operation",
        "calls cut by deadline_ms",
    ),
    (
        "resilient_rejections_total",
        "operation, reason",
        "calls rejected: breaker_open, bulkhead_full, shutting_down",
    ),
    (
        "resilient_fallbacks_total",
        "operation",
        "calls answered by their fallback",
    ),
    (
        "resilient_call_duration_seconds",
        "operation, quantile",
        "latency quantiles 0.5, 0.9, 0.99 and 1 (max)",
    ),
    (
        "resilient_call_duration_seconds_count",
        "operation",
        "calls measured",
    ),
    (
        "resilient_call_duration_seconds_sum",
        "operation",
        "total latency of the calls measured",
    ),
    (
        "resilient_cache_hits_total",
        "operation",
        "fresh cache hits",
    ),
    (
        "resilient_cache_misses_total",
        "operation",
        "cache lookups without a fresh value",
    ),
    (
        "resilient_cache_stale_served_total",
        "operation",
        "stale values served after failed loads",
    ),
    (
        "resilient_cache_loads_total",
        "operation",
        "cache loads started (one per single flight)",
    ),
    (
        "resilient_cache_load_failures_total",
        "operation",
        "cache loads that failed",
    ),
    (
        "resilient_cache_evictions_total",
        "operation",
        "entries evicted for capacity",
    ),
    ("resilient_cache_entries", "operation", "entries held"),
    (
        "resilient_breaker_state",
        "breaker",
        "0 closed, 1 half-open, 2 open",
    ),
    (
        "resilient_breaker_opened_total",
        "breaker",
        "times the breaker opened",
    ),
    (
        "resilient_breaker_rejections_total",
        "breaker",
        "calls the breaker rejected",
    ),
    (
        "resilient_bulkhead_executing",
        "bulkhead",
        "calls executing",
    ),
    (
        "resilient_bulkhead_waiting",
        "bulkhead",
        "calls waiting in the queue",
    ),
    (
        "resilient_bulkhead_rejected_total",
        "bulkhead",
        "calls rejected because the queue was full",
    ),
];

impl Runtime {
    /// Publishes every counter, gauge and latency summary through the `metrics` facade,
    /// to whatever recorder is installed (for Prometheus: `metrics-exporter-prometheus`).
    ///
    /// The hot path only touches the runtime's own atomics; call this before each scrape,
    /// or from a periodic task ([`spawn_metrics_publisher`](Runtime::spawn_metrics_publisher)).
    /// The names are listed in [`METRIC_NAMES`](crate::metrics::METRIC_NAMES).
    pub fn publish_metrics(&self) {
        for (policy, op) in self.op_states() {
            let name = policy.name();
            let t = op.metrics.totals();
            metrics::counter!("resilient_calls_total", "operation" => name).absolute(t.calls);
            metrics::counter!("resilient_call_successes_total", "operation" => name)
                .absolute(t.successes);
            for class in super::CLASSES {
                metrics::counter!("resilient_call_failures_total", "operation" => name, "class" => class.as_str())
                    .absolute(t.failures.get(class));
            }
            metrics::counter!("resilient_retries_total", "operation" => name).absolute(t.retries);
            metrics::counter!("resilient_attempt_timeouts_total", "operation" => name)
                .absolute(t.attempt_timeouts);
            metrics::counter!("resilient_deadlines_exceeded_total", "operation" => name)
                .absolute(t.deadlines_exceeded);
            for (reason, n) in [
                ("breaker_open", t.rejections.breaker_open),
                ("bulkhead_full", t.rejections.bulkhead_full),
                ("shutting_down", t.rejections.shutting_down),
            ] {
                metrics::counter!("resilient_rejections_total", "operation" => name, "reason" => reason).absolute(n);
            }
            metrics::counter!("resilient_fallbacks_total", "operation" => name)
                .absolute(t.fallbacks);
            let l = op.metrics.latency_total();
            for (q, ms) in [
                ("0.5", l.p50_ms),
                ("0.9", l.p90_ms),
                ("0.99", l.p99_ms),
                ("1", l.max_ms),
            ] {
                metrics::gauge!("resilient_call_duration_seconds", "operation" => name, "quantile" => q)
                    .set(ms / 1000.0);
            }
            metrics::counter!("resilient_call_duration_seconds_count", "operation" => name)
                .absolute(l.count);
            metrics::gauge!("resilient_call_duration_seconds_sum", "operation" => name)
                .set(l.mean_ms * l.count as f64 / 1000.0);
            if let Some(c) = op.cache.get().map(|c| c.stats()) {
                metrics::counter!("resilient_cache_hits_total", "operation" => name)
                    .absolute(c.hits);
                metrics::counter!("resilient_cache_misses_total", "operation" => name)
                    .absolute(c.misses);
                metrics::counter!("resilient_cache_stale_served_total", "operation" => name)
                    .absolute(c.stale_served);
                metrics::counter!("resilient_cache_loads_total", "operation" => name)
                    .absolute(c.loads);
                metrics::counter!("resilient_cache_load_failures_total", "operation" => name)
                    .absolute(c.load_failures);
                metrics::counter!("resilient_cache_evictions_total", "operation" => name)
                    .absolute(c.evictions);
                metrics::gauge!("resilient_cache_entries", "operation" => name)
                    .set(c.entries as f64);
            }
        }
        for b in self.breakers() {
            let s = b.snapshot();
            let state = match s.state {
                BreakerState::Closed => 0.0,
                BreakerState::HalfOpen => 1.0,
                BreakerState::Open => 2.0,
            };
            metrics::gauge!("resilient_breaker_state", "breaker" => s.name).set(state);
            metrics::counter!("resilient_breaker_opened_total", "breaker" => s.name)
                .absolute(s.opened_total);
            metrics::counter!("resilient_breaker_rejections_total", "breaker" => s.name)
                .absolute(s.rejected_total);
        }
        for b in self.bulkheads() {
            let s = b.snapshot();
            metrics::gauge!("resilient_bulkhead_executing", "bulkhead" => s.name)
                .set(s.executing as f64);
            metrics::gauge!("resilient_bulkhead_waiting", "bulkhead" => s.name)
                .set(s.waiting as f64);
            metrics::counter!("resilient_bulkhead_rejected_total", "bulkhead" => s.name)
                .absolute(s.rejected_total);
        }
    }

    /// Calls [`publish_metrics`](Runtime::publish_metrics) every `every` until the
    /// runtime shuts down or the returned task is aborted.
    pub fn spawn_metrics_publisher(
        &self,
        every: std::time::Duration,
    ) -> tokio::task::JoinHandle<()> {
        let rt = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while !rt.is_shutting_down() {
                tick.tick().await;
                rt.publish_metrics();
            }
        })
    }
}
