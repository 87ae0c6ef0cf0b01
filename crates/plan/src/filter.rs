//! The `where` filter language: parsed and type-checked once at start,
//! evaluated per record without allocating.
//!
//! Logic is three-valued: a comparison with a signal the record does not
//! carry is unknown, and a record passes only a filter that is true
//! (docs/METRICS.md, "Filters").

use std::fmt;

use crate::config::SignalType;
use crate::{SignalId, Value};

/// The words the language reserves; no signal may be named like them.
pub const KEYWORDS: [&str; 6] = ["and", "or", "not", "in", "true", "false"];

/// A comparison operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmpOp {
    /// `=`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

impl CmpOp {
    fn as_str(self) -> &'static str {
        match self {
            CmpOp::Eq => "=",
            CmpOp::Ne => "!=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
        }
    }

    fn holds(self, ordering: std::cmp::Ordering) -> bool {
        use std::cmp::Ordering::*;
        match self {
            CmpOp::Eq => ordering == Equal,
            CmpOp::Ne => ordering != Equal,
            CmpOp::Lt => ordering == Less,
            CmpOp::Le => ordering != Greater,
            CmpOp::Gt => ordering == Greater,
            CmpOp::Ge => ordering != Less,
        }
    }
}

/// A three-valued truth.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Truth {
    /// False.
    False,
    /// Neither: a compared signal is absent.
    Unknown,
    /// True.
    True,
}

impl Truth {
    fn of(b: bool) -> Truth {
        if b {
            Truth::True
        } else {
            Truth::False
        }
    }

    fn not(self) -> Truth {
        match self {
            Truth::False => Truth::True,
            Truth::Unknown => Truth::Unknown,
            Truth::True => Truth::False,
        }
    }
}

/// A checked filter over a plan's signals.
#[derive(Clone, Debug, PartialEq)]
pub enum Filter {
    /// `signal op constant`; the constant has the signal's type, or is a
    /// float compared with an integer signal.
    Compare {
        /// The compared signal.
        signal: SignalId,
        /// The operator.
        op: CmpOp,
        /// The constant.
        constant: Value,
    },
    /// `signal in [constants]`.
    In {
        /// The tested signal.
        signal: SignalId,
        /// The constants, each of the signal's type.
        set: Vec<Value>,
    },
    /// `not f`.
    Not(Box<Filter>),
    /// `a and b`.
    And(Box<Filter>, Box<Filter>),
    /// `a or b`.
    Or(Box<Filter>, Box<Filter>),
}

impl Filter {
    /// The filter's truth for a record whose signals `value` gives.
    pub fn eval(&self, value: &impl Fn(SignalId) -> Option<Value>) -> Truth {
        match self {
            Filter::Compare {
                signal,
                op,
                constant,
            } => match value(*signal) {
                None => Truth::Unknown,
                Some(v) => Truth::of(compare(v, *constant).is_some_and(|o| op.holds(o))),
            },
            Filter::In { signal, set } => match value(*signal) {
                None => Truth::Unknown,
                Some(v) => Truth::of(
                    set.iter()
                        .any(|c| compare(v, *c) == Some(std::cmp::Ordering::Equal)),
                ),
            },
            Filter::Not(f) => f.eval(value).not(),
            Filter::And(a, b) => match a.eval(value) {
                Truth::False => Truth::False,
                left => match (left, b.eval(value)) {
                    (_, Truth::False) => Truth::False,
                    (Truth::True, Truth::True) => Truth::True,
                    _ => Truth::Unknown,
                },
            },
            Filter::Or(a, b) => match a.eval(value) {
                Truth::True => Truth::True,
                left => match (left, b.eval(value)) {
                    (_, Truth::True) => Truth::True,
                    (Truth::False, Truth::False) => Truth::False,
                    _ => Truth::Unknown,
                },
            },
        }
    }

    /// Whether a record passes: the filter is true for it.
    pub fn passes(&self, value: &impl Fn(SignalId) -> Option<Value>) -> bool {
        self.eval(value) == Truth::True
    }

