use resilient::{Rejection, resilient};

// Without `timeout_ms` or a preset, each attempt may take 30 s.
#[resilient(deadline_ms = 20000)]
pub async fn find() -> Result<(), Rejection> {
    Ok(())
}
fn main() {}
