use resilient::{Rejection, resilient};

#[resilient(bulkhead = true)]
pub async fn find() -> Result<(), Rejection> {
    Ok(())
}
fn main() {}
