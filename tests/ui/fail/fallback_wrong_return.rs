use resilient::{Rejection, resilient};

#[resilient(fallback = cached)]
pub async fn find(id: i64) -> Result<i64, Rejection> {
    Ok(id)
}

async fn cached(id: i64) -> Option<i64> {
    Some(id)
}

fn main() {}
