use resilient::{Rejection, resilient};

#[resilient(retry = 0, backoff = "fixed")]
pub async fn find() -> Result<(), Rejection> {
    Ok(())
}
fn main() {}
