//! The JSON reading under the decoder: a cursor over one message that scans
//! strings eight bytes at a time, reads a number's parts in one pass and
//! skips the values no path of the plan names.
//!
//! What counts as valid follows serde_json, which decoded the reference
//! demo's events before, so that both classify a message alike: a string the
//! plan reads is checked fully (UTF-8, escapes, paired surrogates), one it
//! skips only for its syntax, as serde_json skips unknown fields; a number
//! beyond the range of `f64` is not JSON when read (serde_json: "number out
//! of range") and is when skipped.

/// The message is not JSON (or not JSON the decoder can read).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Invalid;

pub(super) type Parsed<T> = Result<T, Invalid>;

/// Where a string's raw bytes are, between its quotes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Str {
    pub(super) start: usize,
    pub(super) len: usize,
    /// No byte above 0x7f.
    pub(super) ascii: bool,
    /// It holds a backslash escape.
    pub(super) escaped: bool,
}

/// A value that is neither an object nor an array. Strings are checked.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Scalar {
    Null,
    Bool(bool),
    /// An integer without fraction or exponent, in the `i64` range, not `-0`.
    Int(i64),
    /// Any other number.
    Float(f64),
    Str(Str),
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// High bit set in each byte of `w` that ends or interrupts a plain string —
/// `"`, a backslash or a control character — exact for the lowest such
/// byte, which is the one used.
#[inline]
fn specials(w: u64) -> u64 {
    let eq = |b: u8| {
        let x = w ^ (ONES * u64::from(b));
        x.wrapping_sub(ONES) & !x
    };
    (eq(b'"') | eq(b'\\') | (w.wrapping_sub(ONES * 0x20) & !w)) & HIGHS
}

/// The low `n` bytes of a word (`n` ≤ 8).
#[inline]
pub(super) fn low_bytes(n: usize) -> u64 {
    if n >= 8 {
        u64::MAX
    } else {
        (1u64 << (8 * n)) - 1
    }
}

#[inline]
pub(super) fn word(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(*bytes.get(at..)?.first_chunk()?))
}

/// The 16 bytes at `at` as two little-endian words.
#[inline]
pub(super) fn words16(bytes: &[u8], at: usize) -> Option<[u64; 2]> {
    let chunk: &[u8; 16] = bytes.get(at..)?.first_chunk()?;
    let (w0, w1) = chunk.split_at(8);
    Some([
        u64::from_le_bytes(w0.try_into().ok()?),
        u64::from_le_bytes(w1.try_into().ok()?),
    ])
}

/// The four hex digits at `at`.
fn hex4(bytes: &[u8], at: usize) -> Parsed<u32> {
    bytes
        .get(at..at + 4)
        .ok_or(Invalid)?
        .iter()
        .try_fold(0u32, |n, &b| {
            let d = (b as char).to_digit(16).ok_or(Invalid)?;
            Ok(n << 4 | d)
        })
}

/// After a backslash at `at - 1`: how many bytes the escape takes.
fn escape_len(bytes: &[u8], at: usize) -> Parsed<usize> {
    match bytes.get(at) {
        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => Ok(1),
        Some(b'u') => hex4(bytes, at + 1).map(|_| 5),
        _ => Err(Invalid),
    }
}

/// Unescaped text: on the stack while short, on the heap beyond.
#[derive(Debug)]
pub(super) struct Buf {
    inline: [u8; 64],
    len: usize,
    heap: Vec<u8>,
}

impl Buf {
    pub(super) fn new() -> Buf {
        Buf {
            inline: [0; 64],
            len: 0,
            heap: Vec::new(),
        }
    }

    fn extend(&mut self, bytes: &[u8]) {
        if self.heap.is_empty() && self.len + bytes.len() <= self.inline.len() {
            self.inline[self.len..self.len + bytes.len()].copy_from_slice(bytes);
            self.len += bytes.len();
        } else {
            if self.heap.is_empty() {
                self.heap.extend_from_slice(&self.inline[..self.len]);
            }
            self.heap.extend_from_slice(bytes);
        }
    }

    pub(super) fn as_bytes(&self) -> &[u8] {
        if self.heap.is_empty() {
            &self.inline[..self.len]
        } else {
            &self.heap
        }
    }
}

