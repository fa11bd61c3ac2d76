use resilient::{Rejection, resilient};

#[resilient(invalidate = [])]
pub async fn delete(id: i64) -> Result<(), Rejection> {
    let _ = id;
    Ok(())
}

fn main() {}
