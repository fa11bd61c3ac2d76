//! Heap allocations per call, counted by a `#[global_allocator]` on the calling thread.
//!
//! The uncached success path of an annotated method must not allocate at all, whether
//! the operation is ready at once or goes pending (which arms the attempt timer), with
//! metrics on or off. The cached-hit figure is printed (`cargo test -p resilient-bench
//! --test allocations -- --nocapture`) and bounded.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::future::Future;
use std::hint::black_box;

use resilient::cache::CacheKey;
use resilient_bench::ops::{
    BenchError, CACHED, EXECUTE, install_global, leaked_runtime, raw_ready, raw_yield_once,
    resilient_cached, resilient_ready, resilient_yield_once,
};

struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn count() {
    if COUNTING.try_with(Cell::get).unwrap_or(false) {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
    }
}

// SAFETY: every method forwards to `System` unchanged; counting touches only
// const-initialized thread-locals, which never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const WARMUP: u64 = 1_000;
const CALLS: u64 = 10_000;

/// Heap allocations per call of `op`, on a current-thread runtime (so every poll runs
/// on this thread), after a warm-up that lets lazily created state settle.
fn allocations_per_call<F, Fut, T>(mut op: F) -> f64
where
    F: FnMut(u64) -> Fut,
    Fut: Future<Output = T>,
{
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("tokio runtime");
    tokio.block_on(async {
        for i in 0..WARMUP {
            black_box(op(i).await);
        }
        ALLOCATIONS.with(|n| n.set(0));
        COUNTING.with(|c| c.set(true));
        for i in 0..CALLS {
            black_box(op(i).await);
        }
        COUNTING.with(|c| c.set(false));
    });
    ALLOCATIONS.with(Cell::get) as f64 / CALLS as f64
}

#[test]
fn the_counter_sees_allocations() {
    let per_call = allocations_per_call(async |i| black_box(Box::new(i)));
    assert_eq!(per_call, 1.0);
}

#[test]
fn raw_calls_do_not_allocate() {
    assert_eq!(allocations_per_call(raw_ready), 0.0);
    assert_eq!(allocations_per_call(raw_yield_once), 0.0);
}

#[test]
fn annotated_success_path_does_not_allocate() {
    install_global(true);
    assert_eq!(
        allocations_per_call(resilient_ready),
        0.0,
        "#[resilient], op ready at once"
    );
    assert_eq!(
        allocations_per_call(resilient_yield_once),
        0.0,
        "#[resilient], op that yields once (the attempt timer is armed)"
    );
}

#[test]
fn execute_success_path_does_not_allocate_with_metrics_on_or_off() {
    for metrics in [true, false] {
        let rt = leaked_runtime(metrics);
        assert_eq!(
            allocations_per_call(async |i| rt.execute(&EXECUTE, || raw_ready(i)).await),
            0.0,
            "Runtime::execute, op ready at once, metrics {metrics}"
        );
        assert_eq!(
            allocations_per_call(async |i| rt.execute(&EXECUTE, || raw_yield_once(i)).await),
            0.0,
            "Runtime::execute, op that yields once, metrics {metrics}"
        );
    }
}

#[test]
fn cached_hit_allocations() {
    let rt = leaked_runtime(true);
    let key = |i: u64| {
        CacheKey::new()
            .lit("user:")
            .part(&(i % 64))
            .lit(":")
            .part(&1_u64)
    };
    let per_call = allocations_per_call(async |i| {
        rt.execute_cached(&CACHED, key(i), || async move { Ok::<u64, BenchError>(i) })
            .await
    });
    println!("execute_cached hit: {per_call} heap allocations per call");
    assert_eq!(
        per_call, 0.0,
        "a cache hit with a short key allocates nothing"
    );

    install_global(true);
    let per_call = allocations_per_call(async |i| resilient_cached(i % 64, 1).await);
    println!("#[resilient(cache = ..)] hit: {per_call} heap allocations per call");
    assert_eq!(per_call, 0.0, "a cached method's hit allocates nothing");
}
