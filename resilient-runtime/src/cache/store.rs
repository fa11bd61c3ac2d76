//! One operation's cache: entries with their own expiry, generations against the
//! read/invalidate race, and single flight that shares failures too.

use std::any::Any;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use quick_cache::sync::Cache;
use quick_cache::{DefaultHashBuilder, Lifecycle, UnitWeighter};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::CacheStats;
use super::key::CacheKey;
use crate::ErrorClass;
use crate::timeout::instant_after;

/// Generation slots per table. A collision only costs a spurious miss.
const GEN_SLOTS: usize = 1024;

/// A small, fast, non-cryptographic hash of key bytes (FxHash's mixing step). Used only
/// to pick a generation slot: equality of keys never depends on it.
#[inline]
fn slot_of(bytes: &[u8]) -> usize {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let mut h: u64 = bytes.len() as u64;
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        h = (h.rotate_left(5) ^ u64::from_le_bytes(w)).wrapping_mul(K);
    }
    for b in chunks.remainder() {
        h = (h.rotate_left(5) ^ u64::from(*b)).wrapping_mul(K);
    }
    (h >> 32) as usize % GEN_SLOTS
}

struct Gens(Box<[AtomicU64]>);

impl Gens {
    fn new() -> Self {
        Gens((0..GEN_SLOTS).map(|_| AtomicU64::new(0)).collect())
    }

    #[inline]
    fn get(&self, bytes: &[u8]) -> u64 {
        self.0[slot_of(bytes)].load(Ordering::Acquire)
    }

    fn bump(&self, bytes: &[u8]) {
        self.0[slot_of(bytes)].fetch_add(1, Ordering::AcqRel);
    }
}

#[derive(Clone)]
pub(crate) struct Entry<V> {
    value: V,
    fresh_until: Instant,
    stale_until: Instant,
    stamp: u64,
}

/// Collects the keys an insert pushes out. quick_cache reports the value an insert
/// *replaces* through the same hook, so [`Store::put`] counts only the other keys.
#[derive(Clone, Default)]
struct Evictions;

impl<V> Lifecycle<CacheKey, V> for Evictions {
    type RequestState = Vec<CacheKey>;

    fn on_evict(&self, state: &mut Vec<CacheKey>, key: CacheKey, _val: V) {
        state.push(key);
    }
}

/// What a finished load tells the callers that waited for it.
#[derive(Clone)]
pub(crate) enum Shared<V> {
    Value(V),
    Stale(V),
    Failed(ErrorClass),
    /// The loader was cancelled before it finished: a waiter takes over.
    Abandoned,
}

pub(crate) struct Flight<V> {
    stamp: u64,
    result: std::sync::OnceLock<Shared<V>>,
    done: Notify,
}

/// How a store is configured: TTL, stale window, capacity, and which prefixes of its
/// keys other operations invalidate.
#[derive(Debug, Clone)]
pub(crate) struct StoreConfig {
    pub(crate) name: &'static str,
    pub(crate) ttl: Duration,
    pub(crate) stale: Duration,
    pub(crate) capacity: usize,
    pub(crate) cache_negative: bool,
}

pub(crate) struct Store<V> {
    config: StoreConfig,
    entries: Cache<CacheKey, Entry<V>, UnitWeighter, DefaultHashBuilder, Evictions>,
    evictions: AtomicU64,
    key_gens: Gens,
    prefix_gens: Gens,
    /// Bit `d - 1` set: some prefix of `d` fragments has been invalidated (or may be),
    /// so lookups must check that prefix's generation.
    prefix_depths: AtomicU8,
    flights: Mutex<HashMap<CacheKey, Arc<Flight<V>>>>,
    hits: crate::metrics::striped::Striped,
    misses: AtomicU64,
    stale_served: AtomicU64,
    loads: AtomicU64,
    load_failures: AtomicU64,
}

/// The outcome of looking a key up.
pub(crate) enum Lookup<V> {
    Fresh(V),
    /// Expired, or absent; `stale` is a value still inside its stale window.
    Miss {
        stale: Option<V>,
    },
}

impl<V> Lookup<V> {
    #[cfg(test)]
    pub(crate) fn is_miss(&self) -> bool {
        matches!(self, Lookup::Miss { .. })
    }
}

/// The caller either leads the load of a key or gets what another caller's load produced.
pub(crate) enum Join<V> {
    Lead(FlightGuard<V>),
    Value(V),
    Stale(V),
    Failed(ErrorClass),
}

/// Held by the caller that loads a key; publishes the outcome to every waiter.
pub(crate) struct FlightGuard<V> {
    store: Arc<Store<V>>,
    key: CacheKey,
    flight: Arc<Flight<V>>,
    stale: Option<V>,
}

