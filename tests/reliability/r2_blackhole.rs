//! R2: the network between the pool and the server turns into a blackhole for 5 s
//! under load: every byte, both ways, on every connection, new ones included. Before
//! it, 2 s of latency longer than an attempt's timeout; after it, every connection is
//! reset while the network is still dark, so that reconnections hang half-open.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use diesel::sql_types::BigInt;
use resilient::breaker::{BreakerSpec, BreakerState};
use resilient::bulkhead::BulkheadSpec;
use resilient::db::{self, DbConfig};
use resilient::{Runtime, resilient};

use crate::cluster::PgServer;
use crate::common::{AppError, SERIAL, alive_tasks, backends, bounded, eventually, exec, ms};
use crate::proxy::{Mode, Proxy};

const DEADLINE: Duration = Duration::from_millis(1_000);
const SLACK: Duration = Duration::from_millis(50);
const POOL_SIZE: u32 = 4;
const APP: &str = "r2";

static BREAKER: BreakerSpec = BreakerSpec::new("r2")
    .failure_threshold(5)
    .reset_timeout(Duration::from_secs(1))
    .half_open_successes(1)
    .half_open_max_calls(1);

/// Two calls at a time, eight waiting: the wait for a slot counts against the deadline.
static BULKHEAD: BulkheadSpec = BulkheadSpec::new("r2", 2, 8);

pub struct Catalog;

