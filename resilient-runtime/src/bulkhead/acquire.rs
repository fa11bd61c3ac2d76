//! The slow path: the FIFO queue and the future that waits in it.
//
// Handoff design, and why no wakeup is lost.
//
// State: `executing` (permits in existence) and `waiting` (callers holding a queue
// place) are atomics; the queue is a `Mutex<VecDeque<Arc<Waiter>>>`; a waiter's
// `granted` flag is only ever set under that mutex. Every operation on the two
// counters that the argument below relies on is SeqCst, so they all sit in one total
// order S.
//
// - Fast path (`take_free_slot` when `waiting == 0`): `executing += 1`; if it was already
//   at max, the caller gives the slot back with a release (below). To every other
//   party that is indistinguishable from a caller that took a free slot and released it
//   at once, which the argument below covers.
// - Queueing: CAS `waiting: w -> w + 1` (w < max_queue), then, under the lock, push
//   the node at the back and *drain*.
// - Drain (always under the lock): while the queue is non-empty, CAS a slot (never past
//   max, so that it never has to give one back, which would take the lock again)
//   (`executing += 1`), pop the front, `waiting -= 1`, set its `granted` flag, and
//   collect its waker. The permit is thus handed over directly: the granted waiter
//   owns a slot that is already counted in `executing`.
// - Release: `executing -= 1`, then load `waiting`; if non-zero, lock and drain.
//
// Claim: a waiter W is never left queued while a slot is free. While holding the
// lock with W in the queue, W's enqueue drained, so it tried a CAS on `executing`. If
// that CAS succeeded for every node up to W, W was granted. Otherwise it read "full",
// and a slot can only become free through a later decrement D by some releaser R.
// The failed CAS read a value earlier than D in `executing`'s modification order, so
// it precedes D in S, and W's increment of `waiting` precedes that CAS. Hence
// `W.inc <S D <S R.load`, and R reads `waiting >= 1` (W has neither been granted nor
// left). So R takes the lock and drains after D. Its CAS is an RMW that reads the
// latest value, so it finds the freed slot and grants the front waiter (W or one
// ahead of W). The only way it fails is if another caller already took that slot, and
// that caller's own release later repeats the argument. A release that read
// `waiting == 0` skips the lock safely: any waiter counted after that read does its CAS
// under the lock after D and sees the slot itself. Because grants and removals on drop
// both happen under the lock, a waiter is either granted or has left the queue, never
// both.
//
// Fairness: a newcomer takes the fast path only if it reads `waiting == 0`, and every
// queued node is counted in `waiting` from before it enters the queue until it leaves
// it. So a newcomer can only overtake callers that were still racing to enqueue when
// it arrived, never an established waiter. A slot freed while anyone waits goes to
// the front of the queue.
//
// Waker: the waiter stores its waker under its own small mutex, then re-reads
// `granted`; the granter sets `granted`, then takes the waker under that mutex. One of
// the two necessarily sees the other's write.

use std::collections::VecDeque;
use std::future::Future;
use std::mem;
use std::pin::Pin;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::{Acquire as AcquireOrd, Relaxed, Release, SeqCst};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use super::{Bulkhead, BulkheadPermit, raise_peak};
use crate::Rejection;

/// The future returned by [`Bulkhead::acquire`].
///
/// Resolves to a permit, or to [`Rejection::BulkheadFull`] on its first poll when both
/// the slots and the queue are full. Dropping it gives up its place in the queue, or
/// passes on the permit it was granted but never received. Polling it again after it
/// completed returns `Poll::Pending`.
#[must_use = "futures do nothing unless polled; the caller is queued on the first poll"]
#[derive(Debug)]
pub struct Acquire<'a> {
    bulkhead: &'a Bulkhead,
    state: State,
}

#[derive(Debug)]
enum State {
    /// Not polled yet: holds nothing.
    Start,
    /// In the queue (or just granted a slot that we now own).
    Queued(Arc<Waiter>),
    /// Returned its output.
    Done,
}

/// A queued caller.
#[derive(Debug, Default)]
pub(super) struct Waiter {
    /// Set (under the queue lock) when a slot has been handed to this waiter.
    granted: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

/// Result of the first poll.
enum Admission {
    Granted,
    Queued(Arc<Waiter>),
    Rejected(Rejection),
}

/// Wakers collected under the queue lock and woken after it is released. One slot is
/// inline because a release frees exactly one slot, so it usually wakes one waiter.
#[derive(Default)]
struct Wakers {
    first: Option<Waker>,
    rest: Vec<Waker>,
}

impl Wakers {
    fn push(&mut self, waker: Waker) {
        if self.first.is_none() {
            self.first = Some(waker);
        } else {
            self.rest.push(waker);
        }
    }

    fn wake_all(self) {
        if let Some(waker) = self.first {
            waker.wake();
        }
        self.rest.into_iter().for_each(Waker::wake);
    }
}

impl Waiter {
    fn is_granted(&self) -> bool {
        self.granted.load(AcquireOrd)
    }

