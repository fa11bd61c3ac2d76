use std::rc::Rc;

use resilient::{Rejection, resilient};

#[resilient(cache = "user:<id>")]
pub async fn find(id: i64) -> Result<Rc<String>, Rejection> {
    Ok(Rc::new(id.to_string()))
}

fn main() {}
