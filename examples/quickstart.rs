//! The quickstart: a `UserRepository` whose methods run under resilience policies.
//!
//! ```sh
//! cargo run --example quickstart                      # an embedded SQLite file
//! DATABASE_URL=postgres://postgres@127.0.0.1/test \
//!     cargo run --example quickstart                  # PostgreSQL
//! ```
//!
//! It creates its table itself, runs every repository method once, and prints what
//! happened: health, results, errors and how they were classified, the breaker and the
//! bulkheads, and the graceful shutdown.

use std::error::Error;
use std::time::Duration;

use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use resilient::breaker::BreakerState;
use resilient::db::{self, Backend, Conn, DATABASE_URL, DbConfig, DbError};
use resilient::{Classify, ErrorClass, Rejection, Runtime, resilient};

diesel::table! {
    quickstart_users (id) {
        id -> BigInt,
        email -> Text,
        name -> Text,
    }
}

use quickstart_users as users;

/// A stored user.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = users)]
pub struct User {
    pub id: i64,
    pub email: String,
    pub name: String,
}

/// A user to create. `Clone`: a retried `create` runs again with a fresh copy.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = users)]
pub struct NewUser {
    pub email: String,
    pub name: String,
}

/// The repository's error: its own cases, plus what the database and the resilience
/// layer can say.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    #[error("user {0} not found")]
    NotFound(i64),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Query(#[from] diesel::result::Error),
    #[error(transparent)]
    Resilience(#[from] Rejection),
}

impl Classify for RepoError {
    fn class(&self) -> ErrorClass {
        match self {
            RepoError::NotFound(_) => ErrorClass::Caller,
            RepoError::Db(e) => e.class(),
            RepoError::Query(e) => e.class(),
            RepoError::Resilience(r) => r.class(),
        }
    }
}

/// Runs the same diesel code on whichever backend the connection has: `$c` is the
/// diesel-async connection inside each arm.
macro_rules! on_conn {
    ($conn:expr, |$c:ident| $body:expr) => {
        match $conn {
            Conn::Postgres(pg) => {
                let $c = &mut **pg;
                $body
            }
            Conn::Sqlite(sqlite) => {
                let $c = &mut **sqlite;
                $body
            }
            other => {
                return Err(RepoError::Db(DbError::WrongBackend {
                    expected: Backend::Postgres,
                    actual: other.backend(),
                }))
            }
        }
    };
}

/// Users, stored in the default pool of the current runtime.
pub struct UserRepository;

#[resilient]
impl UserRepository {
    /// Read policy (5 s timeout, 3 attempts, `read` bulkhead), cached for 30 minutes; when
    /// the database is in trouble, the last value is served for up to 24 hours more.
    #[resilient(policy = "read", cache = "user:<id>", ttl_s = 1800, stale_s = 86400)]
    pub async fn find_by_id(&self, id: i64) -> Result<User, RepoError> {
        let mut conn = db::conn().await?;
        let found = on_conn!(&mut conn, |c| users::table
            .find(id)
            .select(User::as_select())
            .first(c)
            .await
            .optional())?;
        found.ok_or(RepoError::NotFound(id))
    }

    /// Write policy, up to 6 attempts 200 ms apart (with backoff). Each attempt checks out
    /// a connection and runs the *whole* transaction: retry sits outside the
    /// transaction, so a deadlock or a serialization failure re-runs all of it.
    #[resilient(policy = "write", retry = 5, delay_ms = 200)]
    pub async fn create(&self, new: NewUser) -> Result<User, RepoError> {
        let mut conn = db::conn().await?;
        on_conn!(&mut conn, |c| c
            .transaction::<_, RepoError, _>(async |c| {
                diesel::insert_into(users::table)
                    .values(&new)
                    .execute(c)
                    .await?;
                Ok(users::table
                    .filter(users::email.eq(&new.email))
                    .select(User::as_select())
                    .first(c)
                    .await?)
            })
            .await)
    }

    /// Write policy: an ambiguous failure (the update may have been applied) is not
    /// retried. Invalidates the user's cache entry after success (and after an ambiguous
    /// failure), so no caller reads the value it replaced.
    #[resilient(policy = "write", invalidate = "user:<id>")]
    pub async fn update(&self, id: i64, name: String) -> Result<User, RepoError> {
        let mut conn = db::conn().await?;
        let updated = on_conn!(&mut conn, |c| c
            .transaction::<_, RepoError, _>(async |c| {
                let n = diesel::update(users::table.find(id))
                    .set(users::name.eq(&name))
                    .execute(c)
                    .await?;
                if n == 0 {
                    return Ok(None);
                }
                Ok(Some(
                    users::table
                        .find(id)
                        .select(User::as_select())
                        .first(c)
                        .await?,
                ))
            })
            .await)?;
        updated.ok_or(RepoError::NotFound(id))
    }

    /// A report on the `report` bulkhead (5 at once, 10 waiting), 30 s, no retry:
    /// users per email domain.
    #[resilient(policy = "report")]
    pub async fn users_per_domain(&self) -> Result<Vec<(String, i64)>, RepoError> {
        #[derive(QueryableByName)]
        struct Row {
            #[diesel(sql_type = diesel::sql_types::Text)]
            domain: String,
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            users: i64,
        }
        let mut conn = db::conn().await?;
        let domain = match conn.backend() {
            Backend::Postgres => "split_part(email, '@', 2)",
            _ => "substr(email, instr(email, '@') + 1)",
        };
        let sql = format!(
            "SELECT {domain} AS domain, count(*) AS users FROM quickstart_users GROUP BY 1 ORDER BY 2 DESC, 1"
        );
        let rows: Vec<Row> = on_conn!(&mut conn, |c| diesel::sql_query(&sql).load(c).await)?;
        Ok(rows.into_iter().map(|r| (r.domain, r.users)).collect())
    }
}

/// Creates the table if it is missing (each backend spells the key its own way).
async fn create_schema() -> Result<(), RepoError> {
    let mut conn = db::conn().await?;
    let ddl = match conn.backend() {
        Backend::Postgres => {
            "CREATE TABLE IF NOT EXISTS quickstart_users (id BIGSERIAL PRIMARY KEY, email TEXT NOT NULL UNIQUE, name TEXT NOT NULL)"
        }
        _ => {
            "CREATE TABLE IF NOT EXISTS quickstart_users (id INTEGER PRIMARY KEY AUTOINCREMENT, email TEXT NOT NULL UNIQUE, name TEXT NOT NULL)"
        }
    };
    on_conn!(&mut conn, |c| diesel::sql_query(ddl).execute(c).await)?;
    Ok(())
}

/// What the quickstart did, for its test.
#[derive(Debug)]
pub struct Summary {
    pub backend: Backend,
    pub healthy: bool,
    pub created: User,
    pub found: User,
    pub updated: User,
    /// The name `find_by_id` returned after the update (from the database: the update
    /// invalidated the cached entry).
    pub found_after_update: String,
    /// Cache hits and loads of `find_by_id`.
    pub cache_hits: u64,
    pub cache_loads: u64,
    /// The class of the error for a missing user.
    pub missing: ErrorClass,
    /// The class of the error for a duplicate email.
    pub duplicate: ErrorClass,
    pub report: Vec<(String, i64)>,
    pub breaker: BreakerState,
    pub drained: bool,
}

/// Runs the quickstart on `config`, or on a fresh SQLite file in the temp directory.
pub async fn run(config: Option<DbConfig>) -> Result<Summary, Box<dyn Error + Send + Sync>> {
    let sqlite_file =
        std::env::temp_dir().join(format!("resilient-quickstart-{}.db", std::process::id()));
    let config = match config {
        Some(config) => config,
        None => DbConfig::parse(&format!("sqlite://{}", sqlite_file.display()))?,
    };
    println!("resilient quickstart");
    println!("  database   {config}");

    // Validates every #[resilient] operation and opens the pool (lazily: nothing connects yet).
    let rt = Runtime::builder().database("default", config).build()?;
    let summary = rt.scope(async { steps(&rt).await }).await;

    let report = rt.shutdown(Duration::from_secs(5)).await;
    let pool_closed = rt.default_pool().is_some_and(|p| p.is_closed());
    println!(
        "  shutdown   drained: {} in {:?}; pool closed: {pool_closed}",
        report.drained, report.waited
    );
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", sqlite_file.display()));
    }
    let mut summary = summary?;
    summary.drained = report.drained && pool_closed;
    Ok(summary)
}

