//! The admin-only health dashboard, with background traffic to look at.
//!
//! ```sh
//! cargo run --example dashboard
//! # then, with the token it prints:
//! curl -s -H "Authorization: Bearer $TOKEN" http://127.0.0.1:9090/admin/database-health
//! ```
//!
//! It serves on 127.0.0.1 only (port 9090, or `DASHBOARD_PORT`), on an embedded SQLite
//! file (or `DATABASE_URL`), until Ctrl-C, then shuts down gracefully. A token is made
//! up at startup unless `ADMIN_TOKEN` is set.

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use resilient::breaker::BreakerSpec;
use resilient::dashboard::{BearerTokens, Dashboard};
use resilient::db::{self, Conn, DATABASE_URL, DbConfig, DbError};
use resilient::{Classify, ErrorClass, Rejection, Runtime, resilient};

#[derive(Debug, thiserror::Error)]
enum AppError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Query(#[from] diesel::result::Error),
    #[error("the flaky dependency failed")]
    Flaky,
    #[error(transparent)]
    Resilience(#[from] Rejection),
}

impl Classify for AppError {
    fn class(&self) -> ErrorClass {
        match self {
            AppError::Db(e) => e.class(),
            AppError::Query(e) => e.class(),
            AppError::Flaky => ErrorClass::Unavailable,
            AppError::Resilience(r) => r.class(),
        }
    }

    fn describe(&self) -> Option<String> {
        Some(self.to_string())
    }
}

/// A second dependency that fails in bursts, behind a breaker of its own.
static FLAKY: BreakerSpec = BreakerSpec::new("flaky-service")
    .failure_threshold(3)
    .reset_timeout(Duration::from_secs(5));

struct Traffic;

static TICK: AtomicU64 = AtomicU64::new(0);

#[resilient]
impl Traffic {
    #[resilient(policy = "read")]
    async fn ping(&self) -> Result<i64, AppError> {
        // Imported here: in scope elsewhere, diesel's `load` would shadow `AtomicU64::load`.
        use diesel_async::RunQueryDsl;
        let mut conn = db::conn().await?;
        let q = diesel::select(diesel::dsl::sql::<diesel::sql_types::BigInt>(
            "CAST(1 AS BIGINT)",
        ));
        let one = match &mut conn {
            Conn::Postgres(c) => q.get_result(&mut **c).await?,
            Conn::Sqlite(c) => q.get_result(&mut **c).await?,
            _ => 0,
        };
        Ok(one)
    }

    /// Fails for 20 s of every minute, so the breaker opens and closes again.
    #[resilient(breaker = FLAKY, retry = 2, delay_ms = 50, timeout_ms = 1000)]
    async fn flaky(&self) -> Result<(), AppError> {
        // The traffic loop ticks four times a second.
        let second = TICK.load(Ordering::Relaxed) / 4 % 60;
        if second < 20 {
            Err(AppError::Flaky)
        } else {
            Ok(())
        }
    }
}

fn token() -> String {
    std::env::var("ADMIN_TOKEN").unwrap_or_else(|_| {
        let h = |salt: u64| {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u64(salt);
            h.finish()
        };
        format!("{:016x}{:016x}", h(1), h(2))
    })
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let sqlite =
        std::env::temp_dir().join(format!("resilient-dashboard-{}.db", std::process::id()));
    let config = match std::env::var_os(DATABASE_URL) {
        Some(_) => DbConfig::from_env()?,
        None => DbConfig::parse(&format!("sqlite://{}", sqlite.display()))?,
    };
    let rt = Runtime::builder().database("primary", config).build()?;
    let monitor = rt.start_health_monitor(db::MonitorConfig::default());

    // Background traffic: a few calls per second.
    let traffic = {
        let inner = rt.clone();
        tokio::spawn(rt.scope(async move {
            while !inner.is_shutting_down() {
                TICK.fetch_add(1, Ordering::Relaxed);
                let _ = Traffic.ping().await;
                let _ = Traffic.flaky().await;
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }))
    };

    let token = token();
    let port: u16 = std::env::var("DASHBOARD_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(9090);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let app = Dashboard::new(rt.clone(), BearerTokens::new().admin(token.clone()))
        .readiness(true)
        .router();
    println!("dashboard on http://{}", listener.local_addr()?);
    println!("  admin token: {token}");
    println!(
        "  curl -s -H 'Authorization: Bearer {token}' http://{}/admin/database-health",
        listener.local_addr()?
    );
    println!("  Ctrl-C to stop");
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let report = rt.shutdown_on_signal(Duration::from_secs(10)).await?;
    println!(
        "shut down: drained {} in {:?}",
        report.drained, report.waited
    );
    monitor.stop().await;
    server.abort();
    let _ = traffic.await;
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", sqlite.display()));
    }
    Ok(())
}
