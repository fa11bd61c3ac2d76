//! Named bb8 pools of diesel-async connections, and how they open connections.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, PoolError, RecyclingMethod,
};

use super::config::{Backend, DbConfig, Redactor, Target};
use super::conn::Conn;
use super::error::DbError;
use super::health::HealthReport;

/// diesel-async's PostgreSQL connection (tokio-postgres underneath, no libpq).
#[cfg(feature = "postgres")]
pub type AsyncPgConnection = diesel_async::AsyncPgConnection;

/// diesel-async's SQLite connection: a blocking `SqliteConnection` run on tokio's
/// blocking thread pool.
#[cfg(feature = "sqlite")]
pub type AsyncSqliteConnection =
    diesel_async::sync_connection_wrapper::SyncConnectionWrapper<diesel::SqliteConnection>;

#[cfg(feature = "postgres")]
pub(crate) type PgManager = AsyncDieselConnectionManager<AsyncPgConnection>;
#[cfg(feature = "sqlite")]
pub(crate) type SqliteManager = AsyncDieselConnectionManager<AsyncSqliteConnection>;

/// The bb8 pool behind a [`DbPool`], by backend.
#[derive(Clone)]
enum Backed {
    #[cfg(feature = "postgres")]
    Postgres(bb8::Pool<PgManager>),
    #[cfg(feature = "sqlite")]
    Sqlite(bb8::Pool<SqliteManager>),
}

impl Backed {
    fn state(&self) -> bb8::State {
        match self {
            #[cfg(feature = "postgres")]
            Backed::Postgres(p) => p.state(),
            #[cfg(feature = "sqlite")]
            Backed::Sqlite(p) => p.state(),
        }
    }
}

/// What a pool shares with its error sink and its connections.
pub(crate) struct Shared {
    pub(crate) name: &'static str,
    pub(crate) redactor: Redactor,
    last_error: Mutex<Option<(Instant, String)>>,
    pub(crate) last_health: Mutex<Option<HealthReport>>,
    /// Where to send PostgreSQL cancel requests (`None` when it cannot be known).
    #[cfg(feature = "postgres")]
    pub(crate) cancel_target: Option<super::conn::CancelTarget>,
}

impl Shared {
    fn record_error(&self, message: String) {
        let mut last = self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let repeated = last.as_ref().is_some_and(|(_, m)| *m == message);
        if repeated {
            tracing::debug!(pool = self.name, error = %message, "database connection failed again");
        } else {
            tracing::warn!(pool = self.name, error = %message, "database connection failed");
        }
        *last = Some((Instant::now(), message));
    }

    /// The last error, if it is younger than `within`.
    pub(crate) fn recent_error(&self, within: Duration) -> Option<String> {
        let last = self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        last.as_ref()
            .filter(|(at, _)| at.elapsed() <= within)
            .map(|(_, m)| m.clone())
    }
}

/// bb8 reports a connection that cannot be opened only here: `get()` itself just times
/// out. The sink keeps the last error (redacted) so that the caller's error and the
/// logs can say why.
#[derive(Clone)]
struct Sink(Arc<Shared>);

impl fmt::Debug for Sink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sink({})", self.0.name)
    }
}

impl bb8::ErrorSink<PoolError> for Sink {
    fn sink(&self, error: PoolError) {
        let message = match &error {
            PoolError::ConnectionError(e) => e.to_string(),
            PoolError::QueryError(e) => format!("a pooled connection failed its check: {e}"),
        };
        self.0.record_error(self.0.redactor.redact(&message));
    }

    fn boxed_clone(&self) -> Box<dyn bb8::ErrorSink<PoolError>> {
        Box::new(self.clone())
    }
}

