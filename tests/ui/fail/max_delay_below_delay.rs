use resilient::{Rejection, resilient};

#[resilient(retry = 3, delay_ms = 100, max_delay_ms = 50)]
pub async fn find() -> Result<(), Rejection> {
    Ok(())
}
fn main() {}
