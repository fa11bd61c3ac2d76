use resilient::{Rejection, resilient};

#[resilient(policy = "reed")]
pub async fn find() -> Result<(), Rejection> {
    Ok(())
}
fn main() {}
