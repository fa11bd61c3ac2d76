use resilient::{Rejection, resilient};

pub trait Users {
    #[resilient(retry = 1)]
    async fn find(&self) -> Result<(), Rejection>;
}
fn main() {}
