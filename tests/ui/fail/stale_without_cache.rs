use resilient::{Rejection, resilient};

#[resilient(retry = 2, stale_s = 3600)]
pub async fn find(id: i64) -> Result<i64, Rejection> {
    Ok(id)
}

fn main() {}
