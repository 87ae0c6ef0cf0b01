//! [`SmallStr`]: an immutable string kept inline when short.
//!
//! Every raw event carries two strings, the VIN (17 bytes) and the region (a
//! few bytes). Kept as `String`s they cost two heap allocations per event,
//! made by the decoder and freed by the enricher. A `SmallStr` of at most
//! [`SmallStr::INLINE_CAP`] bytes lives inside the value itself (24 bytes,
//! the size of a `String`); longer strings, which the wire format allows but
//! the fleet does not send, fall back to one boxed allocation.
//!
//! The inline form is also a ready-made hash key: [`SmallStr::inline_words`]
//! returns it as three machine words, which the enricher's tables hash and
//! compare without looking at the string byte by byte.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The length of an inline string. A type with 24 values rather than a `u8`,
/// so that the compiler can tell the inline and the boxed forms apart by
/// this byte alone and the whole string stays 24 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
#[rustfmt::skip]
enum InlineLen {
    L0, L1, L2, L3, L4, L5, L6, L7, L8, L9, L10, L11,
    L12, L13, L14, L15, L16, L17, L18, L19, L20, L21, L22, L23,
}

#[rustfmt::skip]
const LENS: [InlineLen; SmallStr::INLINE_CAP + 1] = {
    use InlineLen::*;
    [
        L0, L1, L2, L3, L4, L5, L6, L7, L8, L9, L10, L11,
        L12, L13, L14, L15, L16, L17, L18, L19, L20, L21, L22, L23,
    ]
};

/// An inline string: its bytes, zero after `len` (so equal strings have
/// equal arrays), then the length. Laid out as three little-endian words.
#[derive(Clone, Copy)]
#[repr(C, align(8))]
struct Inline {
    bytes: [u8; SmallStr::INLINE_CAP],
    len: InlineLen,
}

impl Inline {
    #[inline]
    fn words(&self) -> [u64; 3] {
        let b = &self.bytes;
        let word = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[i * 8..i * 8 + 8]);
            u64::from_le_bytes(w)
        };
        let mut last = [0u8; 8];
        last[..7].copy_from_slice(&b[16..23]);
        last[7] = self.len as u8;
        [word(0), word(1), u64::from_le_bytes(last)]
    }

    #[inline]
    fn from_words(words: [u64; 3], len: usize) -> Inline {
        let mut bytes = [0u8; SmallStr::INLINE_CAP];
        bytes[..8].copy_from_slice(&words[0].to_le_bytes());
        bytes[8..16].copy_from_slice(&words[1].to_le_bytes());
        bytes[16..].copy_from_slice(&words[2].to_le_bytes()[..7]);
        Inline {
            bytes,
            len: LENS[len],
        }
    }
}

#[derive(Clone)]
enum Repr {
    Inline(Inline),
    /// More than [`SmallStr::INLINE_CAP`] bytes.
    Heap(Box<str>),
}

/// An immutable UTF-8 string, inline up to [`SmallStr::INLINE_CAP`] bytes.
///
/// Dereferences to `str`; compares, orders and hashes as its `str` does.
#[derive(Clone)]
pub struct SmallStr(Repr);

impl SmallStr {
    /// The longest string kept inline, bytes.
    pub const INLINE_CAP: usize = 23;

    /// The empty string.
    pub const EMPTY: SmallStr = SmallStr(Repr::Inline(Inline {
        bytes: [0; Self::INLINE_CAP],
        len: InlineLen::L0,
    }));

    /// A copy of `s`; allocates only when `s` is longer than [`Self::INLINE_CAP`].
    #[inline]
    pub fn new(s: &str) -> SmallStr {
        let bytes = s.as_bytes();
        if bytes.len() <= Self::INLINE_CAP {
            let mut buf = [0u8; Self::INLINE_CAP];
            buf[..bytes.len()].copy_from_slice(bytes);
            SmallStr(Repr::Inline(Inline {
                bytes: buf,
                len: LENS[bytes.len()],
            }))
        } else {
            SmallStr(Repr::Heap(s.into()))
        }
    }

