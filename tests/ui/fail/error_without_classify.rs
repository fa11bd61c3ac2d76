use resilient::{Rejection, resilient};

#[derive(Debug)]
pub enum DbError {
    Resilience(Rejection),
}

impl From<Rejection> for DbError {
    fn from(r: Rejection) -> Self {
        DbError::Resilience(r)
    }
}

#[resilient(retry = 1)]
pub async fn find(id: i64) -> Result<i64, DbError> {
    Ok(id)
}

fn main() {}
