//! A free `async fn` with every option that takes a literal.

use resilient::{Classify, ErrorClass, Rejection, resilient};

#[derive(Debug)]
pub enum RepoError {
    NotFound,
    Resilience(Rejection),
}

impl From<Rejection> for RepoError {
    fn from(r: Rejection) -> Self {
        RepoError::Resilience(r)
    }
}

impl Classify for RepoError {
    fn class(&self) -> ErrorClass {
        match self {
            RepoError::NotFound => ErrorClass::Caller,
            RepoError::Resilience(r) => r.class(),
        }
    }
}

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
        return Err(RepoError::NotFound);
    }
    Ok(format!("{id}{name}"))
}

#[resilient(policy = "read", timeout_ms = 100, bulkhead = false, breaker = false)]
pub async fn preset_overridden(id: i64) -> Result<i64, RepoError> {
    Ok(id)
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    let runtime = resilient::Runtime::builder().build().unwrap();
    rt.block_on(runtime.scope(async {
        assert_eq!(defaults(1).await.unwrap(), 1);
        assert_eq!(everything(1, "x".into()).await.unwrap(), "1x");
        assert!(matches!(everything(-1, "x".into()).await, Err(RepoError::NotFound)));
        assert_eq!(preset_overridden(2).await.unwrap(), 2);
    }));
}
