//! Property tests and bad input.
//!
//! - The circuit breaker and the bulkhead against plain reference models, driven by random
//!   sequences of outcomes, cancellations and clock advances (tokio's paused clock, one
//!   current-thread runtime per case).
//! - The standalone cache against a map with TTLs.
//! - The database URL parser: arbitrary strings never panic, pool parameters round-trip
//!   and are stripped, passwords never show.
//! - Bad input end to end: malformed `DATABASE_URL`s, bad pool parameters, an unreachable
//!   host and a wrong password (a throwaway server with `scram-sha-256`): typed errors,
//!   never a panic, never the password.

#[path = "reliability/cluster.rs"]
mod cluster;

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use proptest::prelude::*;
use resilient::breaker::{
    BreakerConfig, BreakerPermit, BreakerState, CircuitBreaker, FailureRateWindow,
};
use resilient::bulkhead::{Acquire, Bulkhead, BulkheadPermit};
use resilient::cache::{Cache, CacheKey};
use resilient::db::{ConfigError, DATABASE_URL, DbConfig, DbError, PROFILE_VAR};
use resilient::{Classify, ErrorClass, Rejection, Runtime};

fn paused_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a current-thread runtime")
}

// ===================================================================================
// Circuit breaker
// ===================================================================================

#[derive(Debug, Clone, Copy, PartialEq)]
enum Outcome {
    Success,
    Failure,
    Ignore,
    /// The permit is dropped without a report (a cancelled attempt).
    Drop,
}

#[derive(Debug, Clone)]
enum BreakerOp {
    Acquire,
    Settle(usize, Outcome),
    Advance(u64),
    Observe,
}

fn breaker_op() -> impl Strategy<Value = BreakerOp> {
    let outcome = prop_oneof![
        Just(Outcome::Success),
        Just(Outcome::Failure),
        Just(Outcome::Ignore),
        Just(Outcome::Drop),
    ];
    prop_oneof![
        4 => Just(BreakerOp::Acquire),
        6 => (any::<usize>(), outcome).prop_map(|(i, o)| BreakerOp::Settle(i, o)),
        2 => (0u64..700).prop_map(BreakerOp::Advance),
        2 => Just(BreakerOp::Observe),
    ]
}

fn breaker_config() -> impl Strategy<Value = BreakerConfig> {
    let window = prop_oneof![
        Just(None),
        (1u32..8, 1u8..=100, 1u32..8).prop_map(|(size, rate, min)| Some(FailureRateWindow {
            size,
            failure_rate_percent: rate,
            minimum_calls: min.min(size),
        })),
    ];
    (1u32..5, 1u64..500, 1u32..4, 1u32..4, window).prop_map(
        |(threshold, reset_ms, successes, max_calls, window)| BreakerConfig {
            failure_threshold: threshold,
            reset_timeout: Duration::from_millis(reset_ms),
            half_open_successes: successes,
            half_open_max_calls: max_calls,
            window,
        },
    )
}

/// The breaker's documented rules, written the plain way.
#[derive(Debug)]
struct BreakerModel {
    config: BreakerConfig,
    now: Duration,
    state: BreakerState,
    /// Bumped on every transition: a permit of an older epoch reports nothing.
    epoch: u64,
    failures: u32,
    in_flight: u32,
    trial_successes: u32,
    opened_at: Duration,
    opened_total: u64,
    rejected_total: u64,
    /// Outcomes of the current closed period, newest last (`true` = failure).
    window: VecDeque<bool>,
}

#[derive(Debug, Clone, Copy)]
struct ModelPermit {
    state: BreakerState,
    epoch: u64,
    /// Failures counted when the permit was issued.
    failures: u32,
}

impl BreakerModel {
    fn new(config: BreakerConfig) -> Self {
        BreakerModel {
            config,
            now: Duration::ZERO,
            state: BreakerState::Closed,
            epoch: 0,
            failures: 0,
            in_flight: 0,
            trial_successes: 0,
            opened_at: Duration::ZERO,
            opened_total: 0,
            rejected_total: 0,
            window: VecDeque::new(),
        }
    }