#[resilient]
impl Catalog {
    /// A read (20 ms on the server) with short attempts, a 1 s deadline for the whole
    /// call, in a small bulkhead.
    #[resilient(
        retry = 2,
        delay_ms = 20,
        timeout_ms = 300,
        deadline_ms = 1_000,
        breaker = BREAKER,
        bulkhead = BULKHEAD
    )]
    pub async fn next_of(&self, x: i64) -> Result<i64, AppError> {
        use diesel_async::RunQueryDsl as _;
        let mut conn = db::conn().await?;
        Ok(diesel::select(
            diesel::dsl::sql::<BigInt>("")
                .bind::<BigInt, _>(x)
                .sql(" + 1 FROM pg_sleep(0.02)"),
        )
        .get_result(conn.pg()?)
        .await?)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r2_blackhole_for_5s_under_load() {
    let _serial = SERIAL.lock().await;
    bounded(scenario()).await;
}

async fn scenario() {
    let server = PgServer::start_new("r2");
    let url = server.url();
    exec(&url, "SELECT 1").await;
    let proxy = Proxy::start(server.port).await;

    let rt = Runtime::builder()
        .database(
            "main",
            DbConfig::parse(&PgServer::url_via(proxy.port()))
                .unwrap()
                .max_size(POOL_SIZE)
                .min_idle(Some(POOL_SIZE))
                .acquire_timeout(Duration::from_secs(2))
                .application_name(APP)
                .breaker(None),
        )
        .build()
        .unwrap();
    let pool = rt.pool("main").unwrap();

    // Warm up: the pool is full and every connection has run a query.
    rt.scope(async {
        for x in 0..20 {
            assert_eq!(Catalog.next_of(x).await.unwrap(), x + 1);
        }
    })
    .await;
    assert!(
        eventually(Duration::from_secs(5), async || pool.status().connections
            == POOL_SIZE)
        .await
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let tasks_before = alive_tasks();
    let proxy_before = proxy.stats();

    let stop = Arc::new(AtomicBool::new(false));
    let mut callers = Vec::new();
    for c in 0..6_i64 {
        let (rt, stop) = (rt.clone(), Arc::clone(&stop));
        callers.push(tokio::spawn(async move {
            rt.scope(async {
                let mut log: Vec<(Duration, Result<(), String>)> = Vec::new();
                let mut x = c * 1_000_000;
                while !AtomicBool::load(&stop, Ordering::Relaxed) {
                    x += 1;
                    let start = Instant::now();
                    let out = Catalog.next_of(x).await;
                    let took = start.elapsed();
                    log.push((
                        took,
                        match out {
                            Ok(v) if v == x + 1 => Ok(()),
                            Ok(v) => Err(format!("wrong: {x} + 1 = {v}")),
                            Err(e) => Err(e.label()),
                        },
                    ));
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                log
            })
            .await
        }));
    }

    tokio::time::sleep(Duration::from_secs(1)).await;
    // Phase 1: every chunk 400 ms late, longer than an attempt's 300 ms.
    proxy.set_latency(Duration::from_millis(400));
    tokio::time::sleep(Duration::from_secs(2)).await;
    proxy.set_latency(Duration::ZERO);
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Phase 2: the blackhole, 5 s.
    proxy.set_mode(Mode::Blackhole);
    let hole = Instant::now();
    tokio::time::sleep(Duration::from_secs(5)).await;
    proxy.set_mode(Mode::PassThrough);
    let hole_for = hole.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    // Phase 3: the connections are reset and the network stays dark for 2 s, so new
    // connections hang half-open.
    proxy.set_mode(Mode::Blackhole);
    let reset = proxy.cut_all();
    tokio::time::sleep(Duration::from_secs(2)).await;
    proxy.set_mode(Mode::PassThrough);
    let healed = Instant::now();
    let recovered = eventually(Duration::from_secs(10), async || {
        rt.breaker("r2").unwrap().state() == BreakerState::Closed
    })
    .await;
    let recovered_after = healed.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    AtomicBool::store(&stop, true, Ordering::Relaxed);

    let mut calls = 0usize;
    let mut worst = Duration::ZERO;
    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    let mut late = Vec::new();
    for c in callers {
        for (took, out) in c.await.unwrap() {
            calls += 1;
            worst = worst.max(took);
            if took > DEADLINE + SLACK {
                late.push((took, out.clone()));
            }
            *outcomes
                .entry(out.err().unwrap_or_else(|| "ok".into()))
                .or_default() += 1;
        }
    }

    // Leaks: nothing in flight, every pooled connection idle and backed by exactly one
    // proxied socket and one server backend, and the task count back to where it was.
    let mut tasks_after = 0;
    let mut status = pool.status();
    let mut proxy_after = proxy.stats();
    let mut server_side = 0;
    let settled = eventually(Duration::from_secs(15), async || {
        status = pool.status();
        proxy_after = proxy.stats();
        tasks_after = alive_tasks();
        server_side = backends(&url, APP).await.0;
        rt.in_flight() == 0
            && status.connections == POOL_SIZE
            && status.idle == status.connections
            && proxy_after.open == status.connections as usize
            && server_side == i64::from(status.connections)
            && tasks_after <= tasks_before
    })
    .await;
    let breaker = rt.breaker("r2").unwrap().snapshot();

    eprintln!(
        "R2 blackhole: 2 s of +400 ms latency, {:.0} ms of blackhole, then {reset} connections \
         reset and 2 s more of blackhole; {calls} calls, outcomes {outcomes:?}; worst call \
         {:.1} ms against a deadline of {:.0} ms (+{:.0} ms allowed), {} late; breaker opened \
         {} times, closed {:.0} ms after the network healed; afterwards: in flight {}, pool \
         {} connections / {} idle / {} created / {} closed broken / {} closed invalid, proxy \
         {} open sockets ({} before, {} accepted in all), {} server backends, tasks {} -> {}",
        ms(hole_for),
        ms(worst),
        ms(DEADLINE),
        ms(SLACK),
        late.len(),
        breaker.opened_total,
        ms(recovered_after),
        rt.in_flight(),
        status.connections,
        status.idle,
        status.connections_created,
        status.closed_broken,
        status.closed_invalid,
        proxy_after.open,
        proxy_before.open,
        proxy_after.accepted,
        server_side,
        tasks_before,
        tasks_after,
    );

    assert!(
        late.is_empty(),
        "calls returned after their deadline: {late:?}"
    );
    assert!(
        !outcomes.keys().any(|k| k.starts_with("wrong")),
        "wrong results: {outcomes:?}"
    );
    assert!(outcomes.get("ok").is_some_and(|n| *n > 0));
    assert!(recovered, "the breaker closed after the blackhole");
    assert!(
        settled,
        "leaks after the blackhole: in flight {}, {status:?}, proxy {proxy_after:?}, \
         {server_side} server backends, tasks {tasks_before} -> {tasks_after}",
        rt.in_flight()
    );
}
