//! Health checks, breaker probes and the periodic monitor.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use diesel_async::RunQueryDsl;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::conn::Conn;
use super::pool::DbPool;
use crate::Runtime;
use crate::breaker::BreakerState;

/// The outcome of one `SELECT 1` health check.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HealthReport {
    /// The pool checked.
    pub pool: &'static str,
    /// Whether a connection was checked out and `SELECT 1` answered in time.
    pub healthy: bool,
    /// Checkout plus query.
    pub latency: Duration,
    /// Why it failed, redacted.
    pub error: Option<String>,
}

impl DbPool {
    /// Checks out a connection and runs `SELECT 1`, within the pool's
    /// [`health_timeout`](crate::db::DbConfig::health_timeout). Never fails: the
    /// outcome is in the report.
    pub async fn check(&self) -> HealthReport {
        let start = Instant::now();
        // `with_timeout` drops a late check as a cancelled attempt, so its connection
        // gets the cancel-on-drop treatment like any other.
        let outcome = crate::timeout::with_timeout(self.config().pool_health_timeout(), async {
            let mut conn = self.conn().await.map_err(|e| e.to_string())?;
            select_one(&mut conn).await
        })
        .await;
        let latency = start.elapsed();
        let error = match outcome {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(self.shared().redactor.redact(&e)),
            Err(_) => {
                let timeout = self.config().pool_health_timeout();
                let mut message = format!("no answer to `SELECT 1` within {timeout:?}");
                // Still waiting for a connection? Say why none came.
                if let Some(cause) = self.shared().recent_error(timeout + Duration::from_secs(1)) {
                    message.push_str(": ");
                    message.push_str(&cause);
                }
                Some(message)
            }
        };
        let report = HealthReport {
            pool: self.name(),
            healthy: error.is_none(),
            latency,
            error,
        };
        *self
            .shared()
            .last_health
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(report.clone());
        report
    }

    /// A [`check`](Self::check) that also feeds the pool's breaker (by default
    /// `"database"`) in `rt`:
    ///
    /// - closed: the outcome is recorded like a call's (a success or a failure);
    /// - open and past its reset timeout: the probe takes the half-open trial permit, so
    ///   that a breaker opened by an outage closes again without waiting for traffic;
    /// - open within its reset timeout, or half-open with every trial slot taken: the
    ///   check runs, but nothing is recorded.
    pub async fn probe(&self, rt: &Runtime) -> HealthReport {
        let breaker = self
            .config()
            .health_breaker()
            .and_then(|name| rt.breaker(name));
        // `state()` moves an open breaker past its reset timeout to half-open first, so
        // `Open` here means "still cooling down": leave it alone (and uncounted).
        let permit = breaker
            .filter(|b| b.state() != BreakerState::Open)
            .and_then(|b| b.try_acquire().ok());
        let report = self.check().await;
        if let Some(permit) = permit {
            if report.healthy {
                permit.success();
            } else {
                permit.failure();
            }
        }
        report
    }
}

async fn select_one(conn: &mut Conn) -> Result<(), String> {
    let query = diesel::sql_query("SELECT 1");
    let result = match conn {
        #[cfg(feature = "postgres")]
        Conn::Postgres(c) => query.execute(&mut **c).await,
        #[cfg(feature = "sqlite")]
        Conn::Sqlite(c) => query.execute(&mut **c).await,
    };
    result.map(drop).map_err(|e| e.to_string())
}

/// Settings of the health monitor started by [`Runtime::start_health_monitor`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct MonitorConfig {
    /// Time between two rounds of checks (default 60 s). The first round runs at once.
    pub interval: Duration,
    /// A check slower than this is logged as a warning (default 500 ms).
    pub slow_threshold: Duration,
}

impl MonitorConfig {
    /// Every 60 s; slow above 500 ms.
    pub const DEFAULT: MonitorConfig = MonitorConfig {
        interval: Duration::from_secs(60),
        slow_threshold: Duration::from_millis(500),
    };

    /// Sets the interval.
    pub const fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// Sets the slow-check threshold.
    pub const fn slow_threshold(mut self, threshold: Duration) -> Self {
        self.slow_threshold = threshold;
        self
    }
}

