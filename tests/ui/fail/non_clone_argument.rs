use resilient::{Rejection, resilient};

pub struct NewUser {
    pub name: String,
}

// With retries, each attempt gets its own copy of every by-value argument.
#[resilient(retry = 2)]
pub async fn create(id: i64, new: NewUser) -> Result<i64, Rejection> {
    let _ = new.name;
    Ok(id)
}

fn main() {}
