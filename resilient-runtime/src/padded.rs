//! A value alone on its cache lines.

use std::ops::Deref;

/// `T` aligned to 128 bytes (two 64-byte lines, as adjacent-line prefetchers pull pairs),
/// so that writes to its neighbours never invalidate the line it sits on, and writes to
/// it never invalidate theirs.
#[repr(align(128))]
#[derive(Debug, Default)]
pub(crate) struct CachePadded<T>(pub(crate) T);

impl<T> Deref for CachePadded<T> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        &self.0
    }
}
