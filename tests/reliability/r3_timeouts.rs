//! R3: 1,000 calls whose first attempt times out against `pg_sleep`, then retries on
//! the pool's reused connections. A connection handed back after a timeout must never
//! deliver another statement's result, nor carry a statement still running.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use diesel::sql_types::{BigInt, Double, Text};
use resilient::db::{self, DbConfig};
use resilient::{Runtime, resilient};

use crate::cluster::PgServer;
use crate::common::{AppError, SERIAL, backends, bounded, exec, ms};

const CALLS: i64 = 1_000;
const CONCURRENCY: i64 = 8;
const POOL_SIZE: u32 = 8;
const APP: &str = "r3";

#[derive(diesel::QueryableByName, Debug)]
struct Answer {
    #[diesel(sql_type = BigInt)]
    doubled: i64,
    #[diesel(sql_type = Text)]
    echo: String,
}

pub struct Calculator;

#[resilient]
impl Calculator {
    /// `2x + 1` and `x` as text, computed by the server. The first attempt of every call
    /// sleeps 10 s on the server and is cut by the 40 ms attempt timeout; the retries
    /// do not sleep.
    #[resilient(retry = 3, backoff = "none", timeout_ms = 40, breaker = false)]
    pub async fn double(&self, x: i64, first: &AtomicBool) -> Result<(i64, String), AppError> {
        use diesel_async::RunQueryDsl as _;
        let sleep = if first.swap(false, Ordering::Relaxed) {
            10.0
        } else {
            0.0
        };
        let mut conn = db::conn().await?;
        let answer: Answer =
            diesel::sql_query("SELECT $1 * 2 + 1 AS doubled, $1::text AS echo FROM pg_sleep($2)")
                .bind::<BigInt, _>(x)
                .bind::<Double, _>(sleep)
                .get_result(conn.pg()?)
                .await?;
        Ok((answer.doubled, answer.echo))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r3_1000_timed_out_attempts_leave_no_wrong_result_and_no_running_statement() {
    let _serial = SERIAL.lock().await;
    bounded(scenario()).await;
}

async fn scenario() {
    let server = PgServer::start_new("r3");
    let url = server.url();
    exec(&url, "SELECT 1").await;
    let rt = Runtime::builder()
        .database(
            "main",
            DbConfig::parse(&url)
                .unwrap()
                .max_size(POOL_SIZE)
                .min_idle(Some(POOL_SIZE))
                .acquire_timeout(Duration::from_secs(5))
                .application_name(APP)
                .breaker(None),
        )
        .build()
        .unwrap();

    let start = Instant::now();
    let mut workers = Vec::new();
    for w in 0..CONCURRENCY {
        let rt = rt.clone();
        workers.push(tokio::spawn(async move {
            rt.scope(async {
                let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
                let mut wrong = Vec::new();
                let mut x = w;
                while x < CALLS {
                    // Distinct, and far from any other call's input.
                    let input = 7_919 * x + 13;
                    let first = AtomicBool::new(true);
                    match Calculator.double(input, &first).await {
                        Ok((doubled, echo))
                            if doubled == 2 * input + 1 && echo == input.to_string() =>
                        {
                            *outcomes.entry("ok".into()).or_default() += 1;
                        }
                        Ok(other) => wrong.push((input, other)),
                        Err(e) => *outcomes.entry(format!("{e}")).or_default() += 1,
                    }
                    x += CONCURRENCY;
                }
                (outcomes, wrong)
            })
            .await
        }));
    }
    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    let mut wrong = Vec::new();
    for w in workers {
        let (o, bad) = w.await.unwrap();
        for (k, n) in o {
            *outcomes.entry(k).or_default() += n;
        }
        wrong.extend(bad);
    }
    let took = start.elapsed();

    tokio::time::sleep(Duration::from_secs(1)).await;
    let (all, active) = backends(&url, APP).await;
    let snapshot = rt.snapshot();
    let op = snapshot
        .operations
        .iter()
        .find(|o| o.name == "Calculator::double")
        .unwrap();
    let status = rt.pool("main").unwrap().status();
    eprintln!(
        "R3 timeouts: {CALLS} calls in {:.0} ms, {} attempts timed out, {} retries; outcomes \
         {outcomes:?}; {} wrong results; 1 s later: {active} of {all} pool backends active; \
         pool {} connections / {} idle / {} created / {} closed broken / {} closed invalid",
        ms(took),
        op.metrics.attempt_timeouts,
        op.metrics.retries,
        wrong.len(),
        status.connections,
        status.idle,
        status.connections_created,
        status.closed_broken,
        status.closed_invalid,
    );
    assert!(wrong.is_empty(), "wrong results: {wrong:?}");
    assert!(
        op.metrics.attempt_timeouts >= CALLS as u64,
        "every call had an attempt cut by its timeout"
    );
    assert!(
        outcomes.get("ok").is_some_and(|n| *n > 0),
        "retries succeeded: {outcomes:?}"
    );
    assert_eq!(active, 0, "statements of the pool still running 1 s later");
}
