//! The one place where the composition order is written down.
//!
//! ```text
//!  call ──► deadline ──► retry ──► breaker ──► bulkhead ──► attempt timeout ──► operation
//!           (whole call)  (loop)    (permit)    (permit,      (per attempt,
//!                                               FIFO queue)   lazily armed)
//! ```
//!
//! For each attempt, in this order:
//!
//! 1. **Admission.** The runtime must not be shutting down. The breaker grants a permit
//!    or rejects at once; then the bulkhead grants a permit, queues the call (the wait
//!    counts against the call's deadline) or rejects at once.
//! 2. **The attempt** runs under `min(attempt timeout, time left before the deadline)`.
//! 3. **Classification.** The error's [`ErrorClass`] decides: the breaker records a
//!    failure only for `Unavailable`/`Ambiguous` classes and attempt timeouts; the
//!    bulkhead permit is released *before* any backoff sleep.
//! 4. **Retry** only if the class allows it for this operation's idempotency, retries
//!    are left, and the backoff sleep ends before the deadline.
//!
//! Rejections by an open breaker, a full bulkhead, the deadline or shutdown are never
//! retried and never count as breaker failures.

use std::future::Future;
use std::ops::ControlFlow;
use std::sync::atomic::Ordering;

use tokio::time::Instant;

use crate::breaker::BreakerPermit;
use crate::bulkhead::{Bulkhead, BulkheadPermit};
use crate::cache::CacheKey;
use crate::policy::Policy;
use crate::runtime::{OpState, Runtime, RuntimeRef};
use crate::timeout::{Limited, instant_after};
use crate::{Classify, ErrorClass, Rejection, retry};

/// Implemented for error types that can hold a [`Rejection`].
#[diagnostic::on_unimplemented(
    message = "the error type `{Self}` cannot carry resilient's rejections",
    label = "`{Self}` does not implement `From<resilient::Rejection>`",
    note = "add a variant such as `#[error(transparent)] Resilience(#[from] resilient::Rejection)`"
)]
pub trait FromRejection: From<Rejection> {}

impl<E: From<Rejection>> FromRejection for E {}

/// Implemented for error types the runtime can classify.
#[diagnostic::on_unimplemented(
    message = "the error type `{Self}` does not implement `resilient::Classify`",
    label = "the runtime cannot tell whether this error may be retried",
    note = "implement `resilient::Classify` for `{Self}`: one `match` that returns an `ErrorClass` per variant"
)]
pub trait ClassifyError: Classify {}

impl<E: Classify> ClassifyError for E {}

/// How an attempt or a call failed, before the rejection is converted into the user's error.
#[derive(Debug)]
pub enum Failure<E> {
    /// The operation's own error.
    Inner(E),
    /// A rejection by the resilience layer.
    Rejected(Rejection),
}

/// `Err(Failure::Rejected(r))`, for generated code.
#[inline]
pub fn rejected<T, E>(r: Rejection) -> Result<T, Failure<E>> {
    Err(Failure::Rejected(r))
}

/// Where admission stands after the steps that never wait.
enum Admit<'rt> {
    Ready(Admission<'rt>),
    /// The bulkhead is full: queue in it, holding the breaker permit.
    Queue(Option<BreakerPermit<'rt>>, &'rt Bulkhead),
}

/// The permits one attempt holds.
#[derive(Debug)]
pub struct Admission<'rt> {
    breaker: Option<BreakerPermit<'rt>>,
    bulkhead: Option<BulkheadPermit<'rt>>,
}

impl Admission<'_> {
    #[inline(always)]
    fn record(self, class: Option<ErrorClass>) {
        // The bulkhead slot goes back first: a failed attempt must not hold it while
        // the breaker logs or the retry sleeps.
        drop(self.bulkhead);
        if let Some(permit) = self.breaker {
            match class {
                None => permit.success(),
                Some(class) => permit.record(class),
            }
        }
    }
}

