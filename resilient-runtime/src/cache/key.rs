//! Typed cache keys: exact, allocation-free for short keys, equal across parameter types.
//!
//! A key is the byte encoding of a template with its placeholders filled in. Every
//! literal fragment and every value is written with a tag and, where needed, a length,
//! so the encoding is injective: two keys are equal exactly when their templates and
//! values are. Integers of every width are written as the same canonical value, and
//! `&str`, `String`, `&String` and `Box<str>` are all the same string, so the template
//! `"user:<id>"` yields one key whether `id` is an `i64` or a `&i64`.
//!
//! The encoding of a template's first fragments is a byte prefix of the full key:
//! prefix invalidation (`"user:<id>:"`) relies on it.

use std::fmt;
use std::hash::{Hash, Hasher};

/// Keys up to this many encoded bytes live inline, without a heap allocation.
pub const INLINE: usize = 62;

/// Fragment boundaries remembered per key, for prefix invalidation.
const MARKS: usize = 8;

const TAG_LIT: u8 = 0x01;
const TAG_INT: u8 = 0x02;
const TAG_WIDE_INT: u8 = 0x03;
const TAG_STR: u8 = 0x04;
const TAG_BYTES: u8 = 0x05;
const TAG_BOOL: u8 = 0x06;
const TAG_CHAR: u8 = 0x07;
const TAG_NONE: u8 = 0x08;
const TAG_SOME: u8 = 0x09;
const TAG_UUID: u8 = 0x0a;

/// One fragment of a key template: literal text or a placeholder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fragment {
    /// Literal text, e.g. `"user:"`.
    Lit(&'static str),
    /// A placeholder, e.g. `<id>` or `<user.id>`, holding the path inside the brackets.
    Hole(&'static str),
}

/// A key template such as `"user:<id>:<org_id>"`, parsed at compile time by the macro.
#[derive(Debug, PartialEq, Eq)]
pub struct KeyTemplate {
    text: &'static str,
    fragments: &'static [Fragment],
}

impl KeyTemplate {
    /// A template from its source text and its fragments.
    pub const fn new(text: &'static str, fragments: &'static [Fragment]) -> Self {
        KeyTemplate { text, fragments }
    }

    /// The template as written.
    pub const fn text(&self) -> &'static str {
        self.text
    }

    /// Its fragments, in order.
    pub const fn fragments(&self) -> &'static [Fragment] {
        self.fragments
    }

    /// Whether both templates produce keys of the same shape: equal literals and
    /// placeholders at the same places (placeholder names may differ).
    pub fn same_shape(&self, other: &KeyTemplate) -> bool {
        self.fragments.len() == other.fragments.len() && self.is_shape_prefix_of(other)
    }

    /// Whether keys of `self` are byte prefixes of keys of `other` with the same values.
    pub fn is_shape_prefix_of(&self, other: &KeyTemplate) -> bool {
        self.fragments.len() <= other.fragments.len()
            && self
                .fragments
                .iter()
                .zip(other.fragments)
                .all(|(a, b)| match (a, b) {
                    (Fragment::Lit(x), Fragment::Lit(y)) => x == y,
                    (Fragment::Hole(_), Fragment::Hole(_)) => true,
                    _ => false,
                })
    }
}

impl fmt::Display for KeyTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.text)
    }
}

#[derive(Clone)]
enum Repr {
    Inline { len: u8, buf: [u8; INLINE] },
    Heap(Box<[u8]>),
}

/// A cache key: the encoded bytes of a filled-in template.
///
/// ```
/// use resilient_runtime::cache::CacheKey;
///
/// let a = CacheKey::new().lit("user:").part(&42_i64).lit(":").part("acme");
/// let b = CacheKey::new().lit("user:").part(&&42_u32).lit(":").part(&String::from("acme"));
/// assert_eq!(a, b);
/// assert!(a.starts_with(&CacheKey::new().lit("user:").part(&42)));
/// ```
#[derive(Clone)]
pub struct CacheKey {
    repr: Repr,
    /// Byte offset of the end of each of the first fragments.
    ends: [u32; MARKS],
    fragments: u8,
}

impl Default for CacheKey {
    fn default() -> Self {
        Self::new()
    }
}

impl CacheKey {
    /// An empty key.
    #[inline]
    pub const fn new() -> Self {
        CacheKey {
            repr: Repr::Inline {
                len: 0,
                buf: [0; INLINE],
            },
            ends: [0; MARKS],
            fragments: 0,
        }
    }

