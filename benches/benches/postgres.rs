//! End to end: point reads on a real PostgreSQL through `#[resilient(policy = "read")]`
//! and `resilient::db::conn()`, against raw diesel-async + bb8 with the same pool size,
//! the same checkout verification (`SELECT 1`, bb8's default) and the same concurrency.
//!
//! `cargo bench -p resilient-bench --bench postgres [-- --quick]`
//!
//! Needs PostgreSQL on 127.0.0.1:5432 (user `postgres`, trust authentication, database
//! `test`); creates and drops its own database `resilient_bench_e2e`. Override with
//! `BENCH_PG_ADMIN_URL`. The server runs on the same two cores as the benchmark, so the
//! figure is the client's overhead as a share of a CPU-bound round trip.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use diesel::prelude::*;
use diesel_async::pooled_connection::AsyncDieselConnectionManager;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use resilient::db::{self, DbConfig, DbError};
use resilient::{Classify, ErrorClass, Rejection, Runtime, resilient};

diesel::table! {
    bench_users (id) {
        id -> BigInt,
        name -> Text,
    }
}

const DATABASE: &str = "resilient_bench_e2e";
const ROWS: i64 = 10_000;
const POOL_SIZE: u32 = 8;
const CONCURRENCY: usize = 16;

type RawPool = bb8::Pool<AsyncDieselConnectionManager<AsyncPgConnection>>;

