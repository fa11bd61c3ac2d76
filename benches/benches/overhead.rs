//! Success-path overhead of the full stack (retry + breaker + bulkhead + attempt timeout)
//! against a raw call, tower, recloser, failsafe and the hand-written floor; on one
//! thread with an op that is ready at once and one that yields once, and on two
//! threads sharing one instance.
//!
//! `cargo bench -p resilient-bench --bench overhead [-- --quick]`
//!
//! The process-wide runtime can be installed once per process, so the metrics-off
//! figures of `#[resilient]` come from a child run of this binary (marked †): their
//! overhead is taken against the raw call measured in the child, and shown added to the
//! parent's raw median.

use std::future::Ready;
use std::sync::Mutex;
use std::time::Duration;

use failsafe::futures::CircuitBreaker as _;
use failsafe::{backoff, failure_policy};
use recloser::{AsyncRecloser, Recloser};
use resilient_bench::floor::Floor;
use resilient_bench::harness::{
    Config, Stats, Suite, async_sampler, async_thread_loop, is_child, print_table, run_child,
};
use resilient_bench::ops::{
    EXECUTE, install_global, leaked_runtime, raw_ready, raw_yield_once, resilient_ready,
    resilient_yield_once,
};
use tower::{Service, ServiceBuilder, ServiceExt};

const METRICS_ENV: &str = "RESILIENT_BENCH_METRICS";

const RAW: &str = "raw async call";
const MACRO: &str = "#[resilient], metrics on";
const MACRO_OFF: &str = "#[resilient], metrics off †";
const EXEC: &str = "Runtime::execute, metrics on";
const EXEC_OFF: &str = "Runtime::execute, metrics off";
const TOWER: &str = "tower ConcurrencyLimit + Retry + Timeout";
const RECLOSER: &str = "recloser breaker";
const FAILSAFE_CONSECUTIVE: &str = "failsafe breaker, consecutive failures";
const FAILSAFE_DEFAULT: &str = "failsafe breaker, default policy";
const TIMEOUT: &str = "tokio::time::timeout alone";
const FLOOR: &str = "floor (hand-written atomics)";

static FLOOR_STACK: Floor = Floor::new(64, 2, Duration::from_secs(1));

/// Retries an error up to `self.0` more times, at once.
#[derive(Clone)]
struct Attempts(u32);

impl<Req: Clone, Res, E> tower::retry::Policy<Req, Res, E> for Attempts {
    type Future = Ready<()>;

    fn retry(&mut self, _req: &mut Req, result: &mut Result<Res, E>) -> Option<Self::Future> {
        match result {
            Err(_) if self.0 > 0 => {
                self.0 -= 1;
                Some(std::future::ready(()))
            }
            _ => None,
        }
    }

    fn clone_request(&mut self, req: &Req) -> Option<Req> {
        Some(req.clone())
    }
}

/// tower's equivalent of the stack: one permit per call, retries inside it, a timeout
/// per attempt.
macro_rules! tower_stack {
    ($op:path) => {
        ServiceBuilder::new()
            .concurrency_limit(64)
            .retry(Attempts(2))
            .timeout(Duration::from_secs(1))
            .service_fn($op)
    };
}

fn recloser() -> AsyncRecloser {
    AsyncRecloser::from(Recloser::custom().build())
}

fn failsafe_consecutive() -> impl failsafe::futures::CircuitBreaker + Clone + Send + Sync {
    failsafe::Config::new()
        .failure_policy(failure_policy::consecutive_failures(
            5,
            backoff::constant(Duration::from_secs(30)),
        ))
        .build()
}

fn failsafe_default() -> impl failsafe::futures::CircuitBreaker + Clone + Send + Sync {
    failsafe::Config::new().build()
}

/// The single-threaded rows for one operation. `$raw` and `$annotated` are the raw and
/// the `#[resilient]` versions of the same operation.
macro_rules! one_thread_suite {
    ($title:expr, $config:expr, $raw:path, $annotated:path, $child:expr) => {{
        let mut suite = Suite::new($title, $config);
        suite.add(RAW, async_sampler(async |i| $raw(i).await));
        suite.add(
            if $child { MACRO_OFF } else { MACRO },
            async_sampler(async |i| $annotated(i).await),
        );
        if !$child {
            let on = leaked_runtime(true);
            let off = leaked_runtime(false);
            suite.add(
                EXEC,
                async_sampler(async move |i| on.execute(&EXECUTE, || $raw(i)).await),
            );
            suite.add(
                EXEC_OFF,
                async_sampler(async move |i| off.execute(&EXECUTE, || $raw(i)).await),
            );
            let mut svc = tower_stack!($raw);
            suite.add(
                TOWER,
                async_sampler(async move |i| svc.ready().await.expect("ready").call(i).await),
            );
            let r = recloser();
            suite.add(
                RECLOSER,
                async_sampler(async move |i| r.call($raw(i)).await),
            );
            let fc = failsafe_consecutive();
            suite.add(
                FAILSAFE_CONSECUTIVE,
                async_sampler(async move |i| fc.call($raw(i)).await),
            );
            let fd = failsafe_default();
            suite.add(
                FAILSAFE_DEFAULT,
                async_sampler(async move |i| fd.call($raw(i)).await),
            );
            suite.add(
                TIMEOUT,
                async_sampler(async |i| {
                    tokio::time::timeout(Duration::from_secs(1), $raw(i)).await
                }),
            );
            suite.add(
                FLOOR,
                async_sampler(async |i| FLOOR_STACK.call(|| $raw(i)).await),
            );
        }
        suite.run()
    }};
}

