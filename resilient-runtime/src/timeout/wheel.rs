//! One shared timer per thread and tokio runtime, for attempt timeouts.
//!
//! Arming a tokio `Sleep` per attempt costs a registration in tokio's timer wheel (its
//! driver lock), a second lock to remove it, and clock conversions: about as much as the
//! whole rest of the resilience stack. Almost every attempt finishes long before its
//! timeout, so the timer here does less per attempt and moves the work to one driver
//! task:
//!
//! - an attempt that goes pending puts `(deadline, waker)` in its thread's [`Wheel`] (a
//!   slab under a mutex that only the driver and the rare task that moved to another
//!   thread contend on) and takes it out when it finishes;
//! - the wheel's driver task sleeps on **one** tokio timer until the earliest deadline,
//!   wakes the attempts whose deadline has passed, and sleeps again. An attempt whose
//!   deadline is later than the one the driver sleeps until does not touch the driver
//!   at all, which is every attempt of a steady flow under one policy.
//!
//! Deadlines are exact (no rounding beyond tokio's own millisecond), and the driver
//! sleeps on tokio's clock, so paused-clock tests see timeouts fire at their instant.
//! The driver is spawned on the runtime the attempt runs on; when that runtime shuts
//! down, the driver is dropped with it and the thread's next attempt starts a new one.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use atomic_waker::AtomicWaker;
use slab::Slab;
use tokio::runtime::{Handle, Id};
use tokio::time::{Instant, Sleep};

/// Nothing to wake the driver for.
const IDLE: u64 = u64::MAX;

/// The timers of one thread on one tokio runtime.
pub(crate) struct Wheel {
    /// Deadlines are stored as nanoseconds since `origin`.
    origin: Instant,
    entries: Mutex<Slab<Entry>>,
    /// The deadline the driver sleeps until (`IDLE`: none). Set to `IDLE` while the
    /// driver scans, so that a registration during the scan wakes it to scan again.
    next_wake: AtomicU64,
    driver: AtomicWaker,
    /// Cleared when the driver is dropped (its runtime shut down).
    alive: AtomicBool,
}

struct Entry {
    deadline: u64,
    waker: Option<Waker>,
    fired: bool,
}

/// Drivers alive, over every runtime.
static DRIVERS: AtomicUsize = AtomicUsize::new(0);

/// Timer driver tasks alive in the process: one per thread that has run an attempt that
/// went pending, on each tokio runtime still running. They count among a runtime's
/// alive tasks (`RuntimeMetrics::num_alive_tasks`); a leak check can subtract them.
pub fn timer_drivers() -> usize {
    DRIVERS.load(Ordering::SeqCst)
}

thread_local! {
    /// This thread's wheel and the runtime its driver runs on.
    static LOCAL: RefCell<Option<(Id, Arc<Wheel>)>> = const { RefCell::new(None) };
}

/// One attempt's place in a wheel; dropping it takes the place back.
pub(crate) struct Timer {
    wheel: Arc<Wheel>,
    key: usize,
}

impl Timer {
    /// Arms a timer for `deadline` on the current thread's wheel, starting the wheel's
    /// driver if the thread has none on this runtime.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime, or on one built without `enable_time()`: tokio's own
    /// panics, as `tokio::time::sleep` would give.
    pub(crate) fn arm(deadline: Instant, waker: &Waker) -> Timer {
        let wheel = Wheel::current();
        let at = wheel.ticks(deadline);
        let key = wheel.lock().insert(Entry {
            deadline: at,
            waker: Some(waker.clone()),
            fired: false,
        });
        // Wake the driver only if it sleeps past this deadline (or is scanning).
        if at < wheel.next_wake.load(Ordering::SeqCst)
            && at < wheel.next_wake.fetch_min(at, Ordering::SeqCst)
        {
            wheel.driver.wake();
        }
        Timer { wheel, key }
    }

    /// `Ready` once the deadline has passed; otherwise remembers `cx`'s waker.
    pub(crate) fn poll_expired(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut entries = self.wheel.lock();
        let Some(entry) = entries.get_mut(self.key) else {
            return Poll::Ready(());
        };
        if entry.fired {
            return Poll::Ready(());
        }
        match &mut entry.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            slot => *slot = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        let entry = self.wheel.lock().try_remove(self.key);
        // The waker is dropped outside the lock.
        drop(entry);
    }
}

