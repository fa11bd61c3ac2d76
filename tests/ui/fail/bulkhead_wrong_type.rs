use resilient::breaker::BreakerSpec;
use resilient::{Rejection, resilient};

pub static REPLICA: BreakerSpec = BreakerSpec::new("replica");

#[resilient(bulkhead = REPLICA)]
pub async fn find() -> Result<(), Rejection> {
    Ok(())
}

fn main() {}
