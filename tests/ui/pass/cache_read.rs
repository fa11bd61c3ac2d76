//! A cached read keyed by one parameter: a hit does not run the body again, with or
//! without retries, on methods and free functions, with a fallback.

#[path = "../support/mod.rs"]
mod support;

use std::sync::atomic::{AtomicU32, Ordering};

use resilient::resilient;
use support::{RepoError, RepoResult};

static LOADS: AtomicU32 = AtomicU32::new(0);

#[derive(Debug, Clone, PartialEq)]
pub struct User {
    pub id: i64,
    pub name: String,
}

pub struct Users;

#[resilient]
impl Users {
    #[resilient(cache = "user:<id>", ttl_s = 1800, stale_s = 86400)]
    pub async fn find(&self, id: i64) -> Result<User, RepoError> {
        LOADS.fetch_add(1, Ordering::Relaxed);
        Ok(User {
            id,
            name: format!("user {id}"),
        })
    }

    /// Retries, a fallback and an owned argument: the key is built before the body moves it.
    #[resilient(retry = 2, delay_ms = 1, fallback = Self::offline, cache = "name:<name>")]
    pub async fn by_name(&self, name: String) -> RepoResult<String> {
        LOADS.fetch_add(1, Ordering::Relaxed);
        if name.is_empty() {
            return Err(RepoError::Transient);
        }
        Ok(name)
    }

    async fn offline(&self, _name: String) -> RepoResult<String> {
        Ok("offline".to_owned())
    }
}

/// A template without placeholders, on a function without parameters.
#[resilient(cache = "all-users", cache_capacity = 1)]
pub async fn count() -> RepoResult<u64> {
    LOADS.fetch_add(1, Ordering::Relaxed);
    Ok(2)
}

/// No retry: the body moves the argument the key was built from.
#[resilient(cache = "echo:<name>")]
pub async fn echo(name: String) -> RepoResult<String> {
    LOADS.fetch_add(1, Ordering::Relaxed);
    Ok(name)
}

/// Generic key and value types.
#[resilient(cache = "generic:<key>", ttl_s = 5)]
pub async fn generic<K, V>(key: K, value: V) -> RepoResult<V>
where
    K: resilient::cache::KeyPart + Send,
    V: Clone + Send + Sync + 'static,
{
    let _ = key;
    LOADS.fetch_add(1, Ordering::Relaxed);
    Ok(value)
}

fn main() {
    support::run(async {
        let loads = || LOADS.load(Ordering::Relaxed);
        assert_eq!(Users.find(1).await.unwrap().name, "user 1");
        assert_eq!(Users.find(1).await.unwrap().name, "user 1");
        assert_eq!(loads(), 1);
        assert_eq!(Users.find(2).await.unwrap().id, 2);
        assert_eq!(loads(), 2);

        assert_eq!(Users.by_name("ada".to_owned()).await.unwrap(), "ada");
        assert_eq!(Users.by_name("ada".to_owned()).await.unwrap(), "ada");
        assert_eq!(loads(), 3);
        // Three failed attempts, then the fallback; its answer is not cached.
        assert_eq!(Users.by_name(String::new()).await.unwrap(), "offline");
        assert_eq!(loads(), 6);
        assert_eq!(Users.by_name(String::new()).await.unwrap(), "offline");
        assert_eq!(loads(), 9);

        assert_eq!(count().await.unwrap(), 2);
        assert_eq!(count().await.unwrap(), 2);
        assert_eq!(loads(), 10);

        assert_eq!(echo("a".to_owned()).await.unwrap(), "a");
        assert_eq!(echo("a".to_owned()).await.unwrap(), "a");
        assert_eq!(loads(), 11);

        assert_eq!(generic(1_u8, 'x').await.unwrap(), 'x');
        assert_eq!(generic(1_i64, 'y').await.unwrap(), 'x', "the same key");
        assert_eq!(loads(), 12);
    });
}
