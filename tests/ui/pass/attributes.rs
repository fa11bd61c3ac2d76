//! Doc comments, outer attributes and inner attributes survive the rewrite.
#![deny(missing_docs, unused_mut, unused_variables)]

#[path = "../support/mod.rs"]
mod support;

use resilient::resilient;
use support::RepoResult;

/// Documented.
///
/// Still documented after expansion: `missing_docs` is denied above.
#[resilient(retry = 1)]
#[must_use = "the result says whether it worked"]
#[inline]
#[cfg_attr(all(), allow(clippy::unused_async))]
pub async fn documented(id: u32) -> RepoResult<u32> {
    #![allow(clippy::needless_return)]
    return Ok(id);
}

/// `#[track_caller]` is forwarded as written. rustc warns that it has no effect on an
/// `async fn` (rust#110011); the attribute does not hide that.
#[resilient]
#[allow(ungated_async_fn_track_caller)]
#[track_caller]
pub async fn tracked() -> RepoResult<()> {
    Ok(())
}

/// A `#[cfg]`-ed out function is expanded and then removed.
#[resilient]
#[cfg(any())]
pub async fn gone() -> RepoResult<()> {
    Ok(())
}

fn main() {
    support::run(async {
        assert_eq!(documented(1).await.unwrap(), 1);
        tracked().await.unwrap();
    });
}
