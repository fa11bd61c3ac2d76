//! The static declaration of a circuit breaker.

use std::time::Duration;

/// An optional failure-rate rule, evaluated over the last `size` calls.
///
/// The breaker opens when at least `minimum_calls` of the last `size` recorded calls
/// are known and `failure_rate_percent` or more of them failed, in addition to the
/// consecutive-failure threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureRateWindow {
    /// Number of most recent calls considered (1..=1024).
    pub size: u32,
    /// Failure rate, in percent, at or above which the breaker opens (1..=100).
    pub failure_rate_percent: u8,
    /// Calls that must be recorded in the window before the rate is evaluated.
    pub minimum_calls: u32,
}

/// How a circuit breaker decides to open and to close again.
///
/// Defaults: 5 failures open it, 30 s until half-open, 2 half-open successes close it,
/// at most 2 trial calls in half-open, no failure-rate window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Failures (net of closed-state successes) that open the breaker.
    pub failure_threshold: u32,
    /// Time spent open before trial calls are admitted.
    pub reset_timeout: Duration,
    /// Successful trial calls that close a half-open breaker.
    pub half_open_successes: u32,
    /// Trial calls admitted at once while half-open; other calls are rejected.
    pub half_open_max_calls: u32,
    /// Optional failure-rate rule.
    pub window: Option<FailureRateWindow>,
}

impl BreakerConfig {
    /// The defaults described on the type.
    pub const DEFAULT: BreakerConfig = BreakerConfig {
        failure_threshold: 5,
        reset_timeout: Duration::from_secs(30),
        half_open_successes: 2,
        half_open_max_calls: 2,
        window: None,
    };
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// A named circuit breaker as declared in code.
///
/// The built-in breaker is [`DATABASE`](crate::breaker::DATABASE). Declare a custom one as a
/// `static` and reference it by path:
///
/// ```
/// use resilient_runtime::breaker::{BreakerConfig, BreakerSpec};
/// use std::time::Duration;
///
/// pub static REPLICA: BreakerSpec = BreakerSpec::new("replica")
///     .failure_threshold(3)
///     .reset_timeout(Duration::from_secs(10));
/// // #[resilient(breaker = REPLICA)]
/// assert_eq!(REPLICA.config().failure_threshold, 3);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerSpec {
    name: &'static str,
    config: BreakerConfig,
}

impl BreakerSpec {
    /// A breaker with the default configuration.
    pub const fn new(name: &'static str) -> Self {
        Self {
            name,
            config: BreakerConfig::DEFAULT,
        }
    }

    /// A breaker with the given configuration.
    pub const fn with_config(name: &'static str, config: BreakerConfig) -> Self {
        Self { name, config }
    }

    /// Sets the failure threshold.
    pub const fn failure_threshold(mut self, n: u32) -> Self {
        self.config.failure_threshold = n;
        self
    }

    /// Sets the time spent open before half-open.
    pub const fn reset_timeout(mut self, d: Duration) -> Self {
        self.config.reset_timeout = d;
        self
    }

    /// Sets the successes needed to close from half-open.
    pub const fn half_open_successes(mut self, n: u32) -> Self {
        self.config.half_open_successes = n;
        self
    }

    /// Sets the number of trial calls admitted at once while half-open.
    pub const fn half_open_max_calls(mut self, n: u32) -> Self {
        self.config.half_open_max_calls = n;
        self
    }

    /// Adds a failure-rate window.
    pub const fn window(mut self, window: FailureRateWindow) -> Self {
        self.config.window = Some(window);
        self
    }

    /// The breaker's name.
    pub const fn name(&self) -> &'static str {
        self.name
    }

    /// The breaker's configuration.
    pub const fn config(&self) -> &BreakerConfig {
        &self.config
    }
}

/// The built-in breaker shared by every operation that names no other: `"database"`.
pub static DATABASE: BreakerSpec = BreakerSpec::new("database");
