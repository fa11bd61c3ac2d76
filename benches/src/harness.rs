//! A small harness for nanosecond-scale async benchmarks on a noisy 2-core machine.
//!
//! - Time is the **thread's CPU time** (`CLOCK_THREAD_CPUTIME_ID`): time spent preempted
//!   by other processes is not counted, which keeps medians stable while other builds run.
//! - Each sample runs a batch of calls inside one `block_on`, sized to about
//!   [`Config::sample_ms`], so the clock reads and the `block_on` entry are amortized.
//! - Benchmarks of one suite run **interleaved**, one sample each per round, so that a
//!   burst of load or a frequency change hits every row alike; the figure is the median
//!   over the rounds, with the quartiles as the spread.
//! - The two-thread runner measures each thread's CPU time per call while both threads
//!   loop on the shared stack, and reports the mean of the two threads.

use std::hint::black_box;
use std::io::Write as _;
use std::process::Command;
use std::sync::Barrier;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Nanoseconds of CPU time this thread has used.
pub fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant Linux supports.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// How long and how often to measure.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    /// Rounds: samples per benchmark.
    pub rounds: usize,
    /// Target CPU time of one sample.
    pub sample_ms: u64,
    /// Run only the sections whose name contains this (`--section NAME`).
    pub section: Option<&'static str>,
}

impl Config {
    /// From the command line: `--quick` for a smoke run, `--rounds N`, `--sample-ms N`.
    pub fn from_args() -> Config {
        let args: Vec<String> = std::env::args().collect();
        let mut config = if args.iter().any(|a| a == "--quick") {
            Config {
                rounds: 5,
                sample_ms: 5,
                section: None,
            }
        } else {
            Config {
                rounds: 31,
                sample_ms: 20,
                section: None,
            }
        };
        for pair in args.windows(2) {
            match pair[0].as_str() {
                "--rounds" => config.rounds = pair[1].parse().expect("--rounds N"),
                "--sample-ms" => config.sample_ms = pair[1].parse().expect("--sample-ms N"),
                "--section" => config.section = Some(String::leak(pair[1].clone())),
                _ => {}
            }
        }
        config
    }

    /// Whether the section `name` is to be run.
    pub fn runs(&self, name: &str) -> bool {
        self.section.is_none_or(|s| name.contains(s))
    }

    fn as_args(&self) -> Vec<String> {
        let mut args = vec![
            "--rounds".into(),
            self.rounds.to_string(),
            "--sample-ms".into(),
            self.sample_ms.to_string(),
        ];
        if let Some(section) = self.section {
            args.extend(["--section".into(), section.into()]);
        }
        args
    }
}

/// The figures of one benchmark.
#[derive(Debug, Clone, PartialEq)]
pub struct Stats {
    /// The benchmark's name.
    pub name: String,
    /// Median ns per call.
    pub median: f64,
    /// First quartile.
    pub q1: f64,
    /// Third quartile.
    pub q3: f64,
}

impl Stats {
    fn of(name: &str, samples: &mut [f64]) -> Stats {
        samples.sort_by(f64::total_cmp);
        let at = |q: f64| {
            let i = ((samples.len() - 1) as f64 * q).round() as usize;
            samples[i]
        };
        Stats {
            name: name.to_string(),
            median: at(0.5),
            q1: at(0.25),
            q3: at(0.75),
        }
    }

    /// As one tab-separated line, for the parent of a child process.
    pub fn to_line(&self, section: &str) -> String {
        format!(
            "RESULT\t{section}\t{}\t{}\t{}\t{}",
            self.name, self.median, self.q1, self.q3
        )
    }

    fn from_line(line: &str) -> Option<(String, Stats)> {
        let mut f = line.strip_prefix("RESULT\t")?.split('\t');
        let section = f.next()?.to_string();
        let name = f.next()?.to_string();
        let mut num = || f.next()?.parse::<f64>().ok();
        let (median, q1, q3) = (num()?, num()?, num()?);
        Some((
            section,
            Stats {
                name,
                median,
                q1,
                q3,
            },
        ))
    }
}

/// Measures `calls` calls of `op`, returning CPU ns per call.
pub type Sampler = Box<dyn FnMut(u64) -> f64>;

