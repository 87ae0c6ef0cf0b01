//! `where` filters: parsed by recursive descent over METRICS.md's grammar,
//! type-checked against the signals, evaluated in three-valued logic
//! (`None` = unknown).

use std::cmp::Ordering;

use super::config::{Signal, SignalKind};
use super::{Number, SignalValue};

#[derive(Clone, Debug, PartialEq)]
pub(super) enum Expr {
    Or(Box<Expr>, Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Compare {
        signal: usize,
        op: Op,
        constant: Constant,
    },
    In {
        signal: usize,
        constants: Vec<Constant>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Op {
    fn holds(self, ordering: Ordering) -> bool {
        match self {
            Op::Eq => ordering.is_eq(),
            Op::Ne => ordering.is_ne(),
            Op::Lt => ordering.is_lt(),
            Op::Le => ordering.is_le(),
            Op::Gt => ordering.is_gt(),
            Op::Ge => ordering.is_ge(),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub(super) enum Constant {
    Number(Number),
    Bool(bool),
    Str(String),
}

impl Expr {
    /// The filter's value for a record carrying `signals` (by signal index).
    pub(super) fn eval(&self, signals: &[Option<SignalValue>]) -> Option<bool> {
        match self {
            Expr::Or(a, b) => match (a.eval(signals), b.eval(signals)) {
                (Some(true), _) | (_, Some(true)) => Some(true),
                (Some(false), Some(false)) => Some(false),
                _ => None,
            },
            Expr::And(a, b) => match (a.eval(signals), b.eval(signals)) {
                (Some(false), _) | (_, Some(false)) => Some(false),
                (Some(true), Some(true)) => Some(true),
                _ => None,
            },
            Expr::Not(a) => a.eval(signals).map(|v| !v),
            Expr::Compare {
                signal,
                op,
                constant,
            } => {
                let value = signals.get(*signal)?.as_ref()?;
                compare(value, constant).map(|o| op.holds(o))
            }
            Expr::In { signal, constants } => {
                let value = signals.get(*signal)?.as_ref()?;
                Some(
                    constants
                        .iter()
                        .any(|c| compare(value, c).is_some_and(Ordering::is_eq)),
                )
            }
        }
    }
}

/// Numbers as in [`Number::compare`]; booleans and states by equality
/// (their order is never asked for: the type check allows `=`, `!=` only).
fn compare(value: &SignalValue, constant: &Constant) -> Option<Ordering> {
    match (value, constant) {
        (SignalValue::Number(a), Constant::Number(b)) => a.compare(*b),
        (SignalValue::Bool(a), Constant::Bool(b)) => Some(a.cmp(b)),
        (SignalValue::State(a), Constant::Str(b)) => Some(a.as_str().cmp(b.as_str())),
        _ => None,
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Token {
    Word(String),
    Number(Number),
    Str(String),
    Op(Op),
    Open,
    Close,
    OpenList,
    CloseList,
    Comma,
}

const KEYWORDS: [&str; 6] = ["and", "or", "not", "in", "true", "false"];

/// Parses and type-checks a filter over `signals`.
pub(super) fn parse(text: &str, signals: &[Signal]) -> Result<Expr, String> {
    let mut parser = Parser {
        tokens: tokenize(text)?,
        position: 0,
        signals,
    };
    let expr = parser.or()?;
    match parser.tokens.get(parser.position) {
        None => Ok(expr),
        Some(token) => Err(format!("unexpected {token:?}")),
    }
}

fn tokenize(text: &str) -> Result<Vec<Token>, String> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    let at = |i: usize| chars.get(i).copied();
    while let Some(c) = at(i) {
        let next = at(i + 1);
        let single = match c {
            '(' => Some(Token::Open),
            ')' => Some(Token::Close),
            '[' => Some(Token::OpenList),
            ']' => Some(Token::CloseList),
            ',' => Some(Token::Comma),
            '=' => Some(Token::Op(Op::Eq)),
            _ => None,
        };
        if c.is_whitespace() {
            i += 1;
        } else if let Some(token) = single {
            tokens.push(token);
            i += 1;
        } else if matches!(c, '!' | '<' | '>') {
            let op = match (c, next == Some('=')) {
                ('!', true) => Op::Ne,
                ('<', true) => Op::Le,
                ('>', true) => Op::Ge,
                ('<', false) => Op::Lt,
                ('>', false) => Op::Gt,
                _ => return Err("'!' must be followed by '='".into()),
            };
            tokens.push(Token::Op(op));
            i += if next == Some('=') { 2 } else { 1 };
        } else if c == '"' {
            // The grammar defines no escapes: a string ends at the next quote.
            let end = (i + 1..chars.len())
                .find(|&j| chars.get(j) == Some(&'"'))
                .ok_or("unterminated string")?;
            tokens.push(Token::Str(
                chars.get(i + 1..end).unwrap_or_default().iter().collect(),
            ));
            i = end + 1;
        } else if c.is_ascii_digit() || (c == '-' && next.is_some_and(|n| n.is_ascii_digit())) {
            let start = i;
            i += 1;
            while let Some(d) = at(i) {
                let exponent_sign = matches!(d, '+' | '-') && matches!(at(i - 1), Some('e' | 'E'));
                if d.is_ascii_digit() || matches!(d, '.' | 'e' | 'E') || exponent_sign {
                    i += 1;
                } else {
                    break;
                }
            }
            let literal: String = chars.get(start..i).unwrap_or_default().iter().collect();
            tokens.push(Token::Number(number(&literal)?));
        } else if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while at(i).is_some_and(|d| d.is_ascii_alphanumeric() || d == '_') {
                i += 1;
            }
            tokens.push(Token::Word(
                chars.get(start..i).unwrap_or_default().iter().collect(),
            ));
        } else {
            return Err(format!("unexpected character {c:?}"));
        }
    }
    Ok(tokens)
}

/// An integer literal is a 64-bit integer; one with a fraction or exponent
/// a 64-bit float.
fn number(literal: &str) -> Result<Number, String> {
    let bad = || format!("{literal:?} is not a number");
    if literal.contains(['.', 'e', 'E']) {
        // Rust's float syntax is looser ("1.", "1e5"); demand digits around the dot.
        let digits_around_dot = literal.split(['e', 'E']).next().is_some_and(|mantissa| {
            mantissa
                .split('.')
                .all(|part| !part.trim_start_matches('-').is_empty())
        });
        let value: f64 = literal.parse().map_err(|_| bad())?;
        if !digits_around_dot || !value.is_finite() {
            return Err(bad());
        }
        Ok(Number::Float(value))
    } else {
        literal.parse().map(Number::Int).map_err(|_| bad())
    }
}

struct Parser<'a> {
    tokens: Vec<Token>,
    position: usize,
    signals: &'a [Signal],
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.position)
    }

    fn next(&mut self) -> Result<Token, String> {
        let token = self.peek().cloned().ok_or("unexpected end")?;
        self.position += 1;
        Ok(token)
    }

    fn keyword(&mut self, word: &str) -> bool {
        let found = matches!(self.peek(), Some(Token::Word(w)) if w == word);
        if found {
            self.position += 1;
        }
        found
    }

    fn expect(&mut self, token: Token) -> Result<(), String> {
        match self.next()? {
            t if t == token => Ok(()),
            other => Err(format!("expected {token:?}, found {other:?}")),
        }
    }

    fn or(&mut self) -> Result<Expr, String> {
        let mut left = self.and()?;
        while self.keyword("or") {
            left = Expr::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, String> {
        let mut left = self.not()?;
        while self.keyword("and") {
            left = Expr::And(Box::new(left), Box::new(self.not()?));
        }
        Ok(left)
    }

    fn not(&mut self) -> Result<Expr, String> {
        if self.keyword("not") {
            Ok(Expr::Not(Box::new(self.not()?)))
        } else {
            self.primary()
        }
    }

    fn primary(&mut self) -> Result<Expr, String> {
        let name = match self.next()? {
            Token::Open => {
                let inner = self.or()?;
                self.expect(Token::Close)?;
                return Ok(inner);
            }
            Token::Word(w) if !KEYWORDS.contains(&w.as_str()) => w,
            other => return Err(format!("expected a signal, found {other:?}")),
        };
        let signal = self
            .signals
            .iter()
            .position(|s| s.name == name)
            .ok_or_else(|| format!("no signal {name:?}"))?;
        let kind = self.signals.get(signal).map(|s| &s.kind);
        if self.keyword("in") {
            self.expect(Token::OpenList)?;
            let mut constants = vec![self.constant()?];
            while self.peek() == Some(&Token::Comma) {
                self.position += 1;
                constants.push(self.constant()?);
            }
            self.expect(Token::CloseList)?;
            for constant in &constants {
                check(&name, kind, None, constant)?;
            }
            return Ok(Expr::In { signal, constants });
        }
        let op = match self.next()? {
            Token::Op(op) => op,
            other => {
                return Err(format!(
                    "expected an operator after {name}, found {other:?}"
                ))
            }
        };
        let constant = self.constant()?;
        check(&name, kind, Some(op), &constant)?;
        Ok(Expr::Compare {
            signal,
            op,
            constant,
        })
    }

    fn constant(&mut self) -> Result<Constant, String> {
        match self.next()? {
            Token::Number(n) => Ok(Constant::Number(n)),
            Token::Str(s) => Ok(Constant::Str(s)),
            Token::Word(w) if w == "true" => Ok(Constant::Bool(true)),
            Token::Word(w) if w == "false" => Ok(Constant::Bool(false)),
            other => Err(format!("expected a constant, found {other:?}")),
        }
    }
}

/// Refuses a comparison METRICS.md does not allow; `op` is `None` for `in`.
fn check(
    name: &str,
    kind: Option<&SignalKind>,
    op: Option<Op>,
    constant: &Constant,
) -> Result<(), String> {
    let equality = matches!(op, Some(Op::Eq | Op::Ne));
    let ok = match (kind, constant) {
        (Some(SignalKind::Integer | SignalKind::Float), Constant::Number(_)) => true,
        (Some(SignalKind::Boolean), Constant::Bool(_)) => equality,
        (Some(SignalKind::State(states)), Constant::Str(s)) => {
            (equality || op.is_none()) && states.contains(s)
        }
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        let op = op.map_or("in".to_string(), |op| format!("{op:?}"));
        Err(format!(
            "{name} cannot be compared ({op}) with {constant:?}"
        ))
    }
}
