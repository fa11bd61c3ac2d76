//! The static description of one annotated operation.
//!
//! `#[resilient]` expands to a `static` [`Policy`] built with the `const fn` methods
//! below. The registry lists these statics, the runtime validates them at startup,
//! and snapshots show them as each operation's *effective* policy.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::breaker::BreakerSpec;
use crate::bulkhead::BulkheadSpec;
use crate::cache::{CacheSpec, KeyTemplate};

/// How long to wait between attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backoff {
    /// Retry at once.
    None,
    /// Wait `delay` before every retry.
    Fixed,
    /// Wait `delay · 2^k` before retry `k` (0-based), capped at `max_delay`.
    Exponential,
}

impl Backoff {
    /// The attribute spelling: `"none"`, `"fixed"` or `"exponential"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Backoff::None => "none",
            Backoff::Fixed => "fixed",
            Backoff::Exponential => "exponential",
        }
    }
}

/// The retry part of a policy.
///
/// `max_retries = N` means up to `N` retries *after* the first attempt: `N + 1` attempts in all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// The backoff curve.
    pub backoff: Backoff,
    /// Base delay.
    pub delay: Duration,
    /// Cap on any single delay.
    pub max_delay: Duration,
    /// Full jitter: each delay is drawn uniformly from `[0, computed delay]`.
    pub jitter: bool,
}

impl RetryPolicy {
    /// No retries.
    pub const NONE: RetryPolicy = RetryPolicy {
        max_retries: 0,
        backoff: Backoff::Exponential,
        delay: Duration::from_millis(100),
        max_delay: Duration::from_millis(10_000),
        jitter: true,
    };

    /// `n` retries with the default exponential backoff (100 ms base, 10 s cap, full jitter).
    pub const fn retries(n: u32) -> RetryPolicy {
        RetryPolicy {
            max_retries: n,
            ..Self::NONE
        }
    }

    /// The largest delay before retry `k` (0-based), before jitter.
    pub fn max_delay_before(&self, k: u32) -> Duration {
        match self.backoff {
            Backoff::None => Duration::ZERO,
            Backoff::Fixed => self.delay.min(self.max_delay),
            Backoff::Exponential => {
                let factor = 1u32.checked_shl(k.min(31)).unwrap_or(u32::MAX);
                self.delay.saturating_mul(factor).min(self.max_delay)
            }
        }
    }

    /// The sum of the largest delays over every retry: the most a call can sleep.
    pub fn total_max_delay(&self) -> Duration {
        (0..self.max_retries).fold(Duration::ZERO, |acc, k| {
            acc.saturating_add(self.max_delay_before(k))
        })
    }
}

/// A preset from the seed guide, selected with `policy = "read" | "write" | "report"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    /// 5 s timeout, 3 attempts, `read` bulkhead, idempotent.
    Read,
    /// 10 s timeout, 5 attempts, `write` bulkhead, not idempotent: only safe errors are retried.
    Write,
    /// 30 s timeout, no retry, `report` bulkhead.
    Report,
}

impl Preset {
    /// The attribute spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            Preset::Read => "read",
            Preset::Write => "write",
            Preset::Report => "report",
        }
    }
}

/// The effective policy of one operation.
///
/// Build it in a `static` with the `const fn` builder; every field has a default:
///
/// ```
/// use resilient_runtime::policy::{Policy, Backoff};
/// use resilient_runtime::bulkhead;
///
/// static FIND: Policy = Policy::new("UserRepo::find", module_path!())
///     .retry(2)
///     .backoff(Backoff::Fixed)
///     .delay_ms(50)
///     .timeout_ms(5_000)
///     .bulkhead(&bulkhead::READ);
/// assert_eq!(FIND.attempts(), 3);
/// ```
#[derive(Debug)]
pub struct Policy {
    name: &'static str,
    module: &'static str,
    preset: Option<Preset>,
    retry: RetryPolicy,
    timeout: Duration,
    deadline: Option<Duration>,
    bulkhead: Option<&'static BulkheadSpec>,
    breaker: Option<&'static BreakerSpec>,
    idempotent: Option<bool>,
    fallback: bool,
    cache: Option<&'static KeyTemplate>,
    ttl: Option<Duration>,
    stale: Duration,
    cache_capacity: Option<usize>,
    cache_none: bool,
    invalidate: &'static [&'static KeyTemplate],
    invalidate_prefix: &'static [&'static KeyTemplate],
    /// Process-wide registry slot, assigned once when first registered.
    slot: AtomicUsize,
}

/// Sentinel for "no registry slot yet".
pub(crate) const NO_SLOT: usize = usize::MAX;

impl Policy {
    /// Default attempt timeout when neither a preset nor `timeout_ms` sets one: 30 s.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

