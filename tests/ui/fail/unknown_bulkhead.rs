use resilient::{Rejection, resilient};

// Only built-ins are strings: a custom bulkhead is a `static` named by path.
#[resilient(bulkhead = "exports")]
pub async fn find() -> Result<(), Rejection> {
    Ok(())
}
fn main() {}
