//! Generated records as JSON lines, the format of the replay input (docs/ARCHITECTURE.md, "Offline replay").
//!
//! A raw event's line is exactly [`RawEvent::to_json`]: the same serde
//! serialisation, written straight into the output buffer instead of through
//! a `String`, which is what makes file output fast. A wide record's line is
//! its JSON as generated. [`JsonRecord`] is what both shapes share with the
//! Kafka producer of the `fleet-generator` command: a key and a JSON value.

use std::io::{self, Write};

use fleet_core::RawEvent;

/// A generated record as it goes on the wire.
pub trait JsonRecord {
    /// The vehicle id: the Kafka message key.
    fn key(&self) -> &str;

    /// Writes the record as one JSON object, without a newline.
    fn write_json(&self, out: &mut impl Write) -> io::Result<()>;
}

impl JsonRecord for RawEvent {
    fn key(&self) -> &str {
        &self.vehicle_id
    }

    fn write_json(&self, out: &mut impl Write) -> io::Result<()> {
        Ok(serde_json::to_writer(out, self)?)
    }
}

/// How often (in events) [`write_events`] reports progress.
pub const PROGRESS_EVERY: u64 = 1 << 16;

/// Writes one record and a newline.
pub fn write_event_line(out: &mut impl Write, event: &impl JsonRecord) -> io::Result<()> {
    event.write_json(out)?;
    out.write_all(b"\n")
}

/// Writes every record of `events` as a JSON line and flushes; calls `progress`
/// with the count written so far every [`PROGRESS_EVERY`] records. Returns the
/// number written. Wrap `out` in a `BufWriter`: the lines are small.
pub fn write_events(
    events: impl IntoIterator<Item = impl JsonRecord>,
    mut out: impl Write,
    mut progress: impl FnMut(u64),
) -> io::Result<u64> {
    let mut written = 0;
    for event in events {
        write_event_line(&mut out, &event)?;
        written += 1;
        if written % PROGRESS_EVERY == 0 {
            progress(written);
        }
    }
    out.flush()?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{EventGenerator, Fleet, GeneratorConfig};
    use fleet_core::decode_event;

    #[test]
    fn lines_are_the_wire_encoding_and_decode_back() {
        let config = GeneratorConfig {
            vehicles: 50,
            start_ms: Some(0),
            ..GeneratorConfig::default()
        };
        let fleet = Fleet::from_config(&config);
        let events: Vec<RawEvent> = EventGenerator::new(&fleet, &config)
            .unwrap()
            .take_exact(2_000)
            .collect();
        let mut out = Vec::new();
        let mut reports = Vec::new();
        let written = write_events(events.clone(), &mut out, |n| reports.push(n)).unwrap();
        assert_eq!(written, 2_000);
        assert!(reports.is_empty());
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.lines().count(), 2_000);
        for (line, event) in text.lines().zip(&events) {
            assert_eq!(line, event.to_json());
            assert_eq!(&decode_event(line.as_bytes()).unwrap(), event);
        }
    }

    #[test]
    fn progress_is_reported_every_so_many_events() {
        let config = GeneratorConfig {
            vehicles: 10,
            start_ms: Some(0),
            ..GeneratorConfig::default()
        };
        let mut generator = EventGenerator::new(&Fleet::from_config(&config), &config).unwrap();
        let mut reports = Vec::new();
        let written = write_events(
            generator.take_exact(3 * PROGRESS_EVERY + 1),
            io::sink(),
            |n| reports.push(n),
        )
        .unwrap();
        assert_eq!(written, 3 * PROGRESS_EVERY + 1);
        assert_eq!(
            reports,
            [PROGRESS_EVERY, 2 * PROGRESS_EVERY, 3 * PROGRESS_EVERY]
        );
    }
}
