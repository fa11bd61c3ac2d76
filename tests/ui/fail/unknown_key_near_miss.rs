use resilient::{Rejection, resilient};

#[resilient(retries = 3)]
pub async fn find() -> Result<(), Rejection> {
    Ok(())
}
fn main() {}
