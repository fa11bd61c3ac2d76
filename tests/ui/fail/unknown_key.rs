use resilient::{Rejection, resilient};

#[resilient(colour = "blue")]
pub async fn find() -> Result<(), Rejection> {
    Ok(())
}
fn main() {}
