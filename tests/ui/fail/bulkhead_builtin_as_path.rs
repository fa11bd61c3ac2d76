use resilient::{Rejection, resilient};

#[resilient(bulkhead = write)]
pub async fn find() -> Result<(), Rejection> {
    Ok(())
}
fn main() {}
