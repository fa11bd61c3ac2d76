//! The error of [`CircuitBreaker::call`](super::CircuitBreaker::call).

use std::error::Error;
use std::fmt;

use crate::{Classify, ErrorClass, Rejection};

/// Why [`CircuitBreaker::call`](super::CircuitBreaker::call) returned no value.
///
/// `Display` and `Error::source` are transparent: they are those of the rejection or of
/// the inner error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BreakerError<E> {
    /// The breaker refused the call; the future was never polled.
    Rejected(Rejection),
    /// The call ran and returned this error.
    Inner(E),
}

impl<E: From<Rejection>> BreakerError<E> {
    /// Folds the rejection into the caller's own error type.
    pub fn into_inner(self) -> E {
        match self {
            BreakerError::Rejected(rejection) => E::from(rejection),
            BreakerError::Inner(e) => e,
        }
    }
}

impl<E> From<Rejection> for BreakerError<E> {
    fn from(rejection: Rejection) -> Self {
        BreakerError::Rejected(rejection)
    }
}

impl<E: fmt::Display> fmt::Display for BreakerError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BreakerError::Rejected(rejection) => fmt::Display::fmt(rejection, f),
            BreakerError::Inner(e) => fmt::Display::fmt(e, f),
        }
    }
}

impl<E: Error + 'static> Error for BreakerError<E> {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            BreakerError::Rejected(rejection) => rejection.source(),
            BreakerError::Inner(e) => e.source(),
        }
    }
}

impl<E: Classify> Classify for BreakerError<E> {
    fn class(&self) -> ErrorClass {
        match self {
            BreakerError::Rejected(rejection) => rejection.class(),
            BreakerError::Inner(e) => e.class(),
        }
    }
}
