//! The benchmark input: generated events, serialised once into one buffer of
//! JSON lines before anything is timed.
//!
//! Generation and serialisation cost more than decoding; timing them would
//! hide the figure the benchmark is about. Line boundaries are found here too,
//! so the timed loops spend nothing on splitting, as a Kafka consumer gets each
//! message already delimited.
//!
//! The corpus carries the [`MetricPlan`] its records are read with: the
//! reference demo's for narrow events, the generator's matching example
//! configuration (`WideLayout::config_toml`) for wide records; and for wide
//! records in Protobuf or Avro (encoded by the generator, one message per
//! "line" whatever bytes it holds), the schema they are read against.

use std::sync::Arc;

use anyhow::Context;
use fleet_core::decode::{AvroSchema, Decoder, RecordSchema};
use fleet_enricher::ReferenceTable;
use fleet_generator::jsonl::{self, JsonRecord};
use fleet_generator::{
    EventGenerator, Fleet, GeneratorConfig, WideEncoder, WideGenerator, WideLayout, WireFormat,
};
use fleet_plan::MetricPlan;

/// Average line length of the default fleet's events, bytes (measured: a
/// 5,000,000-event file is 585 MB); only sizes the first allocation.
const LINE_BYTES_HINT: usize = 120;

/// What the generated records look like.
#[derive(Clone, Debug)]
pub enum Shape {
    /// The reference demo's events, read with the default configuration.
    Narrow,
    /// Wide records of this layout in this format, read with its example
    /// configuration.
    Wide(WideLayout, WireFormat),
}

/// Generated events as JSON lines, plus the fleet's reference data and the
/// plan that reads them.
#[derive(Debug)]
pub struct Corpus {
    /// Every event's JSON object, each followed by `\n`.
    text: Vec<u8>,
    /// Per line, the index of its terminating `\n` in `text`.
    line_ends: Vec<usize>,
    reference: ReferenceTable,
    plan: Arc<MetricPlan>,
    schema: RecordSchema,
}

impl Corpus {
    /// Exactly `events` events of the fleet described by `config`, in arrival
    /// order (disorder, late events and offline bursts as configured).
    pub fn generate(
        config: &GeneratorConfig,
        events: u64,
        shape: &Shape,
    ) -> anyhow::Result<Corpus> {
        let fleet = Fleet::from_config(config);
        let expected = usize::try_from(events).unwrap_or(usize::MAX);
        let mut lines = Lines {
            text: Vec::with_capacity(expected.saturating_mul(LINE_BYTES_HINT)),
            line_ends: Vec::with_capacity(expected),
        };
        let (plan, schema) = match shape {
            Shape::Narrow => {
                let mut generator =
                    EventGenerator::new(&fleet, config).context("generator configuration")?;
                lines.extend(generator.take_exact(events))?;
                (MetricPlan::reference_demo(), RecordSchema::Json)
            }
            Shape::Wide(layout, format) => {
                let mut generator = WideGenerator::new(&fleet, config, layout)
                    .context("generator configuration")?;
                let encoder = WideEncoder::new(layout, *format)?;
                let records = generator.take_exact(events).map(|r| encoder.wire(r));
                lines.extend(records)?;
                let (toml, schema) = match format {
                    WireFormat::Json => (layout.config_toml(), RecordSchema::Json),
                    WireFormat::Protobuf => {
                        let pool = fleet_schema::compile_proto_source(
                            "wide.proto",
                            &layout.proto_schema(),
                        )?;
                        let message = pool
                            .get_message_by_name(fleet_generator::wide::PROTO_MESSAGE)
                            .context("the layout's message type")?;
                        let schema = RecordSchema::Protobuf(fleet_schema::proto_schema(&message));
                        (layout.config_toml_for(*format, "wide.proto"), schema)
                    }
                    WireFormat::Avro => {
                        let schema = AvroSchema::parse(&layout.avro_schema())?;
                        (
                            layout.config_toml_for(*format, "wide.avsc"),
                            RecordSchema::Avro(schema),
                        )
                    }
                };
                let plan = MetricPlan::from_toml(&toml, &[]).map_err(|problems| {
                    anyhow::anyhow!("the wide example configuration: {problems:?}")
                })?;
                (plan, schema)
            }
        };
        let Lines { text, line_ends } = lines;
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
            plan: Arc::new(plan),
            schema,
        })
    }

    /// The decoder of the records.
    pub fn decoder(&self) -> Decoder {
        Decoder::for_schema(&self.plan.input, &self.schema).0
    }

    /// Every line (message), without its `\n`, in file order.
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

    /// Size of the lines (messages, each with one separator byte), bytes.
    pub fn bytes(&self) -> u64 {
        self.text.len() as u64
    }

    /// The fleet's VIN → model table.
    pub fn reference(&self) -> &ReferenceTable {
        &self.reference
    }

    /// The plan the records are decoded and aggregated with.
    pub fn plan(&self) -> &Arc<MetricPlan> {
        &self.plan
    }
}

/// The JSON lines being written, with their ends.
struct Lines {
    text: Vec<u8>,
    line_ends: Vec<usize>,
}

impl Lines {
    fn extend(&mut self, records: impl Iterator<Item = impl JsonRecord>) -> anyhow::Result<()> {
        for record in records {
            // Writing into a Vec cannot fail short of running out of memory.
            jsonl::write_event_line(&mut self.text, &record).context("serialising an event")?;
            self.line_ends.push(self.text.len() - 1);
        }
        Ok(())
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
        let corpus = Corpus::generate(&config, 3_000, &Shape::Narrow).unwrap();
        assert_eq!(corpus.len(), 3_000);
        assert_eq!(corpus.lines().count(), 3_000);
        let decoder = Decoder::new(&corpus.plan().input);
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

    #[test]
    fn wide_records_decode_with_their_example_configuration() {
        let config = GeneratorConfig {
            vehicles: 40,
            start_ms: Some(1_764_000_000_000),
            ..GeneratorConfig::DEFAULT
        };
        let layout = WideLayout::new(50).unwrap();
        let corpus = Corpus::generate(
            &config,
            2_000,
            &Shape::Wide(layout.clone(), WireFormat::Json),
        )
        .unwrap();
        assert_eq!(corpus.len(), 2_000);
        assert_eq!(corpus.plan().input.signals.len(), 50);
        let decoder = corpus.decoder();
        let mut batch = RecordBatch::default();
        for line in corpus.lines() {
            decoder.decode_into(line, 0, 0, &mut batch).unwrap();
        }
        assert_eq!(batch.len(), 2_000);
        assert!(corpus.bytes() > 2_000 * 1_000, "50 signals make long lines");
        for format in [WireFormat::Protobuf, WireFormat::Avro] {
            let binary =
                Corpus::generate(&config, 2_000, &Shape::Wide(layout.clone(), format)).unwrap();
            let decoder = binary.decoder();
            let mut same = RecordBatch::default();
            for line in binary.lines() {
                decoder.decode_into(line, 0, 0, &mut same).unwrap();
            }
            assert_eq!(same.len(), 2_000, "{format:?}");
            assert!(binary.bytes() < corpus.bytes() / 2, "{format:?} is smaller");
        }
    }
}
