//! `decode`: the plan-driven record decoder (crates/core/src/decode.rs) on
//! arbitrary bytes as one message value.
//!
//! - For each narrow plan whose records take the flat fast path
//!   (decode/flat.rs) — the reference demo's, and two declared ones with
//!   more labels, other time units, ranges, signal keys and states — the
//!   decoder with its fast path and the general way alone (decode/json.rs)
//!   give the same record (vehicle id, time, labels, values) or refuse with
//!   the same reason.
//! - For the demo's plan that answer is also the one of `decode_event`, the
//!   plain serde reading of the demo's events, except where docs/METRICS.md
//!   says the two read differently (as decode/tests.rs `check_demo`).
//! - For every plan, the wide one of config/examples/wide-fleet.toml too: a
//!   refusal leaves the batch as it was, a record is appended whole, and the
//!   answer does not depend on what the batch held before.
#![no_main]

use std::sync::OnceLock;

use fleet_core::decode::Decoder;
use fleet_core::{decode_event, DecodeErrorKind, RecordBatch, SignalValue};
use fleet_plan::{InputPlan, MetricPlan};
use libfuzzer_sys::fuzz_target;

/// A narrow plan of number signals: three labels, epoch seconds, a range,
/// a signal whose key is not its name.
const NARROW_NUMBERS: &str = r#"
[input]
vehicle_id = "vin"
time = "ts"
time_format = "epoch_s"
labels = ["region", "depot", "fleet"]
type_field = "signal"
value_field = "value"

[[input.signals]]
name = "speed"
type = "float"
min = 0
max = 300

[[input.signals]]
name = "odometer"
type = "integer"
key = "ODO"
min = 0

[[input.signals]]
name = "rpm"
type = "integer"

[[metrics]]
name = "records"
help = "Records."
function = "count"
"#;

/// A narrow plan of state signals, times in microseconds, no label.
const NARROW_STATES: &str = r#"
[input]
time_format = "epoch_us"
labels = []

[[input.signals]]
name = "gear"
type = "state"
states = ["P", "R", "N", "D"]

[[input.signals]]
name = "door"
type = "state"
key = "DOOR"
states = ["open", "closed", "ajar\"quoted"]

[[metrics]]
name = "records"
help = "Records."
function = "count"
"#;

const WIDE: &str = include_str!("../../config/examples/wide-fleet.toml");

/// A plan's decoders, and a valid record of it to put in the batch first.
struct Case {
    name: &'static str,
    labels: usize,
    decoder: Decoder,
    /// The same without the fast path, for plans that have one.
    general: Option<Decoder>,
    before: &'static [u8],
}

fn case(name: &'static str, input: InputPlan, before: &'static [u8], fast: bool) -> Case {
    let decoder = Decoder::new(&input);
    assert_eq!(decoder.takes_fast_path(), fast, "{name}: the fast path");
    let general = fast.then(|| Decoder::new(&input).without_fast_path());
    let labels = input.labels.len();
    let case = Case {
        name,
        labels,
        decoder,
        general,
        before,
    };
    let mut batch = RecordBatch::default();
    if let Err(e) = case.decoder.decode_into(before, 1, 1, &mut batch) {
        panic!("{name}: the record put first is refused: {e}");
    }
    case
}

fn plan(toml: &str) -> InputPlan {
    match MetricPlan::from_toml(toml, &[]) {
        Ok(plan) => plan.input,
        Err(problems) => panic!("a plan of the target is invalid: {problems:?}"),
    }
}

fn cases() -> &'static [Case] {
    static CASES: OnceLock<Vec<Case>> = OnceLock::new();
    CASES.get_or_init(|| {
        vec![
            case(
                "demo",
                MetricPlan::reference_demo().input,
                br#"{"eventType":"IC_RPM","vehicleId":"V0","region":"R","timestamp":0,"measurement":0}"#,
                true,
            ),
            case(
                "narrow numbers",
                plan(NARROW_NUMBERS),
                br#"{"signal":"ODO","vin":"V0","ts":1,"region":"R","depot":"D","fleet":"F","value":5}"#,
                true,
            ),
            case(
                "narrow states",
                plan(NARROW_STATES),
                br#"{"eventType":"gear","vehicleId":"V0","timestamp":1,"measurement":"P"}"#,
                true,
            ),
            case(
                "wide",
                plan(WIDE),
                br#"{"vin":"V0","ts":"2026-01-01T00:00:00Z","region":"R","site":{"depot":"D"}}"#,
                false,
            ),
        ]
    })
}

