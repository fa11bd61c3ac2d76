//! One shared timer per thread and tokio runtime, for attempt timeouts.
//!
//! Arming a tokio `Sleep` per attempt costs a registration in tokio's timer wheel (its
//! driver lock), a second lock to remove it, and clock conversions: about as much as the
//! whole rest of the resilience stack. Almost every attempt finishes long before its
//! timeout, so the attempts of one thread share **one** tokio `Sleep`:
//!
//! - an attempt that goes pending puts `(deadline, waker)` in its thread's [`Wheel`] (a
//!   slab under a mutex that only the timer and the rare task that moved to another
//!   thread contend on), and takes it out when it finishes. Only when its deadline is
//!   earlier than the one the sleep is armed for does it re-arm the sleep, from its own
//!   poll: every attempt of a steady flow under one policy skips that;
//! - the sleep's waker is the wheel itself: when tokio's timer fires it (on whichever
//!   thread runs tokio's timers), it wakes the attempts whose deadline has passed, with no
//!   task in between, so a busy or blocked worker cannot hold a timeout back. If attempts
//!   are left (the one the sleep was armed for may have finished long ago), it wakes all
//!   their tasks, and the first one polled re-arms the sleep: this happens about once
//!   per timeout period, and no busy task holds the others back. Re-arming always
//!   happens in a task's poll, never in the waker: tokio forbids polling a timer once its
//!   runtime is shutting down, which is when it fires every timer. The sleep is polled
//!   outside the task's coop budget, as tokio's own `Timeout` does.
//!
//! Locks: the entries and the sleep each have a mutex, and nobody holds both. Tokio may
//! call the sleep's waker from inside `Sleep::reset` or `poll` (when the new deadline has
//! already passed), so the waker never waits for the sleep's lock: if it is taken, the
//! waker leaves a `missed` flag that the holder handles once it lets go.
//!
//! Deadlines are exact (no rounding beyond tokio's own millisecond) and on tokio's clock,
//! so paused-clock tests see timeouts fire at their instant. One difference from a tokio
//! `Sleep` per attempt: the shared sleep stays armed for the earliest deadline after that
//! attempt finished, so a paused runtime with nothing else to do auto-advances to it.
//! And a thread's wheel, with its sleep and thus a handle on its runtime, lives until the
//! thread runs an attempt on another runtime or exits: a dropped runtime's drivers are
//! released then.

use std::cell::RefCell;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering, fence};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError, Weak};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use slab::Slab;
use tokio::runtime::{Handle, Id};
use tokio::time::{Instant, Sleep};

/// The sleep is not armed.
const IDLE: u64 = u64::MAX;

/// The timers of one thread on one tokio runtime.
pub(crate) struct Wheel {
    /// Deadlines are stored as nanoseconds since `origin`.
    origin: Instant,
    entries: Mutex<Slab<Entry>>,
    /// Created with the wheel, in the runtime's context: on a runtime without timers
    /// tokio panics there, before any entry is taken.
    sleep: Mutex<Pin<Box<Sleep>>>,
    /// The deadline the sleep is armed for, or `IDLE`. Written under the sleep's lock.
    /// While armed, it is no later than any entry not yet fired.
    armed_for: AtomicU64,
    /// Set by a fire that found the sleep's lock taken: whoever holds it looks after
    /// unlocking (see [`Wheel::take_missed_fire`]).
    missed: AtomicBool,
    /// The waker the sleep is polled with: [`Fire`], pointing back at this wheel.
    fire: Waker,
}

struct Entry {
    deadline: u64,
    waker: Option<Waker>,
    fired: bool,
}

thread_local! {
    /// This thread's wheel and the runtime it belongs to (runtime ids are not reused).
    static LOCAL: RefCell<Option<(Id, Arc<Wheel>)>> = const { RefCell::new(None) };
}

/// One attempt's place in a wheel; dropping it takes the place back.
pub(crate) struct Timer {
    wheel: Arc<Wheel>,
    key: usize,
}

