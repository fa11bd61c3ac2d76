//! A serializable picture of everything the runtime does: the dashboard's JSON.

use std::time::SystemTime;

use serde::Serialize;

use super::Runtime;
use crate::breaker::BreakerSnapshot;
use crate::bulkhead::BulkheadSnapshot;
use crate::cache::CacheStats;
use crate::metrics::{Counters, LatencySummary, RecentError};
use crate::policy::Policy;

/// Everything at one moment: breakers, bulkheads, caches, every operation with its
/// effective policy and its metrics since the last reset, totals, and recent errors.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Snapshot {
    /// When it was taken, in milliseconds since the Unix epoch.
    pub taken_at_unix_ms: u64,
    /// Whether the runtime is shutting down.
    pub shutting_down: bool,
    /// Calls between admission and return.
    pub in_flight: usize,
    /// Every circuit breaker.
    pub breakers: Vec<BreakerSnapshot>,
    /// Every bulkhead.
    pub bulkheads: Vec<BulkheadSnapshot>,
    /// Every operation, sorted by name.
    pub operations: Vec<OperationSnapshot>,
    /// The counters of all operations added up.
    pub totals: Counters,
    /// The last errors, oldest first, with credentials removed.
    pub recent_errors: Vec<RecentError>,
    /// Every connection pool's statistics (live health is in
    /// [`Runtime::database_health`], which the dashboard adds).
    #[cfg(any(feature = "postgres", feature = "sqlite"))]
    pub pools: Vec<crate::db::PoolStatus>,
}

/// One operation: its effective policy and what it has done since the last reset.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct OperationSnapshot {
    /// `Type::method` or `function`.
    pub name: &'static str,
    /// The module it was declared in.
    pub module: &'static str,
    /// The policy in force, every default filled in.
    pub policy: PolicyView,
    /// Counters since the last reset.
    pub metrics: Counters,
    /// Latency since the last reset (calls that reached the policy stack; cache hits
    /// are counted by the cache, not timed). Timing starts when a call first waits (for
    /// its attempt, the bulkhead or a backoff): a call that never waited counts as 0.
    pub latency: LatencySummary,
    /// The operation's cache, once it has been used.
    pub cache: Option<CacheStats>,
}

/// The effective policy of an operation, as shown on the dashboard.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct PolicyView {
    /// `read`, `write` or `report`, if a preset was used.
    pub preset: Option<&'static str>,
    /// Retries after the first attempt.
    pub retry: u32,
    /// `exponential`, `fixed` or `none`.
    pub backoff: &'static str,
    /// Base backoff delay.
    pub delay_ms: u64,
    /// Cap on one backoff delay.
    pub max_delay_ms: u64,
    /// Full jitter on or off.
    pub jitter: bool,
    /// Per-attempt timeout.
    pub timeout_ms: u64,
    /// Deadline of the whole call.
    pub deadline_ms: u64,
    /// Whether the deadline was set explicitly (else derived).
    pub deadline_explicit: bool,
    /// The bulkhead's name.
    pub bulkhead: Option<&'static str>,
    /// The breaker's name.
    pub breaker: Option<&'static str>,
    /// Whether ambiguous failures are retried.
    pub idempotent: bool,
    /// Whether a fallback is configured.
    pub fallback: bool,
    /// The cache key template.
    pub cache: Option<&'static str>,
    /// The templates invalidated.
    pub invalidate: Vec<&'static str>,
    /// The prefixes invalidated.
    pub invalidate_prefix: Vec<&'static str>,
}

fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl PolicyView {
    /// The view of `p`.
    pub fn of(p: &Policy) -> Self {
        let r = p.retry_policy();
        PolicyView {
            preset: p.preset_used().map(|x| x.as_str()),
            retry: r.max_retries,
            backoff: r.backoff.as_str(),
            delay_ms: millis(r.delay),
            max_delay_ms: millis(r.max_delay),
            jitter: r.jitter,
            timeout_ms: millis(p.attempt_timeout()),
            deadline_ms: millis(p.deadline()),
            deadline_explicit: p.deadline_is_explicit(),
            bulkhead: p.bulkhead_spec().map(|b| b.name()),
            breaker: p.breaker_spec().map(|b| b.name()),
            idempotent: p.is_idempotent(),
            fallback: p.has_fallback(),
            cache: p.cache_spec().map(|c| c.template.text()),
            invalidate: p.invalidates().iter().map(|t| t.text()).collect(),
            invalidate_prefix: p.invalidates_prefixes().iter().map(|t| t.text()).collect(),
        }
    }
}

impl Runtime {
    /// Takes a [`Snapshot`].
    pub fn snapshot(&self) -> Snapshot {
        let mut operations: Vec<OperationSnapshot> = self
            .op_states()
            .map(|(p, op)| {
                let (metrics, latency) = op.metrics.since_reset();
                OperationSnapshot {
                    name: p.name(),
                    module: p.module(),
                    policy: PolicyView::of(p),
                    metrics,
                    latency,
                    cache: op.cache.get().map(|c| c.stats()),
                }
            })
            .collect();
        operations.sort_by(|a, b| (a.name, a.module).cmp(&(b.name, b.module)));
        let mut totals = Counters::default();
        for o in &operations {
            totals.add(&o.metrics);
        }
        let mut breakers: Vec<_> = self.breakers().map(|b| b.snapshot()).collect();
        breakers.sort_by_key(|b| b.name);
        let mut bulkheads: Vec<_> = self.bulkheads().map(|b| b.snapshot()).collect();
        bulkheads.sort_by_key(|b| b.name);
        Snapshot {
            taken_at_unix_ms: SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(millis)
                .unwrap_or(0),
            shutting_down: self.is_shutting_down(),
            in_flight: self.in_flight(),
            breakers,
            bulkheads,
            operations,
            totals,
            recent_errors: self.recent_errors().list(),
            #[cfg(any(feature = "postgres", feature = "sqlite"))]
            pools: self.pools().map(|p| p.status()).collect(),
        }
    }
}