    /// The ASCII string `src[..len]`, built with three word loads and no
    /// copy loop when `src` has at least 24 bytes. `None` when `len` exceeds
    /// [`Self::INLINE_CAP`] or `src`, or the bytes are not all ASCII.
    #[inline]
    pub fn from_ascii_prefix(src: &[u8], len: usize) -> Option<SmallStr> {
        if len > Self::INLINE_CAP || len > src.len() {
            return None;
        }
        let words = match src.get(..24) {
            Some(head) => {
                let word = |i: usize, keep: usize| {
                    let mut w = [0u8; 8];
                    w.copy_from_slice(&head[i * 8..i * 8 + 8]);
                    let w = u64::from_le_bytes(w);
                    match keep {
                        0 => 0,
                        1..=7 => w & (u64::MAX >> (64 - 8 * keep)),
                        _ => w,
                    }
                };
                [
                    word(0, len),
                    word(1, len.saturating_sub(8)),
                    word(2, len.saturating_sub(16).min(7)),
                ]
            }
            None => {
                let mut buf = [0u8; 24];
                buf[..len].copy_from_slice(&src[..len]);
                let word = |i: usize| {
                    let mut w = [0u8; 8];
                    w.copy_from_slice(&buf[i * 8..i * 8 + 8]);
                    u64::from_le_bytes(w)
                };
                [word(0), word(1), word(2)]
            }
        };
        if (words[0] | words[1] | words[2]) & 0x8080_8080_8080_8080 != 0 {
            return None;
        }
        Some(SmallStr(Repr::Inline(Inline::from_words(words, len))))
    }

    /// The string.
    #[inline]
    pub fn as_str(&self) -> &str {
        match &self.0 {
            // Built from a `&str` only, so always valid: the check is a cheap
            // formality for at most 23 bytes (the crate forbids `unsafe`).
            Repr::Inline(i) => std::str::from_utf8(&i.bytes[..i.len as usize]).unwrap_or(""),
            Repr::Heap(s) => s,
        }
    }

    /// The string's bytes (no UTF-8 check).
    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        match &self.0 {
            Repr::Inline(i) => &i.bytes[..i.len as usize],
            Repr::Heap(s) => s.as_bytes(),
        }
    }

    /// Length in bytes.
    #[inline]
    pub fn len(&self) -> usize {
        match &self.0 {
            Repr::Inline(i) => i.len as usize,
            Repr::Heap(s) => s.len(),
        }
    }

    /// Whether the string is empty.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the string is kept inline (at most [`Self::INLINE_CAP`] bytes).
    #[inline]
    pub fn is_inline(&self) -> bool {
        matches!(self.0, Repr::Inline(..))
    }

    /// For an inline string, its 23 bytes (zero-padded) followed by its
    /// length, as three little-endian words: equal strings give equal words,
    /// different strings different words, and no string gives all zeros
    /// except the empty one. `None` for a string kept on the heap.
    #[inline]
    pub fn inline_words(&self) -> Option<[u64; 3]> {
        match &self.0 {
            Repr::Inline(i) => Some(i.words()),
            Repr::Heap(_) => None,
        }
    }

    /// [`Self::inline_words`] of `s` without building a `SmallStr`.
    #[inline]
    pub fn words_of_str(s: &str) -> Option<[u64; 3]> {
        let bytes = s.as_bytes();
        (bytes.len() <= Self::INLINE_CAP).then(|| {
            let mut buf = [0u8; Self::INLINE_CAP];
            buf[..bytes.len()].copy_from_slice(bytes);
            Inline {
                bytes: buf,
                len: LENS[bytes.len()],
            }
            .words()
        })
    }
}

impl Default for SmallStr {
    fn default() -> Self {
        SmallStr::EMPTY
    }
}