/// A named connection pool: a bb8 pool of diesel-async connections plus what the
/// resilience layer needs around it (the last connection error, the last health report).
///
/// Get one from the runtime with [`Runtime::pool`](crate::Runtime::pool); repository
/// code usually calls [`db::conn`](crate::db::conn) instead.
///
/// # Recycling
///
/// Connections are replaced one at a time, never all at once:
///
/// - every checkout first runs `SELECT 1` on the connection (bb8's `test_on_check_out`
///   with diesel-async's `RecyclingMethod::Verified`); a connection that fails it is
///   dropped and another one is taken or opened, so a restarted server or a killed
///   backend costs the caller nothing;
/// - a connection older than [`max_lifetime`](DbConfig::max_lifetime) is closed when it is
///   returned (or by the reaper while idle), which bounds per-connection server memory
///   and statements leaked by cancelled prepares;
/// - a connection idle for [`idle_timeout`](DbConfig::idle_timeout) is closed by the reaper.
///
/// The seed's hourly "disconnect everything" is deliberately absent: it dropped work
/// in flight and made every instance reconnect at the same moment.
pub struct DbPool {
    name: &'static str,
    config: DbConfig,
    backed: Mutex<Option<Backed>>,
    shared: Arc<Shared>,
}

impl DbPool {
    /// Creates the pool. Opens nothing unless [`min_idle`](DbConfig::min_idle) asks for
    /// it; must run inside a tokio runtime (bb8 spawns its reaper).
    pub(crate) fn new(name: &'static str, config: DbConfig) -> DbPool {
        let shared = Arc::new(Shared {
            name,
            redactor: config.redactor.clone(),
            last_error: Mutex::new(None),
            last_health: Mutex::new(None),
            #[cfg(feature = "postgres")]
            cancel_target: match &config.target {
                Target::Postgres(pg) => super::conn::CancelTarget::of(pg),
                #[allow(unreachable_patterns)]
                _ => None,
            },
        });
        let backed = match &config.target {
            #[cfg(feature = "postgres")]
            Target::Postgres(pg) => {
                Backed::Postgres(build(&config, &shared, pg_manager(&config, pg)))
            }
            #[cfg(feature = "sqlite")]
            Target::Sqlite { path, .. } => Backed::Sqlite(build(
                &config,
                &shared,
                sqlite_manager(&config, path.clone()),
            )),
        };
        tracing::debug!(pool = name, config = %config, "database pool created");
        DbPool {
            name,
            config,
            backed: Mutex::new(Some(backed)),
            shared,
        }
    }

    /// The pool's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The pool's configuration.
    pub fn config(&self) -> &DbConfig {
        &self.config
    }

    /// The pool's backend.
    pub fn backend(&self) -> Backend {
        self.config.backend()
    }

    /// Checks out a connection: waits up to the acquire timeout for an idle one (verified
    /// with `SELECT 1`) or a new one.
    ///
    /// Fails with [`DbError::Unavailable`] when none comes (its `cause` holds the last
    /// connection error), [`DbError::Closed`] after shutdown, and
    /// [`DbError::SqliteNeedsMultiThread`] for SQLite on a current-thread runtime.
    pub async fn conn(&self) -> Result<Conn, DbError> {
        let backed = self.backed()?;
        match backed {
            #[cfg(feature = "postgres")]
            Backed::Postgres(pool) => {
                let c = pool
                    .get_owned()
                    .await
                    .map_err(|e| self.unavailable(&pool, e))?;
                Ok(Conn::Postgres(super::conn::PgConn::new(
                    c,
                    Arc::clone(&self.shared),
                )))
            }
            #[cfg(feature = "sqlite")]
            Backed::Sqlite(pool) => {
                ensure_multi_thread(self.name)?;
                let c = pool
                    .get_owned()
                    .await
                    .map_err(|e| self.unavailable(&pool, e))?;
                Ok(Conn::Sqlite(super::conn::SqliteConn::new(c, self.name)))
            }
        }
    }

    fn backed(&self) -> Result<Backed, DbError> {
        self.backed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .ok_or(DbError::Closed { pool: self.name })
    }

    fn unavailable<M>(&self, pool: &bb8::Pool<M>, error: bb8::RunError<PoolError>) -> DbError
    where
        M: bb8::ManageConnection<Error = PoolError>,
    {
        let waited = self.config.pool_acquire_timeout();
        let cause = match error {
            bb8::RunError::User(e) => Some(self.shared.redactor.redact(&e.to_string())),
            // A second of slack: the error may have been recorded just before the wait began.
            bb8::RunError::TimedOut => self.shared.recent_error(waited + Duration::from_secs(1)),
        };
        let state = pool.state();
        let error = DbError::Unavailable {
            pool: self.name,
            waited,
            cause,
            connections: state.connections,
            idle: state.idle_connections,
            max_size: self.config.pool_size(),
        };
        tracing::warn!(pool = self.name, %error, "database checkout failed");
        error
    }

