use resilient::{Rejection, resilient};

// No `retry`, no preset: the operation runs once.
#[resilient(max_delay_ms = 500)]
pub async fn find() -> Result<(), Rejection> {
    Ok(())
}
fn main() {}
