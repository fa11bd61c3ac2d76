use resilient::{Rejection, resilient};

#[resilient(breaker = "replica")]
pub async fn find() -> Result<(), Rejection> {
    Ok(())
}
fn main() {}
