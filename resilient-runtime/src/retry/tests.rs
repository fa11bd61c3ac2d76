use super::*;
use crate::ErrorClass;
use std::cell::Cell;

#[derive(Debug)]
struct E(ErrorClass);
impl Classify for E {
    fn class(&self) -> ErrorClass {
        self.0
    }
}

fn policy(backoff: Backoff, jitter: bool) -> RetryPolicy {
    RetryPolicy {
        max_retries: 5,
        backoff,
        delay: Duration::from_millis(100),
        max_delay: Duration::from_millis(1_000),
        jitter,
    }
}

#[test]
fn jittered_delays_stay_within_cap_and_range() {
    let p = policy(Backoff::Exponential, true);
    for k in 0..10 {
        let cap = p.max_delay_before(k);
        assert!(cap <= p.max_delay);
        for _ in 0..200 {
            let d = delay_before(&p, k);
            assert!(d <= cap, "k={k}: {d:?} > {cap:?}");
        }
    }
    // Full jitter really spreads: over many draws both halves of the range are hit.
    let draws: Vec<_> = (0..500).map(|_| delay_before(&p, 2)).collect();
    assert!(draws.iter().any(|d| *d < Duration::from_millis(200)));
    assert!(draws.iter().any(|d| *d > Duration::from_millis(200)));
}

#[test]
fn without_jitter_delays_are_exact() {
    let p = policy(Backoff::Exponential, false);
    let got: Vec<_> = (0..6).map(|k| delay_before(&p, k).as_millis()).collect();
    assert_eq!(got, vec![100, 200, 400, 800, 1000, 1000]);
    let f = policy(Backoff::Fixed, false);
    assert_eq!(delay_before(&f, 4), Duration::from_millis(100));
    let n = policy(Backoff::None, true);
    assert_eq!(delay_before(&n, 4), Duration::ZERO);
}

async fn run(class: ErrorClass, idempotent: bool) -> u32 {
    let calls = Cell::new(0);
    let _ = with_retry(&policy(Backoff::Fixed, false), idempotent, || {
        calls.set(calls.get() + 1);
        async move { Err::<(), _>(E(class)) }
    })
    .await;
    calls.get()
}

#[tokio::test(start_paused = true)]
async fn attempts_per_error_class() {
    assert_eq!(run(ErrorClass::Transient, false).await, 6);
    assert_eq!(run(ErrorClass::Unavailable, false).await, 6);
    assert_eq!(run(ErrorClass::Ambiguous, true).await, 6);
    assert_eq!(run(ErrorClass::Ambiguous, false).await, 1);
    assert_eq!(run(ErrorClass::Caller, true).await, 1);
    assert_eq!(run(ErrorClass::Rejected, true).await, 1);
}

#[tokio::test(start_paused = true)]
async fn sleeps_follow_the_backoff() {
    let start = tokio::time::Instant::now();
    assert_eq!(run(ErrorClass::Transient, true).await, 6);
    // Fixed 100 ms × 5 retries on the paused clock.
    assert_eq!(start.elapsed(), Duration::from_millis(500));
}
