//! Tests for how outcomes are counted: classes, stale permits, the window, `call()`.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use tokio::time::advance;

use super::tests::{DbError, MS, RESET, acquire, config, fail_n, half_open};
use super::*;
use crate::ErrorClass;

fn windowed(size: u32, failure_rate_percent: u8, minimum_calls: u32) -> CircuitBreaker {
    let window = FailureRateWindow {
        size,
        failure_rate_percent,
        minimum_calls,
    };
    CircuitBreaker::new(
        "w",
        BreakerConfig {
            window: Some(window),
            ..config(1_000)
        },
    )
}

/// `true` = failure, `false` = success.
fn feed(breaker: &CircuitBreaker, outcomes: &[bool]) {
    for &failed in outcomes {
        let permit = acquire(breaker);
        if failed {
            permit.failure()
        } else {
            permit.success()
        }
    }
}

#[tokio::test(start_paused = true)]
async fn ignored_outcomes_never_trip_it() {
    let breaker = CircuitBreaker::new("t", config(1));
    for _ in 0..10 {
        acquire(&breaker).record(ErrorClass::Caller);
        acquire(&breaker).record(ErrorClass::Rejected);
        acquire(&breaker).record(ErrorClass::Transient);
        acquire(&breaker).ignore();
        drop(acquire(&breaker));
    }
    assert_eq!(breaker.state(), BreakerState::Closed);
    assert_eq!(breaker.snapshot().failures, 0);

    half_open(&breaker).await;
    acquire(&breaker).record(ErrorClass::Caller);
    let snapshot = breaker.snapshot();
    assert_eq!(
        snapshot.state,
        BreakerState::HalfOpen,
        "a caller error is no verdict"
    );
    assert_eq!(
        (snapshot.half_open_in_flight, snapshot.half_open_successes),
        (0, 0)
    );
}

#[tokio::test(start_paused = true)]
async fn record_counts_only_classes_that_count() {
    let breaker = CircuitBreaker::new("t", config(3));
    acquire(&breaker).record(ErrorClass::Unavailable);
    acquire(&breaker).record(ErrorClass::Ambiguous);
    assert_eq!(breaker.snapshot().failures, 2);
    acquire(&breaker).record(ErrorClass::Unavailable);
    assert_eq!(breaker.state(), BreakerState::Open);
}

