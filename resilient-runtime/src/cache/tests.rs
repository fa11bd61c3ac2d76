//! Cache behaviour on tokio's paused clock.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tokio::sync::oneshot;

use super::store::{Store, StoreConfig};
use super::*;
use crate::breaker::BreakerSpec;
use crate::policy::{Backoff, Policy};
use crate::{Classify, ErrorClass, Rejection, Runtime};

#[derive(Debug, Clone, PartialEq)]
enum E {
    Down,
    Missing,
    Rejected(Rejection),
}
impl Classify for E {
    fn class(&self) -> ErrorClass {
        match self {
            E::Down => ErrorClass::Unavailable,
            E::Missing => ErrorClass::Caller,
            E::Rejected(r) => r.class(),
        }
    }
}
impl From<Rejection> for E {
    fn from(r: Rejection) -> Self {
        E::Rejected(r)
    }
}

const MIN: Duration = Duration::from_secs(60);

fn plain(ttl: Duration, stale: Duration) -> Cache<String> {
    Cache::new("test", 1_000, ttl, stale)
}

fn user(id: i64) -> CacheKey {
    CacheKey::new().lit("user:").part(&id)
}

#[tokio::test(start_paused = true)]
async fn entries_expire_at_their_ttl() {
    let c = plain(30 * MIN, Duration::ZERO);
    c.insert(user(1), "ada".into());
    tokio::time::advance(30 * MIN - Duration::from_millis(1)).await;
    assert_eq!(c.get(&user(1)).as_deref(), Some("ada"));
    tokio::time::advance(Duration::from_millis(1)).await;
    assert_eq!(c.get(&user(1)), None);
    assert_eq!(c.stats().hits, 1);
    assert_eq!(c.stats().misses, 1);
}

#[tokio::test(start_paused = true)]
async fn stale_is_served_inside_the_window_and_refused_outside() {
    let c = plain(2 * MIN, 60 * MIN);
    c.insert(user(1), "old".into());
    tokio::time::advance(2 * MIN + 60 * MIN - Duration::from_secs(1)).await;
    let within: Result<String, E> = c.get_or_set(user(1), || async { Err(E::Down) }).await;
    assert_eq!(within.as_deref(), Ok("old"));
    assert_eq!(c.stats().stale_served, 1);
    tokio::time::advance(Duration::from_secs(1)).await;
    let outside: Result<String, E> = c.get_or_set(user(1), || async { Err(E::Down) }).await;
    assert_eq!(outside, Err(E::Down));
    assert_eq!(c.stats().load_failures, 2);
}

#[tokio::test(start_paused = true)]
async fn caller_errors_are_neither_cached_nor_replaced_by_stale_values() {
    let c = plain(MIN, 60 * MIN);
    c.insert(user(1), "old".into());
    tokio::time::advance(MIN).await;
    let out: Result<String, E> = c.get_or_set(user(1), || async { Err(E::Missing) }).await;
    assert_eq!(out, Err(E::Missing));
    let loads = Arc::new(AtomicU32::new(0));
    let again: Result<String, E> = c
        .get_or_set(user(1), || {
            loads.fetch_add(1, Ordering::Relaxed);
            async { Ok("new".to_string()) }
        })
        .await;
    assert_eq!(again.as_deref(), Ok("new"));
    assert_eq!(loads.load(Ordering::Relaxed), 1);
}