impl Default for MonitorConfig {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// A running health monitor. [`stop`](Self::stop) ends it; dropping the handle leaves
/// it running until [`Runtime::shutdown`](crate::Runtime::shutdown).
#[derive(Debug)]
#[must_use = "keep the handle to stop the monitor; dropping it leaves the monitor running until shutdown"]
pub struct MonitorHandle {
    inner: Arc<Monitor>,
}

#[derive(Debug)]
pub(crate) struct Monitor {
    stop: watch::Sender<bool>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Monitor {
    /// Signals the task and waits for it to end.
    pub(crate) async fn stop(&self) {
        self.stop.send_replace(true);
        let task = self
            .task
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

impl MonitorHandle {
    /// Registers a background task of the runtime's databases: `stop` signals it, and
    /// shutdown stops it before the pools close.
    pub(crate) fn register(
        rt: &Runtime,
        stop: watch::Sender<bool>,
        task: JoinHandle<()>,
    ) -> MonitorHandle {
        let monitor = Arc::new(Monitor {
            stop,
            task: Mutex::new(Some(task)),
        });
        rt.databases().add_monitor(Arc::clone(&monitor));
        MonitorHandle { inner: monitor }
    }

    /// Stops the monitor and waits until its task has ended (a check in progress is
    /// abandoned).
    pub async fn stop(self) {
        self.inner.stop().await;
    }

    /// Whether the monitor's task is still running.
    pub fn is_running(&self) -> bool {
        self.inner
            .task
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .is_some_and(|t| !t.is_finished())
    }
}

impl Runtime {
    /// Starts probing every database pool of this runtime periodically: each round runs
    /// [`DbPool::probe`] on each pool, which feeds the pool's breaker; a failed check is
    /// logged as an error, a slow one as a warning, through `tracing`.
    ///
    /// Runs on the current tokio runtime until [`MonitorHandle::stop`] or
    /// [`Runtime::shutdown`]. The task holds a clone of this runtime.
    ///
    /// ```no_run
    /// # async fn demo(rt: resilient_runtime::Runtime) {
    /// use std::time::Duration;
    /// use resilient_runtime::db::MonitorConfig;
    ///
    /// let monitor = rt.start_health_monitor(MonitorConfig::DEFAULT.interval(Duration::from_secs(15)));
    /// // ...
    /// monitor.stop().await;
    /// # }
    /// ```
    pub fn start_health_monitor(&self, config: MonitorConfig) -> MonitorHandle {
        let (stop, mut stopped) = watch::channel(false);
        let rt = self.clone();
        let task = tokio::spawn(async move {
            let mut interval = tokio::time::interval(config.interval.max(Duration::from_millis(1)));
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tracing::debug!(interval = ?config.interval, "database health monitor started");
            loop {
                tokio::select! {
                    _ = stopped.wait_for(|s| *s) => break,
                    _ = interval.tick() => {}
                }
                let round = async {
                    for pool in rt.databases().pools() {
                        if pool.is_closed() {
                            continue;
                        }
                        log_report(&pool.probe(&rt).await, config.slow_threshold);
                    }
                };
                tokio::select! {
                    _ = stopped.wait_for(|s| *s) => break,
                    () = round => {}
                }
            }
            tracing::debug!("database health monitor stopped");
        });
        let monitor = Arc::new(Monitor {
            stop,
            task: Mutex::new(Some(task)),
        });
        self.databases().add_monitor(Arc::clone(&monitor));
        MonitorHandle { inner: monitor }
    }
}

fn log_report(report: &HealthReport, slow: Duration) {
    let latency_ms = report.latency.as_secs_f64() * 1000.0;
    match &report.error {
        Some(error) => {
            tracing::error!(pool = report.pool, latency_ms, error = %error, "database health check failed")
        }
        None if report.latency > slow => tracing::warn!(
            pool = report.pool,
            latency_ms,
            threshold_ms = slow.as_secs_f64() * 1000.0,
            "database health check slow"
        ),
        None => tracing::debug!(pool = report.pool, latency_ms, "database healthy"),
    }
}
