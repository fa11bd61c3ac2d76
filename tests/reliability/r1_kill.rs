//! R1: mixed read/write load while the server is killed with `SIGKILL` for about 3 s,
//! then restarted on the same port and data directory.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use diesel::sql_types::BigInt;
use resilient::breaker::{BreakerSpec, BreakerState};
use resilient::db::{self, DbConfig};
use resilient::{Classify, ErrorClass, Rejection, Runtime, resilient};

use crate::cluster::PgServer;
use crate::common::{
    AppError, SERIAL, backends, bounded, eventually, exec, id_counts, ms, percentile, run_delay,
};

const RESET: Duration = Duration::from_secs(2);
const POOL_SIZE: u32 = 8;
const APP: &str = "r1";

/// The breaker of this scenario: opens after 5 net failures, tries again after 2 s.
static BREAKER: BreakerSpec = BreakerSpec::new("r1")
    .failure_threshold(5)
    .reset_timeout(RESET)
    .half_open_successes(2)
    .half_open_max_calls(2);

pub struct Shop;

#[resilient]
impl Shop {
    /// A plain `INSERT`: not idempotent, so only failures where nothing was sent are retried.
    #[resilient(
        retry = 3,
        delay_ms = 50,
        max_delay_ms = 200,
        timeout_ms = 2_000,
        breaker = BREAKER,
        idempotent = false
    )]
    pub async fn place_order(&self, id: i64, attempts: &AtomicU32) -> Result<(), AppError> {
        use diesel_async::RunQueryDsl as _;
        attempts.fetch_add(1, Ordering::Relaxed);
        let mut conn = db::conn().await?;
        diesel::sql_query("INSERT INTO r1_orders (id) VALUES ($1)")
            .bind::<BigInt, _>(id)
            .execute(conn.pg()?)
            .await?;
        Ok(())
    }

    /// The price of `sku`, cached for 1 s and served stale for up to 60 s when the
    /// database cannot answer.
    #[resilient(
        retry = 1,
        delay_ms = 20,
        timeout_ms = 1_000,
        breaker = BREAKER,
        cache = "r1:price:<sku>",
        ttl_s = 1,
        stale_s = 60
    )]
    pub async fn price(&self, sku: i64) -> Result<i64, AppError> {
        use diesel_async::RunQueryDsl as _;
        let mut conn = db::conn().await?;
        let row: PriceRow = diesel::sql_query("SELECT price FROM r1_prices WHERE sku = $1")
            .bind::<BigInt, _>(sku)
            .get_result(conn.pg()?)
            .await?;
        Ok(row.price)
    }
}

#[derive(diesel::QueryableByName)]
struct PriceRow {
    #[diesel(sql_type = BigInt)]
    price: i64,
}

fn price_of(sku: i64) -> i64 {
    sku * 100 + 7
}

#[derive(Default)]
struct WriterLog {
    acked: Vec<i64>,
    /// Latency of calls rejected by the open breaker before any attempt, less the time
    /// the OS kept the thread waiting for a CPU meanwhile.
    rejected: Vec<Duration>,
    /// The same, wall-clock.
    rejected_wall: Vec<Duration>,
    /// The slowest of them, and when it began.
    slowest_rejection: Option<(Duration, Instant)>,
    /// Calls whose retry was rejected by the breaker that opened meanwhile.
    rejected_on_retry: u64,
    /// `(id, class, message)` of other failures.
    failed: Vec<(i64, ErrorClass, String)>,
}