/// The text of a string's raw bytes `raw` (between the quotes), appended to
/// `out`: valid UTF-8, or `Invalid`.
pub(super) fn unescape(raw: &[u8], out: &mut Buf) -> Parsed<()> {
    // Escapes are ASCII, so the text is UTF-8 exactly when the raw bytes are.
    std::str::from_utf8(raw).map_err(|_| Invalid)?;
    let mut i = 0;
    while let Some(k) = raw[i..].iter().position(|&b| b == b'\\') {
        out.extend(&raw[i..i + k]);
        i += k + 1;
        let c = match raw.get(i) {
            Some(b'"') => '"',
            Some(b'\\') => '\\',
            Some(b'/') => '/',
            Some(b'b') => '\u{8}',
            Some(b'f') => '\u{c}',
            Some(b'n') => '\n',
            Some(b'r') => '\r',
            Some(b't') => '\t',
            Some(b'u') => {
                let unit = hex4(raw, i + 1)?;
                i += 4;
                let code = match unit {
                    0xD800..=0xDBFF => {
                        if raw.get(i + 1..i + 3) != Some(b"\\u") {
                            return Err(Invalid);
                        }
                        let low = hex4(raw, i + 3)?;
                        if !(0xDC00..=0xDFFF).contains(&low) {
                            return Err(Invalid);
                        }
                        i += 6;
                        0x1_0000 + ((unit - 0xD800) << 10) + (low - 0xDC00)
                    }
                    _ => unit,
                };
                // A lone low surrogate is no char.
                char::from_u32(code).ok_or(Invalid)?
            }
            _ => return Err(Invalid),
        };
        i += 1;
        out.extend(c.encode_utf8(&mut [0; 4]).as_bytes());
    }
    out.extend(&raw[i..]);
    Ok(())
}

/// `f` of the text of the raw string `raw`, which holds an escape.
#[cold]
fn unescaped<R>(raw: &[u8], f: impl FnOnce(&[u8]) -> R) -> Parsed<R> {
    let mut buf = Buf::new();
    unescape(raw, &mut buf)?;
    Ok(f(buf.as_bytes()))
}

/// Powers of ten up to 10^8.
static POW10_U64: [u64; 9] = [
    1,
    10,
    100,
    1_000,
    10_000,
    100_000,
    1_000_000,
    10_000_000,
    100_000_000,
];

/// The value of the eight ASCII digits of `w`, the first in its low byte;
/// zero bytes count as leading zeros (D. Lemire, "Faster parsing of
/// floating-point numbers", simdjson's parse_eight_digits_unrolled).
#[inline(always)]
fn eight_digits(w: u64) -> u64 {
    let v = (w & 0x0F0F_0F0F_0F0F_0F0F).wrapping_mul(2561) >> 8;
    let v = (v & 0x00FF_00FF_00FF_00FF).wrapping_mul(6_553_601) >> 16;
    (v & 0x0000_FFFF_0000_FFFF).wrapping_mul(42_949_672_960_001) >> 32
}

/// The digits, dot and exponent of a number, before its value is needed.
#[derive(Clone, Copy, Debug)]
pub(super) struct Number {
    start: usize,
    end: usize,
    negative: bool,
    /// The decimal digits, fraction included, as an integer (exact with at
    /// most 19 `digits`).
    mantissa: u64,
    digits: u32,
    /// The value is `mantissa × 10^exp10`.
    exp10: i32,
    /// Written without fraction or exponent.
    integer: bool,
}

static POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

impl Number {
    /// Its value when exact from its parts alone: an integer in the `i64`
    /// range, or a float of at most 19 digits and a small exponent.
    #[inline(always)]
    fn exact(&self) -> Option<Scalar> {
        let m = self.mantissa;
        if self.integer && self.digits <= 19 {
            if !self.negative && m <= i64::MAX as u64 {
                return Some(Scalar::Int(m as i64));
            }
            // `-0` is a float, as for serde_json.
            if self.negative && m != 0 && m <= 1 << 63 {
                return Some(Scalar::Int((m as i64).wrapping_neg()));
            }
        }
        if self.digits > 19 || m > 1 << 53 || self.exp10.unsigned_abs() > 22 {
            return None;
        }
        // Both exact, so one rounding: the correctly rounded value.
        let p = POW10[self.exp10.unsigned_abs() as usize];
        let f = if self.exp10 < 0 {
            m as f64 / p
        } else {
            m as f64 * p
        };
        Some(Scalar::Float(if self.negative { -f } else { f }))
    }

    /// Its value; `Invalid` beyond the range of `f64`.
    #[inline(always)]
    pub(super) fn value(&self, bytes: &[u8]) -> Parsed<Scalar> {
        if let Some(value) = self.exact() {
            return Ok(value);
        }
        let f = std::str::from_utf8(&bytes[self.start..self.end])
            .ok()
            .and_then(|text| text.parse::<f64>().ok())
            .ok_or(Invalid)?;
        if f.is_finite() {
            Ok(Scalar::Float(f))
        } else {
            Err(Invalid)
        }
    }
}