    /// A policy with defaults: no retry, 30 s attempt timeout, the `"database"` breaker,
    /// no bulkhead.
    pub const fn new(name: &'static str, module: &'static str) -> Self {
        Policy {
            name,
            module,
            preset: None,
            retry: RetryPolicy::NONE,
            timeout: Self::DEFAULT_TIMEOUT,
            deadline: None,
            bulkhead: None,
            breaker: Some(&crate::breaker::DATABASE),
            idempotent: None,
            fallback: false,
            cache: None,
            ttl: None,
            stale: Duration::ZERO,
            cache_capacity: None,
            cache_none: false,
            invalidate: &[],
            invalidate_prefix: &[],
            slot: AtomicUsize::new(NO_SLOT),
        }
    }

    /// Applies a preset. Call it first: later builder calls override it.
    pub const fn preset(mut self, preset: Preset) -> Self {
        self.preset = Some(preset);
        match preset {
            Preset::Read => {
                self.timeout = Duration::from_secs(5);
                self.retry.max_retries = 2;
                self.bulkhead = Some(&crate::bulkhead::READ);
            }
            Preset::Write => {
                self.timeout = Duration::from_secs(10);
                self.retry.max_retries = 4;
                self.bulkhead = Some(&crate::bulkhead::WRITE);
            }
            Preset::Report => {
                self.timeout = Duration::from_secs(30);
                self.retry.max_retries = 0;
                self.bulkhead = Some(&crate::bulkhead::REPORT);
            }
        }
        self
    }

    /// Retries after the first attempt.
    pub const fn retry(mut self, n: u32) -> Self {
        self.retry.max_retries = n;
        self
    }

    /// The backoff curve.
    pub const fn backoff(mut self, b: Backoff) -> Self {
        self.retry.backoff = b;
        self
    }

    /// Base backoff delay in milliseconds.
    pub const fn delay_ms(mut self, ms: u64) -> Self {
        self.retry.delay = Duration::from_millis(ms);
        self
    }

    /// Cap on one backoff delay in milliseconds.
    pub const fn max_delay_ms(mut self, ms: u64) -> Self {
        self.retry.max_delay = Duration::from_millis(ms);
        self
    }

    /// Full jitter on or off.
    pub const fn jitter(mut self, on: bool) -> Self {
        self.retry.jitter = on;
        self
    }

    /// Per-attempt timeout in milliseconds.
    pub const fn timeout_ms(mut self, ms: u64) -> Self {
        self.timeout = Duration::from_millis(ms);
        self
    }

    /// Deadline for the whole call in milliseconds.
    pub const fn deadline_ms(mut self, ms: u64) -> Self {
        self.deadline = Some(Duration::from_millis(ms));
        self
    }

    /// The bulkhead this operation runs in.
    pub const fn bulkhead(mut self, spec: &'static BulkheadSpec) -> Self {
        self.bulkhead = Some(spec);
        self
    }

    /// Runs outside any bulkhead.
    pub const fn no_bulkhead(mut self) -> Self {
        self.bulkhead = None;
        self
    }

    /// The circuit breaker this operation reports to.
    pub const fn breaker(mut self, spec: &'static BreakerSpec) -> Self {
        self.breaker = Some(spec);
        self
    }

    /// Reports to no circuit breaker.
    pub const fn no_breaker(mut self) -> Self {
        self.breaker = None;
        self
    }

    /// Declares whether running the operation twice is harmless.
    pub const fn idempotent(mut self, yes: bool) -> Self {
        self.idempotent = Some(yes);
        self
    }

    /// Marks that the operation has a fallback.
    pub const fn with_fallback(mut self) -> Self {
        self.fallback = true;
        self
    }

    /// Caches results under keys built from `template`.
    pub const fn cache(mut self, template: &'static KeyTemplate) -> Self {
        self.cache = Some(template);
        self
    }

    /// Time to live of cached results, in seconds (else the runtime's default).
    pub const fn ttl_s(mut self, s: u64) -> Self {
        self.ttl = Some(Duration::from_secs(s));
        self
    }

    /// How long past its TTL a cached result may be served when a load fails, in seconds.
    pub const fn stale_s(mut self, s: u64) -> Self {
        self.stale = Duration::from_secs(s);
        self
    }

    /// Maximum cached entries (else the runtime's default).
    pub const fn cache_capacity(mut self, n: usize) -> Self {
        self.cache_capacity = Some(n);
        self
    }

    /// Whether `Ok(None)` results are cached (negative caching). Off by default.
    pub const fn cache_none(mut self, yes: bool) -> Self {
        self.cache_none = yes;
        self
    }

