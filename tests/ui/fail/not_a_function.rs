use resilient::resilient;

#[resilient(retry = 1)]
pub struct UserRepo;
fn main() {}