/// A stack of open brackets, `{` or `[`, for skipping nested values.
#[derive(Default)]
struct Brackets {
    depth: usize,
    /// Bit `d` of the stack: whether level `d` is an object.
    low: u64,
    high: Vec<u64>,
}

impl Brackets {
    fn bit(&mut self, depth: usize) -> (&mut u64, u64) {
        let mask = 1 << (depth % 64);
        match depth / 64 {
            0 => (&mut self.low, mask),
            w => {
                if self.high.len() < w {
                    self.high.resize(w, 0);
                }
                (&mut self.high[w - 1], mask)
            }
        }
    }

    fn push(&mut self, object: bool) {
        self.depth += 1;
        let (word, mask) = self.bit(self.depth);
        if object {
            *word |= mask;
        } else {
            *word &= !mask;
        }
    }

    fn pop(&mut self) {
        self.depth -= 1;
    }

    /// Whether the innermost open value is an object; `None` when none is open.
    fn top(&mut self) -> Option<bool> {
        if self.depth == 0 {
            return None;
        }
        let (word, mask) = self.bit(self.depth);
        Some(*word & mask != 0)
    }
}

/// A position in one message.
#[derive(Debug)]
pub(super) struct Cursor<'a> {
    pub(super) bytes: &'a [u8],
    pub(super) pos: usize,
}

impl<'a> Cursor<'a> {
    pub(super) fn new(bytes: &'a [u8]) -> Self {
        Cursor { bytes, pos: 0 }
    }

    #[inline]
    pub(super) fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    #[inline]
    pub(super) fn next(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.pos += 1;
        Some(b)
    }

    #[inline]
    pub(super) fn eat(&mut self, b: u8) -> Parsed<()> {
        if self.peek() == Some(b) {
            self.pos += 1;
            Ok(())
        } else {
            Err(Invalid)
        }
    }

    /// The next byte after any whitespace, consumed.
    #[inline(always)]
    pub(super) fn next_after_ws(&mut self) -> Option<u8> {
        let b = self.next()?;
        if b > b' ' {
            return Some(b);
        }
        self.pos -= 1;
        self.ws();
        self.next()
    }

    /// [`Self::eat`] after any whitespace.
    #[inline(always)]
    pub(super) fn eat_after_ws(&mut self, b: u8) -> Parsed<()> {
        (self.next_after_ws() == Some(b))
            .then_some(())
            .ok_or(Invalid)
    }

