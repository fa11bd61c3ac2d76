//! Behaviour of `#[resilient(cache = ..)]` and `invalidate`: hits, expiry, stale values
//! behind an open breaker, invalidation across parameter types, single flight and
//! negative results, on a paused clock.
//!
//! Every test builds its own runtime and runs inside `Runtime::scope`, so caches and the
//! breaker never leak between tests. Every `invalidate` template here matches a cached
//! template of this binary: the runtime refuses to start otherwise.
#![warn(clippy::pedantic)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use resilient::{Classify, ErrorClass, Rejection, Runtime, resilient};

// ===== a fake repository =====

#[derive(Debug, Clone, PartialEq, Eq)]
enum RepoError {
    Unavailable,
    NotFound,
    Resilience(Rejection),
}

impl From<Rejection> for RepoError {
    fn from(r: Rejection) -> Self {
        RepoError::Resilience(r)
    }
}

impl Classify for RepoError {
    fn class(&self) -> ErrorClass {
        match self {
            RepoError::Unavailable => ErrorClass::Unavailable,
            RepoError::NotFound => ErrorClass::Caller,
            RepoError::Resilience(r) => r.class(),
        }
    }
}

/// A table of user names that counts every read of the "database".
#[derive(Default)]
struct Repo {
    loads: AtomicU32,
    down: AtomicBool,
    names: Mutex<HashMap<i64, String>>,
}

impl Repo {
    fn with(users: &[(i64, &str)]) -> Self {
        let repo = Repo::default();
        for (id, name) in users {
            repo.set(*id, name);
        }
        repo
    }

    fn loads(&self) -> u32 {
        self.loads.load(Ordering::SeqCst)
    }

    fn set(&self, id: i64, name: &str) {
        self.names.lock().unwrap().insert(id, name.to_owned());
    }

    /// One read of the database.
    fn get(&self, id: i64) -> Result<Option<String>, RepoError> {
        self.loads.fetch_add(1, Ordering::SeqCst);
        if self.down.load(Ordering::SeqCst) {
            return Err(RepoError::Unavailable);
        }
        Ok(self.names.lock().unwrap().get(&id).cloned())
    }
}

#[resilient]
impl Repo {
    /// The seed guide's user profile cache.
    #[resilient(cache = "user:<id>", ttl_s = 1800, stale_s = 86400)]
    async fn find(&self, id: i64) -> Result<String, RepoError> {
        self.get(id)?.ok_or(RepoError::NotFound)
    }

    /// The runtime's default TTL (60 s), no stale window.
    #[resilient(cache = "count:<id>")]
    async fn count(&self, id: i64) -> Result<u32, RepoError> {
        self.get(id)?;
        Ok(self.loads())
    }

    /// Slow enough for callers to pile up behind the first one.
    #[resilient(cache = "slow:<id>", ttl_s = 60)]
    async fn find_slow(&self, id: i64) -> Result<String, RepoError> {
        tokio::time::sleep(Duration::from_millis(50)).await;
        self.get(id)?.ok_or(RepoError::NotFound)
    }

    #[resilient(cache = "member:<id>:<org>", ttl_s = 300, stale_s = 7200)]
    async fn membership(&self, id: &i64, org: &str) -> Result<String, RepoError> {
        let name = self.get(*id)?.ok_or(RepoError::NotFound)?;
        Ok(format!("{name}@{org}"))
    }

    #[resilient(cache = "maybe:<id>")]
    async fn lookup(&self, id: i64) -> Result<Option<String>, RepoError> {
        self.get(id)
    }

    #[resilient(cache = "maybe_negative:<id>", cache_none = true)]
    async fn lookup_negative(&self, id: i64) -> Result<Option<String>, RepoError> {
        self.get(id)
    }

    /// The reader takes `id: i64`; the writer `&i64`. Same key.
    #[resilient(policy = "write", invalidate = "user:<id>")]
    async fn rename(&self, id: &i64, name: String) -> Result<(), RepoError> {
        self.set(*id, &name);
        Ok(())
    }

    /// The reader takes `&i64` and `&str`; the writer `i64` and `String`.
    #[resilient(invalidate = ["member:<user_id>:<org>", "user:<user_id>"])]
    async fn join(&self, user_id: i64, org: String) -> Result<(), RepoError> {
        let _ = (user_id, org);
        Ok(())
    }

    /// Every membership of one user, whatever the organisation.
    #[resilient(invalidate_prefix = "member:<id>:")]
    async fn leave_all(&self, id: u8) -> Result<(), RepoError> {
        let _ = id;
        Ok(())
    }
}

fn runtime() -> Runtime {
    Runtime::builder().build().expect("valid runtime")
}

