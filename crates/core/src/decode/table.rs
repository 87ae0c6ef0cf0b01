//! Configured strings — field names, signal keys, states — to their index,
//! for one lookup per string read.
//!
//! A string is known by its first 16 bytes (two words, zero-padded) and its
//! length: the hash mixes those three numbers instead of walking the bytes,
//! and a candidate is confirmed by comparing them, the bytes beyond the
//! sixteenth only for longer strings. The table is open-addressed, at most a
//! quarter full, and its multiplier is picked when it is built to spread the
//! configured strings, so most lookups, hits or misses, read one slot.
//!
//! [`Names`] have a quicker way first, as the demo's decoder had: when one
//! name alone starts with a byte, a string starting with it is likely that
//! one, and two masked words compare it with what follows it (`region":`
//! for a field name, `IC_RPM"` for a value) without scanning for its end.

use super::json::{low_bytes, word, words16};

/// The first 16 bytes of the `len`-byte string at the start of `src`
/// (which may go on past it), zero-padded, as two little-endian words.
#[inline]
pub(super) fn head(src: &[u8], len: usize) -> [u64; 2] {
    let n = len.min(16);
    match words16(src, 0) {
        Some([w0, w1]) => [w0 & low_bytes(n), w1 & low_bytes(n.saturating_sub(8))],
        _ => {
            let mut padded = [0u8; 16];
            padded[..n].copy_from_slice(&src[..n]);
            [word(&padded, 0).unwrap_or(0), word(&padded, 8).unwrap_or(0)]
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Slot {
    head: [u64; 2],
    /// `usize::MAX` in an empty slot.
    len: usize,
    id: usize,
}

const EMPTY: Slot = Slot {
    head: [0; 2],
    len: usize::MAX,
    id: usize::MAX,
};

/// Odd multipliers to try, from the golden ratio's.
const SEEDS: [u64; 8] = [
    0x9E37_79B9_7F4A_7C15,
    0xBF58_476D_1CE4_E5B9,
    0x94D0_49BB_1331_11EB,
    0xD6E8_FEB8_6659_FD93,
    0xA076_1D64_78BD_642F,
    0xE703_7ED1_A0B4_28DB,
    0x8EBC_6AF0_9C88_C6E3,
    0x5899_65CC_7537_4CC3,
];

#[inline]
fn index(head: [u64; 2], len: usize, seed: u64, shift: u32) -> usize {
    let h = (head[0] ^ len as u64).wrapping_mul(SEEDS[0]) ^ head[1];
    (h.wrapping_mul(seed) >> shift) as usize
}

/// The slots of `keys` with multiplier `seed`, and how many steps past
/// their first slot they were put in all.
fn place(keys: &[Box<[u8]>], seed: u64, shift: u32, size: usize) -> (Box<[Slot]>, usize) {
    let mut slots = vec![EMPTY; size];
    let mut displaced = 0;
    for (id, key) in keys.iter().enumerate() {
        let head = head(key, key.len());
        let mut i = index(head, key.len(), seed, shift);
        while slots[i].len != usize::MAX {
            i = (i + 1) % size;
            displaced += 1;
        }
        slots[i] = Slot {
            head,
            len: key.len(),
            id,
        };
    }
    (slots.into(), displaced)
}

/// Strings to their index in the list the table was built from.
#[derive(Debug)]
pub(super) struct Table {
    slots: Box<[Slot]>,
    keys: Box<[Box<[u8]>]>,
    seed: u64,
    shift: u32,
}

impl Table {
    /// A table of `keys` (distinct), each found as its index.
    pub(super) fn new<K: AsRef<str>>(keys: &[K]) -> Table {
        let keys: Box<[Box<[u8]>]> = keys.iter().map(|k| k.as_ref().as_bytes().into()).collect();
        let size = (keys.len() * 4).next_power_of_two().max(8);
        let shift = 64 - size.trailing_zeros();
        let (mut slots, mut displaced) = place(&keys, SEEDS[0], shift, size);
        let mut seed = SEEDS[0];
        for &other in &SEEDS[1..] {
            if displaced == 0 {
                break;
            }
            let (s, d) = place(&keys, other, shift, size);
            if d < displaced {
                (slots, displaced, seed) = (s, d, other);
            }
        }
        Table {
            slots,
            keys,
            seed,
            shift,
        }
    }

    /// The index of `text`, whose [`head`] is `head`.
    #[inline]
    pub(super) fn get(&self, text: &[u8], head: [u64; 2]) -> Option<usize> {
        let len = text.len();
        let mask = self.slots.len() - 1;
        let mut i = index(head, len, self.seed, self.shift);
        loop {
            let slot = self.slots.get(i)?;
            if slot.len == len
                && slot.head == head
                && (len <= 16 || self.keys.get(slot.id)?.get(16..) == text.get(16..))
            {
                return Some(slot.id);
            }
            if slot.len == usize::MAX {
                return None;
            }
            i = (i + 1) & mask;
        }
    }

    /// The index of `text`.
    pub(super) fn find(&self, text: &[u8]) -> Option<usize> {
        self.get(text, head(text, text.len()))
    }
}

/// A name followed by its terminator, as two words and masks.
#[derive(Clone, Copy, Debug)]
struct Quoted {
    id: usize,
    words: [u64; 2],
    masks: [u64; 2],
    len: usize,
}

/// Configured strings: a [`Table`], and a quicker way to those alone in
/// starting with their byte.
#[derive(Debug)]
pub(super) struct Names {
    pub(super) table: Table,
    /// By first byte: the one name starting with it, in `quoted`, when it
    /// and its terminator fit 16 bytes; else `u16::MAX`.
    first: Box<[u16; 256]>,
    quoted: Box<[Quoted]>,
}

impl Names {
    /// `names`, each found by [`Self::quoted`] when followed by `terminator`.
    pub(super) fn new<N: AsRef<str>>(names: &[N], terminator: &str) -> Names {
        let mut first = Box::new([u16::MAX; 256]);
        let mut quoted = Vec::new();
        for byte in 0..=255u8 {
            let mut starting = names
                .iter()
                .map(AsRef::as_ref)
                .enumerate()
                .filter(|(_, n)| n.as_bytes().first() == Some(&byte));
            if let (Some((id, name)), None) = (starting.next(), starting.next()) {
                let len = name.len() + terminator.len();
                // Raw bytes are the text only without escapes.
                let plain = !name.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20);
                if len <= 16 && plain {
                    first[usize::from(byte)] = quoted.len() as u16;
                    quoted.push(Quoted {
                        id,
                        words: head(format!("{name}{terminator}").as_bytes(), len),
                        masks: [low_bytes(len), low_bytes(len.saturating_sub(8))],
                        len,
                    });
                }
            }
        }
        Names {
            table: Table::new(names),
            first,
            quoted: quoted.into(),
        }
    }

    /// At a string's first byte, `bytes[at]`: the index of the name written
    /// plainly there and followed by its terminator, and the length of both;
    /// `None` when that is not sure, and [`Table::get`] decides.
    #[inline(always)]
    pub(super) fn quoted(&self, bytes: &[u8], at: usize) -> Option<(usize, usize)> {
        let [w0, w1] = match words16(bytes, at) {
            Some(words) => words,
            // Near the end: zero padding never matches a plain name's bytes.
            None => {
                let rest = bytes.get(at..)?;
                let mut padded = [0u8; 16];
                padded[..rest.len()].copy_from_slice(rest);
                words16(&padded, 0)?
            }
        };
        let q = self
            .quoted
            .get(usize::from(self.first[(w0 & 0xff) as usize]))?;
        (w0 & q.masks[0] == q.words[0] && w1 & q.masks[1] == q.words[1]).then_some((q.id, q.len))
    }

    /// The index of `text`, whose [`head`] is `head`.
    #[inline]
    pub(super) fn get(&self, text: &[u8], head: [u64; 2]) -> Option<usize> {
        self.table.get(text, head)
    }

    /// The index of `text`.
    pub(super) fn find(&self, text: &[u8]) -> Option<usize> {
        self.table.find(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_every_key_and_nothing_else() {
        let keys: Vec<String> = (0..300)
            .map(|i| format!("sig_{i:02}"))
            .chain(["a".into(), "a_name_longer_than_sixteen_bytes_1".into()])
            .chain(["a_name_longer_than_sixteen_bytes_2".into(), "é".into()])
            .collect();
        let table = Table::new(&keys);
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(table.find(k.as_bytes()), Some(i), "{k}");
            // Read from inside a longer buffer, as from a message.
            let padded = format!("{k}\":0123456789abcdef");
            assert_eq!(
                table.get(k.as_bytes(), head(padded.as_bytes(), k.len())),
                Some(i)
            );
        }
        for miss in [
            "",
            "sig_",
            "sig_300",
            "b",
            "a_name_longer_than_sixteen_bytes_3",
        ] {
            assert_eq!(table.find(miss.as_bytes()), None, "{miss}");
        }
        assert_eq!(Table::new::<&str>(&[]).find(b"x"), None);
    }

    #[test]
    fn names_alone_in_their_first_byte_are_found_quoted() {
        let names = Names::new(
            &["region", "reference", "vehicleId", "a_name_of_15_by", "ts"],
            "\":",
        );
        let at = |text: &str| names.quoted(format!("{text}                ").as_bytes(), 0);
        assert_eq!(at("vehicleId\":1"), Some((2, 11)));
        assert_eq!(at("ts\":1"), Some((4, 4)));
        // Shared first byte, too long, not followed by the quote and colon.
        assert_eq!(at("region\":1"), None);
        assert_eq!(at("a_name_of_15_by\":1"), None);
        assert_eq!(at("vehicleId\" :1"), None);
        assert_eq!(at("vehicleIdx\":1"), None);
        assert_eq!(at("t\":1"), None);
        // Near the end of the message, as anywhere else.
        assert_eq!(names.quoted(b"ts\":1", 0), Some((4, 4)));
        assert_eq!(names.quoted(b"ts\"", 0), None);
        assert_eq!(names.quoted(b"t", 0), None);
        let values = Names::new(&["IC_RPM", "ELECTRIC_RPM", "WARNINGS"], "\"");
        assert_eq!(values.quoted(b"WARNINGS\",\"vehicleId\"", 0), Some((2, 9)));
        assert_eq!(values.quoted(b"WARNINGSX\",\"vehicleId\"", 0), None);
        // `a\b` written raw is `a` and a backspace.
        let escaped = Names::new(&["a\\b"], "\"");
        assert_eq!(escaped.quoted(b"a\\b\"                ", 0), None);
        assert_eq!(escaped.find(b"a\\b"), Some(0));
    }
}
