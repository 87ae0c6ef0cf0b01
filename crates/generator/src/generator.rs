//! The event stream: simulated vehicles, a simulated clock and a simulated network.
//!
//! Event time is simulated, not read from a wall clock. The fleet is visited in
//! a fixed shuffled order, one vehicle per slot; the clock advances 1000/N ms
//! per slot, so each of the N vehicles reports once per simulated second and N
//! events make one simulated second. Written as fast as possible, that is a
//! reproducible file; paced at N events per wall-clock second by a caller, it
//! is a live stream whose event time tracks the wall clock.
//!
//! Delivery is simulated too. Every generated event gets a release time: its
//! own timestamp (on time), a little later (disordered, at most
//! `max_disorder_ms`), much later (late, beyond the service's out-of-orderness),
//! or the moment its offline vehicle reconnects. Events wait in a min-heap on
//! `(release time, generation order)` and are emitted once the clock reaches
//! their release time, so an event is never emitted after any event generated
//! at or after its release time. Hence, with late events and offline vehicles
//! off, every emitted event's timestamp is at least the largest timestamp
//! emitted before it minus `max_disorder_ms`.
//!
//! The vehicles and the network draw from separate random streams, so the
//! realism knobs change only the order in which the same events arrive.
//!
//! What a vehicle reports in its slot is the one thing the record shapes do
//! not share: [`Generator`] is generic over it, so the narrow events
//! ([`EventGenerator`]) and the wide records ([`crate::WideGenerator`]) get
//! the same clock, the same disorder, late events and outages.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use fleet_core::config::ConfigError;
use fleet_core::{RawEvent, TimestampMs};
use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use crate::config::GeneratorConfig;
use crate::fleet::Fleet;
use crate::vehicle::{Reading, VehicleSim};

/// Mixed into the seed of each random stream, so the streams are unrelated
/// although they come from one seed.
const VEHICLE_STREAM: u64 = 0x5EED_F1EE_7000_0001;
const NETWORK_STREAM: u64 = 0x5EED_F1EE_7000_0002;

pub(crate) mod sealed {
    use fleet_core::TimestampMs;

    use crate::jsonl::JsonRecord;

    /// The part of a generator that differs between record shapes: the
    /// simulated vehicles and what one of them reports in its slot. In a
    /// private module, so that only this crate implements it or advances a
    /// vehicle; [`super::RecordKind`] is its public name.
    pub trait Simulation: std::fmt::Debug {
        /// What a vehicle reports.
        type Record: std::fmt::Debug + JsonRecord;

        /// Advances `vehicle` (an index into the fleet) by one simulated
        /// second and returns what it reports at `timestamp`.
        fn record(&mut self, vehicle: u32, timestamp: TimestampMs) -> Self::Record;
    }
}

use sealed::Simulation;

/// What the vehicles of a [`Generator`] report, [`NarrowSim`] or
/// [`crate::wide::WideSim`]: lets code handle both generators alike
/// (`fn f<K: RecordKind>(g: &mut Generator<K>)`, items `K::Record`).
/// Implemented by this crate only.
pub trait RecordKind: Simulation {}

impl<S: Simulation> RecordKind for S {}

/// The reference demo's vehicles: each reports one reading a second, an
/// engine or motor RPM or its warning-light count, as a [`RawEvent`].
#[derive(Debug)]
pub struct NarrowSim {
    /// VIN and region of each vehicle, indexed like `sims`.
    identities: Vec<(String, &'static str)>,
    sims: Vec<VehicleSim>,
    rng: SmallRng,
}

impl Simulation for NarrowSim {
    type Record = RawEvent;

