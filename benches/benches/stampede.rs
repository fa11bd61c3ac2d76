//! Stampede: 1,000 concurrent misses on one key, counting loads, with a loader that
//! succeeds and one that fails. A correctness figure: single flight must run exactly one
//! load, and must share a failed load instead of letting every waiter retry it.
//!
//! `cargo bench -p resilient-bench --bench stampede`
//!
//! Exits non-zero if `execute_cached` or `Cache::get_or_set` runs more than one load.
//! quick_cache and moka are shown for comparison only.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use resilient::cache::{Cache, CacheKey};
use resilient::policy::Policy;
use resilient::{Rejection, Runtime, resilient};
use resilient_bench::ops::{BENCH_BREAKER, BENCH_BULKHEAD, BenchError, USER_KEY};
use tokio::sync::Barrier;

const CALLERS: usize = 1_000;
const LOAD_TIME: Duration = Duration::from_millis(5);

/// No retry: one flight is one loader call.
static STAMPEDE: Policy = Policy::new("bench.stampede", module_path!())
    .timeout_ms(5_000)
    .bulkhead(&BENCH_BULKHEAD)
    .breaker(&BENCH_BREAKER)
    .cache(&USER_KEY)
    .ttl_s(3600);

/// Two retries: one flight is three loader calls when the load keeps failing.
static STAMPEDE_RETRY: Policy = Policy::new("bench.stampede_retry", module_path!())
    .retry(2)
    .backoff(resilient::policy::Backoff::Fixed)
    .delay_ms(5)
    .timeout_ms(1_000)
    .bulkhead(&BENCH_BULKHEAD)
    .breaker(&BENCH_BREAKER)
    .cache(&USER_KEY)
    .ttl_s(3600);

/// Loader calls of [`through_attribute`], which has no closure to count them in.
static ATTRIBUTE_LOADS: AtomicUsize = AtomicUsize::new(0);

/// A cached method: `scenario` picks the key, `fail` makes the load fail.
#[resilient(
    timeout_ms = 5_000,
    bulkhead = BENCH_BULKHEAD,
    breaker = BENCH_BREAKER,
    cache = "stampede:<scenario>",
    ttl_s = 3600,
    name = "bench.stampede_attr"
)]
async fn cached_load(scenario: u64, fail: bool) -> Result<u64, BenchError> {
    loader(&ATTRIBUTE_LOADS, fail).await
}

#[derive(Debug, Default)]
struct Outcome {
    loads: usize,
    flights: Option<u64>,
    ok: usize,
    loader_error: usize,
    shared_failure: usize,
    other: usize,
    wall: Duration,
}

fn key() -> CacheKey {
    CacheKey::new()
        .lit("user:")
        .part(&7_u64)
        .lit(":")
        .part(&8_u64)
}

async fn loader(loads: &AtomicUsize, fail: bool) -> Result<u64, BenchError> {
    loads.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(LOAD_TIME).await;
    if fail {
        Err(BenchError::Unavailable)
    } else {
        Ok(42)
    }
}

/// Starts `CALLERS` tasks at once (behind a barrier), each running `call`, and tallies
/// their results.
async fn stampede<F, Fut>(call: F) -> Outcome
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<u64, BenchError>> + Send + 'static,
{
    let call = Arc::new(call);
    let barrier = Arc::new(Barrier::new(CALLERS));
    let start = Instant::now();
    let tasks: Vec<_> = (0..CALLERS)
        .map(|_| {
            let (call, barrier) = (call.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                call().await
            })
        })
        .collect();
    let mut out = Outcome::default();
    for t in tasks {
        match t.await.expect("caller task") {
            Ok(_) => out.ok += 1,
            Err(BenchError::Unavailable) => out.loader_error += 1,
            Err(BenchError::Rejected(Rejection::SharedLoadFailed { .. })) => {
                out.shared_failure += 1;
            }
            Err(BenchError::Rejected(_)) => out.other += 1,
        }
    }
    out.wall = start.elapsed();
    out
}

async fn through_execute_cached(policy: &'static Policy, fail: bool) -> Outcome {
    let rt: &'static Runtime = Box::leak(Box::new(
        Runtime::builder()
            .register(policy)
            .build()
            .expect("valid policies"),
    ));
    let loads: &'static AtomicUsize = Box::leak(Box::new(AtomicUsize::new(0)));
    let mut out = stampede(move || async move {
        rt.execute_cached(policy, key(), || loader(loads, fail))
            .await
    })
    .await;
    out.loads = loads.load(Ordering::SeqCst);
    out.flights = rt
        .caches()
        .iter()
        .find(|c| c.name == policy.name())
        .map(|c| c.loads);
    out
}

