//! `Result<Option<T>, E>`: `Ok(None)` is not cached unless `cache_none = true`, whether
//! the signature spells `Result` or an alias.

#[path = "../support/mod.rs"]
mod support;

use std::sync::atomic::{AtomicU32, Ordering};

use resilient::resilient;
use support::{RepoError, RepoResult};

static LOADS: AtomicU32 = AtomicU32::new(0);

fn lookup(id: i64) -> Option<String> {
    LOADS.fetch_add(1, Ordering::Relaxed);
    (id > 0).then(|| format!("user {id}"))
}

#[resilient(cache = "user:<id>")]
pub async fn find(id: i64) -> Result<Option<String>, RepoError> {
    Ok(lookup(id))
}

#[resilient(cache = "user:<id>")]
pub async fn find_alias(id: i64) -> RepoResult<Option<String>> {
    Ok(lookup(id))
}

#[resilient(cache = "user:<id>", cache_none = true)]
pub async fn find_negative(id: i64) -> Result<::std::option::Option<String>, RepoError> {
    Ok(lookup(id))
}

#[resilient(cache = "user:<id>", cache_none = false)]
pub async fn find_explicit(id: i64) -> RepoResult<Option<String>> {
    Ok(lookup(id))
}

fn main() {
    support::run(async {
        let loads = || LOADS.load(Ordering::Relaxed);
        for _ in 0..2 {
            assert_eq!(find(1).await.unwrap().as_deref(), Some("user 1"));
        }
        assert_eq!(loads(), 1, "`Some` is cached");
        macro_rules! not_cached {
            ($f:ident) => {
                let before = loads();
                assert_eq!($f(-1).await.unwrap(), None);
                assert_eq!($f(-1).await.unwrap(), None);
                assert_eq!(
                    loads(),
                    before + 2,
                    "`None` is not cached by {}",
                    stringify!($f)
                );
            };
        }
        not_cached!(find);
        not_cached!(find_alias);
        not_cached!(find_explicit);
        let before = loads();
        assert_eq!(find_negative(-1).await.unwrap(), None);
        assert_eq!(find_negative(-1).await.unwrap(), None);
        assert_eq!(loads(), before + 1, "`cache_none = true` caches `None`");
    });
}