/// The record `input` decodes to — vehicle id, time, labels, values sorted
/// by signal — or the kind of its refusal.
type Decoded = Result<(String, i64, Vec<String>, Vec<SignalValue>), DecodeErrorKind>;

/// Decodes `input` into a batch holding `before` (when given), checking
/// that a refusal leaves the batch as it was and a record is whole.
fn decode(case: &Case, decoder: &Decoder, before: Option<&[u8]>, input: &[u8]) -> Decoded {
    let mut batch = RecordBatch::default();
    if let Some(before) = before {
        decoder.decode_into(before, 1, 1, &mut batch).unwrap();
    }
    let kept = batch.clone();
    let name = case.name;
    match decoder.decode_into(input, 3, 7, &mut batch) {
        Ok(()) => {
            assert_eq!(batch.len(), kept.len() + 1, "{name}: one record more");
            assert!(batch.records.starts_with(&kept.records), "{name}");
            assert!(batch.labels.starts_with(&kept.labels), "{name}");
            assert!(batch.values.starts_with(&kept.values), "{name}");
            let r = batch.records.last().unwrap();
            assert_eq!((r.partition, r.offset), (3, 7), "{name}");
            assert_eq!(r.labels_at as usize, kept.labels.len(), "{name}");
            assert_eq!(
                batch.labels.len(),
                kept.labels.len() + case.labels,
                "{name}"
            );
            assert_eq!(r.values_at as usize, kept.values.len(), "{name}");
            let values_end = kept.values.len() + usize::from(r.values_len);
            assert_eq!(batch.values.len(), values_end, "{name}");
            assert!(!r.vehicle_id.is_empty(), "{name}: an empty vehicle id");
            assert!(fleet_core::EVENT_TIMES.contains(&r.timestamp), "{name}");
            let labels: Vec<String> = batch
                .labels_of(r, case.labels)
                .iter()
                .map(|l| l.to_string())
                .collect();
            assert!(
                labels.iter().all(|l| !l.is_empty()),
                "{name}: an empty label"
            );
            let mut values = batch.values_of(r).to_vec();
            values.sort_by_key(|v| v.signal);
            Ok((r.vehicle_id.to_string(), r.timestamp, labels, values))
        }
        Err(e) => {
            assert_eq!(batch, kept, "{name}: a refusal ({e}) changed the batch");
            Err(e.kind)
        }
    }
}

/// `decode_event`'s answer as the decoder gives it for the demo's plan;
/// `None` where docs/METRICS.md says the two read `input` differently: a
/// top-level array (serde reads it as the fields in order), a repeated field
/// (serde refuses it; the decoder keeps the last value), and nesting deeper
/// than serde_json's recursion limit in a value the decoder skips.
fn decode_event_answer(input: &[u8]) -> Option<Decoded> {
    let first = input.iter().find(|b| !b" \t\r\n".contains(b));
    if first == Some(&b'[') {
        return None;
    }
    let answer = decode_event(input);
    if let Err(e) = &answer {
        if e.detail.contains("duplicate field") || e.detail.contains("recursion limit") {
            return None;
        }
    }
    static DEMO: OnceLock<InputPlan> = OnceLock::new();
    let demo = DEMO.get_or_init(|| MetricPlan::reference_demo().input);
    Some(answer.map_err(|e| e.kind).map(|event| {
        let signal = demo.signal_keyed(event.event_type.as_str()).unwrap();
        (
            event.vehicle_id.to_string(),
            event.timestamp,
            vec![event.region.to_string()],
            vec![SignalValue {
                signal,
                value: fleet_plan::Value::Integer(event.measurement),
            }],
        )
    }))
}

fuzz_target!(|input: &[u8]| {
    for case in cases() {
        let alone = decode(case, &case.decoder, None, input);
        let after = decode(case, &case.decoder, Some(case.before), input);
        assert_eq!(
            alone, after,
            "{}: the answer depends on the batch",
            case.name
        );
        if let Some(general) = &case.general {
            let general = decode(case, general, Some(case.before), input);
            assert_eq!(
                after, general,
                "{}: the fast path and the general way differ",
                case.name
            );
        }
        if case.name == "demo" {
            if let Some(expected) = decode_event_answer(input) {
                assert_eq!(after, expected, "demo: the decoder and decode_event differ");
            }
        }
    }
});
