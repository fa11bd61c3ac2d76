//! Checked-out connections, and what happens when an attempt holding one is cancelled.

use std::fmt;
use std::ops::{Deref, DerefMut};

use super::config::Backend;
use super::error::DbError;

#[cfg(feature = "postgres")]
use super::pool::{AsyncPgConnection, PgManager};
#[cfg(feature = "sqlite")]
use super::pool::{AsyncSqliteConnection, SqliteManager};

/// A connection checked out of a pool, typed by backend. Dropping it returns it to the pool.
///
/// Repository code that targets one backend takes the diesel-async connection with
/// [`pg`](Self::pg) or [`sqlite`](Self::sqlite); code that supports both matches on
/// the variants, whose payloads dereference to the diesel-async connection types.
///
#[cfg_attr(
    feature = "postgres",
    doc = r#"
```no_run
use diesel_async::RunQueryDsl;
# async fn demo() -> Result<(), Box<dyn std::error::Error>> {
let mut conn = resilient_runtime::db::conn().await?;
diesel::sql_query("UPDATE users SET seen = now()").execute(conn.pg()?).await?;
# Ok(()) }
```
"#
)]
#[non_exhaustive]
// A `Conn` lives for one attempt, on its stack; boxing the larger variant would cost an
// allocation per checkout.
#[allow(clippy::large_enum_variant)]
pub enum Conn {
    /// A PostgreSQL connection.
    #[cfg(feature = "postgres")]
    Postgres(PgConn),
    /// A SQLite connection.
    #[cfg(feature = "sqlite")]
    Sqlite(SqliteConn),
}

impl Conn {
    /// The connection's backend.
    pub fn backend(&self) -> Backend {
        match self {
            #[cfg(feature = "postgres")]
            Conn::Postgres(_) => Backend::Postgres,
            #[cfg(feature = "sqlite")]
            Conn::Sqlite(_) => Backend::Sqlite,
        }
    }

    /// The name of the pool it came from.
    pub fn pool(&self) -> &'static str {
        match self {
            #[cfg(feature = "postgres")]
            Conn::Postgres(c) => c.pool,
            #[cfg(feature = "sqlite")]
            Conn::Sqlite(c) => c.pool,
        }
    }

    /// The PostgreSQL connection, or [`DbError::WrongBackend`].
    #[cfg(feature = "postgres")]
    pub fn pg(&mut self) -> Result<&mut AsyncPgConnection, DbError> {
        let actual = self.backend();
        match self {
            Conn::Postgres(c) => Ok(c),
            #[allow(unreachable_patterns)]
            _ => Err(DbError::WrongBackend {
                expected: Backend::Postgres,
                actual,
            }),
        }
    }

    /// The SQLite connection, or [`DbError::WrongBackend`].
    #[cfg(feature = "sqlite")]
    pub fn sqlite(&mut self) -> Result<&mut AsyncSqliteConnection, DbError> {
        let actual = self.backend();
        match self {
            Conn::Sqlite(c) => Ok(c),
            #[allow(unreachable_patterns)]
            _ => Err(DbError::WrongBackend {
                expected: Backend::Sqlite,
                actual,
            }),
        }
    }
}

impl fmt::Debug for Conn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Conn")
            .field("backend", &self.backend())
            .field("pool", &self.pool())
            .finish()
    }
}

// ===== PostgreSQL =====

#[cfg(feature = "postgres")]
type PgPooled = bb8::PooledConnection<'static, PgManager>;

/// A checked-out PostgreSQL connection. Dereferences to diesel-async's
/// [`AsyncPgConnection`].
///
/// # Cancellation
///
/// When it is dropped because its attempt was cancelled (attempt timeout, deadline, or
/// the caller dropped the call: see [`timeout::is_cancelling`](crate::timeout::is_cancelling)),
/// the server may still be running its statement. It then does not go straight back
/// to the pool. A spawned task:
///
/// 1. sends PostgreSQL's cancel request for the connection's backend, and waits until
///    the server has acted on it (the server closes the cancel socket only after it
///    has signalled the backend; tokio-postgres' own `cancel_query` returns before
///    that, so a late cancel could hit the next user's query);
/// 2. runs `SELECT 1`, which the server answers only once the cancelled statement has
///    ended;
/// 3. returns the connection to the pool.
///
/// If any step fails or takes too long (or no tokio runtime is left to run the task),
/// the connection is discarded instead. A connection dropped inside `transaction()` is
/// discarded by diesel-async in any case, since its transaction state is unknown; the
/// cancel request still stops its statement on the server.
///
/// Only the runtime's own cancellations are recognized. Code that bounds a query
/// itself should use [`timeout::with_timeout`](crate::timeout::with_timeout) rather
/// than `tokio::time::timeout`, whose drop looks like an ordinary return.
#[cfg(feature = "postgres")]
pub struct PgConn {
    conn: Option<PgPooled>,
    pool: &'static str,
    shared: std::sync::Arc<super::pool::Shared>,
}

