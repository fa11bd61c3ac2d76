//! Behaviour of `#[resilient]` functions: attempts per error class, receivers, generics,
//! fallbacks, timeouts on a paused clock, and parity with `Runtime::execute`.
//!
//! Every test builds its own runtime and runs inside `Runtime::scope`, so breaker and
//! bulkhead state never leaks between tests.
#![warn(clippy::pedantic)]

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use resilient::policy::Policy;
use resilient::{Classify, ErrorClass, Rejection, Runtime, resilient};
use tokio::time::Instant;

// ===== a fake repository =====

#[derive(Debug, Clone, PartialEq, Eq)]
enum RepoError {
    Transient,
    Ambiguous,
    Caller,
    Resilience(Rejection),
}

impl From<Rejection> for RepoError {
    fn from(r: Rejection) -> Self {
        RepoError::Resilience(r)
    }
}

impl Classify for RepoError {
    fn class(&self) -> ErrorClass {
        match self {
            RepoError::Transient => ErrorClass::Transient,
            RepoError::Ambiguous => ErrorClass::Ambiguous,
            RepoError::Caller => ErrorClass::Caller,
            RepoError::Resilience(r) => r.class(),
        }
    }
}

use RepoError::{Ambiguous, Caller, Transient};

/// Plays a script of per-attempt results (the last one repeats) and counts attempts.
struct FakeRepo {
    attempts: AtomicU32,
    script: Mutex<VecDeque<Result<u32, RepoError>>>,
}

impl FakeRepo {
    fn new(script: impl IntoIterator<Item = Result<u32, RepoError>>) -> Self {
        FakeRepo {
            attempts: AtomicU32::new(0),
            script: Mutex::new(script.into_iter().collect()),
        }
    }

    fn failing(error: RepoError) -> Self {
        Self::new([Err(error)])
    }

    fn attempts(&self) -> u32 {
        self.attempts.load(Ordering::SeqCst)
    }

    /// One attempt's result.
    fn next(&self) -> Result<u32, RepoError> {
        self.attempts.fetch_add(1, Ordering::SeqCst);
        self.play()
    }

    /// The next result, without counting an attempt.
    fn play(&self) -> Result<u32, RepoError> {
        let mut script = self.script.lock().unwrap();
        if script.len() > 1 {
            script.pop_front().unwrap()
        } else {
            script.front().cloned().expect("an empty script")
        }
    }
}

#[resilient]
impl FakeRepo {
    #[resilient(retry = 3, delay_ms = 1)]
    async fn retried(&self) -> Result<u32, RepoError> {
        self.next()
    }

    #[resilient(retry = 3, delay_ms = 1, idempotent = true)]
    async fn idempotent(&self) -> Result<u32, RepoError> {
        self.next()
    }

    #[resilient(retry = 3, delay_ms = 1, idempotent = false)]
    async fn not_idempotent(&self) -> Result<u32, RepoError> {
        self.next()
    }

    #[resilient(policy = "write", delay_ms = 1, breaker = false)]
    async fn write(&self) -> Result<u32, RepoError> {
        self.next()
    }

    #[resilient(policy = "read", delay_ms = 1, breaker = false)]
    async fn read(&self) -> Result<u32, RepoError> {
        self.next()
    }

    #[resilient(retry = 2, delay_ms = 1, fallback = Self::cached)]
    async fn with_fallback(&self, id: u32) -> Result<u32, RepoError> {
        self.next().map(|v| v + id)
    }

    async fn cached(&self, id: u32) -> Result<u32, RepoError> {
        tokio::task::yield_now().await;
        Ok(1000 + id)
    }

    #[resilient(retry = 2, delay_ms = 1)]
    async fn generic<T: Clone + Send>(&self, value: T) -> Result<(T, u32), RepoError> {
        let n = self.next()?;
        Ok((value, n))
    }

    /// Counts the attempt, sleeps, then plays the script: a long sleep times out.
    ///
    /// The explicit deadline leaves room after the last timeout: the derived one (every
    /// attempt's timeout plus every delay, 320 ms) would expire at the same instant.
    #[resilient(
        retry = 2,
        timeout_ms = 100,
        deadline_ms = 1000,
        backoff = "fixed",
        delay_ms = 10,
        jitter = false
    )]
    async fn slow(&self, sleep: Duration) -> Result<u32, RepoError> {
        self.attempts.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(sleep).await;
        self.play()
    }

    #[resilient(
        retry = 5,
        timeout_ms = 100,
        deadline_ms = 250,
        backoff = "fixed",
        delay_ms = 10,
        jitter = false
    )]
    async fn deadline(&self, sleep: Duration) -> Result<u32, RepoError> {
        tokio::time::sleep(sleep).await;
        self.next()
    }
}