    fn record(&mut self, vehicle: u32, timestamp: TimestampMs) -> RawEvent {
        let Reading {
            event_type,
            measurement,
        } = self.sims[vehicle as usize].tick(&mut self.rng);
        let (vin, region) = &self.identities[vehicle as usize];
        RawEvent {
            event_type,
            vehicle_id: vin.into(),
            region: (*region).into(),
            timestamp,
            measurement: i64::from(measurement),
        }
    }
}

/// A buffered event, ordered so that [`BinaryHeap`] pops the earliest release
/// time first and, among equal ones, the one generated first.
#[derive(Debug)]
struct Pending<R> {
    release: TimestampMs,
    seq: u64,
    record: R,
}

impl<R> Ord for Pending<R> {
    fn cmp(&self, other: &Self) -> Ordering {
        (other.release, other.seq).cmp(&(self.release, self.seq))
    }
}

impl<R> PartialOrd for Pending<R> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<R> PartialEq for Pending<R> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl<R> Eq for Pending<R> {}

/// The simulated network's knobs, in the units the generator computes with.
#[derive(Clone, Copy, Debug)]
struct Network {
    disorder_fraction: f64,
    max_disorder_ms: i64,
    late_fraction: f64,
    late_ms: (i64, i64),
    offline_probability: f64,
    offline_ms: (i64, i64),
}

impl Network {
    /// From a validated configuration: every delay is at most a day, so the
    /// conversions cannot fail.
    fn new(config: &GeneratorConfig) -> Network {
        let ms = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        Network {
            disorder_fraction: config.disorder_fraction,
            max_disorder_ms: ms(config.max_disorder_ms),
            late_fraction: config.late_fraction,
            late_ms: (ms(config.late_min_ms), ms(config.late_max_ms)),
            offline_probability: config.offline_probability,
            offline_ms: (
                ms(config.offline_min_s.saturating_mul(1_000)),
                ms(config.offline_max_s.saturating_mul(1_000)),
            ),
        }
    }
}

/// A deterministic, endless stream of records from a [`Fleet`], one per
/// vehicle and simulated second, in the arrival order of a simulated network.
/// `S` is what the vehicles report: [`EventGenerator`] and
/// [`crate::WideGenerator`] name the two shapes.
#[derive(Debug)]
pub struct Generator<S: Simulation> {
    sim: S,
    /// End of the current offline period of each vehicle (simulated ms); the
    /// vehicle is online once the clock reaches it.
    offline_until: Vec<TimestampMs>,
    /// The order in which vehicles report within each simulated second.
    order: Vec<u32>,
    network_rng: SmallRng,
    network: Network,
    /// Start of the current simulated second.
    second_start: TimestampMs,
    /// Next slot within the current second, `0..order.len()`.
    slot: usize,
    /// Timestamp of the newest generated event: the simulated now.
    clock: TimestampMs,
    /// Events generated but not yet emitted.
    pending: BinaryHeap<Pending<S::Record>>,
    /// Events generated so far; also the tie-breaker of the reorder buffer.
    generated: u64,
}

/// A deterministic, endless stream of raw events (the reference demo's
/// narrow records) from a [`Fleet`].
pub type EventGenerator = Generator<NarrowSim>;

impl Generator<NarrowSim> {
    /// A generator for `fleet` with the simulation knobs of `config`
    /// (`config.vehicles` is not read: the fleet is what it is). Refuses an
    /// invalid configuration or an empty fleet.
    pub fn new(fleet: &Fleet, config: &GeneratorConfig) -> Result<EventGenerator, ConfigError> {
        Generator::with_sim(fleet, config, |fleet, mut rng| NarrowSim {
            identities: fleet
                .vehicles()
                .iter()
                .map(|v| (v.vin.clone(), v.region))
                .collect(),
            sims: (0..fleet.len())
                .map(|_| VehicleSim::new(&mut rng))
                .collect(),
            rng,
        })
    }
}

impl<S: Simulation> Generator<S> {
    /// The generator of the simulation `build` makes from the fleet and the
    /// vehicle stream (after the reporting order was drawn from it).
    pub(crate) fn with_sim(
        fleet: &Fleet,
        config: &GeneratorConfig,
        build: impl FnOnce(&Fleet, SmallRng) -> S,
    ) -> Result<Generator<S>, ConfigError> {
        config.validate()?;
        if fleet.is_empty() {
            return Err(ConfigError::single("vehicles", "the fleet has no vehicles"));
        }
        let vehicles = u32::try_from(fleet.len()).map_err(|_| {
            ConfigError::single("vehicles", format!("must be at most {}", u32::MAX))
        })?;
        let mut vehicle_rng = SmallRng::seed_from_u64(config.seed ^ VEHICLE_STREAM);
        let network_rng = SmallRng::seed_from_u64(config.seed ^ NETWORK_STREAM);
        let mut order: Vec<u32> = (0..vehicles).collect();
        order.shuffle(&mut vehicle_rng);
        let start = config.resolve_start_ms();
        Ok(Generator {
            sim: build(fleet, vehicle_rng),
            offline_until: vec![TimestampMs::MIN; fleet.len()],
            order,
            network_rng,
            network: Network::new(config),
            second_start: start,
            slot: 0,
            clock: start,
            pending: BinaryHeap::new(),
            generated: 0,
        })
    }

    /// The next event in arrival order. Never ends.
    pub fn next_event(&mut self) -> S::Record {
        let mut unlimited = u64::MAX;
        loop {
            // With generation allowed there is always an event to return.
            if let Some(record) = self.advance(&mut unlimited) {
                return record;
            }
        }
    }