#[cfg(feature = "postgres")]
impl PgConn {
    pub(crate) fn new(conn: PgPooled, shared: std::sync::Arc<super::pool::Shared>) -> Self {
        PgConn {
            conn: Some(conn),
            pool: shared.name,
            shared,
        }
    }
}

#[cfg(feature = "postgres")]
impl Deref for PgConn {
    type Target = AsyncPgConnection;

    fn deref(&self) -> &AsyncPgConnection {
        match &self.conn {
            Some(c) => c,
            None => unreachable!("taken only in drop"),
        }
    }
}

#[cfg(feature = "postgres")]
impl DerefMut for PgConn {
    fn deref_mut(&mut self) -> &mut AsyncPgConnection {
        match &mut self.conn {
            Some(c) => c,
            None => unreachable!("taken only in drop"),
        }
    }
}

#[cfg(feature = "postgres")]
impl fmt::Debug for PgConn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgConn")
            .field("pool", &self.pool)
            .finish_non_exhaustive()
    }
}

/// How long the cancel request for a cancelled attempt's statement may take.
#[cfg(feature = "postgres")]
const CANCEL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// How long the cancelled statement may take to end once the cancel was delivered.
#[cfg(feature = "postgres")]
const SETTLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

#[cfg(feature = "postgres")]
impl Drop for PgConn {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else { return };
        if !crate::timeout::is_cancelling() {
            return; // back to the pool
        }
        // Until the connection is known to be idle, it is to be discarded, not reused:
        // if the task below never runs, dropping `held` discards the connection.
        let mut held = Held {
            conn: Some(conn),
            reusable: false,
        };
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let shared = std::sync::Arc::clone(&self.shared);
        handle.spawn(async move {
            let Some(conn) = held.conn.as_mut() else {
                return;
            };
            match settle(conn, shared.cancel_target.as_ref()).await {
                Ok(()) => {
                    held.reusable = true;
                    tracing::debug!(
                        pool = shared.name,
                        "cancelled the statement of a cancelled attempt"
                    );
                }
                Err(reason) => {
                    tracing::warn!(
                        pool = shared.name,
                        reason,
                        "discarding the connection of a cancelled attempt"
                    );
                }
            }
            drop(held); // back to the pool, or discarded
        });
    }
}

/// Where a pool's server takes cancel requests: the one host its connections go to.
#[cfg(feature = "postgres")]
#[derive(Debug, Clone)]
pub(crate) enum CancelTarget {
    Tcp {
        host: String,
        port: u16,
    },
    #[cfg(unix)]
    Unix {
        path: std::path::PathBuf,
    },
}

#[cfg(feature = "postgres")]
impl CancelTarget {
    /// `None` for a configuration naming several hosts: we cannot tell which one a
    /// connection went to, so its connections are discarded rather than settled.
    pub(crate) fn of(pg: &tokio_postgres::Config) -> Option<CancelTarget> {
        use tokio_postgres::config::Host;
        let (hosts, addrs) = (pg.get_hosts(), pg.get_hostaddrs());
        if hosts.len() > 1 || addrs.len() > 1 || pg.get_ports().len() > 1 {
            return None;
        }
        let port = pg.get_ports().first().copied().unwrap_or(5432);
        if let Some(ip) = addrs.first() {
            return Some(CancelTarget::Tcp {
                host: ip.to_string(),
                port,
            });
        }
        match hosts.first()? {
            Host::Tcp(host) => Some(CancelTarget::Tcp {
                host: host.clone(),
                port,
            }),
            #[cfg(unix)]
            Host::Unix(dir) => Some(CancelTarget::Unix {
                path: dir.join(format!(".s.PGSQL.{port}")),
            }),
        }
    }

    /// Sends the cancel request and waits until the server has acted on it.
    async fn cancel(&self, token: &tokio_postgres::CancelToken) -> std::io::Result<()> {
        async fn send<S>(mut stream: S, token: &tokio_postgres::CancelToken) -> std::io::Result<()>
        where
            S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
        {
            use tokio::io::AsyncReadExt;
            token
                .cancel_query_raw(&mut stream, tokio_postgres::NoTls)
                .await
                .map_err(std::io::Error::other)?;
            // The server signals the backend, then closes the socket.
            stream.read_to_end(&mut Vec::new()).await.map(drop)
        }
        match self {
            CancelTarget::Tcp { host, port } => {
                send(
                    tokio::net::TcpStream::connect((host.as_str(), *port)).await?,
                    token,
                )
                .await
            }
            #[cfg(unix)]
            CancelTarget::Unix { path } => {
                send(tokio::net::UnixStream::connect(path).await?, token).await
            }
        }
    }
}

