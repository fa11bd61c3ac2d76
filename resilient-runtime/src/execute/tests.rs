//! The composed policies, driven on tokio's paused clock with a fake operation.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::breaker::{BreakerConfig, BreakerSpec, BreakerState};
use crate::bulkhead::BulkheadSpec;
use crate::policy::{Backoff, Policy, Preset};
use crate::{Classify, ErrorClass, Rejection, Runtime};

#[derive(Debug, PartialEq)]
enum E {
    Class(ErrorClass),
    Rejected(Rejection),
}
impl Classify for E {
    fn class(&self) -> ErrorClass {
        match self {
            E::Class(c) => *c,
            E::Rejected(r) => r.class(),
        }
    }
}
impl From<Rejection> for E {
    fn from(r: Rejection) -> Self {
        E::Rejected(r)
    }
}

static NO_BREAKER: BreakerSpec = BreakerSpec::new("test-quiet").failure_threshold(1_000);

static RETRY5: Policy = Policy::new("retry5", module_path!())
    .retry(5)
    .backoff(Backoff::Fixed)
    .delay_ms(10)
    .jitter(false)
    .breaker(&NO_BREAKER);
static RETRY5_WRITE: Policy = Policy::new("retry5_write", module_path!())
    .preset(Preset::Write)
    .retry(5)
    .delay_ms(10)
    .breaker(&NO_BREAKER);

