use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use super::*;

/// Generous bound so that a lost wakeup fails the test instead of hanging it. Under
/// paused time it costs nothing: the clock jumps straight to it when all tasks idle.
const HANG: Duration = Duration::from_secs(60);

fn poll_once<F: Future + Unpin>(fut: &mut F) -> Poll<F::Output> {
    Pin::new(fut).poll(&mut Context::from_waker(Waker::noop()))
}

fn poll_with<F: Future + Unpin>(fut: &mut F, waker: &Waker) -> Poll<F::Output> {
    Pin::new(fut).poll(&mut Context::from_waker(waker))
}

fn expect_permit<'a>(poll: Poll<Result<BulkheadPermit<'a>, Rejection>>) -> BulkheadPermit<'a> {
    match poll {
        Poll::Ready(Ok(permit)) => permit,
        other => panic!("expected a permit, got {other:?}"),
    }
}

#[derive(Default)]
struct CountingWaker(AtomicUsize);

impl Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// Lets spawned tasks on the current-thread runtime run until `done` holds.
async fn yield_until(mut done: impl FnMut() -> bool) {
    for _ in 0..100 {
        if done() {
            return;
        }
        tokio::task::yield_now().await;
    }
    assert!(done(), "condition not reached after 100 yields");
}

#[test]
fn types_are_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>(_: &T) {}
    send_sync::<Bulkhead>();
    send_sync::<Acquire<'static>>();
    send_sync::<BulkheadPermit<'static>>();
    let bulkhead = Bulkhead::new("t", 1, 1);
    send(&bulkhead.execute(async { 1 }));
}

#[test]
fn uncontended_acquire_is_ready_on_first_poll_without_queueing() {
    let bulkhead = Bulkhead::new("t", 2, 0);
    let mut acquire = bulkhead.acquire();
    let permit = expect_permit(poll_once(&mut acquire));
    assert_eq!(bulkhead.executing(), 1);
    assert_eq!(bulkhead.waiting(), 0);
    assert!(bulkhead.lock_queue().is_empty());
    drop(permit);
    drop(acquire);
    assert_eq!(bulkhead.executing(), 0);
}

#[test]
fn full_queue_rejects_at_once_with_counts() {
    let bulkhead = Bulkhead::new("orders", 2, 3);
    let p1 = bulkhead.try_acquire().expect("slot 1");
    let _p2 = bulkhead.try_acquire().expect("slot 2");
    let mut waiters: Vec<_> = (0..3).map(|_| bulkhead.acquire()).collect();
    for waiter in &mut waiters {
        assert!(poll_once(waiter).is_pending());
    }
    assert_eq!(bulkhead.waiting(), 3);

    let mut late = bulkhead.acquire();
    let expected = Rejection::BulkheadFull {
        bulkhead: "orders",
        executing: 2,
        waiting: 3,
    };
    assert!(matches!(poll_once(&mut late), Poll::Ready(Err(ref e)) if *e == expected));
    assert_eq!(bulkhead.rejected(), 1);
    assert_eq!(bulkhead.waiting(), 3, "a rejected caller is never counted");

    // A freed slot goes to the first waiter, which frees a queue place.
    drop(p1);
    assert_eq!((bulkhead.executing(), bulkhead.waiting()), (2, 2));
    let _first = expect_permit(poll_once(&mut waiters[0]));
    let mut newcomer = bulkhead.acquire();
    assert!(poll_once(&mut newcomer).is_pending());
    assert_eq!(bulkhead.waiting(), 3);
}

#[test]
fn zero_queue_rejects_as_soon_as_full() {
    let bulkhead = Bulkhead::new("t", 1, 0);
    let permit = bulkhead.try_acquire().expect("slot");
    let mut acquire = bulkhead.acquire();
    let expected = Rejection::BulkheadFull {
        bulkhead: "t",
        executing: 1,
        waiting: 0,
    };
    assert!(matches!(poll_once(&mut acquire), Poll::Ready(Err(ref e)) if *e == expected));
    drop(permit);
    let _again = expect_permit(poll_once(&mut bulkhead.acquire()));
    assert_eq!(bulkhead.rejected(), 1);
}

