use resilient::{Rejection, resilient};

// The `report` preset does not retry.
#[resilient(policy = "report", jitter = false)]
pub async fn find() -> Result<(), Rejection> {
    Ok(())
}
fn main() {}
