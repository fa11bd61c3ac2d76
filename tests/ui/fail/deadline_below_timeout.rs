use resilient::{Rejection, resilient};

#[resilient(timeout_ms = 5000, deadline_ms = 1000)]
pub async fn find() -> Result<(), Rejection> {
    Ok(())
}
fn main() {}
