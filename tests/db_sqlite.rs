//! SQLite pools through diesel-async's `SyncConnectionWrapper`: they work on the
//! multi-threaded runtime, fail with a typed error on a current-thread one, never reuse a
//! connection left inside a cancelled transaction, and cannot interrupt a statement.

mod support;

use std::time::{Duration, Instant};

use diesel::sql_types::{BigInt, Text};
use diesel_async::{AsyncConnection, RunQueryDsl};
use resilient::db::{self, DbConfig, DbError};
use resilient::policy::Policy;
use resilient::{Classify, ErrorClass, Rejection, Runtime};
use support::AppError;

/// A database file of its own, removed at the end.
struct TempFile(std::path::PathBuf);

impl TempFile {
    fn new() -> TempFile {
        TempFile(std::env::temp_dir().join(format!("{}.db", support::pg::unique_name(""))))
    }

    fn url(&self) -> String {
        format!("sqlite://{}", self.0.display())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", self.0.display()));
        }
    }
}

fn runtime(url: &str, policies: &[&'static Policy]) -> Runtime {
    let mut builder = Runtime::builder()
        .without_registry()
        .database("default", DbConfig::parse(url).unwrap().max_size(2));
    for p in policies {
        builder = builder.register(p);
    }
    builder.build().unwrap()
}

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

async fn count(name: &str) -> Result<i64, AppError> {
    let mut conn = db::conn().await?;
    let row: Count = diesel::sql_query("SELECT count(*) AS n FROM items WHERE name = ?")
        .bind::<Text, _>(name)
        .get_result(conn.sqlite()?)
        .await?;
    Ok(row.n)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_file_pool_works_on_the_multi_threaded_runtime() {
    let file = TempFile::new();
    let rt = runtime(&file.url(), &[]);
    rt.scope(async {
        let mut conn = db::conn().await?;
        assert!(
            conn.pg()
                .is_err_and(|e| matches!(e, DbError::WrongBackend { .. }))
        );
        let c = conn.sqlite()?;
        diesel::sql_query("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE)")
            .execute(c)
            .await?;
        c.transaction::<_, AppError, _>(async |c| {
            for name in ["a", "b"] {
                diesel::sql_query("INSERT INTO items (name) VALUES (?)")
                    .bind::<Text, _>(name)
                    .execute(c)
                    .await?;
            }
            Ok(())
        })
        .await?;
        let dup = diesel::sql_query("INSERT INTO items (name) VALUES ('a')")
            .execute(c)
            .await
            .unwrap_err();
        assert_eq!(dup.class(), ErrorClass::Caller, "{dup}");
        drop(conn);
        assert_eq!(count("a").await?, 1);
        Ok::<_, AppError>(())
    })
    .await
    .unwrap();
    let report = rt.default_pool().unwrap().check().await;
    assert!(report.healthy, "{report:?}");
}

/// diesel-async's SQLite wrapper panics on a current-thread runtime; the pool refuses
/// with a typed error instead.
#[tokio::test]
async fn a_current_thread_runtime_gets_a_typed_error() {
    let file = TempFile::new();
    let rt = runtime(&file.url(), &[]);
    let err = rt.scope(db::conn()).await.unwrap_err();
    assert_eq!(err, DbError::SqliteNeedsMultiThread { pool: "default" });
    assert!(err.to_string().contains("multi-threaded"), "{err}");
    assert_eq!(err.class(), ErrorClass::Caller);
    let report = rt.default_pool().unwrap().check().await;
    assert!(!report.healthy);
    assert!(report.error.unwrap().contains("multi-threaded"));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_in_memory_database_keeps_its_one_connection() {
    let rt = runtime("sqlite::memory:", &[]);
    assert_eq!(rt.default_pool().unwrap().config().pool_size(), 1);
    rt.scope(async {
        let mut conn = db::conn().await?;
        diesel::sql_query("CREATE TABLE items (name TEXT)")
            .execute(conn.sqlite()?)
            .await?;
        diesel::sql_query("INSERT INTO items VALUES ('a')")
            .execute(conn.sqlite()?)
            .await?;
        drop(conn);
        assert_eq!(
            count("a").await?,
            1,
            "the next checkout sees the same database"
        );
        Ok::<_, AppError>(())
    })
    .await
    .unwrap();
}

/// Cut short by its attempt timeout (with no retry, the call's deadline is the same instant).
fn cut_short<T>(out: &Result<T, AppError>) -> bool {
    matches!(
        out,
        Err(AppError::Resilience(
            Rejection::Timeout { .. } | Rejection::DeadlineExceeded { .. }
        ))
    )
}

static SHORT: Policy = Policy::new("db_sqlite::short", module_path!())
    .timeout_ms(100)
    .no_breaker()
    .no_bulkhead();

/// A transaction cancelled by its attempt timeout leaves nothing behind: its connection
/// is discarded, and the next transaction on the pool commits visibly.
#[tokio::test(flavor = "multi_thread")]
async fn a_cancelled_transaction_is_never_reused() {
    let file = TempFile::new();
    let rt = runtime(&file.url(), &[&SHORT]);
    rt.scope(async {
        let mut conn = db::conn().await?;
        diesel::sql_query("CREATE TABLE items (name TEXT)")
            .execute(conn.sqlite()?)
            .await?;
        Ok::<_, AppError>(())
    })
    .await
    .unwrap();

    let cancelled: Result<(), AppError> = rt
        .scope(Runtime::execute(&rt, &SHORT, || async {
            let mut conn = db::conn().await?;
            conn.sqlite()?
                .transaction::<_, AppError, _>(async |c| {
                    diesel::sql_query("INSERT INTO items VALUES ('lost')")
                        .execute(c)
                        .await?;
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    Ok(())
                })
                .await
        }))
        .await;
    assert!(cut_short(&cancelled), "{cancelled:?}");

    rt.scope(async {
        let mut conn = db::conn().await?;
        conn.sqlite()?
            .transaction::<_, AppError, _>(async |c| {
                diesel::sql_query("INSERT INTO items VALUES ('kept')")
                    .execute(c)
                    .await?;
                Ok(())
            })
            .await?;
        drop(conn);
        assert_eq!(count("kept").await?, 1);
        assert_eq!(count("lost").await?, 0);
        Ok::<_, AppError>(())
    })
    .await
    .unwrap();
    assert!(rt.default_pool().unwrap().status().closed_broken >= 1);
}

/// The documented limit: a running SQLite statement cannot be interrupted. The attempt
/// times out, but only once the statement has finished; the pool stays usable.
#[tokio::test(flavor = "multi_thread")]
async fn a_running_statement_is_not_interrupted() {
    let file = TempFile::new();
    let rt = runtime(&file.url(), &[&SHORT]);
    let start = Instant::now();
    let out: Result<(), AppError> = rt
        .scope(Runtime::execute(&rt, &SHORT, || async {
            let mut conn = db::conn().await?;
            // Roughly a second of CPU on this machine.
            diesel::sql_query(
                "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 3000000) \
                 SELECT count(*) FROM c",
            )
            .execute(conn.sqlite()?)
            .await?;
            Ok(())
        }))
        .await;
    eprintln!(
        "100 ms attempt timeout around a long SQLite statement returned after {:?}",
        start.elapsed()
    );
    assert!(cut_short(&out), "{out:?}");
    let report = rt.default_pool().unwrap().check().await;
    assert!(report.healthy, "{report:?}");
}
