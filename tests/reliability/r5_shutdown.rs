//! R5: graceful shutdown (`Runtime::shutdown(drain)`, what SIGTERM triggers) in the
//! middle of a write load; then a drain shorter than the writes in flight.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use diesel::sql_types::{BigInt, Double};
use resilient::db::{self, DbConfig, DbError};
use resilient::{Rejection, Runtime, resilient};

use crate::cluster::PgServer;
use crate::common::{AppError, SERIAL, bounded, eventually, exec, id_counts, ms, scalar};

const SLACK: Duration = Duration::from_millis(50);

pub struct Journal;

#[resilient]
impl Journal {
    /// A write that takes `seconds` on the server: not idempotent (the `write` bulkhead).
    #[resilient(
        retry = 2,
        delay_ms = 20,
        timeout_ms = 5_000,
        bulkhead = "write",
        breaker = false
    )]
    pub async fn record(&self, id: i64, seconds: f64) -> Result<(), AppError> {
        use diesel_async::RunQueryDsl as _;
        let mut conn = db::conn().await?;
        diesel::sql_query("INSERT INTO r5_entries (id) SELECT $1 FROM pg_sleep($2)")
            .bind::<BigInt, _>(id)
            .bind::<Double, _>(seconds)
            .execute(conn.pg()?)
            .await?;
        Ok(())
    }
}

fn runtime(url: &str, app: &str) -> Runtime {
    Runtime::builder()
        .database(
            "main",
            DbConfig::parse(url)
                .unwrap()
                .max_size(6)
                .application_name(app)
                .breaker(None),
        )
        .build()
        .unwrap()
}

#[derive(Default)]
struct Tally {
    acked: Vec<i64>,
    shutting_down: usize,
    other: Vec<String>,
}

