//! The cache without the attribute: the seed's `getOrSet`, `invalidate`,
//! `invalidateByPrefix` and `stats`, with the same stale-if-error and single flight.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::store::{Join, Lookup, Store, StoreConfig};
use super::{CacheKey, CacheStats, stale_allowed};
use crate::{Classify, Rejection};

/// A standalone cache of `V` values, with a TTL and a stale window.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
/// use std::time::Duration;
/// use resilient_runtime::cache::{Cache, CacheKey};
/// use resilient_runtime::Rejection;
///
/// let profiles: Cache<String> =
///     Cache::new("profiles", 10_000, Duration::from_secs(1800), Duration::from_secs(86_400));
/// let key = CacheKey::new().lit("user:").part(&42);
/// let name: Result<String, Rejection> =
///     profiles.get_or_set(key.clone(), || async { Ok("Ada".to_string()) }).await;
/// assert_eq!(name.as_deref(), Ok("Ada"));
/// assert_eq!(profiles.get(&key).as_deref(), Some("Ada"));
/// profiles.invalidate_prefix(&CacheKey::new().lit("user:"));
/// assert_eq!(profiles.get(&key), None);
/// # });
/// ```
pub struct Cache<V> {
    store: Arc<Store<V>>,
}

impl<V> Clone for Cache<V> {
    fn clone(&self) -> Self {
        Cache {
            store: self.store.clone(),
        }
    }
}

impl<V> std::fmt::Debug for Cache<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache").finish_non_exhaustive()
    }
}

impl<V: Clone + Send + Sync + 'static> Cache<V> {
    /// A cache of at most `capacity` entries, fresh for `ttl` and servable after a failed
    /// load for `stale` more.
    pub fn new(name: &'static str, capacity: usize, ttl: Duration, stale: Duration) -> Self {
        Cache {
            store: Arc::new(Store::new(StoreConfig {
                name,
                ttl,
                stale,
                capacity,
                cache_negative: true,
            })),
        }
    }

    /// The fresh value for `key`, if any.
    pub fn get(&self, key: &CacheKey) -> Option<V> {
        match self.store.lookup(key, Instant::now()) {
            Lookup::Fresh(v) => Some(v),
            Lookup::Miss { .. } => None,
        }
    }

    /// The fresh value for `key`, or the value `load` produces, loaded once however many
    /// callers ask at the same time. When the load fails (with anything but a caller
    /// error), a value still inside its stale window is returned instead. Callers that
    /// waited for a failed load with no stale value get [`Rejection::SharedLoadFailed`].
    pub async fn get_or_set<E, F, Fut>(&self, key: CacheKey, load: F) -> Result<V, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, E>>,
        E: Classify + From<Rejection>,
    {
        let stale = match self.store.lookup(&key, Instant::now()) {
            Lookup::Fresh(v) => return Ok(v),
            Lookup::Miss { stale } => stale,
        };
        let guard = match self.store.join(key, stale).await {
            Join::Value(v) | Join::Stale(v) => return Ok(v),
            Join::Failed(class) => {
                return Err(E::from(Rejection::SharedLoadFailed {
                    operation: self.store.config().name,
                    class,
                }));
            }
            Join::Lead(guard) => guard,
        };
        match load().await {
            Ok(v) => {
                guard.succeed(&v, false, Instant::now());
                Ok(v)
            }
            Err(e) => {
                let class = e.class();
                guard.fail(class, stale_allowed(class)).ok_or(e)
            }
        }
    }

    /// Stores `value` under `key`, fresh for the cache's TTL.
    pub fn insert(&self, key: CacheKey, value: V) {
        self.store.insert(key, value, Instant::now());
    }

    /// Removes `key`; a load of it already under way will not store its result.
    pub fn invalidate(&self, key: &CacheKey) {
        self.store.invalidate(key);
    }

    /// Invalidates every key that starts with `prefix`, in O(1).
    pub fn invalidate_prefix(&self, prefix: &CacheKey) {
        self.store.invalidate_prefix(prefix);
    }

    /// The cache's counters.
    pub fn stats(&self) -> CacheStats {
        self.store.stats()
    }
}