    /// Whether the filter compares `signal`. A record that carries none of
    /// the signals a filter compares never passes it: every comparison is
    /// unknown, and so is any combination of unknowns.
    pub fn mentions(&self, signal: SignalId) -> bool {
        match self {
            Filter::Compare { signal: s, .. } | Filter::In { signal: s, .. } => *s == signal,
            Filter::Not(f) => f.mentions(signal),
            Filter::And(a, b) | Filter::Or(a, b) => a.mentions(signal) || b.mentions(signal),
        }
    }
}

/// How `v` orders against `c`; `None` across kinds that do not compare.
fn compare(v: Value, c: Value) -> Option<std::cmp::Ordering> {
    match (v, c) {
        (Value::Integer(a), Value::Integer(b)) => Some(a.cmp(&b)),
        (Value::Integer(a), Value::Float(b)) => (a as f64).partial_cmp(&b),
        (Value::Float(a), Value::Float(b)) => a.partial_cmp(&b),
        (Value::Float(a), Value::Integer(b)) => a.partial_cmp(&(b as f64)),
        (Value::Boolean(a), Value::Boolean(b)) => Some(a.cmp(&b)),
        (Value::State(a), Value::State(b)) => Some(a.cmp(&b)),
        _ => None,
    }
}

/// What a filter may refer to: the plan's signals by name.
pub trait SignalScope {
    /// The signal named `name`: its id, type and (for states) its states.
    fn signal(&self, name: &str) -> Option<(SignalId, SignalType, &[String])>;
}

/// Why a filter was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("at character {at}: {message}")]
pub struct FilterError {
    /// 1-based character position in the filter text.
    pub at: usize,
    /// What is wrong there.
    pub message: String,
}

/// Parses and type-checks `text` against `scope`.
pub fn parse(text: &str, scope: &dyn SignalScope) -> Result<Filter, FilterError> {
    let tokens = lex(text)?;
    let mut parser = Parser {
        tokens,
        next: 0,
        scope,
        end: text.chars().count() + 1,
    };
    let filter = parser.or()?;
    match parser.peek() {
        None => Ok(filter),
        Some(t) => Err(parser.error_at(t.at, format!("unexpected {}", t.kind))),
    }
}

#[derive(Clone, Debug, PartialEq)]
enum TokenKind {
    Ident(String),
    Number(String),
    Text(String),
    Op(CmpOp),
    Open,
    Close,
    OpenList,
    CloseList,
    Comma,
}

impl fmt::Display for TokenKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenKind::Ident(s) => write!(f, "{s:?}"),
            TokenKind::Number(s) => write!(f, "number {s}"),
            TokenKind::Text(s) => write!(f, "string {s:?}"),
            TokenKind::Op(op) => write!(f, "{:?}", op.as_str()),
            TokenKind::Open => f.write_str("\"(\""),
            TokenKind::Close => f.write_str("\")\""),
            TokenKind::OpenList => f.write_str("\"[\""),
            TokenKind::CloseList => f.write_str("\"]\""),
            TokenKind::Comma => f.write_str("\",\""),
        }
    }
}

#[derive(Clone, Debug)]
struct Token {
    kind: TokenKind,
    /// 1-based character position.
    at: usize,
}

