use resilient::{Rejection, resilient};

pub struct Filter {
    pub active: bool,
}

#[resilient(cache = "users:<filter>")]
pub async fn list(filter: Filter) -> Result<Vec<String>, Rejection> {
    let _ = filter.active;
    Ok(Vec::new())
}

fn main() {}
