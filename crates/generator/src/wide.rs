//! Wide records: one JSON object per vehicle and simulated second carrying
//! many signals (docs/METRICS.md, `shape = "wide"`).
//!
//! The reference demo's narrow events exercise the service's event-time
//! rules with three signals. A fleet that declares its own schema sends
//! records like these, and the declared decoder, metrics and benchmarks need
//! them realistic and reproducible: typed values that change the way a
//! vehicle's do, nested objects, an RFC 3339 time and a nested label. The
//! vehicles move by the narrow simulation's drive states, and the records go
//! through the same simulated clock and network ([`Generator`]), so disorder,
//! late records and outages behave exactly as in the narrow mode.
//!
//! [`WideLayout`] is the record's schema for a number of signals: the
//! simulated quantities first, in a fixed order (a small layout keeps the
//! most telling ones), then numbered extra sensors up to the count.
//! [`WideLayout::config_toml`] writes the matching `[input]` and metrics from
//! the same layout, so records and configuration cannot drift apart.

use std::fmt::Write as _;
use std::io;

use fleet_core::config::ConfigError;
use fleet_core::TimestampMs;
use fleet_plan::SignalType;
use rand::rngs::SmallRng;

use crate::fleet::Fleet;
use crate::generator::{sealed::Simulation, Generator};
use crate::jsonl::JsonRecord;
use crate::vehicle::pick;
use crate::GeneratorConfig;

mod config;
mod vehicle;
mod wire;

pub use wire::{WideEncoder, WireError, WireFormat, WireRecord, PROTO_MESSAGE};

use vehicle::{Quantity, WideVehicle, GEAR_STATES};

/// The record's vehicle id field (`[input] vehicle_id`).
pub const VEHICLE_ID_PATH: &str = "vin";
/// The record's event time field, an RFC 3339 UTC string with milliseconds (`[input] time`).
pub const TIME_PATH: &str = "ts";
/// The record's labels (`[input] labels`): the fleet's region, and the
/// vehicle's home depot in a nested object.
pub const LABEL_PATHS: [&str; 2] = ["region", "site.depot"];

/// The depots a vehicle belongs to, with relative weights (invented).
pub const DEPOTS: [(&str, u32); 5] = [
    ("north", 30),
    ("south", 25),
    ("east", 20),
    ("west", 15),
    ("central", 10),
];

/// One signal of the wide records.
#[derive(Clone, Debug, PartialEq)]
pub struct WideSignal {
    /// Its name in metrics and filters.
    pub name: String,
    /// Where it is in the record: field names joined by dots.
    pub path: String,
    /// Its JSON type; floats are always written with a fraction (`54.0`).
    pub signal_type: SignalType,
    /// With [`SignalType::State`]: every value it takes.
    pub states: &'static [&'static str],
    /// Integer and float: the inclusive range every generated value is in.
    pub range: Option<(f64, f64)>,
    quantity: Quantity,
}

/// A simulated signal of the layout: everything but the name's ownership.
struct Core {
    name: &'static str,
    path: &'static str,
    signal_type: SignalType,
    range: Option<(f64, f64)>,
    quantity: Quantity,
}

const fn core(
    name: &'static str,
    path: &'static str,
    signal_type: SignalType,
    range: Option<(f64, f64)>,
    quantity: Quantity,
) -> Core {
    Core {
        name,
        path,
        signal_type,
        range,
        quantity,
    }
}

