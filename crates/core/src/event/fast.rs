//! The decoder's fast path: one pass over a flat JSON object, no allocation.
//!
//! It accepts only what it can decode with certainty to the same event as
//! the serde path ([`super::decode_event_serde`]) and answers `None` for
//! anything else — an escape, a nested or fractional value, a duplicate key,
//! a missing field, an unknown `eventType`, a value the serde path refuses —
//! so the caller falls back to the serde path, which decodes the unusual or
//! classifies the refusal exactly as before. Refusals are therefore never
//! decided here, and the fast path needs no error reporting of its own.
//!
//! What it accepts: optional JSON whitespace; an object whose keys are ASCII
//! strings without escapes; for the five known keys, each at most once,
//! strings without escapes or control characters (valid UTF-8) and integers
//! `-?(0|[1-9][0-9]{0,17})` except `-0` (serde_json reads `-0` as a float);
//! for other keys, such strings, such integers, `true`, `false` and `null`.

use super::{EventType, RawEvent};
use crate::SmallStr;

/// Decodes `bytes` if it is a plain, valid event; `None` when the serde path
/// must decide.
#[inline]
pub(super) fn decode(bytes: &[u8]) -> Option<RawEvent> {
    let mut p = Parser { bytes, pos: 0 };
    p.skip_ws();
    p.expect(b'{')?;
    let mut event_type = None;
    let mut vehicle_id: Option<SmallStr> = None;
    let mut region: Option<SmallStr> = None;
    let mut timestamp = None;
    let mut measurement = None;
    p.skip_ws();
    loop {
        let key = match p.plain_known_key() {
            Some(key) => key,
            None => {
                p.expect(b'"')?;
                let (start, len, ascii) = p.string()?;
                p.skip_ws();
                p.expect(b':')?;
                match &bytes[start..start + len] {
                    b"eventType" => Key::EventType,
                    b"vehicleId" => Key::VehicleId,
                    b"region" => Key::Region,
                    b"timestamp" => Key::Timestamp,
                    b"measurement" => Key::Measurement,
                    _ if ascii => Key::Other,
                    _ => return None,
                }
            }
        };
        p.skip_ws();
        match key {
            Key::EventType => set_once(&mut event_type, p.event_type()?)?,
            Key::VehicleId => set_once(&mut vehicle_id, p.str_value()?)?,
            Key::Region => set_once(&mut region, p.str_value()?)?,
            Key::Timestamp => set_once(&mut timestamp, p.integer()?)?,
            Key::Measurement => set_once(&mut measurement, p.integer()?)?,
            Key::Other => p.skip_plain_value()?,
        }
        p.skip_ws();
        match p.next()? {
            b',' => p.skip_ws(),
            b'}' => break,
            _ => return None,
        }
    }
    p.skip_ws();
    if p.pos != bytes.len() {
        return None;
    }
    let (event_type, vehicle_id, region, timestamp, measurement) =
        (event_type?, vehicle_id?, region?, timestamp?, measurement?);
    if vehicle_id.is_empty()
        || region.is_empty()
        || (event_type == EventType::Warnings && measurement < 0)
    {
        return None;
    }
    Some(RawEvent {
        event_type,
        vehicle_id,
        region,
        timestamp,
        measurement,
    })
}

/// The keys of the wire format, and any other.
#[derive(Clone, Copy)]
enum Key {
    EventType,
    VehicleId,
    Region,
    Timestamp,
    Measurement,
    Other,
}

