//! The permission to make one call, and how its outcome is reported.

use std::fmt;

use super::CircuitBreaker;
use super::state::{BreakerState, Word};
use crate::ErrorClass;

/// What a settled permit reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    Success,
    Failure,
    Ignore,
}

/// Permission from a [`CircuitBreaker`] to make one call.
///
/// Report how the call went with exactly one of [`success`](Self::success),
/// [`failure`](Self::failure), [`ignore`](Self::ignore) or [`record`](Self::record).
/// Dropping the permit without reporting counts as [`ignore`](Self::ignore): that is what
/// happens when the attempt's future is cancelled, and it frees a half-open trial slot.
///
/// A permit remembers the state and generation it was issued under. If the breaker has
/// moved on by the time the outcome arrives (it opened, closed or was reset), the
/// outcome is dropped rather than counted against the new state.
#[must_use = "report the outcome with success(), failure(), ignore() or record(); dropping the permit ignores it"]
pub struct BreakerPermit<'a> {
    breaker: &'a CircuitBreaker,
    issued: Word,
    settled: bool,
}

impl<'a> BreakerPermit<'a> {
    #[inline]
    pub(super) fn new(breaker: &'a CircuitBreaker, issued: Word) -> Self {
        Self {
            breaker,
            issued,
            settled: false,
        }
    }

    /// The state the permit was issued in: [`Closed`](BreakerState::Closed) for an
    /// ordinary call, [`HalfOpen`](BreakerState::HalfOpen) for a trial call.
    pub fn state(&self) -> BreakerState {
        self.issued.state()
    }

    /// The call succeeded.
    #[inline]
    pub fn success(mut self) {
        self.settle(Outcome::Success);
    }

    /// The call failed in a way that says the backend is unhealthy.
    pub fn failure(mut self) {
        self.settle(Outcome::Failure);
    }

    /// The outcome says nothing about the backend's health (a caller error, a rejection,
    /// a cancelled call). Frees a half-open trial slot; counts nothing.
    pub fn ignore(mut self) {
        self.settle(Outcome::Ignore);
    }

    /// [`failure`](Self::failure) if the class counts for the breaker
    /// ([`ErrorClass::counts_for_breaker`]), [`ignore`](Self::ignore) otherwise.
    pub fn record(mut self, class: ErrorClass) {
        let outcome = if class.counts_for_breaker() {
            Outcome::Failure
        } else {
            Outcome::Ignore
        };
        self.settle(outcome);
    }

    #[inline]
    fn settle(&mut self, outcome: Outcome) {
        if !self.settled {
            self.settled = true;
            if !self.breaker.changes_nothing(self.issued, outcome) {
                self.breaker.settle(self.issued, outcome);
            }
        }
    }
}

impl Drop for BreakerPermit<'_> {
    #[inline]
    fn drop(&mut self) {
        self.settle(Outcome::Ignore);
    }
}

impl fmt::Debug for BreakerPermit<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BreakerPermit")
            .field("breaker", &self.breaker.name())
            .field("state", &self.issued.state())
            .field("generation", &self.issued.generation())
            .finish()
    }
}