impl Wheel {
    /// The current thread's wheel on the current runtime.
    fn current() -> Arc<Wheel> {
        let handle = Handle::current();
        let id = handle.id();
        LOCAL.with(|local| {
            let mut local = local.borrow_mut();
            if let Some((cached, wheel)) = &*local
                && *cached == id
                && wheel.alive.load(Ordering::Acquire)
            {
                return wheel.clone();
            }
            let wheel = Arc::new(Wheel {
                origin: Instant::now(),
                entries: Mutex::new(Slab::new()),
                next_wake: AtomicU64::new(IDLE),
                driver: AtomicWaker::new(),
                alive: AtomicBool::new(true),
            });
            // Built here, not in the task: a runtime without timers panics in the
            // caller, as `tokio::time::sleep` does, instead of in a task nobody awaits.
            let driver = Driver::new(wheel.clone());
            handle.spawn(driver);
            *local = Some((id, wheel.clone()));
            wheel
        })
    }

    fn lock(&self) -> MutexGuard<'_, Slab<Entry>> {
        // The critical sections cannot panic; recover the data if one ever did.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `at` as nanoseconds since the origin (0 if before it).
    fn ticks(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.origin).as_nanos()).unwrap_or(IDLE - 1)
    }

    /// Fires every entry due at `now` into `wake`; returns the earliest deadline left.
    fn fire(&self, now: u64, wake: &mut Vec<Waker>) -> u64 {
        let mut next = IDLE;
        let mut entries = self.lock();
        for (_, entry) in entries.iter_mut() {
            if entry.fired {
                continue;
            }
            if entry.deadline <= now {
                entry.fired = true;
                wake.extend(entry.waker.take());
            } else {
                next = next.min(entry.deadline);
            }
        }
        next
    }

    /// Entries not yet removed (fired or not), for tests.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }
}

/// The task that sleeps until a wheel's earliest deadline and fires what is due.
struct Driver {
    wheel: Arc<Wheel>,
    sleep: Pin<Box<Sleep>>,
    /// The latest deadline tokio's timer has reported as reached. Entries up to it are
    /// due whatever `Instant::now()` says: the driver never spins on a sleep that tokio
    /// completed a hair before the clock reads its deadline.
    reached: u64,
    /// Wakers collected under the lock, woken after it.
    due: Vec<Waker>,
}

impl Driver {
    fn new(wheel: Arc<Wheel>) -> Self {
        let far = crate::timeout::instant_after(wheel.origin, Duration::from_secs(86_400 * 365));
        DRIVERS.fetch_add(1, Ordering::SeqCst);
        Driver {
            wheel,
            sleep: Box::pin(tokio::time::sleep_until(far)),
            reached: 0,
            due: Vec::new(),
        }
    }
}

