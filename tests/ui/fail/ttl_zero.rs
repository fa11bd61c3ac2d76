use resilient::{Rejection, resilient};

#[resilient(cache = "user:<id>", ttl_s = 0)]
pub async fn find(id: i64) -> Result<i64, Rejection> {
    Ok(id)
}

fn main() {}
