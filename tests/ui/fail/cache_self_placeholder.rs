use resilient::{Rejection, resilient};

pub struct Repo {
    pub tenant: i64,
}

impl Repo {
    #[resilient(cache = "tenant:<self.tenant>:user:<id>")]
    pub async fn find(&self, id: i64) -> Result<i64, Rejection> {
        Ok(id + self.tenant)
    }
}

fn main() {}
