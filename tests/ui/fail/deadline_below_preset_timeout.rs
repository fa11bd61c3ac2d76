use resilient::{Rejection, resilient};

// The `write` preset's attempt timeout is 10 s.
#[resilient(policy = "write", deadline_ms = 5000)]
pub async fn find() -> Result<(), Rejection> {
    Ok(())
}
fn main() {}
