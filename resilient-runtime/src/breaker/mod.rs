//! Circuit breakers.
//!
//! A [`CircuitBreaker`] is closed while the backend is healthy, opens after
//! [`failure_threshold`](BreakerConfig::failure_threshold) net failures (or when the
//! optional [failure-rate window](FailureRateWindow) trips), rejects every call while
//! open, and after [`reset_timeout`](BreakerConfig::reset_timeout) lets a bounded number
//! of trial calls through (half-open) to decide whether to close again.
//!
//! The whole state lives in one `AtomicU64` (state, generation, failure count or
//! half-open counters), so there is no lock anywhere, and a call through a healthy
//! breaker (closed, no failures counted, no window) only loads it, once, when its permit
//! is issued. A success lowers the failure count by one when failures were counted at
//! the time its permit was issued.

mod error;
mod outcome;
mod permit;
mod spec;
mod state;
mod window;

#[cfg(test)]
mod outcome_tests;
#[cfg(test)]
mod tests;

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use tokio::time::Instant;

use crate::padded::CachePadded;
use crate::{Classify, Rejection};
use state::{HALF_OPEN_FIELD_MAX, Word};
use window::{FailureWindow, MAX_WINDOW};

pub use error::BreakerError;
pub use permit::BreakerPermit;
pub use spec::{BreakerConfig, BreakerSpec, DATABASE, FailureRateWindow};
pub use state::BreakerState;

/// A lock-free circuit breaker.
///
/// Take a [`BreakerPermit`] with [`try_acquire`](Self::try_acquire) before each attempt
/// and report its outcome on the permit, or let [`call`](Self::call) do both.
///
/// Time is read from [`tokio::time::Instant`], so a paused tokio clock drives it in
/// tests; it is read only while open and when opening.
///
/// ```
/// use resilient_runtime::breaker::{BreakerConfig, BreakerError, BreakerState, CircuitBreaker};
/// use resilient_runtime::{Classify, ErrorClass};
///
/// #[derive(Debug)]
/// struct ConnectionRefused;
///
/// impl Classify for ConnectionRefused {
///     fn class(&self) -> ErrorClass {
///         ErrorClass::Unavailable
///     }
/// }
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let config = BreakerConfig { failure_threshold: 2, ..BreakerConfig::DEFAULT };
/// let breaker = CircuitBreaker::new("replica", config);
/// let rt = tokio::runtime::Builder::new_current_thread().enable_time().build()?;
/// rt.block_on(async {
///     assert_eq!(breaker.call(async { Ok::<_, ConnectionRefused>(1) }).await.ok(), Some(1));
///     for _ in 0..2 {
///         let _ = breaker.call(async { Err::<(), _>(ConnectionRefused) }).await;
///     }
///     assert_eq!(breaker.state(), BreakerState::Open);
///     let refused = breaker.call(async { Ok::<_, ConnectionRefused>(2) }).await;
///     assert!(matches!(refused, Err(BreakerError::Rejected(_))));
/// });
///
/// // The same with a permit, when the call is not a single future.
/// breaker.reset();
/// let permit = breaker.try_acquire()?;
/// permit.success();
/// # Ok(())
/// # }
/// ```
pub struct CircuitBreaker {
    /// On its own cache lines, so writes to the counters next to it (rejections while
    /// open) do not slow down the loads of the healthy path.
    word: CachePadded<AtomicU64>,
    name: &'static str,
    config: BreakerConfig,
    reset_nanos: u64,
    epoch: Instant,
    /// When the breaker last opened, in nanoseconds since `epoch`. Written after the CAS
    /// that opened it, so it is trusted only once `opened_generation` matches the word.
    opened_at: AtomicU64,
    opened_generation: AtomicU32,
    opened_total: AtomicU64,
    transitions_total: AtomicU64,
    rejected_total: AtomicU64,
    window: Option<FailureWindow>,
}

/// A point-in-time view of a [`CircuitBreaker`], for metrics and admin pages.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[non_exhaustive]
pub struct BreakerSnapshot {
    /// The breaker's name.
    pub name: &'static str,
    /// The current state.
    pub state: BreakerState,
    /// Failures counted in the current closed period (0 when not closed).
    pub failures: u32,
    /// Times the breaker has opened (re-opening from half-open included).
    pub opened_total: u64,
    /// State transitions of every kind (to open, half-open and closed).
    pub transitions_total: u64,
    /// Half-open trial calls currently running (0 when not half-open).
    pub half_open_in_flight: u32,
    /// Successful trial calls in the current half-open period (0 when not half-open).
    pub half_open_successes: u32,
    /// Calls rejected because the breaker was open or every trial slot was taken.
    pub rejected_total: u64,
    /// Failed share of the calls in the failure-rate window, in percent; `None` when no
    /// window is configured.
    pub failure_rate_percent: Option<f64>,
}

