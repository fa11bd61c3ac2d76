//! Pools against a real PostgreSQL: named pools and per-connection settings, health
//! checks and the monitor feeding the breaker, recovery after killed backends, timeouts
//! that cancel the server's statement, cancelled transactions, and graceful shutdown.

mod support;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use diesel::sql_types::{Integer, Text};
use diesel_async::{AsyncConnection, RunQueryDsl};
use resilient::breaker::{BreakerConfig, BreakerState};
use resilient::db::{self, DbConfig, DbError, MonitorConfig, sqlstate};
use resilient::policy::Policy;
use resilient::{Classify, ErrorClass, Rejection, Runtime};
use support::pg::TestDb;
use support::{AppError, eventually};

static READ: Policy = Policy::new("db_pool::read", module_path!())
    .retry(2)
    .delay_ms(10)
    .timeout_ms(5_000)
    .no_breaker()
    .no_bulkhead();

static SLEEPY: Policy = Policy::new("db_pool::sleepy", module_path!())
    .timeout_ms(50)
    .no_breaker()
    .no_bulkhead();

static WRITE: Policy = Policy::new("db_pool::write", module_path!())
    .timeout_ms(5_000)
    .no_breaker()
    .no_bulkhead();

fn builder() -> resilient::RuntimeBuilder {
    Runtime::builder()
        .without_registry()
        .register(&READ)
        .register(&SLEEPY)
        .register(&WRITE)
}

async fn show(conn: &mut db::Conn, setting: &str) -> String {
    diesel::select(diesel::dsl::sql::<Text>(&format!(
        "current_setting('{setting}')"
    )))
    .get_result(conn.pg().unwrap())
    .await
    .unwrap()
}

/// Named pools; `application_name` and the server-side `statement_timeout` backstop on
/// every connection.
#[tokio::test(flavor = "multi_thread")]
async fn named_pools_set_application_name_and_statement_timeout() {
    let db = TestDb::create().await;
    let rt = builder()
        .database("primary", db.config())
        .database(
            "reporting",
            db.config()
                .application_name("reports")
                .statement_timeout(Some(Duration::from_millis(300))),
        )
        .build()
        .unwrap();
    rt.scope(async {
        let mut primary = db::conn().await.unwrap();
        assert_eq!(primary.pool(), "primary");
        assert_eq!(show(&mut primary, "application_name").await, db.name);
        assert_eq!(show(&mut primary, "statement_timeout").await, "1min");

        let mut reporting = db::conn_from("reporting").await.unwrap();
        assert_eq!(reporting.pool(), "reporting");
        assert_eq!(show(&mut reporting, "application_name").await, "reports");
        assert_eq!(show(&mut reporting, "statement_timeout").await, "300ms");
        // The backstop: the server cancels the statement itself (57014, unavailable).
        let err = diesel::sql_query("SELECT pg_sleep(5)")
            .execute(reporting.pg().unwrap())
            .await
            .unwrap_err();
        assert_eq!(sqlstate(&err), Some("57014"), "{err}");
        assert_eq!(err.class(), ErrorClass::Unavailable);
    })
    .await;
}

/// A runtime with a pool `good` on `db` (breaker `database`) and a pool `down` on a port
/// nothing listens on (breaker `replica`), both breakers configured with `breaker`.
fn good_and_down(db: &TestDb, breaker: BreakerConfig, acquire: Duration) -> Runtime {
    let down = format!(
        "postgres://postgres@127.0.0.1:{}/app",
        support::closed_port()
    );
    builder()
        .breaker("database", breaker)
        .breaker("replica", breaker)
        .database("good", db.config())
        .database(
            "down",
            DbConfig::parse(&down)
                .unwrap()
                .acquire_timeout(acquire)
                .breaker(Some("replica")),
        )
        .build()
        .unwrap()
}