// ===== hits and expiry =====

#[tokio::test(start_paused = true)]
async fn a_fresh_hit_does_not_run_the_body() {
    let rt = runtime();
    let repo = Repo::with(&[(1, "ada")]);
    rt.scope(async {
        assert_eq!(repo.find(1).await.as_deref(), Ok("ada"));
        repo.set(1, "changed behind the cache's back");
        assert_eq!(repo.find(1).await.as_deref(), Ok("ada"));
        assert_eq!(repo.loads(), 1);
        // Another key is another entry.
        assert_eq!(repo.find(2).await, Err(RepoError::NotFound));
        assert_eq!(repo.loads(), 2);
    })
    .await;
    let stats = rt.caches();
    let find = stats.iter().find(|c| c.name == "Repo::find").unwrap();
    assert_eq!((find.hits, find.loads), (1, 2));
}

#[tokio::test(start_paused = true)]
async fn entries_expire_after_ttl_s() {
    let rt = runtime();
    let repo = Repo::with(&[(1, "ada")]);
    rt.scope(async {
        repo.find(1).await.unwrap();
        repo.set(1, "grace");
        tokio::time::advance(Duration::from_secs(1800) - Duration::from_millis(1)).await;
        assert_eq!(repo.find(1).await.as_deref(), Ok("ada"));
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(repo.find(1).await.as_deref(), Ok("grace"));
        assert_eq!(repo.loads(), 2);
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn without_ttl_s_the_runtime_default_applies() {
    let rt = runtime();
    let repo = Repo::default();
    rt.scope(async {
        assert_eq!(repo.count(1).await, Ok(1));
        tokio::time::advance(Duration::from_secs(59)).await;
        assert_eq!(repo.count(1).await, Ok(1));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(repo.count(1).await, Ok(2));
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn caller_errors_are_not_cached() {
    let rt = runtime();
    let repo = Repo::default();
    rt.scope(async {
        assert_eq!(repo.find(1).await, Err(RepoError::NotFound));
        repo.set(1, "ada");
        assert_eq!(repo.find(1).await.as_deref(), Ok("ada"));
        assert_eq!(repo.loads(), 2);
    })
    .await;
}

// ===== stale values =====

#[tokio::test(start_paused = true)]
async fn an_open_breaker_serves_the_stale_value_without_running_the_body() {
    let rt = runtime();
    let repo = Repo::with(&[(1, "ada")]);
    rt.scope(async {
        repo.find(1).await.unwrap();
        tokio::time::advance(Duration::from_secs(1800 + 3600)).await;
        rt.breaker("database").expect("built in").force_open();
        assert_eq!(repo.find(1).await.as_deref(), Ok("ada"));
        assert_eq!(repo.loads(), 1, "the database was not tried");
    })
    .await;
    let stats = rt.caches();
    let find = stats.iter().find(|c| c.name == "Repo::find").unwrap();
    assert_eq!(find.stale_served, 1);
}

#[tokio::test(start_paused = true)]
async fn a_failed_load_serves_stale_only_within_stale_s() {
    let rt = runtime();
    let repo = Repo::with(&[(1, "ada")]);
    rt.scope(async {
        repo.find(1).await.unwrap();
        repo.down.store(true, Ordering::SeqCst);
        tokio::time::advance(Duration::from_secs(1800 + 86400 - 1)).await;
        assert_eq!(repo.find(1).await.as_deref(), Ok("ada"));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(repo.find(1).await, Err(RepoError::Unavailable));
    })
    .await;
}

// ===== invalidation =====

#[tokio::test(start_paused = true)]
async fn a_write_invalidates_the_key_whatever_its_parameter_types() {
    let rt = runtime();
    let repo = Repo::with(&[(1, "ada"), (2, "alan")]);
    rt.scope(async {
        repo.find(1).await.unwrap();
        repo.find(2).await.unwrap();
        // `rename` takes `&i64` where `find` takes `i64`.
        repo.rename(&1, "grace".to_owned()).await.unwrap();
        assert_eq!(repo.find(1).await.as_deref(), Ok("grace"));
        assert_eq!(repo.find(2).await.as_deref(), Ok("alan"), "still cached");
        assert_eq!(repo.loads(), 3);

        // `membership` takes `&i64, &str` where `join` takes `i64, String`.
        assert_eq!(
            repo.membership(&1, "acme").await.as_deref(),
            Ok("grace@acme")
        );
        repo.set(1, "ada");
        assert_eq!(
            repo.membership(&1, "acme").await.as_deref(),
            Ok("grace@acme")
        );
        repo.join(1, "acme".to_owned()).await.unwrap();
        assert_eq!(repo.membership(&1, "acme").await.as_deref(), Ok("ada@acme"));
        // The list form invalidated `user:<id>` as well.
        assert_eq!(repo.find(1).await.as_deref(), Ok("ada"));
        assert_eq!(repo.loads(), 6);
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_prefix_invalidates_every_key_under_it() {
    let rt = runtime();
    let repo = Repo::with(&[(1, "ada"), (2, "alan")]);
    let read = || async {
        for (id, org) in [(1, "acme"), (1, "initech"), (2, "acme")] {
            repo.membership(&id, org).await.unwrap();
        }
    };
    rt.scope(async {
        read().await;
        read().await;
        assert_eq!(repo.loads(), 3);
        // `leave_all` takes a `u8` where `membership` takes `&i64`.
        repo.leave_all(1).await.unwrap();
        read().await;
        assert_eq!(repo.loads(), 5, "user 2's membership stays cached");
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_failed_write_that_applied_nothing_keeps_the_entry() {
    let rt = runtime();
    let repo = Repo::with(&[(1, "ada")]);
    rt.scope(async {
        repo.find(1).await.unwrap();
        rt.breaker("database").expect("built in").force_open();
        let out = repo.rename(&1, "grace".to_owned()).await;
        assert!(
            matches!(
                out,
                Err(RepoError::Resilience(Rejection::BreakerOpen { .. }))
            ),
            "{out:?}"
        );
        assert_eq!(repo.find(1).await.as_deref(), Ok("ada"));
        assert_eq!(repo.loads(), 1);
    })
    .await;
}

// ===== single flight =====

#[tokio::test(start_paused = true)]
async fn a_thousand_concurrent_calls_on_one_key_run_the_body_once() {
    let rt = runtime();
    let repo = Arc::new(Repo::with(&[(7, "ada")]));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..1_000 {
        let (rt, repo) = (rt.clone(), repo.clone());
        // Task-locals do not follow spawned tasks: each one enters the scope itself.
        tasks.spawn(async move { rt.scope(repo.find_slow(7)).await });
    }
    let mut answered = 0;
    while let Some(out) = tasks.join_next().await {
        assert_eq!(out.expect("task").as_deref(), Ok("ada"));
        answered += 1;
    }
    assert_eq!(answered, 1_000);
    assert_eq!(repo.loads(), 1);
}

// ===== negative results =====

#[tokio::test(start_paused = true)]
async fn ok_none_is_not_cached_by_default() {
    let rt = runtime();
    let repo = Repo::default();
    rt.scope(async {
        assert_eq!(repo.lookup(1).await, Ok(None));
        assert_eq!(repo.lookup(1).await, Ok(None));
        assert_eq!(repo.loads(), 2);
        repo.set(1, "ada");
        assert_eq!(repo.lookup(1).await.unwrap().as_deref(), Some("ada"));
        assert_eq!(repo.lookup(1).await.unwrap().as_deref(), Some("ada"));
        assert_eq!(repo.loads(), 3, "`Some` is cached");
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn cache_none_caches_ok_none() {
    let rt = runtime();
    let repo = Repo::default();
    rt.scope(async {
        assert_eq!(repo.lookup_negative(1).await, Ok(None));
        repo.set(1, "ada");
        assert_eq!(repo.lookup_negative(1).await, Ok(None));
        assert_eq!(repo.loads(), 1);
    })
    .await;
}

// ===== registration =====

#[test]
fn the_policies_carry_the_cache_settings() {
    let rt = runtime();
    let op = |name: &str| {
        rt.operations()
            .find(|p| p.name() == name)
            .unwrap_or_else(|| panic!("{name} registered"))
    };
    let find = op("Repo::find").cache_spec().expect("caches");
    assert_eq!(find.template.text(), "user:<id>");
    assert_eq!(find.ttl, Some(Duration::from_secs(1800)));
    assert_eq!(find.stale, Duration::from_secs(86400));
    assert!(!find.cache_none);
    let count = op("Repo::count").cache_spec().expect("caches");
    assert_eq!((count.ttl, count.capacity), (None, None));
    assert!(op("Repo::lookup_negative").cache_spec().unwrap().cache_none);
    let join = op("Repo::join");
    let texts: Vec<&str> = join.invalidates().iter().map(|t| t.text()).collect();
    assert_eq!(texts, ["member:<user_id>:<org>", "user:<user_id>"]);
    let prefixes: Vec<&str> = op("Repo::leave_all")
        .invalidates_prefixes()
        .iter()
        .map(|t| t.text())
        .collect();
    assert_eq!(prefixes, ["member:<id>:"]);
}
