//! Timeouts whose timer is armed only when the operation does not finish on its first poll.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::time::Instant;

use crate::Rejection;

mod wheel;

use wheel::Timer;

/// `now + d`, saturating far into the future instead of overflowing.
pub(crate) fn instant_after(now: Instant, d: Duration) -> Instant {
    now.checked_add(d)
        .unwrap_or_else(|| now + Duration::from_secs(60 * 60 * 24 * 365 * 30))
}

thread_local! {
    /// Depth of attempt futures being dropped because they were cancelled on this thread.
    static CANCELLING: Cell<u32> = const { Cell::new(0) };
}

/// Whether the current thread is dropping an attempt that was cancelled: timed out, cut
/// by the deadline, or dropped by the caller before it finished.
///
/// Resources held by the attempt check it in their `Drop`: a pooled database
/// connection, for one, must then cancel its query on the server instead of going back
/// to the pool with the server still busy.
pub fn is_cancelling() -> bool {
    CANCELLING.with(|c| c.get() > 0)
}

/// Drops `f` while [`is_cancelling`] reports `true`.
fn drop_cancelled<T>(f: impl FnOnce() -> T) -> T {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            CANCELLING.with(|c| c.set(c.get().saturating_sub(1)));
        }
    }
    CANCELLING.with(|c| c.set(c.get() + 1));
    let _reset = Reset;
    f()
}

pin_project_lite::pin_project! {
    /// An attempt bounded by its own timeout and by the call's deadline.
    ///
    /// Neither the clock nor the timer is touched while the inner future completes on
    /// its first poll: most successful database round trips still go pending, but a
    /// cache or a ready future pays nothing. The call's deadline starts on the first
    /// pending poll of the whole call (`deadline` is shared with the bulkhead wait and
    /// the backoff sleeps). The timer is the thread's shared one (see [`wheel`]), not a
    /// tokio `Sleep` per attempt.
    pub struct Limited<'a, F> {
        // `None` once finished or cancelled.
        #[pin]
        fut: Option<F>,
        timer: Option<Timer>,
        timeout: Duration,
        total: Duration,
        deadline: &'a mut Option<Instant>,
        by_deadline: bool,
        // Entered around every poll, unless disabled (no subscriber wants it).
        span: tracing::Span,
    }

    impl<F> PinnedDrop for Limited<'_, F> {
        fn drop(this: Pin<&mut Self>) {
            let mut fut = this.project().fut;
            if fut.is_some() {
                // Dropped before it finished: the caller gave up on the attempt.
                drop_cancelled(|| fut.set(None));
            }
        }
    }
}

impl<'a, F: Future> Limited<'a, F> {
    pub(crate) fn new(
        fut: F,
        timeout: Duration,
        total: Duration,
        deadline: &'a mut Option<Instant>,
    ) -> Self {
        Limited {
            fut: Some(fut),
            timer: None,
            timeout,
            total,
            deadline,
            by_deadline: false,
            span: tracing::Span::none(),
        }
    }

    /// Enters `span` around every poll of the attempt.
    #[inline]
    pub(crate) fn in_span(mut self, span: tracing::Span) -> Self {
        self.span = span;
        self
    }
}

impl<F: Future> Future for Limited<'_, F> {
    type Output = Result<F::Output, Rejection>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // Entering a span (even checking for one inside the poll) keeps the poll from
        // being inlined into the caller's state machine: the enabled case goes out of line.
        if self.span.is_disabled() {
            self.poll_attempt(cx)
        } else {
            self.poll_in_span(cx)
        }
    }
}

