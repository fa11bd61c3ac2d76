//! Shared by the `db_*` integration tests: a fresh PostgreSQL database per test
//! ([`pg`]), a throwaway cluster for tests that stop the server ([`cluster`]), a log
//! capture ([`logs`]) and a repository error type ([`AppError`]).
//!
//! Included with `mod support;` from each `tests/db_*.rs`.

#![allow(dead_code)]

pub mod cluster;
pub mod logs;
pub mod pg;

use resilient::db::DbError;
use resilient::{Classify, ErrorClass, Rejection};

/// The error of the test repositories: what a user's repository error looks like.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Query(#[from] diesel::result::Error),
    #[error(transparent)]
    Resilience(#[from] Rejection),
}

impl Classify for AppError {
    fn class(&self) -> ErrorClass {
        match self {
            AppError::Db(e) => e.class(),
            AppError::Query(e) => e.class(),
            AppError::Resilience(r) => r.class(),
        }
    }

    fn describe(&self) -> Option<String> {
        Some(self.to_string())
    }
}

impl AppError {
    /// The rejection inside, if the resilience layer refused or cut the call.
    pub fn rejection(&self) -> Option<&Rejection> {
        match self {
            AppError::Resilience(r) => Some(r),
            _ => None,
        }
    }

    /// A short label for tallies: the rejection's kind or the error's class.
    pub fn label(&self) -> String {
        match self {
            AppError::Resilience(Rejection::BreakerOpen { .. }) => "breaker_open".into(),
            AppError::Resilience(Rejection::BulkheadFull { .. }) => "bulkhead_full".into(),
            AppError::Resilience(Rejection::Timeout { .. }) => "attempt_timeout".into(),
            AppError::Resilience(Rejection::DeadlineExceeded { .. }) => "deadline".into(),
            AppError::Resilience(Rejection::ShuttingDown) => "shutting_down".into(),
            AppError::Resilience(Rejection::SharedLoadFailed { .. }) => "shared_load_failed".into(),
            other => other.class().to_string(),
        }
    }
}

/// Polls `check` every 20 ms until it holds or `within` has passed; returns whether it held.
pub async fn eventually(within: std::time::Duration, mut check: impl AsyncFnMut() -> bool) -> bool {
    let end = tokio::time::Instant::now() + within;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= end {
            return false;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// A loopback port nothing listens on: connecting to it is refused.
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address").port()
}