/// A duplicate key is an error for serde: leave it to the serde path.
#[inline]
fn set_once<T>(slot: &mut Option<T>, value: T) -> Option<()> {
    if slot.is_some() {
        return None;
    }
    *slot = Some(value);
    Some(())
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// High bit set in each byte of `w` that ends or interrupts a plain string —
/// `"`, a backslash or a control character — exact for the lowest such byte (higher
/// ones may be false positives, which do not matter).
#[inline]
fn specials(w: u64) -> u64 {
    let eq = |b: u8| {
        let x = w ^ (ONES * u64::from(b));
        x.wrapping_sub(ONES) & !x
    };
    (eq(b'"') | eq(b'\\') | (w.wrapping_sub(ONES * 0x20) & !w)) & HIGHS
}

struct Parser<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    #[inline]
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    #[inline]
    fn next(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.pos += 1;
        Some(b)
    }

    #[inline]
    fn expect(&mut self, b: u8) -> Option<()> {
        (self.next()? == b).then_some(())
    }

    #[inline]
    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.peek() {
            self.pos += 1;
        }
    }

    /// At a key's opening quote: a known key written plainly, quote to
    /// colon (`"region":`), is taken by one comparison; `None` (nothing
    /// consumed) for anything else, which the general path reads.
    #[inline(always)]
    fn plain_known_key(&mut self) -> Option<Key> {
        let rest = self.bytes.get(self.pos..)?;
        let (literal, key): (&[u8], Key) = match rest.get(1)? {
            b'e' => (b"\"eventType\":", Key::EventType),
            b'v' => (b"\"vehicleId\":", Key::VehicleId),
            b'r' => (b"\"region\":", Key::Region),
            b't' => (b"\"timestamp\":", Key::Timestamp),
            b'm' => (b"\"measurement\":", Key::Measurement),
            _ => return None,
        };
        if rest.starts_with(literal) {
            self.pos += literal.len();
            Some(key)
        } else {
            None
        }
    }

    #[inline]
    fn word_at(&self, i: usize) -> Option<u64> {
        let mut w = [0u8; 8];
        w.copy_from_slice(self.bytes.get(i..i + 8)?);
        Some(u64::from_le_bytes(w))
    }

    /// After an opening quote: where the string's raw bytes start, how many
    /// there are, and whether they are all ASCII; the closing quote is
    /// consumed. `None` at an escape, a control character or the end.
    /// Eight bytes at a time where the input allows.
    #[inline(always)]
    fn string(&mut self) -> Option<(usize, usize, bool)> {
        let start = self.pos;
        let mut i = start;
        let mut high = 0u64;
        let end = loop {
            match self.word_at(i) {
                Some(w) => {
                    let m = specials(w);
                    if m != 0 {
                        let k = (m.trailing_zeros() / 8) as usize;
                        if k > 0 {
                            high |= w & (u64::MAX >> (64 - 8 * k));
                        }
                        break i + k;
                    }
                    high |= w;
                    i += 8;
                }
                None => {
                    let k = self.bytes.get(i..)?.iter().position(|&b| {
                        high |= u64::from(b);
                        b == b'"' || b == b'\\' || b < 0x20
                    })?;
                    break i + k;
                }
            }
        };
        if self.bytes[end] != b'"' {
            return None;
        }
        self.pos = end + 1;
        // The tail loop also folded in the terminator, which is ASCII.
        Some((start, end - start, high & HIGHS == 0))
    }

    /// A string value, which must be valid UTF-8.
    #[inline]
    fn str_value(&mut self) -> Option<SmallStr> {
        self.expect(b'"')?;
        let (start, len, ascii) = self.string()?;
        if ascii {
            if let Some(s) = SmallStr::from_ascii_prefix(&self.bytes[start..], len) {
                return Some(s);
            }
        }
        std::str::from_utf8(&self.bytes[start..start + len])
            .ok()
            .map(SmallStr::new)
    }

    #[inline]
    fn event_type(&mut self) -> Option<EventType> {
        self.expect(b'"')?;
        let (start, len, _) = self.string()?;
        match &self.bytes[start..start + len] {
            b"IC_RPM" => Some(EventType::IcRpm),
            b"ELECTRIC_RPM" => Some(EventType::ElectricRpm),
            b"WARNINGS" => Some(EventType::Warnings),
            _ => None,
        }
    }

    /// `-?(0|[1-9][0-9]{0,17})`, not `-0`, not followed by a fraction or an
    /// exponent: at most 18 digits always fit an `i64`.
    #[inline]
    fn integer(&mut self) -> Option<i64> {
        let negative = self.peek()? == b'-';
        if negative {
            self.pos += 1;
        }
        let start = self.pos;
        let mut value: u64 = 0;
        let rest = self.bytes.get(start..)?;
        let mut digits = 0;
        for &b in rest {
            let d = b.wrapping_sub(b'0');
            if d > 9 {
                break;
            }
            value = value.wrapping_mul(10).wrapping_add(u64::from(d));
            digits += 1;
        }
        // No digit; more than 18; a leading zero (`01`, `-0`); a fraction or an exponent.
        if digits == 0
            || digits > 18
            || (rest[0] == b'0' && (digits > 1 || negative))
            || matches!(rest.get(digits), Some(b'.' | b'e' | b'E'))
        {
            return None;
        }
        self.pos = start + digits;
        // At most 18 digits: below 10^18 < i64::MAX.
        let value = value as i64;
        Some(if negative { -value } else { value })
    }

    /// The value of a key the event does not use: a plain ASCII string, an
    /// integer, `true`, `false` or `null`; anything else goes to serde.
    fn skip_plain_value(&mut self) -> Option<()> {
        match self.peek()? {
            b'"' => {
                self.pos += 1;
                self.string()?.2.then_some(())
            }
            b'-' | b'0'..=b'9' => self.integer().map(drop),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            _ => None,
        }
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        let end = self.pos + word.len();
        (self.bytes.get(self.pos..end)? == word).then(|| self.pos = end)
    }
}