/// The simulated signals, most telling first: a layout of `n` signals takes
/// the first `n` (and then extra sensors).
#[rustfmt::skip]
const CORE: [Core; 27] = {
    use Quantity as Q;
    use SignalType::{Boolean as B, Float as F, Integer as I, State as S};
    [
        core("speed_kmh", "speed_kmh", F, Some((0.0, 250.0)), Q::Speed),
        core("gear", "gear", S, None, Q::Gear),
        core("soc_pct", "soc_pct", I, Some((0.0, 100.0)), Q::Soc),
        core("coolant_c", "signals.coolant_c", F, Some((-40.0, 130.0)), Q::Coolant),
        core("odometer_km", "odometer_km", I, Some((0.0, 2_000_000.0)), Q::Odometer),
        core("charging", "charging", B, None, Q::Charging),
        core("engine_rpm", "engine_rpm", I, Some((0.0, 8_000.0)), Q::EngineRpm),
        core("warnings", "warnings", I, Some((0.0, 16.0)), Q::Warnings),
        core("cabin_c", "signals.cabin_c", F, Some((-40.0, 80.0)), Q::Cabin),
        core("ambient_c", "signals.ambient_c", F, Some((-50.0, 60.0)), Q::Ambient),
        core("oil_c", "signals.oil_c", F, Some((-40.0, 160.0)), Q::Oil),
        core("battery_c", "signals.battery_c", F, Some((-40.0, 80.0)), Q::BatteryTemp),
        core("hv_battery_v", "signals.hv_battery_v", F, Some((250.0, 450.0)), Q::HvVolts),
        core("hv_current_a", "signals.hv_current_a", F, Some((-300.0, 400.0)), Q::HvAmps),
        core("lv_battery_v", "signals.lv_battery_v", F, Some((9.0, 16.0)), Q::LvVolts),
        core("tyre_fl_kpa", "tyres.front_left_kpa", F, Some((100.0, 400.0)), Q::Tyre(0)),
        core("tyre_fr_kpa", "tyres.front_right_kpa", F, Some((100.0, 400.0)), Q::Tyre(1)),
        core("tyre_rl_kpa", "tyres.rear_left_kpa", F, Some((100.0, 400.0)), Q::Tyre(2)),
        core("tyre_rr_kpa", "tyres.rear_right_kpa", F, Some((100.0, 400.0)), Q::Tyre(3)),
        core("door_fl_open", "doors.front_left", B, None, Q::Door(0)),
        core("door_fr_open", "doors.front_right", B, None, Q::Door(1)),
        core("door_rl_open", "doors.rear_left", B, None, Q::Door(2)),
        core("door_rr_open", "doors.rear_right", B, None, Q::Door(3)),
        core("trunk_open", "doors.trunk", B, None, Q::Door(4)),
        core("accel_pedal_pct", "accel_pedal_pct", I, Some((0.0, 100.0)), Q::AccelPedal),
        core("brake_pressed", "brake_pressed", B, None, Q::Brake),
        core("headlights_on", "headlights_on", B, None, Q::Headlights),
    ]
};

/// The schema of the wide records for a number of signals.
#[derive(Clone, Debug, PartialEq)]
pub struct WideLayout {
    signals: Vec<WideSignal>,
}

impl WideLayout {
    /// Signals per record unless told otherwise: the benchmark's wide record.
    pub const DEFAULT_SIGNALS: usize = 50;
    /// The most signals a record may carry (about 25 kB of JSON).
    pub const MAX_SIGNALS: usize = 1_000;

    /// The layout of `signals` signals, 1 to [`Self::MAX_SIGNALS`]: the
    /// simulated ones in their fixed order, then `sensor_<n>` (integer for
    /// even `n`, float for odd; `n` is the signal's position, from 1) in the
    /// nested object `signals`.
    pub fn new(signals: usize) -> Result<WideLayout, ConfigError> {
        if !(1..=Self::MAX_SIGNALS).contains(&signals) {
            return Err(ConfigError::single(
                "signals",
                format!("must be between 1 and {}, not {signals}", Self::MAX_SIGNALS),
            ));
        }
        let simulated = CORE.iter().take(signals).map(|c| WideSignal {
            name: c.name.to_string(),
            path: c.path.to_string(),
            signal_type: c.signal_type,
            // The gear is the only state signal.
            states: if c.signal_type == SignalType::State {
                &GEAR_STATES
            } else {
                &[]
            },
            range: c.range,
            quantity: c.quantity,
        });
        let extras = (CORE.len()..signals).enumerate().map(|(extra, index)| {
            let n = index + 1;
            let name = format!("sensor_{n:02}");
            // A different centre and width per sensor, from its number.
            let center = ((n * 37) % 200) as f64 - 50.0;
            let span = 10.0 * (1 + n % 5) as f64;
            WideSignal {
                path: format!("signals.{name}"),
                name,
                signal_type: if n % 2 == 0 {
                    SignalType::Integer
                } else {
                    SignalType::Float
                },
                states: &[],
                range: Some((center - span, center + span)),
                quantity: Quantity::Extra(extra),
            }
        });
        Ok(WideLayout {
            signals: simulated.chain(extras).collect(),
        })
    }

    /// The signals, in the record's order.
    pub fn signals(&self) -> &[WideSignal] {
        &self.signals
    }