#[tokio::test(start_paused = true)]
async fn a_dropped_permit_frees_its_half_open_slot() {
    let breaker = CircuitBreaker::new("t", config(1));
    half_open(&breaker).await;
    let held: Vec<_> = (0..3).map(|_| acquire(&breaker)).collect();
    assert!(breaker.try_acquire().is_err());
    drop(held);
    assert_eq!(breaker.snapshot().half_open_in_flight, 0);
    let again: Vec<_> = (0..3).filter_map(|_| breaker.try_acquire().ok()).collect();
    assert_eq!(again.len(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_call_frees_its_half_open_slot() {
    let breaker = CircuitBreaker::new("t", config(1));
    half_open(&breaker).await;
    let call = breaker.call(std::future::pending::<Result<(), DbError>>());
    assert!(tokio::time::timeout(MS, call).await.is_err());
    let snapshot = breaker.snapshot();
    assert_eq!(snapshot.state, BreakerState::HalfOpen);
    assert_eq!(snapshot.half_open_in_flight, 0);
}

#[tokio::test(start_paused = true)]
async fn a_slow_success_from_before_opening_is_not_a_trial() {
    let breaker = CircuitBreaker::new("t", config(1));
    let slow = acquire(&breaker);
    fail_n(&breaker, 1);
    advance(RESET).await;
    let trial = acquire(&breaker);
    slow.success();
    let snapshot = breaker.snapshot();
    assert_eq!(snapshot.half_open_successes, 0);
    assert_eq!(snapshot.half_open_in_flight, 1);
    trial.success();
    assert_eq!(
        breaker.state(),
        BreakerState::HalfOpen,
        "one real trial is not enough"
    );
}

#[tokio::test(start_paused = true)]
async fn stale_failures_count_in_no_later_state() {
    let breaker = CircuitBreaker::new("t", config(1));
    let slow = acquire(&breaker);
    fail_n(&breaker, 1);
    advance(RESET).await;
    slow.failure();
    assert_eq!(
        breaker.state(),
        BreakerState::HalfOpen,
        "closed-era failure cannot re-open"
    );

    // A trial still running when the breaker closed does not count in the new period.
    let (first, second, late) = (acquire(&breaker), acquire(&breaker), acquire(&breaker));
    first.success();
    second.success();
    assert_eq!(breaker.state(), BreakerState::Closed);
    late.failure();
    assert_eq!(breaker.state(), BreakerState::Closed);
    assert_eq!(breaker.snapshot().failures, 0);

    let before_reset = acquire(&breaker);
    breaker.reset();
    before_reset.failure();
    assert_eq!(breaker.snapshot().failures, 0);
}

#[tokio::test(start_paused = true)]
async fn a_stale_trial_does_not_free_a_slot_of_the_next_half_open_period() {
    let breaker = CircuitBreaker::new("t", config(1));
    half_open(&breaker).await;
    let old_trial = acquire(&breaker);
    acquire(&breaker).failure();
    advance(RESET).await;
    let held: Vec<_> = (0..3).map(|_| acquire(&breaker)).collect();
    drop(old_trial);
    assert_eq!(breaker.snapshot().half_open_in_flight, 3);
    assert!(breaker.try_acquire().is_err());
    drop(held);
}

#[tokio::test(start_paused = true)]
async fn window_opens_at_the_rate_and_not_below_it() {
    let breaker = windowed(10, 50, 4);
    feed(&breaker, &[false, false, true, false, true]);
    assert_eq!(breaker.state(), BreakerState::Closed, "2 of 5 is 40%");
    assert_eq!(breaker.snapshot().failure_rate_percent, Some(40.0));
    feed(&breaker, &[true]);
    assert_eq!(breaker.state(), BreakerState::Open, "3 of 6 is 50%");
}

#[tokio::test(start_paused = true)]
async fn window_waits_for_minimum_calls() {
    let breaker = windowed(10, 50, 5);
    feed(&breaker, &[true; 4]);
    assert_eq!(breaker.state(), BreakerState::Closed);
    assert_eq!(breaker.snapshot().failure_rate_percent, Some(100.0));
    feed(&breaker, &[true]);
    assert_eq!(breaker.state(), BreakerState::Open);
}

#[tokio::test(start_paused = true)]
async fn window_forgets_outcomes_older_than_its_size() {
    let breaker = windowed(4, 50, 4);
    feed(&breaker, &[false, false, false, true]);
    assert_eq!(breaker.snapshot().failure_rate_percent, Some(25.0));
    // Over all five calls the rate is 40%; over the last four it is 50%.
    feed(&breaker, &[true]);
    assert_eq!(breaker.state(), BreakerState::Open);
}

#[tokio::test(start_paused = true)]
async fn window_ignores_ignored_outcomes_and_clears_on_close() {
    let breaker = windowed(10, 50, 2);
    for _ in 0..5 {
        acquire(&breaker).record(ErrorClass::Caller);
    }
    assert_eq!(breaker.snapshot().failure_rate_percent, Some(0.0));
    feed(&breaker, &[true, true]);
    assert_eq!(breaker.state(), BreakerState::Open);
    advance(RESET).await;
    feed(&breaker, &[false, false]);
    assert_eq!(breaker.state(), BreakerState::Closed);
    assert_eq!(breaker.snapshot().failure_rate_percent, Some(0.0));
    feed(&breaker, &[true]);
    assert_eq!(
        breaker.state(),
        BreakerState::Closed,
        "one call is below minimum_calls"
    );
}

#[tokio::test(start_paused = true)]
async fn call_records_by_error_class() {
    let breaker = CircuitBreaker::new("t", config(3));
    let fail = |class| breaker.call(async move { Err::<(), _>(DbError(class)) });
    for class in [
        ErrorClass::Caller,
        ErrorClass::Transient,
        ErrorClass::Rejected,
    ] {
        assert_eq!(fail(class).await, Err(BreakerError::Inner(DbError(class))));
    }
    assert_eq!(breaker.snapshot().failures, 0);
    let _ = fail(ErrorClass::Unavailable).await;
    let _ = fail(ErrorClass::Ambiguous).await;
    assert_eq!(breaker.snapshot().failures, 2);
    assert_eq!(breaker.call(async { Ok::<_, DbError>(7) }).await, Ok(7));
    assert_eq!(breaker.snapshot().failures, 1);
}

#[tokio::test(start_paused = true)]
async fn call_on_an_open_breaker_never_polls_the_future() {
    let breaker = CircuitBreaker::new("orders", config(1));
    breaker.force_open();
    let polled = AtomicBool::new(false);
    let result = breaker
        .call(async {
            polled.store(true, Ordering::Relaxed);
            Ok::<_, DbError>(())
        })
        .await;
    assert!(!polled.load(Ordering::Relaxed));
    let error = result.expect_err("open breaker must reject");
    assert_eq!(error.to_string(), "circuit breaker `orders` is open");
    assert_eq!(error.class(), ErrorClass::Rejected);
    assert_eq!(error.into_inner(), DbError(ErrorClass::Rejected));
    let inner: BreakerError<DbError> = BreakerError::Inner(DbError(ErrorClass::Caller));
    assert_eq!(inner.to_string(), "db error (caller)");
}

#[tokio::test(start_paused = true)]
async fn force_open_and_reset() {
    let breaker = CircuitBreaker::from_spec(&DATABASE);
    assert_eq!(
        (breaker.name(), breaker.config()),
        ("database", &BreakerConfig::DEFAULT)
    );
    breaker.force_open();
    advance(RESET).await;
    breaker.force_open();
    assert_eq!(
        breaker.snapshot().opened_total,
        1,
        "already open: nothing to do"
    );
    assert!(breaker.try_acquire().is_err());
    advance(DATABASE.config().reset_timeout - RESET).await;
    assert_eq!(
        breaker.state(),
        BreakerState::HalfOpen,
        "the first timeout still runs"
    );

    fail_n(&breaker, 1);
    breaker.reset();
    let snapshot = breaker.snapshot();
    assert_eq!(snapshot.state, BreakerState::Closed);
    assert_eq!(
        (
            snapshot.failures,
            snapshot.opened_total,
            snapshot.rejected_total
        ),
        (0, 0, 0)
    );
}

#[test]
fn out_of_range_settings_are_clamped() {
    let window = FailureRateWindow {
        size: 5_000,
        failure_rate_percent: 0,
        minimum_calls: 0,
    };
    let zeroes = BreakerConfig {
        failure_threshold: 0,
        half_open_successes: 0,
        half_open_max_calls: u32::MAX,
        window: Some(window),
        ..BreakerConfig::DEFAULT
    };
    let config = *CircuitBreaker::new("t", zeroes).config();
    assert_eq!(config.failure_threshold, 1);
    assert_eq!(config.half_open_successes, 1);
    assert_eq!(config.half_open_max_calls, 0xFFFF);
    let expected = FailureRateWindow {
        size: 1024,
        failure_rate_percent: 1,
        minimum_calls: 1,
    };
    assert_eq!(config.window, Some(expected));
}

#[test]
fn breaker_and_call_future_are_send_and_sync() {
    fn send_sync<T: Send + Sync>(_: &T) {}
    let breaker = CircuitBreaker::new("t", config(1));
    send_sync(&breaker);
    send_sync(&breaker.call(async { Ok::<_, DbError>(()) }));
}

/// Collects `(level, fields)` of every event; enough of a subscriber for these tests.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<CapturedEvent>>>);

type CapturedEvent = (tracing::Level, Vec<(String, String)>);

struct Fields(Vec<(String, String)>);

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn fmt::Debug) {
        self.0.push((field.name().to_owned(), format!("{value:?}")));
    }

    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.push((field.name().to_owned(), value.to_owned()));
    }
}