impl<F: Future> Limited<'_, F> {
    #[inline(never)]
    fn poll_in_span(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<<Self as Future>::Output> {
        let span = self.span.clone();
        let _entered = span.enter();
        self.poll_attempt(cx)
    }

    #[inline(always)]
    fn poll_attempt(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<<Self as Future>::Output> {
        let mut this = self.project();
        let Some(fut) = this.fut.as_mut().as_pin_mut() else {
            return Poll::Pending;
        };
        if let Poll::Ready(v) = fut.poll(cx) {
            this.fut.set(None);
            return Poll::Ready(Ok(v));
        }
        match this.timer {
            Some(timer) => ready!(timer.poll_expired(cx)),
            None => {
                let (timer, by_deadline) =
                    arm(this.deadline, *this.total, *this.timeout, cx.waker());
                *this.by_deadline = by_deadline;
                if timer.is_some() {
                    *this.timer = timer;
                    return Poll::Pending;
                }
            }
        }
        let mut fut = this.fut;
        drop_cancelled(|| fut.set(None));
        Poll::Ready(Err(if *this.by_deadline {
            Rejection::DeadlineExceeded {
                deadline: *this.total,
            }
        } else {
            Rejection::Timeout {
                after: *this.timeout,
            }
        }))
    }
}

/// Starts the clock for an attempt that went pending: the call's deadline if it has not
/// started yet, and a timer for whichever ends first, the attempt's timeout or the
/// deadline (`true`: the deadline). No timer when that end has already passed.
#[inline(never)]
fn arm(
    deadline: &mut Option<Instant>,
    total: Duration,
    timeout: Duration,
    waker: &std::task::Waker,
) -> (Option<Timer>, bool) {
    let now = Instant::now();
    let deadline = *deadline.get_or_insert_with(|| instant_after(now, total));
    let attempt_end = instant_after(now, timeout);
    // On a tie the attempt's own timeout is the cause: a derived deadline is exactly
    // every attempt's timeout plus every sleep, so the last attempt's timeout and the
    // deadline fall on the same instant.
    let by_deadline = deadline < attempt_end;
    let end = deadline.min(attempt_end);
    ((end > now).then(|| Timer::arm(end, waker)), by_deadline)
}

/// Runs `fut` for at most `timeout`: the seed's `withTimeout`.
///
/// When the timeout fires, `fut` is dropped (cancelled) and
/// [`Rejection::Timeout`] is returned. The timer is armed only if `fut` does not
/// complete on its first poll.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
/// use std::time::Duration;
/// use resilient_runtime::{timeout::with_timeout, Rejection};
///
/// let slow = tokio::time::sleep(Duration::from_secs(5));
/// let out = with_timeout(Duration::from_millis(100), slow).await;
/// assert_eq!(out, Err(Rejection::Timeout { after: Duration::from_millis(100) }));
/// # });
/// ```
pub async fn with_timeout<F: Future>(timeout: Duration, fut: F) -> Result<F::Output, Rejection> {
    let mut no_deadline = None;
    Limited::new(fut, timeout, Duration::MAX, &mut no_deadline).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn ready_future_needs_no_deadline() {
        let mut deadline = None;
        let out = Limited::new(
            async { 7 },
            Duration::from_millis(5),
            Duration::from_secs(1),
            &mut deadline,
        )
        .await;
        assert_eq!(out, Ok(7));
        // The clock was never read: the call deadline was not started.
        assert!(deadline.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn attempt_timeout_fires_at_its_time() {
        let start = Instant::now();
        let mut deadline = None;
        let out = Limited::new(
            tokio::time::sleep(Duration::from_secs(10)),
            Duration::from_millis(250),
            Duration::from_secs(5),
            &mut deadline,
        )
        .await;
        assert_eq!(
            out,
            Err(Rejection::Timeout {
                after: Duration::from_millis(250)
            })
        );
        assert_eq!(start.elapsed(), Duration::from_millis(250));
        assert_eq!(deadline, Some(start + Duration::from_secs(5)));
    }

    #[tokio::test(start_paused = true)]
    async fn call_deadline_wins_when_sooner() {
        let start = Instant::now();
        let mut deadline = Some(start + Duration::from_millis(100));
        let out = Limited::new(
            tokio::time::sleep(Duration::from_secs(10)),
            Duration::from_millis(250),
            Duration::from_millis(100),
            &mut deadline,
        )
        .await;
        assert_eq!(
            out,
            Err(Rejection::DeadlineExceeded {
                deadline: Duration::from_millis(100)
            })
        );
        assert_eq!(start.elapsed(), Duration::from_millis(100));
    }

    /// Records, when dropped, whether it was dropped as part of a cancellation.
    struct Probe<'a>(&'a Cell<Option<bool>>);
    impl Drop for Probe<'_> {
        fn drop(&mut self) {
            self.0.set(Some(is_cancelling()));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_timed_out_attempt_is_dropped_as_cancelled() {
        let seen = Cell::new(None);
        let out = with_timeout(Duration::from_millis(10), async {
            let _probe = Probe(&seen);
            tokio::time::sleep(Duration::from_secs(1)).await;
        })
        .await;
        assert!(out.is_err());
        assert_eq!(seen.get(), Some(true));
        assert!(!is_cancelling(), "the flag is reset after the drop");
    }

    #[tokio::test(start_paused = true)]
    async fn a_finished_attempt_is_not_cancelled() {
        let seen = Cell::new(None);
        let out = with_timeout(Duration::from_secs(1), async {
            let _probe = Probe(&seen);
            tokio::time::sleep(Duration::from_millis(10)).await;
        })
        .await;
        assert!(out.is_ok());
        assert_eq!(seen.get(), Some(false));
    }

    #[tokio::test(start_paused = true)]
    async fn an_attempt_dropped_by_its_caller_is_cancelled() {
        let seen = Cell::new(None);
        let mut deadline = None;
        let limited = Limited::new(
            async {
                let _probe = Probe(&seen);
                tokio::time::sleep(Duration::from_secs(1)).await;
            },
            Duration::from_secs(5),
            Duration::from_secs(5),
            &mut deadline,
        );
        // The caller's own, shorter timeout drops the attempt mid-flight.
        assert!(
            tokio::time::timeout(Duration::from_millis(10), limited)
                .await
                .is_err()
        );
        assert_eq!(seen.get(), Some(true));
    }

    #[tokio::test(start_paused = true)]
    async fn with_timeout_passes_fast_results() {
        let out = with_timeout(Duration::from_millis(10), async {
            tokio::time::sleep(Duration::from_millis(5)).await;
            "ok"
        })
        .await;
        assert_eq!(out, Ok("ok"));
    }
}
