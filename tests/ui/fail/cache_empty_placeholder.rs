use resilient::{Rejection, resilient};

#[resilient(invalidate = "user:<>")]
pub async fn delete(id: i64) -> Result<i64, Rejection> {
    Ok(id)
}

fn main() {}
