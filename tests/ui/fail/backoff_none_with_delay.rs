use resilient::{Rejection, resilient};

#[resilient(retry = 3, backoff = "none", delay_ms = 50)]
pub async fn find() -> Result<(), Rejection> {
    Ok(())
}
fn main() {}