async fn stampede(c: &Cache<String>, callers: usize, fail: bool) -> (u32, Vec<Result<String, E>>) {
    let loads = Arc::new(AtomicU32::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..callers {
        let c = c.clone();
        let loads = loads.clone();
        tasks.spawn(async move {
            c.get_or_set(user(9), move || async move {
                loads.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
                if fail {
                    Err(E::Down)
                } else {
                    Ok("v".to_string())
                }
            })
            .await
        });
    }
    let mut out = Vec::new();
    while let Some(r) = tasks.join_next().await {
        out.push(r.expect("task"));
    }
    (loads.load(Ordering::Relaxed), out)
}

#[tokio::test(start_paused = true)]
async fn a_thousand_concurrent_misses_cause_one_load() {
    let c = plain(MIN, Duration::ZERO);
    let (loads, out) = stampede(&c, 1_000, false).await;
    assert_eq!(loads, 1);
    assert!(out.iter().all(|r| r.as_deref() == Ok("v")));
    assert_eq!(c.stats().loads, 1);
}

#[tokio::test(start_paused = true)]
async fn a_failed_load_is_shared_not_repeated() {
    let c = plain(MIN, Duration::ZERO);
    let (loads, out) = stampede(&c, 200, true).await;
    assert_eq!(
        loads, 1,
        "waiters must not become loaders one after another"
    );
    let leaders = out.iter().filter(|r| **r == Err(E::Down)).count();
    let shared = out
        .iter()
        .filter(|r| {
            matches!(
                r,
                Err(E::Rejected(Rejection::SharedLoadFailed {
                    class: ErrorClass::Unavailable,
                    ..
                }))
            )
        })
        .count();
    assert_eq!((leaders, shared), (1, 199));
}

#[tokio::test(start_paused = true)]
async fn a_failed_load_serves_every_waiter_the_stale_value() {
    let c = plain(MIN, 60 * MIN);
    c.insert(user(9), "old".into());
    tokio::time::advance(MIN).await;
    let (loads, out) = stampede(&c, 200, true).await;
    assert_eq!(loads, 1);
    assert!(out.iter().all(|r| r.as_deref() == Ok("old")));
    assert_eq!(c.stats().stale_served, 200);
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_loader_hands_the_load_to_a_waiter() {
    let c = plain(MIN, Duration::ZERO);
    let leader = {
        let c = c.clone();
        tokio::spawn(async move {
            c.get_or_set(user(3), || async {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Ok::<_, E>("never".to_string())
            })
            .await
        })
    };
    tokio::time::sleep(Duration::from_millis(1)).await;
    let waiter = {
        let c = c.clone();
        tokio::spawn(async move {
            c.get_or_set(user(3), || async { Ok::<_, E>("w".to_string()) })
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(1)).await;
    leader.abort();
    assert_eq!(waiter.await.expect("task").as_deref(), Ok("w"));
}

#[tokio::test(start_paused = true)]
async fn prefix_invalidation_hits_only_keys_under_the_prefix() {
    let c = plain(MIN, Duration::ZERO);
    let key = |id: i64, org: i64| CacheKey::new().lit("user:").part(&id).lit(":").part(&org);
    c.insert(key(1, 10), "a".into());
    c.insert(key(1, 11), "b".into());
    c.insert(key(2, 10), "c".into());
    c.invalidate_prefix(&CacheKey::new().lit("user:").part(&1_u8).lit(":"));
    assert_eq!(c.get(&key(1, 10)), None);
    assert_eq!(c.get(&key(1, 11)), None);
    assert_eq!(c.get(&key(2, 10)).as_deref(), Some("c"));
    // Values stored after the invalidation are served again.
    c.insert(key(1, 10), "a2".into());
    assert_eq!(c.get(&key(1, 10)).as_deref(), Some("a2"));
}

#[tokio::test(start_paused = true)]
async fn eviction_keeps_the_capacity() {
    let c: Cache<u32> = Cache::new("small", 10, MIN, Duration::ZERO);
    for i in 0..100 {
        c.insert(user(i), i as u32);
    }
    let stats = c.stats();
    assert!(stats.entries <= 10, "{stats:?}");
    assert_eq!(stats.evictions, 100 - stats.entries);
}

/// A `BuildHasher` whose every hash is the same: all keys collide in quick_cache.
#[derive(Clone, Default)]
struct Constant;
struct ConstantHasher;
impl std::hash::BuildHasher for Constant {
    type Hasher = ConstantHasher;
    fn build_hasher(&self) -> ConstantHasher {
        ConstantHasher
    }
}
impl std::hash::Hasher for ConstantHasher {
    fn finish(&self) -> u64 {
        7
    }
    fn write(&mut self, _: &[u8]) {}
}

#[test]
fn colliding_hashes_never_return_another_keys_value() {
    let cache: quick_cache::sync::Cache<CacheKey, u64, quick_cache::UnitWeighter, Constant> =
        quick_cache::sync::Cache::with(
            1_000,
            1_000,
            quick_cache::UnitWeighter,
            Constant,
            Default::default(),
        );
    for i in 0..500_i64 {
        cache.insert(user(i), i as u64);
    }
    for i in 0..500_i64 {
        if let Some(v) = cache.get(&user(i)) {
            assert_eq!(v, i as u64);
        }
    }
    assert_eq!(cache.get(&user(10_000)), None);
}

#[tokio::test(start_paused = true)]
async fn colliding_generation_slots_cost_a_miss_never_a_wrong_value() {
    let store: Store<i64> = Store::new(StoreConfig {
        name: "gens",
        ttl: MIN,
        stale: Duration::ZERO,
        capacity: 100_000,
        cache_negative: false,
    });
    let now = tokio::time::Instant::now();
    for i in 0..5_000 {
        store.insert(user(i), i, now);
    }
    // With 1,024 slots, invalidating 100 keys touches slots many other keys share.
    for i in 0..100 {
        store.invalidate(&user(i));
    }
    for i in 0..5_000 {
        match store.lookup(&user(i), now) {
            super::store::Lookup::Fresh(v) => assert_eq!(v, i),
            super::store::Lookup::Miss { .. } => {
                assert!(i >= 100 || store.lookup(&user(i), now).is_miss())
            }
        }
    }
    for i in 0..100 {
        assert!(store.lookup(&user(i), now).is_miss());
    }
}

// ---- through the runtime: the attribute's path, driven from closures ----

static FRAGILE: BreakerSpec = BreakerSpec::new("cache-fragile").failure_threshold(1);
static USER: KeyTemplate = KeyTemplate::new(
    "user:<id>:<org>",
    &[
        Fragment::Lit("user:"),
        Fragment::Hole("id"),
        Fragment::Lit(":"),
        Fragment::Hole("org"),
    ],
);
static USER_BY_STRUCT: KeyTemplate = KeyTemplate::new(
    "user:<u.id>:<u.org>",
    &[
        Fragment::Lit("user:"),
        Fragment::Hole("u.id"),
        Fragment::Lit(":"),
        Fragment::Hole("u.org"),
    ],
);
static USER_PREFIX: KeyTemplate = KeyTemplate::new(
    "user:<id>:",
    &[
        Fragment::Lit("user:"),
        Fragment::Hole("id"),
        Fragment::Lit(":"),
    ],
);
static FIND: Policy = Policy::new("find", module_path!())
    .retry(2)
    .backoff(Backoff::None)
    .breaker(&FRAGILE)
    .cache(&USER)
    .ttl_s(60)
    .stale_s(3600);
static UPDATE: Policy = Policy::new("update", module_path!())
    .no_breaker()
    .invalidate(&[&USER_BY_STRUCT]);
static DROP_USER: Policy = Policy::new("drop_user", module_path!())
    .breaker(&FRAGILE)
    .invalidate_prefix(&[&USER_PREFIX]);

fn rt() -> Runtime {
    Runtime::builder()
        .without_registry()
        .register(&FIND)
        .register(&UPDATE)
        .register(&DROP_USER)
        .build()
        .expect("valid")
}

fn find_key(id: i64, org: i64) -> CacheKey {
    CacheKey::new().lit("user:").part(&id).lit(":").part(&org)
}

async fn find(
    rt: &Runtime,
    loads: &AtomicU32,
    result: Result<&'static str, E>,
) -> Result<String, E> {
    rt.execute_cached(&FIND, find_key(1, 2), || {
        loads.fetch_add(1, Ordering::Relaxed);
        let r = result.clone().map(str::to_string);
        async move { r }
    })
    .await
}

#[tokio::test(start_paused = true)]
async fn a_fresh_hit_touches_neither_breaker_nor_database() {
    let rt = rt();
    let loads = AtomicU32::new(0);
    assert_eq!(find(&rt, &loads, Ok("ada")).await.as_deref(), Ok("ada"));
    rt.breaker("cache-fragile").expect("declared").force_open();
    assert_eq!(find(&rt, &loads, Ok("other")).await.as_deref(), Ok("ada"));
    assert_eq!(loads.load(Ordering::Relaxed), 1);
}

#[tokio::test(start_paused = true)]
async fn an_open_breaker_serves_stale_without_a_database_call() {
    let rt = rt();
    let loads = AtomicU32::new(0);
    assert_eq!(find(&rt, &loads, Ok("ada")).await.as_deref(), Ok("ada"));
    tokio::time::advance(Duration::from_secs(61)).await;
    rt.breaker("cache-fragile").expect("declared").force_open();
    assert_eq!(find(&rt, &loads, Ok("fresh")).await.as_deref(), Ok("ada"));
    assert_eq!(
        loads.load(Ordering::Relaxed),
        1,
        "the database was not tried"
    );
    let stats = rt.caches();
    assert_eq!(stats.len(), 1);
    assert_eq!(stats[0].stale_served, 1);
}

#[tokio::test(start_paused = true)]
async fn invalidation_from_another_method_with_other_parameter_types() {
    let rt = rt();
    let loads = AtomicU32::new(0);
    assert_eq!(find(&rt, &loads, Ok("v1")).await.as_deref(), Ok("v1"));
    // The writer receives a struct: `<u.id>` is an `&i32`, `<u.org>` a `u8`.
    let (id, org): (i32, u8) = (1, 2);
    let key = CacheKey::new().lit("user:").part(&&id).lit(":").part(&org);
    let out: Result<(), E> = rt
        .execute_invalidating(&UPDATE, &[key], &[], || async { Ok(()) })
        .await;
    assert_eq!(out, Ok(()));
    assert_eq!(find(&rt, &loads, Ok("v2")).await.as_deref(), Ok("v2"));
    assert_eq!(loads.load(Ordering::Relaxed), 2);
    // And by prefix.
    let out: Result<(), E> = rt
        .execute_invalidating(
            &DROP_USER,
            &[],
            &[CacheKey::new().lit("user:").part(&1_u64).lit(":")],
            || async { Ok(()) },
        )
        .await;
    assert_eq!(out, Ok(()));
    assert_eq!(find(&rt, &loads, Ok("v3")).await.as_deref(), Ok("v3"));
    assert_eq!(loads.load(Ordering::Relaxed), 3);
}

#[tokio::test(start_paused = true)]
async fn a_failed_write_that_may_have_applied_still_invalidates() {
    let rt = rt();
    let loads = AtomicU32::new(0);
    assert_eq!(find(&rt, &loads, Ok("v1")).await.as_deref(), Ok("v1"));
    let out: Result<(), E> = rt
        .execute_invalidating(&UPDATE, &[find_key(1, 2)], &[], || async {
            Err(E::Rejected(Rejection::Timeout {
                after: Duration::from_secs(1),
            }))
        })
        .await;
    assert!(out.is_err());
    assert_eq!(find(&rt, &loads, Ok("v2")).await.as_deref(), Ok("v2"));
    // A caller error means nothing was written: the entry stays.
    let out: Result<(), E> = rt
        .execute_invalidating(&UPDATE, &[find_key(1, 2)], &[], || async {
            Err(E::Missing)
        })
        .await;
    assert_eq!(out, Err(E::Missing));
    assert_eq!(find(&rt, &loads, Ok("v3")).await.as_deref(), Ok("v2"));
}

#[tokio::test(start_paused = true)]
async fn a_load_begun_before_an_invalidation_never_stores_its_result() {
    let rt = rt();
    let (release, released) = oneshot::channel::<()>();
    let (started_tx, started) = oneshot::channel::<()>();
    // Step 1: a reader starts loading the old value and blocks inside the load.
    let reader = {
        let rt = rt.clone();
        tokio::spawn(async move {
            let mut gates = Some((started_tx, released));
            rt.execute_cached(&FIND, find_key(1, 2), move || {
                let (started_tx, released) = gates.take().expect("one attempt");
                async move {
                    let _ = started_tx.send(());
                    let _ = released.await;
                    Ok::<_, E>("old".to_string())
                }
            })
            .await
        })
    };
    started.await.expect("load started");
    // Step 2: a write commits the new value and invalidates the key.
    let out: Result<(), E> = rt
        .execute_invalidating(&UPDATE, &[find_key(1, 2)], &[], || async { Ok(()) })
        .await;
    assert_eq!(out, Ok(()));
    // Step 3: the reader's load finishes with the value it read before the write.
    release.send(()).expect("reader waiting");
    assert_eq!(reader.await.expect("task").as_deref(), Ok("old"));
    // Step 4: the next read must not see it.
    let loads = AtomicU32::new(0);
    assert_eq!(find(&rt, &loads, Ok("new")).await.as_deref(), Ok("new"));
    assert_eq!(loads.load(Ordering::Relaxed), 1);
}

static TYPO: KeyTemplate =
    KeyTemplate::new("usr:<id>", &[Fragment::Lit("usr:"), Fragment::Hole("id")]);
static BAD_WRITER: Policy = Policy::new("bad_writer", module_path!()).invalidate(&[&TYPO]);

#[test]
fn an_invalidation_matching_no_cached_key_fails_startup() {
    let err = Runtime::builder()
        .without_registry()
        .register(&FIND)
        .register(&BAD_WRITER)
        .build()
        .expect_err("typo");
    let text = err.to_string();
    assert!(text.contains("bad_writer"), "{text}");
    assert!(text.contains("usr:<id>"), "{text}");
}