fn runtime(extra: &[&'static Policy]) -> Runtime {
    extra
        .iter()
        .fold(Runtime::builder().without_registry(), |b, p| b.register(p))
        .build()
        .expect("valid runtime")
}

async fn count_attempts(rt: &Runtime, policy: &'static Policy, class: ErrorClass) -> u32 {
    let calls = AtomicU32::new(0);
    let out: Result<(), E> = rt
        .execute(policy, || {
            calls.fetch_add(1, Ordering::Relaxed);
            async move { Err(E::Class(class)) }
        })
        .await;
    assert_eq!(out, Err(E::Class(class)));
    calls.load(Ordering::Relaxed)
}

#[tokio::test(start_paused = true)]
async fn attempts_per_error_class() {
    let rt = runtime(&[&RETRY5, &RETRY5_WRITE]);
    assert_eq!(count_attempts(&rt, &RETRY5, ErrorClass::Transient).await, 6);
    assert_eq!(
        count_attempts(&rt, &RETRY5, ErrorClass::Unavailable).await,
        6
    );
    assert_eq!(count_attempts(&rt, &RETRY5, ErrorClass::Ambiguous).await, 6);
    assert_eq!(count_attempts(&rt, &RETRY5, ErrorClass::Caller).await, 1);
    assert_eq!(count_attempts(&rt, &RETRY5, ErrorClass::Rejected).await, 1);
    // The write preset is not idempotent: a maybe-applied write is never retried.
    assert_eq!(
        count_attempts(&rt, &RETRY5_WRITE, ErrorClass::Ambiguous).await,
        1
    );
    assert_eq!(
        count_attempts(&rt, &RETRY5_WRITE, ErrorClass::Transient).await,
        6
    );
}

static DEADLINE_250: Policy = Policy::new("deadline_250", module_path!())
    .retry(5)
    .backoff(Backoff::Fixed)
    .delay_ms(100)
    .jitter(false)
    .timeout_ms(200)
    .deadline_ms(250)
    .breaker(&NO_BREAKER);

#[tokio::test(start_paused = true)]
async fn the_deadline_covers_backoff_sleeps() {
    let rt = runtime(&[&DEADLINE_250]);
    let start = Instant::now();
    let calls = AtomicU32::new(0);
    let out: Result<(), E> = rt
        .execute(&DEADLINE_250, || {
            calls.fetch_add(1, Ordering::Relaxed);
            async { Err(E::Class(ErrorClass::Transient)) }
        })
        .await;
    // Attempts at 0, 100 and 200 ms; a fourth would start at 300 ms, past the deadline.
    assert_eq!(out, Err(E::Class(ErrorClass::Transient)));
    assert_eq!(calls.load(Ordering::Relaxed), 3);
    assert_eq!(start.elapsed(), Duration::from_millis(200));
}

static SLOW: Policy = Policy::new("slow", module_path!())
    .retry(3)
    .backoff(Backoff::None)
    .timeout_ms(500)
    .deadline_ms(700)
    .breaker(&NO_BREAKER);

#[tokio::test(start_paused = true)]
async fn attempt_timeouts_retry_until_the_deadline_cuts_in() {
    let rt = runtime(&[&SLOW]);
    let start = Instant::now();
    let calls = AtomicU32::new(0);
    let out: Result<(), E> = rt
        .execute(&SLOW, || {
            calls.fetch_add(1, Ordering::Relaxed);
            async {
                tokio::time::sleep(Duration::from_secs(10)).await;
                Ok(())
            }
        })
        .await;
    assert_eq!(
        out,
        Err(E::Rejected(Rejection::DeadlineExceeded {
            deadline: Duration::from_millis(700)
        }))
    );
    assert_eq!(calls.load(Ordering::Relaxed), 2);
    assert_eq!(start.elapsed(), Duration::from_millis(700));
}

static FRAGILE: BreakerSpec = BreakerSpec::new("test-fragile")
    .failure_threshold(2)
    .reset_timeout(Duration::from_secs(30));
static ON_FRAGILE: Policy = Policy::new("on_fragile", module_path!())
    .retry(3)
    .backoff(Backoff::None)
    .breaker(&FRAGILE);

#[tokio::test(start_paused = true)]
async fn open_breaker_rejections_are_not_retried_nor_counted() {
    let rt = runtime(&[&ON_FRAGILE]);
    let breaker = rt.breaker("test-fragile").expect("declared by the policy");
    // Two unavailable attempts open it; the third attempt is rejected without running.
    assert_eq!(count_attempts_any(&rt, ErrorClass::Unavailable).await.0, 2);
    assert_eq!(breaker.state(), BreakerState::Open);
    let (attempts, out) = count_attempts_any(&rt, ErrorClass::Unavailable).await;
    assert_eq!(attempts, 0);
    assert_eq!(
        out,
        Err(E::Rejected(Rejection::BreakerOpen {
            breaker: "test-fragile"
        }))
    );
    let failures_before = breaker.snapshot().failures;
    let _ = count_attempts_any(&rt, ErrorClass::Unavailable).await;
    assert_eq!(breaker.snapshot().failures, failures_before);
}

async fn count_attempts_any(rt: &Runtime, class: ErrorClass) -> (u32, Result<(), E>) {
    let calls = AtomicU32::new(0);
    let out = rt
        .execute(&ON_FRAGILE, || {
            calls.fetch_add(1, Ordering::Relaxed);
            async move { Err(E::Class(class)) }
        })
        .await;
    (calls.load(Ordering::Relaxed), out)
}

#[tokio::test(start_paused = true)]
async fn caller_errors_never_trip_the_breaker() {
    let rt = runtime(&[&ON_FRAGILE]);
    for _ in 0..50 {
        assert_eq!(count_attempts_any(&rt, ErrorClass::Caller).await.0, 1);
    }
    let breaker = rt.breaker("test-fragile").expect("declared");
    assert_eq!(breaker.state(), BreakerState::Closed);
    assert_eq!(breaker.snapshot().failures, 0);
}

static ONE_SLOT: BulkheadSpec = BulkheadSpec::new("test-one-slot", 1, 0);
static IN_ONE_SLOT: Policy = Policy::new("in_one_slot", module_path!())
    .retry(1)
    .backoff(Backoff::Fixed)
    .delay_ms(100)
    .jitter(false)
    .bulkhead(&ONE_SLOT)
    .breaker(&NO_BREAKER);

#[tokio::test(start_paused = true)]
async fn a_failed_attempt_releases_its_bulkhead_slot_before_sleeping() {
    let rt = runtime(&[&IN_ONE_SLOT]);
    let rt2 = rt.clone();
    let failing = tokio::spawn(async move {
        let first = Arc::new(AtomicU32::new(0));
        rt2.execute(&IN_ONE_SLOT, || {
            let n = first.fetch_add(1, Ordering::Relaxed);
            async move {
                if n == 0 {
                    Err(E::Class(ErrorClass::Transient))
                } else {
                    Ok(())
                }
            }
        })
        .await
    });
    // Let the first attempt fail and start its 100 ms backoff.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let bulkhead = rt.bulkhead("test-one-slot").expect("declared");
    assert_eq!(
        bulkhead.executing(),
        0,
        "the permit is held through the backoff sleep"
    );
    // Another call gets the only slot meanwhile.
    let other: Result<u8, E> = rt.execute(&IN_ONE_SLOT, || async { Ok(7) }).await;
    assert_eq!(other, Ok(7));
    assert_eq!(failing.await.expect("task"), Ok(()));
}

#[tokio::test(start_paused = true)]
async fn a_full_bulkhead_rejects_at_once_and_is_not_retried() {
    let rt = runtime(&[&IN_ONE_SLOT]);
    let bulkhead = rt.bulkhead("test-one-slot").expect("declared");
    let _held = bulkhead.try_acquire().expect("free slot");
    let calls = AtomicU32::new(0);
    let out: Result<(), E> = rt
        .execute(&IN_ONE_SLOT, || {
            calls.fetch_add(1, Ordering::Relaxed);
            async { Ok(()) }
        })
        .await;
    assert_eq!(
        out,
        Err(E::Rejected(Rejection::BulkheadFull {
            bulkhead: "test-one-slot",
            executing: 1,
            waiting: 0
        }))
    );
    assert_eq!(calls.load(Ordering::Relaxed), 0);
}

#[tokio::test(start_paused = true)]
async fn shutdown_rejects_new_calls_and_drains_in_flight_ones() {
    let rt = runtime(&[&RETRY5]);
    let rt2 = rt.clone();
    let in_flight = tokio::spawn(async move {
        rt2.execute(&RETRY5, || async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            Ok::<_, E>(1)
        })
        .await
    });
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(rt.in_flight(), 1);
    let rt3 = rt.clone();
    let shutdown = tokio::spawn(async move { rt3.shutdown(Duration::from_secs(5)).await });
    tokio::time::sleep(Duration::from_millis(10)).await;
    let late: Result<u8, E> = rt.execute(&RETRY5, || async { Ok(2) }).await;
    assert_eq!(late, Err(E::Rejected(Rejection::ShuttingDown)));
    assert_eq!(in_flight.await.expect("task"), Ok(1));
    let report = shutdown.await.expect("task");
    assert!(report.drained);
    assert_eq!(report.in_flight_left, 0);
    assert_eq!(report.waited, Duration::from_millis(290));
}