/// One call of one operation: the state the retry loop carries between attempts.
///
/// Generated code drives it as `try_admit`/`admit` → `start_attempt` → `end_attempt` → … → `finish`; the loop itself is
/// emitted inline by the macro, so that each attempt can borrow `&mut self` afresh.
#[derive(Debug)]
pub struct Call<'rt> {
    policy: &'static Policy,
    rt: Option<&'rt Runtime>,
    op: Option<&'rt OpState>,
    attempts: u32,
    deadline: Option<Instant>,
    entered: bool,
    final_class: Option<ErrorClass>,
    /// Whether this call's latency is recorded (metrics on, and sampled).
    timed: bool,
    /// This thread's stripe of the striped counters, read once per call.
    stripe: usize,
}

impl<'rt> Call<'rt> {
    /// Starts a call of `policy` on the runtime `rt` found.
    #[inline]
    pub fn new(rt: &'rt RuntimeRef, policy: &'static Policy) -> Self {
        Self::on(rt.get(), policy)
    }

    #[inline]
    fn on(rt: Option<&'rt Runtime>, policy: &'static Policy) -> Self {
        Call {
            policy,
            rt,
            op: rt.and_then(|rt| rt.op(policy)),
            attempts: 0,
            deadline: None,
            entered: false,
            final_class: None,
            timed: false,
            stripe: crate::metrics::striped::stripe(),
        }
    }

    /// The policy's deadline for the whole call (precomputed by the runtime).
    #[inline]
    fn total(&self) -> std::time::Duration {
        match self.op {
            Some(op) => op.deadline,
            None => self.policy.deadline(),
        }
    }