/// `check` reports health and latency; `probe` records into the breaker when closed,
/// takes the half-open trial once the reset timeout has passed, and leaves an open
/// breaker alone before that.
#[tokio::test(flavor = "multi_thread")]
async fn health_checks_and_probes_feed_the_breaker() {
    let db = TestDb::create().await;
    let fast = BreakerConfig {
        failure_threshold: 1,
        reset_timeout: Duration::from_millis(150),
        half_open_successes: 1,
        half_open_max_calls: 1,
        ..BreakerConfig::DEFAULT
    };
    let rt = good_and_down(&db, fast, Duration::from_millis(200));
    let good = rt.pool("good").unwrap();
    let bad = rt.pool("down").unwrap();

    let report = good.check().await;
    assert!(report.healthy && report.error.is_none(), "{report:?}");
    assert!(report.latency > Duration::ZERO);
    assert_eq!(good.last_health(), Some(report));

    let report = bad.probe(&rt).await;
    assert!(!report.healthy);
    assert!(
        report
            .error
            .as_deref()
            .unwrap()
            .contains("Connection refused"),
        "{report:?}"
    );
    assert_eq!(
        rt.breaker("replica").unwrap().state(),
        BreakerState::Open,
        "a failed probe counts"
    );

    let database = rt.breaker("database").unwrap();
    database.force_open();
    assert!(good.probe(&rt).await.healthy);
    assert_eq!(
        database.state(),
        BreakerState::Open,
        "cooling down: left alone"
    );
    assert_eq!(
        database.snapshot().rejected_total,
        0,
        "and not counted as a rejection"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(good.probe(&rt).await.healthy);
    assert_eq!(
        database.state(),
        BreakerState::Closed,
        "the probe was the half-open trial"
    );
}

/// The monitor probes without any traffic: it opens the breaker of a dead pool and
/// closes the breaker of a healthy one once its reset timeout has passed.
#[tokio::test(flavor = "multi_thread")]
async fn the_monitor_probes_breakers_without_traffic() {
    let db = TestDb::create().await;
    let config = BreakerConfig {
        failure_threshold: 2,
        reset_timeout: Duration::from_millis(200),
        half_open_successes: 1,
        ..BreakerConfig::DEFAULT
    };
    let rt = good_and_down(&db, config, Duration::from_millis(100));
    rt.breaker("database").unwrap().force_open();
    let monitor =
        rt.start_health_monitor(MonitorConfig::DEFAULT.interval(Duration::from_millis(50)));
    assert!(monitor.is_running());
    let closed = eventually(Duration::from_secs(10), async || {
        rt.breaker("database").unwrap().state() == BreakerState::Closed
    })
    .await;
    assert!(closed, "the monitor closed the healthy pool's breaker");
    let opened = eventually(Duration::from_secs(10), async || {
        rt.breaker("replica").unwrap().snapshot().opened_total >= 1
    })
    .await;
    assert!(opened, "the monitor opened the dead pool's breaker");
    assert!(
        rt.pool("down")
            .unwrap()
            .last_health()
            .is_some_and(|r| !r.healthy)
    );
    monitor.stop().await;
}

/// Killed backends are replaced at checkout (`SELECT 1` verification): callers see no error.
#[tokio::test(flavor = "multi_thread")]
async fn pooled_connections_recover_after_pg_terminate_backend() {
    let db = TestDb::create().await;
    let rt = builder()
        .database("default", db.config().max_size(3))
        .build()
        .unwrap();
    let pool = rt.pool("default").unwrap();
    rt.scope(async {
        let held = [
            db::conn().await.unwrap(),
            db::conn().await.unwrap(),
            db::conn().await.unwrap(),
        ];
        drop(held);
    })
    .await;
    assert_eq!(pool.status().idle, 3);
    assert_eq!(db.terminate_pool_backends().await, 3);

    for _ in 0..6 {
        let attempts = AtomicU32::new(0);
        let out: Result<i32, AppError> = rt
            .scope(Runtime::execute(&rt, &READ, || async {
                attempts.fetch_add(1, Ordering::SeqCst);
                let mut conn = db::conn().await?;
                Ok(diesel::select(diesel::dsl::sql::<Integer>("1"))
                    .get_result(conn.pg()?)
                    .await?)
            }))
            .await;
        assert_eq!(out.unwrap(), 1);
        assert_eq!(
            AtomicU32::load(&attempts, Ordering::SeqCst),
            1,
            "no caller saw the dead connections"
        );
    }
    let status = pool.status();
    assert!(
        status.closed_invalid + status.closed_broken >= 3,
        "{status:?}"
    );
}

/// 100 `pg_sleep` queries cut by a 50 ms attempt timeout: each statement is cancelled on
/// the server, none keeps running, and the next checkout is not stuck behind one.
#[tokio::test(flavor = "multi_thread")]
async fn timed_out_statements_are_cancelled_on_the_server() {
    let db = TestDb::create().await;
    let rt = builder()
        .database(
            "default",
            db.config()
                .max_size(4)
                .acquire_timeout(Duration::from_secs(10)),
        )
        .build()
        .unwrap();
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..100 {
        let rt = rt.clone();
        tasks.spawn(async move {
            rt.scope(Runtime::execute(&rt, &SLEEPY, || async {
                let mut conn = db::conn().await?;
                diesel::sql_query("SELECT pg_sleep(30)")
                    .execute(conn.pg()?)
                    .await?;
                Ok::<_, AppError>(())
            }))
            .await
        });
        // At most 4 at a time: each call holds a connection of the 4.
        while tasks.len() >= 4 {
            let out = tasks.join_next().await.unwrap().unwrap();
            assert!(
                matches!(
                    out,
                    Err(AppError::Resilience(
                        Rejection::Timeout { .. } | Rejection::DeadlineExceeded { .. }
                    ))
                ),
                "{out:?}"
            );
        }
    }
    while let Some(out) = tasks.join_next().await {
        assert!(matches!(out.unwrap(), Err(AppError::Resilience(_))));
    }
    let calls = start.elapsed();

    let poll = Instant::now();
    let quiet = eventually(Duration::from_secs(1), async || {
        db.active_statements().await == 0
    })
    .await;
    let quiet_after = poll.elapsed();
    assert!(
        quiet,
        "{} statements still running",
        db.active_statements().await
    );

    let checkout = Instant::now();
    let ok = tokio::time::timeout(
        Duration::from_secs(5),
        rt.scope(async {
            let mut conn = db::conn().await?;
            diesel::sql_query("SELECT 1").execute(conn.pg()?).await?;
            Ok::<_, AppError>(())
        }),
    )
    .await;
    assert!(matches!(ok, Ok(Ok(()))), "{ok:?}");
    let status = rt.pool("default").unwrap().status();
    eprintln!(
        "100 timed-out pg_sleep calls: {calls:?}; server quiet after {quiet_after:?}; next checkout + SELECT 1: {:?}; {status:?}",
        checkout.elapsed()
    );
    assert!(status.connections <= 4);
}

/// Code outside `#[resilient]` that bounds a query with `timeout::with_timeout` gets the
/// same treatment: the statement is cancelled on the server.
#[tokio::test(flavor = "multi_thread")]
async fn a_query_cut_by_with_timeout_is_cancelled_too() {
    let db = TestDb::create().await;
    let rt = builder()
        .database("default", db.config().max_size(1))
        .build()
        .unwrap();
    let out = rt
        .scope(resilient::timeout::with_timeout(
            Duration::from_millis(100),
            async {
                let mut conn = db::conn().await?;
                diesel::sql_query("SELECT pg_sleep(30)")
                    .execute(conn.pg()?)
                    .await?;
                Ok::<_, AppError>(())
            },
        ))
        .await;
    assert!(matches!(out, Err(Rejection::Timeout { .. })), "{out:?}");
    assert!(
        eventually(Duration::from_secs(1), async || db
            .active_statements()
            .await
            == 0)
        .await
    );
    let reused: Result<usize, AppError> = rt
        .scope(async {
            Ok(diesel::sql_query("SELECT 1")
                .execute(db::conn().await?.pg()?)
                .await?)
        })
        .await;
    assert_eq!(reused.unwrap(), 1);
    assert_eq!(
        rt.pool("default").unwrap().status().connections_created,
        1,
        "the connection was kept"
    );
}

/// An attempt cancelled inside `transaction()` never leaves its connection in a dangling
/// transaction: the next transaction on the pool commits visibly, the cancelled one
/// rolled back.
#[tokio::test(flavor = "multi_thread")]
async fn a_cancelled_transaction_never_dangles() {
    let db = TestDb::create().await;
    db.exec("CREATE TABLE items (name text NOT NULL)").await;
    let rt = builder()
        .database("default", db.config().max_size(1))
        .build()
        .unwrap();
    let insert = |name: &'static str, sleep: bool| {
        let rt = rt.clone();
        async move {
            let policy = if sleep { &SLEEPY } else { &WRITE };
            rt.scope(Runtime::execute(&rt, policy, || async {
                let mut conn = db::conn().await?;
                conn.pg()?
                    .transaction::<_, AppError, _>(async |c| {
                        diesel::sql_query("INSERT INTO items VALUES ($1)")
                            .bind::<Text, _>(name)
                            .execute(c)
                            .await?;
                        if sleep {
                            diesel::sql_query("SELECT pg_sleep(30)").execute(c).await?;
                        }
                        Ok(())
                    })
                    .await
            }))
            .await
        }
    };
    let cancelled = insert("lost", true).await;
    assert!(
        matches!(cancelled, Err(AppError::Resilience(_))),
        "{cancelled:?}"
    );
    insert("kept", false).await.unwrap();
    assert_eq!(
        db.scalar("count(*) FROM items WHERE name = 'kept'").await,
        1
    );
    assert_eq!(
        db.scalar("count(*) FROM items WHERE name = 'lost'").await,
        0
    );
    assert!(rt.pool("default").unwrap().status().closed_broken >= 1);
    assert!(
        eventually(Duration::from_secs(1), async || db
            .active_statements()
            .await
            == 0)
        .await
    );
}