#[cfg(test)]
mod tests {
    use super::super::decode_event_serde;
    use super::*;
    use proptest::prelude::*;

    /// The fast path never disagrees with the serde path: whatever it
    /// decodes, serde decodes to the same event.
    fn check(input: &[u8]) -> Result<(), TestCaseError> {
        let serde = decode_event_serde(input);
        if let Some(fast) = decode(input) {
            prop_assert_eq!(
                Ok(fast),
                serde,
                "input {:?}",
                String::from_utf8_lossy(input)
            );
        }
        // And the combined decoder is the serde decoder.
        prop_assert_eq!(super::super::decode_event(input), decode_event_serde(input));
        Ok(())
    }

    fn fast(s: &str) -> Option<RawEvent> {
        let got = decode(s.as_bytes());
        check(s.as_bytes()).unwrap();
        got
    }

    const DESIGN: &str = r#"{"eventType":"IC_RPM","vehicleId":"1HGCM82633A004352","region":"UK","timestamp":1764000000123,"measurement":2450}"#;

    #[test]
    fn takes_the_plain_events_the_generator_writes() {
        let e = fast(DESIGN).unwrap();
        assert_eq!(e.event_type, EventType::IcRpm);
        assert_eq!(e.vehicle_id, "1HGCM82633A004352");
        assert_eq!(e.region, "UK");
        assert_eq!(e.timestamp, 1_764_000_000_123);
        assert_eq!(e.measurement, 2450);
        assert!(fast(
            " {\n\t\"measurement\" : -1500 , \"region\":\"São Paulo\",\"timestamp\":0,\r\n\
             \"eventType\":\"ELECTRIC_RPM\",\"x\":null,\"y\":true,\"z\":\"s\",\"w\":-7,\
             \"vehicleId\":\"V\"} \n"
        )
        .is_some());
    }