#[derive(Debug, thiserror::Error)]
enum PgError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Query(#[from] diesel::result::Error),
    #[error(transparent)]
    Resilience(#[from] Rejection),
}

impl Classify for PgError {
    fn class(&self) -> ErrorClass {
        match self {
            PgError::Db(e) => e.class(),
            PgError::Query(e) => e.class(),
            PgError::Resilience(r) => r.class(),
        }
    }
}

/// The read preset: 5 s attempt timeout, 3 attempts, the `read` bulkhead, the breaker.
#[resilient(policy = "read", name = "bench.find_user")]
async fn find_resilient(id: i64) -> Result<(i64, String), PgError> {
    let mut conn = db::conn().await?;
    Ok(bench_users::table
        .find(id)
        .select((bench_users::id, bench_users::name))
        .first(conn.pg()?)
        .await?)
}

async fn find_raw(pool: &RawPool, id: i64) -> Result<(i64, String), PgError> {
    let mut conn = pool
        .get()
        .await
        .map_err(|e| PgError::Query(diesel::result::Error::QueryBuilderError(e.into())))?;
    Ok(bench_users::table
        .find(id)
        .select((bench_users::id, bench_users::name))
        .first(&mut *conn)
        .await?)
}

fn admin_url() -> String {
    std::env::var("BENCH_PG_ADMIN_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

fn bench_url() -> String {
    let admin = admin_url();
    let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
    format!("{base}/{DATABASE}")
}

async fn create_database() {
    let mut admin = AsyncPgConnection::establish(&admin_url())
        .await
        .expect("PostgreSQL on 127.0.0.1:5432 (see the header of benches/benches/postgres.rs)");
    // Two statements: a multi-statement batch runs as one transaction, which
    // CREATE/DROP DATABASE refuse.
    for sql in [
        format!("DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)"),
        format!("CREATE DATABASE {DATABASE}"),
    ] {
        admin
            .batch_execute(&sql)
            .await
            .expect("create the benchmark database");
    }
    let mut conn = AsyncPgConnection::establish(&bench_url())
        .await
        .expect("connect to the benchmark database");
    conn.batch_execute(&format!(
        "CREATE TABLE bench_users (id BIGINT PRIMARY KEY, name TEXT NOT NULL);
         INSERT INTO bench_users SELECT i, 'user ' || i FROM generate_series(1, {ROWS}) i;
         ANALYZE bench_users;"
    ))
    .await
    .expect("create the benchmark table");
}

async fn drop_database() {
    if let Ok(mut admin) = AsyncPgConnection::establish(&admin_url()).await {
        let _ = admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)"))
            .await;
    }
}

/// CPU time of this whole process (every tokio worker), in nanoseconds.
fn process_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_PROCESS_CPUTIME_ID)");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// One run: reads per second, and the client's CPU µs per read.
#[derive(Clone, Copy)]
struct Run {
    reads_per_s: f64,
    client_us_per_read: f64,
}

/// Reads per second with `CONCURRENCY` tasks looping on `read` for `secs`.
async fn throughput<F, Fut>(read: F, secs: f64) -> Run
where
    F: Fn(i64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(i64, String), PgError>> + Send,
{
    let read = Arc::new(read);
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..CONCURRENCY)
        .map(|t| {
            let (read, stop, done) = (read.clone(), stop.clone(), done.clone());
            tokio::spawn(async move {
                let mut id = 1 + (t as i64 * 7919) % ROWS;
                while !AtomicBool::load(&stop, Ordering::Relaxed) {
                    let row = read(id).await.expect("point read");
                    assert_eq!(row.0, id);
                    done.fetch_add(1, Ordering::Relaxed);
                    id = 1 + (id * 31 + 17) % ROWS;
                }
            })
        })
        .collect();
    let start = Instant::now();
    let cpu = process_cpu_ns();
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    stop.store(true, Ordering::Relaxed);
    let reads = AtomicU64::load(&done, Ordering::Relaxed);
    let cpu = process_cpu_ns() - cpu;
    let elapsed = start.elapsed().as_secs_f64();
    for t in tasks {
        t.await.expect("reader task");
    }
    Run {
        reads_per_s: reads as f64 / elapsed,
        client_us_per_read: cpu as f64 / 1e3 / reads.max(1) as f64,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (rounds, secs) = if quick { (1, 1.0) } else { (20, 2.0) };
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    tokio.block_on(async {
        create_database().await;
        let config = DbConfig::parse(&bench_url())
            .expect("database URL")
            .max_size(POOL_SIZE)
            .min_idle(Some(POOL_SIZE));
        let rt = Runtime::builder()
            .database("bench", config)
            .build()
            .expect("resilient runtime")
            .install_global()
            .expect("first runtime of this process");
        let raw: RawPool = bb8::Pool::builder()
            .max_size(POOL_SIZE)
            .min_idle(Some(POOL_SIZE))
            .build(AsyncDieselConnectionManager::new(bench_url()))
            .await
            .expect("raw pool");

        // Warm both pools and the server's caches.
        let warm = raw.clone();
        // (warm-up runs are not reported)
        throughput(move |id| find_raw_owned(warm.clone(), id), 1.0).await;
        throughput(find_resilient, 1.0).await;

        // Alternating, in ABBA order so that a drift in the machine's load hits both alike;
        // each round's ratio compares two adjacent runs.
        let (mut raw_runs, mut ours, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..rounds {
            let pool = raw.clone();
            let raw_first = round % 2 == 0;
            let mut pair = [Run {
                reads_per_s: 0.0,
                client_us_per_read: 0.0,
            }; 2];
            for raw_turn in [raw_first, !raw_first] {
                if raw_turn {
                    let pool = pool.clone();
                    pair[0] = throughput(move |id| find_raw_owned(pool.clone(), id), secs).await;
                } else {
                    pair[1] = throughput(find_resilient, secs).await;
                }
            }
            raw_runs.push(pair[0]);
            ours.push(pair[1]);
            ratios.push(pair[1].reads_per_s / pair[0].reads_per_s);
        }
        let tput = |v: &[Run]| v.iter().map(|r| r.reads_per_s).collect::<Vec<_>>();
        let cpu = |v: &[Run]| v.iter().map(|r| r.client_us_per_read).collect::<Vec<_>>();
        let (r, o) = (median(tput(&raw_runs)), median(tput(&ours)));
        let (rc, oc) = (median(cpu(&raw_runs)), median(cpu(&ours)));
        let ratio = median(ratios.clone());
        println!(
            "\n### PostgreSQL point reads: pool of {POOL_SIZE}, {CONCURRENCY} concurrent callers, \
             {rounds} alternating runs of {secs} s\n"
        );
        println!(
            "| path | reads/s (median) | ÷ raw (median of per-round ratios) | client CPU µs per read (median) | client CPU over raw |"
        );
        println!("|---|---:|---:|---:|---:|");
        println!("| raw diesel-async + bb8 | {r:.0} | 1.000 | {rc:.2} | — |");
        println!(
            "| #[resilient(policy = \"read\")] + db::conn() | {o:.0} | {ratio:.3} | {oc:.2} | +{:.2} µs ({:+.1} %) |",
            oc - rc,
            (oc / rc - 1.0) * 100.0
        );
        let runs = |v: &[f64]| {
            v.iter()
                .map(|x| format!("{x:.0}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        println!(
            "\nreads/s per run, raw: {}\nreads/s per run, resilient: {}",
            runs(&tput(&raw_runs)),
            runs(&tput(&ours))
        );
        println!(
            "\nratio of medians {:.3}; per-round ratios: {}",
            o / r,
            ratios
                .iter()
                .map(|x| format!("{x:.3}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        drop(raw);
        let _ = rt.shutdown(Duration::from_secs(5)).await;
        drop_database().await;
    });
}

async fn find_raw_owned(pool: RawPool, id: i64) -> Result<(i64, String), PgError> {
    find_raw(&pool, id).await
}
