//! Heap accounting for R4: the system allocator, counting live bytes and their peak.
//! (A module of its own: with `diesel_async::RunQueryDsl` in scope, `atomic.load(..)`
//! resolves to the query method.)

#![allow(dead_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering};

/// The system allocator, counting live heap bytes and their peak.
pub struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(by: usize) {
    let live = LIVE.fetch_add(by as isize, Ordering::Relaxed) + by as isize;
    if live > 0 && live as usize > PEAK.load(Ordering::Relaxed) {
        PEAK.fetch_max(live as usize, Ordering::Relaxed);
    }
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged; the
// counters are plain atomics and never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as is.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded as is.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
            grew(new_size);
        }
        p
    }
}

/// Live heap bytes of the whole process.
pub fn live_heap() -> isize {
    LIVE.load(Ordering::Relaxed)
}

/// Restarts the peak from the current live bytes; returns them.
pub fn reset_peak() -> usize {
    let live = LIVE.load(Ordering::Relaxed).max(0) as usize;
    PEAK.store(live, Ordering::Relaxed);
    live
}

/// The highest live heap bytes since the last [`reset_peak`].
pub fn peak_heap() -> usize {
    PEAK.load(Ordering::Relaxed)
}
