//! Every row of the classification table that a real PostgreSQL can produce, produced
//! for real: refused connections and exhausted pools, a serialization failure and a
//! deadlock (each retried as a whole transaction), too many connections, an admin
//! shutdown of a busy backend, a connection closed under a statement, an attempt
//! timeout, and the caller's own mistakes.

mod support;

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use diesel::result::ConnectionError;
use diesel::sql_types::Integer;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use resilient::db::{self, DbConfig, DbError, sqlstate};
use resilient::policy::Policy;
use resilient::{Classify, ErrorClass, Rejection, Runtime};
use support::AppError;
use support::pg::{TestDb, TestRole};
use tokio::sync::Barrier;

/// Retries transient failures of a whole transaction.
static TX: Policy = Policy::new("db_classify::tx", module_path!())
    .retry(3)
    .delay_ms(10)
    .timeout_ms(10_000)
    .no_breaker()
    .no_bulkhead();

static SHORT: Policy = Policy::new("db_classify::short", module_path!())
    .timeout_ms(100)
    .no_breaker()
    .no_bulkhead();

fn runtime(config: DbConfig) -> Runtime {
    Runtime::builder()
        .without_registry()
        .register(&TX)
        .register(&SHORT)
        .database("default", config)
        .build()
        .unwrap()
}

async fn with_counters() -> (TestDb, Runtime) {
    let db = TestDb::create().await;
    db.exec("CREATE TABLE counters (id int PRIMARY KEY, n int NOT NULL); INSERT INTO counters VALUES (1, 0), (2, 0);")
        .await;
    let rt = runtime(db.config().max_size(4));
    (db, rt)
}