    /// A bounded run: generates exactly `events` more events and then releases
    /// everything still buffered, in release order. On a fresh generator it
    /// yields exactly `events` events, none held back.
    pub fn take_exact(&mut self, events: u64) -> Bounded<'_, S> {
        Bounded {
            generator: self,
            to_generate: events,
        }
    }

    /// Releases everything buffered (delayed, late and offline events) without
    /// generating more, as at the end of a run. The generator can continue afterwards.
    pub fn drain(&mut self) -> Bounded<'_, S> {
        self.take_exact(0)
    }

    /// The simulated now: the timestamp of the newest generated event
    /// (the event-time origin before the first). A caller pacing the stream
    /// against the wall clock compares this with the time of day.
    pub fn clock_ms(&self) -> TimestampMs {
        self.clock
    }

    /// Events generated so far.
    pub fn generated(&self) -> u64 {
        self.generated
    }

    /// Events generated but not yet emitted.
    pub fn buffered(&self) -> usize {
        self.pending.len()
    }

    /// The next event to emit, generating while `*budget > 0` (one unit per
    /// generated event); with no budget left, buffered events are released in
    /// order regardless of the clock, and `None` means all were.
    fn advance(&mut self, budget: &mut u64) -> Option<S::Record> {
        loop {
            let may_generate = *budget > 0;
            match self.pending.peek() {
                Some(next) if next.release <= self.clock || !may_generate => {
                    return self.pending.pop().map(|p| p.record);
                }
                None if !may_generate => return None,
                _ => {}
            }
            *budget -= 1;
            let (record, release) = self.generate();
            let seq = self.generated - 1;
            // On time and nothing older due: skip the heap (the common case).
            let nothing_due = self.pending.peek().is_none_or(|p| p.release > self.clock);
            if release <= self.clock && nothing_due {
                return Some(record);
            }
            self.pending.push(Pending {
                release,
                seq,
                record,
            });
        }
    }

    /// Simulates the next slot: advances the clock, lets the vehicle report and
    /// decides when the network delivers it.
    fn generate(&mut self) -> (S::Record, TimestampMs) {
        let vehicles = self.order.len();
        // `slot < vehicles <= u32::MAX`, so the product fits in u64.
        let offset = (self.slot as u64 * 1_000 / vehicles as u64) as TimestampMs;
        let timestamp = self.second_start + offset;
        let vehicle = self.order[self.slot];
        self.slot += 1;
        if self.slot == vehicles {
            self.slot = 0;
            self.second_start += 1_000;
        }
        self.clock = timestamp;
        self.generated += 1;
        let record = self.sim.record(vehicle, timestamp);
        let release = self.release_time(vehicle as usize, timestamp);
        (record, release)
    }

    /// When the simulated network delivers an event of `vehicle` measured at `timestamp`.
    fn release_time(&mut self, vehicle: usize, timestamp: TimestampMs) -> TimestampMs {
        let net = self.network;
        let rng = &mut self.network_rng;
        if timestamp < self.offline_until[vehicle] {
            return self.offline_until[vehicle];
        }
        if net.offline_probability > 0.0 && rng.random::<f64>() < net.offline_probability {
            let until = timestamp + rng.random_range(net.offline_ms.0..=net.offline_ms.1);
            self.offline_until[vehicle] = until;
            return until;
        }
        if net.disorder_fraction + net.late_fraction <= 0.0 {
            return timestamp;
        }
        let draw = rng.random::<f64>();
        if draw < net.disorder_fraction {
            timestamp + rng.random_range(0..=net.max_disorder_ms)
        } else if draw < net.disorder_fraction + net.late_fraction {
            timestamp + rng.random_range(net.late_ms.0..=net.late_ms.1)
        } else {
            timestamp
        }
    }
}

impl<S: Simulation> Iterator for Generator<S> {
    type Item = S::Record;

    /// Always `Some`: the stream is endless. Use [`Generator::take_exact`]
    /// for a run that ends with everything delivered.
    fn next(&mut self) -> Option<S::Record> {
        Some(self.next_event())
    }
}

/// A run of a known length; see [`Generator::take_exact`] and [`Generator::drain`].
#[derive(Debug)]
pub struct Bounded<'a, S: Simulation = NarrowSim> {
    generator: &'a mut Generator<S>,
    /// Events still to generate before only buffered ones are released.
    to_generate: u64,
}

impl<S: Simulation> Iterator for Bounded<'_, S> {
    type Item = S::Record;

    fn next(&mut self) -> Option<S::Record> {
        self.generator.advance(&mut self.to_generate)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let remaining = usize::try_from(self.to_generate)
            .ok()
            .and_then(|n| n.checked_add(self.generator.pending.len()));
        (remaining.unwrap_or(usize::MAX), remaining)
    }
}

#[cfg(test)]
pub(crate) mod tests;