impl<V: Clone + Send + Sync + 'static> Store<V> {
    pub(crate) fn new(config: StoreConfig) -> Self {
        let capacity = config.capacity.max(1);
        let entries = Cache::with(
            capacity,
            capacity as u64,
            UnitWeighter,
            DefaultHashBuilder::default(),
            Evictions,
        );
        Store {
            config,
            entries,
            evictions: AtomicU64::new(0),
            key_gens: Gens::new(),
            prefix_gens: Gens::new(),
            prefix_depths: AtomicU8::new(0),
            flights: Mutex::new(HashMap::new()),
            hits: Default::default(),
            misses: AtomicU64::new(0),
            stale_served: AtomicU64::new(0),
            loads: AtomicU64::new(0),
            load_failures: AtomicU64::new(0),
        }
    }

    /// The sum of every generation that guards `key`. Generations only grow, so any
    /// invalidation of the key, or of a prefix of it, changes the sum.
    #[inline]
    fn stamp(&self, key: &CacheKey) -> u64 {
        let mut stamp = self.key_gens.get(key.as_bytes());
        let mut depths = self.prefix_depths.load(Ordering::Acquire);
        while depths != 0 {
            let depth = depths.trailing_zeros() as usize + 1;
            depths &= depths - 1;
            if let Some(prefix) = key.prefix_bytes(depth) {
                stamp = stamp.wrapping_add(self.prefix_gens.get(prefix));
            }
        }
        stamp
    }

    /// Looks `key` up at `now`.
    #[inline]
    pub(crate) fn lookup(&self, key: &CacheKey, now: Instant) -> Lookup<V> {
        let stale = match self.entries.get(key) {
            Some(e) if e.stamp == self.stamp(key) => {
                if now < e.fresh_until {
                    self.hits
                        .add(crate::metrics::striped::stripe(), 1, Ordering::Relaxed);
                    return Lookup::Fresh(e.value);
                }
                (now < e.stale_until).then_some(e.value)
            }
            _ => None,
        };
        self.misses.fetch_add(1, Ordering::Relaxed);
        Lookup::Miss { stale }
    }

    /// Joins the load of `key`: leads it, or waits for the caller leading it.
    pub(crate) async fn join(self: &Arc<Self>, key: CacheKey, stale: Option<V>) -> Join<V> {
        loop {
            let stamp = self.stamp(&key);
            let flight = {
                let mut flights = self.flights.lock().unwrap_or_else(|e| e.into_inner());
                match flights.get(&key) {
                    // A load begun before an invalidation must not serve callers that
                    // arrive after it: they start a load of their own.
                    Some(f) if f.stamp == stamp && f.result.get().is_none() => f.clone(),
                    _ => {
                        let flight = Arc::new(Flight {
                            stamp,
                            result: std::sync::OnceLock::new(),
                            done: Notify::new(),
                        });
                        flights.insert(key.clone(), flight.clone());
                        self.loads.fetch_add(1, Ordering::Relaxed);
                        return Join::Lead(FlightGuard {
                            store: self.clone(),
                            key,
                            flight,
                            stale,
                        });
                    }
                }
            };
            let outcome = loop {
                let notified = flight.done.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if let Some(r) = flight.result.get() {
                    break r.clone();
                }
                notified.await;
            };
            return match outcome {
                Shared::Abandoned => continue,
                Shared::Stale(v) => {
                    self.stale_served.fetch_add(1, Ordering::Relaxed);
                    Join::Stale(v)
                }
                Shared::Value(v) => Join::Value(v),
                Shared::Failed(class) => Join::Failed(class),
            };
        }
    }

    /// Stores `value` as fresh from `now`.
    pub(crate) fn insert(&self, key: CacheKey, value: V, now: Instant) {
        let stamp = self.stamp(&key);
        self.put(key, self.entry(value, now, stamp));
    }

    /// Inserts, counting the entries pushed out for capacity (not the one replaced).
    fn put(&self, key: CacheKey, entry: Entry<V>) {
        let mut pushed_out = Vec::new();
        self.entries
            .insert_with_lifecycle(key.clone(), entry, &mut pushed_out);
        let evicted = pushed_out.iter().filter(|k| **k != key).count() as u64;
        if evicted > 0 {
            self.evictions.fetch_add(evicted, Ordering::Relaxed);
        }
    }

    fn entry(&self, value: V, now: Instant, stamp: u64) -> Entry<V> {
        let fresh_until = instant_after(now, self.config.ttl);
        Entry {
            value,
            fresh_until,
            stale_until: instant_after(fresh_until, self.config.stale),
            stamp,
        }
    }

    pub(crate) fn invalidate(&self, key: &CacheKey) {
        // Bump first: a load that read the old generation can no longer store or serve.
        self.key_gens.bump(key.as_bytes());
        self.entries.remove(key);
    }

    /// Makes lookups check the generation of key prefixes of `depth` fragments.
    /// Called at startup for the prefixes other operations invalidate.
    pub(crate) fn watch_prefix_depth(&self, depth: usize) {
        if (1..=8).contains(&depth) {
            self.prefix_depths
                .fetch_or(1 << (depth - 1), Ordering::AcqRel);
        }
    }

    pub(crate) fn invalidate_prefix(&self, prefix: &CacheKey) {
        let depth = prefix.depth();
        if depth > 8 {
            // Deeper than the boundaries a key remembers: drop the whole cache instead.
            tracing::warn!(
                cache = self.config.name,
                depth,
                "prefix deeper than 8 fragments: clearing the cache"
            );
            self.key_gens.0.iter().for_each(|g| {
                g.fetch_add(1, Ordering::AcqRel);
            });
            self.entries.clear();
            return;
        }
        // Watch the depth *before* bumping, so no lookup can miss the bump.
        self.watch_prefix_depth(depth);
        // O(1) whatever the number of entries: matching entries fail their stamp check
        // from now on and are dropped when next read or evicted.
        self.prefix_gens.bump(prefix.as_bytes());
    }

    pub(crate) fn stats(&self) -> CacheStats {
        CacheStats {
            name: self.config.name,
            hits: self.hits.sum(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            stale_served: self.stale_served.load(Ordering::Relaxed),
            loads: self.loads.load(Ordering::Relaxed),
            load_failures: self.load_failures.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
            entries: self.entries.len() as u64,
            capacity: self.entries.capacity(),
        }
    }

    pub(crate) fn config(&self) -> &StoreConfig {
        &self.config
    }
}

