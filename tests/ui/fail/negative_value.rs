use resilient::{Rejection, resilient};

#[resilient(timeout_ms = -1)]
pub async fn find() -> Result<(), Rejection> {
    Ok(())
}

fn main() {}
