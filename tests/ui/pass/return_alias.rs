//! The return type may be an alias of `Result`, generic or not, or a fully qualified path.

#[path = "../support/mod.rs"]
mod support;

use resilient::resilient;
use support::{RepoError, RepoResult};

pub type UserResult = Result<u32, RepoError>;

#[resilient(retry = 1)]
pub async fn generic_alias() -> RepoResult<u32> {
    Ok(1)
}

#[resilient(retry = 1)]
pub async fn plain_alias() -> UserResult {
    Ok(2)
}

#[resilient]
pub async fn qualified() -> ::std::result::Result<u32, support::RepoError> {
    Ok(3)
}

/// `resilient::Rejection` itself is a valid error type.
#[resilient]
pub async fn rejection_only() -> Result<(), resilient::Rejection> {
    Ok(())
}

fn main() {
    support::run(async {
        assert_eq!(generic_alias().await.unwrap(), 1);
        assert_eq!(plain_alias().await.unwrap(), 2);
        assert_eq!(qualified().await.unwrap(), 3);
        rejection_only().await.unwrap();
    });
}
