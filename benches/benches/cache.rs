//! Cost of a cache hit: `Runtime::execute_cached` (what a cached `#[resilient]` method
//! runs) and the plain `resilient::cache::Cache`, against a raw quick_cache hit on a
//! `(u64, u64)` key, moka, and the `cached` crate's `#[cached]`.
//!
//! `cargo bench -p resilient-bench --bench cache [-- --quick]`
//!
//! Every contender holds the same 1,024 entries and is read round-robin; every key is
//! built from two `u64`s inside the measured loop, as a caller would.

use std::time::Duration;

use cached::proc_macro::cached;
use resilient::cache::{Cache, CacheKey};
use resilient_bench::harness::{
    Config, Suite, async_sampler, async_thread_loop, print_table, sync_sampler,
};
use resilient_bench::ops::{
    BenchError, CACHED, install_global, leaked_runtime, raw_ready, resilient_cached,
};

const KEYS: u64 = 1024;

const RAW: &str = "raw async call (no lookup)";
const ATTRIBUTE: &str = "#[resilient(cache = \"user:<a>:<b>\")] hit";
const EXECUTE_CACHED: &str = "Runtime::execute_cached hit";
const PLAIN_GET_OR_SET: &str = "resilient Cache::get_or_set hit";
const PLAIN_GET: &str = "resilient Cache::get hit (sync)";
const QUICK_CACHE: &str = "quick_cache hit, (u64, u64) key";
const QUICK_CACHE_STRING: &str = "quick_cache hit, String key built with format!";
const MOKA: &str = "moka::future::Cache hit";
const CACHED_ATTR: &str = "cached #[cached] hit";

fn key(i: u64) -> CacheKey {
    let a = i % KEYS;
    CacheKey::new()
        .lit("user:")
        .part(&a)
        .lit(":")
        .part(&(a + 1))
}

#[cached]
async fn cached_lookup(a: u64, b: u64) -> u64 {
    a ^ b
}

fn main() {
    let config = Config::from_args();
    install_global(true);
    let rt = leaked_runtime(true);
    let plain: Cache<u64> = Cache::new(
        "bench.plain",
        10_000,
        Duration::from_secs(3600),
        Duration::ZERO,
    );
    let quick: &'static _ = Box::leak(Box::new(quick_cache::sync::Cache::<(u64, u64), u64>::new(
        10_000,
    )));
    let quick_string: &'static _ = Box::leak(Box::new(
        quick_cache::sync::Cache::<String, u64>::new(10_000),
    ));
    let moka = moka::future::Cache::<(u64, u64), u64>::new(10_000);

    // Fill every cache with the same entries.
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("tokio runtime")
        .block_on(async {
            for a in 0..KEYS {
                let v: Result<u64, BenchError> = rt
                    .execute_cached(&CACHED, key(a), || async move { Ok(a) })
                    .await;
                assert_eq!(v, Ok(a));
                plain.insert(key(a), a);
                quick.insert((a, a + 1), a);
                quick_string.insert(format!("user:{a}:{}", a + 1), a);
                moka.insert((a, a + 1), a).await;
                cached_lookup(a, a + 1).await;
                assert_eq!(resilient_cached(a, a + 1).await, Ok(a ^ (a + 1)));
            }
        });

    let mut suite = Suite::new("cache hits, 1 thread", config);
    suite.add(RAW, async_sampler(async |i| raw_ready(i % KEYS).await));
    suite.add(
        ATTRIBUTE,
        async_sampler(async |i| {
            let a = i % KEYS;
            resilient_cached(a, a + 1).await
        }),
    );
    suite.add(
        EXECUTE_CACHED,
        async_sampler(async move |i| {
            rt.execute_cached(&CACHED, key(i), || async {
                Err::<u64, _>(BenchError::Unavailable)
            })
            .await
        }),
    );
    let p = plain.clone();
    suite.add(
        PLAIN_GET_OR_SET,
        async_sampler(async move |i| {
            p.get_or_set(key(i), || async { Err::<u64, _>(BenchError::Unavailable) })
                .await
        }),
    );
    let p = plain.clone();
    suite.add(PLAIN_GET, sync_sampler(move |i| p.get(&key(i))));
    let q = quick;
    suite.add(
        QUICK_CACHE,
        async_sampler(async move |i| {
            let a = i % KEYS;
            q.get(&(a, a + 1))
        }),
    );
    let q = quick_string;
    suite.add(
        QUICK_CACHE_STRING,
        async_sampler(async move |i| {
            let a = i % KEYS;
            q.get(&format!("user:{a}:{}", a + 1))
        }),
    );
    let m = moka.clone();
    suite.add(
        MOKA,
        async_sampler(async move |i| {
            let a = i % KEYS;
            m.get(&(a, a + 1)).await
        }),
    );
    suite.add(
        CACHED_ATTR,
        async_sampler(async |i| {
            let a = i % KEYS;
            cached_lookup(a, a + 1).await
        }),
    );

    // Two threads reading the same cache.
    suite.add_two_threads(
        &format!("2 threads: {ATTRIBUTE}"),
        async_thread_loop(|| {
            async |i| {
                let a = i % KEYS;
                resilient_cached(a, a + 1).await
            }
        }),
    );
    suite.add_two_threads(
        &format!("2 threads: {EXECUTE_CACHED}"),
        async_thread_loop(move || {
            async move |i| {
                rt.execute_cached(&CACHED, key(i), || async {
                    Err::<u64, _>(BenchError::Unavailable)
                })
                .await
            }
        }),
    );
    let q = quick;
    suite.add_two_threads(
        &format!("2 threads: {QUICK_CACHE}"),
        async_thread_loop(move || {
            async move |i| {
                let a = i % KEYS;
                q.get(&(a, a + 1))
            }
        }),
    );
    let m = moka.clone();
    suite.add_two_threads(
        &format!("2 threads: {MOKA}"),
        async_thread_loop(move || {
            let m = m.clone();
            async move |i| {
                let a = i % KEYS;
                m.get(&(a, a + 1)).await
            }
        }),
    );

    let rows = suite.run();
    let (single, threads): (Vec<_>, Vec<_>) = rows
        .into_iter()
        .partition(|r| !r.name.starts_with("2 threads"));
    print_table(
        "Cache hit, 1 thread (ns per hit; ratios of whole ns per hit)",
        &single,
        None,
        &[QUICK_CACHE, CACHED_ATTR],
    );
    print_table(
        "Cache hit, 2 threads sharing one cache (ns per hit per thread)",
        &threads,
        None,
        &[&format!("2 threads: {QUICK_CACHE}")],
    );
}