impl Timer {
    /// Arms a timer for `deadline` on the current thread's wheel.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime, or on one built without `enable_time()`: tokio's own
    /// panics, as `tokio::time::sleep` would give.
    pub(crate) fn arm(deadline: Instant, waker: &Waker) -> Timer {
        let wheel = Wheel::current();
        let at = wheel.ticks(deadline);
        let (key, target) = {
            let mut entries = wheel.lock_entries();
            let key = entries.insert(Entry {
                deadline: at,
                waker: Some(waker.clone()),
                fired: false,
            });
            let target = match wheel.armed_for.load(Ordering::SeqCst) {
                // Not armed (a fire left the re-arming to a woken task): earlier entries
                // may be waiting, so arm for the earliest of all.
                IDLE => earliest(&entries),
                armed if at < armed => Some(at),
                _ => None,
            };
            (key, target)
        };
        if let Some(target) = target {
            wheel.arm_sleep(target);
        }
        Timer { wheel, key }
    }

    /// `Ready` once the deadline has passed; otherwise remembers `cx`'s waker, and
    /// re-arms the shared sleep if a fire left that to the attempts' tasks.
    pub(crate) fn poll_expired(&self, cx: &mut Context<'_>) -> Poll<()> {
        let rearm = {
            let mut entries = self.wheel.lock_entries();
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
            match self.wheel.armed_for.load(Ordering::SeqCst) {
                IDLE => earliest(&entries),
                _ => None,
            }
        };
        let Some(target) = rearm else {
            return Poll::Pending;
        };
        self.wheel.arm_sleep(target);
        match self.wheel.lock_entries().get(self.key) {
            Some(entry) if !entry.fired => Poll::Pending,
            _ => Poll::Ready(()),
        }
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        // Nothing to hand over: a fire that left the re-arming to the attempts' tasks
        // woke every one of them. The waker is dropped outside the lock.
        let entry = self.wheel.lock_entries().try_remove(self.key);
        drop(entry);
    }
}

impl Wheel {
    /// The current thread's wheel on the current runtime.
    fn current() -> Arc<Wheel> {
        let id = Handle::current().id();
        LOCAL.with(|local| {
            let mut local = local.borrow_mut();
            if let Some((cached, wheel)) = &*local
                && *cached == id
            {
                return wheel.clone();
            }
            let origin = Instant::now();
            let far = crate::timeout::instant_after(origin, Duration::from_secs(86_400 * 365));
            let sleep = Box::pin(tokio::time::sleep_until(far));
            let wheel = Arc::new_cyclic(|me: &Weak<Wheel>| Wheel {
                origin,
                entries: Mutex::new(Slab::new()),
                sleep: Mutex::new(sleep),
                armed_for: AtomicU64::new(IDLE),
                missed: AtomicBool::new(false),
                fire: Waker::from(Arc::new(Fire(me.clone()))),
            });
            *local = Some((id, wheel.clone()));
            wheel
        })
    }