impl Future for Driver {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        let wheel = &*this.wheel;
        wheel.driver.register(cx.waker());
        loop {
            // Scanning: a registration from now on lowers `next_wake` from IDLE and
            // wakes this task, which then scans again.
            wheel.next_wake.store(IDLE, Ordering::SeqCst);
            let now = wheel.ticks(Instant::now()).max(this.reached);
            let next = wheel.fire(now, &mut this.due);
            for waker in this.due.drain(..) {
                waker.wake();
            }
            let next = next.min(wheel.next_wake.fetch_min(next, Ordering::SeqCst));
            if next == IDLE {
                return Poll::Pending;
            }
            let at = wheel.origin + Duration::from_nanos(next);
            if this.sleep.deadline() != at {
                this.sleep.as_mut().reset(at);
            }
            if this.sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            this.reached = next;
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        self.wheel.alive.store(false, Ordering::Release);
        DRIVERS.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Rejection;
    use crate::timeout::with_timeout;

    #[tokio::test(start_paused = true)]
    async fn an_earlier_deadline_wakes_the_sleeping_driver() {
        let start = Instant::now();
        // The driver first sleeps until the 10 s deadline ...
        let long = tokio::spawn(with_timeout(
            Duration::from_secs(10),
            std::future::pending::<()>(),
        ));
        tokio::task::yield_now().await;
        // ... and must wake up for this one.
        let out = with_timeout(Duration::from_millis(30), std::future::pending::<()>()).await;
        assert!(matches!(out, Err(Rejection::Timeout { .. })));
        assert_eq!(start.elapsed(), Duration::from_millis(30));
        assert!(long.await.expect("task").is_err());
        assert_eq!(start.elapsed(), Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn finished_attempts_leave_the_wheel() {
        for _ in 0..100 {
            let out = with_timeout(Duration::from_secs(1), async {
                tokio::task::yield_now().await;
                7
            })
            .await;
            assert_eq!(out, Ok(7));
        }
        let wheel = Wheel::current();
        assert_eq!(wheel.len(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn many_deadlines_fire_in_order() {
        let start = Instant::now();
        let mut tasks = Vec::new();
        for ms in [500u64, 20, 300, 20, 100] {
            tasks.push(tokio::spawn(async move {
                let out =
                    with_timeout(Duration::from_millis(ms), std::future::pending::<()>()).await;
                assert!(out.is_err());
                Instant::now().duration_since(start)
            }));
        }
        let mut fired = Vec::new();
        for t in tasks {
            fired.push(t.await.expect("task").as_millis());
        }
        assert_eq!(fired, vec![500, 20, 300, 20, 100]);
    }

    #[tokio::test(start_paused = true)]
    async fn many_interleaved_attempts_time_out_exactly_when_they_should() {
        let mut rng = fastrand::Rng::with_seed(7);
        let mut tasks = Vec::new();
        for t in 0..300 {
            let plan: Vec<(u64, u64)> = (0..20)
                .map(|_| {
                    let timeout = rng.u64(1..40);
                    // Never equal: which side wins a tie is not what this checks.
                    let work = if rng.bool() {
                        timeout + rng.u64(1..20)
                    } else {
                        rng.u64(0..timeout)
                    };
                    (timeout, work)
                })
                .collect();
            tasks.push(tokio::spawn(async move {
                for (timeout, work) in plan {
                    let start = Instant::now();
                    let out = with_timeout(
                        Duration::from_millis(timeout),
                        tokio::time::sleep(Duration::from_millis(work)),
                    )
                    .await;
                    let took = start.elapsed();
                    if work < timeout {
                        assert!(
                            out.is_ok(),
                            "task {t}: {work} ms of work under {timeout} ms"
                        );
                        assert_eq!(took, Duration::from_millis(work));
                    } else {
                        assert!(
                            out.is_err(),
                            "task {t}: {work} ms of work over {timeout} ms"
                        );
                        assert_eq!(took, Duration::from_millis(timeout));
                    }
                }
            }));
        }
        // Some tasks are cancelled while their attempt waits: their entries must go too.
        tokio::time::sleep(Duration::from_millis(15)).await;
        for task in tasks.iter().step_by(7) {
            task.abort();
        }
        for task in tasks {
            if let Err(e) = task.await {
                assert!(e.is_cancelled(), "{e}");
            }
        }
        assert_eq!(Wheel::current().len(), 0, "every entry left the wheel");
    }

    #[test]
    fn a_new_runtime_on_the_same_thread_gets_a_new_driver() {
        for _ in 0..3 {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .start_paused(true)
                .build()
                .expect("runtime");
            rt.block_on(async {
                let out =
                    with_timeout(Duration::from_millis(5), std::future::pending::<()>()).await;
                assert!(out.is_err());
            });
        }
    }

    #[test]
    fn works_across_the_threads_of_a_multi_thread_runtime() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_time()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let tasks: Vec<_> = (0..64)
                .map(|i| {
                    tokio::spawn(async move {
                        let (ms, work) = if i % 2 == 0 { (5, 10_000) } else { (10_000, 1) };
                        with_timeout(
                            Duration::from_millis(ms),
                            tokio::time::sleep(Duration::from_millis(work)),
                        )
                        .await
                        .is_ok()
                    })
                })
                .collect();
            for (i, t) in tasks.into_iter().enumerate() {
                assert_eq!(t.await.expect("task"), i % 2 == 1);
            }
        });
    }
}
