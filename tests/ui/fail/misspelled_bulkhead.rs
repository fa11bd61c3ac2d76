use resilient::{Rejection, resilient};

#[resilient(bulkhead = "wirte")]
pub async fn find() -> Result<(), Rejection> {
    Ok(())
}
fn main() {}