/// A sampler for a single-threaded async benchmark: `op(i)` is awaited for each call,
/// inside one `block_on` per sample on a current-thread runtime with timers.
pub fn async_sampler<F, T>(mut op: F) -> Sampler
where
    F: AsyncFnMut(u64) -> T + 'static,
{
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("tokio runtime");
    Box::new(move |calls| {
        rt.block_on(async {
            let start = thread_cpu_ns();
            for i in 0..calls {
                black_box(op(black_box(i)).await);
            }
            (thread_cpu_ns() - start) as f64 / calls as f64
        })
    })
}

/// A sampler for a synchronous benchmark.
pub fn sync_sampler<F, T>(mut op: F) -> Sampler
where
    F: FnMut(u64) -> T + 'static,
{
    Box::new(move |calls| {
        let start = thread_cpu_ns();
        for i in 0..calls {
            black_box(op(black_box(i)));
        }
        (thread_cpu_ns() - start) as f64 / calls as f64
    })
}

/// One thread's loop of a two-thread benchmark: runs calls until `stop` is set and
/// returns `(calls, CPU ns)`. It builds its own per-thread state (a tokio runtime, a
/// clone of a service) before it starts the clock.
pub type ThreadLoop = Box<dyn Fn(&Barrier, &AtomicBool) -> (u64, u64) + Send + Sync>;

/// A [`ThreadLoop`] awaiting `make()(i)` in a loop on the calling thread's own
/// current-thread runtime. `make` runs once per thread, to build per-thread state.
pub fn async_thread_loop<M, F, T>(make: M) -> ThreadLoop
where
    M: Fn() -> F + Send + Sync + 'static,
    F: AsyncFnMut(u64) -> T,
{
    Box::new(move |barrier, stop| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("tokio runtime");
        let mut op = make();
        rt.block_on(async {
            // Warm this thread's caches and allocator before the clock starts.
            for i in 0..1_000 {
                black_box(op(black_box(i)).await);
            }
            barrier.wait();
            let start = thread_cpu_ns();
            let mut calls = 0u64;
            while !stop.load(Ordering::Relaxed) {
                for _ in 0..64 {
                    black_box(op(black_box(calls)).await);
                    calls += 1;
                }
            }
            (calls, thread_cpu_ns() - start)
        })
    })
}

/// The benchmarks of one table, measured interleaved.
pub struct Suite {
    title: String,
    config: Config,
    single: Vec<(String, Sampler)>,
    threaded: Vec<(String, ThreadLoop)>,
}

impl Suite {
    /// An empty suite.
    pub fn new(title: &str, config: Config) -> Suite {
        Suite {
            title: title.to_string(),
            config,
            single: Vec::new(),
            threaded: Vec::new(),
        }
    }

    /// Adds a single-threaded benchmark.
    pub fn add(&mut self, name: &str, sampler: Sampler) -> &mut Self {
        self.single.push((name.to_string(), sampler));
        self
    }

    /// Adds a two-thread benchmark: both threads run `thread_loop` on shared state.
    pub fn add_two_threads(&mut self, name: &str, thread_loop: ThreadLoop) -> &mut Self {
        self.threaded.push((name.to_string(), thread_loop));
        self
    }

    /// Runs every benchmark, `rounds` interleaved samples each. Progress goes to stderr.
    pub fn run(mut self) -> Vec<Stats> {
        let config = self.config;
        eprintln!(
            "== {} ({} rounds, ~{} ms per sample)",
            self.title, config.rounds, config.sample_ms
        );
        let target_ns = config.sample_ms as f64 * 1e6;
        // Calibrate: how many calls make one sample of the target length.
        let mut sizes = Vec::new();
        for (name, sampler) in &mut self.single {
            sampler(10_000);
            let estimate = sampler(20_000).max(0.1);
            let calls = (target_ns / estimate).clamp(1_000.0, 50_000_000.0) as u64;
            eprintln!("   {name}: ~{estimate:.1} ns/call, {calls} calls per sample");
            sizes.push(calls);
        }
        let mut single: Vec<Vec<f64>> = vec![Vec::new(); self.single.len()];
        let mut threaded: Vec<Vec<f64>> = vec![Vec::new(); self.threaded.len()];
        for round in 0..config.rounds {
            // Rotate the order so no benchmark always runs right after the same other one.
            let n = self.single.len();
            for k in 0..n {
                let i = (k + round) % n;
                let sample = (self.single[i].1)(sizes[i]);
                single[i].push(sample);
            }
            let n = self.threaded.len();
            for k in 0..n {
                let i = (k + round) % n;
                let sample = two_threads(&self.threaded[i].1, config.sample_ms);
                threaded[i].push(sample);
            }
            eprint!(".");
            let _ = std::io::stderr().flush();
        }
        eprintln!();
        self.single
            .iter()
            .map(|(n, _)| n)
            .zip(&mut single)
            .chain(self.threaded.iter().map(|(n, _)| n).zip(&mut threaded))
            .map(|(name, samples)| Stats::of(name, samples))
            .collect()
    }
}

