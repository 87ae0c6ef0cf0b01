//! The embedded source: the generator as a live, in-process input, paced in
//! real time.
//!
//! It stands in for Kafka when none is configured, so that the first command
//! a newcomer runs shows real aggregates. Its events are one partition (`0`)
//! with sequence numbers as offsets, and go through the caller's decoder and
//! [`SourceBatcher`] like every source's: written as the wire format and
//! decoded again, so the embedded job exercises the same path as Kafka's.

use std::future::Future;
use std::time::Duration;

use crate::{EventGenerator, Fleet, GeneratorConfig};
use fleet_core::decode::Decoder;
use fleet_core::telemetry::wall_clock_ms;
use fleet_core::{DecodeError, Msg, RecordBatch, SourceBatch, SourceBatcher};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// How often the generator emits a batch.
const TICK: Duration = Duration::from_millis(100);

/// Events [`readable_by`] tries: enough for every event type of the demo.
const SAMPLE_EVENTS: u64 = 1_000;

/// Whether `decoder` reads any of the events `config`'s generator writes;
/// the first refusal when it reads none. Configuration validation calls it:
/// an `[input]` made for other records would otherwise see every generated
/// event counted as malformed.
pub fn readable_by(config: &GeneratorConfig, decoder: &Decoder) -> Result<(), DecodeError> {
    let fleet = Fleet::from_config(config);
    let mut generator = match EventGenerator::new(&fleet, config) {
        Ok(generator) => generator,
        // Not this check's problem: validation reports the configuration.
        Err(_) => return Ok(()),
    };
    let mut batch = RecordBatch::default();
    let mut first_refusal = None;
    for (offset, event) in (0..).zip(generator.take_exact(SAMPLE_EVENTS)) {
        match decoder.decode_into(event.to_json().as_bytes(), 0, offset, &mut batch) {
            Ok(()) => return Ok(()),
            Err(e) => {
                first_refusal.get_or_insert(e);
            }
        }
    }
    first_refusal.map_or(Ok(()), Err)
}

/// Emits `events_per_second` generated events into `output` until `shutdown`
/// completes or the pipeline closes.
pub async fn run(
    mut generator: EventGenerator,
    events_per_second: u64,
    decoder: Decoder,
    mut batcher: SourceBatcher,
    output: mpsc::Sender<Msg<SourceBatch>>,
    shutdown: impl Future<Output = ()>,
) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut shutdown = std::pin::pin!(shutdown);
    let mut offset = 0i64;
    let mut owed = 0.0f64;
    let mut mismatch_logged = false;
    let per_tick = events_per_second as f64 * TICK.as_secs_f64();
    tracing::info!(events_per_second, "Embedded generator started.");
    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            _ = tick.tick() => {}
        }
        owed += per_tick;
        let n = owed.floor() as usize;
        owed -= n as f64;
        let now = Instant::now();
        let wall = wall_clock_ms();
        for _ in 0..n {
            let json = generator.next_event().to_json();
            let decoded = batcher.push_with(now, wall, |batch| {
                decoder.decode_into(json.as_bytes(), 0, offset, batch)
            });
            if let (Err(e), false) = (decoded, mismatch_logged) {
                tracing::warn!(error = %e, "Generated events do not match the configured [input]: they are skipped.");
                mismatch_logged = true;
            }
            offset += 1;
        }
        batcher.advance(now, wall);
        while let Some(msg) = batcher.pop() {
            if output.send(msg).await.is_err() {
                tracing::info!(
                    events = offset,
                    "Embedded generator stopped: the pipeline closed."
                );
                return;
            }
        }
    }
    tracing::info!(events = offset, "Embedded generator stopped.");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::WideLayout;
    use fleet_plan::MetricPlan;

    #[test]
    fn the_demo_input_reads_the_generated_events_and_a_wide_one_does_not() {
        let config = GeneratorConfig::DEFAULT;
        let demo = Decoder::new(&MetricPlan::reference_demo().input);
        assert_eq!(readable_by(&config, &demo), Ok(()));

        let wide = WideLayout::new(10).unwrap().config_toml();
        let wide = MetricPlan::from_toml(&wide, &[]).unwrap();
        let refusal = readable_by(&config, &Decoder::new(&wide.input)).unwrap_err();
        assert!(refusal.to_string().contains("vin"), "{refusal}");
    }
}
