//! The benchmark input: generated events, serialised once into one buffer of
//! JSON lines before anything is timed.
//!
//! Generation and serialisation cost more than decoding; timing them would
//! hide the figure the benchmark is about. Line boundaries are found here too,
//! so the timed loops spend nothing on splitting, as a Kafka consumer gets each
//! message already delimited.

use anyhow::Context;
use fleet_enricher::ReferenceTable;
use fleet_generator::{jsonl, EventGenerator, Fleet, GeneratorConfig};

/// Average line length of the default fleet's events, bytes (measured: a
/// 5,000,000-event file is 585 MB); only sizes the first allocation.
const LINE_BYTES_HINT: usize = 120;

/// Generated events as JSON lines, plus the fleet's reference data.
#[derive(Debug)]
pub struct Corpus {
    /// Every event's JSON object, each followed by `\n`.
    text: Vec<u8>,
    /// Per line, the index of its terminating `\n` in `text`.
    line_ends: Vec<usize>,
    reference: ReferenceTable,
}

impl Corpus {
    /// Exactly `events` events of the fleet described by `config`, in arrival
    /// order (disorder, late events and offline bursts as configured).
    pub fn generate(config: &GeneratorConfig, events: u64) -> anyhow::Result<Corpus> {
        let fleet = Fleet::from_config(config);
        let mut generator =
            EventGenerator::new(&fleet, config).context("generator configuration")?;
        let expected = usize::try_from(events).unwrap_or(usize::MAX);
        let mut text = Vec::with_capacity(expected.saturating_mul(LINE_BYTES_HINT));
        let mut line_ends = Vec::with_capacity(expected);
        for event in generator.take_exact(events) {
            // Writing into a Vec cannot fail short of running out of memory.
            jsonl::write_event_line(&mut text, &event).context("serialising an event")?;
            line_ends.push(text.len() - 1);
        }
        // Fleet order, as a reference CSV written by `fleet-generator` lists it.
        let reference = ReferenceTable::from_pairs(
            fleet
                .vehicles()
                .iter()
                .map(|v| (v.vin.clone(), v.model.to_owned())),
        );
        Ok(Corpus {
            text,
            line_ends,
            reference,
        })
    }

    /// Every line, without its `\n`, in file order.
    pub fn lines(&self) -> impl Iterator<Item = &[u8]> + '_ {
        let mut start = 0;
        self.line_ends.iter().map(move |&end| {
            let line = &self.text[start..end];
            start = end + 1;
            line
        })
    }

    /// Number of lines (events).
    pub fn len(&self) -> u64 {
        self.line_ends.len() as u64
    }

    /// Size of the JSON lines, bytes.
    pub fn bytes(&self) -> u64 {
        self.text.len() as u64
    }

    /// The fleet's VIN → model table.
    pub fn reference(&self) -> &ReferenceTable {
        &self.reference
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleet_core::decode::Decoder;
    use fleet_core::RecordBatch;

    #[test]
    fn every_line_is_one_decodable_event_and_every_vehicle_is_referenced() {
        let config = GeneratorConfig {
            vehicles: 50,
            start_ms: Some(1_764_000_000_000),
            ..GeneratorConfig::DEFAULT
        };
        let corpus = Corpus::generate(&config, 3_000).unwrap();
        assert_eq!(corpus.len(), 3_000);
        assert_eq!(corpus.lines().count(), 3_000);
        let decoder = Decoder::new(&fleet_plan::MetricPlan::reference_demo().input);
        let mut batch = RecordBatch::default();
        for line in corpus.lines() {
            assert!(!line.contains(&b'\n'));
            decoder.decode_into(line, 0, 0, &mut batch).unwrap();
        }
        assert_eq!(corpus.reference().len(), 50);
        assert_eq!(
            corpus.bytes(),
            corpus.lines().map(|l| l.len() as u64 + 1).sum::<u64>()
        );
    }
}
