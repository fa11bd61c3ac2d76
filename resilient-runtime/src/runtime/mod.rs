//! The [`Runtime`]: named breakers and bulkheads, the operation table, and shutdown.

mod builder;
mod shutdown;
mod snapshot;

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use tokio::sync::Notify;

use crate::Rejection;
use crate::breaker::CircuitBreaker;
use crate::bulkhead::Bulkhead;
use crate::cache::CacheStats;
use crate::cache::store::{ErasedStore, StoreConfig};
use crate::metrics::{OpMetrics, RecentErrors};
use crate::policy::Policy;

pub use builder::{BuildError, Problem, RuntimeBuilder};
pub(crate) use builder::{READ_OP, REPORT_OP, WRITE_OP};
pub use shutdown::ShutdownReport;
pub use snapshot::{OperationSnapshot, PolicyView, Snapshot};

/// Holds every breaker, bulkhead and registered operation. Cheap to clone.
///
/// # Finding the runtime
///
/// Generated code asks for the *current* runtime on every call:
///
/// 1. the runtime of the enclosing [`Runtime::scope`], if the call runs inside one
///    (a tokio task-local: tests run isolated runtimes in parallel this way), else
/// 2. the process-wide runtime set by [`Runtime::install_global`], else
/// 3. none: the call fails with [`Rejection::NoRuntime`]; nothing is created silently.
///
/// A task spawned with `tokio::spawn` does not inherit the scope of its parent; wrap
/// the spawned future in `rt.scope(..)` too.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// use resilient_runtime::{Rejection, Runtime};
///
/// let rt = Runtime::builder().bulkhead("write", 10, 20).build()?;
/// assert_eq!(rt.bulkhead("write").map(|b| b.max_concurrent()), Some(10));
/// let v: Result<u32, Rejection> = rt.scope(async { rt.write(|| async { Ok(1) }).await }).await;
/// assert_eq!(v, Ok(1));
/// # Ok::<(), resilient_runtime::BuildError>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

struct Inner {
    breakers: HashMap<&'static str, Arc<CircuitBreaker>>,
    bulkheads: HashMap<&'static str, Arc<Bulkhead>>,
    /// Indexed by [`Policy`] slot; `None` for slots of policies this runtime doesn't know.
    ops: Vec<Option<OpState>>,
    shutting_down: AtomicBool,
    drained: Notify,
    metrics_enabled: bool,
    recent_errors: RecentErrors,
    /// Database pools and their background tasks.
    databases: crate::db::Databases,
}

/// What the runtime keeps for one registered operation.
#[derive(Debug)]
pub(crate) struct OpState {
    pub(crate) policy: &'static Policy,
    /// `policy.deadline()`, computed once: it is needed on every attempt.
    pub(crate) deadline: std::time::Duration,
    pub(crate) breaker: Option<Arc<CircuitBreaker>>,
    pub(crate) bulkhead: Option<Arc<Bulkhead>>,
    /// Calls of this operation between admission and return (for draining on shutdown).
    pub(crate) in_flight: crate::metrics::striped::Striped,
    /// Counters and latency.
    pub(crate) metrics: OpMetrics,
    /// The operation's cache, created on first use (only then is its value type known).
    pub(crate) cache: OnceLock<Box<dyn ErasedStore>>,
    /// How the cache is configured, if the operation caches.
    pub(crate) cache_config: Option<StoreConfig>,
    /// Prefix depths other operations invalidate: the cache must watch them.
    pub(crate) watched_prefix_depths: Vec<usize>,
    /// For each of the policy's `invalidate` templates, the slots of the operations caching it.
    pub(crate) invalidate_targets: Vec<Vec<usize>>,
    /// For each of the policy's `invalidate_prefix` templates, the slots of the operations it covers.
    pub(crate) invalidate_prefix_targets: Vec<Vec<usize>>,
}

impl fmt::Debug for dyn ErasedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cache")
            .field("stats", &self.stats())
            .finish()
    }
}

static GLOBAL: OnceLock<Runtime> = OnceLock::new();

tokio::task_local! {
    static CURRENT: Runtime;
}

impl Runtime {
    /// Starts building a runtime.
    pub fn builder() -> RuntimeBuilder {
        RuntimeBuilder::default()
    }

