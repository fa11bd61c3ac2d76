use resilient::{Rejection, resilient};

#[resilient(cache = "user:<id>", ttl_s = 60, stale_s = 600, ttl_s = 120)]
pub async fn find(id: i64) -> Result<i64, Rejection> {
    Ok(id)
}

fn main() {}