impl Deref for SmallStr {
    type Target = str;
    #[inline]
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for SmallStr {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl Borrow<str> for SmallStr {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl From<&str> for SmallStr {
    fn from(s: &str) -> Self {
        SmallStr::new(s)
    }
}

impl From<&String> for SmallStr {
    fn from(s: &String) -> Self {
        SmallStr::new(s)
    }
}

impl From<String> for SmallStr {
    fn from(s: String) -> Self {
        if s.len() <= Self::INLINE_CAP {
            SmallStr::new(&s)
        } else {
            SmallStr(Repr::Heap(s.into_boxed_str()))
        }
    }
}

impl From<SmallStr> for String {
    fn from(s: SmallStr) -> Self {
        s.as_str().to_owned()
    }
}

impl PartialEq for SmallStr {
    #[inline]
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for SmallStr {}

impl PartialOrd for SmallStr {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for SmallStr {
    fn cmp(&self, other: &Self) -> Ordering {
        // Byte order is `str`'s order.
        self.as_bytes().cmp(other.as_bytes())
    }
}

impl Hash for SmallStr {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // As `str` hashes, so that `Borrow<str>` lookups work.
        self.as_str().hash(state);
    }
}

impl PartialEq<str> for SmallStr {
    fn eq(&self, other: &str) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl PartialEq<&str> for SmallStr {
    fn eq(&self, other: &&str) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl PartialEq<String> for SmallStr {
    fn eq(&self, other: &String) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl PartialEq<SmallStr> for str {
    fn eq(&self, other: &SmallStr) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl PartialEq<SmallStr> for &str {
    fn eq(&self, other: &SmallStr) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl PartialEq<SmallStr> for String {
    fn eq(&self, other: &SmallStr) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl fmt::Debug for SmallStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for SmallStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self.as_str(), f)
    }
}

impl Serialize for SmallStr {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for SmallStr {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = SmallStr;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<SmallStr, E> {
                Ok(SmallStr::new(v))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<SmallStr, E> {
                Ok(SmallStr::from(v))
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn stays_the_size_of_a_string() {
        assert_eq!(std::mem::size_of::<SmallStr>(), 24);
        assert_eq!(std::mem::size_of::<Option<SmallStr>>(), 24);
    }

    #[test]
    fn short_strings_are_inline_and_long_ones_boxed() {
        let vin = SmallStr::new("1HGCM82633A004352");
        assert!(vin.is_inline());
        assert_eq!(vin, "1HGCM82633A004352");
        assert_eq!(vin.len(), 17);
        let long = SmallStr::new("a vehicle id longer than 23 bytes");
        assert!(!long.is_inline());
        assert_eq!(long.inline_words(), None);
        assert_eq!(&*long, "a vehicle id longer than 23 bytes");
        assert!(SmallStr::new(&"x".repeat(23)).is_inline());
        assert!(!SmallStr::new(&"x".repeat(24)).is_inline());
        assert_eq!(SmallStr::EMPTY.inline_words(), Some([0, 0, 0]));
    }

    #[test]
    fn serialises_as_a_json_string() {
        let s = SmallStr::new("São \"Paulo\"");
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(json, r#""São \"Paulo\"""#);
        assert_eq!(serde_json::from_str::<SmallStr>(&json).unwrap(), s);
    }

    proptest! {
        #[test]
        fn behaves_as_its_str(a in ".{0,30}", b in ".{0,30}") {
            let (sa, sb) = (SmallStr::new(&a), SmallStr::from(b.clone()));
            prop_assert_eq!(sa.as_str(), a.as_str());
            prop_assert_eq!(sb.as_str(), b.as_str());
            prop_assert_eq!(sa == sb, a == b);
            prop_assert_eq!(sa.cmp(&sb), a.as_str().cmp(b.as_str()));
            prop_assert_eq!(sa.is_inline(), a.len() <= SmallStr::INLINE_CAP);
            prop_assert_eq!(sa.inline_words(), SmallStr::words_of_str(&a));
            // Built from a prefix of a longer buffer, or of a short one.
            let padded = format!("{a}\"{b}{}", " ".repeat(24));
            for src in [padded.as_bytes(), a.as_bytes()] {
                let built = SmallStr::from_ascii_prefix(src, a.len());
                if a.is_ascii() && a.len() <= SmallStr::INLINE_CAP {
                    prop_assert_eq!(built.as_ref().map(SmallStr::as_str), Some(a.as_str()));
                    prop_assert_eq!(built.and_then(|s| s.inline_words()), sa.inline_words());
                } else {
                    prop_assert!(built.is_none());
                }
            }
            if let (Some(wa), Some(wb)) = (sa.inline_words(), sb.inline_words()) {
                prop_assert_eq!(wa == wb, a == b);
                prop_assert_eq!(wa == [0, 0, 0], a.is_empty());
            }
        }
    }
}