#[test]
fn zero_max_concurrent_rejects_everything() {
    let bulkhead = Bulkhead::new("off", 0, 5);
    assert!(bulkhead.try_acquire().is_none());
    let expected = Rejection::BulkheadFull {
        bulkhead: "off",
        executing: 0,
        waiting: 0,
    };
    assert!(
        matches!(poll_once(&mut bulkhead.acquire()), Poll::Ready(Err(ref e)) if *e == expected)
    );
    let mut execute = Box::pin(bulkhead.execute(async { 1 }));
    let polled = execute
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()));
    assert!(matches!(polled, Poll::Ready(Err(_))));
    assert_eq!((bulkhead.waiting(), bulkhead.rejected()), (0, 2));
}

#[tokio::test(start_paused = true)]
async fn never_more_than_max_concurrent() {
    let bulkhead = Arc::new(Bulkhead::new("t", 3, 100));
    let current = Arc::new(AtomicUsize::new(0));
    let seen = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..40)
        .map(|_| {
            let (bulkhead, current, seen) = (bulkhead.clone(), current.clone(), seen.clone());
            tokio::spawn(async move {
                bulkhead
                    .execute(async {
                        let now = current.fetch_add(1, Ordering::SeqCst) + 1;
                        seen.fetch_max(now, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        current.fetch_sub(1, Ordering::SeqCst);
                    })
                    .await
            })
        })
        .collect();
    for task in tasks {
        let result = tokio::time::timeout(HANG, task).await.expect("no hang");
        assert_eq!(result.expect("task"), Ok(()));
    }
    assert_eq!(seen.load(Ordering::SeqCst), 3);
    let snapshot = bulkhead.snapshot();
    assert_eq!((snapshot.executing, snapshot.waiting), (0, 0));
    assert_eq!((snapshot.peak_executing, snapshot.peak_waiting), (3, 37));
    assert_eq!(snapshot.rejected_total, 0);
}

#[tokio::test(start_paused = true)]
async fn grants_follow_arrival_order_and_newcomers_do_not_barge() {
    let bulkhead = Arc::new(Bulkhead::new("t", 1, 10));
    let holder = bulkhead.try_acquire().expect("slot");
    let order = Arc::new(Mutex::new(Vec::new()));
    let spawn = |i: usize| {
        let (bulkhead, order) = (bulkhead.clone(), order.clone());
        tokio::spawn(async move {
            let permit = bulkhead.acquire().await.expect("queued, not rejected");
            order.lock().expect("order").push(i);
            tokio::time::sleep(Duration::from_millis(1)).await;
            drop(permit);
        })
    };
    let mut tasks = Vec::new();
    for i in 0..6 {
        tasks.push(spawn(i));
        yield_until(|| bulkhead.waiting() == i + 1).await;
    }

    // The slot goes straight to waiter 0: nobody can take it in between.
    drop(holder);
    assert!(bulkhead.try_acquire().is_none());
    assert_eq!((bulkhead.executing(), bulkhead.waiting()), (1, 5));
    tasks.push(spawn(6));

    for task in tasks {
        tokio::time::timeout(HANG, task)
            .await
            .expect("no hang")
            .expect("task");
    }
    assert_eq!(*order.lock().expect("order"), (0..=6).collect::<Vec<_>>());
    assert_eq!((bulkhead.executing(), bulkhead.waiting()), (0, 0));
}

#[test]
fn grant_wakes_the_latest_waker_only() {
    let bulkhead = Bulkhead::new("t", 1, 1);
    let holder = bulkhead.try_acquire().expect("slot");
    let (old, new) = (
        Arc::new(CountingWaker::default()),
        Arc::new(CountingWaker::default()),
    );
    let mut acquire = bulkhead.acquire();
    assert!(poll_with(&mut acquire, &Waker::from(old.clone())).is_pending());
    assert!(poll_with(&mut acquire, &Waker::from(new.clone())).is_pending());
    drop(holder);
    assert_eq!(new.0.load(Ordering::SeqCst), 1);
    assert_eq!(old.0.load(Ordering::SeqCst), 0);
    let _permit = expect_permit(poll_once(&mut acquire));
}

