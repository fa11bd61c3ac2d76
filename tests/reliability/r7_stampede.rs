//! R7: 200 callers miss the same cache key at once while the database is down.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use diesel::sql_types::BigInt;
use resilient::breaker::BreakerSpec;
use resilient::db::{self, DbConfig};
use resilient::{Classify, ErrorClass, Rejection, Runtime, resilient};
use tokio::sync::Barrier;

use crate::cluster::PgServer;
use crate::common::{AppError, SERIAL, bounded, exec, ms};

const CALLERS: usize = 200;
const SLACK: Duration = Duration::from_millis(50);

static BREAKER: BreakerSpec = BreakerSpec::new("r7").failure_threshold(50);

pub struct Profiles {
    /// Loads that reached the repository body (one per attempt).
    loads: AtomicU32,
}

#[resilient]
impl Profiles {
    /// A cached profile read: 1 s fresh, 60 s stale; one attempt per load.
    #[resilient(
        timeout_ms = 2_000,
        breaker = BREAKER,
        cache = "r7:profile:<user>",
        ttl_s = 1,
        stale_s = 60
    )]
    pub async fn get(&self, user: i64) -> Result<i64, AppError> {
        use diesel_async::RunQueryDsl as _;
        self.loads.fetch_add(1, Ordering::SeqCst);
        let mut conn = db::conn().await?;
        Ok(diesel::select(
            diesel::dsl::sql::<BigInt>("")
                .bind::<BigInt, _>(user)
                .sql(" * 10"),
        )
        .get_result(conn.pg()?)
        .await?)
    }
}

struct Stampede {
    loads: u32,
    ok_values: Vec<i64>,
    errors: Vec<(String, ErrorClass)>,
    slowest: Duration,
}

async fn stampede(rt: &Runtime, profiles: &Arc<Profiles>, user: i64) -> Stampede {
    let before = profiles.loads.load(Ordering::SeqCst);
    let barrier = Arc::new(Barrier::new(CALLERS));
    let callers: Vec<_> = (0..CALLERS)
        .map(|_| {
            let (rt, profiles, barrier) = (rt.clone(), Arc::clone(profiles), Arc::clone(&barrier));
            tokio::spawn(async move {
                barrier.wait().await;
                let start = Instant::now();
                let out = rt.scope(profiles.get(user)).await;
                (start.elapsed(), out)
            })
        })
        .collect();
    let mut result = Stampede {
        loads: 0,
        ok_values: Vec::new(),
        errors: Vec::new(),
        slowest: Duration::ZERO,
    };
    for c in callers {
        let (took, out) = c.await.unwrap();
        result.slowest = result.slowest.max(took);
        match out {
            Ok(v) => result.ok_values.push(v),
            // A waiter's error carries the class of the loader's failure.
            Err(AppError::Resilience(Rejection::SharedLoadFailed { class, .. })) => {
                result.errors.push(("shared_load_failed".into(), class));
            }
            Err(e) => result.errors.push((e.label(), e.class())),
        }
    }
    result.loads = profiles.loads.load(Ordering::SeqCst) - before;
    result
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r7_200_callers_miss_one_key_while_the_database_is_down() {
    let _serial = SERIAL.lock().await;
    bounded(scenario()).await;
}

async fn scenario() {
    let server = Arc::new(PgServer::start_new("r7"));
    let url = server.url();
    exec(&url, "SELECT 1").await;
    let acquire = Duration::from_millis(500);
    let rt = Runtime::builder()
        .database(
            "main",
            DbConfig::parse(&url)
                .unwrap()
                .max_size(4)
                .acquire_timeout(acquire)
                .application_name("r7")
                .breaker(None),
        )
        .build()
        .unwrap();
    let profiles = Arc::new(Profiles {
        loads: AtomicU32::new(0),
    });

    // User 1 is cached while the database is up; user 2 never was.
    assert_eq!(rt.scope(profiles.get(1)).await.unwrap(), 10);
    {
        let server = Arc::clone(&server);
        tokio::task::spawn_blocking(move || server.stop())
            .await
            .unwrap();
    }
    // Past the TTL: the next read of user 1 is a miss with a stale value to serve.
    tokio::time::sleep(Duration::from_millis(1_100)).await;

    let stale = stampede(&rt, &profiles, 1).await;
    let cold = stampede(&rt, &profiles, 2).await;
    let cache = rt
        .caches()
        .into_iter()
        .find(|c| c.name == "Profiles::get")
        .unwrap();

    let shared_failures = cold
        .errors
        .iter()
        .filter(|(label, _)| label == "shared_load_failed")
        .count();
    eprintln!(
        "R7 stampede, database down: {CALLERS} callers on a key with a stale value: {} load \
         attempt(s), {} served the stale value, {} errors, slowest {:.0} ms; {CALLERS} callers \
         on a key never cached: {} load attempt(s), {} errors ({} shared the loader's failure, \
         classes {:?}), slowest {:.0} ms (checkout timeout {:.0} ms); cache {:?}",
        stale.loads,
        stale.ok_values.iter().filter(|v| **v == 10).count(),
        stale.errors.len(),
        ms(stale.slowest),
        cold.loads,
        cold.errors.len(),
        shared_failures,
        {
            let mut classes: Vec<ErrorClass> = cold.errors.iter().map(|(_, c)| *c).collect();
            classes.dedup();
            classes
        },
        ms(cold.slowest),
        ms(acquire),
        cache,
    );

    assert_eq!(stale.loads, 1, "one load attempt, not {CALLERS}");
    assert!(
        stale.errors.is_empty() && stale.ok_values.iter().all(|v| *v == 10),
        "every caller got the stale value: {:?}",
        stale.errors
    );
    assert_eq!(stale.ok_values.len(), CALLERS);

    assert_eq!(cold.loads, 1, "one load attempt, not {CALLERS}");
    assert_eq!(cold.errors.len(), CALLERS, "every caller got the error");
    assert_eq!(
        shared_failures,
        CALLERS - 1,
        "the waiters shared the loader's failure"
    );
    assert!(
        cold.errors
            .iter()
            .all(|(_, class)| *class == ErrorClass::Unavailable),
        "the failure keeps its class: {:?}",
        cold.errors
    );
    // Promptly: nobody waits longer than the one load (a checkout that times out).
    let bound = acquire * 2 + SLACK;
    assert!(
        stale.slowest <= bound && cold.slowest <= bound,
        "slowest callers took {:?} / {:?}",
        stale.slowest,
        cold.slowest
    );
}