/// Runs `f` in a fresh runtime's scope.
async fn scoped<F: Future>(f: F) -> F::Output {
    let rt = Runtime::builder().build().expect("runtime");
    rt.scope(f).await
}

// ===== attempts per error class =====

#[tokio::test(start_paused = true)]
async fn transient_errors_are_retried_up_to_retry_plus_one_attempts() {
    let repo = FakeRepo::failing(Transient);
    assert_eq!(scoped(repo.retried()).await, Err(Transient));
    assert_eq!(repo.attempts(), 4);
}

#[tokio::test(start_paused = true)]
async fn a_retry_that_succeeds_returns_its_value() {
    let repo = FakeRepo::new([Err(Transient), Err(Transient), Ok(7)]);
    assert_eq!(scoped(repo.retried()).await, Ok(7));
    assert_eq!(repo.attempts(), 3);
}

#[tokio::test(start_paused = true)]
async fn caller_errors_are_not_retried() {
    let repo = FakeRepo::failing(Caller);
    assert_eq!(scoped(repo.retried()).await, Err(Caller));
    assert_eq!(repo.attempts(), 1);
}

#[tokio::test(start_paused = true)]
async fn ambiguous_errors_are_retried_only_when_idempotent() {
    let repo = FakeRepo::failing(Ambiguous);
    assert_eq!(scoped(repo.idempotent()).await, Err(Ambiguous));
    assert_eq!(repo.attempts(), 4);

    let repo = FakeRepo::failing(Ambiguous);
    assert_eq!(scoped(repo.not_idempotent()).await, Err(Ambiguous));
    assert_eq!(repo.attempts(), 1);
}

#[tokio::test(start_paused = true)]
async fn the_write_preset_retries_safe_errors_but_not_ambiguous_ones() {
    let repo = FakeRepo::failing(Ambiguous);
    assert_eq!(scoped(repo.write()).await, Err(Ambiguous));
    assert_eq!(repo.attempts(), 1);

    // 4 retries: 5 attempts.
    let repo = FakeRepo::failing(Transient);
    assert_eq!(scoped(repo.write()).await, Err(Transient));
    assert_eq!(repo.attempts(), 5);
}

#[tokio::test(start_paused = true)]
async fn the_read_preset_retries_ambiguous_errors() {
    // 2 retries: 3 attempts.
    let repo = FakeRepo::failing(Ambiguous);
    assert_eq!(scoped(repo.read()).await, Err(Ambiguous));
    assert_eq!(repo.attempts(), 3);
}

// ===== receivers and generics =====

struct Counter {
    calls: u32,
    seen: Vec<u32>,
}

impl Counter {
    /// Fails until the third call; every attempt sees the previous attempts' writes.
    #[resilient(retry = 3, delay_ms = 1)]
    async fn bump(&mut self, label: String) -> Result<String, RepoError> {
        self.calls += 1;
        self.seen.push(self.calls);
        if self.calls < 3 {
            return Err(Transient);
        }
        Ok(format!("{label}{}", self.calls))
    }
}

#[tokio::test(start_paused = true)]
async fn mut_self_is_lent_to_each_attempt_in_turn() {
    let mut counter = Counter {
        calls: 0,
        seen: Vec::new(),
    };
    let out = scoped(counter.bump("n".to_owned())).await;
    assert_eq!(out.as_deref(), Ok("n3"));
    assert_eq!(counter.seen, [1, 2, 3]);
}

#[tokio::test(start_paused = true)]
async fn generic_functions_retry_with_a_fresh_copy_of_their_arguments() {
    let repo = FakeRepo::new([Err(Transient), Ok(5)]);
    let out = scoped(repo.generic(vec!["a".to_owned()])).await;
    assert_eq!(out, Ok((vec!["a".to_owned()], 5)));
    assert_eq!(repo.attempts(), 2);
}

// ===== fallback =====

#[tokio::test(start_paused = true)]
async fn the_fallback_answers_once_the_policy_gives_up() {
    let repo = FakeRepo::failing(Transient);
    assert_eq!(scoped(repo.with_fallback(1)).await, Ok(1001));
    assert_eq!(
        repo.attempts(),
        3,
        "the fallback runs after every retry failed"
    );
}

