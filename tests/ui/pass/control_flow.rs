//! `?`, early `return` and nested closures and async blocks in the body keep their meaning:
//! they leave the attempt, not the whole call.

#[path = "../support/mod.rs"]
mod support;

use resilient::resilient;
use support::{RepoError, RepoResult};

fn parse(s: &str) -> Result<u32, RepoError> {
    s.parse().map_err(|_| RepoError::Caller)
}

#[resilient(retry = 2)]
pub async fn question_mark(s: &str) -> RepoResult<u32> {
    let n = parse(s)?;
    if n == 0 {
        return Ok(0);
    }
    let doubled = async { n * 2 }.await;
    let add = |x: u32| -> Option<u32> { x.checked_add(1) };
    Ok(add(doubled).ok_or(RepoError::Caller)?)
}

/// `?` on an error type that converts into the declared one.
#[resilient]
pub async fn converted(s: &str) -> Result<u32, Wrapped> {
    Ok(s.parse::<u32>()?)
}

#[derive(Debug)]
pub struct Wrapped;

impl From<std::num::ParseIntError> for Wrapped {
    fn from(_: std::num::ParseIntError) -> Self {
        Wrapped
    }
}

impl From<resilient::Rejection> for Wrapped {
    fn from(_: resilient::Rejection) -> Self {
        Wrapped
    }
}

impl resilient::Classify for Wrapped {
    fn class(&self) -> resilient::ErrorClass {
        resilient::ErrorClass::Caller
    }
}

fn main() {
    support::run(async {
        assert_eq!(question_mark("3").await.unwrap(), 7);
        assert_eq!(question_mark("0").await.unwrap(), 0);
        assert!(matches!(question_mark("x").await, Err(RepoError::Caller)));
        assert!(converted("x").await.is_err());
        assert_eq!(converted("4").await.unwrap(), 4);
    });
}