    fn enter(&mut self, state: BreakerState) {
        self.state = state;
        self.epoch += 1;
        self.failures = 0;
        self.in_flight = 0;
        self.trial_successes = 0;
        match state {
            BreakerState::Open => {
                self.opened_at = self.now;
                self.opened_total += 1;
            }
            BreakerState::Closed => self.window.clear(),
            BreakerState::HalfOpen => {}
        }
    }

    fn cooled_down(&self) -> bool {
        self.state == BreakerState::Open && self.now - self.opened_at >= self.config.reset_timeout
    }

    /// What `state()` and `snapshot()` do first.
    fn refresh(&mut self) {
        if self.cooled_down() {
            self.enter(BreakerState::HalfOpen);
        }
    }

    fn acquire(&mut self) -> Option<ModelPermit> {
        if self.cooled_down() {
            self.enter(BreakerState::HalfOpen);
        }
        match self.state {
            BreakerState::Closed => {}
            BreakerState::HalfOpen if self.in_flight < self.config.half_open_max_calls => {
                self.in_flight += 1;
            }
            _ => {
                self.rejected_total += 1;
                return None;
            }
        }
        Some(ModelPermit {
            state: self.state,
            epoch: self.epoch,
            failures: self.failures,
        })
    }

    /// Records a closed-period outcome in the failure-rate window; whether it trips.
    fn window_trips(&mut self, failed: bool) -> bool {
        let Some(w) = self.config.window else {
            return false;
        };
        self.window.push_back(failed);
        while self.window.len() > w.size as usize {
            self.window.pop_front();
        }
        let recorded = self.window.len() as u64;
        let failures = self.window.iter().filter(|f| **f).count() as u64;
        recorded >= u64::from(w.minimum_calls)
            && failures * 100 >= u64::from(w.failure_rate_percent) * recorded
    }

    fn settle(&mut self, permit: ModelPermit, outcome: Outcome) {
        let outcome = if outcome == Outcome::Drop {
            Outcome::Ignore
        } else {
            outcome
        };
        if permit.state != self.state || permit.epoch != self.epoch {
            return; // stale: the breaker moved on
        }
        match (self.state, outcome) {
            (BreakerState::Closed, Outcome::Ignore) => {}
            // A success lowers the count only if failures were counted at issue.
            (BreakerState::Closed, Outcome::Success)
                if permit.failures == 0 && self.config.window.is_none() => {}
            (BreakerState::Closed, Outcome::Success) => {
                if self.window_trips(false) {
                    self.enter(BreakerState::Open);
                } else {
                    self.failures = self.failures.saturating_sub(1);
                }
            }
            (BreakerState::Closed, _) => {
                let tripped = self.window_trips(true);
                self.failures += 1;
                if tripped || self.failures >= self.config.failure_threshold {
                    self.enter(BreakerState::Open);
                }
            }
            (BreakerState::HalfOpen, Outcome::Ignore) => self.in_flight -= 1,
            (BreakerState::HalfOpen, Outcome::Success) => {
                if self.trial_successes + 1 >= self.config.half_open_successes {
                    self.enter(BreakerState::Closed);
                } else {
                    self.in_flight -= 1;
                    self.trial_successes += 1;
                }
            }
            (BreakerState::HalfOpen, _) => self.enter(BreakerState::Open),
            (BreakerState::Open, _) => {}
        }
    }
}

