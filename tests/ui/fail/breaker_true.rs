use resilient::{Rejection, resilient};

#[resilient(breaker = true)]
pub async fn find() -> Result<(), Rejection> {
    Ok(())
}
fn main() {}