    // The critical sections cannot panic halfway through an update: recover the data
    // if one ever did.
    fn lock_entries(&self) -> MutexGuard<'_, Slab<Entry>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn lock_sleep(&self) -> MutexGuard<'_, Pin<Box<Sleep>>> {
        self.sleep.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `at` as nanoseconds since the origin (0 if before it).
    fn ticks(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.origin).as_nanos()).unwrap_or(IDLE - 1)
    }

    /// Arms the sleep for `at` unless it is armed earlier, from a task's poll. If tokio
    /// says `at` has passed already, fires what is due and arms for the next deadline.
    fn arm_sleep(&self, mut at: u64) {
        loop {
            let reached = {
                let mut sleep = self.lock_sleep();
                if self.armed_for.load(Ordering::SeqCst) <= at {
                    None
                } else {
                    let when = self.origin + Duration::from_nanos(at);
                    if sleep.deadline() != when {
                        sleep.as_mut().reset(when);
                    }
                    self.armed_for.store(at, Ordering::SeqCst);
                    let mut cx = Context::from_waker(&self.fire);
                    // Outside the task's budget, as tokio's own `Timeout` polls its sleep:
                    // a budget spent by the attempt must not leave the sleep unregistered.
                    let polled = std::pin::pin!(tokio::task::coop::unconstrained(sleep.as_mut()))
                        .poll(&mut cx);
                    if polled.is_pending() {
                        None
                    } else {
                        self.armed_for.store(IDLE, Ordering::SeqCst);
                        Some(at)
                    }
                }
            };
            self.take_missed_fire();
            let next = match reached {
                Some(reached) => fire_due(&self.entries, reached),
                None => {
                    // The target was read under the entries' lock, then let go: a fire
                    // since then may have left an earlier entry waiting for an arming.
                    let armed = self.armed_for.load(Ordering::SeqCst);
                    earliest(&self.lock_entries()).filter(|e| *e < armed)
                }
            };
            match next {
                Some(next) => at = next,
                None => return,
            }
        }
    }

    /// Handles the fires that arrived while the sleep's lock was taken: called by every
    /// fire, and by every holder of the lock once it has let go. (The fences pair a
    /// fire's "set `missed`, then fail to lock" with a holder's "unlock, then read
    /// `missed`": one of the two sees the other.)
    fn take_missed_fire(&self) {
        loop {
            fence(Ordering::SeqCst);
            if !self.missed.load(Ordering::SeqCst) {
                return;
            }
            let reached = {
                let slot = match self.sleep.try_lock() {
                    Ok(slot) => slot,
                    Err(TryLockError::Poisoned(e)) => e.into_inner(),
                    // The holder looks at `missed` after letting go.
                    Err(TryLockError::WouldBlock) => return,
                };
                self.missed.store(false, Ordering::SeqCst);
                let reached = self.armed_for.load(Ordering::SeqCst);
                // A wake for a deadline the sleep was re-armed away from is stale: the
                // sleep is registered again, and tokio will call back for the new one.
                if reached == IDLE || !slot.is_elapsed() {
                    continue;
                }
                self.armed_for.store(IDLE, Ordering::SeqCst);
                reached
            };
            // Tokio says `reached` has come: entries up to it are due even if this
            // thread's clock reads a hair earlier (or, outside the runtime's context,
            // real time).
            let now = self.ticks(Instant::now()).max(reached);
            if fire_due(&self.entries, now).is_some() {
                // Attempts are left, and the sleep is not armed: wake all their tasks,
                // so that the first one polled re-arms it, however busy the others are.
                let waiting: Vec<Waker> = self
                    .lock_entries()
                    .iter()
                    .filter(|(_, e)| !e.fired)
                    .filter_map(|(_, e)| e.waker.clone())
                    .collect();
                waiting.into_iter().for_each(Waker::wake);
            }
        }
    }

    /// Entries not yet removed (fired or not), for tests.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock_entries().len()
    }
}

/// Marks the entries due at `now` fired and wakes them, after letting go of the lock (a
/// waker may run code that drops a `Timer`); returns the earliest deadline left, if any.
fn fire_due(entries: &Mutex<Slab<Entry>>, now: u64) -> Option<u64> {
    let mut due = Vec::new();
    let mut next = None::<u64>;
    {
        let mut entries = entries.lock().unwrap_or_else(PoisonError::into_inner);
        for (_, entry) in entries.iter_mut().filter(|(_, e)| !e.fired) {
            if entry.deadline <= now {
                entry.fired = true;
                due.extend(entry.waker.take());
            } else {
                next = Some(next.map_or(entry.deadline, |n| n.min(entry.deadline)));
            }
        }
    }
    due.into_iter().for_each(Waker::wake);
    next
}

/// The earliest deadline not yet fired.
fn earliest(entries: &Slab<Entry>) -> Option<u64> {
    entries
        .iter()
        .filter(|(_, e)| !e.fired)
        .map(|(_, e)| e.deadline)
        .min()
}

