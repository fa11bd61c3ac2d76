use resilient::{Rejection, resilient};

#[resilient(cache = "user:<usr_id>")]
pub async fn find(user_id: i64) -> Result<String, Rejection> {
    Ok(user_id.to_string())
}

fn main() {}