#[tokio::test(start_paused = true)]
async fn shutdown_gives_up_at_its_drain_deadline() {
    let rt = runtime(&[&RETRY5]);
    let rt2 = rt.clone();
    let _stuck = tokio::spawn(async move {
        rt2.execute(&RETRY5, || async {
            tokio::time::sleep(Duration::from_secs(3)).await;
            Ok::<_, E>(())
        })
        .await
    });
    tokio::time::sleep(Duration::from_millis(1)).await;
    let report = rt.shutdown(Duration::from_secs(1)).await;
    assert!(!report.drained);
    assert_eq!(report.in_flight_left, 1);
    assert_eq!(report.waited, Duration::from_secs(1));
}

static UNREGISTERED: Policy = Policy::new("unregistered", module_path!());

#[tokio::test]
async fn unregistered_operations_and_missing_runtimes_are_rejected() {
    let rt = runtime(&[]);
    let out: Result<(), E> = rt.execute(&UNREGISTERED, || async { Ok(()) }).await;
    assert_eq!(
        out,
        Err(E::Rejected(Rejection::NotRegistered {
            operation: "unregistered"
        }))
    );
    let none = crate::RuntimeRef::None;
    let mut call = crate::execute::Call::new(&none, &UNREGISTERED);
    assert_eq!(call.admit().await.err(), Some(Rejection::NoRuntime));
}

#[tokio::test]
async fn scoped_runtimes_stay_isolated() {
    let a = runtime(&[&RETRY5]);
    let b = runtime(&[&RETRY5]);
    let seen_a = a
        .scope(async { crate::RuntimeRef::current().get().map(|r| r.in_flight()) })
        .await;
    assert_eq!(seen_a, Some(0));
    // Outside any scope, with no global runtime installed in this test binary, none is found.
    assert!(crate::RuntimeRef::current().get().is_none());
    let inner = a
        .scope(b.scope(async {
            let rt = crate::RuntimeRef::current();
            rt.get().map(|r| r.breaker("test-quiet").is_some())
        }))
        .await;
    assert_eq!(inner, Some(true));
}

static CONFLICT_A: BulkheadSpec = BulkheadSpec::new("test-conflict", 1, 1);
static CONFLICT_B: BulkheadSpec = BulkheadSpec::new("test-conflict", 2, 2);
static USES_A: Policy = Policy::new("uses_a", module_path!()).bulkhead(&CONFLICT_A);
static USES_B: Policy = Policy::new("uses_b", module_path!()).bulkhead(&CONFLICT_B);
static DUP_1: Policy = Policy::new("dup", module_path!());
static DUP_2: Policy = Policy::new("dup", module_path!());

