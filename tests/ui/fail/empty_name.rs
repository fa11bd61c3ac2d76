use resilient::{Rejection, resilient};

#[resilient(name = "")]
pub async fn find() -> Result<(), Rejection> {
    Ok(())
}
fn main() {}
