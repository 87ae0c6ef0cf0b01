//! Vehicle identification numbers (ISO 3779) and their check digit.
//!
//! The generator makes VINs that a real decoder would accept, so that test data
//! looks like production data: 17 characters from the ISO 3779 alphabet (digits
//! and capitals without `I`, `O` and `Q`, which read like `1` and `0`), with the
//! North American check digit (49 CFR 565.15) at position 9.

/// The characters a VIN may contain.
pub const ALPHABET: &[u8; 33] = b"0123456789ABCDEFGHJKLMNPRSTUVWXYZ";

/// The length of every VIN.
pub const LENGTH: usize = 17;

/// Index of the check digit (position 9, counted from 1).
pub const CHECK_DIGIT_INDEX: usize = 8;

/// Position weights of 49 CFR 565.15, table IV; the check digit's own weight is 0.
const WEIGHTS: [u32; LENGTH] = [8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2];

/// The numeric value of a VIN character (49 CFR 565.15, table III), `None`
/// outside the alphabet.
fn transliterate(c: u8) -> Option<u32> {
    let value = match c {
        b'0'..=b'9' => c - b'0',
        b'A' | b'J' => 1,
        b'B' | b'K' | b'S' => 2,
        b'C' | b'L' | b'T' => 3,
        b'D' | b'M' | b'U' => 4,
        b'E' | b'N' | b'V' => 5,
        b'F' | b'W' => 6,
        b'G' | b'P' | b'X' => 7,
        b'H' | b'Y' => 8,
        b'R' | b'Z' => 9,
        _ => return None,
    };
    Some(u32::from(value))
}

/// The check digit that belongs at position 9 of `vin` (`'0'`–`'9'` or `'X'`),
/// whatever is there now; `None` unless `vin` has 17 characters of the alphabet
/// (position 9 itself is not looked at).
pub fn check_digit(vin: &[u8]) -> Option<u8> {
    if vin.len() != LENGTH {
        return None;
    }
    let mut sum = 0;
    for (i, (&c, weight)) in vin.iter().zip(WEIGHTS).enumerate() {
        if i != CHECK_DIGIT_INDEX {
            sum += transliterate(c)? * weight;
        }
    }
    Some(match sum % 11 {
        10 => b'X',
        // `sum % 11 < 10`, so this is one decimal digit.
        d => b'0' + d as u8,
    })
}

/// Whether `vin` is a well-formed VIN with a correct check digit.
pub fn is_valid(vin: &str) -> bool {
    let bytes = vin.as_bytes();
    bytes.len() == LENGTH
        && transliterate(bytes[CHECK_DIGIT_INDEX]).is_some()
        && check_digit(bytes) == Some(bytes[CHECK_DIGIT_INDEX])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_known_real_vins() {
        // The design's example, and the textbook example of 49 CFR 565 (check digit X).
        assert!(is_valid("1HGCM82633A004352"));
        assert!(is_valid("1M8GDM9AXKP042788"));
        assert!(is_valid("11111111111111111"));
    }

    #[test]
    fn refuses_a_wrong_check_digit_length_or_alphabet() {
        assert!(!is_valid("1HGCM82643A004352"));
        assert!(!is_valid("1HGCM82633A00435"));
        assert!(!is_valid("1HGCM82633A0043521"));
        assert!(!is_valid("IHGCM82633A004352"));
        assert!(!is_valid("1hgcm82633a004352"));
        assert!(!is_valid(""));
    }

    #[test]
    fn every_alphabet_character_transliterates_and_no_other_does() {
        for c in 0..=u8::MAX {
            assert_eq!(
                transliterate(c).is_some(),
                ALPHABET.contains(&c),
                "{}",
                c as char
            );
        }
    }
}
