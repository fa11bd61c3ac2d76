//! The expansion names nothing that user code can shadow or see: a local `mod core`, user
//! bindings named like the generated ones, and strict lints in the user crate.
#![deny(unused_qualifications, unused_mut, unused_variables, unreachable_code)]
#![deny(clippy::all, clippy::pedantic)]
#![allow(clippy::unused_async)]

#[path = "../support/mod.rs"]
mod support;

use resilient::resilient;
use support::RepoResult;

#[allow(dead_code)]
mod core {}
#[allow(dead_code)]
mod std {}
#[allow(dead_code)]
struct Result;
#[allow(dead_code)]
struct Ok;

#[resilient(retry = 2, fallback = fallback)]
pub async fn shadowing(__resilient_call: u32, __resilient_result: String) -> RepoResult<usize> {
    let __resilient_rt = __resilient_result.len();
    ::core::result::Result::Ok(__resilient_call as usize + __resilient_rt)
}

async fn fallback(_: u32, _: String) -> RepoResult<usize> {
    ::core::result::Result::Ok(0)
}

#[resilient(retry = 1, cache = "n:<__resilient_load>:<result>", ttl_s = 5)]
pub async fn cached(__resilient_load: u32, result: u32) -> RepoResult<u32> {
    ::core::result::Result::Ok(__resilient_load + result)
}

#[resilient(
    invalidate = "n:<__resilient_invalidate>:<load>",
    invalidate_prefix = "n:"
)]
pub async fn invalidating(__resilient_invalidate: u32, load: u32) -> RepoResult<u32> {
    ::core::result::Result::Ok(__resilient_invalidate + load)
}

/// A future from an annotated method is `Send` when its captures are.
fn assert_send<T: Send>(_: T) {}

fn main() {
    assert_send(shadowing(1, String::new()));
    assert_send(cached(1, 2));
    assert_send(invalidating(1, 2));
    support::run(async {
        assert_eq!(shadowing(1, "ab".to_owned()).await.unwrap(), 3);
        assert_eq!(cached(1, 2).await.unwrap(), 3);
        assert_eq!(invalidating(1, 2).await.unwrap(), 3);
    });
}