impl<V: Clone + Send + Sync + 'static> FlightGuard<V> {
    /// The load succeeded: store the value (unless its key was invalidated since the load
    /// began, or it is a negative result that is not cached) and hand it to every waiter.
    pub(crate) fn succeed(self, value: &V, negative: bool, now: Instant) {
        let store = &self.store;
        if !negative || store.config.cache_negative {
            let entry = store.entry(value.clone(), now, self.flight.stamp);
            // Stored with the stamp read when the load began: if an invalidation came in
            // between, the entry never passes a lookup.
            if store.stamp(&self.key) == self.flight.stamp {
                store.put(self.key.clone(), entry);
            }
        }
        self.publish(Shared::Value(value.clone()));
    }

    /// The load failed. Returns the stale value to serve instead, if the failure allows it
    /// and the stale value was not invalidated meanwhile.
    pub(crate) fn fail(mut self, class: ErrorClass, stale_allowed: bool) -> Option<V> {
        self.store.load_failures.fetch_add(1, Ordering::Relaxed);
        let stale = self
            .stale
            .take()
            .filter(|_| stale_allowed && self.store.stamp(&self.key) == self.flight.stamp);
        match stale {
            Some(v) => {
                self.store.stale_served.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(cache = self.store.config.name, %class, "serving a stale value after a failed load");
                self.publish(Shared::Stale(v.clone()));
                Some(v)
            }
            None => {
                self.publish(Shared::Failed(class));
                None
            }
        }
    }
}

impl<V> FlightGuard<V> {
    /// Sets the flight's outcome (once), retires the flight and wakes its waiters.
    fn publish(&self, outcome: Shared<V>) {
        if self.flight.result.set(outcome).is_ok() {
            let mut flights = self.store.flights.lock().unwrap_or_else(|e| e.into_inner());
            if flights
                .get(&self.key)
                .is_some_and(|f| Arc::ptr_eq(f, &self.flight))
            {
                flights.remove(&self.key);
            }
            drop(flights);
            self.flight.done.notify_waiters();
        }
    }
}

impl<V> Drop for FlightGuard<V> {
    fn drop(&mut self) {
        // Cancelled mid-load (a no-op once published): one waiter takes over rather than
        // all of them failing.
        self.publish(Shared::Abandoned);
    }
}

/// A store seen without its value type: what invalidation and snapshots need.
pub(crate) trait ErasedStore: Send + Sync {
    fn invalidate(&self, key: &CacheKey);
    fn invalidate_prefix(&self, prefix: &CacheKey);
    fn stats(&self) -> CacheStats;
    fn as_any(&self) -> &(dyn Any + Send + Sync);
}

/// The typed store behind an erased one.
pub(crate) struct Typed<V>(pub(crate) Arc<Store<V>>);

impl<V: Clone + Send + Sync + 'static> ErasedStore for Typed<V> {
    fn invalidate(&self, key: &CacheKey) {
        self.0.invalidate(key);
    }
    fn invalidate_prefix(&self, prefix: &CacheKey) {
        self.0.invalidate_prefix(prefix);
    }
    fn stats(&self) -> CacheStats {
        self.0.stats()
    }
    fn as_any(&self) -> &(dyn Any + Send + Sync) {
        self
    }
}