    /// The record's fields as a tree of objects, in the JSON records' order.
    fn tree(&self) -> Vec<(&str, Node<'_>)> {
        let mut root = Vec::new();
        let fields = [(VEHICLE_ID_PATH, Field::Vin), (TIME_PATH, Field::Time)]
            .into_iter()
            .chain(
                LABEL_PATHS
                    .iter()
                    .enumerate()
                    .map(|(i, path)| (*path, Field::Label(i))),
            )
            .chain(
                self.signals
                    .iter()
                    .map(|s| (s.path.as_str(), Field::Signal(s.quantity, s.signal_type))),
            );
        for (path, field) in fields {
            insert(&mut root, &path.split('.').collect::<Vec<_>>(), field);
        }
        root
    }

    /// The ranges of the extra sensors, in order.
    fn extra_ranges(&self) -> Vec<(f64, f64)> {
        self.signals
            .iter()
            .filter(|s| matches!(s.quantity, Quantity::Extra(_)))
            .filter_map(|s| s.range)
            .collect()
    }
}

/// One wide record, ready for the wire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WideRecord {
    /// The vehicle's VIN: the record's `vin`, and its Kafka key.
    pub vin: String,
    /// The event time, epoch milliseconds: the record's `ts`.
    pub timestamp: TimestampMs,
    /// The record: one JSON object, without a newline.
    pub json: String,
}

/// A deterministic, endless stream of wide records from a [`Fleet`].
pub type WideGenerator = Generator<WideSim>;

impl Generator<WideSim> {
    /// A generator of `layout`'s records for `fleet`, with the clock and the
    /// simulated network of `config` (as [`crate::EventGenerator::new`]).
    /// Each vehicle gets a depot; the same seed gives the same records.
    pub fn new(
        fleet: &Fleet,
        config: &GeneratorConfig,
        layout: &WideLayout,
    ) -> Result<WideGenerator, ConfigError> {
        Generator::with_sim(fleet, config, |fleet, mut rng| {
            let extras = layout.extra_ranges();
            let vehicles = fleet
                .vehicles()
                .iter()
                .map(|v| {
                    let depot = pick(&mut rng, &DEPOTS);
                    let identity = Identity {
                        vin: v.vin.clone(),
                        labels: [v.region, depot],
                    };
                    (identity, WideVehicle::new(&mut rng, &extras))
                })
                .collect();
            WideSim {
                program: Program::new(layout),
                extras,
                vehicles,
                rng,
            }
        })
    }
}

/// Who sends a record: its id and its labels, in [`LABEL_PATHS`] order.
#[derive(Debug)]
struct Identity {
    vin: String,
    labels: [&'static str; 2],
}

/// The simulated vehicles of the wide records.
#[derive(Debug)]
pub struct WideSim {
    program: Program,
    extras: Vec<(f64, f64)>,
    vehicles: Vec<(Identity, WideVehicle)>,
    rng: SmallRng,
}

impl Simulation for WideSim {
    type Record = WideRecord;

    fn record(&mut self, vehicle: u32, timestamp: TimestampMs) -> WideRecord {
        let (identity, state) = &mut self.vehicles[vehicle as usize];
        state.tick(&mut self.rng, timestamp, &self.extras);
        WideRecord {
            vin: identity.vin.clone(),
            timestamp,
            json: self.program.render(identity, state, timestamp),
        }
    }
}

/// A value a record carries.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Value<'a> {
    Integer(i64),
    Float(f64),
    Boolean(bool),
    Text(&'a str),
}

/// What a field of the record holds.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Field {
    Vin,
    Time,
    Label(usize),
    Signal(Quantity, SignalType),
}

/// How to write a record: literal JSON text and fields, in order, worked out
/// once from the layout's paths (objects in the order they first appear).
#[derive(Debug)]
struct Program {
    ops: Vec<Op>,
    /// About the length of a record, to allocate once.
    capacity: usize,
}

#[derive(Debug)]
enum Op {
    Literal(String),
    Field(Field),
}

/// Fields at one level of the record: a value, or a nested object's fields.
enum Node<'a> {
    Leaf(Field),
    Object(Vec<(&'a str, Node<'a>)>),
}

impl Program {
    fn new(layout: &WideLayout) -> Program {
        let root = layout.tree();
        let mut ops = Vec::new();
        let mut text = String::new();
        emit(&root, &mut text, &mut ops);
        ops.push(Op::Literal(text));
        let capacity = ops
            .iter()
            .map(|op| match op {
                Op::Literal(text) => text.len(),
                Op::Field(_) => 24,
            })
            .sum();
        Program { ops, capacity }
    }