#[test]
fn dropped_waiter_leaves_the_queue() {
    let bulkhead = Bulkhead::new("t", 1, 2);
    let holder = bulkhead.try_acquire().expect("slot");
    let (mut a, mut b) = (bulkhead.acquire(), bulkhead.acquire());
    assert!(poll_once(&mut a).is_pending());
    assert!(poll_once(&mut b).is_pending());
    assert!(matches!(
        poll_once(&mut bulkhead.acquire()),
        Poll::Ready(Err(_))
    ));

    drop(b);
    assert_eq!(bulkhead.waiting(), 1);
    let mut c = bulkhead.acquire();
    assert!(poll_once(&mut c).is_pending(), "the freed place is usable");
    assert_eq!(bulkhead.waiting(), 2);

    drop(holder);
    let permit_a = expect_permit(poll_once(&mut a));
    assert!(poll_once(&mut c).is_pending());
    drop(permit_a);
    let permit_c = expect_permit(poll_once(&mut c));
    drop(permit_c);
    assert_eq!((bulkhead.executing(), bulkhead.waiting()), (0, 0));
    assert!(bulkhead.lock_queue().is_empty());
}

#[tokio::test(start_paused = true)]
async fn waiter_dropped_by_a_timeout_leaves_the_queue() {
    let bulkhead = Bulkhead::new("t", 1, 4);
    let holder = bulkhead.try_acquire().expect("slot");
    let timed_out = tokio::time::timeout(Duration::from_millis(50), bulkhead.acquire()).await;
    assert!(timed_out.is_err());
    assert_eq!(bulkhead.waiting(), 0);
    drop(holder);
    assert_eq!(bulkhead.executing(), 0);
    assert!(bulkhead.try_acquire().is_some());
}

#[test]
fn waiter_dropped_after_grant_passes_the_permit_on() {
    let bulkhead = Bulkhead::new("t", 1, 5);
    let holder = bulkhead.try_acquire().expect("slot");
    let (mut a, mut b) = (bulkhead.acquire(), bulkhead.acquire());
    assert!(poll_once(&mut a).is_pending());
    assert!(poll_once(&mut b).is_pending());
    drop(holder);
    assert_eq!((bulkhead.executing(), bulkhead.waiting()), (1, 1));

    // `a` owns the slot but never sees it: dropping it must hand the slot to `b`.
    drop(a);
    assert_eq!((bulkhead.executing(), bulkhead.waiting()), (1, 0));
    drop(expect_permit(poll_once(&mut b)));
    assert_eq!(bulkhead.executing(), 0);

    // With nobody behind it, the slot is simply released.
    let holder = bulkhead.try_acquire().expect("slot");
    let mut c = bulkhead.acquire();
    assert!(poll_once(&mut c).is_pending());
    drop(holder);
    drop(c);
    assert_eq!((bulkhead.executing(), bulkhead.waiting()), (0, 0));
}

#[test]
fn try_acquire_refuses_while_someone_waits() {
    let bulkhead = Bulkhead::new("t", 2, 5);
    // Simulate a caller that has counted itself as waiting but not yet queued: even
    // with both slots free, `try_acquire` must leave them to it.
    bulkhead.waiting.fetch_add(1, Ordering::SeqCst);
    assert!(bulkhead.try_acquire().is_none());
    assert_eq!(bulkhead.executing(), 0);
    bulkhead.waiting.fetch_sub(1, Ordering::SeqCst);
    assert!(bulkhead.try_acquire().is_some());

    let one = Bulkhead::new("t", 1, 5);
    let holder = one.try_acquire().expect("slot");
    let mut waiter = one.acquire();
    assert!(poll_once(&mut waiter).is_pending());
    drop(holder);
    assert!(
        one.try_acquire().is_none(),
        "the slot was handed to the waiter"
    );
    let _permit = expect_permit(poll_once(&mut waiter));
}

