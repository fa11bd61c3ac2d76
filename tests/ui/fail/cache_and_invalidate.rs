use resilient::{Rejection, resilient};

#[resilient(cache = "user:<id>", invalidate = "user:<id>")]
pub async fn touch(id: i64) -> Result<i64, Rejection> {
    Ok(id)
}

fn main() {}
