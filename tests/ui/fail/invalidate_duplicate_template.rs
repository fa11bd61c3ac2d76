use resilient::{Rejection, resilient};

#[resilient(invalidate = ["user:<id>", "org:<id>"], invalidate = "user:<id>")]
pub async fn delete(id: i64) -> Result<(), Rejection> {
    let _ = id;
    Ok(())
}

fn main() {}