    /// Keys this operation invalidates after it succeeds or fails ambiguously.
    pub const fn invalidate(mut self, templates: &'static [&'static KeyTemplate]) -> Self {
        self.invalidate = templates;
        self
    }

    /// Key prefixes this operation invalidates after it succeeds or fails ambiguously.
    pub const fn invalidate_prefix(mut self, templates: &'static [&'static KeyTemplate]) -> Self {
        self.invalidate_prefix = templates;
        self
    }

    /// The cache settings, if the operation caches.
    pub const fn cache_spec(&self) -> Option<CacheSpec> {
        match self.cache {
            Some(template) => Some(CacheSpec {
                template,
                ttl: self.ttl,
                stale: self.stale,
                capacity: self.cache_capacity,
                cache_none: self.cache_none,
            }),
            None => None,
        }
    }

    /// The key templates this operation invalidates.
    pub const fn invalidates(&self) -> &'static [&'static KeyTemplate] {
        self.invalidate
    }

    /// The key prefix templates this operation invalidates.
    pub const fn invalidates_prefixes(&self) -> &'static [&'static KeyTemplate] {
        self.invalidate_prefix
    }

    /// The operation's name, `Type::method` or `function`.
    pub const fn name(&self) -> &'static str {
        self.name
    }

    /// The module the operation was declared in.
    pub const fn module(&self) -> &'static str {
        self.module
    }

    /// The preset, if any.
    pub const fn preset_used(&self) -> Option<Preset> {
        self.preset
    }

    /// The retry settings.
    pub const fn retry_policy(&self) -> &RetryPolicy {
        &self.retry
    }

    /// Attempts in all: retries + 1.
    pub const fn attempts(&self) -> u32 {
        self.retry.max_retries.saturating_add(1)
    }

    /// The per-attempt timeout.
    pub const fn attempt_timeout(&self) -> Duration {
        self.timeout
    }

    /// The deadline for the whole call. When none was set it is derived: every attempt
    /// running to its timeout plus every backoff sleep at its cap.
    pub fn deadline(&self) -> Duration {
        match self.deadline {
            Some(d) => d,
            None => self
                .timeout
                .saturating_mul(self.attempts())
                .saturating_add(self.retry.total_max_delay()),
        }
    }

    /// Whether the deadline was set explicitly.
    pub const fn deadline_is_explicit(&self) -> bool {
        self.deadline.is_some()
    }

    /// The bulkhead, if any.
    pub const fn bulkhead_spec(&self) -> Option<&'static BulkheadSpec> {
        self.bulkhead
    }

    /// The breaker, if any.
    pub const fn breaker_spec(&self) -> Option<&'static BreakerSpec> {
        self.breaker
    }

    /// Whether an ambiguous failure may be retried. Defaults to `true`, except for the
    /// `write` preset and the `write` bulkhead, which default to `false`.
    pub fn is_idempotent(&self) -> bool {
        match self.idempotent {
            Some(v) => v,
            None => {
                !(matches!(self.preset, Some(Preset::Write))
                    || self.bulkhead.is_some_and(|b| b.name() == "write"))
            }
        }
    }

    /// Whether the operation has a fallback.
    pub const fn has_fallback(&self) -> bool {
        self.fallback
    }

    #[inline]
    pub(crate) fn slot(&self) -> usize {
        self.slot.load(Ordering::Relaxed)
    }

    /// Gives the policy a process-wide slot if it has none; returns the slot.
    pub(crate) fn assign_slot(&self, next: &AtomicUsize) -> usize {
        let current = self.slot.load(Ordering::Acquire);
        if current != NO_SLOT {
            return current;
        }
        let fresh = next.fetch_add(1, Ordering::Relaxed);
        match self
            .slot
            .compare_exchange(NO_SLOT, fresh, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => fresh,
            Err(existing) => existing,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_then_overrides() {
        static P: Policy = Policy::new("p", "m").preset(Preset::Write).retry(1);
        assert_eq!(P.attempts(), 2);
        assert_eq!(P.attempt_timeout(), Duration::from_secs(10));
        assert!(!P.is_idempotent());
        assert_eq!(P.bulkhead_spec().map(|b| b.name()), Some("write"));
    }

    #[test]
    fn idempotent_defaults_and_override() {
        static R: Policy = Policy::new("r", "m").preset(Preset::Read);
        static W: Policy = Policy::new("w", "m").bulkhead(&crate::bulkhead::WRITE);
        static WI: Policy = Policy::new("w", "m").preset(Preset::Write).idempotent(true);
        assert!(R.is_idempotent());
        assert!(!W.is_idempotent());
        assert!(WI.is_idempotent());
    }

    #[test]
    fn derived_deadline_covers_attempts_and_sleeps() {
        static P: Policy = Policy::new("p", "m")
            .retry(3)
            .timeout_ms(100)
            .delay_ms(10)
            .max_delay_ms(25);
        // 4 attempts × 100 ms + (10 + 20 + 25) ms of backoff.
        assert_eq!(P.deadline(), Duration::from_millis(455));
    }

    #[test]
    fn exponential_delays_are_capped() {
        let r = RetryPolicy {
            max_retries: 40,
            backoff: Backoff::Exponential,
            delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(10),
            jitter: false,
        };
        assert_eq!(r.max_delay_before(0), Duration::from_millis(100));
        assert_eq!(r.max_delay_before(3), Duration::from_millis(800));
        assert_eq!(r.max_delay_before(39), Duration::from_secs(10));
    }
}
