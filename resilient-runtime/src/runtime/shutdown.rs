//! Graceful shutdown: stop admitting, drain in-flight calls within a deadline.

use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::time::Instant;

use super::Runtime;

/// What [`Runtime::shutdown`] achieved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Whether every in-flight call finished before the deadline.
    pub drained: bool,
    /// Calls still in flight when the drain ended.
    pub in_flight_left: usize,
    /// How long the drain took.
    pub waited: Duration,
}

impl Runtime {
    /// Calls currently between admission and return, over all operations.
    pub fn in_flight(&self) -> usize {
        self.inner
            .ops
            .iter()
            .flatten()
            .map(|op| op.in_flight.sum(Ordering::SeqCst))
            .fold(0u64, u64::wrapping_add) as usize
    }

    /// Shuts down gracefully:
    ///
    /// 1. new calls are rejected with [`Rejection::ShuttingDown`](crate::Rejection::ShuttingDown);
    /// 2. calls in flight (including those sleeping between retries) may finish, for up
    ///    to `drain`;
    /// 3. the database health monitors (and other background tasks) stop;
    /// 4. the database pools close: no new checkouts, and each pool is dropped once its
    ///    checked-out connections are back (waited for while `drain` lasts; later ones
    ///    close when they are returned).
    ///
    /// Calling it again only waits again.
    pub async fn shutdown(&self, drain: Duration) -> ShutdownReport {
        let start = Instant::now();
        let report = self.drain_calls(drain).await;
        self.databases()
            .close(crate::timeout::instant_after(start, drain))
            .await;
        report
    }

    /// Steps 1 and 2 of [`shutdown`](Self::shutdown).
    async fn drain_calls(&self, drain: Duration) -> ShutdownReport {
        let start = Instant::now();
        if !self.inner.shutting_down.swap(true, Ordering::SeqCst) {
            tracing::info!(
                in_flight = self.in_flight(),
                ?drain,
                "resilience runtime shutting down"
            );
        }
        let end = crate::timeout::instant_after(start, drain);
        loop {
            // Register interest before checking, so a call finishing in between still wakes us.
            let notified = self.drained().notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let left = self.in_flight();
            if left == 0 {
                break;
            }
            if tokio::time::timeout_at(end, notified).await.is_err() {
                let left = self.in_flight();
                tracing::warn!(
                    in_flight = left,
                    ?drain,
                    "shutdown drain deadline passed with calls in flight"
                );
                return ShutdownReport {
                    drained: left == 0,
                    in_flight_left: left,
                    waited: start.elapsed(),
                };
            }
        }
        tracing::info!(waited = ?start.elapsed(), "resilience runtime drained");
        ShutdownReport {
            drained: true,
            in_flight_left: 0,
            waited: start.elapsed(),
        }
    }
}

impl Runtime {
    /// Waits for SIGINT (Ctrl-C) or, on Unix, SIGTERM, then [`shutdown`](Self::shutdown)s
    /// with `drain`. Fails only if the signal handlers cannot be installed.
    ///
    /// ```no_run
    /// # async fn serve() {}
    /// # async fn demo(rt: resilient_runtime::Runtime) -> std::io::Result<()> {
    /// use std::time::Duration;
    ///
    /// tokio::select! {
    ///     () = serve() => {}
    ///     report = rt.shutdown_on_signal(Duration::from_secs(30)) => {
    ///         let report = report?;
    ///         eprintln!("drained: {}", report.drained);
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn shutdown_on_signal(&self, drain: Duration) -> std::io::Result<ShutdownReport> {
        let signal = wait_for_signal().await?;
        tracing::info!(signal, "shutdown signal received");
        Ok(self.shutdown(drain).await)
    }
}

async fn wait_for_signal() -> std::io::Result<&'static str> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r.map(|()| "SIGINT"),
            _ = term.recv() => Ok("SIGTERM"),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await.map(|()| "Ctrl-C")
    }
}