/// `writers` tasks writing until they are told the runtime is shutting down.
fn start_writers(
    rt: &Runtime,
    writers: i64,
    base: i64,
    seconds: f64,
    tally: &Arc<Mutex<Tally>>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..writers)
        .map(|w| {
            let (rt, tally) = (rt.clone(), Arc::clone(tally));
            tokio::spawn(async move {
                rt.scope(async {
                    for seq in 0.. {
                        let id = base + w * 100_000 + seq;
                        let out = Journal.record(id, seconds).await;
                        let mut t = tally.lock().unwrap();
                        match out {
                            Ok(()) => t.acked.push(id),
                            Err(AppError::Resilience(Rejection::ShuttingDown)) => {
                                t.shutting_down += 1;
                                return;
                            }
                            Err(e) => {
                                t.other.push(e.to_string());
                                return;
                            }
                        }
                    }
                })
                .await;
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r5_shutdown_during_a_write_load() {
    let _serial = SERIAL.lock().await;
    bounded(scenario()).await;
}

async fn scenario() {
    let server = PgServer::start_new("r5");
    let url = server.url();
    exec(&url, "CREATE TABLE r5_entries (id bigint NOT NULL)").await;

    // ----- A: a drain long enough for every write in flight -----
    let drain = Duration::from_secs(5);
    let rt = runtime(&url, "r5a");
    let tally = Arc::new(Mutex::new(Tally::default()));
    let writers = start_writers(&rt, 6, 0, 0.02, &tally);
    assert!(
        eventually(Duration::from_secs(10), async || tally
            .lock()
            .unwrap()
            .acked
            .len()
            >= 60)
        .await
    );
    let in_flight = rt.in_flight();
    let began = Instant::now();
    let report = rt.shutdown(drain).await;
    let took = began.elapsed();
    for w in writers {
        w.await.unwrap();
    }
    let late = rt.scope(Journal.record(-1, 0.0)).await;
    let closed = rt.scope(db::conn()).await;
    let tally_a = std::mem::take(&mut *tally.lock().unwrap());
    let stored: HashSet<i64> = id_counts(
        &url,
        "SELECT id, count(*) AS n FROM r5_entries WHERE id < 1000000 GROUP BY id",
    )
    .await
    .into_iter()
    .map(|r| r.id)
    .collect();
    let missing_a: Vec<i64> = tally_a
        .acked
        .iter()
        .copied()
        .filter(|id| !stored.contains(id))
        .collect();
    let pool_backends_a = eventually(Duration::from_secs(2), async || {
        scalar(
            &url,
            "count(*) FROM pg_stat_activity WHERE application_name = 'r5a'",
        )
        .await
            == 0
    })
    .await;
    eprintln!(
        "R5 shutdown A: {in_flight} calls in flight when shutdown({:.0} ms) began; it took \
         {:.1} ms, {report:?}; {} writes acknowledged, {} stored, {} missing; {} writers told \
         `shutting down`, {} other errors; a late call: {}; the pool: {}",
        ms(drain),
        ms(took),
        tally_a.acked.len(),
        stored.len(),
        missing_a.len(),
        tally_a.shutting_down,
        tally_a.other.len(),
        late.as_ref()
            .err()
            .map(ToString::to_string)
            .unwrap_or_default(),
        closed
            .as_ref()
            .err()
            .map(ToString::to_string)
            .unwrap_or_default(),
    );
    assert!(in_flight > 0, "writes were in flight when shutdown began");
    assert!(report.drained, "{report:?}");
    assert!(took <= drain + SLACK, "shutdown took {took:?}");
    assert!(
        missing_a.is_empty(),
        "acknowledged writes missing: {missing_a:?}"
    );
    assert_eq!(
        stored.len(),
        tally_a.acked.len(),
        "a write was applied but not acknowledged"
    );
    assert_eq!(
        tally_a.shutting_down, 6,
        "every writer's next call was rejected"
    );
    assert!(tally_a.other.is_empty(), "{:?}", tally_a.other);
    assert!(matches!(
        late,
        Err(AppError::Resilience(Rejection::ShuttingDown))
    ));
    assert!(matches!(closed, Err(DbError::Closed { .. })));
    assert!(pool_backends_a, "the pool's connections were closed");

    // ----- B: a drain shorter than the writes in flight -----
    let drain = Duration::from_millis(300);
    let rt = runtime(&url, "r5b");
    let tally = Arc::new(Mutex::new(Tally::default()));
    let writers = start_writers(&rt, 4, 1_000_000, 1.5, &tally);
    assert!(
        eventually(Duration::from_secs(10), async || rt.in_flight() == 4).await,
        "4 slow writes in flight"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let began = Instant::now();
    let report = rt.shutdown(drain).await;
    let took = began.elapsed();
    for w in writers {
        w.await.unwrap();
    }
    let tally_b = std::mem::take(&mut *tally.lock().unwrap());
    let stored: HashSet<i64> = id_counts(
        &url,
        "SELECT id, count(*) AS n FROM r5_entries WHERE id >= 1000000 GROUP BY id",
    )
    .await
    .into_iter()
    .map(|r| r.id)
    .collect();
    let missing_b: Vec<i64> = tally_b
        .acked
        .iter()
        .copied()
        .filter(|id| !stored.contains(id))
        .collect();
    let pool_backends_b = eventually(Duration::from_secs(2), async || {
        scalar(
            &url,
            "count(*) FROM pg_stat_activity WHERE application_name = 'r5b'",
        )
        .await
            == 0
    })
    .await;
    eprintln!(
        "R5 shutdown B: shutdown({:.0} ms) with 4 writes of 1.5 s in flight took {:.1} ms, \
         {report:?}; then {} of them were acknowledged, {} stored, {} missing, {} other errors; \
         connections closed once returned: {pool_backends_b}",
        ms(drain),
        ms(took),
        tally_b.acked.len(),
        stored.len(),
        missing_b.len(),
        tally_b.other.len(),
    );
    assert!(took <= drain + SLACK, "shutdown took {took:?}");
    assert!(!report.drained && report.in_flight_left == 4, "{report:?}");
    assert!(
        missing_b.is_empty(),
        "acknowledged writes missing: {missing_b:?}"
    );
    assert_eq!(
        tally_b.shutting_down, 4,
        "every writer's next call was rejected"
    );
    assert!(
        pool_backends_b,
        "the connections still out closed when returned"
    );
}
