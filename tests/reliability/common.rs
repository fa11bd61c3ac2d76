//! What every scenario shares: the repository error type, direct (unpooled) admin
//! queries against a scenario's server, polling, the serial lock, and heap accounting.

#![allow(dead_code)]

use std::time::Duration;

use diesel::sql_types::BigInt;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};

pub use crate::support::{AppError, eventually};

/// Serializes the scenarios: each starts its own PostgreSQL server, and two cores are
/// not enough to overload them in parallel and still measure anything.
pub static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A direct connection to `url`, retried for a few seconds.
pub async fn connect(url: &str) -> AsyncPgConnection {
    let mut last = None;
    for _ in 0..100 {
        match AsyncPgConnection::establish(url).await {
            Ok(c) => return c,
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("cannot connect to {url}: {last:?}");
}

/// Runs SQL on a fresh direct connection.
pub async fn exec(url: &str, sql: &str) {
    connect(url)
        .await
        .batch_execute(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// A `bigint` computed by `expr` on a fresh direct connection, e.g. `count(*) FROM t`.
pub async fn scalar(url: &str, expr: &str) -> i64 {
    diesel::select(diesel::dsl::sql::<BigInt>(&format!(
        "(SELECT {expr})::int8"
    )))
    .get_result(&mut connect(url).await)
    .await
    .unwrap_or_else(|e| panic!("SELECT {expr}: {e}"))
}

#[derive(diesel::QueryableByName, Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdCount {
    #[diesel(sql_type = BigInt)]
    pub id: i64,
    #[diesel(sql_type = BigInt)]
    pub n: i64,
}

/// `(id, count)` rows of a `SELECT id, count(*) AS n ... GROUP BY id` query.
pub async fn id_counts(url: &str, sql: &str) -> Vec<IdCount> {
    diesel::sql_query(sql)
        .load(&mut connect(url).await)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// Backends of the pool whose `application_name` is `app`: all of them, and those
/// running a statement.
pub async fn backends(url: &str, app: &str) -> (i64, i64) {
    let all = scalar(
        url,
        &format!("count(*) FROM pg_stat_activity WHERE application_name = '{app}'"),
    )
    .await;
    let active = scalar(
        url,
        &format!(
            "count(*) FROM pg_stat_activity WHERE application_name = '{app}' AND state <> 'idle'"
        ),
    )
    .await;
    (all, active)
}

/// Tasks alive on the current tokio runtime.
pub fn alive_tasks() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

/// Milliseconds, for reports.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The `p`-th percentile (0..=100) of `values`, sorted in place.
pub fn percentile(values: &mut [Duration], p: f64) -> Duration {
    if values.is_empty() {
        return Duration::ZERO;
    }
    values.sort_unstable();
    let rank = ((p / 100.0) * (values.len() - 1) as f64).round() as usize;
    values[rank.min(values.len() - 1)]
}

/// How long the current thread has waited, runnable, for a CPU since it started
/// (`run_delay` of `/proc/thread-self/schedstat`); zero where the kernel does not say.
///
/// Sub-millisecond bounds subtract the growth of this around the measured call: time the
/// OS kept the thread off a busy CPU is not the library's. Time blocked on a lock is
/// not runnable time, so it still counts.
pub fn run_delay() -> Duration {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(Duration::ZERO, Duration::from_nanos)
}

/// The most any scenario may take, once it holds the serial lock.
pub const SCENARIO_LIMIT: Duration = Duration::from_secs(120);

/// Runs a scenario, failing it (instead of hanging the suite) if it outlives
/// [`SCENARIO_LIMIT`]. Dropping it stops its server.
pub async fn bounded<F: std::future::Future>(scenario: F) -> F::Output {
    tokio::time::timeout(SCENARIO_LIMIT, scenario)
        .await
        .unwrap_or_else(|_| panic!("the scenario did not finish within {SCENARIO_LIMIT:?}"))
}