impl tracing::Subscriber for Capture {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut fields = Fields(Vec::new());
        event.record(&mut fields);
        let mut events = self.0.lock().expect("poisoned");
        events.push((*event.metadata().level(), fields.0));
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

#[tokio::test(start_paused = true)]
async fn every_transition_emits_an_event() {
    // With a single registered dispatcher, tracing computes a callsite's interest from
    // whichever thread registers it first; another test's thread (no subscriber) would
    // then disable our callsites. A second live dispatcher forces the slow, correct path.
    let _second = tracing::Dispatch::new(Capture::default());
    let capture = Capture::default();
    let _guard = tracing::subscriber::set_default(capture.clone());
    tracing::callsite::rebuild_interest_cache();
    let breaker = CircuitBreaker::new("traced", config(1));
    fail_n(&breaker, 1);
    advance(RESET).await;
    feed(&breaker, &[false, false]);

    let events = capture.0.lock().expect("poisoned").clone();
    let seen: Vec<_> = events
        .iter()
        .map(|(level, fields)| {
            let get = |name: &str| {
                let found = fields.iter().find(|(field, _)| field == name);
                found.map(|(_, value)| value.clone()).unwrap_or_default()
            };
            (*level, get("breaker"), get("from"), get("to"))
        })
        .collect();
    let expect = |level, from: &str, to: &str| (level, "traced".into(), from.into(), to.into());
    assert_eq!(
        seen,
        vec![
            expect(tracing::Level::WARN, "closed", "open"),
            expect(tracing::Level::INFO, "open", "half_open"),
            expect(tracing::Level::INFO, "half_open", "closed"),
        ]
    );
}
