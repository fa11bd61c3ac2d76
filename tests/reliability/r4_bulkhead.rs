//! R4: ten times the bulkhead's capacity (slots plus queue) calls at once, in waves.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use resilient::bulkhead::BulkheadSpec;
use resilient::db::{self, DbConfig};
use resilient::{Rejection, Runtime, resilient};
use tokio::sync::Barrier;

use crate::cluster::PgServer;
use crate::common::{AppError, SERIAL, bounded, exec, ms};
use crate::heap::{live_heap, peak_heap, reset_peak};

const SLOTS: usize = 4;
const QUEUE: usize = 8;
const CALLERS: usize = 10 * (SLOTS + QUEUE);
const WAVES: usize = 4;
/// How long each admitted call holds its slot, on the server.
const WORK_S: f64 = 0.3;

static REPORTS: BulkheadSpec = BulkheadSpec::new("r4_reports", SLOTS, QUEUE);

/// Counts the bodies running right now, from inside the bulkhead.
#[derive(Default)]
pub struct Probe {
    running: AtomicUsize,
    max_running: AtomicUsize,
}

pub struct Reports;

#[resilient]
impl Reports {
    /// A slow report: holds its bulkhead slot (and a connection) for 300 ms.
    #[resilient(bulkhead = REPORTS, breaker = false, timeout_ms = 10_000)]
    pub async fn build(&self, probe: &Probe) -> Result<(), AppError> {
        use diesel_async::RunQueryDsl as _;
        let now = probe.running.fetch_add(1, Ordering::SeqCst) + 1;
        probe.max_running.fetch_max(now, Ordering::SeqCst);
        let result = async {
            let mut conn = db::conn().await?;
            diesel::sql_query(format!("SELECT pg_sleep({WORK_S})"))
                .execute(conn.pg()?)
                .await?;
            Ok(())
        }
        .await;
        probe.running.fetch_sub(1, Ordering::SeqCst);
        result
    }
}

struct Wave {
    admitted: usize,
    rejected: usize,
    other: Vec<String>,
    /// The slowest rejection, and the first completion of an admitted call.
    slowest_rejection: Duration,
    first_completion: Duration,
    max_running: usize,
    max_executing: usize,
    max_waiting: usize,
}

async fn wave(rt: &Runtime) -> Wave {
    let probe = Arc::new(Probe::default());
    let barrier = Arc::new(Barrier::new(CALLERS + 1));
    let mut callers = Vec::with_capacity(CALLERS);
    for _ in 0..CALLERS {
        let (rt, probe, barrier) = (rt.clone(), Arc::clone(&probe), Arc::clone(&barrier));
        callers.push(tokio::spawn(async move {
            barrier.wait().await;
            let start = Instant::now();
            let out = rt.scope(Reports.build(&probe)).await;
            (start, start.elapsed(), out)
        }));
    }
    // Samples the bulkhead's own counters while the wave runs.
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (rt, done) = (rt.clone(), Arc::clone(&done));
        tokio::spawn(async move {
            let bulkhead = rt.bulkhead("r4_reports").unwrap();
            let (mut executing, mut waiting) = (0, 0);
            while !AtomicBool::load(&done, Ordering::Relaxed) {
                executing = bulkhead.executing().max(executing);
                waiting = bulkhead.waiting().max(waiting);
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            (executing, waiting)
        })
    };
    barrier.wait().await;
    let begin = Instant::now();
    let mut wave = Wave {
        admitted: 0,
        rejected: 0,
        other: Vec::new(),
        slowest_rejection: Duration::ZERO,
        first_completion: Duration::MAX,
        max_running: 0,
        max_executing: 0,
        max_waiting: 0,
    };
    for c in callers {
        let (start, took, out) = c.await.unwrap();
        let ended = (start + took).saturating_duration_since(begin);
        match out {
            Ok(()) => {
                wave.admitted += 1;
                wave.first_completion = wave.first_completion.min(ended);
            }
            Err(AppError::Resilience(Rejection::BulkheadFull { .. })) => {
                wave.rejected += 1;
                wave.slowest_rejection = wave.slowest_rejection.max(ended);
            }
            Err(e) => wave.other.push(e.to_string()),
        }
    }
    AtomicBool::store(&done, true, Ordering::Relaxed);
    (wave.max_executing, wave.max_waiting) = sampler.await.unwrap();
    wave.max_running = probe.max_running.load(Ordering::SeqCst);
    wave
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r4_ten_times_the_bulkhead_capacity() {
    let _serial = SERIAL.lock().await;
    bounded(scenario()).await;
}

async fn scenario() {
    let server = PgServer::start_new("r4");
    let url = server.url();
    exec(&url, "SELECT 1").await;
    let rt = Runtime::builder()
        .database(
            "main",
            DbConfig::parse(&url)
                .unwrap()
                .max_size(SLOTS as u32)
                .min_idle(Some(SLOTS as u32))
                .application_name("r4")
                .breaker(None),
        )
        .build()
        .unwrap();

    let mut heap_after = Vec::new();
    let mut peaks = Vec::new();
    let mut waves = Vec::new();
    for _ in 0..WAVES {
        let before = reset_peak();
        let w = wave(&rt).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        peaks.push(peak_heap().saturating_sub(before));
        heap_after.push(live_heap());
        waves.push(w);
    }
    let bulkhead = rt.bulkhead("r4_reports").unwrap().snapshot();
    let growth = heap_after[WAVES - 1] - heap_after[0];

    for (i, w) in waves.iter().enumerate() {
        eprintln!(
            "R4 bulkhead wave {}: {CALLERS} callers at once against {SLOTS} slots + {QUEUE} \
             queued: {} admitted, {} rejected, {} other; slowest rejection {:.3} ms after the \
             start, first completion {:.0} ms; max running {} (bodies), max executing {} / \
             waiting {} (bulkhead); heap peak +{} KiB, live after {} KiB",
            i + 1,
            w.admitted,
            w.rejected,
            w.other.len(),
            ms(w.slowest_rejection),
            ms(w.first_completion),
            w.max_running,
            w.max_executing,
            w.max_waiting,
            peaks[i] / 1024,
            heap_after[i] / 1024,
        );
    }
    eprintln!(
        "R4 bulkhead: peaks {} executing / {} waiting, {} rejected in all; live heap grew \
         {growth} bytes from wave 1 to wave {WAVES}",
        bulkhead.peak_executing, bulkhead.peak_waiting, bulkhead.rejected_total,
    );

    for w in &waves {
        assert!(w.other.is_empty(), "unexpected failures: {:?}", w.other);
        assert!(
            w.max_running <= SLOTS && w.max_executing <= SLOTS,
            "over the limit"
        );
        assert!(w.max_waiting <= QUEUE, "over the queue");
        assert_eq!(
            w.admitted,
            SLOTS + QUEUE,
            "the slots and the queue were used"
        );
        assert_eq!(
            w.rejected,
            CALLERS - SLOTS - QUEUE,
            "the rest were rejected"
        );
        assert!(
            w.slowest_rejection < w.first_completion,
            "every rejection came before the first admitted call finished"
        );
    }
    assert!(bulkhead.peak_executing <= SLOTS && bulkhead.peak_waiting <= QUEUE);
    assert!(
        growth < 256 * 1024,
        "the live heap grew by {growth} bytes over {WAVES} identical waves"
    );
}
