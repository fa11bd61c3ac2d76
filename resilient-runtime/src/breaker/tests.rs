//! Unit tests for the breaker's rules, with tokio's paused clock.

use std::time::Duration;

use tokio::time::advance;

use super::*;
use crate::ErrorClass;

pub(super) const RESET: Duration = Duration::from_secs(10);
pub(super) const MS: Duration = Duration::from_millis(1);

pub(super) fn config(failure_threshold: u32) -> BreakerConfig {
    BreakerConfig {
        failure_threshold,
        reset_timeout: RESET,
        half_open_successes: 2,
        half_open_max_calls: 3,
        window: None,
    }
}

pub(super) fn acquire(breaker: &CircuitBreaker) -> BreakerPermit<'_> {
    breaker
        .try_acquire()
        .expect("breaker should admit the call")
}

pub(super) fn fail_n(breaker: &CircuitBreaker, n: u32) {
    for _ in 0..n {
        acquire(breaker).failure();
    }
}

/// Opens the breaker and waits out the reset timeout; returns with it half-open.
pub(super) async fn half_open(breaker: &CircuitBreaker) {
    breaker.force_open();
    advance(breaker.config().reset_timeout).await;
    assert_eq!(breaker.state(), BreakerState::HalfOpen);
}

#[derive(Debug, PartialEq)]
pub(super) struct DbError(pub(super) ErrorClass);

impl Classify for DbError {
    fn class(&self) -> ErrorClass {
        self.0
    }
}

impl From<Rejection> for DbError {
    fn from(_: Rejection) -> Self {
        DbError(ErrorClass::Rejected)
    }
}

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "db error ({})", self.0)
    }
}

impl std::error::Error for DbError {}

#[tokio::test(start_paused = true)]
async fn closed_opens_at_exactly_the_threshold() {
    let breaker = CircuitBreaker::new("t", config(3));
    fail_n(&breaker, 2);
    assert_eq!(breaker.state(), BreakerState::Closed);
    assert_eq!(breaker.snapshot().failures, 2);
    fail_n(&breaker, 1);
    assert_eq!(breaker.state(), BreakerState::Open);
    let snapshot = breaker.snapshot();
    assert_eq!(snapshot.opened_total, 1);
    assert_eq!(snapshot.failures, 0);
}

#[tokio::test(start_paused = true)]
async fn closed_success_lowers_the_count_by_one_not_to_zero() {
    let breaker = CircuitBreaker::new("t", config(3));
    fail_n(&breaker, 2);
    acquire(&breaker).success();
    assert_eq!(breaker.snapshot().failures, 1);
    // Not a reset: two more failures (1 + 2 = 3) open it.
    fail_n(&breaker, 2);
    assert_eq!(breaker.state(), BreakerState::Open);

    let breaker = CircuitBreaker::new("t", config(3));
    acquire(&breaker).success();
    acquire(&breaker).success();
    assert_eq!(breaker.snapshot().failures, 0, "saturates at zero");
    fail_n(&breaker, 2);
    assert_eq!(breaker.state(), BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn open_rejects_every_call_at_once() {
    let breaker = CircuitBreaker::new("primary", config(1));
    fail_n(&breaker, 1);
    for _ in 0..5 {
        let rejection = breaker.try_acquire().expect_err("open breaker must reject");
        assert_eq!(rejection, Rejection::BreakerOpen { breaker: "primary" });
    }
    assert_eq!(breaker.snapshot().rejected_total, 5);
}

#[tokio::test(start_paused = true)]
async fn open_turns_half_open_only_after_the_reset_timeout() {
    let breaker = CircuitBreaker::new("t", config(1));
    fail_n(&breaker, 1);
    advance(RESET - MS).await;
    assert_eq!(breaker.state(), BreakerState::Open);
    assert!(breaker.try_acquire().is_err());
    advance(MS).await;
    let trial = acquire(&breaker);
    assert_eq!(trial.state(), BreakerState::HalfOpen);
    assert_eq!(breaker.snapshot().half_open_in_flight, 1);
}

#[tokio::test(start_paused = true)]
async fn state_reports_half_open_lazily_once_the_timeout_passed() {
    let breaker = CircuitBreaker::new("t", config(1));
    fail_n(&breaker, 1);
    advance(RESET).await;
    assert_eq!(breaker.state(), BreakerState::HalfOpen);
    assert_eq!(breaker.snapshot().half_open_in_flight, 0);
}

#[tokio::test(start_paused = true)]
async fn half_open_closes_after_the_required_successes() {
    let breaker = CircuitBreaker::new("t", config(2));
    half_open(&breaker).await;
    acquire(&breaker).success();
    assert_eq!(breaker.state(), BreakerState::HalfOpen);
    assert_eq!(breaker.snapshot().half_open_successes, 1);
    acquire(&breaker).success();
    assert_eq!(breaker.state(), BreakerState::Closed);
    // A fresh closed period: it takes the full threshold again.
    fail_n(&breaker, 1);
    assert_eq!(breaker.state(), BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn half_open_failure_reopens_with_a_fresh_timeout() {
    let breaker = CircuitBreaker::new("t", config(2));
    half_open(&breaker).await;
    advance(5 * MS).await;
    acquire(&breaker).success();
    acquire(&breaker).failure();
    assert_eq!(breaker.state(), BreakerState::Open);
    assert_eq!(breaker.snapshot().opened_total, 2);
    // Closed → open → half-open → open.
    assert_eq!(breaker.snapshot().transitions_total, 3);
    advance(RESET - MS).await;
    assert_eq!(
        breaker.state(),
        BreakerState::Open,
        "timeout restarts at the re-open"
    );
    advance(MS).await;
    assert_eq!(breaker.state(), BreakerState::HalfOpen);
    assert_eq!(breaker.snapshot().half_open_successes, 0);
}

#[tokio::test(start_paused = true)]
async fn half_open_admits_at_most_max_calls_at_once() {
    let breaker = CircuitBreaker::new("t", config(1));
    half_open(&breaker).await;
    let results: Vec<_> = (0..20).map(|_| breaker.try_acquire()).collect();
    let admitted = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(admitted, 3);
    assert_eq!(breaker.snapshot().rejected_total, 17);
    assert_eq!(breaker.snapshot().half_open_in_flight, 3);
    drop(results);
    assert_eq!(breaker.snapshot().half_open_in_flight, 0);
}

#[tokio::test(start_paused = true)]
async fn half_open_bound_holds_across_threads() {
    let breaker = CircuitBreaker::new("t", config(1));
    half_open(&breaker).await;
    let barrier = std::sync::Barrier::new(8);
    let admitted: usize = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                scope.spawn(|| {
                    barrier.wait();
                    // Hold every permit until the thread ends, so slots are never reused.
                    let held: Vec<_> = (0..100)
                        .filter_map(|_| breaker.try_acquire().ok())
                        .collect();
                    barrier.wait();
                    held.len()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| handle.join().expect("thread panicked"))
            .sum()
    });
    assert_eq!(admitted, 3);
    assert_eq!(breaker.snapshot().half_open_in_flight, 0);
}