async fn steps(rt: &Runtime) -> Result<Summary, Box<dyn Error + Send + Sync>> {
    let pool = rt.default_pool().ok_or("no pool")?;
    create_schema().await?;

    let health = pool.check().await;
    match &health.error {
        None => println!("  health     healthy, SELECT 1 in {:?}", health.latency),
        Some(e) => println!("  health     UNHEALTHY after {:?}: {e}", health.latency),
    }

    let repo = UserRepository;
    // A fresh address per run, so the example can run again on the same PostgreSQL database.
    let run_id = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let ada = NewUser {
        email: format!("ada.{run_id}@example.com"),
        name: "Ada".into(),
    };
    let created = repo.create(ada.clone()).await?;
    println!(
        "  create     #{} {} {:?}",
        created.id, created.email, created.name
    );
    let grace = repo
        .create(NewUser {
            email: format!("grace.{run_id}@navy.example"),
            name: "Grace".into(),
        })
        .await?;
    println!(
        "  create     #{} {} {:?}",
        grace.id, grace.email, grace.name
    );

    let found = repo.find_by_id(created.id).await?;
    println!(
        "  find       #{} {} {:?} (a miss: loaded from the database)",
        found.id, found.email, found.name
    );
    let again = repo.find_by_id(created.id).await?;
    println!(
        "  find       #{} {:?} (a hit: served from memory)",
        again.id, again.name
    );

    let updated = repo.update(created.id, "Ada Lovelace".into()).await?;
    println!(
        "  update     #{} {} {:?} (invalidates user:{})",
        updated.id, updated.email, updated.name, updated.id
    );
    let found_after_update = repo.find_by_id(created.id).await?.name;
    println!(
        "  find       #{} {found_after_update:?} (a miss again: the update invalidated it)",
        created.id
    );

    let missing = match repo.find_by_id(-1).await {
        Ok(u) => return Err(format!("found a user with id -1: {u:?}").into()),
        Err(e) => {
            println!("  find #-1   {e} (class: {}, not retried)", e.class());
            e.class()
        }
    };
    let duplicate = match repo.create(ada).await {
        Ok(u) => return Err(format!("created a duplicate: {u:?}").into()),
        Err(e) => {
            println!("  duplicate  {e} (class: {}, not retried)", e.class());
            e.class()
        }
    };

    let report = repo.users_per_domain().await?;
    let shown: Vec<String> = report.iter().map(|(d, n)| format!("{d}: {n}")).collect();
    println!("  report     users per domain: {}", shown.join(", "));

    let breaker = rt.breaker("database").ok_or("no breaker")?.snapshot();
    println!(
        "  breaker    database: {:?}, {} failures counted, opened {} times",
        breaker.state, breaker.failures, breaker.opened_total
    );
    for name in ["read", "write", "report"] {
        if let Some(b) = rt.bulkhead(name) {
            let s = b.snapshot();
            println!(
                "  bulkhead   {name:<6} {}/{} executing, {}/{} waiting, peak {}, {} rejected",
                s.executing,
                s.max_concurrent,
                s.waiting,
                s.max_queue,
                s.peak_executing,
                s.rejected_total
            );
        }
    }
    let cache = rt
        .caches()
        .into_iter()
        .find(|c| c.name == "UserRepository::find_by_id")
        .ok_or("no cache")?;
    println!(
        "  cache      find_by_id: {} hits, {} misses, {} loads, {} stale served, {} entries",
        cache.hits, cache.misses, cache.loads, cache.stale_served, cache.entries
    );
    let status = pool.status();
    println!(
        "  pool       {} connections ({} idle) of {}, {} checkouts",
        status.connections, status.idle, status.max_size, status.gets
    );

    Ok(Summary {
        backend: pool.backend(),
        healthy: health.healthy,
        created,
        found,
        updated,
        found_after_update,
        cache_hits: cache.hits,
        cache_loads: cache.loads,
        missing,
        duplicate,
        report,
        breaker: breaker.state,
        drained: false,
    })
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error + Send + Sync>> {
    // PostgreSQL when DATABASE_URL is set (RESILIENT_PROFILE picks the pool defaults),
    // else an embedded SQLite file.
    let config = match std::env::var_os(DATABASE_URL) {
        Some(_) => Some(DbConfig::from_env()?),
        None => None,
    };
    let summary = run(config).await?;
    println!("done on {}", summary.backend);
    Ok(())
}
