use resilient::{Rejection, resilient};

#[resilient(cache = "member:<user>:<org>")]
pub async fn role(id: i64, org_id: i64) -> Result<String, Rejection> {
    Ok(format!("{id}/{org_id}"))
}

fn main() {}