#[test]
fn startup_validation_lists_every_offender() {
    let err = Runtime::builder()
        .without_registry()
        .register(&USES_A)
        .register(&USES_B)
        .register(&DUP_1)
        .register(&DUP_2)
        .breaker(
            "bad",
            BreakerConfig {
                failure_threshold: 0,
                half_open_successes: 0,
                ..BreakerConfig::DEFAULT
            },
        )
        .build()
        .expect_err("invalid");
    let text = err.to_string();
    assert_eq!(err.problems().len(), 4, "{text}");
    assert!(
        text.contains("bulkhead `test-conflict` is declared twice"),
        "{text}"
    );
    assert!(text.contains("two operations share this name"), "{text}");
    assert!(
        text.contains("`failure_threshold` must be at least 1"),
        "{text}"
    );
    assert!(
        text.contains("`half_open_successes` must be at least 1"),
        "{text}"
    );
}

#[test]
fn builder_resizes_builtin_bulkheads() {
    let rt = Runtime::builder()
        .without_registry()
        .bulkhead("read", 3, 4)
        .build()
        .expect("valid");
    let read = rt.bulkhead("read").expect("built-in");
    assert_eq!((read.max_concurrent(), read.max_queue()), (3, 4));
    assert_eq!(rt.bulkhead("write").map(|b| b.max_concurrent()), Some(20));
    assert_eq!(rt.bulkhead("report").map(|b| b.max_concurrent()), Some(5));
}

/// A subscriber that keeps the stack of entered spans per thread, so that
/// `Span::current()` works, and counts the spans created.
mod span_stack {
    use std::cell::RefCell;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU64, Ordering};

    use tracing::span::{Attributes, Id, Record};
    use tracing::{Event, Metadata, Subscriber};

    thread_local! {
        static STACK: RefCell<Vec<Id>> = const { RefCell::new(Vec::new()) };
    }

    #[derive(Default)]
    pub(super) struct Stack {
        next: AtomicU64,
        pub(super) spans: Mutex<Vec<&'static Metadata<'static>>>,
    }

    impl Subscriber for Stack {
        fn enabled(&self, _: &Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, span: &Attributes<'_>) -> Id {
            let mut spans = self.spans.lock().unwrap();
            spans.push(span.metadata());
            Id::from_u64(self.next.fetch_add(1, Ordering::Relaxed) + 1)
        }
        fn record(&self, _: &Id, _: &Record<'_>) {}
        fn record_follows_from(&self, _: &Id, _: &Id) {}
        fn event(&self, _: &Event<'_>) {}
        fn enter(&self, span: &Id) {
            STACK.with(|s| s.borrow_mut().push(span.clone()));
        }
        fn exit(&self, _: &Id) {
            STACK.with(|s| s.borrow_mut().pop());
        }
        fn current_span(&self) -> tracing_core::span::Current {
            let spans = self.spans.lock().unwrap();
            STACK.with(|s| match s.borrow().last() {
                Some(id) => tracing_core::span::Current::new(
                    id.clone(),
                    spans[(id.into_u64() - 1) as usize],
                ),
                None => tracing_core::span::Current::none(),
            })
        }
    }
}

#[test]
fn every_attempt_runs_inside_its_span_when_a_subscriber_listens() {
    let subscriber = Arc::new(span_stack::Stack::default());
    let _default = tracing::subscriber::set_default(subscriber.clone());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("runtime");
    let seen = rt.block_on(async {
        let runtime = Runtime::builder().register(&RETRY5).build().unwrap();
        let calls = AtomicU32::new(0);
        let mut seen = Vec::new();
        let out: Result<u32, E> = runtime
            .execute(&RETRY5, || {
                let n = calls.fetch_add(1, Ordering::Relaxed);
                seen.push(tracing::Span::current().metadata().map(|m| m.name()));
                async move {
                    // Suspends, so the span is entered again on the next poll.
                    tokio::task::yield_now().await;
                    let inside = tracing::Span::current().metadata().map(|m| m.name());
                    assert_eq!(
                        inside,
                        Some("resilient"),
                        "attempt {n} polled outside its span"
                    );
                    if n == 0 {
                        Err(E::Class(ErrorClass::Transient))
                    } else {
                        Ok(n)
                    }
                }
            })
            .await;
        assert_eq!(out, Ok(1));
        seen
    });
    // The closure builds the future outside the span; the span wraps its polls.
    assert_eq!(seen, vec![None, None]);
    let names: Vec<_> = subscriber
        .spans
        .lock()
        .unwrap()
        .iter()
        .map(|m| m.name())
        .collect();
    assert_eq!(
        names,
        vec!["resilient", "resilient"],
        "one span per attempt"
    );
}
