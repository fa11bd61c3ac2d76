//! A write that receives a struct names its fields in the key: `<patch.user_id>`, nested
//! fields and tuple fields.

#[path = "../support/mod.rs"]
mod support;

use std::sync::atomic::{AtomicU32, Ordering};

use resilient::resilient;
use support::RepoResult;

static LOADS: AtomicU32 = AtomicU32::new(0);

#[derive(Clone)]
pub struct Patch {
    pub user_id: i64,
    pub name: String,
}

pub struct Move {
    pub patch: Patch,
    pub to: (u8, String),
}

pub struct Users;

#[resilient]
impl Users {
    #[resilient(cache = "user:<id>")]
    pub async fn find(&self, id: i64) -> RepoResult<String> {
        LOADS.fetch_add(1, Ordering::Relaxed);
        Ok(format!("user {id}"))
    }

    #[resilient(cache = "org:<org>:<slug>")]
    pub async fn org(&self, org: u8, slug: &str) -> RepoResult<String> {
        LOADS.fetch_add(1, Ordering::Relaxed);
        Ok(format!("{org}/{slug}"))
    }

    /// Retried: the body gets a fresh copy of `patch`, the key was built before.
    #[resilient(policy = "write", invalidate = "user:<patch.user_id>")]
    pub async fn rename(&self, patch: Patch) -> RepoResult<String> {
        Ok(patch.name)
    }

    /// A reference, a nested field and tuple fields.
    #[resilient(invalidate = ["user:<m.patch.user_id>", "org:<m.to.0>:<m.to.1>"])]
    pub async fn relocate(&self, m: &Move) -> RepoResult<()> {
        let _ = &m.patch.name;
        Ok(())
    }
}

fn main() {
    support::run(async {
        let loads = || LOADS.load(Ordering::Relaxed);
        Users.find(1).await.unwrap();
        Users.find(1).await.unwrap();
        assert_eq!(loads(), 1);
        let patch = Patch {
            user_id: 1,
            name: "ada".to_owned(),
        };
        assert_eq!(Users.rename(patch.clone()).await.unwrap(), "ada");
        Users.find(1).await.unwrap();
        assert_eq!(loads(), 2);

        Users.org(3, "eng").await.unwrap();
        let m = Move {
            patch,
            to: (3, "eng".to_owned()),
        };
        Users.relocate(&m).await.unwrap();
        Users.find(1).await.unwrap();
        Users.org(3, "eng").await.unwrap();
        assert_eq!(loads(), 5);
    });
}