    /// Attempts started so far.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    pub(crate) fn deadline(&mut self) -> Instant {
        let total = self.total();
        *self
            .deadline
            .get_or_insert_with(|| instant_after(Instant::now(), total))
    }

    /// The admission when it needs no waiting: `Ok(None)` when the bulkhead has no free
    /// slot, and [`admit`](Self::admit) must be awaited instead.
    #[inline(always)]
    pub fn try_admit(&mut self) -> Result<Option<Admission<'rt>>, Rejection> {
        match self.admission()? {
            Admit::Ready(admission) => Ok(Some(admission)),
            // Must queue: `admit` takes the breaker permit again.
            Admit::Queue(..) => Ok(None),
        }
    }

    /// Shutdown check and breaker permit, then a bulkhead slot if one is free at once.
    #[inline(always)]
    fn admission(&mut self) -> Result<Admit<'rt>, Rejection> {
        let Some(op) = self.op else {
            return Err(self.no_op());
        };
        if !self.entered {
            self.enter(op)?;
        }
        let breaker = match &op.breaker {
            Some(b) => Some(b.try_acquire()?),
            None => None,
        };
        let bulkhead = match &op.bulkhead {
            None => None,
            Some(bh) => match bh.try_acquire() {
                Some(p) => Some(p),
                None => return Ok(Admit::Queue(breaker, bh)),
            },
        };
        Ok(Admit::Ready(Admission { breaker, bulkhead }))
    }

    #[cold]
    fn no_op(&self) -> Rejection {
        match self.rt {
            None => Rejection::NoRuntime,
            Some(_) => Rejection::NotRegistered {
                operation: self.policy.name(),
            },
        }
    }

    #[inline(always)]
    fn enter(&mut self, op: &'rt OpState) -> Result<(), Rejection> {
        // Count the call first, then check the flag; shutdown sets the flag first, then
        // reads the count (all SeqCst). Either shutdown sees this call and waits for it,
        // or this call sees the flag and leaves (its `Drop` uncounts it): none slips
        // past the drain.
        op.in_flight.add(self.stripe, 1, Ordering::SeqCst);
        self.entered = true;
        if self.rt.is_some_and(Runtime::is_shutting_down) {
            return Err(Rejection::ShuttingDown);
        }
        self.timed = op.metrics.time_this_call(self.stripe);
        Ok(())
    }

    /// Starts one attempt: `fut` under the attempt timeout and the call's deadline.
    /// Await it, then hand its output to [`end_attempt`](Self::end_attempt).
    #[inline]
    pub fn start_attempt<T, E, F>(&mut self, fut: F) -> Limited<'_, F>
    where
        E: ClassifyError,
        F: Future<Output = Result<T, E>>,
    {
        self.attempts += 1;
        let total = self.total();
        let span = tracing::debug_span!(
            "resilient",
            operation = self.policy.name(),
            attempt = self.attempts
        );
        Limited::new(
            fut,
            self.policy.attempt_timeout(),
            total,
            &mut self.deadline,
        )
        .in_span(span)
    }

    /// Ends an attempt started with [`start_attempt`](Self::start_attempt): `Break` with
    /// the call's result, or `Continue` with the instant to sleep until before the next
    /// attempt.
    #[inline(always)]
    pub fn end_attempt<T, E: ClassifyError>(
        &mut self,
        admission: Admission<'rt>,
        outcome: Result<Result<T, E>, Rejection>,
    ) -> ControlFlow<Result<T, Failure<E>>, Instant> {
        match outcome {
            Ok(Ok(v)) => {
                admission.record(None);
                ControlFlow::Break(Ok(v))
            }
            other => self.end_failed_attempt(admission, other),
        }
    }

    #[inline(never)]
    fn end_failed_attempt<T, E: ClassifyError>(
        &mut self,
        admission: Admission<'rt>,
        outcome: Result<Result<T, E>, Rejection>,
    ) -> ControlFlow<Result<T, Failure<E>>, Instant> {
        let (class, failure) = match outcome {
            Ok(Ok(v)) => {
                admission.record(None);
                return ControlFlow::Break(Ok(v));
            }
            Ok(Err(e)) => (e.class(), Failure::Inner(e)),
            Err(r @ Rejection::DeadlineExceeded { .. }) => {
                // The database was too slow: that is a health signal even though the
                // call is over.
                admission.record(Some(ErrorClass::Ambiguous));
                tracing::warn!(
                    operation = self.policy.name(),
                    attempt = self.attempts,
                    "deadline exceeded"
                );
                self.final_class = Some(ErrorClass::Rejected);
                return ControlFlow::Break(Err(Failure::Rejected(r)));
            }
            Err(r) => {
                if let Some(op) = self.op {
                    op.metrics.attempt_timeouts.fetch_add(1, Ordering::Relaxed);
                }
                tracing::warn!(operation = self.policy.name(), attempt = self.attempts, timeout = ?self.policy.attempt_timeout(), "attempt timed out");
                (r.class(), Failure::Rejected(r))
            }
        };
        admission.record(Some(class));
        self.final_class = Some(class);

        let retry = self.policy.retry_policy();
        let retry_index = self.attempts - 1;
        if retry_index >= retry.max_retries || !class.is_retryable(self.policy.is_idempotent()) {
            return ControlFlow::Break(Err(failure));
        }
        let delay = retry::delay_before(retry, retry_index);
        let deadline = self.deadline();
        let wake = instant_after(Instant::now(), delay);
        if wake >= deadline {
            tracing::warn!(
                operation = self.policy.name(),
                attempt = self.attempts,
                %class,
                "giving up: the deadline leaves no time for another attempt"
            );
            return ControlFlow::Break(Err(failure));
        }
        tracing::info!(
            operation = self.policy.name(),
            attempt = self.attempts,
            max = self.policy.attempts(),
            ?delay,
            %class,
            "retrying"
        );
        drop(failure);
        if let Some(op) = self.op {
            op.metrics.retries.fetch_add(1, Ordering::Relaxed);
        }
        ControlFlow::Continue(wake)
    }

    /// Admits the next attempt: shutdown check, breaker permit, bulkhead permit (waiting
    /// in the bulkhead's queue, within the call's deadline, if it is full).
    pub async fn admit(&mut self) -> Result<Admission<'rt>, Rejection> {
        let (breaker, bh) = match self.admission()? {
            Admit::Ready(admission) => return Ok(admission),
            Admit::Queue(breaker, bh) => (breaker, bh),
        };
        let deadline = self.deadline();
        match tokio::time::timeout_at(deadline, bh.acquire()).await {
            Ok(Ok(p)) => Ok(Admission {
                breaker,
                bulkhead: Some(p),
            }),
            Ok(Err(full)) => Err(full),
            Err(_) => Err(Rejection::DeadlineExceeded {
                deadline: self.total(),
            }),
        }
    }

    /// The retry loop for closures; generated code emits the same loop inline.
    async fn run<T, E, F, Fut>(&mut self, op: &mut F) -> Result<T, Failure<E>>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: ClassifyError,
    {
        loop {
            let admission = match self.try_admit() {
                Ok(Some(a)) => a,
                Ok(None) => match self.admit().await {
                    Ok(a) => a,
                    Err(r) => break rejected(r),
                },
                Err(r) => break rejected(r),
            };
            let outcome = self.start_attempt(op()).await;
            match self.end_attempt(admission, outcome) {
                ControlFlow::Break(r) => break r,
                ControlFlow::Continue(wake) => tokio::time::sleep_until(wake).await,
            }
        }
    }

    /// Ends the call: records its outcome and converts a rejection into the user's error type.
    #[inline]
    pub fn finish<T, E: FromRejection + ClassifyError>(
        &mut self,
        result: Result<T, Failure<E>>,
    ) -> Result<T, E> {
        match result {
            Ok(v) => {
                if let Some(op) = self.op {
                    op.metrics.successes.add(self.stripe, 1, Ordering::Relaxed);
                    self.record_latency(op);
                }
                Ok(v)
            }
            Err(failure) => Err(self.finish_failed(failure)),
        }
    }

    #[inline(never)]
    fn finish_failed<E: FromRejection + ClassifyError>(&mut self, failure: Failure<E>) -> E {
        let out = match failure {
            Failure::Inner(e) => {
                let class = e.class();
                self.final_class = Some(class);
                self.record_failure(class, || e.describe());
                e
            }
            Failure::Rejected(r) => {
                // A waiter's outcome is the loader's: a shared "not found" stays a caller error.
                let class = match r {
                    Rejection::SharedLoadFailed { class, .. } => class,
                    _ => r.class(),
                };
                self.final_class = Some(class);
                if let Some(op) = self.op {
                    op.metrics.rejected(&r);
                }
                // Debug, not warn: an open breaker rejects every call, and the breaker's
                // own transition was already logged once at warn.
                tracing::debug!(operation = self.policy.name(), rejection = %r, "call rejected");
                self.record_failure(class, || Some(r.to_string()));
                E::from(r)
            }
        };
        if let Some(op) = self.op {
            self.record_latency(op);
        }
        out
    }

    /// Records the latency of a timed call that waited; one that never waited is counted
    /// as zero by the histogram's readers, without a write here.
    #[inline]
    fn record_latency(&self, op: &OpState) {
        if self.timed
            && let Some(deadline) = self.deadline
            && let Some(start) = deadline.checked_sub(self.total())
        {
            op.metrics.latency(start.elapsed());
        }
    }

    fn record_failure(&self, class: ErrorClass, describe: impl FnOnce() -> Option<String>) {
        if let (Some(op), Some(rt)) = (self.op, self.rt) {
            op.metrics.failure(class);
            if rt.metrics_enabled() {
                rt.recent_errors()
                    .push(self.policy.name(), class, describe());
            }
        }
    }

    /// Whether the fallback should replace the call's error: every failure except a
    /// caller error (a fallback must not hide "not found" or a constraint violation).
    pub fn fallback_applies(&self) -> bool {
        let applies = self.final_class.is_some_and(|c| c != ErrorClass::Caller);
        if let (true, Some(op)) = (applies, self.op) {
            op.metrics.fallbacks.fetch_add(1, Ordering::Relaxed);
        }
        applies
    }
}