    #[test]
    fn leaves_everything_unusual_to_serde() {
        let unusual = [
            // escapes, anywhere
            r#"{"eventType":"IC_RPM","vehicleId":"V\"1","region":"UK","timestamp":1,"measurement":2}"#,
            r#"{"eventType":"IC\u005fRPM","vehicleId":"V","region":"UK","timestamp":1,"measurement":2}"#,
            r#"{"event\u0054ype":"IC_RPM","vehicleId":"V","region":"UK","timestamp":1,"measurement":2}"#,
            // numbers serde reads as floats or refuses
            r#"{"eventType":"IC_RPM","vehicleId":"V","region":"UK","timestamp":1,"measurement":1.5}"#,
            r#"{"eventType":"IC_RPM","vehicleId":"V","region":"UK","timestamp":1,"measurement":1e3}"#,
            r#"{"eventType":"IC_RPM","vehicleId":"V","region":"UK","timestamp":1,"measurement":-0}"#,
            r#"{"eventType":"IC_RPM","vehicleId":"V","region":"UK","timestamp":1,"measurement":01}"#,
            r#"{"eventType":"IC_RPM","vehicleId":"V","region":"UK","timestamp":9223372036854775807,"measurement":1}"#,
            r#"{"eventType":"IC_RPM","vehicleId":"V","region":"UK","timestamp":99999999999999999999,"measurement":1}"#,
            r#"{"eventType":"IC_RPM","vehicleId":"V","region":"UK","timestamp":-,"measurement":1}"#,
            // nested or fractional extra values
            r#"{"eventType":"IC_RPM","vehicleId":"V","region":"UK","timestamp":1,"measurement":2,"extra":[1,2]}"#,
            r#"{"eventType":"IC_RPM","vehicleId":"V","region":"UK","timestamp":1,"measurement":2,"extra":{"a":1}}"#,
            r#"{"eventType":"IC_RPM","vehicleId":"V","region":"UK","timestamp":1,"measurement":2,"extra":0.5}"#,
            // refusals
            r#"{"eventType":"IC_RPM","vehicleId":"V","region":"UK","timestamp":1,"timestamp":2,"measurement":2}"#,
            r#"{"eventType":"IC_RPM","vehicleId":"V","region":"UK","measurement":2}"#,
            r#"{"eventType":"IC_RPM","vehicleId":"V","region":"UK","timestamp":null,"measurement":2}"#,
            r#"{"eventType":"IC_RPM","vehicleId":"V","region":"UK","timestamp":"1","measurement":2}"#,
            r#"{"eventType":"OIL","vehicleId":"V","region":"UK","timestamp":1,"measurement":2}"#,
            r#"{"eventType":"IC_RPM","vehicleId":"","region":"UK","timestamp":1,"measurement":2}"#,
            r#"{"eventType":"IC_RPM","vehicleId":"V","region":"","timestamp":1,"measurement":2}"#,
            r#"{"eventType":"WARNINGS","vehicleId":"V","region":"UK","timestamp":1,"measurement":-1}"#,
            r#"{"eventType":"IC_RPM","vehicleId":"V","region":"UK","timestamp":1,"measurement":2,}"#,
            r#"{"eventType":"IC_RPM","vehicleId":"V","region":"UK","timestamp":1,"measurement":2} x"#,
            r#"{"eventType":"IC_RPM","vehicleId":"V","region":"UK","timestamp":1,"measurement":2"#,
            r#"{"eventType":"IC_RPM","vehicleId":"V","region":"UK","timestamp":1,"measurement":2,"x":tru}"#,
            "{\"eventType\":\"IC_RPM\",\"vehicleId\":\"V\u{1}\",\"region\":\"UK\",\"timestamp\":1,\"measurement\":2}",
            "\u{feff}{}",
            "{}",
            "[]",
            "",
        ];
        for input in unusual {
            assert_eq!(fast(input), None, "{input}");
        }
        // Invalid UTF-8 in a string.
        let mut bytes = DESIGN.as_bytes().to_vec();
        bytes[38] = 0xff;
        assert_eq!(decode(&bytes), None);
        check(&bytes).unwrap();
    }

    #[test]
    fn largest_integers_taken_are_exact() {
        let e = fast(
            r#"{"eventType":"IC_RPM","vehicleId":"V","region":"UK","timestamp":999999999999999999,"measurement":-999999999999999999}"#,
        )
        .unwrap();
        assert_eq!(
            (e.timestamp, e.measurement),
            (999_999_999_999_999_999, -999_999_999_999_999_999)
        );
    }