impl CircuitBreaker {
    /// A closed breaker.
    ///
    /// Out-of-range settings are clamped rather than rejected: `failure_threshold`,
    /// `half_open_successes` and `half_open_max_calls` to at least 1 (the last two to at
    /// most 65 535), the window's `size` to 1..=1024, `failure_rate_percent` to 1..=100
    /// and `minimum_calls` to 1..=`size`. [`config`](Self::config) returns the clamped values.
    pub fn new(name: &'static str, config: BreakerConfig) -> Self {
        let config = normalize(config);
        Self {
            word: CachePadded(AtomicU64::new(Word::INITIAL.raw())),
            name,
            config,
            reset_nanos: u64::try_from(config.reset_timeout.as_nanos()).unwrap_or(u64::MAX),
            epoch: Instant::now(),
            opened_at: AtomicU64::new(0),
            // Not a valid 30-bit generation: no open time is known yet.
            opened_generation: AtomicU32::new(u32::MAX),
            opened_total: AtomicU64::new(0),
            transitions_total: AtomicU64::new(0),
            rejected_total: AtomicU64::new(0),
            window: config.window.as_ref().map(FailureWindow::new),
        }
    }

    /// A closed breaker with the spec's name and configuration.
    pub fn from_spec(spec: &BreakerSpec) -> Self {
        Self::new(spec.name(), *spec.config())
    }

    /// The breaker's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The configuration in effect, after clamping (see [`new`](Self::new)).
    pub fn config(&self) -> &BreakerConfig {
        &self.config
    }

    /// The current state.
    ///
    /// An open breaker whose reset timeout has passed is moved to half-open here, just as
    /// [`try_acquire`](Self::try_acquire) would, so the answer never lags behind the clock.
    pub fn state(&self) -> BreakerState {
        self.refresh().state()
    }

