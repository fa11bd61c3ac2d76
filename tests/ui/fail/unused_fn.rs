//! The attribute does not hide the user's own lints (tracing#1613).
#![deny(dead_code)]

use resilient::{Rejection, resilient};

#[resilient(retry = 1)]
async fn never_called() -> Result<(), Rejection> {
    Ok(())
}

fn main() {}
