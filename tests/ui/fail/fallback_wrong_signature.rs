use resilient::{Rejection, resilient};

pub struct Repo;

impl Repo {
    // The fallback must take the same arguments, the receiver first.
    #[resilient(retry = 1, fallback = Self::cached)]
    pub async fn find(&self, id: i64) -> Result<i64, Rejection> {
        Ok(id)
    }

    async fn cached(id: i64) -> Result<i64, Rejection> {
        Ok(id)
    }
}

fn main() {}
