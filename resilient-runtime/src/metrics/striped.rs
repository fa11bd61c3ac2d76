//! Counters split over cache-line-padded stripes, so that threads counting the same
//! event do not bounce one cache line between cores. Each thread writes the stripe it
//! was given when it first counted (round robin); readers add the stripes up.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::padded::CachePadded;

/// Stripes per counter.
pub(crate) const STRIPES: usize = 8;

static NEXT_STRIPE: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static STRIPE: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// This thread's stripe, in `0..STRIPES`.
#[inline]
pub(crate) fn stripe() -> usize {
    STRIPE.with(|s| {
        let v = s.get();
        if v < STRIPES {
            return v;
        }
        let v = NEXT_STRIPE.fetch_add(1, Ordering::Relaxed) % STRIPES;
        s.set(v);
        v
    })
}

/// A `u64` counter in [`STRIPES`] stripes.
#[derive(Default)]
pub(crate) struct Striped([CachePadded<AtomicU64>; STRIPES]);

impl Striped {
    /// Adds `n` on `stripe`.
    #[inline]
    pub(crate) fn add(&self, stripe: usize, n: u64, order: Ordering) {
        self.0[stripe % STRIPES].0.fetch_add(n, order);
    }

    /// Subtracts `n` from `stripe`, where it was added before.
    #[inline]
    pub(crate) fn sub(&self, stripe: usize, n: u64, order: Ordering) {
        self.0[stripe % STRIPES].0.fetch_sub(n, order);
    }

    /// The sum of every stripe.
    pub(crate) fn sum(&self, order: Ordering) -> u64 {
        self.0
            .iter()
            .fold(0u64, |acc, s| acc.wrapping_add(s.0.load(order)))
    }
}

impl std::fmt::Debug for Striped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.sum(Ordering::Relaxed).fmt(f)
    }
}
