//! One record's bytes → its vehicle, event time (epoch ms), labels and
//! signals, or the reason it is refused; over `serde_json::Value`.

use serde_json::{Map, Value};

use super::config::{Input, Shape, Signal, SignalKind, TimeFormat};
use super::{Number, SignalValue};

/// Why a record is refused. METRICS.md does not say which reason a record
/// with several problems counts under; the oracle takes the first in this
/// order, today's fixed decoder's: a wrong type anywhere, then a missing
/// field, then an unknown event type, then an invalid value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Reason {
    InvalidJson,
    WrongType,
    MissingField,
    UnknownEventType,
    InvalidValue,
}

impl Reason {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Reason::InvalidJson => "invalid_json",
            Reason::WrongType => "wrong_type",
            Reason::MissingField => "missing_field",
            Reason::UnknownEventType => "unknown_event_type",
            Reason::InvalidValue => "invalid_value",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub(super) struct Record {
    pub(super) vehicle: String,
    pub(super) time_ms: i64,
    /// The event labels' values, in declared order.
    pub(super) labels: Vec<String>,
    /// By signal index; narrow records carry exactly one.
    pub(super) signals: Vec<Option<SignalValue>>,
}

/// The first reason (in [`Reason`]'s order) among all of a record's problems.
#[derive(Default)]
struct Problems(Option<Reason>);

impl Problems {
    fn note(&mut self, reason: Reason) {
        self.0 = Some(self.0.map_or(reason, |r| r.min(reason)));
    }

    fn take<T>(&mut self, result: Result<T, Reason>) -> Option<T> {
        result.map_err(|r| self.note(r)).ok()
    }
}

pub(super) fn decode(input: &Input, bytes: &[u8]) -> Result<Record, Reason> {
    let value: Value = serde_json::from_slice(bytes).map_err(|_| Reason::InvalidJson)?;
    let Value::Object(object) = &value else {
        return Err(Reason::WrongType);
    };
    let mut problems = Problems::default();
    let vehicle = problems.take(required_string(object, &input.vehicle_id));
    let time_ms = problems.take(time(object, &input.time, input.time_format));
    let labels: Vec<Option<String>> = input
        .labels
        .iter()
        .map(|path| problems.take(required_string(object, path)))
        .collect();
    let mut signals: Vec<Option<SignalValue>> = vec![None; input.signals.len()];
    match input.shape {
        Shape::Narrow => {
            let signal = match lookup(object, &input.type_field) {
                // An empty name is just no signal's key, as today.
                Ok(Some(Value::String(key))) => {
                    let found = input.signals.iter().position(|s| s.key == *key);
                    if found.is_none() {
                        problems.note(Reason::UnknownEventType);
                    }
                    found
                }
                Ok(Some(_)) => {
                    problems.note(Reason::WrongType);
                    None
                }
                Ok(None) => {
                    problems.note(Reason::MissingField);
                    None
                }
                Err(reason) => {
                    problems.note(reason);
                    None
                }
            };
            let value = lookup(object, &input.value_field);
            match (value, signal.and_then(|i| Some((i, input.signals.get(i)?)))) {
                (Err(reason), _) => problems.note(reason),
                (Ok(None), _) => problems.note(Reason::MissingField),
                (Ok(Some(value)), Some((i, signal))) => {
                    if let Some(slot) = signals.get_mut(i) {
                        *slot = problems.take(typed(signal, value));
                    }
                }
                // Without its signal, the value is only checked to have a
                // type some signal takes: the default config then refuses
                // `"measurement": 1.5` as `wrong_type` whatever the event
                // type, as today's decoder does.
                (Ok(Some(value)), None) => {
                    if input
                        .signals
                        .iter()
                        .all(|s| typed(s, value) == Err(Reason::WrongType))
                    {
                        problems.note(Reason::WrongType);
                    }
                }
            }
        }
        Shape::Wide => {
            for (slot, signal) in signals.iter_mut().zip(&input.signals) {
                match lookup(object, &signal.path) {
                    Ok(Some(value)) => *slot = problems.take(typed(signal, value)),
                    Ok(None) => {}
                    Err(reason) => problems.note(reason),
                }
            }
        }
    }
    if let Some(reason) = problems.0 {
        return Err(reason);
    }
    // Every `None` above noted a problem, so these are all present.
    match (
        vehicle,
        time_ms,
        labels.into_iter().collect::<Option<Vec<_>>>(),
    ) {
        (Some(vehicle), Some(time_ms), Some(labels)) => Ok(Record {
            vehicle,
            time_ms,
            labels,
            signals,
        }),
        _ => Err(Reason::MissingField),
    }
}

/// The value at `path`: `None` when it or an enclosing object is absent or
/// `null`. An enclosing field that is neither an object nor `null` is a
/// wrong type (METRICS.md does not say; absent would hide a broken record).
fn lookup<'a>(
    object: &'a Map<String, Value>,
    path: &[String],
) -> Result<Option<&'a Value>, Reason> {
    let Some((last, parents)) = path.split_last() else {
        return Ok(None);
    };
    let mut current = object;
    for name in parents {
        match current.get(name) {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::Object(inner)) => current = inner,
            Some(_) => return Err(Reason::WrongType),
        }
    }
    Ok(current.get(last).filter(|v| !v.is_null()))
}