fn two_thread_suite(config: Config, child: bool) -> Vec<Stats> {
    let mut suite = Suite::new("2 threads, ready op", config);
    suite.add_two_threads(RAW, async_thread_loop(|| async |i| raw_ready(i).await));
    suite.add_two_threads(
        if child { MACRO_OFF } else { MACRO },
        async_thread_loop(|| async |i| resilient_ready(i).await),
    );
    if !child {
        let on = leaked_runtime(true);
        let off = leaked_runtime(false);
        suite.add_two_threads(
            EXEC,
            async_thread_loop(move || async move |i| on.execute(&EXECUTE, || raw_ready(i)).await),
        );
        suite.add_two_threads(
            EXEC_OFF,
            async_thread_loop(move || async move |i| off.execute(&EXECUTE, || raw_ready(i)).await),
        );
        // Each thread clones the one service, as tower users do: the clones share the
        // semaphore.
        let shared = Mutex::new(tower_stack!(raw_ready));
        suite.add_two_threads(
            TOWER,
            async_thread_loop(move || {
                let mut svc = shared.lock().expect("not poisoned").clone();
                async move |i| svc.ready().await.expect("ready").call(i).await
            }),
        );
        let r = recloser();
        suite.add_two_threads(
            RECLOSER,
            async_thread_loop(move || {
                let r = r.clone();
                async move |i| r.call(raw_ready(i)).await
            }),
        );
        let fc = failsafe_consecutive();
        suite.add_two_threads(
            FAILSAFE_CONSECUTIVE,
            async_thread_loop(move || {
                let fc = fc.clone();
                async move |i| fc.call(raw_ready(i)).await
            }),
        );
        let fd = failsafe_default();
        suite.add_two_threads(
            FAILSAFE_DEFAULT,
            async_thread_loop(move || {
                let fd = fd.clone();
                async move |i| fd.call(raw_ready(i)).await
            }),
        );
        suite.add_two_threads(
            FLOOR,
            async_thread_loop(|| async |i| FLOOR_STACK.call(|| raw_ready(i)).await),
        );
    }
    suite.run()
}

/// The sections of this benchmark, by name, as `(title, rows)`.
fn measure(config: Config, child: bool) -> Vec<(&'static str, Vec<Stats>)> {
    let mut sections = Vec::new();
    if config.runs("ready") {
        sections.push((
            "ready",
            one_thread_suite!(
                "1 thread, op ready at once",
                config,
                raw_ready,
                resilient_ready,
                child
            ),
        ));
    }
    if config.runs("yield_once") {
        sections.push((
            "yield_once",
            one_thread_suite!(
                "1 thread, op that yields once",
                config,
                raw_yield_once,
                resilient_yield_once,
                child
            ),
        ));
    }
    if config.runs("two_threads") {
        sections.push(("two_threads", two_thread_suite(config, child)));
    }
    sections
}

fn main() {
    let config = Config::from_args();
    let metrics = std::env::var(METRICS_ENV).as_deref() != Ok("off");
    install_global(metrics);
    if is_child() {
        for (section, rows) in measure(config, true) {
            for row in rows {
                println!("{}", row.to_line(section));
            }
        }
        return;
    }

    let from_child = run_child(&config, (METRICS_ENV, "off"));
    let mut sections = measure(config, false);
    for (section, rows) in &mut sections {
        // The child's overhead over its own raw call, added to this process's raw call.
        let child = |name: &str| {
            from_child
                .iter()
                .find(|(s, r)| s == section && r.name == name)
                .map(|(_, r)| r.clone())
        };
        let (Some(child_raw), Some(mut off)) = (child(RAW), child(MACRO_OFF)) else {
            continue;
        };
        let raw = rows
            .iter()
            .find(|r| r.name == RAW)
            .map_or(0.0, |r| r.median);
        // Two threads: absolute ns/call; one thread: overhead on top of raw.
        let shift = if *section == "two_threads" {
            0.0
        } else {
            raw - child_raw.median
        };
        off.median += shift;
        off.q1 += shift;
        off.q3 += shift;
        rows.insert(2, off);
    }

    for (section, rows) in &sections {
        match *section {
            "two_threads" => print_table(
                "2 threads sharing one instance, op ready at once (ns/call per thread)",
                rows,
                None,
                &[FLOOR, TOWER],
            ),
            "ready" => print_table(
                "1 thread, op ready at once",
                rows,
                Some(RAW),
                &[TOWER, FLOOR],
            ),
            _ => print_table(
                "1 thread, op that yields once",
                rows,
                Some(RAW),
                &[TOWER, FLOOR],
            ),
        }
    }
}