    /// Marks the slot as ours and returns the waker to call once the lock is dropped.
    fn grant(&self) -> Option<Waker> {
        self.granted.store(true, Release);
        self.waker.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    /// Stores the task's waker, then reports whether the slot was granted meanwhile.
    fn register(&self, waker: &Waker) -> bool {
        {
            let mut slot = self.waker.lock().unwrap_or_else(|e| e.into_inner());
            match slot.as_ref() {
                Some(current) if current.will_wake(waker) => {}
                _ => *slot = Some(waker.clone()),
            }
        }
        self.is_granted()
    }
}

impl Bulkhead {
    /// Fast path, else a place in the queue, else a rejection.
    fn admit(&self) -> Admission {
        if self.max_concurrent == 0 {
            return Admission::Rejected(self.reject(0));
        }
        loop {
            let waiting = self.waiting.load(SeqCst);
            if waiting == 0 && self.take_free_slot() {
                return Admission::Granted;
            }
            if waiting >= self.max_queue {
                return Admission::Rejected(self.reject(waiting));
            }
            // A CAS rather than fetch_add, so `waiting` never overshoots `max_queue`
            // and a rejected caller never appears in the count.
            if self
                .waiting
                .compare_exchange(waiting, waiting + 1, SeqCst, Relaxed)
                .is_ok()
            {
                raise_peak(&self.peak_waiting, waiting + 1);
                return Admission::Queued(self.enqueue());
            }
        }
    }

    fn reject(&self, waiting: usize) -> Rejection {
        self.rejected.fetch_add(1, Relaxed);
        let executing = self.executing();
        tracing::debug!(
            bulkhead = self.name,
            executing,
            waiting,
            "bulkhead full, call rejected"
        );
        Rejection::BulkheadFull {
            bulkhead: self.name,
            executing,
            waiting,
        }
    }

    /// Joins the back of the queue (the caller already counted itself in `waiting`).
    fn enqueue(&self) -> Arc<Waiter> {
        let node = Arc::new(Waiter::default());
        let mut wakers = Wakers::default();
        {
            let mut queue = self.lock_queue();
            queue.push_back(Arc::clone(&node));
            // Retry the slot under the lock: a release that read `waiting` before our
            // increment will not come to the queue, so we must see its freed slot.
            self.drain(&mut queue, &mut wakers);
        }
        wakers.wake_all();
        node
    }

    /// Called by a release that saw someone waiting.
    #[cold]
    pub(super) fn hand_off(&self) {
        let mut wakers = Wakers::default();
        self.drain(&mut self.lock_queue(), &mut wakers);
        wakers.wake_all();
    }

    /// Hands free slots to the front of the queue, in order. Caller holds the lock.
    fn drain(&self, queue: &mut VecDeque<Arc<Waiter>>, wakers: &mut Wakers) {
        while !queue.is_empty() && self.take_slot() {
            if let Some(node) = queue.pop_front() {
                self.waiting.fetch_sub(1, SeqCst);
                if let Some(waker) = node.grant() {
                    wakers.push(waker);
                }
            }
        }
    }

    /// A queued caller gives up. If it was granted a slot meanwhile, the slot is
    /// released like any permit, which hands it to the next waiter.
    fn cancel(&self, node: &Arc<Waiter>) {
        let owns_slot = {
            let mut queue = self.lock_queue();
            // `granted` is only written under this lock, so this read is final.
            if node.granted.load(Relaxed) {
                true
            } else {
                if let Some(index) = queue.iter().position(|n| Arc::ptr_eq(n, node)) {
                    queue.remove(index);
                    self.waiting.fetch_sub(1, SeqCst);
                }
                false
            }
        };
        if owns_slot {
            self.release();
        }
    }
}

impl<'a> Acquire<'a> {
    pub(super) fn new(bulkhead: &'a Bulkhead) -> Self {
        Self {
            bulkhead,
            state: State::Start,
        }
    }

    fn granted(&mut self) -> Poll<Result<BulkheadPermit<'a>, Rejection>> {
        // The slot now belongs to the permit; `Done` keeps Drop from releasing it again.
        self.state = State::Done;
        Poll::Ready(Ok(BulkheadPermit {
            bulkhead: self.bulkhead,
        }))
    }
}

impl<'a> Future for Acquire<'a> {
    type Output = Result<BulkheadPermit<'a>, Rejection>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if let State::Start = this.state {
            match this.bulkhead.admit() {
                Admission::Granted => return this.granted(),
                Admission::Rejected(rejection) => {
                    this.state = State::Done;
                    return Poll::Ready(Err(rejection));
                }
                Admission::Queued(node) => this.state = State::Queued(node),
            }
        }
        let State::Queued(node) = &this.state else {
            return Poll::Pending;
        };
        if node.is_granted() || node.register(cx.waker()) {
            return this.granted();
        }
        Poll::Pending
    }
}

impl Drop for Acquire<'_> {
    fn drop(&mut self) {
        if let State::Queued(node) = mem::replace(&mut self.state, State::Done) {
            self.bulkhead.cancel(&node);
        }
    }
}
