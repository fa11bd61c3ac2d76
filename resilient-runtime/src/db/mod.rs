//! Databases: named diesel-async connection pools (bb8) that keep working through failures.
//!
#![cfg_attr(all(feature = "postgres", feature = "sqlite"), doc = include_str!("guide.md"))]
#![cfg_attr(
    not(all(feature = "postgres", feature = "sqlite")),
    doc = "This build lacks the `postgres` or `sqlite` feature of `resilient-runtime`: the full \
           guide is shown with both. Without any, the module only classifies diesel's errors."
)]
// Items of a backend that is not compiled in are linked to from docs shared by both.
#![cfg_attr(
    not(all(feature = "postgres", feature = "sqlite")),
    allow(rustdoc::broken_intra_doc_links)
)]

mod classify;
mod config;
mod error;
mod runtime;

#[cfg(any(feature = "postgres", feature = "sqlite"))]
mod conn;
#[cfg(any(feature = "postgres", feature = "sqlite"))]
mod health;
#[cfg(any(feature = "postgres", feature = "sqlite"))]
mod observe;
#[cfg(any(feature = "postgres", feature = "sqlite"))]
mod persist;
#[cfg(any(feature = "postgres", feature = "sqlite"))]
mod pool;

pub use classify::{class_of_sqlstate, sqlstate};
pub use config::{Backend, ConfigError, DATABASE_URL, DbConfig, PROFILE_VAR, Profile};
pub use error::DbError;
pub(crate) use runtime::{Databases, DatabasesBuilder};

#[cfg(any(feature = "postgres", feature = "sqlite"))]
pub use conn::Conn;
#[cfg(feature = "postgres")]
pub use conn::PgConn;
#[cfg(feature = "sqlite")]
pub use conn::SqliteConn;
#[cfg(any(feature = "postgres", feature = "sqlite"))]
pub use health::{HealthReport, MonitorConfig, MonitorHandle};
#[cfg(any(feature = "postgres", feature = "sqlite"))]
pub use observe::{Activity, DatabaseHealth, HealthView, PoolHealth};
#[cfg(any(feature = "postgres", feature = "sqlite"))]
pub use persist::{METRICS_TABLE_POSTGRES, METRICS_TABLE_SQLITE, PersistConfig, PersistError};
#[cfg(feature = "postgres")]
pub use pool::AsyncPgConnection;
#[cfg(feature = "sqlite")]
pub use pool::AsyncSqliteConnection;
#[cfg(any(feature = "postgres", feature = "sqlite"))]
pub use pool::{DbPool, PoolStatus};

/// Checks a connection out of the default pool (the first declared) of the current
/// runtime: the runtime of the enclosing [`Runtime::scope`](crate::Runtime::scope), else
/// the global one.
///
/// Fails with [`DbError::NoRuntime`] outside any runtime, [`DbError::NoPool`] when the
/// runtime has no pool, and otherwise as [`DbPool::conn`] does.
///
#[cfg_attr(
    feature = "postgres",
    doc = r#"
```no_run
# async fn demo() -> Result<(), Box<dyn std::error::Error>> {
use diesel_async::RunQueryDsl;

let mut conn = resilient_runtime::db::conn().await?;
diesel::sql_query("SELECT 1").execute(conn.pg()?).await?;
# Ok(()) }
```
"#
)]
#[cfg(any(feature = "postgres", feature = "sqlite"))]
pub async fn conn() -> Result<Conn, DbError> {
    current_pool(None)?.conn().await
}

/// Checks a connection out of the pool named `name` of the current runtime (see [`conn`]).
/// Fails with [`DbError::UnknownPool`] when there is no such pool.
#[cfg(any(feature = "postgres", feature = "sqlite"))]
pub async fn conn_from(name: &str) -> Result<Conn, DbError> {
    current_pool(Some(name))?.conn().await
}

#[cfg(any(feature = "postgres", feature = "sqlite"))]
fn current_pool(name: Option<&str>) -> Result<std::sync::Arc<DbPool>, DbError> {
    let current = crate::RuntimeRef::current();
    let rt = current.get().ok_or(DbError::NoRuntime)?;
    rt.pool_arc(name)
}
