//! `invalidate_prefix` drops every key that starts with the prefix's key.

#[path = "../support/mod.rs"]
mod support;

use std::sync::atomic::{AtomicU32, Ordering};

use resilient::resilient;
use support::RepoResult;

static LOADS: AtomicU32 = AtomicU32::new(0);

#[resilient(cache = "user:<id>:<org_id>")]
pub async fn membership(id: i64, org_id: i64) -> RepoResult<i64> {
    LOADS.fetch_add(1, Ordering::Relaxed);
    Ok(id + org_id)
}

#[resilient(invalidate_prefix = "user:<id>:")]
pub async fn delete_user(id: &i64) -> RepoResult<()> {
    let _ = id;
    Ok(())
}

#[resilient(invalidate_prefix = ["user:"], invalidate_prefix = "user:<id>")]
pub async fn purge(id: u32) -> RepoResult<()> {
    let _ = id;
    Ok(())
}

fn main() {
    support::run(async {
        let loads = || LOADS.load(Ordering::Relaxed);
        let read = || async {
            for (id, org) in [(1, 10), (1, 11), (2, 10)] {
                membership(id, org).await.unwrap();
            }
        };
        read().await;
        read().await;
        assert_eq!(loads(), 3);
        delete_user(&1).await.unwrap();
        read().await;
        assert_eq!(loads(), 5, "user 2 stays cached");
        purge(9).await.unwrap();
        read().await;
        assert_eq!(loads(), 8);
    });
}
