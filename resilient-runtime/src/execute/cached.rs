//! The cache steps of a call: checked first, before deadline, retry, breaker and bulkhead;
//! stored (or replaced by a stale value) after the policy has given its result.

use std::sync::Arc;

use tokio::time::Instant;

use super::{Call, ClassifyError, Failure};
use crate::cache::CacheKey;
use crate::cache::stale_allowed;
use crate::cache::store::{ErasedStore, FlightGuard, Join, Lookup, Store, Typed};
use crate::{Classify, ErrorClass, Rejection};

/// What the cache says before the policy runs.
pub enum CacheEnter<V, E> {
    /// The call is answered: a fresh hit, or the outcome of another caller's load.
    Done(Result<V, Failure<E>>),
    /// This caller must load the value through the policy, then hand it to
    /// [`Call::cache_store`].
    Load(CacheLoad<V>),
}

/// The right, and the duty, to load one cache key.
#[must_use]
pub struct CacheLoad<V> {
    guard: Option<FlightGuard<V>>,
}

impl<'rt> Call<'rt> {
    /// The operation's store, borrowed for the runtime's lifetime: no `Arc` traffic.
    #[inline]
    fn store<V: Clone + Send + Sync + 'static>(&self) -> Option<&'rt Arc<Store<V>>> {
        let op = self.op?;
        let config = op.cache_config.as_ref()?;
        let erased = op.cache.get_or_init(|| {
            let store = Store::<V>::new(config.clone());
            for depth in &op.watched_prefix_depths {
                store.watch_prefix_depth(*depth);
            }
            Box::new(Typed(Arc::new(store)))
        });
        match erased.as_any().downcast_ref::<Typed<V>>() {
            Some(typed) => Some(&typed.0),
            None => {
                tracing::error!(
                    operation = self.policy.name(),
                    "cache holds another value type than this call returns: not caching"
                );
                None
            }
        }
    }

    /// The fresh value cached under `key`, without waiting: `Err` with the stale value
    /// (if any) on a miss, to hand to [`cache_join`](Self::cache_join).
    #[inline]
    pub fn cache_probe<V>(&mut self, key: &CacheKey) -> Result<V, Option<V>>
    where
        V: Clone + Send + Sync + 'static,
    {
        match self.store::<V>() {
            Some(store) => match store.lookup(key, Instant::now()) {
                Lookup::Fresh(v) => Ok(v),
                Lookup::Miss { stale } => Err(stale),
            },
            None => Err(None),
        }
    }

    /// After a miss of [`cache_probe`](Self::cache_probe): joins (or leads) the single
    /// flight for `key`.
    pub async fn cache_join<V, E>(&mut self, key: CacheKey, stale: Option<V>) -> CacheEnter<V, E>
    where
        V: Clone + Send + Sync + 'static,
    {
        let Some(store) = self.store::<V>() else {
            return CacheEnter::Load(CacheLoad { guard: None });
        };
        let deadline = self.deadline();
        let fallback = stale.clone();
        match tokio::time::timeout_at(deadline, store.join(key, stale)).await {
            Ok(Join::Lead(guard)) => CacheEnter::Load(CacheLoad { guard: Some(guard) }),
            Ok(Join::Value(v) | Join::Stale(v)) => CacheEnter::Done(Ok(v)),
            Ok(Join::Failed(class)) => {
                CacheEnter::Done(Err(Failure::Rejected(Rejection::SharedLoadFailed {
                    operation: self.policy.name(),
                    class,
                })))
            }
            // Waited for another caller's load until the deadline.
            Err(_) => CacheEnter::Done(fallback.ok_or(Failure::Rejected(
                Rejection::DeadlineExceeded {
                    deadline: self.total(),
                },
            ))),
        }
    }

    /// Stores a loaded value, or serves the stale one when the load failed, and hands
    /// the outcome to every caller that waited for this load.
    pub fn cache_store<V, E>(
        &mut self,
        load: CacheLoad<V>,
        result: Result<V, Failure<E>>,
        is_negative: fn(&V) -> bool,
    ) -> Result<V, Failure<E>>
    where
        V: Clone + Send + Sync + 'static,
        E: ClassifyError,
    {
        let Some(guard) = load.guard else {
            return result;
        };
        match result {
            Ok(v) => {
                guard.succeed(&v, is_negative(&v), Instant::now());
                Ok(v)
            }
            Err(failure) => {
                let class = failure_class(&failure);
                match guard.fail(class, stale_allowed(class)) {
                    Some(stale) => Ok(stale),
                    None => Err(failure),
                }
            }
        }
    }

    /// Invalidates `keys` and `prefixes` (in the order of the policy's templates) after a
    /// success, or after an ambiguous failure: the write may have been applied.
    pub fn invalidate<T, E: ClassifyError>(
        &self,
        result: &Result<T, Failure<E>>,
        keys: &[CacheKey],
        prefixes: &[CacheKey],
    ) {
        let applied = match result {
            Ok(_) => true,
            Err(f) => {
                failure_class(f) == ErrorClass::Ambiguous
                    || matches!(f, Failure::Rejected(Rejection::DeadlineExceeded { .. }))
            }
        };
        let (Some(rt), Some(op), true) = (self.rt, self.op, applied) else {
            return;
        };
        let caches = |targets: &Vec<usize>| {
            targets
                .iter()
                .filter_map(|slot| rt.op_at(*slot))
                .filter_map(|target| target.cache.get())
                .collect::<Vec<&Box<dyn ErasedStore>>>()
        };
        for (key, targets) in keys.iter().zip(&op.invalidate_targets) {
            caches(targets).into_iter().for_each(|c| c.invalidate(key));
        }
        for (prefix, targets) in prefixes.iter().zip(&op.invalidate_prefix_targets) {
            caches(targets)
                .into_iter()
                .for_each(|c| c.invalidate_prefix(prefix));
        }
    }
}

fn failure_class<E: Classify>(f: &Failure<E>) -> ErrorClass {
    match f {
        Failure::Inner(e) => e.class(),
        Failure::Rejected(r) => r.class(),
    }
}

/// `fn(&V) -> bool` for values that are never negative results.
pub fn never_negative<V>(_: &V) -> bool {
    false
}
