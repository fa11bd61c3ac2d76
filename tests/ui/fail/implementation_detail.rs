use resilient::{Rejection, resilient};

// Generated bindings are hygienic: the body cannot reach them.
#[resilient(retry = 1)]
pub async fn find() -> Result<(), Rejection> {
    let _ = &__resilient_call;
    Ok(())
}
fn main() {}
