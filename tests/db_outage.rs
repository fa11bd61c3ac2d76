//! Outages of a real server, on a throwaway cluster of its own: a server shutting down
//! refuses connections with 57P03 (unavailable), and the health monitor opens the
//! breaker when the server dies and closes it again when the server is back, without
//! any traffic.

mod support;

use std::time::Duration;

use diesel::result::ConnectionError;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use resilient::breaker::{BreakerConfig, BreakerState};
use resilient::db::{self, DbConfig, DbError, MonitorConfig, sqlstate};
use resilient::{Classify, ErrorClass, Runtime};
use support::cluster::Cluster;
use support::{AppError, eventually};

/// 57P03: while a smart shutdown waits for a session to end, new connections are refused.
#[tokio::test(flavor = "multi_thread")]
async fn a_server_shutting_down_is_unavailable() {
    let cluster = Cluster::start_new();
    let held = support::pg::connect(&cluster.url()).await;
    cluster.stop("smart", false);

    let mut seen = None;
    let refused = eventually(
        Duration::from_secs(10),
        async || match AsyncPgConnection::establish(&cluster.url()).await {
            Ok(_) => false,
            Err(e) => {
                seen = Some(e);
                true
            }
        },
    )
    .await;
    assert!(
        refused,
        "new connections are refused during a smart shutdown"
    );
    let err = seen.unwrap();
    assert_eq!(err.class(), ErrorClass::Unavailable);
    let ConnectionError::CouldntSetupConfiguration(inner) = &err else {
        panic!("{err:?}");
    };
    assert_eq!(sqlstate(inner), Some("57P03"), "{inner}");
    assert_eq!(inner.class(), ErrorClass::Unavailable);

    let rt = Runtime::builder()
        .without_registry()
        .database(
            "default",
            DbConfig::parse(&cluster.url())
                .unwrap()
                .acquire_timeout(Duration::from_millis(300)),
        )
        .build()
        .unwrap();
    let err = rt.scope(db::conn()).await.unwrap_err();
    assert!(
        matches!(&err, DbError::Unavailable { cause: Some(c), .. } if c.contains("shutting down")),
        "{err:?}"
    );
    assert_eq!(err.class(), ErrorClass::Unavailable);
    drop(held);
}

/// The server dies: the monitor's failed probes open the breaker. It comes back: the
/// monitor's probe is the half-open trial, and the breaker closes. The pool then serves
/// queries again, its dead connections replaced at checkout.
#[tokio::test(flavor = "multi_thread")]
async fn the_monitor_follows_an_outage_and_the_recovery() {
    let cluster = Cluster::start_new();
    let rt = Runtime::builder()
        .without_registry()
        .breaker(
            "database",
            BreakerConfig {
                failure_threshold: 2,
                reset_timeout: Duration::from_millis(300),
                half_open_successes: 1,
                ..BreakerConfig::DEFAULT
            },
        )
        .database(
            "default",
            DbConfig::parse(&cluster.url())
                .unwrap()
                .acquire_timeout(Duration::from_millis(300))
                .health_timeout(Duration::from_secs(1)),
        )
        .build()
        .unwrap();
    let pool = rt.pool("default").unwrap();
    let breaker = rt.breaker("database").unwrap();
    let monitor =
        rt.start_health_monitor(MonitorConfig::DEFAULT.interval(Duration::from_millis(50)));

    assert!(
        eventually(Duration::from_secs(10), async || pool
            .last_health()
            .is_some_and(|r| r.healthy))
        .await
    );
    assert_eq!(breaker.state(), BreakerState::Closed);

    cluster.stop("immediate", true);
    let opened = eventually(Duration::from_secs(20), async || {
        breaker.snapshot().opened_total >= 1
    })
    .await;
    assert!(opened, "the breaker opened: {:?}", pool.last_health());
    let report = pool.last_health().unwrap();
    assert!(!report.healthy, "{report:?}");

    cluster.start();
    let closed = eventually(Duration::from_secs(20), async || {
        breaker.state() == BreakerState::Closed
    })
    .await;
    assert!(
        closed,
        "the breaker closed again: {:?} {:?}",
        breaker.snapshot(),
        pool.last_health()
    );
    assert!(pool.last_health().is_some_and(|r| r.healthy));
    monitor.stop().await;

    let out: Result<usize, AppError> = rt
        .scope(async {
            let mut conn = db::conn().await?;
            Ok(diesel::sql_query("SELECT 1").execute(conn.pg()?).await?)
        })
        .await;
    assert_eq!(out.unwrap(), 1);
}
