//! Metrics recorded by real calls, read back through snapshots and a Prometheus recorder.

use std::time::Duration;

use crate::breaker::BreakerSpec;
use crate::bulkhead::BulkheadSpec;
use crate::policy::{Backoff, Policy};
use crate::{Classify, ErrorClass, Rejection, Runtime};

#[derive(Debug, PartialEq)]
enum E {
    Down(String),
    Missing,
    Rejected(Rejection),
}
impl Classify for E {
    fn class(&self) -> ErrorClass {
        match self {
            E::Down(_) => ErrorClass::Unavailable,
            E::Missing => ErrorClass::Caller,
            E::Rejected(r) => r.class(),
        }
    }
    fn describe(&self) -> Option<String> {
        match self {
            E::Down(m) => Some(m.clone()),
            E::Missing => Some("missing".into()),
            E::Rejected(r) => r.describe(),
        }
    }
}
impl From<Rejection> for E {
    fn from(r: Rejection) -> Self {
        E::Rejected(r)
    }
}

static QUIET: BreakerSpec = BreakerSpec::new("metrics-quiet").failure_threshold(1_000);
static SOLO: BulkheadSpec = BulkheadSpec::new("metrics-solo", 1, 0);
static OP: Policy = Policy::new("metrics_op", module_path!())
    .retry(2)
    .backoff(Backoff::None)
    .timeout_ms(1_000)
    .breaker(&QUIET)
    .bulkhead(&SOLO);

fn rt(metrics: bool) -> Runtime {
    Runtime::builder()
        .without_registry()
        .register(&OP)
        .metrics(metrics)
        .build()
        .expect("valid")
}

