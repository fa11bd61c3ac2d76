use resilient::{Rejection, resilient};

#[resilient(retry = 1, timeout_ms = 100, retry = 2)]
pub async fn find() -> Result<(), Rejection> {
    Ok(())
}
fn main() {}
