//! `#[resilient]` on an `impl` block names each annotated method `Type::method`, for
//! inherent impls, generic impls and trait impls, whichever way the attribute is spelled.

#[path = "../support/mod.rs"]
mod support;

use resilient::resilient;
use support::RepoResult;

pub struct UserRepo;

#[resilient]
impl UserRepo {
    #[resilient(retry = 2)]
    pub async fn find_user(&self, id: i64) -> RepoResult<i64> {
        Ok(id)
    }

    #[resilient]
    pub async fn count(&self) -> RepoResult<u64> {
        Ok(0)
    }

    #[resilient::resilient(retry = 1)]
    pub async fn qualified(&self) -> RepoResult<()> {
        Ok(())
    }

    #[resilient(name = "users.custom")]
    pub async fn renamed(&self) -> RepoResult<()> {
        Ok(())
    }

    /// Not annotated: left alone.
    pub fn plain(&self) -> u8 {
        1
    }
}

pub struct Generic<T>(T);

#[resilient]
impl<T: Sync> Generic<T> {
    #[resilient]
    pub async fn get(&self) -> RepoResult<()> {
        Ok(())
    }
}

#[allow(async_fn_in_trait)]
pub trait Users {
    async fn load(&self, id: i64) -> RepoResult<i64>;
}

#[resilient]
impl Users for UserRepo {
    #[resilient(policy = "read")]
    async fn load(&self, id: i64) -> RepoResult<i64> {
        Ok(id + 1)
    }
}

/// Without `#[resilient]` on the impl, the plain method name is used.
pub struct Plain;

impl Plain {
    #[resilient]
    pub async fn plain_method(&self) -> RepoResult<()> {
        Ok(())
    }
}

fn main() {
    support::run(async {
        let repo = UserRepo;
        assert_eq!(repo.find_user(1).await.unwrap(), 1);
        assert_eq!(repo.count().await.unwrap(), 0);
        repo.qualified().await.unwrap();
        repo.renamed().await.unwrap();
        assert_eq!(repo.load(1).await.unwrap(), 2);
        assert_eq!(repo.plain(), 1);
        Generic(1).get().await.unwrap();
        Plain.plain_method().await.unwrap();
    });
    let names = support::operation_names();
    for name in [
        "UserRepo::find_user",
        "UserRepo::count",
        "UserRepo::qualified",
        "users.custom",
        "Generic::get",
        "UserRepo::load",
        "plain_method",
    ] {
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }
}