    fn event_json() -> impl Strategy<Value = String> {
        let event_type = prop_oneof![
            Just("IC_RPM".to_string()),
            Just("ELECTRIC_RPM".to_string()),
            Just("WARNINGS".to_string()),
            "[A-Z_]{0,12}",
        ];
        let string = prop_oneof![
            "[0-9A-Z]{17}",
            "[a-zA-Z é\"\\\\/\u{1}-]{0,30}",
            Just(String::new()),
        ];
        let number = prop_oneof![
            any::<i64>().prop_map(|n| n.to_string()),
            (-2000i64..2000).prop_map(|n| n.to_string()),
            Just("-0".to_string()),
            Just("1.5".to_string()),
            Just("1e3".to_string()),
            Just("00".to_string()),
            Just("99999999999999999999".to_string()),
            Just("null".to_string()),
            Just("\"7\"".to_string()),
        ];
        let extra = prop_oneof![
            Just(String::new()),
            Just(r#""extra":[1,2]"#.to_string()),
            Just(r#""x":null"#.to_string()),
            Just(r#""y":"plain""#.to_string()),
            Just(r#""z":12"#.to_string()),
            Just(r#""q":1.25"#.to_string()),
            Just(r#""timestamp":5"#.to_string()),
        ];
        let ws = prop_oneof![Just(""), Just(" "), Just("\n\t"), Just("\r ")];
        (
            event_type,
            string.clone(),
            string,
            number.clone(),
            number,
            extra,
            any::<proptest::sample::Index>(),
            ws,
            proptest::collection::vec(any::<bool>(), 5),
        )
            .prop_map(|(t, v, r, ts, m, extra, shuffle, ws, present)| {
                let json_str = |s: &str| serde_json::to_string(s).unwrap();
                let mut fields: Vec<String> = [
                    format!(r#""eventType":{}"#, json_str(&t)),
                    format!(r#""vehicleId":{}"#, json_str(&v)),
                    format!(r#""region":{}"#, json_str(&r)),
                    format!(r#""timestamp":{ts}"#),
                    format!(r#""measurement":{m}"#),
                ]
                .into_iter()
                .zip(present)
                .filter_map(|(f, keep)| keep.then_some(f))
                .collect();
                if !extra.is_empty() {
                    fields.push(extra);
                }
                let n = fields.len().max(1);
                fields.rotate_left(shuffle.index(n) % n);
                format!("{ws}{{{ws}{}{ws}}}{ws}", fields.join(&format!("{ws},{ws}")))
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn agrees_with_serde_on_generated_events(json in event_json()) {
            check(json.as_bytes())?;
        }

        #[test]
        fn agrees_with_serde_on_mutated_events(
            json in event_json(),
            at in any::<proptest::sample::Index>(),
            byte in prop_oneof![any::<u8>(), Just(b'"'), Just(b','), Just(b'}'), Just(b'\\'), Just(b'-'), Just(b'.')],
            op in 0..3u8,
        ) {
            let mut bytes = json.into_bytes();
            let i = at.index(bytes.len() + 1);
            match op {
                0 => bytes.truncate(i),
                1 => bytes.insert(i, byte),
                _ => {
                    if i < bytes.len() {
                        bytes[i] = byte;
                    }
                }
            }
            check(&bytes)?;
        }

        #[test]
        fn agrees_with_serde_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            check(&bytes)?;
        }

        #[test]
        fn takes_every_plain_event(
            t in 0..3usize,
            vin in "[0-9A-HJ-NPR-Z]{17}",
            region in "[A-Za-z -]{1,20}",
            ts in -999_999_999_999_999_999i64..=999_999_999_999_999_999,
            m in -100_000i64..100_000,
        ) {
            let event_type = [EventType::IcRpm, EventType::ElectricRpm, EventType::Warnings][t];
            let m = if event_type == EventType::Warnings { m.abs() } else { m };
            let e = RawEvent {
                event_type,
                vehicle_id: vin.as_str().into(),
                region: region.as_str().into(),
                timestamp: ts,
                measurement: m,
            };
            prop_assert_eq!(decode(e.to_json().as_bytes()), Some(e));
        }
    }
}
