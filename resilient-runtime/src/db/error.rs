//! The error of getting a connection.

use std::fmt;
use std::time::Duration;

use super::config::Backend;

/// Getting a connection failed. Never contains a password: every message that may come
/// from the driver is redacted before it is stored here.
///
/// Its [`class`](crate::Classify::class) decides what the resilience layer does with it;
/// see the [classification table](crate::db#classification).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DbError {
    /// No runtime is installed for this task or process.
    NoRuntime,
    /// The runtime has no database pool at all.
    NoPool,
    /// The runtime has no pool with this name.
    UnknownPool {
        /// The name asked for.
        name: String,
    },
    /// No connection became available within the acquire timeout: every connection
    /// was busy, or new ones could not be opened (then `cause` says why, e.g.
    /// "connection refused"). Nothing was sent to the database.
    Unavailable {
        /// The pool's name.
        pool: &'static str,
        /// How long the checkout waited.
        waited: Duration,
        /// The last connection error seen by the pool within that time, redacted.
        cause: Option<String>,
        /// Connections open when the checkout gave up.
        connections: u32,
        /// Of those, idle ones.
        idle: u32,
        /// The pool size.
        max_size: u32,
    },
    /// The pool was closed by [`Runtime::shutdown`](crate::Runtime::shutdown).
    Closed {
        /// The pool's name.
        pool: &'static str,
    },
    /// A SQLite pool was used from a current-thread tokio runtime. diesel-async's
    /// `SyncConnectionWrapper` panics there as soon as a statement is cancelled (by any
    /// timeout), so the pool refuses up front.
    SqliteNeedsMultiThread {
        /// The pool's name.
        pool: &'static str,
    },
    /// [`Conn::pg`](crate::db::Conn::pg) or [`Conn::sqlite`](crate::db::Conn::sqlite)
    /// was called on a connection of the other backend.
    WrongBackend {
        /// The backend asked for.
        expected: Backend,
        /// The connection's backend.
        actual: Backend,
    },
}

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DbError::NoRuntime => f.write_str(
                "no resilient runtime is installed: call `Runtime::install_global` or run the call inside `Runtime::scope`",
            ),
            DbError::NoPool => f.write_str(
                "the resilient runtime has no database pool: add one with `Runtime::builder().database(\"default\", DbConfig::from_env()?)`",
            ),
            DbError::UnknownPool { name } => {
                write!(f, "the resilient runtime has no database pool named `{name}`")
            }
            DbError::Unavailable {
                pool,
                waited,
                cause,
                connections,
                idle,
                max_size,
            } => {
                write!(f, "database pool `{pool}` gave no connection within {waited:?}")?;
                match cause {
                    Some(cause) => write!(f, ": {cause}"),
                    None if connections >= max_size && idle == &0 => {
                        write!(f, ": all {max_size} connections are busy")
                    }
                    None => write!(f, " ({connections} open, {idle} idle, {max_size} max)"),
                }
            }
            DbError::Closed { pool } => {
                write!(f, "database pool `{pool}` is closed: the runtime has shut down")
            }
            DbError::SqliteNeedsMultiThread { pool } => write!(
                f,
                "database pool `{pool}` is SQLite, which needs tokio's multi-threaded runtime: use `#[tokio::main]` \
                 or `#[tokio::test(flavor = \"multi_thread\")]`, not a current-thread runtime"
            ),
            DbError::WrongBackend { expected, actual } => {
                write!(f, "the connection is {actual}, not {expected}")
            }
        }
    }
}

impl std::error::Error for DbError {}