/// Shutdown with writes in flight: every write that returned `Ok` is in the database,
/// calls after the shutdown began are rejected, the monitor stops and the pool closes.
#[tokio::test(flavor = "multi_thread")]
async fn shutdown_keeps_every_acknowledged_write() {
    let db = TestDb::create().await;
    db.exec(
        "CREATE TABLE writes (writer int NOT NULL, seq int NOT NULL, PRIMARY KEY (writer, seq))",
    )
    .await;
    let rt = builder()
        .database("default", db.config().max_size(4))
        .build()
        .unwrap();
    let monitor =
        rt.start_health_monitor(MonitorConfig::DEFAULT.interval(Duration::from_millis(20)));
    let acked = Arc::new(Mutex::new(Vec::new()));
    let rejected = Arc::new(AtomicU32::new(0));
    let mut writers = tokio::task::JoinSet::new();
    for writer in 0..4 {
        let (rt, acked, rejected) = (rt.clone(), Arc::clone(&acked), Arc::clone(&rejected));
        writers.spawn(async move {
            for seq in 0.. {
                let out: Result<(), AppError> = rt
                    .scope(Runtime::execute(&rt, &WRITE, || async {
                        let mut conn = db::conn().await?;
                        // Slow enough that some writes are in flight when shutdown begins.
                        diesel::sql_query("INSERT INTO writes SELECT $1, $2 FROM pg_sleep(0.02)")
                            .bind::<Integer, _>(writer)
                            .bind::<Integer, _>(seq)
                            .execute(conn.pg()?)
                            .await?;
                        Ok(())
                    }))
                    .await;
                match out {
                    Ok(()) => acked.lock().unwrap().push((writer, seq)),
                    Err(AppError::Resilience(Rejection::ShuttingDown)) => {
                        rejected.fetch_add(1, Ordering::SeqCst);
                        return;
                    }
                    Err(e) => panic!("writer {writer}: {e:?}"),
                }
            }
        });
    }
    let started = eventually(Duration::from_secs(10), async || {
        acked.lock().unwrap().len() >= 20
    })
    .await;
    assert!(started);
    assert!(rt.in_flight() > 0, "writes are in flight");
    let report = rt.shutdown(Duration::from_secs(10)).await;
    assert!(report.drained, "{report:?}");
    while let Some(w) = writers.join_next().await {
        w.unwrap();
    }
    assert_eq!(
        AtomicU32::load(&rejected, Ordering::SeqCst),
        4,
        "every writer's next call was rejected"
    );

    let acked = acked.lock().unwrap().clone();
    let mut direct = db.direct().await;
    #[derive(diesel::QueryableByName, PartialEq, Eq, PartialOrd, Ord, Debug)]
    struct Row {
        #[diesel(sql_type = Integer)]
        writer: i32,
        #[diesel(sql_type = Integer)]
        seq: i32,
    }
    let stored: Vec<Row> = diesel::sql_query("SELECT writer, seq FROM writes")
        .load(&mut direct)
        .await
        .unwrap();
    for (writer, seq) in &acked {
        assert!(
            stored.contains(&Row {
                writer: *writer,
                seq: *seq
            }),
            "acknowledged write {writer}/{seq} is missing"
        );
    }
    assert_eq!(
        stored.len(),
        acked.len(),
        "no write was applied without being acknowledged"
    );

    let late: Result<(), AppError> = rt
        .scope(Runtime::execute(&rt, &WRITE, || async { Ok(()) }))
        .await;
    assert!(matches!(
        late,
        Err(AppError::Resilience(Rejection::ShuttingDown))
    ));
    assert!(!monitor.is_running(), "shutdown stopped the monitor");
    assert!(rt.pool("default").unwrap().is_closed());
    let err = rt.scope(db::conn()).await.unwrap_err();
    assert_eq!(err, DbError::Closed { pool: "default" });
    assert_eq!(err.class(), ErrorClass::Rejected);
    assert!(
        eventually(Duration::from_secs(2), async || db
            .scalar(&format!(
                "count(*) FROM pg_stat_activity WHERE datname = '{0}' AND application_name = '{0}'",
                db.name
            ))
            .await
            == 0)
        .await,
        "the pool's connections are closed"
    );
}
