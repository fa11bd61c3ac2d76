//! Metrics persistence and the admin dashboard, against real PostgreSQL and SQLite.

mod support;

use std::time::Duration;

use resilient::breaker::BreakerSpec;
use resilient::dashboard::{BearerTokens, Dashboard};
use resilient::db::DbConfig;
use resilient::{Runtime, resilient};
use support::AppError;
use support::pg::TestDb;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

static FLAKY_DB: BreakerSpec = BreakerSpec::new("observability-db").failure_threshold(3);

struct Probe;

#[resilient]
impl Probe {
    #[resilient(breaker = FLAKY_DB, timeout_ms = 2000)]
    async fn ping(&self) -> Result<i64, AppError> {
        use diesel_async::RunQueryDsl;
        let mut conn = resilient::db::conn().await?;
        let one: i64 = diesel::select(diesel::dsl::sql::<diesel::sql_types::BigInt>("1::bigint"))
            .get_result(conn.pg()?)
            .await?;
        Ok(one)
    }

    #[resilient(breaker = FLAKY_DB)]
    async fn broken(&self) -> Result<(), AppError> {
        Err(AppError::Resilience(resilient::Rejection::Timeout {
            after: Duration::from_millis(1),
        }))
    }
}

const PASSWORD: &str = "hunter2-never-shown";

async fn runtime_on(db: &TestDb) -> Runtime {
    // Trust auth ignores the password; it is there to prove it never leaks.
    let url = db
        .url()
        .replace("postgres@", &format!("postgres:{PASSWORD}@"));
    let config = DbConfig::parse(&format!("{url}?connection_limit=3"))
        .expect("url")
        .application_name(db.name.clone());
    Runtime::builder()
        .database("primary", config)
        .build()
        .expect("runtime")
}

async fn http_get(addr: std::net::SocketAddr, path: &str, token: Option<&str>) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n").as_bytes(),
    )
    .await
    .expect("write");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.expect("read");
    let text = String::from_utf8_lossy(&raw).to_string();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (
        status,
        text.split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_serves_admins_only_and_shows_the_database() {
    let db = TestDb::create().await;
    let rt = runtime_on(&db).await;
    rt.scope(async {
        assert_eq!(Probe.ping().await.expect("ping"), 1);
        for _ in 0..3 {
            assert!(Probe.broken().await.is_err());
        }
    })
    .await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = Dashboard::new(
        rt.clone(),
        BearerTokens::new()
            .admin("admin-token")
            .viewer("viewer-token"),
    )
    .router();
    tokio::spawn(async move { axum::serve(listener, app).await });

    assert_eq!(http_get(addr, "/admin/database-health", None).await.0, 401);
    assert_eq!(
        http_get(addr, "/admin/database-health", Some("nope"))
            .await
            .0,
        401
    );
    assert_eq!(
        http_get(addr, "/admin/database-health", Some("viewer-token"))
            .await
            .0,
        403
    );
    let (status, body) = http_get(addr, "/admin/database-health", Some("admin-token")).await;
    assert_eq!(status, 200, "{body}");
    assert!(!body.contains(PASSWORD), "the password leaked: {body}");
    assert!(
        !body.contains("connection_limit"),
        "a query parameter leaked: {body}"
    );
    assert!(!body.contains("postgres://"), "a URL leaked: {body}");

    let json: serde_json::Value = serde_json::from_str(&body).expect("json");
    let breaker = json["breakers"]
        .as_array()
        .and_then(|b| b.iter().find(|b| b["name"] == "observability-db"))
        .expect("breaker");
    assert_eq!(breaker["state"], "open", "three ambiguous failures open it");
    let pool = &json["database"]["pools"][0];
    assert_eq!(pool["status"]["name"], "primary");
    assert_eq!(pool["status"]["max_size"], 3);
    assert_eq!(pool["health"]["healthy"], true);
    assert!(
        pool["activity"]["total"].as_i64().is_some_and(|n| n >= 1),
        "{pool}"
    );
    let ping = json["operations"]
        .as_array()
        .and_then(|o| o.iter().find(|o| o["name"] == "Probe::ping"))
        .expect("operation");
    assert_eq!(ping["metrics"]["successes"], 1);
    assert_eq!(ping["policy"]["timeout_ms"], 2000);
    assert_eq!(http_get(addr, "/health/live", None).await.0, 200);
    rt.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_are_persisted_on_postgres_and_counters_reset() {
    let db = TestDb::create().await;
    let rt = runtime_on(&db).await;
    rt.scope(async {
        for _ in 0..4 {
            Probe.ping().await.expect("ping");
        }
    })
    .await;
    rt.persist_metrics(None).await.expect("persisted");
    assert_eq!(
        rt.snapshot().totals.calls,
        0,
        "counters reset after persisting"
    );
    assert_eq!(db.scalar("count(*) FROM resilience_metrics").await, 1);
    assert_eq!(db.scalar("calls FROM resilience_metrics").await, 4);
    assert_eq!(
        db.scalar("(snapshot->'totals'->>'successes')::bigint FROM resilience_metrics")
            .await,
        4
    );
    // The periodic task writes more rows, and a last one when stopped.
    let task = rt.start_metrics_persistence(resilient::db::PersistConfig::every(
        Duration::from_millis(50),
    ));
    assert!(
        support::eventually(Duration::from_secs(5), async || db
            .scalar("count(*) FROM resilience_metrics")
            .await
            >= 3)
        .await
    );
    task.stop().await;
    let rows = db.scalar("count(*) FROM resilience_metrics").await;
    assert!(rows >= 4);
    let body = db
        .scalar(&format!(
            "count(*) FROM resilience_metrics WHERE snapshot::text LIKE '%{PASSWORD}%'"
        ))
        .await;
    assert_eq!(body, 0);
    rt.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_are_persisted_on_sqlite() {
    let dir = std::env::temp_dir().join(support::pg::unique_name("metrics"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("metrics.db");
    let config = DbConfig::parse(&format!("sqlite://{}", path.display())).expect("sqlite url");
    let rt = Runtime::builder()
        .database("local", config)
        .build()
        .expect("runtime");
    rt.persist_metrics(Some("local")).await.expect("first row");
    rt.persist_metrics(Some("local")).await.expect("second row");
    let mut conn = rt.pool("local").expect("pool").conn().await.expect("conn");
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    use diesel_async::RunQueryDsl;
    let count: Count = diesel::sql_query("SELECT count(*) AS n FROM resilience_metrics")
        .get_result(conn.sqlite().expect("sqlite"))
        .await
        .expect("count");
    assert_eq!(count.n, 2);
    drop(conn);
    rt.shutdown(Duration::from_secs(1)).await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_failed_write_is_reported_not_fatal() {
    let config = DbConfig::parse(&format!(
        "postgres://postgres@127.0.0.1:{}/x",
        support::closed_port()
    ))
    .expect("url")
    .acquire_timeout(Duration::from_millis(200));
    let rt = Runtime::builder()
        .database("gone", config)
        .build()
        .expect("runtime");
    let err = rt.persist_metrics(None).await.expect_err("nothing listens");
    assert!(
        err.to_string().contains("refused") || err.to_string().contains("timed out"),
        "{err}"
    );
}