fn lex(text: &str) -> Result<Vec<Token>, FilterError> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let at = i + 1;
        let single = |kind| Token { kind, at };
        match c {
            c if c.is_whitespace() => {
                i += 1;
                continue;
            }
            '(' => tokens.push(single(TokenKind::Open)),
            ')' => tokens.push(single(TokenKind::Close)),
            '[' => tokens.push(single(TokenKind::OpenList)),
            ']' => tokens.push(single(TokenKind::CloseList)),
            ',' => tokens.push(single(TokenKind::Comma)),
            '=' => tokens.push(single(TokenKind::Op(CmpOp::Eq))),
            '!' | '<' | '>' => {
                let followed_by_eq = chars.get(i + 1) == Some(&'=');
                let op = match (c, followed_by_eq) {
                    ('!', true) => CmpOp::Ne,
                    ('<', true) => CmpOp::Le,
                    ('<', false) => CmpOp::Lt,
                    ('>', true) => CmpOp::Ge,
                    ('>', false) => CmpOp::Gt,
                    _ => {
                        return Err(FilterError {
                            at,
                            message: "\"!\" must be followed by \"=\"; negate with \"not\"".into(),
                        })
                    }
                };
                tokens.push(single(TokenKind::Op(op)));
                if followed_by_eq {
                    i += 1;
                }
            }
            '"' => {
                let mut s = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => {
                            return Err(FilterError {
                                at,
                                message: "unterminated string".into(),
                            })
                        }
                        Some('"') => break,
                        Some('\\') if matches!(chars.get(i + 1), Some('"' | '\\')) => {
                            s.push(chars[i + 1]);
                            i += 2;
                        }
                        Some(&c) => {
                            s.push(c);
                            i += 1;
                        }
                    }
                }
                tokens.push(single(TokenKind::Text(s)));
            }
            c if c.is_ascii_digit() || c == '-' || c == '.' => {
                let start = i;
                i += 1;
                while chars.get(i).is_some_and(|&c| {
                    c.is_ascii_digit()
                        || c == '.'
                        || c == 'e'
                        || c == 'E'
                        || ((c == '-' || c == '+') && matches!(chars[i - 1], 'e' | 'E'))
                }) {
                    i += 1;
                }
                tokens.push(single(TokenKind::Number(chars[start..i].iter().collect())));
                continue;
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                let start = i;
                while chars
                    .get(i)
                    .is_some_and(|&c| c.is_ascii_alphanumeric() || c == '_')
                {
                    i += 1;
                }
                tokens.push(single(TokenKind::Ident(chars[start..i].iter().collect())));
                continue;
            }
            other => {
                return Err(FilterError {
                    at,
                    message: format!("unexpected character {other:?}"),
                })
            }
        }
        i += 1;
    }
    Ok(tokens)
}

