//! Retry: backoff delays, full jitter, and the plain retry loop.

use std::future::Future;
use std::time::Duration;

use crate::Classify;
use crate::policy::{Backoff, RetryPolicy};

/// The delay before retry `k` (0-based): the capped backoff, then full jitter if enabled.
///
/// Full jitter draws the delay uniformly from `[0, capped delay]` (the "full jitter" of
/// the AWS architecture blog), which spreads retries of many clients apart best.
pub fn delay_before(policy: &RetryPolicy, k: u32) -> Duration {
    let cap = policy.max_delay_before(k);
    if !policy.jitter || cap.is_zero() || policy.backoff == Backoff::None {
        return cap;
    }
    let nanos = u64::try_from(cap.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(fastrand::u64(0..=nanos))
}

/// Runs `op` until it succeeds, fails with an error that may not be retried, or the
/// retries run out: the seed's `withRetry`.
///
/// `idempotent` decides whether [`Ambiguous`](crate::ErrorClass::Ambiguous) failures are retried.
/// Backoff sleeps use tokio's clock. This loop knows nothing of breakers, bulkheads or
/// timeouts; [`Runtime::execute`](crate::Runtime::execute) composes all of them.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
/// use resilient_runtime::policy::RetryPolicy;
/// use resilient_runtime::{retry, Classify, ErrorClass};
///
/// struct Flaky;
/// impl Classify for Flaky {
///     fn class(&self) -> ErrorClass { ErrorClass::Transient }
/// }
///
/// let mut calls = 0;
/// let out: Result<u32, Flaky> = retry::with_retry(&RetryPolicy::retries(3), true, || {
///     calls += 1;
///     let n = calls;
///     async move { if n < 3 { Err(Flaky) } else { Ok(n) } }
/// })
/// .await;
/// assert!(matches!(out, Ok(3)));
/// # });
/// ```
pub async fn with_retry<T, E, F, Fut>(
    policy: &RetryPolicy,
    idempotent: bool,
    mut op: F,
) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: Classify,
{
    let mut k = 0;
    loop {
        match op().await {
            Ok(v) => return Ok(v),
            Err(e) => {
                let class = e.class();
                if k >= policy.max_retries || !class.is_retryable(idempotent) {
                    return Err(e);
                }
                let delay = delay_before(policy, k);
                tracing::debug!(attempt = k + 1, max = policy.max_retries + 1, ?delay, %class, "retrying");
                drop(e);
                tokio::time::sleep(delay).await;
                k += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests;
