//! Shared by the pass cases: a repository error type and a way to run a test body inside
//! an isolated runtime. Included with `#[path = "../support/mod.rs"] mod support;`.

#![allow(dead_code)]

use std::future::Future;

use resilient::{Classify, ErrorClass, Rejection, Runtime};

#[derive(Debug)]
pub enum RepoError {
    Transient,
    Caller,
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
            RepoError::Transient => ErrorClass::Transient,
            RepoError::Caller => ErrorClass::Caller,
            RepoError::Resilience(r) => r.class(),
        }
    }
}

pub type RepoResult<T> = Result<T, RepoError>;

/// Runs `fut` inside a fresh runtime scope on a paused current-thread tokio runtime.
pub fn run<F: Future>(fut: F) -> F::Output {
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("tokio runtime");
    let rt = Runtime::builder().build().expect("resilient runtime");
    tokio.block_on(rt.scope(fut))
}

/// The names of every operation registered in this binary.
pub fn operation_names() -> Vec<&'static str> {
    let rt = Runtime::builder().build().expect("resilient runtime");
    rt.operations().map(|p| p.name()).collect()
}
