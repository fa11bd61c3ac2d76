use resilient::resilient;

#[resilient(cache = "user:<id>")]
pub async fn find(id: i64) -> Option<i64> {
    Some(id)
}

fn main() {}