#[test]
fn enqueuer_takes_a_slot_freed_before_it_reached_the_queue() {
    let bulkhead = Bulkhead::new("t", 1, 5);
    // Simulate a caller that counted itself as waiting, so the newcomer below skips
    // the fast path even though the slot is free (as when a release raced with it).
    bulkhead.waiting.fetch_add(1, Ordering::SeqCst);
    // A real waiter arriving now queues (behind the simulated one) and, finding a slot
    // free under the queue lock, is granted at once instead of sleeping forever.
    let permit = expect_permit(poll_once(&mut bulkhead.acquire()));
    assert_eq!((bulkhead.executing(), bulkhead.waiting()), (1, 1));
    drop(permit);
    bulkhead.waiting.fetch_sub(1, Ordering::SeqCst);
    assert_eq!((bulkhead.executing(), bulkhead.waiting()), (0, 0));
    assert!(bulkhead.lock_queue().is_empty());
}

#[test]
fn newcomer_does_not_barge_while_a_release_is_in_flight() {
    let bulkhead = Bulkhead::new("t", 1, 5);
    let holder = bulkhead.try_acquire().expect("slot");
    let mut first = bulkhead.acquire();
    assert!(poll_once(&mut first).is_pending());

    // Replay a release in two steps, as another thread could interleave with it: the
    // slot is free, but the releaser has not reached the queue yet.
    std::mem::forget(holder);
    bulkhead.executing.fetch_sub(1, Ordering::SeqCst);
    assert!(bulkhead.try_acquire().is_none());
    let mut newcomer = bulkhead.acquire();
    assert!(
        poll_once(&mut newcomer).is_pending(),
        "queued behind `first`"
    );
    bulkhead.hand_off();

    let permit = expect_permit(poll_once(&mut first));
    assert!(poll_once(&mut newcomer).is_pending());
    drop(permit);
    drop(expect_permit(poll_once(&mut newcomer)));
    assert_eq!((bulkhead.executing(), bulkhead.waiting()), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn execute_runs_the_future_holding_a_permit() {
    let bulkhead = Arc::new(Bulkhead::new("t", 1, 1));
    assert_eq!(
        bulkhead.execute(async { bulkhead.executing() }).await,
        Ok(1)
    );
    assert_eq!(bulkhead.executing(), 0);

    let holder = bulkhead.try_acquire().expect("slot");
    let queued = tokio::spawn({
        let bulkhead = bulkhead.clone();
        async move { bulkhead.execute(async { "done" }).await }
    });
    yield_until(|| bulkhead.waiting() == 1).await;

    let ran = AtomicBool::new(false);
    let rejected = bulkhead
        .execute(async { ran.store(true, Ordering::SeqCst) })
        .await;
    assert!(matches!(rejected, Err(Rejection::BulkheadFull { .. })));
    assert!(!ran.load(Ordering::SeqCst), "a rejected call never runs");

    drop(holder);
    let done = tokio::time::timeout(HANG, queued).await.expect("no hang");
    assert_eq!(done.expect("task"), Ok("done"));
    assert_eq!(bulkhead.executing(), 0);
}

#[test]
fn snapshot_reports_counts_and_peaks() {
    let bulkhead = Bulkhead::from_spec(&BulkheadSpec::new("exports", 2, 1));
    let p1 = bulkhead.try_acquire().expect("slot");
    let p2 = bulkhead.try_acquire().expect("slot");
    let mut waiter = bulkhead.acquire();
    assert!(poll_once(&mut waiter).is_pending());
    assert!(matches!(
        poll_once(&mut bulkhead.acquire()),
        Poll::Ready(Err(_))
    ));
    let expected = BulkheadSnapshot {
        name: "exports",
        max_concurrent: 2,
        max_queue: 1,
        executing: 2,
        waiting: 1,
        rejected_total: 1,
        peak_executing: 2,
        peak_waiting: 1,
    };
    assert_eq!(bulkhead.snapshot(), expected);

    drop((waiter, p1, p2));
    let idle = bulkhead.snapshot();
    assert_eq!((idle.executing, idle.waiting), (0, 0));
    assert_eq!(
        (idle.peak_executing, idle.peak_waiting, idle.rejected_total),
        (2, 1, 1)
    );

    bulkhead.reset_stats();
    let reset = bulkhead.snapshot();
    assert_eq!(
        (
            reset.peak_executing,
            reset.peak_waiting,
            reset.rejected_total
        ),
        (0, 0, 0)
    );
    assert!(format!("{bulkhead:?}").contains("exports"));

    let report = Bulkhead::from_spec(&REPORT);
    assert_eq!(
        (report.name(), report.max_concurrent(), report.max_queue()),
        ("report", 5, 10)
    );
}

#[derive(Debug, Default)]
struct StressStats {
    granted: AtomicUsize,
    abandoned: AtomicUsize,
    rejected: AtomicUsize,
    in_use: AtomicUsize,
    max_seen: AtomicUsize,
}

/// `tasks` tasks each run `cycles` acquisitions; every fourth one polls its `Acquire`
/// once, yields, then drops it, racing cancellation against the handoff.
async fn stress(bulkhead: Arc<Bulkhead>, tasks: usize, cycles: usize) -> Arc<StressStats> {
    let stats = Arc::new(StressStats::default());
    let handles: Vec<_> = (0..tasks)
        .map(|_| {
            let (bulkhead, stats) = (bulkhead.clone(), stats.clone());
            tokio::spawn(async move {
                for cycle in 0..cycles {
                    let mut acquire = bulkhead.acquire();
                    let result = if cycle % 4 == 3 {
                        match poll_fn(|cx| Poll::Ready(Pin::new(&mut acquire).poll(cx))).await {
                            Poll::Ready(result) => result,
                            Poll::Pending => {
                                tokio::task::yield_now().await;
                                drop(acquire);
                                stats.abandoned.fetch_add(1, Ordering::SeqCst);
                                continue;
                            }
                        }
                    } else {
                        acquire.await
                    };
                    let Ok(permit) = result else {
                        stats.rejected.fetch_add(1, Ordering::SeqCst);
                        continue;
                    };
                    let now = stats.in_use.fetch_add(1, Ordering::SeqCst) + 1;
                    stats.max_seen.fetch_max(now, Ordering::SeqCst);
                    tokio::task::yield_now().await;
                    stats.in_use.fetch_sub(1, Ordering::SeqCst);
                    drop(permit);
                    stats.granted.fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();
    for handle in handles {
        let joined = tokio::time::timeout(Duration::from_secs(60), handle).await;
        joined
            .expect("a lost wakeup would hang here")
            .expect("task");
    }
    stats
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stress_two_workers_never_overshoots_or_leaks() {
    let bulkhead = Arc::new(Bulkhead::new("t", 3, 64));
    let stats = stress(bulkhead.clone(), 16, 250).await;
    let total = stats.granted.load(Ordering::SeqCst) + stats.abandoned.load(Ordering::SeqCst);
    assert_eq!(total, 16 * 250);
    assert_eq!(
        stats.rejected.load(Ordering::SeqCst),
        0,
        "16 tasks fit in 3 + 64"
    );
    let max_seen = stats.max_seen.load(Ordering::SeqCst);
    assert!((1..=3).contains(&max_seen), "observed {max_seen} executing");
    assert_eq!((bulkhead.executing(), bulkhead.waiting()), (0, 0));
    assert!(bulkhead.lock_queue().is_empty());
    assert!(bulkhead.snapshot().peak_executing <= 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stress_two_workers_with_rejections() {
    let bulkhead = Arc::new(Bulkhead::new("t", 2, 2));
    let stats = stress(bulkhead.clone(), 12, 300).await;
    let rejected = stats.rejected.load(Ordering::SeqCst);
    let total = stats.granted.load(Ordering::SeqCst) + stats.abandoned.load(Ordering::SeqCst);
    assert_eq!(total + rejected, 12 * 300);
    assert_eq!(bulkhead.rejected(), rejected as u64);
    assert!(stats.max_seen.load(Ordering::SeqCst) <= 2);
    assert_eq!((bulkhead.executing(), bulkhead.waiting()), (0, 0));
    assert!(bulkhead.lock_queue().is_empty());
    let snapshot = bulkhead.snapshot();
    assert!(snapshot.peak_executing <= 2 && snapshot.peak_waiting <= 2);
}