fn check_breaker(config: BreakerConfig, ops: Vec<BreakerOp>) -> Result<(), TestCaseError> {
    paused_runtime().block_on(async move {
        let breaker = CircuitBreaker::new("model", config);
        let mut model = BreakerModel::new(config);
        let mut permits: Vec<(BreakerPermit<'_>, ModelPermit)> = Vec::new();
        for (step, op) in ops.into_iter().enumerate() {
            match op {
                BreakerOp::Acquire => {
                    let real = breaker.try_acquire();
                    let expected = model.acquire();
                    match (real, expected) {
                        (Ok(p), Some(m)) => {
                            prop_assert_eq!(p.state(), m.state, "step {}: permit state", step);
                            permits.push((p, m));
                        }
                        (Err(r), None) => {
                            prop_assert!(
                                matches!(r, Rejection::BreakerOpen { breaker: "model" }),
                                "step {step}: {r:?}"
                            );
                            prop_assert_eq!(r.class(), ErrorClass::Rejected);
                        }
                        (real, expected) => prop_assert!(
                            false,
                            "step {step}: breaker {:?}, model {expected:?} ({model:?})",
                            real.map(|p| p.state())
                        ),
                    }
                }
                BreakerOp::Settle(i, outcome) => {
                    if permits.is_empty() {
                        continue;
                    }
                    let (permit, m) = permits.swap_remove(i % permits.len());
                    match outcome {
                        Outcome::Success => permit.success(),
                        Outcome::Failure => permit.failure(),
                        Outcome::Ignore => permit.ignore(),
                        Outcome::Drop => drop(permit),
                    }
                    model.settle(m, outcome);
                }
                BreakerOp::Advance(ms) => {
                    tokio::time::advance(Duration::from_millis(ms)).await;
                    model.now += Duration::from_millis(ms);
                }
                BreakerOp::Observe => {
                    model.refresh();
                    let s = breaker.snapshot();
                    prop_assert_eq!(s.state, model.state, "step {}: state ({:?})", step, model);
                    prop_assert_eq!(breaker.state(), model.state);
                    prop_assert_eq!(s.failures, model.failures, "step {}: failures", step);
                    prop_assert_eq!(s.half_open_in_flight, model.in_flight, "step {}", step);
                    prop_assert_eq!(
                        s.half_open_successes,
                        model.trial_successes,
                        "step {}",
                        step
                    );
                    prop_assert_eq!(s.opened_total, model.opened_total, "step {}", step);
                    prop_assert_eq!(s.rejected_total, model.rejected_total, "step {}", step);
                }
            }
            // Whatever happened, the half-open trials never exceed their limit.
            prop_assert!(model.in_flight <= config.half_open_max_calls);
        }
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// The lock-free breaker behaves like the reference model for any interleaving of
    /// acquisitions, reports (success, failure, ignore, dropped permit) and clock advances.
    #[test]
    fn breaker_matches_its_model(config in breaker_config(), ops in prop::collection::vec(breaker_op(), 1..80)) {
        check_breaker(config, ops)?;
    }
}

// ===================================================================================
// Bulkhead
// ===================================================================================

#[derive(Debug, Clone)]
enum BulkheadOp {
    TryAcquire,
    /// Creates an `acquire()` future and polls it once.
    Acquire,
    /// Polls a pending `acquire()` future again.
    Poll(usize),
    /// Drops a pending `acquire()` future (a caller giving up, e.g. a timeout).
    Cancel(usize),
    /// Drops a held permit.
    Release(usize),
}

fn bulkhead_op() -> impl Strategy<Value = BulkheadOp> {
    prop_oneof![
        2 => Just(BulkheadOp::TryAcquire),
        4 => Just(BulkheadOp::Acquire),
        3 => any::<usize>().prop_map(BulkheadOp::Poll),
        2 => any::<usize>().prop_map(BulkheadOp::Cancel),
        4 => any::<usize>().prop_map(BulkheadOp::Release),
    ]
}

/// Slots, a FIFO queue, and the waiters handed a slot but not yet polled.
#[derive(Debug, Default)]
struct BulkheadModel {
    max_concurrent: usize,
    max_queue: usize,
    /// Slots taken: held permits plus slots granted to waiters not yet polled.
    executing: usize,
    queue: VecDeque<u64>,
    granted: HashSet<u64>,
    rejected: u64,
}

impl BulkheadModel {
    fn drain(&mut self) {
        while self.executing < self.max_concurrent {
            let Some(front) = self.queue.pop_front() else {
                break;
            };
            self.executing += 1;
            self.granted.insert(front);
        }
    }

    fn release(&mut self) {
        self.executing -= 1;
        self.drain();
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Admitted {
    Now,
    Queued,
    Rejected,
}

fn poll_once<'a>(fut: &mut Pin<Box<Acquire<'a>>>) -> Poll<Result<BulkheadPermit<'a>, Rejection>> {
    fut.as_mut().poll(&mut Context::from_waker(Waker::noop()))
}

fn check_bulkhead(
    max_concurrent: usize,
    max_queue: usize,
    ops: Vec<BulkheadOp>,
) -> Result<(), TestCaseError> {
    paused_runtime().block_on(async move {
        let bulkhead = Bulkhead::new("model", max_concurrent, max_queue);
        let mut model = BulkheadModel {
            max_concurrent,
            max_queue,
            ..BulkheadModel::default()
        };
        let mut held: Vec<BulkheadPermit<'_>> = Vec::new();
        let mut pending: Vec<(u64, Pin<Box<Acquire<'_>>>)> = Vec::new();
        let mut next_id = 0u64;
        for (step, op) in ops.into_iter().enumerate() {
            match op {
                BulkheadOp::TryAcquire => {
                    let expected = model.queue.is_empty() && model.executing < max_concurrent;
                    let got = bulkhead.try_acquire();
                    prop_assert_eq!(got.is_some(), expected, "step {}: try_acquire", step);
                    if let Some(p) = got {
                        model.executing += 1;
                        held.push(p);
                    }
                }
                BulkheadOp::Acquire => {
                    let id = next_id;
                    next_id += 1;
                    let expected = if max_concurrent == 0 {
                        Admitted::Rejected
                    } else if model.queue.is_empty() && model.executing < max_concurrent {
                        Admitted::Now
                    } else if model.queue.len() >= model.max_queue {
                        Admitted::Rejected
                    } else {
                        Admitted::Queued
                    };
                    let mut fut = Box::pin(bulkhead.acquire());
                    let got = match poll_once(&mut fut) {
                        Poll::Ready(Ok(p)) => {
                            held.push(p);
                            Admitted::Now
                        }
                        Poll::Ready(Err(r)) => {
                            let full = matches!(
                                r,
                                Rejection::BulkheadFull {
                                    bulkhead: "model",
                                    ..
                                }
                            );
                            prop_assert!(full, "step {}: {:?}", step, r);
                            Admitted::Rejected
                        }
                        Poll::Pending => {
                            pending.push((id, fut));
                            Admitted::Queued
                        }
                    };
                    prop_assert_eq!(&got, &expected, "step {}: acquire", step);
                    match expected {
                        Admitted::Now => model.executing += 1,
                        Admitted::Rejected => model.rejected += 1,
                        Admitted::Queued => {
                            model.queue.push_back(id);
                            model.drain();
                        }
                    }
                }
                BulkheadOp::Poll(i) => {
                    if pending.is_empty() {
                        continue;
                    }
                    let at = i % pending.len();
                    let id = pending[at].0;
                    match poll_once(&mut pending[at].1) {
                        Poll::Ready(Ok(p)) => {
                            prop_assert!(
                                model.granted.remove(&id),
                                "step {step}: {id} was not granted yet"
                            );
                            held.push(p);
                            drop(pending.swap_remove(at));
                        }
                        Poll::Ready(Err(r)) => {
                            prop_assert!(false, "step {step}: a queued caller failed: {r:?}")
                        }
                        Poll::Pending => prop_assert!(
                            !model.granted.contains(&id),
                            "step {step}: {id} was granted but its future is pending"
                        ),
                    }
                }
                BulkheadOp::Cancel(i) => {
                    if pending.is_empty() {
                        continue;
                    }
                    let (id, fut) = pending.swap_remove(i % pending.len());
                    drop(fut);
                    if model.granted.remove(&id) {
                        model.release(); // the slot it never picked up passes on
                    } else {
                        model.queue.retain(|q| *q != id);
                    }
                }
                BulkheadOp::Release(i) => {
                    if held.is_empty() {
                        continue;
                    }
                    drop(held.swap_remove(i % held.len()));
                    model.release();
                }
            }
            prop_assert_eq!(
                bulkhead.executing(),
                model.executing,
                "step {}: executing",
                step
            );
            prop_assert_eq!(
                bulkhead.waiting(),
                model.queue.len(),
                "step {}: waiting",
                step
            );
            prop_assert_eq!(
                bulkhead.rejected(),
                model.rejected,
                "step {}: rejected",
                step
            );
            prop_assert!(bulkhead.executing() <= max_concurrent, "over the limit");
            prop_assert!(bulkhead.waiting() <= max_queue, "over the queue");
            prop_assert_eq!(held.len() + model.granted.len(), model.executing);
        }
        let s = bulkhead.snapshot();
        prop_assert!(s.peak_executing <= max_concurrent && s.peak_waiting <= max_queue);
        // Everything given back: the bulkhead is empty again.
        drop(pending);
        drop(held);
        prop_assert_eq!(bulkhead.executing(), 0);
        prop_assert_eq!(bulkhead.waiting(), 0);
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Slots, FIFO queue, rejections and hand-offs match the model for any sequence of
    /// acquisitions, polls, cancellations and releases; the limits always hold.
    #[test]
    fn bulkhead_matches_its_model(
        max_concurrent in 0usize..4,
        max_queue in 0usize..4,
        ops in prop::collection::vec(bulkhead_op(), 1..80),
    ) {
        check_bulkhead(max_concurrent, max_queue, ops)?;
    }
}

// ===================================================================================
// Cache
// ===================================================================================

#[derive(Debug, Clone)]
enum CacheOp {
    Insert(u8, u32),
    Get(u8),
    Invalidate(u8),
    InvalidateAll,
    Advance(u64),
}

fn cache_op() -> impl Strategy<Value = CacheOp> {
    prop_oneof![
        4 => (0u8..4, any::<u32>()).prop_map(|(k, v)| CacheOp::Insert(k, v)),
        4 => (0u8..4).prop_map(CacheOp::Get),
        1 => (0u8..4).prop_map(CacheOp::Invalidate),
        1 => Just(CacheOp::InvalidateAll),
        2 => (0u64..1_500).prop_map(CacheOp::Advance),
    ]
}

fn key(k: u8) -> CacheKey {
    CacheKey::new().lit("user:").part(&k)
}

const TTL: Duration = Duration::from_secs(1);
const CAPACITY: usize = 100;

/// Runs `ops` on a cache and on a map with expiry times; returns the cache's stats.
fn check_cache(ops: &[CacheOp]) -> Result<resilient::cache::CacheStats, TestCaseError> {
    paused_runtime().block_on(async move {
        let cache: Cache<u32> = Cache::new("model", CAPACITY, TTL, Duration::from_secs(5));
        let mut model: HashMap<u8, (u32, Duration)> = HashMap::new();
        let mut now = Duration::ZERO;
        for (step, op) in ops.iter().enumerate() {
            match *op {
                CacheOp::Insert(k, v) => {
                    cache.insert(key(k), v);
                    model.insert(k, (v, now + TTL));
                }
                CacheOp::Get(k) => {
                    let expected = model
                        .get(&k)
                        .filter(|(_, until)| now < *until)
                        .map(|(v, _)| *v);
                    prop_assert_eq!(cache.get(&key(k)), expected, "step {}: get {}", step, k);
                }
                CacheOp::Invalidate(k) => {
                    cache.invalidate(&key(k));
                    model.remove(&k);
                }
                CacheOp::InvalidateAll => {
                    cache.invalidate_prefix(&CacheKey::new().lit("user:"));
                    model.clear();
                }
                CacheOp::Advance(ms) => {
                    tokio::time::advance(Duration::from_millis(ms)).await;
                    now += Duration::from_millis(ms);
                }
            }
        }
        Ok(cache.stats())
    })
}

proptest! {
    /// `get` returns exactly the values a map with expiry times holds: TTL on tokio's
    /// clock, invalidation of a key and of a prefix.
    #[test]
    fn cache_matches_its_model(ops in prop::collection::vec(cache_op(), 1..60)) {
        let stats = check_cache(&ops)?;
        prop_assert!(stats.entries <= 4);
    }
}

/// Four keys in a cache of a hundred: nothing is ever evicted "to respect the capacity".
/// Fails: `CacheStats::evictions` also counts every replacement of an existing key
/// (quick_cache reports the replaced value through `Lifecycle::on_evict`).
#[test]
fn cache_refreshes_are_not_evictions() {
    let ops: Vec<CacheOp> = (0..10).map(|v| CacheOp::Insert(1, v)).collect();
    let stats = check_cache(&ops).unwrap();
    assert_eq!(stats.entries, 1);
    assert_eq!(stats.evictions, 0, "{stats:?}");
}

// ===================================================================================
// Database URLs
// ===================================================================================

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Every way `config` could show itself.
fn shown(config: &DbConfig) -> String {
    format!("{config} {config:?} {config:#?} {}", config.redacted_url())
}

fn assert_hidden(what: &str, text: &str, password: &str) -> Result<(), TestCaseError> {
    prop_assert!(
        !text.contains(password) && !text.contains(&encode(password)),
        "{} shows the password {:?}: {}",
        what,
        password,
        text
    );
    Ok(())
}

/// A password that cannot appear in a URL by accident: a marker, then anything printable.
fn password() -> impl Strategy<Value = String> {
    "[ -~]{0,16}".prop_map(|tail| format!("Zq9x{tail}"))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1_000, ..ProptestConfig::default() })]

    /// Any string: a typed result, never a panic; a parsed URL shows without panicking
    /// and never shows the pool parameters.
    #[test]
    fn arbitrary_urls_never_panic(url in prop_oneof![
        any::<String>(),
        "(postgres|postgresql|sqlite|file|mysql|POSTGRES|)(:|://|:/)[ -~]{0,60}",
        "postgres://[a-z:@%0-9.]{0,20}/[a-z]{0,5}\\?[a-z_=&%0-9-]{0,40}",
    ]) {
        match DbConfig::parse(&url) {
            Ok(config) => {
                let text = shown(&config);
                prop_assert!(!config.redacted_url().contains("connection_limit="), "{}", text);
                prop_assert!(!config.redacted_url().contains("pool_timeout="), "{}", text);
                prop_assert!(config.pool_size() >= 1);
                let _ = config.validate();
            }
            Err(e) => {
                prop_assert!(!e.to_string().is_empty());
                let _ = format!("{e:?}");
            }
        }
    }

    /// Valid `connection_limit` and `pool_timeout` come back exactly, wherever they sit
    /// among other parameters; they are removed from the URL and the others are kept.
    #[test]
    fn pool_parameters_round_trip(
        limit in 1u32..=u32::MAX,
        timeout in 1u64..=86_400,
        order in 0usize..6,
        sqlite in any::<bool>(),
    ) {
        let mut params = [
            format!("connection_limit={limit}"),
            format!("pool_timeout={timeout}"),
            "application_name=api".to_string(),
        ];
        params.rotate_left(order % 3);
        if order >= 3 {
            params.swap(0, 1);
        }
        let base = if sqlite { "sqlite://data/app.db" } else { "postgres://app@127.0.0.1:5432/app" };
        let url = format!("{base}?{}", params.join("&"));
        let config = DbConfig::parse(&url).map_err(|e| TestCaseError::fail(format!("{url}: {e}")))?;
        prop_assert_eq!(config.pool_size(), limit);
        prop_assert_eq!(config.pool_acquire_timeout(), Duration::from_secs(timeout));
        let shown = config.redacted_url();
        prop_assert!(!shown.contains("connection_limit") && !shown.contains("pool_timeout"), "{}", shown);
        prop_assert!(shown.contains("application_name=api"), "{}", shown);
        if !sqlite {
            prop_assert_eq!(config.pool_application_name(), "api");
        }
        // The builder still wins over the URL.
        let overridden = config.max_size(3).acquire_timeout(Duration::from_millis(250));
        prop_assert_eq!(overridden.pool_size(), 3);
        prop_assert_eq!(overridden.pool_acquire_timeout(), Duration::from_millis(250));
    }

    /// Out-of-range or non-numeric pool parameters are `InvalidParam` naming the parameter.
    #[test]
    fn bad_pool_parameters_are_typed_errors(
        which in any::<bool>(),
        value in prop_oneof![
            Just("0".to_string()),
            Just("-1".to_string()),
            Just(String::new()),
            "-[0-9]{1,6}",
            "[a-z]{1,6}",
            "[0-9]{1,3}\\.[0-9]{1,3}",
            (86_401u64..u64::MAX).prop_map(|n| n.to_string()),
        ],
    ) {
        let (param, value) = if which {
            ("connection_limit", value)
        } else {
            ("pool_timeout", value)
        };
        // A connection_limit above u32::MAX is as invalid as any other.
        let value = if which && value.parse::<u64>().is_ok() && value.parse::<u32>().is_ok() && value != "0" {
            format!("{value}0000000000")
        } else {
            value
        };
        let url = format!("postgres://app@127.0.0.1/app?{param}={value}");
        match DbConfig::parse(&url) {
            Err(ConfigError::InvalidParam { param: p, .. }) => prop_assert_eq!(p, param),
            other => prop_assert!(false, "{}: {:?}", url, other.map(|c| c.to_string())),
        }
    }

    /// A password, encoded or not, in the userinfo or as a `password` parameter, never
    /// shows in the configuration's Display or Debug, nor in any error about the URL.
    #[test]
    fn a_password_never_shows(
        password in password(),
        in_query in any::<bool>(),
        bad_param in any::<bool>(),
        raw in any::<bool>(),
    ) {
        // Raw, the password must not change the URL's structure.
        let raw = raw && !password.contains(['@', '/', '?', '#', '%', ':', ' ', '&', '=', '[', ']', '\\', '^', '`', '{', '}', '|', '"', '<', '>']);
        let spelled = if raw { password.clone() } else { encode(&password) };
        let extra = if bad_param { "&connection_limit=lots" } else { "&connection_limit=4" };
        let url = if in_query {
            format!("postgres://app@127.0.0.1:5432/app?password={spelled}{extra}")
        } else {
            format!("postgres://app:{spelled}@127.0.0.1:5432/app?sslmode=disable{extra}")
        };
        match DbConfig::parse(&url) {
            Ok(config) => {
                prop_assert!(!bad_param, "{} parsed", url);
                assert_hidden("DbConfig", &shown(&config), &password)?;
                let err = config.max_size(0).validate().unwrap_err();
                assert_hidden("validate", &format!("{err} {err:?}"), &password)?;
            }
            Err(e) => assert_hidden("ConfigError", &format!("{e} {e:?}"), &password)?,
        }
    }
}

// ===================================================================================
// Bad input, end to end
// ===================================================================================

fn lookup(url: &str) -> impl Fn(&str) -> Result<Option<String>, ConfigError> + '_ {
    move |var| {
        Ok(match var {
            DATABASE_URL => Some(url.to_string()),
            PROFILE_VAR => Some("production".to_string()),
            _ => None,
        })
    }
}

#[test]
fn malformed_database_urls_are_typed_errors() {
    type Expect = fn(&ConfigError) -> bool;
    let cases: &[(&str, Expect)] = &[
        ("", |e| matches!(e, ConfigError::InvalidUrl { .. })),
        ("   ", |e| matches!(e, ConfigError::InvalidUrl { .. })),
        ("localhost:5432", |e| {
            matches!(
                e,
                ConfigError::UnsupportedScheme { .. } | ConfigError::InvalidUrl { .. }
            )
        }),
        ("postgres://app:hunter2@[::1/app", |e| {
            matches!(e, ConfigError::InvalidUrl { .. })
        }),
        ("postgres://app:hunter2@host:99999/app", |e| {
            matches!(e, ConfigError::InvalidUrl { .. })
        }),
        ("postgres://app:hunter2@host/app?sslmode=sometimes", |e| {
            matches!(e, ConfigError::InvalidUrl { .. })
        }),
        ("postgres://app:hunter2@host/app?no_such_option=1", |e| {
            matches!(e, ConfigError::InvalidUrl { .. })
        }),
        (
            "redis://app:hunter2@host/0",
            |e| matches!(e, ConfigError::UnsupportedScheme { scheme } if scheme == "redis"),
        ),
        ("sqlite://", |e| matches!(e, ConfigError::InvalidUrl { .. })),
        (
            "postgres://app:hunter2@host/app?connection_limit=abc",
            |e| {
                matches!(
                    e,
                    ConfigError::InvalidParam {
                        param: "connection_limit",
                        ..
                    }
                )
            },
        ),
        ("postgres://app:hunter2@host/app?connection_limit=0", |e| {
            matches!(
                e,
                ConfigError::InvalidParam {
                    param: "connection_limit",
                    ..
                }
            )
        }),
        ("postgres://app:hunter2@host/app?pool_timeout=-1", |e| {
            matches!(
                e,
                ConfigError::InvalidParam {
                    param: "pool_timeout",
                    ..
                }
            )
        }),
        ("postgres://app:hunter2@host/app?pool_timeout=abc", |e| {
            matches!(
                e,
                ConfigError::InvalidParam {
                    param: "pool_timeout",
                    ..
                }
            )
        }),
    ];
    for (url, expected) in cases {
        let err = DbConfig::from_lookup(lookup(url)).unwrap_err();
        assert!(expected(&err), "{url:?}: {err:?}");
        let text = format!("{err} {err:?}");
        assert!(
            !text.contains("hunter2"),
            "{url:?} leaks the password: {text}"
        );
        assert!(!err.to_string().is_empty());
    }
    let missing = DbConfig::from_lookup(|_| Ok(None)).unwrap_err();
    assert_eq!(missing, ConfigError::MissingVar { var: DATABASE_URL });
}

const SECRET: &str = "s3cr3t-Zq9";

fn assert_no_secret(what: &str, text: &str, secrets: &[&str]) {
    for s in secrets {
        assert!(!text.contains(s), "{what} shows {s:?}: {text}");
        assert!(
            !text.contains(&encode(s)),
            "{what} shows {s:?} encoded: {text}"
        );
    }
}

/// A closed loopback port: the checkout fails with `Unavailable`, says "refused", and
/// never shows the password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_host_is_a_typed_unavailable_error() {
    let port = cluster::free_port();
    let url = format!(
        "postgres://app:{}@127.0.0.1:{port}/app?connection_limit=2&pool_timeout=1",
        encode(SECRET)
    );
    let config = DbConfig::parse(&url)
        .unwrap()
        .acquire_timeout(Duration::from_millis(300));
    assert_no_secret("DbConfig", &format!("{config} {config:?}"), &[SECRET]);
    let rt = Runtime::builder().database("main", config).build().unwrap();
    let err = rt.scope(resilient::db::conn()).await.unwrap_err();
    let DbError::Unavailable { cause, .. } = &err else {
        panic!("expected Unavailable, got {err:?}");
    };
    let cause = cause.as_deref().unwrap_or_default().to_lowercase();
    eprintln!("unreachable host: {err}");
    assert!(cause.contains("refused"), "{cause}");
    assert_eq!(err.class(), ErrorClass::Unavailable);
    assert_no_secret("DbError", &format!("{err} {err:?}"), &[SECRET]);
    let report = rt.pool("main").unwrap().check().await;
    assert!(!report.healthy);
    assert_no_secret("HealthReport", &format!("{report:?}"), &[SECRET]);
    rt.shutdown(Duration::from_secs(1)).await;
}

/// A server that wants a password: the wrong one is a typed `Unavailable` error naming
/// the authentication failure, with neither password shown; the right one connects
/// (through a URL with pool parameters, which must not reach the driver).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_a_typed_error_that_never_shows_it() {
    let right = "R1ght-pw-Zq9";
    let server = tokio::task::spawn_blocking(move || {
        cluster::PgServer::start_with(
            "auth",
            &cluster::Options {
                superuser_password: Some(right.to_string()),
            },
        )
    })
    .await
    .unwrap();
    let url = |pw: &str| {
        format!(
            "postgres://postgres:{}@127.0.0.1:{}/postgres?connection_limit=2&pool_timeout=2",
            encode(pw),
            server.port
        )
    };

    let rt = Runtime::builder()
        .database(
            "wrong",
            DbConfig::parse(&url(SECRET))
                .unwrap()
                .acquire_timeout(Duration::from_millis(500)),
        )
        .database("right", DbConfig::parse(&url(right)).unwrap())
        .build()
        .unwrap();
    let err = rt
        .scope(resilient::db::conn_from("wrong"))
        .await
        .unwrap_err();
    eprintln!("wrong password: {err}");
    let DbError::Unavailable { cause, .. } = &err else {
        panic!("expected Unavailable, got {err:?}");
    };
    assert!(
        cause
            .as_deref()
            .is_some_and(|c| c.contains("password authentication failed")),
        "{err}"
    );
    let pool = rt.pool("wrong").unwrap();
    for text in [
        format!("{err} {err:?}"),
        format!("{:?}", pool.status()),
        format!("{pool:?}"),
        pool.last_error().unwrap_or_default(),
        format!("{:?}", pool.check().await),
    ] {
        assert_no_secret("the wrong password's pool", &text, &[SECRET, right]);
    }

    let mut conn = rt.scope(resilient::db::conn_from("right")).await.unwrap();
    {
        use diesel_async::RunQueryDsl as _;
        diesel::sql_query("SELECT 1")
            .execute(conn.pg().unwrap())
            .await
            .unwrap();
    }
    drop(conn);
    rt.shutdown(Duration::from_secs(2)).await;
    drop(server);
}
