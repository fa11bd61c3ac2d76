use resilient::{Rejection, resilient};

#[resilient(retry = 2, idempotent)]
pub async fn find() -> Result<(), Rejection> {
    Ok(())
}
fn main() {}