type Seen = Arc<Mutex<Vec<(Option<&'static str>, ErrorClass)>>>;

fn note<T>(seen: &Seen, result: &Result<T, AppError>) {
    if let Err(AppError::Query(e)) = result {
        seen.lock().unwrap().push((sqlstate(e), e.class()));
    }
}

#[tokio::test]
async fn a_refused_connection_is_unavailable_and_says_why() {
    let url = format!(
        "postgres://postgres@127.0.0.1:{}/app",
        support::closed_port()
    );
    let rt = runtime(
        DbConfig::parse(&url)
            .unwrap()
            .acquire_timeout(Duration::from_millis(300)),
    );
    let err = rt.scope(db::conn()).await.unwrap_err();
    let DbError::Unavailable {
        cause: Some(cause), ..
    } = &err
    else {
        panic!("expected Unavailable with a cause, got {err:?}");
    };
    assert!(cause.contains("Connection refused"), "{cause}");
    assert_eq!(err.class(), ErrorClass::Unavailable);
}

#[tokio::test]
async fn an_exhausted_pool_is_unavailable() {
    let db = TestDb::create().await;
    let rt = runtime(
        db.config()
            .max_size(1)
            .acquire_timeout(Duration::from_millis(200)),
    );
    rt.scope(async {
        let held = db::conn().await.unwrap();
        let err = db::conn().await.unwrap_err();
        assert!(
            matches!(err, DbError::Unavailable { cause: None, .. }),
            "{err:?}"
        );
        assert!(
            err.to_string().contains("all 1 connections are busy"),
            "{err}"
        );
        assert_eq!(err.class(), ErrorClass::Unavailable);
        drop(held);
        db::conn().await.expect("free again");
    })
    .await;
}

/// 40001: the first attempt's snapshot is overtaken by a concurrent commit; the retry
/// runs the whole transaction again and succeeds.
#[tokio::test(flavor = "multi_thread")]
async fn a_serialization_failure_is_transient_and_the_transaction_is_retried() {
    let (db, rt) = with_counters().await;
    let attempts = AtomicU32::new(0);
    let seen = Seen::default();
    let out: Result<(), AppError> = rt
        .scope(Runtime::execute(&rt, &TX, || async {
            let attempt = attempts.fetch_add(1, Ordering::SeqCst) + 1;
            let mut conn = db::conn().await?;
            let result = conn
                .pg()?
                .build_transaction()
                .repeatable_read()
                .run::<_, AppError, _>(async |c| {
                    let n: i32 =
                        diesel::select(diesel::dsl::sql::<Integer>("n FROM counters WHERE id = 1"))
                            .get_result(c)
                            .await?;
                    if attempt == 1 {
                        let mut other = db::conn().await?;
                        diesel::sql_query("UPDATE counters SET n = n + 100 WHERE id = 1")
                            .execute(other.pg()?)
                            .await?;
                    }
                    diesel::sql_query("UPDATE counters SET n = $1 WHERE id = 1")
                        .bind::<Integer, _>(n + 1)
                        .execute(c)
                        .await?;
                    Ok(())
                })
                .await;
            note(&seen, &result);
            result
        }))
        .await;
    out.unwrap();
    assert_eq!(AtomicU32::load(&attempts, Ordering::SeqCst), 2);
    assert_eq!(
        *seen.lock().unwrap(),
        [(Some("40001"), ErrorClass::Transient)]
    );
    assert_eq!(db.scalar("n::bigint FROM counters WHERE id = 1").await, 101);
}

/// 40P01: two transactions lock two rows in opposite orders; the server kills one, which
/// is retried as a whole and succeeds. Both increments land.
#[tokio::test(flavor = "multi_thread")]
async fn a_deadlock_is_transient_and_the_victim_is_retried() {
    let (db, rt) = with_counters().await;
    let barrier = Arc::new(Barrier::new(2));
    let seen = Seen::default();
    let bump = |first: i32, second: i32| {
        let (rt, barrier, seen) = (rt.clone(), Arc::clone(&barrier), Arc::clone(&seen));
        async move {
            let waited = AtomicBool::new(false);
            let out: Result<(), AppError> = rt
                .scope(Runtime::execute(&rt, &TX, || async {
                    let mut conn = db::conn().await?;
                    let result = conn
                        .pg()?
                        .transaction::<_, AppError, _>(async |c| {
                            diesel::sql_query("SET LOCAL deadlock_timeout = '100ms'")
                                .execute(c)
                                .await?;
                            for (i, id) in [first, second].into_iter().enumerate() {
                                if i == 1 && !waited.swap(true, Ordering::SeqCst) {
                                    barrier.wait().await;
                                }
                                diesel::sql_query("UPDATE counters SET n = n + 1 WHERE id = $1")
                                    .bind::<Integer, _>(id)
                                    .execute(c)
                                    .await?;
                            }
                            Ok(())
                        })
                        .await;
                    note(&seen, &result);
                    result
                }))
                .await;
            out
        }
    };
    let (a, b) = tokio::join!(tokio::spawn(bump(1, 2)), tokio::spawn(bump(2, 1)));
    a.unwrap().unwrap();
    b.unwrap().unwrap();
    assert_eq!(
        *seen.lock().unwrap(),
        [(Some("40P01"), ErrorClass::Transient)]
    );
    assert_eq!(db.scalar("sum(n) FROM counters").await, 4);
}

/// 53300: a role allowed no connections.
#[tokio::test]
async fn too_many_connections_is_unavailable() {
    let role = TestRole::create("CONNECTION LIMIT 0").await;
    let db = TestDb::create().await;
    let url = format!("postgres://{}@127.0.0.1:5432/{}", role.name, db.name);

    let err = AsyncPgConnection::establish(&url)
        .await
        .err()
        .expect("refused");
    assert_eq!(err.class(), ErrorClass::Unavailable);
    let ConnectionError::CouldntSetupConfiguration(inner) = &err else {
        panic!("{err:?}");
    };
    assert_eq!(sqlstate(inner), Some("53300"), "{inner}");
    assert_eq!(inner.class(), ErrorClass::Unavailable);

    let rt = runtime(
        DbConfig::parse(&url)
            .unwrap()
            .acquire_timeout(Duration::from_millis(300)),
    );
    let err = rt.scope(db::conn()).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Unavailable);
    assert!(err.to_string().contains("too many connections"), "{err}");
}

