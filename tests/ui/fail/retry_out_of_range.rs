use resilient::{Rejection, resilient};

#[resilient(retry = 11)]
pub async fn find() -> Result<(), Rejection> {
    Ok(())
}
fn main() {}