/// Pins the calling thread to `cpu`, so that the two threads of a sample run on two
/// cores at once instead of taking turns on one (which would hide the contention).
/// Best effort: on failure the thread stays unpinned.
fn pin_to_cpu(cpu: usize) {
    // SAFETY: `set` is a plain bit set, zeroed then filled by the libc macros, and the
    // call only reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_ZERO(&mut set);
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// One sample of a two-thread benchmark: CPU ns per call, averaged over the two threads.
fn two_threads(thread_loop: &ThreadLoop, sample_ms: u64) -> f64 {
    let barrier = Barrier::new(3);
    let stop = AtomicBool::new(false);
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    let per_thread = std::thread::scope(|s| {
        let workers: Vec<_> = (0..2)
            .map(|k| {
                let (barrier, stop) = (&barrier, &stop);
                s.spawn(move || {
                    if cpus >= 2 {
                        pin_to_cpu(k);
                    }
                    thread_loop(barrier, stop)
                })
            })
            .collect();
        barrier.wait();
        std::thread::sleep(Duration::from_millis(sample_ms));
        stop.store(true, Ordering::Relaxed);
        workers
            .into_iter()
            .map(|w| w.join().expect("benchmark thread panicked"))
            .collect::<Vec<_>>()
    });
    per_thread
        .iter()
        .map(|(calls, ns)| *ns as f64 / (*calls).max(1) as f64)
        .sum::<f64>()
        / per_thread.len() as f64
}

/// Whether this process is the child started by [`run_child`].
pub fn is_child() -> bool {
    std::env::args().any(|a| a == "--child")
}

/// Runs this benchmark binary again as a child process with `env` set and `--child`, and
/// returns the results it printed, by section. Used to measure a second configuration
/// of the process-wide runtime (it can be installed only once per process).
pub fn run_child(config: &Config, env: (&str, &str)) -> Vec<(String, Stats)> {
    let exe = std::env::current_exe().expect("current exe");
    let out = Command::new(exe)
        .arg("--child")
        .args(config.as_args())
        .env(env.0, env.1)
        .stderr(std::process::Stdio::inherit())
        .output()
        .expect("child benchmark process");
    assert!(
        out.status.success(),
        "child benchmark failed: {}",
        out.status
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(Stats::from_line)
        .collect()
}

/// Prints a table in Markdown: each row's median and quartiles, its overhead over
/// `baseline` (median minus the baseline's median) and the ratio of overheads against
/// each of `against`.
pub fn print_table(title: &str, rows: &[Stats], baseline: Option<&str>, against: &[&str]) {
    let find = |name: &str| rows.iter().find(|r| r.name == name).map(|r| r.median);
    let base = baseline.and_then(find).unwrap_or(0.0);
    let mut header = String::from("| benchmark | ns/call (median) | q1–q3 |");
    let mut rule = String::from("|---|---:|---:|");
    if baseline.is_some() {
        header.push_str(" overhead ns |");
        rule.push_str("---:|");
    }
    for a in against {
        header.push_str(&format!(" ÷ {a} |"));
        rule.push_str("---:|");
    }
    println!("\n### {title}\n\n{header}\n{rule}");
    for r in rows {
        let mut line = format!("| {} | {:.1} | {:.1}–{:.1} |", r.name, r.median, r.q1, r.q3);
        let overhead = r.median - base;
        if baseline.is_some() {
            line.push_str(&format!(" {overhead:+.1} |"));
        }
        for a in against {
            match find(a) {
                Some(m) if (m - base).abs() > f64::EPSILON => {
                    line.push_str(&format!(" {:.2} |", overhead / (m - base)));
                }
                _ => line.push_str(" — |"),
            }
        }
        println!("{line}");
    }
}
