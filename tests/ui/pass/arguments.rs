//! By-value arguments are cloned for each attempt; references are not. `mut` arguments,
//! patterns and `_` keep working, and without retries a non-`Clone` argument may be moved.

#[path = "../support/mod.rs"]
mod support;

use std::sync::atomic::{AtomicU32, Ordering};

use resilient::resilient;
use support::{RepoError, RepoResult};

static ATTEMPTS: AtomicU32 = AtomicU32::new(0);

/// Fails on the first attempt.
fn flaky() -> RepoResult<()> {
    if ATTEMPTS.fetch_add(1, Ordering::Relaxed) == 0 {
        Err(RepoError::Transient)
    } else {
        Ok(())
    }
}

/// Each attempt gets a fresh copy: the first attempt's push is not seen by the second.
#[resilient(retry = 1, delay_ms = 1)]
pub async fn by_value(mut names: Vec<String>, suffix: String) -> RepoResult<Vec<String>> {
    names.push(suffix); // moves `suffix`: fine, it is this attempt's copy
    flaky()?;
    Ok(names)
}

#[resilient(retry = 1)]
pub async fn patterns((a, b): (i32, i32), [x, mut y]: [u8; 2], _: String) -> RepoResult<i32> {
    y += 1;
    Ok(a + b + i32::from(x) + i32::from(y))
}

#[resilient(retry = 1)]
pub async fn references(text: &str, out: &mut Vec<u8>, &(a, b): &(u8, u8)) -> RepoResult<usize> {
    out.extend_from_slice(text.as_bytes());
    out.push(a + b);
    Ok(out.len())
}

pub struct NotClone(pub u32);

/// No retry and no fallback: arguments are used as they are, so they need not be `Clone`.
#[resilient(timeout_ms = 100)]
pub async fn once(value: NotClone, mut count: u32) -> RepoResult<u32> {
    let NotClone(v) = value;
    count += v;
    Ok(count)
}

fn main() {
    support::run(async {
        ATTEMPTS.store(0, Ordering::Relaxed);
        let out = by_value(vec!["a".into()], "b".into()).await.unwrap();
        assert_eq!(out, ["a", "b"]);
        assert_eq!(ATTEMPTS.load(Ordering::Relaxed), 2);
        assert_eq!(patterns((1, 2), [3, 4], String::new()).await.unwrap(), 11);
        let mut out = Vec::new();
        assert_eq!(references("ab", &mut out, &(1, 2)).await.unwrap(), 3);
        assert_eq!(once(NotClone(2), 1).await.unwrap(), 3);
    });
}
