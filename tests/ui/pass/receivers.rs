//! Every receiver: `&self`, `&mut self` (mutated across attempts), `self`, `mut self` and
//! `self: Arc<Self>`. Receivers are borrowed by each attempt, never cloned.

#[path = "../support/mod.rs"]
mod support;

use std::sync::Arc;

use resilient::resilient;
use support::{RepoError, RepoResult};

pub struct Repo {
    calls: u32,
}

impl Repo {
    #[resilient(retry = 2, delay_ms = 1)]
    pub async fn shared(&self, id: u32) -> RepoResult<u32> {
        Ok(self.calls + id)
    }

    /// Fails twice, then succeeds: the state survives between attempts.
    #[resilient(retry = 2, delay_ms = 1)]
    pub async fn exclusive(&mut self) -> RepoResult<u32> {
        self.calls += 1;
        if self.calls < 3 {
            return Err(RepoError::Transient);
        }
        Ok(self.calls)
    }

    #[resilient(retry = 1)]
    pub async fn owned(self) -> RepoResult<u32> {
        Ok(self.calls)
    }

    #[resilient]
    pub async fn owned_mut(mut self) -> RepoResult<u32> {
        self.calls += 10;
        Ok(self.calls)
    }

    #[resilient(retry = 1)]
    pub async fn arc(self: Arc<Self>) -> RepoResult<usize> {
        // `self` is borrowed by the attempt; take an owned handle explicitly.
        let this = Arc::clone(&self);
        Ok(Arc::strong_count(&this))
    }
}

fn main() {
    support::run(async {
        let mut repo = Repo { calls: 0 };
        assert_eq!(repo.exclusive().await.unwrap(), 3);
        assert_eq!(repo.shared(1).await.unwrap(), 4);
        assert_eq!(Repo { calls: 5 }.owned().await.unwrap(), 5);
        assert_eq!(Repo { calls: 5 }.owned_mut().await.unwrap(), 15);
        assert_eq!(Arc::new(Repo { calls: 0 }).arc().await.unwrap(), 2);
    });
}