impl Drop for Call<'_> {
    #[inline]
    fn drop(&mut self) {
        if let (true, Some(op), Some(rt)) = (self.entered, self.op, self.rt) {
            op.in_flight.sub(self.stripe, 1, Ordering::SeqCst);
            // The drain re-counts when woken, so waking it on every exit is harmless.
            if rt.is_shutting_down() {
                rt.drained().notify_waiters();
            }
        }
    }
}

impl Runtime {
    /// Runs `op` under the full policy: what `#[resilient]` generates, from a closure.
    ///
    /// `policy` must be registered: through `#[resilient]`, or with
    /// [`RuntimeBuilder::register`](crate::RuntimeBuilder::register); otherwise the call
    /// fails with [`Rejection::NotRegistered`].
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
    /// use resilient_runtime::{policy::Policy, Rejection, Runtime};
    ///
    /// static LOAD: Policy = Policy::new("load", module_path!()).retry(2).timeout_ms(500);
    /// let rt = Runtime::builder().register(&LOAD).build().unwrap();
    /// let out: Result<u8, Rejection> = rt.execute(&LOAD, || async { Ok(1) }).await;
    /// assert_eq!(out, Ok(1));
    /// # });
    /// ```
    pub async fn execute<T, E, F, Fut>(&self, policy: &'static Policy, mut op: F) -> Result<T, E>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: Classify + From<Rejection>,
    {
        let mut call = Call::on(Some(self), policy);
        let result = call.run(&mut op).await;
        call.finish(result)
    }

    /// Like [`execute`](Runtime::execute), for a policy that caches: the value cached
    /// under `key` is served if fresh; otherwise one caller loads it through the policy
    /// while the others wait, and a failed load serves the stale value if there is one.
    pub async fn execute_cached<V, E, F, Fut>(
        &self,
        policy: &'static Policy,
        key: CacheKey,
        mut op: F,
    ) -> Result<V, E>
    where
        V: Clone + Send + Sync + 'static,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<V, E>>,
        E: Classify + From<Rejection>,
    {
        let mut call = Call::on(Some(self), policy);
        // A fresh hit answers without creating the single-flight future.
        let stale = match call.cache_probe::<V>(&key) {
            Ok(v) => return call.finish(Ok(v)),
            Err(stale) => stale,
        };
        let load = match call.cache_join(key, stale).await {
            CacheEnter::Done(r) => return call.finish(r),
            CacheEnter::Load(load) => load,
        };
        let result = call.run(&mut op).await;
        let result = call.cache_store(load, result, never_negative);
        call.finish(result)
    }

    /// Like [`execute`](Runtime::execute), for a policy that invalidates cached keys:
    /// `keys` and `prefixes` follow the order of the policy's `invalidate` and
    /// `invalidate_prefix` templates.
    pub async fn execute_invalidating<T, E, F, Fut>(
        &self,
        policy: &'static Policy,
        keys: &[CacheKey],
        prefixes: &[CacheKey],
        mut op: F,
    ) -> Result<T, E>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: Classify + From<Rejection>,
    {
        let mut call = Call::on(Some(self), policy);
        let result = call.run(&mut op).await;
        call.invalidate(&result, keys, prefixes);
        call.finish(result)
    }

    /// Runs `op` under the `read` preset: 5 s timeout, 3 attempts, `read` bulkhead.
    pub async fn read<T, E, F, Fut>(&self, op: F) -> Result<T, E>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: Classify + From<Rejection>,
    {
        self.execute(&crate::runtime::READ_OP, op).await
    }

    /// Runs `op` under the `write` preset: 10 s timeout, 5 attempts, `write` bulkhead,
    /// ambiguous failures not retried.
    pub async fn write<T, E, F, Fut>(&self, op: F) -> Result<T, E>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: Classify + From<Rejection>,
    {
        self.execute(&crate::runtime::WRITE_OP, op).await
    }

    /// Runs `op` under the `report` preset: 30 s timeout, no retry, `report` bulkhead.
    pub async fn report<T, E, F, Fut>(&self, op: F) -> Result<T, E>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: Classify + From<Rejection>,
    {
        self.execute(&crate::runtime::REPORT_OP, op).await
    }
}

mod cached;

pub use cached::{CacheEnter, CacheLoad, never_negative};

#[cfg(test)]
mod tests;