async fn through_attribute(fail: bool) -> Outcome {
    let rt = Runtime::global().expect("installed in main");
    // The method's cache lives as long as the runtime: count this run's flights only.
    let flights = || {
        rt.caches()
            .iter()
            .find(|c| c.name == "bench.stampede_attr")
            .map_or(0, |c| c.loads)
    };
    let before = flights();
    ATTRIBUTE_LOADS.store(0, Ordering::SeqCst);
    let scenario = u64::from(fail);
    let mut out = stampede(move || cached_load(scenario, fail)).await;
    out.loads = ATTRIBUTE_LOADS.load(Ordering::SeqCst);
    out.flights = Some(flights() - before);
    out
}

async fn through_plain_cache(fail: bool) -> Outcome {
    let cache: Cache<u64> = Cache::new(
        "bench.stampede_plain",
        100,
        Duration::from_secs(3600),
        Duration::ZERO,
    );
    let loads: &'static AtomicUsize = Box::leak(Box::new(AtomicUsize::new(0)));
    let c = cache.clone();
    let mut out = stampede(move || {
        let c = c.clone();
        async move { c.get_or_set(key(), || loader(loads, fail)).await }
    })
    .await;
    out.loads = loads.load(Ordering::SeqCst);
    out.flights = Some(cache.stats().loads);
    out
}

async fn through_quick_cache(fail: bool) -> Outcome {
    let cache = Arc::new(quick_cache::sync::Cache::<(u64, u64), u64>::new(100));
    let loads: &'static AtomicUsize = Box::leak(Box::new(AtomicUsize::new(0)));
    let mut out = stampede(move || {
        let cache = cache.clone();
        async move {
            match cache.get_value_or_guard_async(&(7, 8)).await {
                Ok(v) => Ok(v),
                Err(guard) => {
                    let v = loader(loads, fail).await?;
                    let _ = guard.insert(v);
                    Ok(v)
                }
            }
        }
    })
    .await;
    out.loads = loads.load(Ordering::SeqCst);
    out
}

async fn through_moka(fail: bool) -> Outcome {
    let cache = moka::future::Cache::<(u64, u64), u64>::new(100);
    let loads: &'static AtomicUsize = Box::leak(Box::new(AtomicUsize::new(0)));
    let mut out = stampede(move || {
        let cache = cache.clone();
        async move {
            cache
                .try_get_with((7, 8), loader(loads, fail))
                .await
                .map_err(|e| (*e).clone())
        }
    })
    .await;
    out.loads = loads.load(Ordering::SeqCst);
    out
}

fn main() {
    Runtime::builder()
        .build()
        .expect("valid policies")
        .install_global()
        .expect("first runtime of this process");
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .expect("tokio runtime");
    println!(
        "\n### Stampede: {CALLERS} concurrent misses on one key, loader takes {LOAD_TIME:?}\n"
    );
    println!(
        "| path | loader | loader calls | flights | Ok | loader's error | shared failure | other | wall ms |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|");
    let mut failed = false;
    for fail in [false, true] {
        let rows: Vec<(&str, Outcome, Option<usize>)> = tokio.block_on(async {
            vec![
                (
                    "#[resilient(cache = ..)] method",
                    through_attribute(fail).await,
                    Some(1),
                ),
                (
                    "Runtime::execute_cached, no retry",
                    through_execute_cached(&STAMPEDE, fail).await,
                    Some(1),
                ),
                (
                    "Runtime::execute_cached, retry = 2",
                    through_execute_cached(&STAMPEDE_RETRY, fail).await,
                    Some(if fail { 3 } else { 1 }),
                ),
                (
                    "resilient Cache::get_or_set",
                    through_plain_cache(fail).await,
                    Some(1),
                ),
                (
                    "quick_cache get_value_or_guard_async",
                    through_quick_cache(fail).await,
                    None,
                ),
                ("moka try_get_with", through_moka(fail).await, None),
            ]
        });
        for (name, o, expected) in rows {
            println!(
                "| {name} | {} | {} | {} | {} | {} | {} | {} | {:.1} |",
                if fail { "fails" } else { "succeeds" },
                o.loads,
                o.flights.map_or("—".to_string(), |f| f.to_string()),
                o.ok,
                o.loader_error,
                o.shared_failure,
                o.other,
                o.wall.as_secs_f64() * 1e3
            );
            if let Some(expected) = expected
                && (o.loads != expected || o.flights.is_some_and(|f| f != 1))
            {
                failed = true;
            }
        }
    }
    if failed {
        eprintln!("single flight ran more loads than expected");
        std::process::exit(1);
    }
}
