//! What the dashboard shows of the databases: pool statistics, a live health check,
//! and PostgreSQL's own view of the connections (`pg_stat_activity`).

use diesel::QueryableByName;
use diesel::sql_types::BigInt;
use diesel_async::RunQueryDsl;
use serde::Serialize;

use super::conn::Conn;
use super::{DbPool, PoolStatus};
use crate::Runtime;

/// The health of every pool, checked now.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct DatabaseHealth {
    /// Whether every pool answered its check.
    pub healthy: bool,
    /// One entry per pool.
    pub pools: Vec<PoolHealth>,
}

/// One pool: statistics, a live `SELECT 1`, and server-side connection counts.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct PoolHealth {
    /// bb8's statistics (no URL: only the pool's name and backend).
    pub status: PoolStatus,
    /// The check just made.
    pub health: HealthView,
    /// Connections to this database as PostgreSQL sees them (`None` on SQLite or if
    /// the query failed).
    pub activity: Option<Activity>,
}

/// A health check's outcome.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HealthView {
    /// Whether `SELECT 1` answered in time.
    pub healthy: bool,
    /// Checkout plus query, in milliseconds.
    pub latency_ms: f64,
    /// Why it failed, redacted.
    pub error: Option<String>,
}

/// Connections to the current database, from `pg_stat_activity`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, QueryableByName)]
pub struct Activity {
    /// All connections.
    #[diesel(sql_type = BigInt)]
    pub total: i64,
    /// Running a statement.
    #[diesel(sql_type = BigInt)]
    pub active: i64,
    /// Idle.
    #[diesel(sql_type = BigInt)]
    pub idle: i64,
}

const ACTIVITY: &str = "SELECT count(*) AS total, \
     count(*) FILTER (WHERE state = 'active') AS active, \
     count(*) FILTER (WHERE state = 'idle') AS idle \
     FROM pg_stat_activity WHERE datname = current_database()";

async fn activity(pool: &DbPool) -> Option<Activity> {
    let query = crate::timeout::with_timeout(pool.config().pool_health_timeout(), async {
        let mut conn = pool.conn().await.ok()?;
        match &mut conn {
            #[cfg(feature = "postgres")]
            Conn::Postgres(c) => diesel::sql_query(ACTIVITY)
                .get_result::<Activity>(&mut **c)
                .await
                .ok(),
            #[cfg(feature = "sqlite")]
            Conn::Sqlite(_) => None,
        }
    });
    query.await.ok().flatten()
}

impl Runtime {
    /// Checks every pool now (`SELECT 1` within its health timeout) and reads
    /// PostgreSQL's connection counts. Never fails: failures are in the result.
    pub async fn database_health(&self) -> DatabaseHealth {
        let mut pools = Vec::new();
        for pool in self.pools() {
            let report = pool.check().await;
            let activity = if report.healthy {
                activity(pool).await
            } else {
                None
            };
            pools.push(PoolHealth {
                status: pool.status(),
                health: HealthView {
                    healthy: report.healthy,
                    latency_ms: report.latency.as_secs_f64() * 1000.0,
                    error: report.error,
                },
                activity,
            });
        }
        DatabaseHealth {
            healthy: pools.iter().all(|p| p.health.healthy),
            pools,
        }
    }
}
