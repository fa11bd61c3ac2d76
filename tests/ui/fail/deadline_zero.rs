use resilient::{Rejection, resilient};

#[resilient(deadline_ms = 0)]
pub async fn find() -> Result<(), Rejection> {
    Ok(())
}
fn main() {}
