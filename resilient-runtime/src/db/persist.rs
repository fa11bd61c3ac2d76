//! Periodic persistence of metrics snapshots into a `resilience_metrics` table (the
//! seed's `startMetricsPersistence`), on PostgreSQL and SQLite.

use std::time::Duration;

use diesel::sql_types::{BigInt, Integer, Text};
use diesel_async::RunQueryDsl;
use tokio::sync::watch;

use super::conn::Conn;
use super::health::MonitorHandle;
use super::{DbError, DbPool};
use crate::Runtime;
use crate::breaker::BreakerState;

/// The table's schema on PostgreSQL. [`Runtime::persist_metrics`] creates it if needed.
pub const METRICS_TABLE_POSTGRES: &str = "CREATE TABLE IF NOT EXISTS resilience_metrics (
    id BIGSERIAL PRIMARY KEY,
    recorded_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    calls BIGINT NOT NULL,
    failures BIGINT NOT NULL,
    retries BIGINT NOT NULL,
    rejections BIGINT NOT NULL,
    stale_served BIGINT NOT NULL,
    open_breakers INTEGER NOT NULL,
    snapshot JSONB NOT NULL
)";

/// The table's schema on SQLite.
pub const METRICS_TABLE_SQLITE: &str = "CREATE TABLE IF NOT EXISTS resilience_metrics (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    recorded_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP,
    calls BIGINT NOT NULL,
    failures BIGINT NOT NULL,
    retries BIGINT NOT NULL,
    rejections BIGINT NOT NULL,
    stale_served BIGINT NOT NULL,
    open_breakers INTEGER NOT NULL,
    snapshot TEXT NOT NULL
)";

/// Why a snapshot could not be persisted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PersistError {
    /// No connection could be had.
    #[error(transparent)]
    Db(#[from] DbError),
    /// The statement failed.
    #[error("writing resilience_metrics failed: {0}")]
    Query(#[from] diesel::result::Error),
    /// The snapshot could not be serialized.
    #[error("serializing the snapshot failed: {0}")]
    Serialize(#[from] serde_json::Error),
}

/// Settings of [`Runtime::start_metrics_persistence`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct PersistConfig {
    /// Time between two rows (default 5 minutes).
    pub interval: Duration,
    /// The pool to write to; `None` is the default pool.
    pub pool: Option<&'static str>,
}

impl Default for PersistConfig {
    fn default() -> Self {
        PersistConfig {
            interval: Duration::from_secs(300),
            pool: None,
        }
    }
}

impl PersistConfig {
    /// The default settings with another interval.
    pub fn every(interval: Duration) -> Self {
        PersistConfig {
            interval,
            ..Self::default()
        }
    }

    /// Writes to the pool named `pool`.
    pub fn pool(mut self, pool: &'static str) -> Self {
        self.pool = Some(pool);
        self
    }
}

fn pool_of<'a>(rt: &'a Runtime, name: Option<&str>) -> Result<&'a DbPool, DbError> {
    match name {
        Some(n) => rt.pool(n).ok_or_else(|| DbError::UnknownPool {
            name: n.to_string(),
        }),
        None => rt.default_pool().ok_or(DbError::NoPool),
    }
}

impl Runtime {
    /// Writes one snapshot row into `resilience_metrics` (creating the table if needed),
    /// then [resets](Runtime::reset_metrics) the counters: each row covers the time since
    /// the previous one. On failure nothing is reset.
    pub async fn persist_metrics(&self, pool: Option<&str>) -> Result<(), PersistError> {
        let pool = pool_of(self, pool)?;
        let snapshot = self.snapshot();
        let t = &snapshot.totals;
        let stale: u64 = snapshot
            .operations
            .iter()
            .filter_map(|o| o.cache.as_ref())
            .map(|c| c.stale_served)
            .sum();
        let open = snapshot
            .breakers
            .iter()
            .filter(|b| b.state != BreakerState::Closed)
            .count();
        let json = serde_json::to_string(&snapshot)?;
        let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        let values = (
            n(t.calls),
            n(t.failures.total()),
            n(t.retries),
            n(t.rejections.breaker_open + t.rejections.bulkhead_full + t.rejections.shutting_down),
            n(stale),
            i32::try_from(open).unwrap_or(i32::MAX),
        );
        let mut conn = pool.conn().await?;
        macro_rules! write {
            ($c:expr, $schema:expr, $insert:expr) => {{
                diesel::sql_query($schema).execute($c).await?;
                diesel::sql_query($insert)
                    .bind::<BigInt, _>(values.0)
                    .bind::<BigInt, _>(values.1)
                    .bind::<BigInt, _>(values.2)
                    .bind::<BigInt, _>(values.3)
                    .bind::<BigInt, _>(values.4)
                    .bind::<Integer, _>(values.5)
                    .bind::<Text, _>(&json)
                    .execute($c)
                    .await?;
            }};
        }
        match &mut conn {
            #[cfg(feature = "postgres")]
            Conn::Postgres(c) => write!(
                &mut **c,
                METRICS_TABLE_POSTGRES,
                "INSERT INTO resilience_metrics \
                 (calls, failures, retries, rejections, stale_served, open_breakers, snapshot) \
                 VALUES ($1, $2, $3, $4, $5, $6, CAST($7 AS JSONB))"
            ),
            #[cfg(feature = "sqlite")]
            Conn::Sqlite(c) => write!(
                &mut **c,
                METRICS_TABLE_SQLITE,
                "INSERT INTO resilience_metrics \
                 (calls, failures, retries, rejections, stale_served, open_breakers, snapshot) \
                 VALUES (?, ?, ?, ?, ?, ?, ?)"
            ),
        }
        drop(conn);
        self.reset_metrics();
        Ok(())
    }

    /// Persists a snapshot every `config.interval` (the first after one interval), and
    /// once more when stopped or at shutdown, before the pools close. A failed write is
    /// logged and retried at the next tick; it never stops the task.
    pub fn start_metrics_persistence(&self, config: PersistConfig) -> MonitorHandle {
        let (stop, mut stopped) = watch::channel(false);
        let rt = self.clone();
        let task = tokio::spawn(async move {
            let every = config.interval.max(Duration::from_millis(1));
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let last = tokio::select! {
                    _ = stopped.wait_for(|s| *s) => true,
                    _ = tick.tick() => false,
                };
                if let Err(e) = rt.persist_metrics(config.pool).await {
                    tracing::warn!(error = %e, "could not persist resilience metrics");
                }
                if last {
                    break;
                }
            }
        });
        MonitorHandle::register(self, stop, task)
    }
}