/// Cancels whatever statement `conn` runs on the server and makes sure the server side
/// is idle again. `Ok` means the connection can be reused.
#[cfg(feature = "postgres")]
async fn settle(
    conn: &mut AsyncPgConnection,
    target: Option<&CancelTarget>,
) -> Result<(), &'static str> {
    use diesel_async::{AnsiTransactionManager, RunQueryDsl, TransactionManager};
    use tokio::time::timeout;

    let token = conn.cancel_token();
    let Some(target) = target else {
        // Stop the statement anyway; without confirmation the connection is not reused.
        let _ = timeout(CANCEL_TIMEOUT, token.cancel_query(tokio_postgres::NoTls)).await;
        return Err("the server of this connection is not known for sure");
    };
    // Two rounds: a statement whose bytes were still on their way when the first cancel
    // arrived was not running yet, so the server ignored that cancel; by the second
    // round it runs (our `SELECT 1` queues behind it), and the second cancel stops it.
    for round in 0..2 {
        match timeout(CANCEL_TIMEOUT, target.cancel(&token)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err("the cancel request failed"),
            Err(_) => return Err("the cancel request timed out"),
        }
        if round == 0 {
            let status =
                <AnsiTransactionManager as TransactionManager<AsyncPgConnection>>::transaction_manager_status_mut(
                    conn,
                );
            if !matches!(status.transaction_depth(), Ok(None)) {
                // Dropped inside `transaction()`: diesel-async reports it broken and bb8
                // drops it; the cancel has stopped its statement.
                return Ok(());
            }
        }
        // Responses come in order: this answers only after the cancelled statement has ended.
        match timeout(
            SETTLE_TIMEOUT,
            diesel::sql_query("SELECT 1").execute(&mut *conn),
        )
        .await
        {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(_)) => return Err("the connection failed after the cancel"),
            Err(_) => {}
        }
    }
    Err("the statement was still running after two cancels")
}

/// A connection on its way back to the pool after its attempt was cancelled.
#[cfg(feature = "postgres")]
struct Held {
    conn: Option<PgPooled>,
    reusable: bool,
}

#[cfg(feature = "postgres")]
impl Drop for Held {
    fn drop(&mut self) {
        if let Some(mut conn) = self.conn.take()
            && !self.reusable
        {
            use diesel_async::{AnsiTransactionManager, TransactionManager};
            // bb8 has no way to discard a checked-out connection, but it drops any
            // connection diesel-async reports as broken when it comes back.
            <AnsiTransactionManager as TransactionManager<AsyncPgConnection>>::transaction_manager_status_mut(
                &mut conn,
            )
            .set_in_error();
        }
    }
}

// ===== SQLite =====

#[cfg(feature = "sqlite")]
type SqlitePooled = bb8::PooledConnection<'static, SqliteManager>;

/// A checked-out SQLite connection. Dereferences to [`AsyncSqliteConnection`].
///
/// # Cancellation
///
/// A SQLite statement runs on tokio's blocking pool and **cannot be interrupted**:
/// diesel-async's wrapper blocks the dropping thread until the statement has finished,
/// so an attempt timeout fires late when a single statement is slow (the statement
/// completes, or fails with "database is locked" after
/// [`busy_timeout`](crate::db::DbConfig::busy_timeout) when it waits for a lock). What
/// cancellation does guarantee: a connection dropped inside `transaction()` is
/// discarded, never reused mid-transaction. Keep SQLite statements short, or use
/// PostgreSQL where timeouts must be exact.
#[cfg(feature = "sqlite")]
pub struct SqliteConn {
    conn: SqlitePooled,
    pool: &'static str,
}

#[cfg(feature = "sqlite")]
impl SqliteConn {
    pub(crate) fn new(conn: SqlitePooled, pool: &'static str) -> Self {
        SqliteConn { conn, pool }
    }
}

#[cfg(feature = "sqlite")]
impl Deref for SqliteConn {
    type Target = AsyncSqliteConnection;

    fn deref(&self) -> &AsyncSqliteConnection {
        &self.conn
    }
}

#[cfg(feature = "sqlite")]
impl DerefMut for SqliteConn {
    fn deref_mut(&mut self) -> &mut AsyncSqliteConnection {
        &mut self.conn
    }
}

#[cfg(feature = "sqlite")]
impl fmt::Debug for SqliteConn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteConn")
            .field("pool", &self.pool)
            .finish_non_exhaustive()
    }
}