    /// Asks for permission to make one call.
    ///
    /// Closed: always granted. Open: rejected with [`Rejection::BreakerOpen`] until the
    /// reset timeout has passed, then the breaker turns half-open and this call becomes
    /// its first trial. Half-open: granted while fewer than
    /// [`half_open_max_calls`](BreakerConfig::half_open_max_calls) trials are running,
    /// rejected otherwise.
    #[inline]
    pub fn try_acquire(&self) -> Result<BreakerPermit<'_>, Rejection> {
        let word = self.load();
        if word.state() == BreakerState::Closed {
            return Ok(BreakerPermit::new(self, word));
        }
        self.try_acquire_slow(word)
    }

    /// [`try_acquire`](Self::try_acquire) when the breaker is not closed.
    #[inline(never)]
    fn try_acquire_slow(&self, mut word: Word) -> Result<BreakerPermit<'_>, Rejection> {
        loop {
            let next = match word.state() {
                BreakerState::Closed => return Ok(BreakerPermit::new(self, word)),
                BreakerState::HalfOpen if word.in_flight() < self.config.half_open_max_calls => {
                    let generation = word.generation();
                    Word::half_open(generation, word.in_flight() + 1, word.trial_successes())
                }
                BreakerState::Open if self.reset_elapsed(word) => {
                    Word::half_open(word.next_generation(), 1, 0)
                }
                BreakerState::HalfOpen | BreakerState::Open => return Err(self.reject()),
            };
            match self.swap_word(word, next) {
                Ok(()) => return Ok(BreakerPermit::new(self, next)),
                Err(actual) => word = actual,
            }
        }
    }

    /// Runs `fut` under a permit and records its outcome: `Ok` as a success, `Err` by its
    /// [`ErrorClass`](crate::ErrorClass) (see [`BreakerPermit::record`]). When the breaker
    /// rejects the call, `fut` is dropped unpolled. If the returned future is dropped
    /// mid-call, the permit is dropped too, which ignores the outcome.
    pub async fn call<T, E, F>(&self, fut: F) -> Result<T, BreakerError<E>>
    where
        F: Future<Output = Result<T, E>>,
        E: Classify,
    {
        let permit = self.try_acquire()?;
        match fut.await {
            Ok(value) => {
                permit.success();
                Ok(value)
            }
            Err(e) => {
                permit.record(e.class());
                Err(BreakerError::Inner(e))
            }
        }
    }

    /// A point-in-time view. Like [`state`](Self::state), it first moves an open breaker
    /// whose reset timeout has passed to half-open.
    pub fn snapshot(&self) -> BreakerSnapshot {
        let word = self.refresh();
        self.snapshot_of(word)
    }

    /// Forces the breaker closed and zeroes every count: failures, half-open counters,
    /// the failure-rate window, `opened_total` and `rejected_total`. Permits issued
    /// before the reset are stale and their outcomes are dropped.
    pub fn reset(&self) {
        let mut word = self.load();
        loop {
            match self.swap_word(word, Word::closed(word.next_generation(), 0)) {
                Ok(()) => break,
                Err(actual) => word = actual,
            }
        }
        // A transition to closed clears it too; closed-to-closed does not transition.
        if let Some(window) = &self.window {
            window.clear();
        }
        self.opened_total.store(0, Ordering::Relaxed);
        self.transitions_total.store(0, Ordering::Relaxed);
        self.rejected_total.store(0, Ordering::Relaxed);
    }

    /// Forces the breaker open, starting a fresh reset timeout. Does nothing if it is
    /// already open (the running timeout is kept).
    pub fn force_open(&self) {
        let mut word = self.load();
        while word.state() != BreakerState::Open {
            match self.swap_word(word, Word::open(word.next_generation())) {
                Ok(()) => return,
                Err(actual) => word = actual,
            }
        }
    }

    #[inline]
    fn load(&self) -> Word {
        Word::from_raw(self.word.0.load(Ordering::Acquire))
    }

    /// Open and past its reset timeout: move to half-open (with no trial taken yet).
    fn refresh(&self) -> Word {
        let mut word = self.load();
        while word.state() == BreakerState::Open && self.reset_elapsed(word) {
            let next = Word::half_open(word.next_generation(), 0, 0);
            match self.swap_word(word, next) {
                Ok(()) => return next,
                Err(actual) => word = actual,
            }
        }
        word
    }

    /// One CAS from `from` to `to`; when the state changes, the side effects of the
    /// transition follow. On failure, returns the word actually found.
    fn swap_word(&self, from: Word, to: Word) -> Result<(), Word> {
        self.word
            .0
            .compare_exchange(from.raw(), to.raw(), Ordering::AcqRel, Ordering::Acquire)
            .map_err(Word::from_raw)?;
        if from.state() != to.state() {
            self.on_transition(from.state(), to);
        }
        Ok(())
    }

    /// Runs once per transition, by the thread whose CAS made it.
    fn on_transition(&self, from: BreakerState, to: Word) {
        let (breaker, from_name, to_name) = (self.name, from.as_str(), to.state().as_str());
        self.transitions_total.fetch_add(1, Ordering::Relaxed);
        match to.state() {
            BreakerState::Open => {
                self.opened_at.store(self.now_nanos(), Ordering::Relaxed);
                self.opened_generation
                    .store(to.generation(), Ordering::Release);
                self.opened_total.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    breaker,
                    from = from_name,
                    to = to_name,
                    "circuit breaker opened"
                );
            }
            BreakerState::HalfOpen => {
                tracing::info!(
                    breaker,
                    from = from_name,
                    to = to_name,
                    "circuit breaker half-open"
                );
            }
            BreakerState::Closed => {
                if let Some(window) = &self.window {
                    window.clear();
                }
                tracing::info!(
                    breaker,
                    from = from_name,
                    to = to_name,
                    "circuit breaker closed"
                );
            }
        }
    }

    /// Whether the open period of `word` has lasted the reset timeout. Until the thread
    /// that opened it has published the open time, the period counts as just begun.
    fn reset_elapsed(&self, word: Word) -> bool {
        if self.opened_generation.load(Ordering::Acquire) != word.generation() {
            return false;
        }
        let opened_at = self.opened_at.load(Ordering::Relaxed);
        self.now_nanos().saturating_sub(opened_at) >= self.reset_nanos
    }

    fn now_nanos(&self) -> u64 {
        let elapsed = Instant::now().saturating_duration_since(self.epoch);
        u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX)
    }

    fn reject(&self) -> Rejection {
        self.rejected_total.fetch_add(1, Ordering::Relaxed);
        Rejection::BreakerOpen { breaker: self.name }
    }

    fn snapshot_of(&self, word: Word) -> BreakerSnapshot {
        BreakerSnapshot {
            name: self.name,
            state: word.state(),
            failures: word.failures(),
            opened_total: self.opened_total.load(Ordering::Relaxed),
            transitions_total: self.transitions_total.load(Ordering::Relaxed),
            half_open_in_flight: word.in_flight(),
            half_open_successes: word.trial_successes(),
            rejected_total: self.rejected_total.load(Ordering::Relaxed),
            failure_rate_percent: self
                .window
                .as_ref()
                .map(FailureWindow::failure_rate_percent),
        }
    }
}

impl fmt::Debug for CircuitBreaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // No `refresh` here: formatting must not move the breaker.
        let snapshot = self.snapshot_of(self.load());
        f.debug_struct("CircuitBreaker")
            .field("name", &self.name)
            .field("state", &snapshot.state)
            .field("failures", &snapshot.failures)
            .field("half_open_in_flight", &snapshot.half_open_in_flight)
            .field("opened_total", &snapshot.opened_total)
            .field("rejected_total", &snapshot.rejected_total)
            .field("window", &self.window)
            .field("config", &self.config)
            .finish()
    }
}

/// Clamps settings the state word cannot hold or that would wedge the breaker (a
/// half-open state admitting no trial would never close).
fn normalize(mut config: BreakerConfig) -> BreakerConfig {
    config.failure_threshold = config.failure_threshold.max(1);
    config.half_open_successes = config.half_open_successes.clamp(1, HALF_OPEN_FIELD_MAX);
    config.half_open_max_calls = config.half_open_max_calls.clamp(1, HALF_OPEN_FIELD_MAX);
    if let Some(window) = &mut config.window {
        window.size = window.size.clamp(1, MAX_WINDOW);
        window.failure_rate_percent = window.failure_rate_percent.clamp(1, 100);
        window.minimum_calls = window.minimum_calls.clamp(1, window.size);
    }
    config
}
