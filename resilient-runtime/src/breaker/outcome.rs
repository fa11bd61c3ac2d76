//! How a settled permit moves the breaker.

use super::CircuitBreaker;
use super::permit::Outcome;
use super::state::{BreakerState, Word};

impl CircuitBreaker {
    /// Whether `outcome` of a permit issued under `issued` needs no look at the breaker:
    /// an ignored closed-state call, or a closed-state success when no failure was
    /// counted at issue and no failure-rate window needs feeding. The healthy path then
    /// touches the breaker's word once, to read it when the permit is issued.
    #[inline]
    pub(super) fn changes_nothing(&self, issued: Word, outcome: Outcome) -> bool {
        issued.state() == BreakerState::Closed
            && match outcome {
                Outcome::Ignore => true,
                Outcome::Success => issued.failures() == 0 && self.window.is_none(),
                Outcome::Failure => false,
            }
    }

    /// Applies one permit's outcome, unless the breaker has left the state and generation
    /// the permit was issued under.
    pub(super) fn settle(&self, issued: Word, outcome: Outcome) {
        let mut word = self.load();
        if !word.same_epoch(issued) {
            return;
        }
        let tripped = self.record_in_window(word, outcome);
        loop {
            let Some(next) = self.next_word(word, outcome, tripped) else {
                return;
            };
            match self.swap_word(word, next) {
                Ok(()) => return,
                // Another permit of the same epoch changed the payload: recompute.
                Err(actual) if actual.same_epoch(issued) => word = actual,
                Err(_) => return,
            }
        }
    }

    /// Feeds a closed-state outcome to the failure-rate window and reports whether the
    /// window now calls for opening.
    fn record_in_window(&self, word: Word, outcome: Outcome) -> bool {
        match (&self.window, word.state(), outcome) {
            (Some(window), BreakerState::Closed, Outcome::Success | Outcome::Failure) => {
                window.record(outcome == Outcome::Failure);
                window.tripped()
            }
            _ => false,
        }
    }

    /// The word after `outcome`, or `None` when nothing changes. `None` for a closed
    /// success with no failures is what keeps the healthy path free of writes.
    fn next_word(&self, word: Word, outcome: Outcome, tripped: bool) -> Option<Word> {
        let generation = word.generation();
        let reopen = Word::open(word.next_generation());
        match word.state() {
            BreakerState::Closed => match outcome {
                Outcome::Ignore => None,
                Outcome::Success if tripped => Some(reopen),
                Outcome::Success => word
                    .failures()
                    .checked_sub(1)
                    .map(|failures| Word::closed(generation, failures)),
                Outcome::Failure => {
                    let failures = word.failures().saturating_add(1);
                    if tripped || failures >= self.config.failure_threshold {
                        Some(reopen)
                    } else {
                        Some(Word::closed(generation, failures))
                    }
                }
            },
            BreakerState::HalfOpen => {
                let in_flight = word.in_flight().saturating_sub(1);
                let successes = word.trial_successes();
                match outcome {
                    Outcome::Ignore => Some(Word::half_open(generation, in_flight, successes)),
                    Outcome::Failure => Some(reopen),
                    Outcome::Success if successes + 1 >= self.config.half_open_successes => {
                        Some(Word::closed(word.next_generation(), 0))
                    }
                    Outcome::Success => Some(Word::half_open(generation, in_flight, successes + 1)),
                }
            }
            // No permit is ever issued while open.
            BreakerState::Open => None,
        }
    }
}
