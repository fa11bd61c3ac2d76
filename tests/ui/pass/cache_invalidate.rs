//! `invalidate` may be repeated, take a list, or both; every listed key is invalidated.

#[path = "../support/mod.rs"]
mod support;

use std::sync::atomic::{AtomicU32, Ordering};

use resilient::resilient;
use support::RepoResult;

static LOADS: AtomicU32 = AtomicU32::new(0);

fn load(v: i64) -> RepoResult<i64> {
    LOADS.fetch_add(1, Ordering::Relaxed);
    Ok(v)
}

#[resilient(cache = "user:<id>")]
pub async fn user(id: i64) -> RepoResult<i64> {
    load(id)
}

#[resilient(cache = "org:<id>")]
pub async fn org(id: i64) -> RepoResult<i64> {
    load(id)
}

#[resilient(cache = "team:<id>")]
pub async fn team(id: i64) -> RepoResult<i64> {
    load(id)
}

#[resilient(
    invalidate = "user:<user_id>",
    retry = 1,
    invalidate = ["org:<org_id>", "team:<team_id>"],
)]
pub async fn join(user_id: i64, org_id: i64, team_id: i64) -> RepoResult<()> {
    let _ = (user_id, org_id, team_id);
    Ok(())
}

#[resilient(invalidate = ["user:<user_id>"], invalidate = "org:<org_id>")]
pub async fn leave(user_id: i64, org_id: i64) -> RepoResult<()> {
    let _ = (user_id, org_id);
    Ok(())
}

fn main() {
    support::run(async {
        let loads = || LOADS.load(Ordering::Relaxed);
        let read_all = || async {
            user(1).await.unwrap();
            org(2).await.unwrap();
            team(3).await.unwrap();
        };
        read_all().await;
        read_all().await;
        assert_eq!(loads(), 3);
        join(1, 2, 3).await.unwrap();
        read_all().await;
        assert_eq!(loads(), 6);
        leave(1, 2).await.unwrap();
        read_all().await;
        assert_eq!(loads(), 8, "`team` was not invalidated");
    });
}
