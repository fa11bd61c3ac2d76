//! Building a [`Runtime`] and validating every registered operation.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use tokio::sync::Notify;

use super::{Inner, OpState, Runtime};
use crate::breaker::{BreakerConfig, CircuitBreaker};
use crate::bulkhead::{self, Bulkhead, BulkheadSpec};
use crate::cache::KeyTemplate;
use crate::cache::store::StoreConfig;
use crate::metrics::{OpMetrics, RecentErrors};
use crate::policy::Policy;
use crate::registry::{self, NEXT_SLOT};

/// Configures a [`Runtime`]. Every setting has a default; [`build`](Self::build)
/// validates the whole configuration and reports every problem at once.
#[derive(Debug, Default)]
pub struct RuntimeBuilder {
    bulkheads: Vec<(&'static str, usize, usize)>,
    breakers: Vec<(&'static str, BreakerConfig)>,
    extra: Vec<&'static Policy>,
    skip_registry: bool,
    default_ttl: Option<Duration>,
    default_cache_capacity: Option<usize>,
    metrics_disabled: bool,
    latency_sample: Option<u32>,
    pub(crate) databases: crate::db::DatabasesBuilder,
}

/// TTL of cached results when the operation sets no `ttl_s`.
pub const DEFAULT_TTL: Duration = Duration::from_secs(60);
/// Capacity of each operation's cache when it sets none.
pub const DEFAULT_CACHE_CAPACITY: usize = 10_000;

/// One thing wrong with a runtime's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The operation concerned, if any (`module::name`).
    pub operation: Option<String>,
    /// What is wrong, and how to fix it.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.operation {
            Some(op) => write!(f, "operation `{op}`: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// The runtime's configuration is invalid. Lists every problem found, not just the first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildError {
    problems: Vec<Problem>,
}

impl BuildError {
    /// Every problem found.
    pub fn problems(&self) -> &[Problem] {
        &self.problems
    }
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid resilience configuration ({} problem",
            self.problems.len()
        )?;
        if self.problems.len() != 1 {
            f.write_str("s")?;
        }
        f.write_str("):")?;
        for p in &self.problems {
            write!(f, "\n  - {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for BuildError {}

/// The policy behind [`Runtime::read`](crate::Runtime::read).
pub(crate) static READ_OP: Policy =
    Policy::new("resilient::read", module_path!()).preset(crate::policy::Preset::Read);
/// The policy behind [`Runtime::write`](crate::Runtime::write).
pub(crate) static WRITE_OP: Policy =
    Policy::new("resilient::write", module_path!()).preset(crate::policy::Preset::Write);
/// The policy behind [`Runtime::report`](crate::Runtime::report).
pub(crate) static REPORT_OP: Policy =
    Policy::new("resilient::report", module_path!()).preset(crate::policy::Preset::Report);

/// For each template of a policy, the operations (as indices or slots) it reaches.
type Targets = Vec<Vec<usize>>;

fn qualified(p: &Policy) -> String {
    format!("{}::{}", p.module(), p.name())
}

impl RuntimeBuilder {
    /// Declares a bulkhead, or resizes a declared one (built-in or custom).
    pub fn bulkhead(mut self, name: &'static str, max_concurrent: usize, max_queue: usize) -> Self {
        self.bulkheads.push((name, max_concurrent, max_queue));
        self
    }

    /// Declares a circuit breaker, or reconfigures a declared one.
    pub fn breaker(mut self, name: &'static str, config: BreakerConfig) -> Self {
        self.breakers.push((name, config));
        self
    }

    /// Registers an operation explicitly, e.g. a policy used only through
    /// [`Runtime::execute`](crate::Runtime::execute). Registering twice is harmless.
    pub fn register(mut self, policy: &'static Policy) -> Self {
        self.extra.push(policy);
        self
    }

    /// TTL of cached results for operations that set no `ttl_s` (default 60 s).
    pub fn default_ttl(mut self, ttl: Duration) -> Self {
        self.default_ttl = Some(ttl);
        self
    }

    /// Capacity of each operation's cache when it sets none (default 10,000 entries).
    pub fn default_cache_capacity(mut self, entries: usize) -> Self {
        self.default_cache_capacity = Some(entries);
        self
    }

    /// Turns per-call metrics (counters, latency histograms, recent errors) on or off.
    /// On by default; off saves two clock reads and a few atomic increments per call.
    pub fn metrics(mut self, on: bool) -> Self {
        self.metrics_disabled = !on;
        self
    }

    /// Times one call in `every`, drawn at random per call, for the latency histograms
    /// (default 1: every call). Timing a call that waits reads the clock twice; counters
    /// still count every call, and the percentiles stay unbiased estimates (a timed call
    /// that never waited counts as 0 ms).
    pub fn latency_sample(mut self, every: u32) -> Self {
        self.latency_sample = Some(every.max(1));
        self
    }

    /// Ignores the `#[resilient]` registry: only operations passed to
    /// [`register`](Self::register) (and the built-in `read`/`write`/`report`) are known.
    pub fn without_registry(mut self) -> Self {
        self.skip_registry = true;
        self
    }

    /// Validates the configuration and builds the runtime.
    pub fn build(self) -> Result<Runtime, BuildError> {
        let mut problems = Vec::new();

        // Every operation, once.
        let mut ops: Vec<&'static Policy> = vec![&READ_OP, &WRITE_OP, &REPORT_OP];
        if !self.skip_registry {
            ops.extend(registry::registered());
        }
        ops.extend(self.extra.iter().copied());
        let mut seen = std::collections::HashSet::new();
        ops.retain(|p| seen.insert(std::ptr::from_ref(*p) as usize));

        let mut names: HashMap<String, &'static Policy> = HashMap::new();
        for p in &ops {
            if names.insert(qualified(p), p).is_some() {
                problems.push(Problem {
                    operation: Some(qualified(p)),
                    message:
                        "two operations share this name: put `#[resilient]` on their `impl` blocks \
                              so they are named `Type::method`, or give one a `name = \"..\"`"
                            .into(),
                });
            }
            for (what, d) in [("timeout", p.attempt_timeout()), ("deadline", p.deadline())] {
                if d.is_zero() {
                    problems.push(Problem {
                        operation: Some(qualified(p)),
                        message: format!("the {what} is zero"),
                    });
                }
            }
        }

        // Bulkheads: built-ins, then every spec operations reference, then overrides.
        let mut bh_specs: HashMap<&'static str, (BulkheadSpec, String)> = HashMap::new();
        let builtins = [&bulkhead::READ, &bulkhead::WRITE, &bulkhead::REPORT];
        let referenced = ops
            .iter()
            .filter_map(|p| p.bulkhead_spec().map(|s| (s, qualified(p))));
        for (spec, origin) in builtins
            .into_iter()
            .map(|s| (s, "built-in".to_string()))
            .chain(referenced)
        {
            match bh_specs.entry(spec.name()) {
                Entry::Vacant(v) => {
                    v.insert((*spec, origin));
                }
                Entry::Occupied(o) if o.get().0 != *spec => problems.push(Problem {
                    operation: None,
                    message: format!(
                        "bulkhead `{}` is declared twice with different sizes ({}/{} by {}, {}/{} by {})",
                        spec.name(),
                        o.get().0.max_concurrent(),
                        o.get().0.max_queue(),
                        o.get().1,
                        spec.max_concurrent(),
                        spec.max_queue(),
                        origin
                    ),
                }),
                Entry::Occupied(_) => {}
            }
        }
        for (name, max_concurrent, max_queue) in &self.bulkheads {
            bh_specs.insert(
                name,
                (
                    BulkheadSpec::new(name, *max_concurrent, *max_queue),
                    "builder".into(),
                ),
            );
        }

        // Breakers, the same way.
        let mut br_specs: HashMap<&'static str, (BreakerConfig, String)> = HashMap::new();
        br_specs.insert(
            crate::breaker::DATABASE.name(),
            (*crate::breaker::DATABASE.config(), "built-in".into()),
        );
        for p in &ops {
            let Some(spec) = p.breaker_spec() else {
                continue;
            };
            match br_specs.entry(spec.name()) {
                Entry::Vacant(v) => {
                    v.insert((*spec.config(), qualified(p)));
                }
                Entry::Occupied(o) if o.get().0 != *spec.config() => problems.push(Problem {
                    operation: Some(qualified(p)),
                    message: format!(
                        "breaker `{}` is declared twice with different settings (also by {})",
                        spec.name(),
                        o.get().1
                    ),
                }),
                Entry::Occupied(_) => {}
            }
        }
        for (name, config) in &self.breakers {
            br_specs.insert(name, (*config, "builder".into()));
        }
        for (name, (config, origin)) in &br_specs {
            for message in breaker_config_problems(config) {
                problems.push(Problem {
                    operation: None,
                    message: format!("breaker `{name}` (declared by {origin}): {message}"),
                });
            }
        }

        let caching: Vec<(usize, &'static KeyTemplate)> = ops
            .iter()
            .enumerate()
            .filter_map(|(i, p)| p.cache_spec().map(|c| (i, c.template)))
            .collect();
        // The indices (in `ops`) of the caching operations whose keys `matches` accepts;
        // none is a startup problem: a typo would leave stale data in the cache.
        let mut resolve =
            |p: &Policy,
             option: &str,
             t: &KeyTemplate,
             matches: fn(&KeyTemplate, &KeyTemplate) -> bool| {
                let targets: Vec<usize> = caching
                    .iter()
                    .filter(|(_, c)| matches(t, c))
                    .map(|(i, _)| *i)
                    .collect();
                if targets.is_empty() {
                    problems.push(Problem {
                        operation: Some(qualified(p)),
                        message: format!(
                            "`{option} = \"{t}\"` matches no key any operation caches: \
                         a typo here would leave stale data in the cache"
                        ),
                    });
                }
                targets
            };
        // For each operation and each of its invalidate templates: the operations it reaches.
        let mut invalidations: Vec<(Targets, Targets)> = Vec::with_capacity(ops.len());
        let mut zero_ttl = Vec::new();
        let mut watched: HashMap<usize, Vec<usize>> = HashMap::new();
        for p in &ops {
            let exact: Targets = p
                .invalidates()
                .iter()
                .map(|t| resolve(p, "invalidate", t, KeyTemplate::same_shape))
                .collect();
            let prefixes: Targets = p
                .invalidates_prefixes()
                .iter()
                .map(|t| {
                    let targets =
                        resolve(p, "invalidate_prefix", t, KeyTemplate::is_shape_prefix_of);
                    for i in &targets {
                        watched.entry(*i).or_default().push(t.fragments().len());
                    }
                    targets
                })
                .collect();
            invalidations.push((exact, prefixes));
            if let Some(spec) = p.cache_spec()
                && spec.ttl.is_some_and(|t| t.is_zero())
            {
                zero_ttl.push(Problem {
                    operation: Some(qualified(p)),
                    message: "the cache TTL is zero".into(),
                });
            }
        }

        problems.extend(zero_ttl);
        problems.extend(self.databases.problems(|name| br_specs.contains_key(name)));

        if !problems.is_empty() {
            problems.sort_by(|a, b| (&a.operation, &a.message).cmp(&(&b.operation, &b.message)));
            return Err(BuildError { problems });
        }

        let bulkheads: HashMap<_, _> = bh_specs
            .into_values()
            .map(|(s, _)| (s.name(), Arc::new(Bulkhead::from_spec(&s))))
            .collect();
        let breakers: HashMap<_, _> = br_specs
            .into_iter()
            .map(|(name, (config, _))| (name, Arc::new(CircuitBreaker::new(name, config))))
            .collect();

        let slots: Vec<usize> = ops.iter().map(|p| p.assign_slot(&NEXT_SLOT)).collect();
        let default_ttl = self.default_ttl.unwrap_or(DEFAULT_TTL);
        let default_capacity = self
            .default_cache_capacity
            .unwrap_or(DEFAULT_CACHE_CAPACITY);
        let mut table: Vec<Option<OpState>> = Vec::new();
        for (i, (p, (exact, prefixes))) in ops.into_iter().zip(invalidations).enumerate() {
            let slot = slots[i];
            let to_slots = |targets: Vec<Vec<usize>>| -> Vec<Vec<usize>> {
                targets
                    .into_iter()
                    .map(|t| t.into_iter().map(|j| slots[j]).collect())
                    .collect()
            };
            if table.len() <= slot {
                table.resize_with(slot + 1, || None);
            }
            table[slot] = Some(OpState {
                policy: p,
                deadline: p.deadline(),
                breaker: p
                    .breaker_spec()
                    .and_then(|s| breakers.get(s.name()).cloned()),
                bulkhead: p
                    .bulkhead_spec()
                    .and_then(|s| bulkheads.get(s.name()).cloned()),
                in_flight: Default::default(),
                metrics: OpMetrics::new(!self.metrics_disabled, self.latency_sample.unwrap_or(1)),
                cache: OnceLock::new(),
                cache_config: p.cache_spec().map(|spec| StoreConfig {
                    name: p.name(),
                    ttl: spec.ttl.unwrap_or(default_ttl),
                    stale: spec.stale,
                    capacity: spec.capacity.unwrap_or(default_capacity),
                    cache_negative: spec.cache_none,
                }),
                watched_prefix_depths: watched.remove(&i).unwrap_or_default(),
                invalidate_targets: to_slots(exact),
                invalidate_prefix_targets: to_slots(prefixes),
            });
        }

        Ok(Runtime {
            inner: Arc::new(Inner {
                breakers,
                bulkheads,
                ops: table,
                shutting_down: AtomicBool::new(false),
                drained: Notify::new(),
                metrics_enabled: !self.metrics_disabled,
                recent_errors: RecentErrors::default(),
                databases: self.databases.build(),
            }),
        })
    }
}

fn breaker_config_problems(c: &BreakerConfig) -> Vec<String> {
    let mut out = Vec::new();
    if c.failure_threshold == 0 {
        out.push("`failure_threshold` must be at least 1".to_string());
    }
    if c.half_open_successes == 0 {
        out.push("`half_open_successes` must be at least 1".to_string());
    }
    if c.half_open_max_calls == 0 {
        out.push("`half_open_max_calls` must be at least 1".to_string());
    }
    if let Some(w) = c.window {
        if w.size == 0 || w.size > 1024 {
            out.push(format!(
                "window `size` must be within 1..=1024, not {}",
                w.size
            ));
        }
        if w.failure_rate_percent == 0 || w.failure_rate_percent > 100 {
            out.push(format!(
                "window `failure_rate_percent` must be within 1..=100, not {}",
                w.failure_rate_percent
            ));
        }
        if w.minimum_calls > w.size {
            out.push("window `minimum_calls` cannot exceed its `size`".to_string());
        }
    }
    out
}