struct Parser<'a> {
    tokens: Vec<Token>,
    next: usize,
    scope: &'a dyn SignalScope,
    /// The position just past the text, for "expected … at the end".
    end: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.next)
    }

    fn take(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.next).cloned();
        self.next += 1;
        t
    }

    fn error_at(&self, at: usize, message: impl Into<String>) -> FilterError {
        FilterError {
            at,
            message: message.into(),
        }
    }

    fn expected(&self, what: &str, found: Option<&Token>) -> FilterError {
        match found {
            Some(t) => self.error_at(t.at, format!("expected {what}, found {}", t.kind)),
            None => self.error_at(self.end, format!("expected {what} at the end")),
        }
    }

    fn keyword(&mut self, word: &str) -> bool {
        if matches!(self.peek(), Some(Token { kind: TokenKind::Ident(w), .. }) if w == word) {
            self.next += 1;
            true
        } else {
            false
        }
    }

    fn or(&mut self) -> Result<Filter, FilterError> {
        let mut left = self.and()?;
        while self.keyword("or") {
            left = Filter::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Filter, FilterError> {
        let mut left = self.not()?;
        while self.keyword("and") {
            left = Filter::And(Box::new(left), Box::new(self.not()?));
        }
        Ok(left)
    }

    fn not(&mut self) -> Result<Filter, FilterError> {
        if self.keyword("not") {
            return Ok(Filter::Not(Box::new(self.not()?)));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Filter, FilterError> {
        let token = self.take();
        match token {
            Some(Token {
                kind: TokenKind::Open,
                ..
            }) => {
                let inner = self.or()?;
                match self.take() {
                    Some(Token {
                        kind: TokenKind::Close,
                        ..
                    }) => Ok(inner),
                    other => Err(self.expected("\")\"", other.as_ref())),
                }
            }
            Some(Token {
                kind: TokenKind::Ident(name),
                at,
            }) if !KEYWORDS.contains(&name.as_str()) => self.comparison(&name, at),
            other => Err(self.expected("a signal name or \"(\"", other.as_ref())),
        }
    }

    fn comparison(&mut self, name: &str, at: usize) -> Result<Filter, FilterError> {
        let Some((signal, signal_type, states)) = self.scope.signal(name) else {
            return Err(self.error_at(at, format!("unknown signal {name:?}")));
        };
        if self.keyword("in") {
            if signal_type == SignalType::Boolean {
                return Err(self.error_at(
                    at,
                    format!("{name} is a boolean: compare it with = or != instead of in"),
                ));
            }
            match self.take() {
                Some(Token {
                    kind: TokenKind::OpenList,
                    ..
                }) => {}
                other => return Err(self.expected("\"[\"", other.as_ref())),
            }
            let mut set = Vec::new();
            loop {
                set.push(self.constant(name, signal_type, states)?);
                match self.take() {
                    Some(Token {
                        kind: TokenKind::Comma,
                        ..
                    }) => continue,
                    Some(Token {
                        kind: TokenKind::CloseList,
                        ..
                    }) => break,
                    other => return Err(self.expected("\",\" or \"]\"", other.as_ref())),
                }
            }
            return Ok(Filter::In { signal, set });
        }
        let op = match self.take() {
            Some(Token {
                kind: TokenKind::Op(op),
                ..
            }) => op,
            other => return Err(self.expected("a comparison operator or \"in\"", other.as_ref())),
        };
        let ordered = !matches!(op, CmpOp::Eq | CmpOp::Ne);
        if ordered && !signal_type.is_numeric() {
            return Err(self.error_at(
                at,
                format!(
                    "{name} is a {}: only = and != (or in) compare it",
                    signal_type.as_str()
                ),
            ));
        }
        let constant = self.constant(name, signal_type, states)?;
        Ok(Filter::Compare {
            signal,
            op,
            constant,
        })
    }

    /// A constant compared with signal `name` of `signal_type`.
    fn constant(
        &mut self,
        name: &str,
        signal_type: SignalType,
        states: &[String],
    ) -> Result<Value, FilterError> {
        let token = self.take();
        let Some(Token { kind, at }) = token else {
            return Err(self.expected("a constant", None));
        };
        let mismatch = |what: &str| FilterError {
            at,
            message: format!(
                "{name} is a {} signal and cannot be compared with {what}",
                signal_type.as_str()
            ),
        };
        match (kind, signal_type) {
            (TokenKind::Number(text), SignalType::Integer | SignalType::Float) => {
                number(&text, signal_type).ok_or_else(|| FilterError {
                    at,
                    message: format!("{text:?} is not a number"),
                })
            }
            (TokenKind::Number(_), _) => Err(mismatch("a number")),
            (TokenKind::Ident(word), SignalType::Boolean) if word == "true" || word == "false" => {
                Ok(Value::Boolean(word == "true"))
            }
            (TokenKind::Ident(word), _) if word == "true" || word == "false" => {
                Err(mismatch("a boolean"))
            }
            (TokenKind::Text(text), SignalType::State) => states
                .iter()
                .position(|s| *s == text)
                .map(|i| Value::State(i as u32))
                .ok_or_else(|| FilterError {
                    at,
                    message: format!("{text:?} is not one of {name}'s states {states:?}"),
                }),
            (TokenKind::Text(_), _) => Err(mismatch("a string")),
            (other, _) => Err(FilterError {
                at,
                message: format!("expected a constant, found {other}"),
            }),
        }
    }
}

/// `text` as a constant for a numeric signal: an integer for an integer
/// signal when it has no fraction or exponent, else a float.
fn number(text: &str, signal_type: SignalType) -> Option<Value> {
    let integral = !text.contains(['.', 'e', 'E']);
    if integral && signal_type == SignalType::Integer {
        if let Ok(i) = text.parse::<i64>() {
            return Some(Value::Integer(i));
        }
    }
    text.parse::<f64>()
        .ok()
        .filter(|f| f.is_finite())
        .map(Value::Float)
}

#[cfg(test)]
mod tests;
