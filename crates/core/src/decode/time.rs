//! Event times to epoch milliseconds, rounding toward the past
//! (docs/METRICS.md, `time_format`).
//!
//! RFC 3339 is read by hand, in its strict form only
//! (`YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`, upper-case `T` and `Z`): the
//! one format a record's time is declared in, read once per record, needs
//! no date library. A leap second (`:60`) counts as the next second's
//! start, as Unix time has none.

use fleet_plan::TimeFormat;

/// An integer time in `format` (an epoch unit) in milliseconds; `None` when
/// it does not fit an `i64` or `format` is not an epoch unit.
pub(super) fn epoch_ms(value: i64, format: TimeFormat) -> Option<i64> {
    match format {
        TimeFormat::EpochS => value.checked_mul(1000),
        TimeFormat::EpochMs => Some(value),
        TimeFormat::EpochUs => Some(value.div_euclid(1000)),
        TimeFormat::EpochNs => Some(value.div_euclid(1_000_000)),
        TimeFormat::Rfc3339 => None,
    }
}

/// Days from 1970-01-01 to the proleptic Gregorian `year-month-day`
/// (H. Hinnant, "chrono-Compatible Low-Level Date Algorithms").
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// An RFC 3339 date-time in epoch milliseconds, the fraction beyond the
/// millisecond dropped; `None` when `text` is not one.
pub(super) fn rfc3339_ms(text: &[u8]) -> Option<i64> {
    let digits = |at: usize, n: usize| -> Option<i64> {
        text.get(at..at + n)?.iter().try_fold(0i64, |v, &b| {
            b.is_ascii_digit().then(|| v * 10 + i64::from(b - b'0'))
        })
    };
    let separators = [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':')];
    if separators.iter().any(|&(at, b)| text.get(at) != Some(&b)) {
        return None;
    }
    let (year, month, day) = (digits(0, 4)?, digits(5, 2)?, digits(8, 2)?);
    let (hour, minute, second) = (digits(11, 2)?, digits(14, 2)?, digits(17, 2)?);
    if !(1..=12).contains(&month)
        || !(1..=days_in_month(year, month)).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut at = 19;
    let mut millis = 0;
    if text.get(at) == Some(&b'.') {
        let start = at + 1;
        at = start;
        while text.get(at).is_some_and(u8::is_ascii_digit) {
            at += 1;
        }
        let n = at - start;
        if n == 0 {
            return None;
        }
        millis = digits(start, n.min(3))? * [100, 10, 1][n.min(3) - 1];
    }
    let offset_minutes = match text.get(at) {
        Some(b'Z') => {
            at += 1;
            0
        }
        Some(&sign @ (b'+' | b'-')) => {
            let (hours, minutes) = (digits(at + 1, 2)?, digits(at + 4, 2)?);
            if text.get(at + 3) != Some(&b':') || hours > 23 || minutes > 59 {
                return None;
            }
            at += 6;
            let offset = hours * 60 + minutes;
            if sign == b'-' {
                -offset
            } else {
                offset
            }
        }
        _ => return None,
    };
    if at != text.len() {
        return None;
    }
    let seconds = days_from_civil(year, month, day) * 86_400
        + hour * 3600
        + (minute - offset_minutes) * 60
        + second;
    Some(seconds * 1000 + millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(text: &str) -> Option<i64> {
        rfc3339_ms(text.as_bytes())
    }

    #[test]
    fn reads_rfc3339_in_any_offset_and_floors_to_the_millisecond() {
        // `date -u -d 2026-12-04T10:15:02Z +%s` is 1796379302.
        let at = Some(1_796_379_302_120);
        assert_eq!(ms("2026-12-04T10:15:02.120Z"), at);
        assert_eq!(ms("2026-12-04T11:15:02.12+01:00"), at);
        assert_eq!(ms("2026-12-04T05:45:02.1209999-04:30"), at);
        assert_eq!(ms("2026-12-04T10:15:02.1Z"), Some(1_796_379_302_100));
        assert_eq!(ms("2026-12-04T10:15:02Z"), Some(1_796_379_302_000));
        assert_eq!(ms("2026-12-04T10:15:02-00:00"), Some(1_796_379_302_000));
        assert_eq!(ms("1970-01-01T00:00:00Z"), Some(0));
        // Before the epoch the fraction still rounds toward the past.
        assert_eq!(ms("1969-12-31T23:59:59.9999Z"), Some(-1));
        assert_eq!(ms("2000-02-29T00:00:00Z"), Some(951_782_400_000));
        assert_eq!(ms("2024-12-31T23:59:60Z"), ms("2025-01-01T00:00:00Z"));
        assert_eq!(ms("0000-01-01T00:00:00Z"), Some(-62_167_219_200_000));
        assert_eq!(ms("9999-12-31T23:59:59.999Z"), Some(253_402_300_799_999));
    }

    #[test]
    fn refuses_what_is_not_strict_rfc3339() {
        for text in [
            "",
            "2026-12-04",
            "2026-12-04T10:15:02",
            "2026-12-04t10:15:02Z",
            "2026-12-04 10:15:02Z",
            "2026-12-04T10:15:02z",
            "2026-12-04T10:15:02.Z",
            "2026-12-04T10:15:02.120",
            "2026-12-04T10:15:02+0100",
            "2026-12-04T10:15:02+01",
            "2026-12-04T10:15:02+24:00",
            "2026-12-04T10:15:02Z ",
            "2026-13-04T10:15:02Z",
            "2026-00-04T10:15:02Z",
            "2026-02-29T10:15:02Z",
            "1900-02-29T10:15:02Z",
            "2026-04-31T10:15:02Z",
            "2026-12-04T24:00:00Z",
            "2026-12-04T10:60:02Z",
            "2026-12-04T10:15:61Z",
            "+026-12-04T10:15:02Z",
            "2026-1-04T10:15:02Z",
        ] {
            assert_eq!(ms(text), None, "{text}");
        }
    }

    #[test]
    fn converts_epoch_units_rounding_toward_the_past() {
        assert_eq!(
            epoch_ms(1_764_000_000, TimeFormat::EpochS),
            Some(1_764_000_000_000)
        );
        assert_eq!(epoch_ms(i64::MAX / 999, TimeFormat::EpochS), None);
        assert_eq!(epoch_ms(-5, TimeFormat::EpochMs), Some(-5));
        assert_eq!(epoch_ms(1_999, TimeFormat::EpochUs), Some(1));
        assert_eq!(epoch_ms(-1, TimeFormat::EpochUs), Some(-1));
        assert_eq!(epoch_ms(-1_000_001, TimeFormat::EpochNs), Some(-2));
        assert_eq!(
            epoch_ms(i64::MIN, TimeFormat::EpochNs),
            Some(i64::MIN / 1_000_000 - 1)
        );
        assert_eq!(epoch_ms(1, TimeFormat::Rfc3339), None);
    }
}
