//! A key with two placeholders and literal text between them. The writer's parameters
//! have other types than the reader's, and still make the same key.

#[path = "../support/mod.rs"]
mod support;

use std::sync::atomic::{AtomicU32, Ordering};

use resilient::resilient;
use support::RepoResult;

static LOADS: AtomicU32 = AtomicU32::new(0);

#[resilient(cache = "member:<id>:<org_id>", ttl_s = 120, stale_s = 3600)]
pub async fn role(id: &i64, org_id: &str) -> RepoResult<String> {
    LOADS.fetch_add(1, Ordering::Relaxed);
    Ok(format!("{org_id}/{id}"))
}

#[resilient(invalidate = "member:<user>:<org>")]
pub async fn set_role(user: i32, org: String, role: String) -> RepoResult<()> {
    let _ = (user, org, role);
    Ok(())
}

fn main() {
    support::run(async {
        let loads = || LOADS.load(Ordering::Relaxed);
        assert_eq!(role(&7, "acme").await.unwrap(), "acme/7");
        assert_eq!(role(&7, "acme").await.unwrap(), "acme/7");
        assert_eq!(role(&7, "other").await.unwrap(), "other/7");
        assert_eq!(loads(), 2);
        set_role(7, "acme".to_owned(), "admin".to_owned())
            .await
            .unwrap();
        role(&7, "acme").await.unwrap();
        role(&7, "other").await.unwrap();
        assert_eq!(loads(), 3, "only the written key was invalidated");
    });
}
