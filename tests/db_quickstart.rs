//! The quickstart itself, run as a test: on an embedded SQLite file (the default) and on
//! a PostgreSQL database of its own.

mod support;

#[path = "../examples/quickstart.rs"]
#[allow(dead_code)]
mod quickstart;

use resilient::ErrorClass;
use resilient::breaker::BreakerState;
use resilient::db::{Backend, DbConfig};
use support::pg::TestDb;

fn check(summary: &quickstart::Summary, backend: Backend) {
    assert_eq!(summary.backend, backend);
    assert!(summary.healthy);
    assert_eq!(summary.found, summary.created);
    assert_eq!(summary.updated.id, summary.created.id);
    assert_eq!(summary.updated.name, "Ada Lovelace");
    // The update invalidated the cached entry: the next read saw the new name.
    assert_eq!(summary.found_after_update, "Ada Lovelace");
    // find (miss), find (hit), find after the update (miss), find #-1 (miss: not found is
    // a caller error, never cached).
    assert_eq!((summary.cache_hits, summary.cache_loads), (1, 3));
    assert_eq!(summary.missing, ErrorClass::Caller);
    assert_eq!(summary.duplicate, ErrorClass::Caller);
    assert_eq!(
        summary.report,
        [
            ("example.com".to_string(), 1),
            ("navy.example".to_string(), 1)
        ]
    );
    assert_eq!(summary.breaker, BreakerState::Closed);
    assert!(summary.drained);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_quickstart_runs_on_sqlite_by_default() {
    let summary = quickstart::run(None).await.unwrap();
    check(&summary, Backend::Sqlite);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_quickstart_runs_on_postgres() {
    let db = TestDb::create().await;
    let summary = quickstart::run(Some(DbConfig::parse(&db.url()).unwrap()))
        .await
        .unwrap();
    check(&summary, Backend::Postgres);
}