    /// Makes this runtime the process-wide default. Fails, handing the runtime back,
    /// if one is installed already.
    pub fn install_global(self) -> Result<&'static Runtime, Runtime> {
        let mut candidate = Some(self);
        let installed = GLOBAL.get_or_init(|| candidate.take().expect("taken once"));
        match candidate {
            None => Ok(installed),
            Some(rejected) => Err(rejected),
        }
    }

    /// The process-wide runtime, if one is installed.
    pub fn global() -> Option<&'static Runtime> {
        GLOBAL.get()
    }

    /// Runs `fut` with this runtime as the current one for every annotated call inside it.
    ///
    /// The returned future owns a handle to the runtime, so it can be spawned:
    /// `tokio::spawn(rt.scope(async { .. }))` (a spawned task does not inherit its
    /// parent's scope otherwise).
    pub fn scope<F: Future>(&self, fut: F) -> tokio::task::futures::TaskLocalFuture<Runtime, F> {
        CURRENT.scope(self.clone(), fut)
    }

    /// The breaker with this name.
    pub fn breaker(&self, name: &str) -> Option<&CircuitBreaker> {
        self.inner.breakers.get(name).map(|b| &**b)
    }

    /// The bulkhead with this name.
    pub fn bulkhead(&self, name: &str) -> Option<&Bulkhead> {
        self.inner.bulkheads.get(name).map(|b| &**b)
    }

    /// Every breaker, by name.
    pub fn breakers(&self) -> impl Iterator<Item = &CircuitBreaker> {
        self.inner.breakers.values().map(|b| &**b)
    }

    /// Every bulkhead, by name.
    pub fn bulkheads(&self) -> impl Iterator<Item = &Bulkhead> {
        self.inner.bulkheads.values().map(|b| &**b)
    }

    /// Every operation this runtime knows, with its effective policy.
    pub fn operations(&self) -> impl Iterator<Item = &'static Policy> + '_ {
        self.inner.ops.iter().flatten().map(|o| o.policy)
    }

    /// Whether [`shutdown`](Runtime::shutdown) has begun.
    #[inline]
    pub fn is_shutting_down(&self) -> bool {
        self.inner.shutting_down.load(Ordering::SeqCst)
    }

    /// Counters of every cache created so far, one per caching operation.
    pub fn caches(&self) -> Vec<CacheStats> {
        self.inner
            .ops
            .iter()
            .flatten()
            .filter_map(|op| op.cache.get().map(|c| c.stats()))
            .collect()
    }

    /// Whether calls record metrics (see [`RuntimeBuilder::metrics`]).
    #[inline]
    pub fn metrics_enabled(&self) -> bool {
        self.inner.metrics_enabled
    }

    /// Starts counting anew for snapshots: per-operation counters, latency, cache and
    /// bulkhead statistics and the recent errors (the seed's reset). Prometheus counters
    /// stay monotonic.
    pub fn reset_metrics(&self) {
        for (_, op) in self.op_states() {
            op.metrics.reset();
        }
        for b in self.bulkheads() {
            b.reset_stats();
        }
        self.inner.recent_errors.clear();
    }

    pub(crate) fn recent_errors(&self) -> &RecentErrors {
        &self.inner.recent_errors
    }

    pub(crate) fn op_states(&self) -> impl Iterator<Item = (&'static Policy, &OpState)> {
        self.inner.ops.iter().flatten().map(|op| (op.policy, op))
    }

    pub(crate) fn op_at(&self, slot: usize) -> Option<&OpState> {
        self.inner.ops.get(slot).and_then(Option::as_ref)
    }

    #[inline]
    pub(crate) fn op(&self, policy: &'static Policy) -> Option<&OpState> {
        self.inner
            .ops
            .get(policy.slot())
            .and_then(Option::as_ref)
            .filter(|op| std::ptr::eq(op.policy, policy))
    }

    pub(crate) fn drained(&self) -> &Notify {
        &self.inner.drained
    }

    pub(crate) fn databases(&self) -> &crate::db::Databases {
        &self.inner.databases
    }
}

impl fmt::Debug for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runtime")
            .field("breakers", &self.inner.breakers.keys().collect::<Vec<_>>())
            .field(
                "bulkheads",
                &self.inner.bulkheads.keys().collect::<Vec<_>>(),
            )
            .field("operations", &self.operations().count())
            .field("shutting_down", &self.is_shutting_down())
            .finish()
    }
}

/// The runtime a call found: see [`Runtime`] for the lookup order.
#[derive(Debug)]
pub enum RuntimeRef {
    /// The process-wide runtime.
    Global(&'static Runtime),
    /// The runtime of the enclosing [`Runtime::scope`].
    Scoped(Runtime),
    /// No runtime: calls fail with [`Rejection::NoRuntime`].
    None,
}

impl RuntimeRef {
    /// The current runtime.
    #[inline]
    pub fn current() -> RuntimeRef {
        CURRENT
            .try_with(|rt| RuntimeRef::Scoped(rt.clone()))
            .unwrap_or_else(|_| GLOBAL.get().map_or(RuntimeRef::None, RuntimeRef::Global))
    }

    /// The runtime, if there is one.
    #[inline]
    pub fn get(&self) -> Option<&Runtime> {
        match self {
            RuntimeRef::Global(rt) => Some(rt),
            RuntimeRef::Scoped(rt) => Some(rt),
            RuntimeRef::None => None,
        }
    }

    /// The runtime, or [`Rejection::NoRuntime`].
    pub fn require(&self) -> Result<&Runtime, Rejection> {
        self.get().ok_or(Rejection::NoRuntime)
    }
}
