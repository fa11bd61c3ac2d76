use resilient::resilient;

#[resilient(retry = 1)]
pub async fn find(id: i64) -> Option<i64> {
    Some(id)
}

fn main() {}
