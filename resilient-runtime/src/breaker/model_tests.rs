//! Randomized differential test: the lock-free breaker against a plain reference model.

use std::collections::VecDeque;
use std::time::Duration;

use super::*;

/// xorshift64*: deterministic, so a failing seed reproduces exactly.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform-enough in `0..n` for a test.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Verdict {
    Success,
    Failure,
    Ignore,
}

/// The rules, written the obvious way, with no concurrency to worry about.
#[derive(Debug)]
struct Model {
    config: BreakerConfig,
    state: BreakerState,
    generation: u64,
    failures: u32,
    in_flight: u32,
    trial_successes: u32,
    opened_at: Duration,
    opened_total: u64,
    rejected_total: u64,
    /// `true` = failure, oldest first.
    window: VecDeque<bool>,
}

#[derive(Debug, Clone, Copy)]
struct ModelPermit {
    state: BreakerState,
    generation: u64,
}

impl Model {
    fn new(config: BreakerConfig) -> Self {
        Self {
            config,
            state: BreakerState::Closed,
            generation: 0,
            failures: 0,
            in_flight: 0,
            trial_successes: 0,
            opened_at: Duration::ZERO,
            opened_total: 0,
            rejected_total: 0,
            window: VecDeque::new(),
        }
    }

    fn enter(&mut self, state: BreakerState, now: Duration) {
        self.state = state;
        self.generation += 1;
        self.failures = 0;
        self.in_flight = 0;
        self.trial_successes = 0;
        match state {
            BreakerState::Open => {
                self.opened_at = now;
                self.opened_total += 1;
            }
            BreakerState::Closed => self.window.clear(),
            BreakerState::HalfOpen => {}
        }
    }

    fn refresh(&mut self, now: Duration) {
        if self.state == BreakerState::Open && now - self.opened_at >= self.config.reset_timeout {
            self.enter(BreakerState::HalfOpen, now);
        }
    }

    fn acquire(&mut self, now: Duration) -> Option<ModelPermit> {
        self.refresh(now);
        let admitted = match self.state {
            BreakerState::Closed => true,
            BreakerState::HalfOpen => self.in_flight < self.config.half_open_max_calls,
            BreakerState::Open => false,
        };
        if !admitted {
            self.rejected_total += 1;
            return None;
        }
        if self.state == BreakerState::HalfOpen {
            self.in_flight += 1;
        }
        Some(ModelPermit {
            state: self.state,
            generation: self.generation,
        })
    }

    /// Records into the window and says whether it now calls for opening.
    fn window_tripped(&mut self, failed: bool) -> bool {
        let Some(rule) = self.config.window else {
            return false;
        };
        self.window.push_back(failed);
        if self.window.len() > rule.size as usize {
            self.window.pop_front();
        }
        let recorded = self.window.len() as u64;
        let failures = self.window.iter().filter(|&&f| f).count() as u64;
        recorded >= u64::from(rule.minimum_calls)
            && failures * 100 >= u64::from(rule.failure_rate_percent) * recorded
    }

    fn settle(&mut self, permit: ModelPermit, verdict: Verdict, now: Duration) {
        if permit.generation != self.generation || permit.state != self.state {
            return;
        }
        match (self.state, verdict) {
            (BreakerState::Closed, Verdict::Ignore) => {}
            (BreakerState::Closed, Verdict::Success) => {
                if self.window_tripped(false) {
                    self.enter(BreakerState::Open, now);
                } else {
                    self.failures = self.failures.saturating_sub(1);
                }
            }
            (BreakerState::Closed, Verdict::Failure) => {
                self.failures += 1;
                if self.window_tripped(true) || self.failures >= self.config.failure_threshold {
                    self.enter(BreakerState::Open, now);
                }
            }
            (BreakerState::HalfOpen, Verdict::Ignore) => self.in_flight -= 1,
            (BreakerState::HalfOpen, Verdict::Success) => {
                self.in_flight -= 1;
                self.trial_successes += 1;
                if self.trial_successes >= self.config.half_open_successes {
                    self.enter(BreakerState::Closed, now);
                }
            }
            (BreakerState::HalfOpen, Verdict::Failure) => self.enter(BreakerState::Open, now),
            (BreakerState::Open, _) => {}
        }
    }
}

fn random_config(rng: &mut Rng) -> BreakerConfig {
    let window = (rng.below(2) == 0).then(|| FailureRateWindow {
        size: 1 + rng.below(8) as u32,
        failure_rate_percent: 1 + rng.below(100) as u8,
        minimum_calls: 1 + rng.below(4) as u32,
    });
    let mut config = BreakerConfig {
        failure_threshold: 1 + rng.below(5) as u32,
        reset_timeout: Duration::from_millis(1 + rng.below(50)),
        half_open_successes: 1 + rng.below(3) as u32,
        half_open_max_calls: 1 + rng.below(3) as u32,
        window,
    };
    // The breaker clamps minimum_calls to the size; give the model the same rule.
    if let Some(w) = &mut config.window {
        w.minimum_calls = w.minimum_calls.min(w.size);
    }
    config
}

fn compare(breaker: &CircuitBreaker, model: &Model, context: &str) {
    let snapshot = breaker.snapshot();
    assert_eq!(snapshot.state, model.state, "{context}");
    assert_eq!(snapshot.failures, model.failures, "{context}");
    assert_eq!(snapshot.half_open_in_flight, model.in_flight, "{context}");
    assert_eq!(
        snapshot.half_open_successes, model.trial_successes,
        "{context}"
    );
    assert_eq!(snapshot.opened_total, model.opened_total, "{context}");
    assert_eq!(snapshot.rejected_total, model.rejected_total, "{context}");
}

#[tokio::test(start_paused = true)]
async fn random_operations_agree_with_the_reference_model() {
    for seed in 1..=300_u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let config = random_config(&mut rng);
        let breaker = CircuitBreaker::new("model", config);
        assert_eq!(breaker.config(), &config);
        let mut model = Model::new(config);
        let mut now = Duration::ZERO;
        let mut held: Vec<(BreakerPermit<'_>, ModelPermit)> = Vec::new();

        for step in 0..400 {
            let op = rng.below(10);
            match op {
                0..=3 => {
                    let real = breaker.try_acquire().ok();
                    let expected = model.acquire(now);
                    assert_eq!(
                        real.is_some(),
                        expected.is_some(),
                        "seed {seed} step {step}"
                    );
                    if let (Some(real), Some(expected)) = (real, expected) {
                        held.push((real, expected));
                    }
                }
                4..=7 if !held.is_empty() => {
                    let index = rng.below(held.len() as u64) as usize;
                    let (real, expected) = held.swap_remove(index);
                    let verdict = match op {
                        4 => Verdict::Success,
                        5 => Verdict::Failure,
                        _ => Verdict::Ignore,
                    };
                    match op {
                        4 => real.success(),
                        5 => real.failure(),
                        6 => real.ignore(),
                        _ => drop(real),
                    }
                    model.settle(expected, verdict, now);
                }
                8 => {
                    let step = Duration::from_millis(
                        rng.below(2 * config.reset_timeout.as_millis() as u64),
                    );
                    tokio::time::advance(step).await;
                    now += step;
                }
                _ => model.refresh(now),
            }
            // `snapshot` refreshes the breaker, so refresh the model the same way.
            model.refresh(now);
            compare(
                &breaker,
                &model,
                &format!("seed {seed} step {step} op {op}"),
            );
        }
    }
}