    fn render(&self, identity: &Identity, state: &WideVehicle, timestamp: TimestampMs) -> String {
        let mut out = String::with_capacity(self.capacity);
        for op in &self.ops {
            match op {
                Op::Literal(text) => out.push_str(text),
                Op::Field(Field::Vin) => write_value(&mut out, Value::Text(&identity.vin)),
                Op::Field(Field::Time) => {
                    out.push('"');
                    write_rfc3339_ms(&mut out, timestamp);
                    out.push('"');
                }
                Op::Field(Field::Label(i)) => {
                    write_value(&mut out, Value::Text(identity.labels[*i]));
                }
                Op::Field(Field::Signal(quantity, signal_type)) => {
                    write_value(&mut out, state.value(*quantity, *signal_type));
                }
            }
        }
        out
    }
}

/// Adds `field` at `path` below `level`. Paths of the layout are distinct
/// and none is a prefix of another, so a segment names either a value or an
/// object.
fn insert<'a>(level: &mut Vec<(&'a str, Node<'a>)>, path: &[&'a str], field: Field) {
    let Some((first, rest)) = path.split_first() else {
        return;
    };
    if rest.is_empty() {
        level.push((first, Node::Leaf(field)));
        return;
    }
    let position = level
        .iter()
        .position(|(name, node)| name == first && matches!(node, Node::Object(_)));
    let index = position.unwrap_or_else(|| {
        level.push((first, Node::Object(Vec::new())));
        level.len() - 1
    });
    if let Node::Object(children) = &mut level[index].1 {
        insert(children, rest, field);
    }
}

/// Writes `level` as a JSON object: literal text into `text`, which is
/// flushed into `ops` before each field.
fn emit(level: &[(&str, Node<'_>)], text: &mut String, ops: &mut Vec<Op>) {
    text.push('{');
    for (i, (name, node)) in level.iter().enumerate() {
        if i > 0 {
            text.push(',');
        }
        write_value(text, Value::Text(name));
        text.push(':');
        match node {
            Node::Leaf(field) => {
                ops.push(Op::Literal(std::mem::take(text)));
                ops.push(Op::Field(*field));
            }
            Node::Object(children) => emit(children, text, ops),
        }
    }
    text.push('}');
}

/// Writes one JSON value. Texts are VINs, regions, depots, states and field
/// names: letters, digits, `-` and `_` only, which JSON needs not escape.
fn write_value(out: &mut String, value: Value<'_>) {
    match value {
        Value::Integer(i) => {
            let _ = write!(out, "{i}");
        }
        Value::Float(f) => write_float(out, f),
        Value::Boolean(b) => out.push_str(if b { "true" } else { "false" }),
        Value::Text(text) => {
            out.push('"');
            out.push_str(text);
            out.push('"');
        }
    }
}

/// A finite float as JSON and TOML read it, always with a fraction so that
/// it reads as a float (`54.0`, not `54`).
pub(crate) fn write_float(out: &mut String, value: f64) {
    let start = out.len();
    // `+ 0.0` turns -0.0 into 0.0.
    let _ = write!(out, "{}", value + 0.0);
    if !out[start..].contains(['.', 'e', 'N', 'i']) {
        out.push_str(".0");
    }
}

/// Writes `ms` (epoch milliseconds) as RFC 3339 UTC with milliseconds:
/// `2026-12-04T10:15:02.120Z`.
fn write_rfc3339_ms(out: &mut String, ms: TimestampMs) {
    let days = ms.div_euclid(86_400_000);
    let of_day = ms.rem_euclid(86_400_000);
    let (year, month, day) = civil_from_days(days);
    let _ = write!(
        out,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        of_day / 3_600_000,
        of_day / 60_000 % 60,
        of_day / 1_000 % 60,
        of_day % 1_000
    );
}

/// The proleptic Gregorian date of a day counted from 1970-01-01 (Howard
/// Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

impl JsonRecord for WideRecord {
    fn key(&self) -> &str {
        &self.vin
    }

    fn write_json(&self, out: &mut impl io::Write) -> io::Result<()> {
        out.write_all(self.json.as_bytes())
    }
}

#[cfg(test)]
mod tests;
