use resilient::{Classify, ErrorClass, resilient};

#[derive(Debug)]
pub struct DbError;

impl Classify for DbError {
    fn class(&self) -> ErrorClass {
        ErrorClass::Transient
    }
}

#[resilient(retry = 1)]
pub async fn find(id: i64) -> Result<i64, DbError> {
    Ok(id)
}

fn main() {}
