//! The floor: the least a retry + breaker + bulkhead + attempt-timeout stack can cost.
//!
//! An atomic bulkhead counter (one `fetch_add` and one `fetch_sub`), a breaker that is one
//! atomic load on the healthy path, a timer armed only when the operation is not ready
//! on its first poll, and a plain retry loop. No queue, no half-open state, no metrics,
//! no cancellation handling: it is a lower bound, not a usable stack.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::time::Sleep;

/// Why the floor refused or failed a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FloorError<E> {
    /// The operation's own error, after the last retry.
    Inner(E),
    /// The breaker is open.
    Open,
    /// Every slot is taken.
    Full,
    /// The last attempt timed out.
    Timeout,
}

/// The hand-written floor stack.
#[derive(Debug)]
pub struct Floor {
    executing: AtomicUsize,
    max_concurrent: usize,
    failures: AtomicU32,
    threshold: u32,
    timeout: Duration,
    retries: u32,
}

impl Floor {
    /// A floor stack with `retries` retries and an attempt timeout.
    pub const fn new(max_concurrent: usize, retries: u32, timeout: Duration) -> Self {
        Floor {
            executing: AtomicUsize::new(0),
            max_concurrent,
            failures: AtomicU32::new(0),
            threshold: 5,
            timeout,
            retries,
        }
    }

    /// Runs `op` under the stack.
    #[inline]
    pub async fn call<T, E, F, Fut>(&self, mut op: F) -> Result<T, FloorError<E>>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let mut retries = 0;
        loop {
            let failures = self.failures.load(Ordering::Acquire);
            if failures >= self.threshold {
                return Err(FloorError::Open);
            }
            if self.executing.fetch_add(1, Ordering::Acquire) >= self.max_concurrent {
                self.executing.fetch_sub(1, Ordering::Release);
                return Err(FloorError::Full);
            }
            let out = LazyTimeout::new(op(), self.timeout).await;
            self.executing.fetch_sub(1, Ordering::Release);
            let error = match out {
                Ok(Ok(v)) => {
                    if failures != 0 {
                        self.failures.store(0, Ordering::Release);
                    }
                    return Ok(v);
                }
                Ok(Err(e)) => FloorError::Inner(e),
                Err(Elapsed) => FloorError::Timeout,
            };
            self.failures.fetch_add(1, Ordering::AcqRel);
            if retries >= self.retries {
                return Err(error);
            }
            retries += 1;
        }
    }
}

/// The attempt timeout fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed;

pin_project_lite::pin_project! {
    /// A timeout whose timer is created only when the inner future is not ready on its
    /// first poll.
    #[derive(Debug)]
    pub struct LazyTimeout<F> {
        #[pin]
        fut: F,
        #[pin]
        sleep: Option<Sleep>,
        after: Duration,
    }
}

impl<F: Future> LazyTimeout<F> {
    /// Bounds `fut` by `after`.
    pub fn new(fut: F, after: Duration) -> Self {
        LazyTimeout {
            fut,
            sleep: None,
            after,
        }
    }
}

impl<F: Future> Future for LazyTimeout<F> {
    type Output = Result<F::Output, Elapsed>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if let Poll::Ready(v) = this.fut.poll(cx) {
            return Poll::Ready(Ok(v));
        }
        if this.sleep.is_none() {
            this.sleep.set(Some(tokio::time::sleep(*this.after)));
        }
        if let Some(sleep) = this.sleep.as_pin_mut() {
            ready!(sleep.poll(cx));
        }
        Poll::Ready(Err(Elapsed))
    }
}
