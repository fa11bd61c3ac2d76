use resilient::{Rejection, resilient};

#[resilient(retry = 3, delay_ms = 20000)]
pub async fn find() -> Result<(), Rejection> {
    Ok(())
}
fn main() {}
