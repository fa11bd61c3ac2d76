//! What the [`Runtime`] keeps for databases: named pools and background tasks.

#![cfg_attr(not(any(feature = "postgres", feature = "sqlite")), allow(unused_mut))]

use std::fmt;

#[cfg(any(feature = "postgres", feature = "sqlite"))]
use std::sync::{Arc, Mutex, PoisonError};

use crate::Problem;
#[cfg(any(feature = "postgres", feature = "sqlite"))]
use crate::{Runtime, RuntimeBuilder};

#[cfg(any(feature = "postgres", feature = "sqlite"))]
use super::{config::DbConfig, health::Monitor, pool::DbPool};

/// The pools of one runtime, in declaration order (the first is the default), and the
/// background tasks shutdown must stop.
#[derive(Default)]
pub(crate) struct Databases {
    #[cfg(any(feature = "postgres", feature = "sqlite"))]
    pools: Vec<Arc<DbPool>>,
    #[cfg(any(feature = "postgres", feature = "sqlite"))]
    monitors: Mutex<Vec<Arc<Monitor>>>,
}

impl fmt::Debug for Databases {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Databases");
        #[cfg(any(feature = "postgres", feature = "sqlite"))]
        d.field(
            "pools",
            &self.pools.iter().map(|p| p.name()).collect::<Vec<_>>(),
        );
        d.finish()
    }
}

#[cfg(any(feature = "postgres", feature = "sqlite"))]
impl Databases {
    pub(crate) fn pools(&self) -> impl Iterator<Item = &Arc<DbPool>> {
        self.pools.iter()
    }

    pub(crate) fn get(&self, name: &str) -> Option<&Arc<DbPool>> {
        self.pools.iter().find(|p| p.name() == name)
    }

    pub(crate) fn default_pool(&self) -> Option<&Arc<DbPool>> {
        self.pools.first()
    }

    pub(crate) fn add_monitor(&self, monitor: Arc<Monitor>) {
        self.monitors
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(monitor);
    }
}

impl Databases {
    /// Shutdown steps 3 and 4: stop the background tasks, then close every pool
    /// (waiting until `until` for connections to come back).
    pub(crate) async fn close(&self, until: tokio::time::Instant) {
        #[cfg(any(feature = "postgres", feature = "sqlite"))]
        {
            let monitors =
                std::mem::take(&mut *self.monitors.lock().unwrap_or_else(PoisonError::into_inner));
            for monitor in monitors {
                monitor.stop().await;
            }
            for pool in &self.pools {
                pool.close(until).await;
            }
        }
        #[cfg(not(any(feature = "postgres", feature = "sqlite")))]
        let _ = until;
    }
}

/// The databases declared on a [`RuntimeBuilder`](crate::RuntimeBuilder).
#[derive(Debug, Default)]
pub(crate) struct DatabasesBuilder {
    #[cfg(any(feature = "postgres", feature = "sqlite"))]
    entries: Vec<(&'static str, DbConfig)>,
}

impl DatabasesBuilder {
    /// Everything wrong with the declared databases. `breaker_declared` tells whether the
    /// runtime will have a breaker of that name.
    pub(crate) fn problems(&self, breaker_declared: impl Fn(&str) -> bool) -> Vec<Problem> {
        let mut problems = Vec::new();
        #[cfg(any(feature = "postgres", feature = "sqlite"))]
        {
            let problem = |name: &str, message: String| Problem {
                operation: None,
                message: format!("database `{name}`: {message}"),
            };
            for (i, (name, config)) in self.entries.iter().enumerate() {
                if self.entries[..i].iter().any(|(n, _)| n == name) {
                    problems.push(problem(name, "declared twice".into()));
                }
                if let Err(e) = config.validate() {
                    problems.push(problem(name, e.to_string()));
                }
                if let Some(b) = config.health_breaker()
                    && !breaker_declared(b)
                {
                    problems.push(problem(
                        name,
                        format!(
                            "its health probes feed breaker `{b}`, which is not declared: \
                             declare it with `.breaker(\"{b}\", ..)` or set `DbConfig::breaker(None)`"
                        ),
                    ));
                }
            }
            if !self.entries.is_empty() && tokio::runtime::Handle::try_current().is_err() {
                problems.push(Problem {
                    operation: None,
                    message:
                        "database pools need a tokio runtime: build the resilience runtime inside \
                              `#[tokio::main]` (or `Handle::enter`)"
                            .into(),
                });
            }
        }
        #[cfg(not(any(feature = "postgres", feature = "sqlite")))]
        let _ = breaker_declared;
        problems
    }

    /// Creates the pools. Call only when [`problems`](Self::problems) found none.
    pub(crate) fn build(self) -> Databases {
        #[cfg(any(feature = "postgres", feature = "sqlite"))]
        {
            Databases {
                pools: self
                    .entries
                    .into_iter()
                    .map(|(name, config)| Arc::new(DbPool::new(name, config)))
                    .collect(),
                monitors: Mutex::new(Vec::new()),
            }
        }
        #[cfg(not(any(feature = "postgres", feature = "sqlite")))]
        Databases::default()
    }
}

#[cfg(any(feature = "postgres", feature = "sqlite"))]
impl RuntimeBuilder {
    /// Declares a named database pool. The first one declared is the default pool, the
    /// one [`db::conn`](crate::db::conn) uses; others are reached with
    /// [`db::conn_from`](crate::db::conn_from).
    ///
    /// Pools are created by [`build`](Self::build), which must then run inside a tokio
    /// runtime; they open no connection until the first checkout (unless
    /// [`min_idle`](DbConfig::min_idle) is set). `build` reports a configuration out of
    /// range, a name declared twice, and a health breaker that is not declared.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// use resilient_runtime::Runtime;
    /// use resilient_runtime::db::DbConfig;
    ///
    /// let rt = Runtime::builder()
    ///     .database("primary", DbConfig::from_env()?)
    ///     .database("reporting", DbConfig::parse("postgres://report@replica/app")?.max_size(2))
    ///     .build()?;
    /// # Ok(()) }
    /// ```
    pub fn database(mut self, name: &'static str, config: DbConfig) -> Self {
        self.databases.entries.push((name, config));
        self
    }
}

#[cfg(any(feature = "postgres", feature = "sqlite"))]
impl Runtime {
    /// The database pool with this name.
    pub fn pool(&self, name: &str) -> Option<&DbPool> {
        self.databases().get(name).map(|p| &**p)
    }

    /// The default database pool: the first one declared.
    pub fn default_pool(&self) -> Option<&DbPool> {
        self.databases().default_pool().map(|p| &**p)
    }

    /// Every database pool, in declaration order.
    pub fn pools(&self) -> impl Iterator<Item = &DbPool> {
        self.databases().pools().map(|p| &**p)
    }

    pub(crate) fn pool_arc(&self, name: Option<&str>) -> Result<Arc<DbPool>, super::DbError> {
        let db = self.databases();
        match name {
            None => db.default_pool().cloned().ok_or(super::DbError::NoPool),
            Some(name) => db
                .get(name)
                .cloned()
                .ok_or_else(|| super::DbError::UnknownPool {
                    name: name.to_string(),
                }),
        }
    }
}