    /// The bytes of the key's first `depth` fragments, if it has that many (and `depth`
    /// is within the remembered boundaries).
    #[inline]
    pub fn prefix_bytes(&self, depth: usize) -> Option<&[u8]> {
        if depth == 0 {
            return Some(&[]);
        }
        if depth > usize::from(self.fragments) || depth > MARKS {
            return None;
        }
        let end = self.ends[depth - 1] as usize;
        self.as_bytes().get(..end)
    }

    /// Number of fragments (literals and values) appended.
    pub fn depth(&self) -> usize {
        usize::from(self.fragments)
    }

    #[inline(always)]
    fn mark(&mut self) {
        if usize::from(self.fragments) < MARKS {
            let len = u32::try_from(self.as_bytes().len()).unwrap_or(u32::MAX);
            self.ends[usize::from(self.fragments)] = len;
        }
        self.fragments = self.fragments.saturating_add(1);
    }

    /// The encoded bytes.
    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        match &self.repr {
            Repr::Inline { len, buf } => &buf[..usize::from(*len)],
            Repr::Heap(b) => b,
        }
    }

    /// Whether the key lives on the heap (longer than [`INLINE`] encoded bytes).
    pub fn is_spilled(&self) -> bool {
        matches!(self.repr, Repr::Heap(_))
    }

    /// Whether `prefix` is a byte prefix of this key.
    pub fn starts_with(&self, prefix: &CacheKey) -> bool {
        self.as_bytes().starts_with(prefix.as_bytes())
    }

    /// Appends `bytes`. Inlined, so that the fixed-size writes of tags, lengths and
    /// integers become plain stores instead of `memcpy` calls.
    #[inline(always)]
    fn push(&mut self, bytes: &[u8]) {
        if let Repr::Inline { len, buf } = &mut self.repr {
            let at = usize::from(*len);
            if let Some(dst) = buf.get_mut(at..at + bytes.len()) {
                dst.copy_from_slice(bytes);
                // `at + bytes.len() <= INLINE < 256`.
                *len = (at + bytes.len()) as u8;
                return;
            }
        }
        self.push_slow(bytes);
    }

    #[cold]
    #[inline(never)]
    fn push_slow(&mut self, bytes: &[u8]) {
        match &mut self.repr {
            Repr::Inline { len, buf } => {
                let at = usize::from(*len);
                let end = at + bytes.len();
                if end <= INLINE {
                    buf[at..end].copy_from_slice(bytes);
                    // `end <= INLINE < 256`.
                    *len = end as u8;
                } else {
                    let mut v = Vec::with_capacity(end.max(2 * INLINE));
                    v.extend_from_slice(&buf[..at]);
                    v.extend_from_slice(bytes);
                    self.repr = Repr::Heap(v.into_boxed_slice());
                }
            }
            Repr::Heap(b) => {
                let mut v = std::mem::take(b).into_vec();
                v.extend_from_slice(bytes);
                *b = v.into_boxed_slice();
            }
        }
    }

    #[inline(always)]
    fn push_len_prefixed(&mut self, tag: u8, bytes: &[u8]) {
        let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
        self.push(&[tag]);
        self.push(&len.to_le_bytes());
        self.push(&bytes[..len as usize]);
    }

    /// Appends a literal fragment.
    #[inline(always)]
    pub fn lit(mut self, text: &str) -> Self {
        self.push_len_prefixed(TAG_LIT, text.as_bytes());
        self.mark();
        self
    }

    /// Appends a value.
    #[inline(always)]
    pub fn part<T: KeyPart + ?Sized>(mut self, value: &T) -> Self {
        value.write_key(&mut KeyWriter { key: &mut self });
        self.mark();
        self
    }
}

impl PartialEq for CacheKey {
    #[inline]
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for CacheKey {}

impl Hash for CacheKey {
    #[inline]
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write(self.as_bytes());
    }
}

impl fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Keys may hold user data: show their size, not their content.
        write!(f, "CacheKey({} bytes)", self.as_bytes().len())
    }
}

/// Where a [`KeyPart`] writes its encoding.
pub struct KeyWriter<'a> {
    key: &'a mut CacheKey,
}

