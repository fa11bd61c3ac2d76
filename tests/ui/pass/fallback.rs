//! A fallback gets the same arguments (the receiver first) once the policy gives up.

#[path = "../support/mod.rs"]
mod support;

use resilient::resilient;
use support::{RepoError, RepoResult};

pub struct Repo;

impl Repo {
    #[resilient(retry = 1, delay_ms = 1, fallback = Self::cached)]
    pub async fn find(&self, id: u32, (a, _): (u32, u32), name: String) -> RepoResult<String> {
        let _ = (id, a, name);
        Err(RepoError::Transient)
    }

    async fn cached(&self, id: u32, (a, _): (u32, u32), name: String) -> RepoResult<String> {
        Ok(format!("cached {id} {a} {name}"))
    }

    #[resilient(fallback = Repo::never)]
    pub async fn caller(&mut self) -> RepoResult<String> {
        Err(RepoError::Caller)
    }

    async fn never(&mut self) -> RepoResult<String> {
        unreachable!("a caller error is not replaced by the fallback")
    }
}

#[resilient(fallback = default_count)]
pub async fn count(table: &str) -> RepoResult<u64> {
    let _ = table;
    Err(RepoError::Transient)
}

async fn default_count(_table: &str) -> RepoResult<u64> {
    Ok(0)
}

fn main() {
    support::run(async {
        let mut repo = Repo;
        assert_eq!(
            repo.find(1, (2, 3), "n".into()).await.unwrap(),
            "cached 1 2 n"
        );
        assert!(matches!(repo.caller().await, Err(RepoError::Caller)));
        assert_eq!(count("users").await.unwrap(), 0);
    });
}
