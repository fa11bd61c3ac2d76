//! One benchmark case in a loop, for `valgrind --tool=callgrind`, whose instruction
//! counts stay stable on a noisy machine:
//!
//! ```text
//! cargo bench -p resilient-bench --bench profile --no-run
//! valgrind --tool=callgrind target/release/deps/profile-* CASE 100000
//! ```
//!
//! Run it once with 0 iterations to subtract the setup. Without a case it lists them.

use std::hint::black_box;
use std::time::Duration;

use resilient::cache::CacheKey;
use resilient_bench::floor::Floor;
use resilient_bench::ops::{
    CACHED, EXECUTE, install_global, leaked_runtime, raw_ready, raw_yield_once, resilient_ready,
    resilient_yield_once,
};

static FLOOR_STACK: Floor = Floor::new(64, 2, Duration::from_secs(1));

const CASES: &[&str] = &[
    "raw",
    "macro",
    "macro_off",
    "exec",
    "exec_off",
    "floor",
    "raw_yield",
    "macro_yield",
    "floor_yield",
    "cached_hit",
    "quick_cache_hit",
];

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let (Some(case), Some(iters)) = (args.first(), args.get(1)) else {
        eprintln!(
            "usage: profile CASE ITERATIONS; cases: {}",
            CASES.join(", ")
        );
        return;
    };
    let iters: u64 = iters.parse().expect("ITERATIONS");
    install_global(case != "macro_off");
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("tokio runtime");
    let on = leaked_runtime(true);
    let off = leaked_runtime(false);
    let qc = quick_cache::sync::Cache::<(u64, u64), u64>::new(10_000);
    for i in 0..1024u64 {
        qc.insert((i, i + 1), i);
    }
    tokio.block_on(async {
        for i in 0..1024u64 {
            let key = CacheKey::new()
                .lit("user:")
                .part(&i)
                .lit(":")
                .part(&(i + 1));
            let _: Result<u64, resilient_bench::ops::BenchError> = on
                .execute_cached(&CACHED, key, || async move { Ok(i) })
                .await;
        }
        for i in 0..iters {
            let i = black_box(i);
            match case.as_str() {
                "raw" => {
                    let _ = black_box(raw_ready(i).await);
                }
                "macro" | "macro_off" => {
                    let _ = black_box(resilient_ready(i).await);
                }
                "exec" => {
                    let _ = black_box(on.execute(&EXECUTE, || raw_ready(i)).await);
                }
                "exec_off" => {
                    let _ = black_box(off.execute(&EXECUTE, || raw_ready(i)).await);
                }
                "floor" => {
                    let _ = black_box(FLOOR_STACK.call(|| raw_ready(i)).await);
                }
                "raw_yield" => {
                    let _ = black_box(raw_yield_once(i).await);
                }
                "macro_yield" => {
                    let _ = black_box(resilient_yield_once(i).await);
                }
                "floor_yield" => {
                    let _ = black_box(FLOOR_STACK.call(|| raw_yield_once(i)).await);
                }
                "cached_hit" => {
                    let k = i % 1024;
                    let key = CacheKey::new()
                        .lit("user:")
                        .part(&k)
                        .lit(":")
                        .part(&(k + 1));
                    let v: Result<u64, resilient_bench::ops::BenchError> =
                        on.execute_cached(&CACHED, key, || async { Ok(0) }).await;
                    let _ = black_box(v);
                }
                "quick_cache_hit" => {
                    let k = i % 1024;
                    let _ = black_box(qc.get(&(k, k + 1)));
                }
                other => panic!("unknown case {other}; cases: {}", CASES.join(", ")),
            }
        }
    });
}
