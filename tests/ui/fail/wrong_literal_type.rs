use resilient::{Rejection, resilient};

#[resilient(retry = "5")]
pub async fn find() -> Result<(), Rejection> {
    Ok(())
}
fn main() {}