async fn drive(rt: &Runtime) {
    // Two successes of 100 ms, one unavailable failure after 3 attempts, one caller error,
    // one attempt timeout that is then retried to success, one bulkhead rejection.
    for _ in 0..2 {
        let r: Result<(), E> = rt
            .execute(&OP, || async {
                tokio::time::sleep(Duration::from_millis(100)).await;
                Ok(())
            })
            .await;
        assert_eq!(r, Ok(()));
    }
    let r: Result<(), E> = rt
        .execute(&OP, || async {
            Err(E::Down(
                "connect to postgres://app:hunter2@db failed".into(),
            ))
        })
        .await;
    assert!(r.is_err());
    let r: Result<(), E> = rt.execute(&OP, || async { Err(E::Missing) }).await;
    assert_eq!(r, Err(E::Missing));
    let mut first = true;
    let r: Result<(), E> = rt
        .execute(&OP, || {
            let slow = std::mem::take(&mut first);
            async move {
                if slow {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
                Ok(())
            }
        })
        .await;
    assert_eq!(r, Ok(()));
    let held = rt
        .bulkhead("metrics-solo")
        .expect("declared")
        .try_acquire()
        .expect("free");
    let r: Result<(), E> = rt.execute(&OP, || async { Ok(()) }).await;
    assert!(matches!(
        r,
        Err(E::Rejected(Rejection::BulkheadFull { .. }))
    ));
    drop(held);
}

fn op_snapshot(rt: &Runtime) -> crate::OperationSnapshot {
    rt.snapshot()
        .operations
        .into_iter()
        .find(|o| o.name == "metrics_op")
        .expect("registered")
}

#[tokio::test(start_paused = true)]
async fn calls_are_counted_by_outcome_and_class() {
    let rt = rt(true);
    drive(&rt).await;
    let m = op_snapshot(&rt).metrics;
    assert_eq!(m.calls, 6);
    assert_eq!(m.successes, 3);
    assert_eq!(m.failures.unavailable, 1);
    assert_eq!(m.failures.caller, 1);
    assert_eq!(m.failures.rejected, 1);
    assert_eq!(
        m.retries, 3,
        "two for the unavailable call, one after the timeout"
    );
    assert_eq!(m.attempt_timeouts, 1);
    assert_eq!(m.rejections.bulkhead_full, 1);
    let totals = rt.snapshot().totals;
    assert_eq!(totals.calls, 6);
}

#[tokio::test(start_paused = true)]
async fn latency_percentiles_follow_the_paused_clock() {
    let rt = rt(true);
    drive(&rt).await;
    let l = op_snapshot(&rt).latency;
    // Every call that reached admission is timed, the bulkhead rejection included.
    assert_eq!(l.count, 6);
    assert!((l.max_ms - 1_000.0).abs() < 40.0, "{l:?}");
    assert!(l.min_ms < 1.0, "{l:?}");
    assert!((l.p50_ms - 100.0).abs() < 5.0 || l.p50_ms < 1.0, "{l:?}");
}

#[tokio::test(start_paused = true)]
async fn recent_errors_are_redacted() {
    let rt = rt(true);
    drive(&rt).await;
    let errors = rt.snapshot().recent_errors;
    assert_eq!(errors.len(), 3);
    let text = serde_json::to_string(&errors).expect("json");
    assert!(!text.contains("hunter2"), "{text}");
    assert!(text.contains("postgres://app:***@db"), "{text}");
    assert_eq!(errors[0].class, ErrorClass::Unavailable);
}

#[tokio::test(start_paused = true)]
async fn reset_starts_snapshots_anew_but_keeps_prometheus_counters_monotonic() {
    let rt = rt(true);
    drive(&rt).await;
    rt.reset_metrics();
    let after = op_snapshot(&rt);
    assert_eq!(after.metrics.calls, 0);
    assert_eq!(after.latency.count, 0);
    assert!(rt.snapshot().recent_errors.is_empty());
    let r: Result<(), E> = rt.execute(&OP, || async { Ok(()) }).await;
    assert_eq!(r, Ok(()));
    assert_eq!(op_snapshot(&rt).metrics.calls, 1);

    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    metrics::with_local_recorder(&recorder, || rt.publish_metrics());
    let text = handle.render();
    for line in [
        "resilient_calls_total{operation=\"metrics_op\"} 7",
        "resilient_call_successes_total{operation=\"metrics_op\"} 4",
        "resilient_call_failures_total{operation=\"metrics_op\",class=\"unavailable\"} 1",
        "resilient_retries_total{operation=\"metrics_op\"} 3",
        "resilient_attempt_timeouts_total{operation=\"metrics_op\"} 1",
        "resilient_rejections_total{operation=\"metrics_op\",reason=\"bulkhead_full\"} 1",
        "resilient_bulkhead_rejected_total{bulkhead=\"metrics-solo\"} 0",
        "resilient_breaker_state{breaker=\"metrics-quiet\"} 0",
        "resilient_call_duration_seconds_count{operation=\"metrics_op\"} 7",
    ] {
        assert!(text.contains(line), "missing `{line}` in:\n{text}");
    }
    assert!(
        text.contains(
            "resilient_call_duration_seconds{operation=\"metrics_op\",quantile=\"0.99\"}"
        )
    );
}

#[tokio::test(start_paused = true)]
async fn metrics_can_be_turned_off() {
    let rt = rt(false);
    drive(&rt).await;
    let o = op_snapshot(&rt);
    assert_eq!(o.latency.count, 0);
    assert!(rt.snapshot().recent_errors.is_empty());
    // Counters stay: they are what the breaker and the dashboard reason about.
    assert_eq!(o.metrics.calls, 6);
}

#[tokio::test(start_paused = true)]
async fn the_snapshot_serializes_with_the_effective_policy() {
    let rt = rt(true);
    drive(&rt).await;
    let json = serde_json::to_value(rt.snapshot()).expect("json");
    let op = json["operations"]
        .as_array()
        .expect("operations")
        .iter()
        .find(|o| o["name"] == "metrics_op")
        .expect("op");
    assert_eq!(op["policy"]["retry"], 2);
    assert_eq!(op["policy"]["timeout_ms"], 1000);
    assert_eq!(op["policy"]["bulkhead"], "metrics-solo");
    assert_eq!(op["policy"]["breaker"], "metrics-quiet");
    assert_eq!(op["metrics"]["failures"]["unavailable"], 1);
    assert!(
        json["breakers"]
            .as_array()
            .is_some_and(|b| b.iter().any(|b| b["state"] == "closed"))
    );
    assert!(json["taken_at_unix_ms"].as_u64().is_some_and(|t| t > 0));
}

#[tokio::test(start_paused = true)]
async fn sampled_latency_is_not_starved_by_alternating_operations() {
    use crate::policy::Policy;
    use crate::{Rejection, Runtime};

    static A: Policy = Policy::new("sample_a", module_path!()).timeout_ms(1_000);
    static B: Policy = Policy::new("sample_b", module_path!()).timeout_ms(1_000);
    let rt = Runtime::builder()
        .without_registry()
        .register(&A)
        .register(&B)
        .latency_sample(2)
        .build()
        .unwrap();
    for _ in 0..400 {
        for policy in [&A, &B] {
            let out: Result<(), Rejection> = rt
                .execute(policy, || async {
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    Ok(())
                })
                .await;
            out.unwrap();
        }
    }
    for name in ["sample_a", "sample_b"] {
        let op = rt
            .snapshot()
            .operations
            .into_iter()
            .find(|o| o.name == name)
            .unwrap();
        // Every call waited 10 ms: no invented zeros, and both operations are sampled.
        let l = op.latency;
        assert!(
            (100..=300).contains(&l.count),
            "{name}: {} timed of 400",
            l.count
        );
        assert!(l.min_ms >= 9.9 && l.p50_ms >= 9.9, "{name}: {l:?}");
    }
}
