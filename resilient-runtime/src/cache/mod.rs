//! Caches: TTL on the runtime's clock, stale-if-error, single flight per key that shares
//! failures too, and invalidation that a racing load cannot undo.
//!
//! # How a cached read flows
//!
//! 1. The key is built from the template and the arguments ([`CacheKey`]: no heap
//!    allocation for short keys). A **fresh hit** returns a clone at once: no breaker,
//!    no bulkhead, no database.
//! 2. On a miss, callers for the same key **share one load**: the first leads it through
//!    the full policy stack, the others wait for its outcome, success or failure.
//! 3. When the load fails with a transient, unavailable or ambiguous error, an attempt
//!    timeout, the deadline, an open breaker, a full bulkhead or shutdown (any failure
//!    but a caller error), the last value is served
//!    while it is within its stale window (`stale_s` past its TTL), and counted as stale
//!    served. An open breaker or a full bulkhead rejects before the database is touched,
//!    so stale data is then served without trying it.
//! 4. Caller errors are never cached. `Ok(None)` (a `Result<Option<T>, E>` method that
//!    found nothing) is not cached either, unless the operation sets `cache_none = true`:
//!    a negative entry would hide a row created later by a method that does not
//!    invalidate it.
//!
//! # Invalidation
//!
//! A write with `invalidate = "user:<id>"` removes that key after it succeeds, and also
//! after an ambiguous failure (the write may have been applied). Each key is guarded by
//! a generation: a load that began before an invalidation of its key, or of a prefix of
//! it, can neither store nor serve its result afterwards. `invalidate_prefix` costs O(1)
//! whatever the cache holds: it bumps the prefix's generation, and the entries under it
//! fail their check from then on (they leave the cache when next read or evicted).
//!
//! # The seed guide's caches
//!
//! | cache | TTL | stale window | attribute |
//! |---|---|---|---|
//! | user profile | 30 min | 24 h | `cache = "user:<id>", ttl_s = 1800, stale_s = 86400` |
//! | subscription status | 2 min | 1 h | `cache = "subscription:<user_id>", ttl_s = 120, stale_s = 3600` |
//! | project list | 5 min | 2 h | `cache = "projects:<org_id>", ttl_s = 300, stale_s = 7200` |

mod key;
mod plain;
pub(crate) mod store;

use std::time::Duration;

pub use key::{CacheKey, Fragment, INLINE, KeyPart, KeyTemplate, KeyWriter};
pub use plain::Cache;

/// Counters of one cache.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct CacheStats {
    /// The cache's name: its operation's name.
    pub name: &'static str,
    /// Fresh hits.
    pub hits: u64,
    /// Lookups that found no fresh value.
    pub misses: u64,
    /// Stale values served after a failed load (to the loader and to every waiter).
    pub stale_served: u64,
    /// Loads started (one per single flight).
    pub loads: u64,
    /// Loads that failed.
    pub load_failures: u64,
    /// Entries evicted to respect the capacity.
    pub evictions: u64,
    /// Entries held now (invalidated-by-prefix entries count until they are dropped).
    pub entries: u64,
    /// Maximum number of entries.
    pub capacity: u64,
}

/// The cache part of a [`Policy`](crate::policy::Policy), as the attribute declares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheSpec {
    /// The key template.
    pub template: &'static KeyTemplate,
    /// Time to live; `None` uses the runtime's default.
    pub ttl: Option<Duration>,
    /// How long past its TTL an entry may still be served when a load fails.
    pub stale: Duration,
    /// Maximum entries; `None` uses the runtime's default.
    pub capacity: Option<usize>,
    /// Whether `Ok(None)` results are cached.
    pub cache_none: bool,
}

/// Whether a failure of this class lets a stale value be served instead: every failure
/// but a caller error (the database, or the layer protecting it, could not answer).
pub(crate) fn stale_allowed(class: crate::ErrorClass) -> bool {
    class != crate::ErrorClass::Caller
}

#[cfg(test)]
mod tests;