    /// The last error met while opening or verifying a connection (redacted), if any.
    pub fn last_error(&self) -> Option<String> {
        self.shared.recent_error(Duration::MAX)
    }

    /// The last health report of [`check`](Self::check), [`probe`](Self::probe) or the monitor.
    pub fn last_health(&self) -> Option<HealthReport> {
        self.shared
            .last_health
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn shared(&self) -> &Shared {
        &self.shared
    }

    /// Whether [`Runtime::shutdown`](crate::Runtime::shutdown) has closed the pool.
    pub fn is_closed(&self) -> bool {
        self.backed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_none()
    }

    /// Counters of the pool right now.
    pub fn status(&self) -> PoolStatus {
        let backed = self
            .backed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let mut status = PoolStatus {
            name: self.name,
            backend: self.backend(),
            max_size: self.config.pool_size(),
            closed: backed.is_none(),
            connections: 0,
            idle: 0,
            gets: 0,
            gets_waited: 0,
            gets_timed_out: 0,
            connections_created: 0,
            closed_broken: 0,
            closed_invalid: 0,
            closed_max_lifetime: 0,
            closed_idle_timeout: 0,
            last_error: self.last_error(),
        };
        if let Some(b) = backed {
            let s = b.state();
            status.connections = s.connections;
            status.idle = s.idle_connections;
            status.gets =
                s.statistics.get_direct + s.statistics.get_waited + s.statistics.get_timed_out;
            status.gets_waited = s.statistics.get_waited;
            status.gets_timed_out = s.statistics.get_timed_out;
            status.connections_created = s.statistics.connections_created;
            status.closed_broken = s.statistics.connections_closed_broken;
            status.closed_invalid = s.statistics.connections_closed_invalid;
            status.closed_max_lifetime = s.statistics.connections_closed_max_lifetime;
            status.closed_idle_timeout = s.statistics.connections_closed_idle_timeout;
        }
        status
    }

    /// Shutdown step 4: no new checkouts; waits until every connection is back (or
    /// `until`), then drops the pool, which closes the idle connections. Connections
    /// still out close when they are returned.
    pub(crate) async fn close(&self, until: tokio::time::Instant) {
        let Some(backed) = self
            .backed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        else {
            return;
        };
        loop {
            let s = backed.state();
            let in_use = s.connections.saturating_sub(s.idle_connections);
            if in_use == 0 {
                break;
            }
            if tokio::time::Instant::now() >= until {
                tracing::warn!(
                    pool = self.name,
                    in_use,
                    "closing the pool with connections in use: they close when returned"
                );
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        drop(backed);
        tracing::info!(pool = self.name, "database pool closed");
    }
}

impl fmt::Debug for DbPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DbPool")
            .field("name", &self.name)
            .field("config", &self.config)
            .field("closed", &self.is_closed())
            .finish()
    }
}

/// A point-in-time view of a [`DbPool`], for logs and admin pages.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct PoolStatus {
    /// The pool's name.
    pub name: &'static str,
    /// Its backend.
    pub backend: Backend,
    /// The pool size.
    pub max_size: u32,
    /// Whether the pool was closed by shutdown.
    pub closed: bool,
    /// Connections open.
    pub connections: u32,
    /// Of those, idle.
    pub idle: u32,
    /// Checkouts completed or timed out.
    pub gets: u64,
    /// Checkouts that had to wait.
    pub gets_waited: u64,
    /// Checkouts that timed out.
    pub gets_timed_out: u64,
    /// Connections opened.
    pub connections_created: u64,
    /// Connections dropped because they were broken (e.g. left inside a cancelled transaction).
    pub closed_broken: u64,
    /// Connections dropped because the checkout `SELECT 1` failed.
    pub closed_invalid: u64,
    /// Connections closed at the end of their lifetime.
    pub closed_max_lifetime: u64,
    /// Connections closed after idling too long.
    pub closed_idle_timeout: u64,
    /// The last connection error (redacted).
    pub last_error: Option<String>,
}