/// 57P01 for the statement a terminated backend was running; then "connection closed"
/// (ambiguous) for a statement sent on the dead connection.
#[tokio::test(flavor = "multi_thread")]
async fn admin_shutdown_is_unavailable_and_a_closed_connection_is_ambiguous() {
    let db = TestDb::create().await;
    let rt = runtime(db.config());
    rt.scope(async {
        let mut conn = db::conn().await.unwrap();
        let pid: i32 = diesel::select(diesel::dsl::sql::<Integer>("pg_backend_pid()"))
            .get_result(conn.pg().unwrap())
            .await
            .unwrap();
        let kill = async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            db.scalar(&format!("count(pg_terminate_backend({pid}))"))
                .await
        };
        let (sleeping, killed) = tokio::join!(
            diesel::sql_query("SELECT pg_sleep(5)").execute(conn.pg().unwrap()),
            kill
        );
        assert_eq!(killed, 1);
        let err = sleeping.unwrap_err();
        assert_eq!(sqlstate(&err), Some("57P01"), "{err}");
        assert_eq!(err.class(), ErrorClass::Unavailable);

        let err = diesel::sql_query("SELECT 1")
            .execute(conn.pg().unwrap())
            .await
            .unwrap_err();
        assert_eq!(err.class(), ErrorClass::Ambiguous, "{err:?}");
    })
    .await;
}

/// An attempt that times out after its statement was sent: ambiguous, and the server
/// statement is cancelled (see `db_pool` for the pool staying clean).
#[tokio::test(flavor = "multi_thread")]
async fn an_attempt_timeout_is_ambiguous() {
    let db = TestDb::create().await;
    let rt = runtime(db.config());
    let out: Result<(), AppError> = rt
        .scope(Runtime::execute(&rt, &SHORT, || async {
            let mut conn = db::conn().await?;
            diesel::sql_query("SELECT pg_sleep(5)")
                .execute(conn.pg()?)
                .await?;
            Ok(())
        }))
        .await;
    let Err(AppError::Resilience(
        r @ (Rejection::Timeout { .. } | Rejection::DeadlineExceeded { .. }),
    )) = &out
    else {
        panic!("{out:?}");
    };
    assert_eq!(
        Rejection::Timeout {
            after: Duration::from_millis(100)
        }
        .class(),
        ErrorClass::Ambiguous
    );
    assert_ne!(r.class(), ErrorClass::Transient);
}

/// Constraint violations, not found, syntax, undefined objects and permissions: the
/// caller's, never retried.
#[tokio::test(flavor = "multi_thread")]
async fn caller_errors_are_never_retried() {
    let role = TestRole::create("").await;
    let db = TestDb::create().await;
    db.exec(
        "CREATE TABLE users (id serial PRIMARY KEY, email text UNIQUE NOT NULL CHECK (email LIKE '%@%'));
         INSERT INTO users (email) VALUES ('a@example.com');
         CREATE TABLE secrets (x int);",
    )
    .await;
    let rt = runtime(db.config());
    let cases: [(&str, Option<&str>); 6] = [
        (
            "INSERT INTO users (email) VALUES ('a@example.com')",
            Some("23505"),
        ),
        ("INSERT INTO users (email) VALUES ('nobody')", Some("23514")),
        ("INSERT INTO users (email) VALUES (NULL)", Some("23502")),
        ("SELEC 1", Some("42601")),
        ("SELECT * FROM no_such_table", None),
        ("SELECT id FROM users WHERE id = -1", None),
    ];
    for (sql, code) in cases {
        let attempts = AtomicU32::new(0);
        let out: Result<i32, AppError> = rt
            .scope(Runtime::execute(&rt, &TX, || async {
                attempts.fetch_add(1, Ordering::SeqCst);
                let mut conn = db::conn().await?;
                if sql.starts_with("SELECT id") {
                    // `NotFound`
                    let id =
                        diesel::select(diesel::dsl::sql::<Integer>("id FROM users WHERE id = -1"))
                            .get_result(conn.pg()?)
                            .await?;
                    return Ok(id);
                }
                diesel::sql_query(sql).execute(conn.pg()?).await?;
                Ok(0)
            }))
            .await;
        let Err(AppError::Query(e)) = &out else {
            panic!("{sql}: {out:?}")
        };
        assert_eq!(sqlstate(e), code, "{sql}: {e}");
        assert_eq!(e.class(), ErrorClass::Caller, "{sql}: {e}");
        assert_eq!(
            AtomicU32::load(&attempts, Ordering::SeqCst),
            1,
            "{sql}: not retried"
        );
    }

    // 42501, as a role without privileges on `secrets`.
    let url = format!("postgres://{}@127.0.0.1:5432/{}", role.name, db.name);
    let mut conn = AsyncPgConnection::establish(&url).await.unwrap();
    let err = diesel::sql_query("SELECT * FROM secrets")
        .execute(&mut conn)
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err), Some("42501"), "{err}");
    assert_eq!(err.class(), ErrorClass::Caller);
}