impl KeyWriter<'_> {
    /// Writes an integer in its canonical form, whatever its Rust type.
    #[inline(always)]
    pub fn int(&mut self, v: i128) {
        match i64::try_from(v) {
            Ok(small) => {
                self.key.push(&[TAG_INT]);
                self.key.push(&small.to_le_bytes());
            }
            Err(_) => {
                self.key.push(&[TAG_WIDE_INT]);
                self.key.push(&v.to_le_bytes());
            }
        }
    }

    /// Writes an unsigned integer that may not fit an `i128`.
    #[inline]
    pub fn uint(&mut self, v: u128) {
        match i128::try_from(v) {
            Ok(v) => self.int(v),
            Err(_) => {
                // Above i128::MAX: a tag of its own keeps the encoding injective.
                self.key.push(&[TAG_WIDE_INT, 0xff]);
                self.key.push(&v.to_le_bytes());
            }
        }
    }

    /// Writes a string.
    #[inline]
    pub fn str(&mut self, s: &str) {
        self.key.push_len_prefixed(TAG_STR, s.as_bytes());
    }

    /// Writes raw bytes.
    #[inline]
    pub fn bytes(&mut self, b: &[u8]) {
        self.key.push_len_prefixed(TAG_BYTES, b);
    }

    /// Writes a 16-byte identifier such as a UUID.
    #[inline]
    pub fn uuid(&mut self, b: [u8; 16]) {
        self.key.push(&[TAG_UUID]);
        self.key.push(&b);
    }
}

