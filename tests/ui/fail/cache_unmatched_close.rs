use resilient::{Rejection, resilient};

#[resilient(cache = "user:id>")]
pub async fn find(id: i64) -> Result<i64, Rejection> {
    Ok(id)
}

fn main() {}
