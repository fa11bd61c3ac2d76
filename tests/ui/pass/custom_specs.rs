//! Custom bulkheads and breakers are `static`s referenced by path.

#[path = "../support/mod.rs"]
mod support;

use resilient::breaker::BreakerSpec;
use resilient::bulkhead::BulkheadSpec;
use resilient::resilient;
use support::RepoResult;

pub static EXPORTS: BulkheadSpec = BulkheadSpec::new("exports", 2, 4);

pub mod specs {
    use resilient::breaker::BreakerSpec;

    pub static REPLICA: BreakerSpec = BreakerSpec::new("replica").failure_threshold(3);
}

#[resilient(bulkhead = EXPORTS, breaker = specs::REPLICA)]
pub async fn export() -> RepoResult<()> {
    Ok(())
}

#[resilient(bulkhead = crate::EXPORTS, breaker = self::LOCAL)]
pub async fn qualified() -> RepoResult<()> {
    Ok(())
}

static LOCAL: BreakerSpec = BreakerSpec::new("local");

fn main() {
    support::run(async {
        export().await.unwrap();
        qualified().await.unwrap();
    });
}
