use resilient::{Rejection, resilient};

#[resilient(retry = 1)]
pub fn find() -> Result<(), Rejection> {
    Ok(())
}
fn main() {}
