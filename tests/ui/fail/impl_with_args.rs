use resilient::{Rejection, resilient};

pub struct UserRepo;

#[resilient(retry = 1)]
impl UserRepo {
    #[resilient]
    pub async fn find(&self) -> Result<(), Rejection> {
        Ok(())
    }
}
fn main() {}