/// A value that can fill a placeholder of a cache key.
///
/// Implemented for integers, `bool`, `char`, strings, byte slices, `Option`, and
/// references to any of them. Implement it for your own id types by delegating:
///
/// ```
/// use resilient_runtime::cache::{KeyPart, KeyWriter};
///
/// struct UserId(i64);
/// impl KeyPart for UserId {
///     fn write_key(&self, w: &mut KeyWriter<'_>) {
///         self.0.write_key(w)
///     }
/// }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be part of a cache key",
    label = "this placeholder's value must implement `resilient::cache::KeyPart`",
    note = "integers, strings, `bool`, `char`, `Option` and references to them can; implement `KeyPart` for your own id types"
)]
pub trait KeyPart {
    /// Writes the value's canonical encoding.
    fn write_key(&self, w: &mut KeyWriter<'_>);
}

macro_rules! int_parts {
    ($($t:ty),*) => {$(
        impl KeyPart for $t {
            #[inline]
            fn write_key(&self, w: &mut KeyWriter<'_>) {
                w.int(i128::from(*self));
            }
        }
    )*};
}
int_parts!(i8, i16, i32, i64, i128, u8, u16, u32, u64);

impl KeyPart for u128 {
    #[inline]
    fn write_key(&self, w: &mut KeyWriter<'_>) {
        w.uint(*self);
    }
}

impl KeyPart for isize {
    #[inline]
    fn write_key(&self, w: &mut KeyWriter<'_>) {
        // isize is at most 64 bits on every supported target.
        w.int(*self as i128);
    }
}

impl KeyPart for usize {
    #[inline]
    fn write_key(&self, w: &mut KeyWriter<'_>) {
        w.uint(*self as u128);
    }
}

impl KeyPart for bool {
    #[inline]
    fn write_key(&self, w: &mut KeyWriter<'_>) {
        w.key.push(&[TAG_BOOL, u8::from(*self)]);
    }
}

impl KeyPart for char {
    #[inline]
    fn write_key(&self, w: &mut KeyWriter<'_>) {
        w.key.push(&[TAG_CHAR]);
        w.key.push(&u32::from(*self).to_le_bytes());
    }
}

impl KeyPart for str {
    #[inline]
    fn write_key(&self, w: &mut KeyWriter<'_>) {
        w.str(self);
    }
}

impl KeyPart for String {
    #[inline]
    fn write_key(&self, w: &mut KeyWriter<'_>) {
        w.str(self);
    }
}

impl KeyPart for [u8] {
    #[inline]
    fn write_key(&self, w: &mut KeyWriter<'_>) {
        w.bytes(self);
    }
}

impl KeyPart for Vec<u8> {
    #[inline]
    fn write_key(&self, w: &mut KeyWriter<'_>) {
        w.bytes(self);
    }
}

impl<T: KeyPart + ?Sized> KeyPart for &T {
    #[inline]
    fn write_key(&self, w: &mut KeyWriter<'_>) {
        (**self).write_key(w);
    }
}

impl<T: KeyPart + ?Sized> KeyPart for &mut T {
    #[inline]
    fn write_key(&self, w: &mut KeyWriter<'_>) {
        (**self).write_key(w);
    }
}

impl<T: KeyPart + ?Sized> KeyPart for Box<T> {
    #[inline]
    fn write_key(&self, w: &mut KeyWriter<'_>) {
        (**self).write_key(w);
    }
}

impl<T: KeyPart + ?Sized> KeyPart for std::sync::Arc<T> {
    #[inline]
    fn write_key(&self, w: &mut KeyWriter<'_>) {
        (**self).write_key(w);
    }
}

impl<T: KeyPart> KeyPart for Option<T> {
    #[inline]
    fn write_key(&self, w: &mut KeyWriter<'_>) {
        match self {
            None => w.key.push(&[TAG_NONE]),
            Some(v) => {
                w.key.push(&[TAG_SOME]);
                v.write_key(w);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_values_through_different_types_give_one_key() {
        let owned = String::from("ab");
        let a = CacheKey::new().lit("u:").part(&7_i64).part("ab");
        let b = CacheKey::new().lit("u:").part(&&7_u8).part(&owned);
        let c = CacheKey::new()
            .lit("u:")
            .part(&Box::new(7_i32))
            .part(&&owned);
        assert_eq!(a, b);
        assert_eq!(a, c);
    }

    #[test]
    fn encoding_is_injective_where_naive_concatenation_is_not() {
        // "a:b" + "c" and "a" + "b:c" concatenate to the same text.
        let x = CacheKey::new().part("a:b").lit(":").part("c");
        let y = CacheKey::new().part("a").lit(":").part("b:c");
        assert_ne!(x, y);
        // A string that looks like a number is not the number.
        assert_ne!(CacheKey::new().part("7"), CacheKey::new().part(&7));
        assert_ne!(
            CacheKey::new().part(&-1_i64),
            CacheKey::new().part(&u128::MAX)
        );
        assert_ne!(
            CacheKey::new().part(&None::<i64>),
            CacheKey::new().part(&Some(0_i64))
        );
    }

    #[test]
    fn short_keys_stay_inline_and_long_ones_spill_exactly() {
        let short = CacheKey::new()
            .lit("user:")
            .part(&1_i64)
            .lit(":")
            .part(&2_i64);
        assert!(!short.is_spilled());
        let long_text = "x".repeat(100);
        let long = CacheKey::new().lit("user:").part(long_text.as_str());
        assert!(long.is_spilled());
        assert_eq!(long, CacheKey::new().lit("user:").part(&long_text));
        assert_ne!(
            long,
            CacheKey::new().lit("user:").part("x".repeat(99).as_str())
        );
        let grown = CacheKey::new()
            .lit("user:")
            .part(long_text.as_str())
            .part(&5_u8);
        assert!(grown.starts_with(&long));
    }

    #[test]
    fn template_prefixes_are_byte_prefixes() {
        let full = CacheKey::new().lit("user:").part(&1).lit(":").part(&2);
        let prefix = CacheKey::new().lit("user:").part(&1).lit(":");
        let other = CacheKey::new().lit("user:").part(&11).lit(":");
        assert!(full.starts_with(&prefix));
        assert!(!full.starts_with(&other));
        assert_eq!(full.prefix_bytes(3), Some(prefix.as_bytes()));
        assert_eq!(full.prefix_bytes(0), Some(&[][..]));
        assert_eq!(prefix.prefix_bytes(4), None);
    }

    #[test]
    fn shapes_compare_literals_and_hole_positions() {
        static A: KeyTemplate = KeyTemplate::new(
            "user:<id>:<org>",
            &[
                Fragment::Lit("user:"),
                Fragment::Hole("id"),
                Fragment::Lit(":"),
                Fragment::Hole("org"),
            ],
        );
        static B: KeyTemplate = KeyTemplate::new(
            "user:<u.id>:<u.org>",
            &[
                Fragment::Lit("user:"),
                Fragment::Hole("u.id"),
                Fragment::Lit(":"),
                Fragment::Hole("u.org"),
            ],
        );
        static P: KeyTemplate = KeyTemplate::new(
            "user:<id>:",
            &[
                Fragment::Lit("user:"),
                Fragment::Hole("id"),
                Fragment::Lit(":"),
            ],
        );
        static Q: KeyTemplate = KeyTemplate::new("users:", &[Fragment::Lit("users:")]);
        assert!(A.same_shape(&B));
        assert!(!A.same_shape(&P));
        assert!(P.is_shape_prefix_of(&A));
        assert!(!Q.is_shape_prefix_of(&A));
    }
}
