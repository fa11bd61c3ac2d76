use resilient::{Rejection, resilient};

pub struct Patch {
    pub user_id: i64,
}

#[resilient(invalidate = "user:<patch.id>")]
pub async fn rename(patch: &Patch) -> Result<(), Rejection> {
    let _ = patch.user_id;
    Ok(())
}

fn main() {}