/// The shared sleep's waker: tokio's timer calls it when the armed deadline is reached
/// (or when its runtime shuts down).
struct Fire(Weak<Wheel>);

impl Wake for Fire {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if let Some(wheel) = self.0.upgrade() {
            // If the sleep's lock is taken, its holder (possibly this very call's caller:
            // tokio wakes from inside `reset`/`poll` when the deadline has passed) handles
            // the fire once it lets go.
            wheel.missed.store(true, Ordering::SeqCst);
            wheel.take_missed_fire();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Rejection;
    use crate::timeout::with_timeout;

    /// A multi-thread runtime with two workers and timers, on real time.
    fn two_workers() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_time()
            .build()
            .expect("runtime")
    }

    /// An attempt that never finishes by itself, bounded by `timeout`, in its own task.
    fn spawn_pending(timeout: Duration) -> tokio::task::JoinHandle<Result<(), Rejection>> {
        tokio::spawn(with_timeout(timeout, std::future::pending::<()>()))
    }

    #[tokio::test(start_paused = true)]
    async fn an_earlier_deadline_re_arms_the_shared_sleep() {
        let start = Instant::now();
        // The sleep is first armed for the 10 s deadline ...
        let long = spawn_pending(Duration::from_secs(10));
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

    #[test]
    fn many_interleaved_attempts_time_out_exactly_when_they_should() {
        for seed in 0..8 {
            tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .start_paused(true)
                .build()
                .expect("runtime")
                .block_on(interleaved_attempts(seed));
        }
    }

    /// 300 tasks of 20 attempts each, with random timeouts and work, on one wheel.
    async fn interleaved_attempts(seed: u64) {
        let mut rng = fastrand::Rng::with_seed(seed);
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
                            "seed {seed}, task {t}: {work} ms of work under {timeout} ms"
                        );
                        assert_eq!(took, Duration::from_millis(work));
                    } else {
                        assert!(
                            out.is_err(),
                            "seed {seed}, task {t}: {work} ms of work over {timeout} ms"
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

    #[tokio::test(start_paused = true)]
    async fn a_later_attempt_times_out_after_the_sleep_fired_for_a_finished_one() {
        let start = Instant::now();
        // Arms the sleep for 100 ms, then finishes: the sleep stays armed.
        let quick = with_timeout(Duration::from_millis(100), async {
            tokio::time::sleep(Duration::from_millis(10)).await;
        })
        .await;
        assert!(quick.is_ok());
        // Due at 10 + 200 ms: when the stale sleep fires at 100 ms, nothing is due and
        // this attempt's task is woken to re-arm it.
        let out = with_timeout(Duration::from_millis(200), std::future::pending::<()>()).await;
        assert!(out.is_err());
        assert_eq!(start.elapsed(), Duration::from_millis(210));
    }

    #[tokio::test(start_paused = true)]
    async fn a_stale_wake_from_tokio_fires_nothing_early() {
        let start = Instant::now();
        let attempt = spawn_pending(Duration::from_millis(100));
        tokio::task::yield_now().await;
        // What a wake for a deadline the sleep was re-armed away from looks like: the
        // callback arrives while the sleep is armed and not elapsed.
        let wheel = Wheel::current();
        wheel.fire.wake_by_ref();
        tokio::task::yield_now().await;
        assert!(!attempt.is_finished(), "fired before its deadline");
        assert!(attempt.await.expect("task").is_err());
        assert_eq!(start.elapsed(), Duration::from_millis(100));
    }

    /// Polls `fut` to completion on this thread, blocking it: what a sync bridge inside
    /// an async task does.
    fn block_on<F: std::future::Future>(fut: F) -> F::Output {
        struct Unpark(std::thread::Thread);
        impl Wake for Unpark {
            fn wake(self: Arc<Self>) {
                self.0.unpark();
            }
        }
        let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
        let mut cx = Context::from_waker(&waker);
        let mut fut = std::pin::pin!(fut);
        loop {
            if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
                return v;
            }
            std::thread::park();
        }
    }

    #[test]
    fn a_timeout_fires_while_its_worker_thread_is_blocked() {
        let rt = two_workers();
        let (tx, rx) = std::sync::mpsc::channel();
        rt.spawn(async move {
            // Blocks this worker until the timeout fires: nothing on this thread can run.
            let out = block_on(with_timeout(
                Duration::from_millis(50),
                std::future::pending::<()>(),
            ));
            let _ = tx.send(out.is_err());
        });
        // A liveness bound, not a timing assertion: the timeout is 50 ms.
        let timed_out = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the timeout never fired");
        assert!(timed_out);
    }

    #[test]
    fn a_runtime_shutting_down_with_attempts_pending_does_not_panic() {
        let rt = two_workers();
        for ms in [5_000u64, 10_000, 20_000] {
            rt.spawn(with_timeout(
                Duration::from_millis(ms),
                std::future::pending::<()>(),
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
        drop(rt);
    }

    #[tokio::test(start_paused = true)]
    async fn a_task_that_spent_its_budget_still_arms_the_sleep() {
        // A consumer of a busy channel: after 128 ready receives the task's coop budget
        // is spent, the next `recv` goes pending because of it, and the attempt arms the
        // shared sleep with no budget left.
        let start = Instant::now();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<u32>();
        for i in 0..1000 {
            tx.send(i).expect("send");
        }
        let consumer = tokio::spawn(async move {
            let mut n = 0;
            loop {
                match with_timeout(Duration::from_secs(1), rx.recv()).await {
                    Ok(_) => n += 1,
                    // The channel is drained and idle: the 1 s timeout must fire.
                    Err(_) => return (n, start.elapsed()),
                }
            }
        });
        let out = tokio::time::timeout(Duration::from_secs(60), consumer).await;
        drop(tx);
        let (n, took) = out
            .expect("the 1 s attempt timeout never fired")
            .expect("task");
        assert_eq!((n, took), (1000, Duration::from_secs(1)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_stale_arming_target_does_not_delay_an_earlier_deadline() {
        // Runs `poll_expired`'s two halves by hand, to place a preemption between them.
        let t0 = Instant::now();
        let w = Waker::noop();
        let wheel = Wheel::current();
        let s = Timer::arm(t0 + Duration::from_millis(10), w); // armed for 10
        let _q = Timer::arm(t0 + Duration::from_millis(100), w);
        drop(s); // the sleep stays armed for 10
        tokio::time::sleep_until(t0 + Duration::from_millis(10)).await; // stale fire
        assert_eq!(wheel.armed_for.load(Ordering::SeqCst), IDLE);
        // Q's task computes its target, 100 ms, and its worker is preempted here ...
        let target = earliest(&wheel.lock_entries()).expect("an entry");
        let _a = Timer::arm(t0 + Duration::from_millis(30), w); // arms for 30
        let e = Timer::arm(t0 + Duration::from_millis(60), w); // no re-arm
        tokio::time::sleep_until(t0 + Duration::from_millis(30)).await; // fire at 30
        assert_eq!(wheel.armed_for.load(Ordering::SeqCst), IDLE);
        // ... and resumes: its stale target must not stand for E's earlier deadline.
        wheel.arm_sleep(target);
        let mut cx = Context::from_waker(w);
        assert!(e.poll_expired(&mut cx).is_pending());
        tokio::time::sleep_until(t0 + Duration::from_millis(61)).await;
        assert!(
            e.poll_expired(&mut cx).is_ready(),
            "E (60 ms) not fired at 61 ms"
        );
    }

    #[test]
    fn a_runtime_without_timers_panics_without_leaving_entries() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        rt.block_on(async {
            for _ in 0..3 {
                let out = tokio::spawn(with_timeout(
                    Duration::from_millis(5),
                    std::future::pending::<()>(),
                ))
                .await;
                assert!(out.expect_err("no timers").is_panic());
            }
            let leftover = LOCAL.with(|l| l.borrow().as_ref().map(|(_, w)| w.len()));
            assert_eq!(
                leftover.unwrap_or(0),
                0,
                "entries left behind by the panics"
            );
        });
    }

    /// A waker that drops a `Timer` when woken, as an executor that is gone, or one
    /// that polls inline, would.
    struct DropOnWake(Mutex<Option<Timer>>);

    impl Wake for DropOnWake {
        fn wake(self: Arc<Self>) {
            self.wake_by_ref();
        }

        fn wake_by_ref(self: &Arc<Self>) {
            drop(self.0.lock().unwrap_or_else(PoisonError::into_inner).take());
        }
    }

    #[tokio::test(start_paused = true)]
    async fn wakers_are_called_outside_the_wheels_locks() {
        let t0 = Instant::now();
        let slot = Arc::new(DropOnWake(Mutex::new(None)));
        let _due = Timer::arm(t0 + Duration::from_millis(10), &Waker::from(slot.clone()));
        *slot.0.lock().expect("lock") =
            Some(Timer::arm(t0 + Duration::from_secs(5), Waker::noop()));
        // Deadlocks if the fire wakes `_due` while holding the entries' lock.
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(slot.0.lock().expect("lock").is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_busy_task_does_not_hold_back_the_timeouts_of_others() {
        let t0 = Instant::now();
        // Arms the sleep for 10 ms, then finishes: the sleep stays armed (stale).
        drop(Timer::arm(t0 + Duration::from_millis(10), Waker::noop()));
        // The earliest waiting attempt belongs to a task that is never polled again
        // (busy in one long poll, or blocked): its waker does nothing.
        let _busy = Timer::arm(t0 + Duration::from_millis(50), Waker::noop());
        // This 60 ms timeout must fire at 60 ms, without waiting for the busy task to
        // re-arm the sleep after the stale fire at 10 ms.
        let out = tokio::time::timeout(
            Duration::from_secs(1),
            with_timeout(Duration::from_millis(60), std::future::pending::<()>()),
        )
        .await;
        assert_eq!(
            out.map(|o| o.is_err()),
            Ok(true),
            "the timeout waited for the busy task"
        );
        assert_eq!(t0.elapsed(), Duration::from_millis(60));
    }

    #[test]
    fn a_new_runtime_on_the_same_thread_gets_a_new_wheel() {
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
    fn stress_on_two_workers_every_attempt_ends_as_it_should() {
        let rt = two_workers();
        rt.block_on(async {
            let tasks: Vec<_> = (0..200u64)
                .map(|t| {
                    tokio::spawn(async move {
                        for i in 0..50u64 {
                            match (t + i) % 3 {
                                // Finishes long before its timeout: leaves the wheel.
                                0 => {
                                    let out = with_timeout(Duration::from_secs(30), async {
                                        tokio::task::yield_now().await;
                                    })
                                    .await;
                                    assert!(out.is_ok());
                                }
                                // Never finishes: its 1-3 ms timeout must fire.
                                1 => {
                                    let out = with_timeout(
                                        Duration::from_millis(1 + i % 3),
                                        std::future::pending::<()>(),
                                    )
                                    .await;
                                    assert!(out.is_err());
                                }
                                // Cancelled while pending.
                                _ => {
                                    let _ = tokio::time::timeout(
                                        Duration::from_micros(200),
                                        with_timeout(
                                            Duration::from_secs(30),
                                            std::future::pending::<()>(),
                                        ),
                                    )
                                    .await;
                                }
                            }
                        }
                    })
                })
                .collect();
            for task in tasks {
                // A liveness bound: a lost timeout would hang here.
                tokio::time::timeout(Duration::from_secs(60), task)
                    .await
                    .expect("an attempt's timeout never fired")
                    .expect("task");
            }
        });
    }

    #[test]
    fn works_across_the_threads_of_a_multi_thread_runtime() {
        let rt = two_workers();
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
