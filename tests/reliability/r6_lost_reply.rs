//! R6: the connection is lost right after an `INSERT` was sent: the server runs it, the
//! client never hears back. A non-idempotent write must report the ambiguity instead of
//! writing twice; an idempotent one (an idempotency key and `ON CONFLICT DO NOTHING`)
//! retries and converges to exactly one row.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use diesel::sql_types::Text;
use resilient::db::{self, DbConfig};
use resilient::{Classify, ErrorClass, Runtime, resilient};

use crate::cluster::PgServer;
use crate::common::{AppError, SERIAL, bounded, exec, id_counts};
use crate::proxy::Proxy;

const CUT_CALLS: usize = 20;
const IDEMPOTENT_CALLS: usize = 10;
/// Attempts of each idempotent call whose answer is lost.
const LOST_ANSWERS: usize = 2;

pub struct Payments;

#[resilient]
impl Payments {
    /// A plain `INSERT`: running it twice charges twice.
    #[resilient(
        retry = 5,
        delay_ms = 10,
        timeout_ms = 5_000,
        idempotent = false,
        breaker = false
    )]
    pub async fn charge(&self, reference: String, attempts: &AtomicU32) -> Result<(), AppError> {
        use diesel_async::RunQueryDsl as _;
        attempts.fetch_add(1, Ordering::SeqCst);
        let mut conn = db::conn().await?;
        diesel::sql_query("INSERT INTO r6_charges (reference) VALUES ($1)")
            .bind::<Text, _>(reference)
            .execute(conn.pg()?)
            .await?;
        Ok(())
    }

    /// The same write made idempotent: the reference is an idempotency key.
    #[resilient(
        retry = 5,
        delay_ms = 10,
        timeout_ms = 5_000,
        idempotent = true,
        breaker = false
    )]
    pub async fn charge_once(
        &self,
        reference: String,
        attempts: &AtomicU32,
    ) -> Result<(), AppError> {
        use diesel_async::RunQueryDsl as _;
        attempts.fetch_add(1, Ordering::SeqCst);
        let mut conn = db::conn().await?;
        diesel::sql_query(
            "INSERT INTO r6_keyed (reference) VALUES ($1) ON CONFLICT (reference) DO NOTHING",
        )
        .bind::<Text, _>(reference)
        .execute(conn.pg()?)
        .await?;
        Ok(())
    }
}

async fn rows_by_reference(url: &str, table: &str) -> HashMap<i64, i64> {
    id_counts(
        url,
        &format!(
            "SELECT split_part(reference, '-', 2)::int8 AS id, count(*) AS n FROM {table} GROUP BY 1"
        ),
    )
    .await
    .into_iter()
    .map(|r| (r.id, r.n))
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r6_lost_replies_after_insert() {
    let _serial = SERIAL.lock().await;
    bounded(scenario()).await;
}

async fn scenario() {
    let server = PgServer::start_new("r6");
    let url = server.url();
    exec(
        &url,
        "CREATE TABLE r6_charges (reference text NOT NULL); \
         CREATE TABLE r6_keyed (reference text PRIMARY KEY);",
    )
    .await;
    let proxy = Proxy::start(server.port).await;
    let rt = Runtime::builder()
        .database(
            "main",
            DbConfig::parse(&PgServer::url_via(proxy.port()))
                .unwrap()
                .max_size(2)
                .acquire_timeout(Duration::from_secs(5))
                .application_name("r6")
                .breaker(None),
        )
        .build()
        .unwrap();

    // ----- not idempotent: every answer lost -----
    // The marker is the bound value, so the cut follows the Bind/Execute/Sync messages
    // (the statement runs and commits), not the Parse of the statement text.
    proxy.cut_after_marker("charge-", usize::MAX);
    let mut classes: HashMap<ErrorClass, usize> = HashMap::new();
    let mut attempts_seen = Vec::new();
    let mut silent_ok = Vec::new();
    let mut sample = String::new();
    for i in 0..CUT_CALLS {
        let attempts = AtomicU32::new(0);
        let out = rt
            .scope(Payments.charge(format!("charge-{i}"), &attempts))
            .await;
        attempts_seen.push(attempts.into_inner());
        match out {
            Ok(()) => silent_ok.push(i),
            Err(e) => {
                sample = e.to_string();
                *classes.entry(e.class()).or_default() += 1;
            }
        }
    }
    proxy.disarm();
    let cuts = proxy.stats().cuts;
    let charged = rows_by_reference(&url, "r6_charges").await;
    let applied = charged.len();
    let doubled: Vec<(&i64, &i64)> = charged.iter().filter(|(_, n)| **n > 1).collect();

    // With the network healthy again, the same method writes once and says so.
    let attempts = AtomicU32::new(0);
    rt.scope(Payments.charge("charge-1000".into(), &attempts))
        .await
        .unwrap();
    assert_eq!(attempts.into_inner(), 1);

    // ----- idempotent: the first answers lost, then the retry gets through -----
    let mut idempotent_attempts = Vec::new();
    let mut idempotent_errors = Vec::new();
    for i in 0..IDEMPOTENT_CALLS {
        proxy.cut_after_marker("key-", LOST_ANSWERS);
        let attempts = AtomicU32::new(0);
        let out = rt
            .scope(Payments.charge_once(format!("key-{i}"), &attempts))
            .await;
        idempotent_attempts.push(attempts.into_inner());
        if let Err(e) = out {
            idempotent_errors.push(e.to_string());
        }
    }
    proxy.disarm();
    let keyed = rows_by_reference(&url, "r6_keyed").await;

    eprintln!(
        "R6 lost replies: non-idempotent: {CUT_CALLS} calls, {cuts} connections cut after the \
         INSERT, attempts per call {:?}, errors by class {classes:?} (e.g. \"{sample}\"), {} \
         silent successes, {applied} rows applied, {} references stored twice; idempotent: \
         {IDEMPOTENT_CALLS} calls with {LOST_ANSWERS} lost answers each, attempts per call {:?}, \
         {} errors, rows per key {:?}",
        attempts_seen.iter().max(),
        silent_ok.len(),
        doubled.len(),
        idempotent_attempts,
        idempotent_errors.len(),
        keyed.values().collect::<Vec<_>>(),
    );

    assert!(
        silent_ok.is_empty(),
        "calls reported success: {silent_ok:?}"
    );
    assert_eq!(
        classes.get(&ErrorClass::Ambiguous).copied(),
        Some(CUT_CALLS),
        "every caller saw an ambiguous failure: {classes:?}"
    );
    assert!(
        attempts_seen.iter().all(|a| *a == 1),
        "an ambiguous write was retried: {attempts_seen:?}"
    );
    assert!(doubled.is_empty(), "written twice: {doubled:?}");
    assert!(applied <= CUT_CALLS);
    assert_eq!(cuts, CUT_CALLS as u64, "one cut per call");
    assert_eq!(
        proxy.stats().cuts,
        (CUT_CALLS + IDEMPOTENT_CALLS * LOST_ANSWERS) as u64
    );

    assert!(idempotent_errors.is_empty(), "{idempotent_errors:?}");
    assert!(
        idempotent_attempts
            .iter()
            .all(|a| *a == LOST_ANSWERS as u32 + 1),
        "each idempotent call retried past its lost answers: {idempotent_attempts:?}"
    );
    assert_eq!(keyed.len(), IDEMPOTENT_CALLS);
    assert!(keyed.values().all(|n| *n == 1), "{keyed:?}");
}