    #[inline]
    pub(super) fn ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.peek() {
            self.pos += 1;
        }
    }

    pub(super) fn at_end(&self) -> bool {
        self.pos == self.bytes.len()
    }

    /// From `i` in a string: where the first quote, backslash or control
    /// byte is, and the bytes before it OR-ed (for their high bits).
    #[inline(always)]
    fn scan(&self, mut i: usize) -> Parsed<(usize, u64)> {
        let mut high = 0u64;
        loop {
            match word(self.bytes, i) {
                Some(w) => {
                    let m = specials(w);
                    if m != 0 {
                        let k = (m.trailing_zeros() / 8) as usize;
                        return Ok((i + k, high | (w & low_bytes(k))));
                    }
                    high |= w;
                    i += 8;
                }
                None => {
                    let rest = self.bytes.get(i..).ok_or(Invalid)?;
                    let k = rest
                        .iter()
                        .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
                        .ok_or(Invalid)?;
                    let tail = rest[..k].iter().fold(0, |h, &b| h | u64::from(b));
                    return Ok((i + k, high | tail));
                }
            }
        }
    }

    /// After an opening quote: the string, its closing quote consumed. Its
    /// syntax only is checked; [`Self::text`] checks the rest.
    #[inline(always)]
    pub(super) fn string(&mut self) -> Parsed<Str> {
        let start = self.pos;
        let mut i = start;
        let mut high = 0u64;
        let mut escaped = false;
        loop {
            let (end, bytes) = self.scan(i)?;
            high |= bytes;
            match self.bytes.get(end) {
                Some(b'"') => {
                    self.pos = end + 1;
                    return Ok(Str {
                        start,
                        len: end - start,
                        ascii: high & HIGHS == 0,
                        escaped,
                    });
                }
                Some(b'\\') => {
                    escaped = true;
                    i = end + 1 + escape_len(self.bytes, end + 1)?;
                }
                _ => return Err(Invalid),
            }
        }
    }

    /// A string of ASCII bytes without escapes, its quotes consumed; `None`
    /// for any other value (the cursor then somewhere in it).
    #[inline(always)]
    pub(super) fn plain_str(&mut self) -> Option<Str> {
        if self.peek()? != b'"' {
            return None;
        }
        let start = self.pos + 1;
        let (end, high) = self.scan(start).ok()?;
        if self.bytes.get(end) != Some(&b'"') || high & HIGHS != 0 {
            return None;
        }
        self.pos = end + 1;
        Some(Str {
            start,
            len: end - start,
            ascii: true,
            escaped: false,
        })
    }

    /// A number whose value is exact from its digits ([`Number::exact`]);
    /// `None` for any other value (the cursor then somewhere in it).
    #[inline(always)]
    pub(super) fn plain_number(&mut self) -> Option<Scalar> {
        self.number().ok()?.exact()
    }

    /// `true` or `false`; `None` for any other value.
    #[inline(always)]
    pub(super) fn plain_bool(&mut self) -> Option<bool> {
        match self.peek()? {
            b't' => self.literal(b"true").ok().map(|()| true),
            b'f' => self.literal(b"false").ok().map(|()| false),
            _ => None,
        }
    }

    /// After an opening quote: a name of at most 16 plain ASCII bytes, its
    /// closing quote consumed, and its [`super::table::head`]; `None`
    /// (nothing consumed) for any other, which [`Self::string`] reads.
    #[inline(always)]
    pub(super) fn short_name(&mut self) -> Option<(Str, [u64; 2])> {
        let start = self.pos;
        let [w0, w1] = words16(self.bytes, start)?;
        let m0 = specials(w0);
        let (len, head) = if m0 != 0 {
            let k = (m0.trailing_zeros() / 8) as usize;
            (k, [w0 & low_bytes(k), 0])
        } else {
            let m1 = specials(w1);
            if m1 == 0 {
                return None;
            }
            let k = (m1.trailing_zeros() / 8) as usize;
            (8 + k, [w0, w1 & low_bytes(k)])
        };
        if self.bytes.get(start + len) != Some(&b'"') || (head[0] | head[1]) & HIGHS != 0 {
            return None;
        }
        self.pos = start + len + 1;
        let name = Str {
            start,
            len,
            ascii: true,
            escaped: false,
        };
        Some((name, head))
    }

    /// The raw bytes of `s`.
    #[inline]
    pub(super) fn raw(&self, s: Str) -> &'a [u8] {
        &self.bytes[s.start..s.start + s.len]
    }

    /// `f` of the text of `s`, checked: valid UTF-8, escapes resolved.
    #[inline]
    pub(super) fn text<R>(&self, s: Str, f: impl FnOnce(&[u8]) -> R) -> Parsed<R> {
        let raw = self.raw(s);
        if s.escaped {
            return unescaped(raw, f);
        }
        if !s.ascii {
            std::str::from_utf8(raw).map_err(|_| Invalid)?;
        }
        Ok(f(raw))
    }

    /// A number (the cursor at its first byte).
    #[inline(always)]
    pub(super) fn number(&mut self) -> Parsed<Number> {
        let start = self.pos;
        let negative = self.peek() == Some(b'-');
        self.pos += usize::from(negative);
        let mut mantissa = 0u64;
        let digits = match self.peek() {
            Some(b'0') => {
                self.pos += 1;
                0
            }
            Some(b'1'..=b'9') => self.digits(&mut mantissa),
            _ => return Err(Invalid),
        };
        let number = Number {
            start,
            end: self.pos,
            negative,
            mantissa,
            digits,
            exp10: 0,
            integer: true,
        };
        match self.peek() {
            // Only after a leading zero: `01`.
            Some(b'0'..=b'9') => Err(Invalid),
            Some(b'.' | b'e' | b'E') => self.fraction(number),
            _ => Ok(number),
        }
    }

    /// The fraction and exponent of `number`, read up to its integer part.
    #[inline(always)]
    fn fraction(&mut self, mut number: Number) -> Parsed<Number> {
        number.integer = false;
        if self.peek() == Some(b'.') {
            self.pos += 1;
            let fraction = self.digits(&mut number.mantissa);
            if fraction == 0 {
                return Err(Invalid);
            }
            number.digits = number.digits.saturating_add(fraction);
            number.exp10 = i32::try_from(fraction).map_or(i32::MIN, |n| -n);
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            let negative = self.peek() == Some(b'-');
            if let Some(b'-' | b'+') = self.peek() {
                self.pos += 1;
            }
            let at = self.pos;
            let mut exp = 0i32;
            while let Some(d @ b'0'..=b'9') = self.peek() {
                // Saturated: the number is then 0 or beyond f64 anyway.
                exp = exp.saturating_mul(10).saturating_add(i32::from(d - b'0'));
                self.pos += 1;
            }
            if self.pos == at {
                return Err(Invalid);
            }
            number.exp10 = if negative {
                number.exp10.saturating_sub(exp)
            } else {
                number.exp10.saturating_add(exp)
            };
        }
        number.end = self.pos;
        Ok(number)
    }

    /// Decimal digits, appended to `mantissa`; how many.
    #[inline(always)]
    fn digits(&mut self, mantissa: &mut u64) -> u32 {
        let rest = self.bytes.get(self.pos..).unwrap_or_default();
        let mut m = *mantissa;
        let mut n = 0;
        // Up to eight at a time: the digits leading a word (wrapping past 19
        // digits, when the mantissa is no longer used).
        while let Some(w) = word(rest, n) {
            let x = w ^ (ONES * u64::from(b'0'));
            let others = (x.wrapping_add(ONES * 0x76) | x) & HIGHS;
            let k = (others.trailing_zeros() / 8) as usize;
            if k > 0 {
                m = m
                    .wrapping_mul(POW10_U64[k])
                    .wrapping_add(eight_digits(w << (64 - 8 * k)));
                n += k;
            }
            if k < 8 {
                self.pos += n;
                *mantissa = m;
                return u32::try_from(n).unwrap_or(u32::MAX);
            }
        }
        for &b in &rest[n..] {
            let d = b.wrapping_sub(b'0');
            if d > 9 {
                break;
            }
            m = m.wrapping_mul(10).wrapping_add(u64::from(d));
            n += 1;
        }
        self.pos += n;
        *mantissa = m;
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    pub(super) fn literal(&mut self, word: &[u8]) -> Parsed<()> {
        let end = self.pos + word.len();
        if self.bytes.get(self.pos..end) == Some(word) {
            self.pos = end;
            Ok(())
        } else {
            Err(Invalid)
        }
    }

    /// A value the plan reads that is not an object or an array (the cursor
    /// at its first byte).
    #[inline(always)]
    pub(super) fn scalar(&mut self) -> Parsed<Scalar> {
        match self.peek() {
            Some(b'"') => {
                self.pos += 1;
                let s = self.string()?;
                if s.escaped || !s.ascii {
                    self.text(s, |_| ())?;
                }
                Ok(Scalar::Str(s))
            }
            Some(b'-' | b'0'..=b'9') => self.number()?.value(self.bytes),
            Some(b't') => self.literal(b"true").map(|()| Scalar::Bool(true)),
            Some(b'f') => self.literal(b"false").map(|()| Scalar::Bool(false)),
            Some(b'n') => self.literal(b"null").map(|()| Scalar::Null),
            _ => Err(Invalid),
        }
    }

    /// Skips a value the plan does not read, nested ones included (the
    /// cursor at its first byte).
    pub(super) fn skip_value(&mut self) -> Parsed<()> {
        let mut open = Brackets::default();
        loop {
            match self.peek() {
                Some(b'"') => {
                    self.pos += 1;
                    self.string()?;
                }
                Some(b'-' | b'0'..=b'9') => {
                    self.number()?;
                }
                Some(b't') => self.literal(b"true")?,
                Some(b'f') => self.literal(b"false")?,
                Some(b'n') => self.literal(b"null")?,
                Some(b'{') => {
                    self.pos += 1;
                    self.ws();
                    if self.peek() != Some(b'}') {
                        open.push(true);
                        self.member_key()?;
                        continue;
                    }
                    self.pos += 1;
                }
                Some(b'[') => {
                    self.pos += 1;
                    self.ws();
                    if self.peek() != Some(b']') {
                        open.push(false);
                        continue;
                    }
                    self.pos += 1;
                }
                _ => return Err(Invalid),
            }
            // After a value: close what ends here, up to the next value.
            loop {
                let Some(object) = open.top() else {
                    return Ok(());
                };
                self.ws();
                match (self.next(), object) {
                    (Some(b','), true) => {
                        self.ws();
                        self.member_key()?;
                        break;
                    }
                    (Some(b','), false) => {
                        self.ws();
                        break;
                    }
                    (Some(b'}'), true) | (Some(b']'), false) => open.pop(),
                    _ => return Err(Invalid),
                }
            }
        }
    }

    /// A skipped object's key and colon, up to its value.
    fn member_key(&mut self) -> Parsed<()> {
        self.eat(b'"')?;
        self.string()?;
        self.ws();
        self.eat(b':')?;
        self.ws();
        Ok(())
    }
}