fn build<M>(config: &DbConfig, shared: &Arc<Shared>, manager: M) -> bb8::Pool<M>
where
    M: bb8::ManageConnection<Error = PoolError>,
{
    bb8::Pool::builder()
        .max_size(config.pool_size())
        .min_idle(config.pool_min_idle())
        .connection_timeout(config.pool_acquire_timeout())
        .max_lifetime(config.pool_max_lifetime())
        .idle_timeout(config.pool_idle_timeout())
        .test_on_check_out(true)
        .retry_connection(true)
        .error_sink(Box::new(Sink(Arc::clone(shared))))
        .build_unchecked(manager)
}

#[cfg(feature = "sqlite")]
fn ensure_multi_thread(pool: &'static str) -> Result<(), DbError> {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() != tokio::runtime::RuntimeFlavor::CurrentThread => Ok(()),
        _ => Err(DbError::SqliteNeedsMultiThread { pool }),
    }
}

// ===== PostgreSQL =====

#[cfg(feature = "postgres")]
fn pg_manager(config: &DbConfig, pg: &tokio_postgres::Config) -> PgManager {
    use diesel::ConnectionError;

    let mut pg = pg.clone();
    pg.application_name(config.pool_application_name());
    if let Some(st) = config.pool_statement_timeout() {
        // Our setting first, so that `-c statement_timeout` in the URL's own options wins.
        let ours = format!("-c statement_timeout={}", st.as_millis());
        let options = match pg.get_options() {
            Some(theirs) if !theirs.trim().is_empty() => format!("{ours} {theirs}"),
            _ => ours,
        };
        pg.options(options);
    }
    if pg.get_connect_timeout().is_none() {
        // bb8 bounds the caller's wait but not one connect attempt: a black-holed host
        // would hold a pool slot for the length of a TCP timeout.
        pg.connect_timeout(config.pool_acquire_timeout());
    }
    let pg = Arc::new(pg);
    let redactor = config.redactor.clone();
    let mut manager_config = ManagerConfig::<AsyncPgConnection>::default();
    manager_config.recycling_method = RecyclingMethod::Verified;
    manager_config.custom_setup = Box::new(move |_url| {
        let pg = Arc::clone(&pg);
        let redactor = redactor.clone();
        Box::pin(async move {
            let (client, connection) = pg.connect(tokio_postgres::NoTls).await.map_err(|e| {
                ConnectionError::BadConnection(redactor.redact(&super::config::error_chain(&e)))
            })?;
            AsyncPgConnection::try_from_client_and_connection(client, connection).await
        })
    });
    // The manager never sees the password: our setup ignores the URL it is given.
    AsyncDieselConnectionManager::new_with_config(config.redacted_url(), manager_config)
}

// ===== SQLite =====

#[cfg(feature = "sqlite")]
fn sqlite_manager(config: &DbConfig, path: String) -> SqliteManager {
    use diesel::ConnectionError;
    use diesel_async::{AsyncConnection, SimpleAsyncConnection};

    let pragmas = format!(
        "PRAGMA busy_timeout = {}; PRAGMA foreign_keys = ON;{}",
        config.pool_busy_timeout().as_millis(),
        // WAL lets readers run while a writer writes; it needs a file.
        if config.is_memory() {
            ""
        } else {
            " PRAGMA journal_mode = WAL;"
        }
    );
    let mut manager_config = ManagerConfig::<AsyncSqliteConnection>::default();
    manager_config.recycling_method = RecyclingMethod::Verified;
    manager_config.custom_setup = Box::new(move |_url| {
        let path = path.clone();
        let pragmas = pragmas.clone();
        Box::pin(async move {
            let mut conn = AsyncSqliteConnection::establish(&path).await?;
            conn.batch_execute(&pragmas)
                .await
                .map_err(ConnectionError::CouldntSetupConfiguration)?;
            Ok(conn)
        })
    });
    AsyncDieselConnectionManager::new_with_config(config.redacted_url(), manager_config)
}
