//! The benchmarked operations: one ready at once, one that yields once, raw and through
//! `#[resilient]`, plus the static policies behind the `Runtime::execute` variants.

use std::hint::black_box;

use resilient::breaker::BreakerSpec;
use resilient::bulkhead::BulkheadSpec;
use resilient::cache::{Fragment, KeyTemplate};
use resilient::policy::Policy;
use resilient::{Classify, ErrorClass, Rejection, Runtime, resilient};

/// Large enough that neither one nor two threads ever queue.
pub static BENCH_BULKHEAD: BulkheadSpec = BulkheadSpec::new("bench", 64, 64);
/// The breaker every benchmarked operation shares.
pub static BENCH_BREAKER: BreakerSpec = BreakerSpec::new("bench");

/// The error type of every benchmarked operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BenchError {
    /// The database could not be reached (retried, counted by the breaker).
    Unavailable,
    /// Refused by the resilience layer.
    Rejected(Rejection),
}

impl From<Rejection> for BenchError {
    fn from(r: Rejection) -> Self {
        BenchError::Rejected(r)
    }
}

impl std::fmt::Display for BenchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BenchError::Unavailable => f.write_str("database unavailable"),
            BenchError::Rejected(r) => r.fmt(f),
        }
    }
}

impl std::error::Error for BenchError {}

impl Classify for BenchError {
    fn class(&self) -> ErrorClass {
        match self {
            BenchError::Unavailable => ErrorClass::Unavailable,
            BenchError::Rejected(r) => r.class(),
        }
    }
}

/// The raw operation that is ready at once.
pub async fn raw_ready(x: u64) -> Result<u64, BenchError> {
    Ok(black_box(x))
}

/// The raw operation that yields to the scheduler once before it is ready.
pub async fn raw_yield_once(x: u64) -> Result<u64, BenchError> {
    tokio::task::yield_now().await;
    Ok(black_box(x))
}

/// The full stack on the ready operation: retry, breaker, bulkhead, attempt timeout.
#[resilient(
    retry = 2,
    timeout_ms = 1000,
    bulkhead = BENCH_BULKHEAD,
    breaker = BENCH_BREAKER,
    name = "bench.ready"
)]
pub async fn resilient_ready(x: u64) -> Result<u64, BenchError> {
    Ok(black_box(x))
}

/// The full stack on the operation that yields once.
#[resilient(
    retry = 2,
    timeout_ms = 1000,
    bulkhead = BENCH_BULKHEAD,
    breaker = BENCH_BREAKER,
    name = "bench.yield_once"
)]
pub async fn resilient_yield_once(x: u64) -> Result<u64, BenchError> {
    tokio::task::yield_now().await;
    Ok(black_box(x))
}

/// The full stack plus a cache keyed by both arguments: what the cache benchmark reads.
#[resilient(
    retry = 2,
    timeout_ms = 1000,
    bulkhead = BENCH_BULKHEAD,
    breaker = BENCH_BREAKER,
    cache = "user:<a>:<b>",
    ttl_s = 3600,
    name = "bench.cached_attr"
)]
pub async fn resilient_cached(a: u64, b: u64) -> Result<u64, BenchError> {
    Ok(black_box(a ^ b))
}

/// The same policy as the annotated functions, for `Runtime::execute`.
pub static EXECUTE: Policy = Policy::new("bench.execute", module_path!())
    .retry(2)
    .timeout_ms(1000)
    .bulkhead(&BENCH_BULKHEAD)
    .breaker(&BENCH_BREAKER);

/// The key of the cached operation: `user:<a>:<b>`.
pub static USER_KEY: KeyTemplate = KeyTemplate::new(
    "user:<a>:<b>",
    &[
        Fragment::Lit("user:"),
        Fragment::Hole("a"),
        Fragment::Lit(":"),
        Fragment::Hole("b"),
    ],
);

/// The full stack plus a cache, for `Runtime::execute_cached`.
pub static CACHED: Policy = Policy::new("bench.cached", module_path!())
    .retry(2)
    .timeout_ms(1000)
    .bulkhead(&BENCH_BULKHEAD)
    .breaker(&BENCH_BREAKER)
    .cache(&USER_KEY)
    .ttl_s(3600);

/// A runtime that knows every benchmarked operation.
pub fn runtime(metrics: bool) -> Runtime {
    Runtime::builder()
        .metrics(metrics)
        .register(&EXECUTE)
        .register(&CACHED)
        .build()
        .expect("the benchmark policies are valid")
}

/// A runtime that lives as long as the process, for `Runtime::execute` loops.
pub fn leaked_runtime(metrics: bool) -> &'static Runtime {
    Box::leak(Box::new(runtime(metrics)))
}

/// Installs the process-wide runtime that annotated functions find, once.
pub fn install_global(metrics: bool) -> &'static Runtime {
    match runtime(metrics).install_global() {
        Ok(rt) => rt,
        Err(_) => Runtime::global().expect("installed"),
    }
}