fn required_string(object: &Map<String, Value>, path: &[String]) -> Result<String, Reason> {
    match lookup(object, path)? {
        None => Err(Reason::MissingField),
        Some(Value::String(s)) if s.is_empty() => Err(Reason::InvalidValue),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(Reason::WrongType),
    }
}

fn time(object: &Map<String, Value>, path: &[String], format: TimeFormat) -> Result<i64, Reason> {
    let value = lookup(object, path)?.ok_or(Reason::MissingField)?;
    let ms = if format == TimeFormat::Rfc3339 {
        let text = value.as_str().ok_or(Reason::WrongType)?;
        rfc3339_ms(text).ok_or(Reason::InvalidValue)?
    } else {
        // `as_i64` is `None` for fractions, exponents and integers beyond i64.
        let n = value.as_i64().ok_or(Reason::WrongType)?;
        match format {
            // Seconds beyond what milliseconds can hold are not a time.
            TimeFormat::EpochS => n.checked_mul(1000).ok_or(Reason::InvalidValue)?,
            TimeFormat::EpochUs => n.div_euclid(1000),
            TimeFormat::EpochNs => n.div_euclid(1_000_000),
            TimeFormat::EpochMs | TimeFormat::Rfc3339 => n,
        }
    };
    // docs/METRICS.md: only times from 1970 to the end of 9999.
    const LAST_MS: i64 = 253_402_300_799_999;
    if (0..=LAST_MS).contains(&ms) {
        Ok(ms)
    } else {
        Err(Reason::InvalidValue)
    }
}

fn typed(signal: &Signal, value: &Value) -> Result<SignalValue, Reason> {
    let number = match &signal.kind {
        SignalKind::Integer => Number::Int(value.as_i64().ok_or(Reason::WrongType)?),
        SignalKind::Float => match value {
            Value::Number(n) => Number::Float(n.as_f64().ok_or(Reason::WrongType)?),
            _ => return Err(Reason::WrongType),
        },
        SignalKind::Boolean => {
            return value
                .as_bool()
                .map(SignalValue::Bool)
                .ok_or(Reason::WrongType);
        }
        SignalKind::State(states) => {
            let state = value.as_str().ok_or(Reason::WrongType)?;
            return if states.iter().any(|s| s == state) {
                Ok(SignalValue::State(state.to_string()))
            } else {
                Err(Reason::InvalidValue)
            };
        }
    };
    let below = signal
        .min
        .is_some_and(|min| number.compare(min).is_some_and(|o| o.is_lt()));
    let above = signal
        .max
        .is_some_and(|max| number.compare(max).is_some_and(|o| o.is_gt()));
    if below || above {
        return Err(Reason::InvalidValue);
    }
    Ok(SignalValue::Number(number))
}

/// `YYYY-MM-DDThh:mm:ss[.fraction](Z|±hh:mm)` → epoch ms, the fraction
/// truncated (toward the past, as the fraction only adds). `T` and `Z` may be
/// lower case (RFC 3339, 5.6); a space for `T` is not accepted. A leap
/// second `:60` counts as the next minute's `:00`, as epoch time has no
/// leap seconds.
pub(super) fn rfc3339_ms(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    let digits = |from: usize, len: usize| -> Option<i64> {
        bytes
            .get(from..from + len)?
            .iter()
            .try_fold(0i64, |acc, &c| {
                c.is_ascii_digit().then(|| acc * 10 + i64::from(c - b'0'))
            })
    };
    let is = |at: usize, allowed: &[u8]| bytes.get(at).is_some_and(|c| allowed.contains(c));
    let separators = is(4, b"-") && is(7, b"-") && is(10, b"Tt") && is(13, b":") && is(16, b":");
    if !separators {
        return None;
    }
    let (year, month, day) = (digits(0, 4)?, digits(5, 2)?, digits(8, 2)?);
    let (hour, minute, second) = (digits(11, 2)?, digits(14, 2)?, digits(17, 2)?);
    let mut at = 19;
    let mut millis = 0;
    if is(at, b".") {
        let start = at + 1;
        at = start;
        while is(at, b"0123456789") {
            at += 1;
        }
        if at == start {
            return None;
        }
        // The first three digits, padded: ".12" is 120 ms.
        for i in start..start + 3 {
            millis = millis * 10 + if i < at { digits(i, 1)? } else { 0 };
        }
    }
    let offset_minutes = if is(at, b"Zz") {
        at += 1;
        0
    } else if is(at, b"+-") && is(at + 3, b":") {
        let (hours, minutes) = (digits(at + 1, 2)?, digits(at + 4, 2)?);
        if hours > 23 || minutes > 59 {
            return None;
        }
        let sign = if is(at, b"-") { -1 } else { 1 };
        at += 6;
        sign * (hours * 60 + minutes)
    } else {
        return None;
    };
    let valid = at == bytes.len()
        && (1..=12).contains(&month)
        && (1..=days_in_month(year, month)).contains(&day)
        && hour <= 23
        && minute <= 59
        && second <= 60;
    if !valid {
        return None;
    }
    let seconds = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second
        - offset_minutes * 60;
    Some(seconds * 1000 + millis)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}
