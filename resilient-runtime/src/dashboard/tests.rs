//! The dashboard over real HTTP on 127.0.0.1.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::*;
use crate::breaker::BreakerSpec;
use crate::policy::Policy;
use crate::{Classify, ErrorClass, Rejection};

static DASH_BREAKER: BreakerSpec = BreakerSpec::new("dash-db").failure_threshold(2);
static DASH_OP: Policy = Policy::new("Dash::op", module_path!()).breaker(&DASH_BREAKER);

#[derive(Debug)]
struct Down;
impl Classify for Down {
    fn class(&self) -> ErrorClass {
        ErrorClass::Unavailable
    }
}
impl From<Rejection> for Down {
    fn from(_: Rejection) -> Self {
        Down
    }
}

async fn serve(d: Dashboard) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, d.router()).await;
    });
    addr
}

/// A minimal HTTP/1.1 client: status code and body.
async fn get(addr: std::net::SocketAddr, path: &str, token: Option<&str>) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n{auth}Connection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.expect("read");
    let text = String::from_utf8_lossy(&buf).to_string();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

fn runtime() -> Runtime {
    Runtime::builder()
        .without_registry()
        .register(&DASH_OP)
        .build()
        .expect("valid")
}

#[tokio::test]
async fn only_admins_read_the_health_json() {
    let rt = runtime();
    let addr = serve(Dashboard::new(
        rt,
        BearerTokens::new().admin("adm1n").viewer("v1ewer"),
    ))
    .await;
    assert_eq!(get(addr, "/admin/database-health", None).await.0, 401);
    assert_eq!(
        get(addr, "/admin/database-health", Some("wrong")).await.0,
        401
    );
    assert_eq!(
        get(addr, "/admin/database-health", Some("adm1")).await.0,
        401
    );
    assert_eq!(
        get(addr, "/admin/database-health", Some("v1ewer")).await.0,
        403
    );
    let (status, body) = get(addr, "/admin/database-health", Some("adm1n")).await;
    assert_eq!(status, 200);
    let json: serde_json::Value = serde_json::from_str(&body).expect("json");
    for key in [
        "taken_at_unix_ms",
        "breakers",
        "bulkheads",
        "operations",
        "totals",
        "recent_errors",
    ] {
        assert!(json.get(key).is_some(), "missing {key}: {body}");
    }
    assert!(!body.contains("adm1n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_breaker_shows_on_the_dashboard_but_not_in_liveness() {
    let rt = runtime();
    for _ in 0..2 {
        let r: Result<(), Down> = rt.execute(&DASH_OP, || async { Err(Down) }).await;
        assert!(r.is_err());
    }
    let addr = serve(Dashboard::new(rt.clone(), BearerTokens::new().admin("t"))).await;
    let (_, body) = get(addr, "/admin/database-health", Some("t")).await;
    let json: serde_json::Value = serde_json::from_str(&body).expect("json");
    let breaker = json["breakers"]
        .as_array()
        .and_then(|b| b.iter().find(|b| b["name"] == "dash-db"))
        .expect("breaker listed");
    assert_eq!(breaker["state"], "open");
    let op = json["operations"]
        .as_array()
        .and_then(|o| o.iter().find(|o| o["name"] == "Dash::op"))
        .expect("operation listed");
    assert_eq!(op["metrics"]["failures"]["unavailable"], 2);
    let (live, _) = get(addr, "/health/live", None).await;
    assert_eq!(live, 200, "liveness must not depend on breaker state");
    assert_eq!(
        get(addr, "/health/ready", None).await.0,
        404,
        "readiness is opt-in"
    );
}

#[tokio::test]
async fn a_pluggable_authorizer_decides() {
    let auth = |h: &HeaderMap| match h.get("x-role").and_then(|v| v.to_str().ok()) {
        Some("admin") => Access::Admin,
        Some(_) => Access::Forbidden,
        None => Access::Unauthenticated,
    };
    let addr = serve(Dashboard::new(runtime(), auth).prometheus(|| "text 1\n".to_string())).await;
    assert_eq!(get(addr, "/metrics", None).await.0, 401);
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nx-role: admin\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut buf = String::new();
    s.read_to_string(&mut buf).await.expect("read");
    assert!(buf.starts_with("HTTP/1.1 200"), "{buf}");
    assert!(buf.ends_with("text 1\n"), "{buf}");
}

#[test]
fn tokens_never_show_in_debug() {
    let t = BearerTokens::new().admin("super-secret");
    assert!(!format!("{t:?}").contains("super-secret"));
}