#[tokio::test(start_paused = true)]
async fn the_fallback_does_not_hide_caller_errors() {
    let repo = FakeRepo::failing(Caller);
    assert_eq!(scoped(repo.with_fallback(1)).await, Err(Caller));
    assert_eq!(repo.attempts(), 1);
}

#[tokio::test(start_paused = true)]
async fn the_fallback_is_not_used_on_success() {
    let repo = FakeRepo::new([Err(Transient), Ok(1)]);
    assert_eq!(scoped(repo.with_fallback(1)).await, Ok(2));
}

// ===== time =====

#[tokio::test(start_paused = true)]
async fn a_slow_attempt_times_out_and_is_retried() {
    let repo = FakeRepo::new([Ok(1)]);
    let start = Instant::now();
    let out = scoped(repo.slow(Duration::from_secs(1))).await;
    assert_eq!(
        out,
        Err(RepoError::Resilience(Rejection::Timeout {
            after: Duration::from_millis(100)
        }))
    );
    assert_eq!(
        repo.attempts(),
        3,
        "a timeout is ambiguous: retried, as reads are idempotent"
    );
    // Three attempts of 100 ms and two fixed 10 ms delays.
    assert_eq!(start.elapsed(), Duration::from_millis(320));
}

#[tokio::test(start_paused = true)]
async fn a_fast_attempt_is_not_cut_short() {
    let repo = FakeRepo::new([Ok(1)]);
    assert_eq!(scoped(repo.slow(Duration::from_millis(99))).await, Ok(1));
    assert_eq!(repo.attempts(), 1);
}

#[tokio::test(start_paused = true)]
async fn the_deadline_bounds_the_whole_call() {
    let repo = FakeRepo::new([Ok(1)]);
    let start = Instant::now();
    let out = scoped(repo.deadline(Duration::from_secs(1))).await;
    assert!(
        matches!(
            out,
            Err(RepoError::Resilience(Rejection::DeadlineExceeded { .. }))
        ),
        "{out:?}"
    );
    assert_eq!(start.elapsed(), Duration::from_millis(250));
}

// ===== parity with the plain API =====

static PLAIN: Policy = Policy::new("plain", module_path!()).retry(3).delay_ms(1);

/// The attribute and `Runtime::execute` make the same attempts for the same script.
#[tokio::test(start_paused = true)]
async fn the_attribute_matches_runtime_execute() {
    let scripts: [&[Result<u32, RepoError>]; 5] = [
        &[Ok(1)],
        &[Err(Transient)],
        &[Err(Transient), Err(Transient), Ok(3)],
        &[Err(Caller)],
        &[Err(Ambiguous), Ok(2)],
    ];
    for script in scripts {
        let rt = Runtime::builder()
            .register(&PLAIN)
            .build()
            .expect("runtime");

        let annotated = FakeRepo::new(script.iter().cloned());
        let via_attribute = rt.scope(annotated.retried()).await;

        let plain = FakeRepo::new(script.iter().cloned());
        let via_execute = rt.execute(&PLAIN, || async { plain.next() }).await;

        assert_eq!(via_attribute, via_execute, "{script:?}");
        assert_eq!(annotated.attempts(), plain.attempts(), "{script:?}");
    }
}

// ===== runtime lookup, registration, Send =====

#[tokio::test]
async fn without_a_runtime_the_call_is_rejected() {
    let repo = FakeRepo::new([Ok(1)]);
    assert_eq!(
        repo.retried().await,
        Err(RepoError::Resilience(Rejection::NoRuntime))
    );
    assert_eq!(repo.attempts(), 0);
}

#[test]
fn methods_are_registered_under_the_impl_type_name() {
    let rt = Runtime::builder().build().expect("runtime");
    let names: Vec<&str> = rt.operations().map(Policy::name).collect();
    for name in ["FakeRepo::retried", "FakeRepo::with_fallback", "bump"] {
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn annotated_futures_can_be_spawned() {
    let rt = Runtime::builder().build().expect("runtime");
    let repo = std::sync::Arc::new(FakeRepo::new([Ok(9)]));
    let task = tokio::spawn({
        let (rt, repo) = (rt.clone(), repo.clone());
        async move { rt.scope(repo.retried()).await }
    });
    assert_eq!(task.await.unwrap(), Ok(9));
}