#[derive(Default)]
struct ReaderLog {
    ok: u64,
    ok_during_outage: u64,
    wrong: Vec<(i64, i64)>,
    errors: Vec<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r1_kill9_and_restart_under_mixed_load() {
    let _serial = SERIAL.lock().await;
    bounded(scenario()).await;
}

async fn scenario() {
    let server = Arc::new(PgServer::start_new("r1"));
    let url = server.url();
    exec(
        &url,
        "CREATE TABLE r1_orders (id bigint NOT NULL); \
         CREATE TABLE r1_prices (sku bigint PRIMARY KEY, price bigint NOT NULL); \
         INSERT INTO r1_prices SELECT s, s * 100 + 7 FROM generate_series(0, 3) s;",
    )
    .await;

    let rt = Runtime::builder()
        .database(
            "main",
            DbConfig::parse(&url)
                .unwrap()
                .max_size(POOL_SIZE)
                .acquire_timeout(Duration::from_millis(500))
                .application_name(APP)
                .breaker(None),
        )
        .build()
        .unwrap();
    let breaker = || rt.breaker("r1").unwrap();

    // Warm the cache: every key has a value to serve stale later.
    rt.scope(async {
        for sku in 0..4 {
            assert_eq!(Shop.price(sku).await.unwrap(), price_of(sku));
        }
    })
    .await;

    let stop = Arc::new(AtomicBool::new(false));
    let outage = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..4_i64 {
        let (rt, stop) = (rt.clone(), Arc::clone(&stop));
        writers.push(tokio::spawn(async move {
            rt.scope(async {
                let mut log = WriterLog::default();
                let mut seq = 0;
                while !stop.load(Ordering::Relaxed) {
                    let id = w * 1_000_000 + seq;
                    seq += 1;
                    let attempts = AtomicU32::new(0);
                    let waited = run_delay();
                    let start = Instant::now();
                    let out = Shop.place_order(id, &attempts).await;
                    let wall = start.elapsed();
                    // A rejected call completes in its first poll, on this thread.
                    let preempted = run_delay().saturating_sub(waited);
                    match out {
                        Ok(()) => log.acked.push(id),
                        Err(AppError::Resilience(Rejection::BreakerOpen { .. }))
                            if attempts.into_inner() == 0 =>
                        {
                            let took = wall.saturating_sub(preempted);
                            log.rejected.push(took);
                            log.rejected_wall.push(wall);
                            if log.slowest_rejection.is_none_or(|(t, _)| took > t) {
                                log.slowest_rejection = Some((took, start));
                            }
                        }
                        Err(AppError::Resilience(Rejection::BreakerOpen { .. })) => {
                            log.rejected_on_retry += 1;
                        }
                        Err(e) => log.failed.push((id, e.class(), e.to_string())),
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                log
            })
            .await
        }));
    }
    let mut readers = Vec::new();
    for r in 0..4_i64 {
        let (rt, stop, outage) = (rt.clone(), Arc::clone(&stop), Arc::clone(&outage));
        readers.push(tokio::spawn(async move {
            rt.scope(async {
                let mut log = ReaderLog::default();
                let mut i = r;
                while !stop.load(Ordering::Relaxed) {
                    let sku = i % 4;
                    i += 1;
                    let down = outage.load(Ordering::Relaxed);
                    match Shop.price(sku).await {
                        Ok(p) if p == price_of(sku) => {
                            log.ok += 1;
                            if down {
                                log.ok_during_outage += 1;
                            }
                        }
                        Ok(p) => log.wrong.push((sku, p)),
                        Err(e) => log.errors.push(e.to_string()),
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                log
            })
            .await
        }));
    }

    tokio::time::sleep(Duration::from_secs(1)).await;
    let opened_before = breaker().snapshot().opened_total;
    let kill = Instant::now();
    outage.store(true, Ordering::Relaxed);
    let killed = {
        let server = Arc::clone(&server);
        tokio::task::spawn_blocking(move || server.kill9())
            .await
            .unwrap()
    };
    assert!(killed >= 2, "the postmaster and its children were killed");
    // Time until the breaker opens, sampled while the server is down.
    let mut opened_after = None;
    while kill.elapsed() < Duration::from_secs(3) {
        if opened_after.is_none() && breaker().snapshot().opened_total > opened_before {
            opened_after = Some(kill.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let restart_began = Instant::now();
    {
        let server = Arc::clone(&server);
        tokio::task::spawn_blocking(move || server.start())
            .await
            .unwrap();
    }
    let restarted = Instant::now();
    let down_for = restarted - kill;
    let closed = eventually(RESET + Duration::from_secs(10), async || {
        breaker().state() == BreakerState::Closed
    })
    .await;
    let closed_after = restarted.elapsed();
    outage.store(false, Ordering::Relaxed);
    assert!(closed, "the breaker closed again after the restart");
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);

    let mut acked = Vec::new();
    let mut rejected = Vec::new();
    let mut failed = Vec::new();
    let mut rejected_on_retry = 0;
    let mut slowest_rejection: Option<(Duration, Instant)> = None;
    let mut rejected_wall = Vec::new();
    for w in writers {
        let log = w.await.unwrap();
        if let Some((took, at)) = log.slowest_rejection
            && slowest_rejection.is_none_or(|(t, _)| took > t)
        {
            slowest_rejection = Some((took, at));
        }
        rejected_on_retry += log.rejected_on_retry;
        rejected_wall.extend(log.rejected_wall);
        acked.extend(log.acked);
        rejected.extend(log.rejected);
        failed.extend(log.failed);
    }
    let mut reads = ReaderLog::default();
    for r in readers {
        let log = r.await.unwrap();
        reads.ok += log.ok;
        reads.ok_during_outage += log.ok_during_outage;
        reads.wrong.extend(log.wrong);
        reads.errors.extend(log.errors);
    }

    // Writes: every acknowledged one is there exactly once; nothing is there twice; a
    // write that failed in a way that says "nothing was applied" is not there.
    let stored: HashMap<i64, i64> =
        id_counts(&url, "SELECT id, count(*) AS n FROM r1_orders GROUP BY id")
            .await
            .into_iter()
            .map(|r| (r.id, r.n))
            .collect();
    let missing: Vec<i64> = acked
        .iter()
        .copied()
        .filter(|id| !stored.contains_key(id))
        .collect();
    let duplicated: Vec<(i64, i64)> = stored
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(id, n)| (*id, *n))
        .collect();
    let applied_but_failed: Vec<&(i64, ErrorClass, String)> = failed
        .iter()
        .filter(|(id, _, _)| stored.contains_key(id))
        .collect();
    let wrongly_applied: Vec<&&(i64, ErrorClass, String)> = applied_but_failed
        .iter()
        .filter(|(_, class, _)| *class != ErrorClass::Ambiguous)
        .collect();
    let mut by_class: HashMap<String, usize> = HashMap::new();
    for (_, class, _) in &failed {
        *by_class.entry(class.to_string()).or_default() += 1;
    }

    let snapshot = breaker().snapshot();
    let cache = rt
        .caches()
        .into_iter()
        .find(|c| c.name == "Shop::price")
        .unwrap();
    let pool = rt.pool("main").unwrap();
    let healthy = eventually(Duration::from_secs(5), async || {
        let s = pool.status();
        let (server_side, _) = backends(&url, APP).await;
        s.connections >= 1
            && s.connections <= POOL_SIZE
            && s.idle == s.connections
            && server_side == i64::from(s.connections)
    })
    .await;
    let status = pool.status();
    let (server_side, _) = backends(&url, APP).await;
    let rejected_count = rejected.len();
    let reject_p50 = percentile(&mut rejected, 50.0);
    let reject_p99 = percentile(&mut rejected, 99.0);
    let reject_max = rejected.iter().max().copied().unwrap_or_default();
    let reject_wall_max = rejected_wall.iter().max().copied().unwrap_or_default();

    eprintln!(
        "R1 kill -9: server down {:.0} ms ({killed} processes killed, restart took {:.0} ms); \
         breaker opened {:.0} ms after the kill, closed {:.0} ms after the restart \
         (bound {:.0} ms), opened {} times in all; \
         writes: {} acknowledged, {} stored, {} missing, {} duplicated, {} failed {:?}, \
         {} stored although failed (all ambiguous: {}); \
         {} calls whose retry met the open breaker; \
         {} calls rejected by the open breaker before any attempt: p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms ({:.0} ms after the kill; the restart began at {:.0} ms), \
         max wall-clock {:.3} ms (waits for a CPU included); \
         reads: {} ok ({} during the outage), {} wrong, {} errors; cache {:?}; \
         pool at the end: {} connections, {} idle, {} server backends, {} created, \
         {} closed broken, {} closed invalid",
        ms(down_for),
        ms(restarted - restart_began),
        opened_after.map_or(f64::NAN, ms),
        ms(closed_after),
        ms(RESET + Duration::from_secs(2)),
        snapshot.opened_total,
        acked.len(),
        stored.len(),
        missing.len(),
        duplicated.len(),
        failed.len(),
        by_class,
        applied_but_failed.len(),
        wrongly_applied.is_empty(),
        rejected_on_retry,
        rejected_count,
        ms(reject_p50),
        ms(reject_p99),
        ms(reject_max),
        slowest_rejection.map_or(f64::NAN, |(_, at)| ms(at.saturating_duration_since(kill))),
        ms(restart_began - kill),
        ms(reject_wall_max),
        reads.ok,
        reads.ok_during_outage,
        reads.wrong.len(),
        reads.errors.len(),
        cache,
        status.connections,
        status.idle,
        server_side,
        status.connections_created,
        status.closed_broken,
        status.closed_invalid,
    );

    assert!(
        missing.is_empty(),
        "acknowledged writes missing: {missing:?}"
    );
    assert!(duplicated.is_empty(), "writes stored twice: {duplicated:?}");
    assert!(
        wrongly_applied.is_empty(),
        "writes reported as not applied were applied: {wrongly_applied:?}"
    );
    assert!(!acked.is_empty());
    assert!(
        opened_after.is_some(),
        "the breaker opened during the outage"
    );
    assert!(rejected_count > 0, "calls were rejected while it was open");
    // Sub-millisecond for nearly all, and never anywhere near a database wait. A single
    // sample on this shared VM has been seen at 4.8 ms with no runnable wait to explain
    // it (time the hypervisor takes the vCPU away is invisible to `run_delay`), so the
    // tight bound is on the 99th percentile.
    assert!(
        reject_p99 < Duration::from_millis(1),
        "calls rejected by the open breaker took {reject_p99:?} at the 99th percentile"
    );
    assert!(
        reject_max < Duration::from_millis(20),
        "a call rejected by the open breaker took {reject_max:?}"
    );
    assert!(
        reads.errors.is_empty() && reads.wrong.is_empty(),
        "cached reads failed or were wrong: {:?} {:?}",
        reads.errors.iter().take(5).collect::<Vec<_>>(),
        reads.wrong
    );
    assert!(
        reads.ok_during_outage > 0 && cache.stale_served > 0,
        "stale values were served during the outage"
    );
    assert!(
        closed_after <= RESET + Duration::from_secs(2),
        "the breaker closed {closed_after:?} after the restart"
    );
    assert!(
        healthy,
        "the pool ends healthy: {status:?}, {server_side} server backends"
    );
}
