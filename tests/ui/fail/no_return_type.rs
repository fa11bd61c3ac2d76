use resilient::resilient;

#[resilient(retry = 1)]
pub async fn ping(id: i64) {
    let _ = id;
}
fn main() {}
