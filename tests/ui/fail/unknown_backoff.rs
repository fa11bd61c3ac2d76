use resilient::{Rejection, resilient};

#[resilient(retry = 3, backoff = "linear")]
pub async fn find() -> Result<(), Rejection> {
    Ok(())
}
fn main() {}
