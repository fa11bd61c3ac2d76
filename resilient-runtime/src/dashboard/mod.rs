//! The admin-only health dashboard: an axum [`Router`] that reads snapshots and
//! changes nothing.
//!
//! | route | who | what |
//! |---|---|---|
//! | `GET /admin/database-health` | admins ([`Authorizer`]) | the [`Snapshot`](crate::Snapshot) as JSON, with database health |
//! | `GET /health/live` | anyone | `200` while the process serves requests. Never depends on breaker or database state: an open breaker must not get pods restarted |
//! | `GET /health/ready` | anyone, only if enabled with [`Dashboard::readiness`] | `200` when the database answers, else `503` |
//! | `GET /metrics` | admins, only if enabled with [`Dashboard::prometheus`] | the Prometheus text the given render function returns |
//!
//! Missing or invalid credentials get `401`; a valid credential without the admin role
//! gets `403`. The JSON never contains a connection URL, a password or a query parameter.
//!
//! ```no_run
//! # async fn run(rt: resilient_runtime::Runtime) -> std::io::Result<()> {
//! use resilient_runtime::dashboard::{BearerTokens, Dashboard};
//!
//! let app = Dashboard::new(rt, BearerTokens::new().admin(std::env::var("ADMIN_TOKEN").unwrap_or_default()))
//!     .readiness(true)
//!     .router();
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:9090").await?;
//! axum::serve(listener, app).await
//! # }
//! ```

mod auth;

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

pub use auth::{Access, Authorizer, BearerTokens};

use crate::Runtime;

type Render = Arc<dyn Fn() -> String + Send + Sync>;

/// Builds the dashboard's router.
#[derive(Clone)]
pub struct Dashboard {
    rt: Runtime,
    auth: Arc<dyn Authorizer>,
    readiness: bool,
    prometheus: Option<Render>,
}

impl std::fmt::Debug for Dashboard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dashboard")
            .field("readiness", &self.readiness)
            .field("prometheus", &self.prometheus.is_some())
            .finish_non_exhaustive()
    }
}

impl Dashboard {
    /// A dashboard over `rt`, readable by whoever `auth` says is an admin.
    pub fn new(rt: Runtime, auth: impl Authorizer) -> Self {
        Dashboard {
            rt,
            auth: Arc::new(auth),
            readiness: false,
            prometheus: None,
        }
    }

    /// Adds `GET /health/ready`, which reflects database health (off by default: wire
    /// it to a readiness probe only if taking the instance out of the load balancer
    /// when the database is down is what you want).
    pub fn readiness(mut self, on: bool) -> Self {
        self.readiness = on;
        self
    }

    /// Adds an admin-only `GET /metrics` serving what `render` returns, e.g. a
    /// `metrics-exporter-prometheus` handle's `render()`. Metrics are published first.
    pub fn prometheus(mut self, render: impl Fn() -> String + Send + Sync + 'static) -> Self {
        self.prometheus = Some(Arc::new(render));
        self
    }

    /// The router.
    pub fn router(self) -> Router {
        let mut router = Router::new()
            .route("/admin/database-health", get(database_health))
            .route("/health/live", get(live));
        if self.readiness {
            router = router.route("/health/ready", get(ready));
        }
        if self.prometheus.is_some() {
            router = router.route("/metrics", get(prometheus));
        }
        router.with_state(Arc::new(self))
    }

    /// The response refusing the request, if it is not an admin's.
    fn refusal(&self, headers: &HeaderMap) -> Option<Response> {
        match self.auth.authorize(headers) {
            Access::Admin => None,
            Access::Forbidden => Some((StatusCode::FORBIDDEN, "forbidden\n").into_response()),
            Access::Unauthenticated => Some(
                (
                    StatusCode::UNAUTHORIZED,
                    [(header::WWW_AUTHENTICATE, "Bearer")],
                    "unauthorized\n",
                )
                    .into_response(),
            ),
        }
    }
}

async fn database_health(State(d): State<Arc<Dashboard>>, headers: HeaderMap) -> Response {
    if let Some(refusal) = d.refusal(&headers) {
        return refusal;
    }
    let mut body = match serde_json::to_value(d.rt.snapshot()) {
        Ok(v) => v,
        Err(e) => {
            tracing::error!(error = %e, "could not serialize the snapshot");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    body["database"] = database_section(&d.rt).await;
    axum::Json(body).into_response()
}

#[cfg(any(feature = "postgres", feature = "sqlite"))]
async fn database_section(rt: &Runtime) -> serde_json::Value {
    serde_json::to_value(rt.database_health().await).unwrap_or(serde_json::Value::Null)
}

#[cfg(not(any(feature = "postgres", feature = "sqlite")))]
async fn database_section(_rt: &Runtime) -> serde_json::Value {
    serde_json::Value::Null
}

async fn live(State(d): State<Arc<Dashboard>>) -> Response {
    // Liveness says the process can serve requests, nothing more: breaker and database
    // state are deliberately left out (Resilience4j #607).
    let body = serde_json::json!({ "status": "alive", "shutting_down": d.rt.is_shutting_down() });
    axum::Json(body).into_response()
}

async fn ready(State(d): State<Arc<Dashboard>>) -> Response {
    let db = database_section(&d.rt).await;
    let healthy = !d.rt.is_shutting_down() && db_is_healthy(&db);
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(serde_json::json!({ "ready": healthy }))).into_response()
}

/// Healthy when every pool's last health check passed (no pools: nothing to wait for).
fn db_is_healthy(db: &serde_json::Value) -> bool {
    db.get("pools")
        .and_then(|p| p.as_array())
        .is_none_or(|pools| {
            pools
                .iter()
                .all(|p| p["health"]["healthy"].as_bool().unwrap_or(false))
        })
}

async fn prometheus(State(d): State<Arc<Dashboard>>, headers: HeaderMap) -> Response {
    if let Some(refusal) = d.refusal(&headers) {
        return refusal;
    }
    d.rt.publish_metrics();
    let text = d.prometheus.as_ref().map(|r| r()).unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

#[cfg(test)]
mod tests;
