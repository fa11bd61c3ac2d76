//! Free `async fn`s: the defaults, every literal option, and a preset with overrides.

#[path = "../support/mod.rs"]
mod support;

use resilient::resilient;
use support::RepoError;

#[resilient]
pub async fn defaults(id: i64) -> Result<i64, RepoError> {
    Ok(id)
}

#[resilient(
    retry = 3,
    backoff = "fixed",
    delay_ms = 10,
    max_delay_ms = 20,
    jitter = false,
    timeout_ms = 100,
    deadline_ms = 1000,
    bulkhead = "write",
    breaker = "database",
    idempotent = true,
    name = "users::find"
)]
pub async fn everything(id: i64, name: String) -> Result<String, RepoError> {
    if id < 0 {
        return Err(RepoError::Caller);
    }
    Ok(format!("{id}{name}"))
}

#[resilient(policy = "read", timeout_ms = 100, bulkhead = false, breaker = false)]
pub async fn preset_overridden(id: i64) -> Result<i64, RepoError> {
    Ok(id)
}

#[resilient(policy = "report", deadline_ms = 60_000)]
pub async fn report() -> Result<(), RepoError> {
    Ok(())
}

fn main() {
    support::run(async {
        assert_eq!(defaults(1).await.unwrap(), 1);
        assert_eq!(everything(1, "x".into()).await.unwrap(), "1x");
        assert!(matches!(
            everything(-1, "x".into()).await,
            Err(RepoError::Caller)
        ));
        assert_eq!(preset_overridden(2).await.unwrap(), 2);
        report().await.unwrap();
    });
    let names = support::operation_names();
    for name in ["defaults", "users::find", "preset_overridden", "report"] {
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }
}
