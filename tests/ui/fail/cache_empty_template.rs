use resilient::{Rejection, resilient};

#[resilient(cache = "")]
pub async fn find(id: i64) -> Result<i64, Rejection> {
    Ok(id)
}

fn main() {}
