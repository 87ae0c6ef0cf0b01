use std::sync::OnceLock;

use proptest::prelude::*;

use super::testing::{input_plan, DEFAULT_TOML};
use super::*;
use crate::{decode_event, RawEvent};

const DESIGN: &str = r#"{"eventType":"IC_RPM","vehicleId":"1HGCM82633A004352","region":"UK","timestamp":1764000000123,"measurement":2450}"#;

fn demo() -> &'static (InputPlan, Decoder) {
    static DEMO: OnceLock<(InputPlan, Decoder)> = OnceLock::new();
    DEMO.get_or_init(|| {
        let plan = input_plan(DEFAULT_TOML);
        let decoder = Decoder::new(&plan);
        (plan, decoder)
    })
}

/// The demo's decoder without the flat fast path: the general way alone.
fn demo_general() -> &'static Decoder {
    static GENERAL: OnceLock<Decoder> = OnceLock::new();
    GENERAL.get_or_init(|| {
        let mut decoder = Decoder::new(&demo().0);
        decoder.flat = false;
        decoder
    })
}

/// The one record `input` decodes to: its vehicle id, time, labels and
/// values (sorted by signal), or the reason it is refused. A refusal must
/// leave the batch as it was.
type Decoded = Result<(String, i64, Vec<String>, Vec<SignalValue>), DecodeErrorKind>;

fn decode(decoder: &Decoder, labels: usize, input: &[u8]) -> Decoded {
    let mut batch = RecordBatch::default();
    // A record before, which a refusal must leave alone.
    let before =
        br#"{"vehicleId":"V0","timestamp":0,"region":"R","eventType":"IC_RPM","measurement":0}"#;
    let _ = decoder.decode_into(before, 1, 1, &mut batch);
    let kept = batch.clone();
    match decoder.decode_into(input, 3, 7, &mut batch) {
        Ok(()) => {
            assert_eq!(batch.len(), kept.len() + 1);
            let r = batch.records.last().unwrap();
            assert_eq!((r.partition, r.offset), (3, 7));
            assert_eq!(batch.labels.len(), r.labels_at as usize + labels);
            assert_eq!(
                batch.values.len(),
                r.values_at as usize + r.values_len as usize
            );
            let mut values = batch.values_of(r).to_vec();
            values.sort_by_key(|v| v.signal);
            let labels = batch
                .labels_of(r, labels)
                .iter()
                .map(|l| l.to_string())
                .collect();
            Ok((r.vehicle_id.to_string(), r.timestamp, labels, values))
        }
        Err(e) => {
            assert_eq!(batch, kept, "a refusal appended: {e}");
            Err(e.kind)
        }
    }
}

fn decode_demo(input: &str) -> Decoded {
    decode(&demo().1, 1, input.as_bytes())
}

/// `decode_event`'s answer as the new decoder gives it.
fn as_record(event: &RawEvent) -> (String, i64, Vec<String>, Vec<SignalValue>) {
    let signal = demo().0.signal_keyed(event.event_type.as_str()).unwrap();
    (
        event.vehicle_id.to_string(),
        event.timestamp,
        vec![event.region.to_string()],
        vec![SignalValue {
            signal,
            value: Value::Integer(event.measurement),
        }],
    )
}

/// The decoder classifies `input` as `decode_event` does, except where
/// serde reads it in ways docs/METRICS.md does not: a top-level array (read
/// as the struct's fields in order) and a repeated field (refused; here its
/// last value counts, tested apart).
fn check_demo(input: &[u8]) -> Result<(), TestCaseError> {
    let old = decode_event(input);
    let first = input.iter().find(|b| !b" \t\r\n".contains(b));
    if first == Some(&b'[') {
        return Ok(());
    }
    if let Err(e) = &old {
        if e.detail.contains("duplicate field") {
            return Ok(());
        }
    }
    let new = decode(&demo().1, 1, input);
    let general = decode(demo_general(), 1, input);
    prop_assert_eq!(
        &new,
        &general,
        "fast and general paths, input {:?}",
        String::from_utf8_lossy(input)
    );
    let old = old.as_ref().map(as_record).map_err(|e| e.kind);
    prop_assert_eq!(new, old, "input {:?}", String::from_utf8_lossy(input));
    Ok(())
}

#[test]
fn flat_narrow_records_take_the_fast_path_and_nothing_else_does() {
    let (plan, decoder) = demo();
    assert!(decoder.flat);
    let mut batch = RecordBatch::default();
    let plain =
        br#"{"eventType":"WARNINGS","vehicleId":"V1","region":"UK","timestamp":5,"measurement":2}"#;
    assert_eq!(decoder.decode_flat(plain, 0, 0, &mut batch), Some(()));
    assert_eq!(batch.len(), 1);
    for other in [
        // Whitespace, an unknown field, a repeated one, an escape, a
        // negative warnings count, an unknown signal: the general way.
        &br#"{ "eventType":"WARNINGS","vehicleId":"V1","region":"UK","timestamp":5,"measurement":2}"#[..],
        br#"{"eventType":"WARNINGS","x":1,"vehicleId":"V1","region":"UK","timestamp":5,"measurement":2}"#,
        br#"{"eventType":"WARNINGS","vehicleId":"V1","vehicleId":"V2","region":"UK","timestamp":5,"measurement":2}"#,
        br#"{"eventType":"WARNINGS","vehicleId":"V\u0031","region":"UK","timestamp":5,"measurement":2}"#,
        br#"{"eventType":"WARNINGS","vehicleId":"V1","region":"UK","timestamp":5,"measurement":-2}"#,
        br#"{"eventType":"OIL","vehicleId":"V1","region":"UK","timestamp":5,"measurement":2}"#,
        br#"{"eventType":"WARNINGS","vehicleId":"V1","region":"UK","timestamp":5,"measurement":2} "#,
    ] {
        assert_eq!(decoder.decode_flat(other, 0, 0, &mut batch), None, "{}", String::from_utf8_lossy(other));
        assert_eq!(batch.len(), 1, "the batch is untouched");
    }
    let nested = input_plan("[input]\nlabels = [\"site.depot\"]");
    assert!(!Decoder::new(&nested).flat);
    let wide = input_plan("[input]\nshape = \"wide\"");
    assert!(!Decoder::new(&wide).flat);
    assert!(plan.narrow.is_some());
}

#[test]
fn decodes_the_demo_event_as_decode_event_does() {
    let (plan, _) = demo();
    let ic = plan.signal_keyed("IC_RPM").unwrap();
    assert_eq!(
        decode_demo(DESIGN),
        Ok((
            "1HGCM82633A004352".into(),
            1_764_000_000_123,
            vec!["UK".into()],
            vec![SignalValue {
                signal: ic,
                value: Value::Integer(2450)
            }]
        ))
    );
    let cases = [
        DESIGN,
        r#" {"measurement" : -1500 , "region":"São Paulo","timestamp":0,"eventType":"ELECTRIC_RPM","x":null,"y":true,"z":"s","w":-7,"vehicleId":"V"} "#,
        r#"{"eventType":"IC_RPM","vehicleId":"V","region":"UK","timestamp":1,"measurement":2,"extra":[1,{"a":[]},"\u00e9"]}"#,
        "{not json",
        "",
        "{}",
        "1 x",
        "\"abc",
        "null",
        "\u{feff}{}",
        r#"{"eventType":"IC_RPM","vehicleId":"V","region":"UK","measurement":1}"#,
        r#"{"eventType":"IC_RPM","vehicleId":"V","region":"UK","timestamp":null,"measurement":1}"#,
        r#"{"eventType":"IC_RPM","vehicleId":"V","region":"UK","timestamp":"1","measurement":1}"#,
        r#"{"eventType":"IC_RPM","vehicleId":"V","region":"UK","timestamp":1,"measurement":1.5}"#,
        r#"{"eventType":"IC_RPM","vehicleId":"V","region":"UK","timestamp":1,"measurement":1e3}"#,
        r#"{"eventType":"IC_RPM","vehicleId":"V","region":"UK","timestamp":1,"measurement":1e400}"#,
        r#"{"eventType":"IC_RPM","vehicleId":"V","region":"UK","timestamp":1,"measurement":-0}"#,
        r#"{"eventType":"IC_RPM","vehicleId":"V","region":"UK","timestamp":1,"measurement":01}"#,
        r#"{"eventType":"IC_RPM","vehicleId":"V","region":"UK","timestamp":9223372036854775808,"measurement":1}"#,
        r#"{"eventType":"IC_RPM","vehicleId":"V","region":"UK","timestamp":-9223372036854775808,"measurement":1}"#,
        r#"{"eventType":"IC_RPM","vehicleId":"V","region":"UK","timestamp":1,"measurement":[1]}"#,
        r#"{"eventType":"OIL","vehicleId":"V","region":"UK","timestamp":1,"measurement":1}"#,
        r#"{"eventType":"OIL","vehicleId":"V","region":"UK","timestamp":1}"#,
        r#"{"eventType":"OIL","vehicleId":"","region":"UK","timestamp":1,"measurement":1}"#,
        r#"{"eventType":"IC_RPM","vehicleId":"","region":"UK","timestamp":1,"measurement":1}"#,
        r#"{"eventType":"IC_RPM","vehicleId":"V","region":"","timestamp":1,"measurement":1}"#,
        r#"{"eventType":"WARNINGS","vehicleId":"V","region":"UK","timestamp":1,"measurement":-1}"#,
        r#"{"eventType":"WARNINGS","vehicleId":"V","region":"UK","timestamp":"x","measurement":-1}"#,
        r#"{"eventType":"IC_RPM","vehicleId":"V","region":"UK","timestamp":1,"measurement":2,}"#,
        r#"{"eventType":"IC_RPM","vehicleId":"V","region":"UK","timestamp":1,"measurement":2} x"#,
        r#"{"eventType":"IC_RPM","vehicleId":"V","region":"UK","timestamp":1,"measurement":2"#,
        r#"{"eventType":"IC_RPM","vehicleId":"V","region":"UK","timestamp":1,"measurement":2,"x":tru}"#,
        r#"{"eventType":"IC_RPM","vehicleId":"V","region":"UK","timestamp":"1", garbage"#,
        r#"{"eventType":7,"vehicleId":"V","region":"UK","timestamp":1,"measurement":2}"#,
        r#"{"eventType":{"nested":1},"vehicleId":"V","region":"UK","timestamp":1,"measurement":2}"#,
        r#"{"eventType":"IC_RPM","vehicleId":"V","region":"UK","timestamp":1,"measurement":2,"x":1e400}"#,
        r#"{"eventType":"IC_RPM","vehicleId":"V","region":"UK","timestamp":1,"measurement":2,"x":[1,]}"#,
        r#"{"eventType":"IC_RPM","vehicleId":"V","region":"UK","timestamp":1,"measurement":2,"x":[1}"#,
        r#"{"eventType":"IC_RPM","vehicleId":"V","region":"UK","timestamp":1,"measurement":2,"x":{"a":1,}}"#,
        r#"{"eventType":"IC_RPM","vehicleId":"V","region":"UK","timestamp":1,"measurement":2,"x":{1:2}}"#,
    ];
    for input in cases {
        check_demo(input.as_bytes()).unwrap();
    }
}

#[test]
fn reads_escapes_as_serde_does() {
    let ok = |input: &str| decode_demo(input).unwrap_or_else(|e| panic!("{input}: {e}"));
    let (vehicle_id, _, labels, values) = ok(
        r#"{"eventType":"IC\u005fRPM","vehicleId":"V\"1\\2\/","region":"S\u00e3o \ud83d\ude97","timestamp":1,"measurement":2}"#,
    );
    assert_eq!(vehicle_id, "V\"1\\2/");
    assert_eq!(labels, ["São 🚗"]);
    assert_eq!(values[0].signal, demo().0.signal_keyed("IC_RPM").unwrap());
    // Escaped keys name the same fields.
    let (vehicle_id, ..) = ok(
        r#"{"\u0065ventType":"IC_RPM","vehicle\u0049d":"V","\u0072\u0065gion":"UK","timestamp":1,"measurement":2}"#,
    );
    assert_eq!(vehicle_id, "V");
    // A long escaped string, past the unescaping buffer's inline part.
    let long = format!("{}\\n{}", "x".repeat(70), "é".repeat(10));
    let input = format!(
        r#"{{"eventType":"IC_RPM","vehicleId":"{long}","region":"UK","timestamp":1,"measurement":2}}"#
    );
    assert_eq!(
        ok(&input).0,
        format!("{}\n{}", "x".repeat(70), "é".repeat(10))
    );
    for input in [
        // Lone and reversed surrogates, bad escapes, in fields the plan reads.
        r#"{"eventType":"IC_RPM","vehicleId":"\ud83d","region":"UK","timestamp":1,"measurement":2}"#,
        r#"{"eventType":"IC_RPM","vehicleId":"\ud83dx","region":"UK","timestamp":1,"measurement":2}"#,
        r#"{"eventType":"IC_RPM","vehicleId":"\ude97\ud83d","region":"UK","timestamp":1,"measurement":2}"#,
        r#"{"eventType":"IC_RPM","vehicleId":"\ud83d\u0041","region":"UK","timestamp":1,"measurement":2}"#,
        r#"{"eventType":"IC_RPM","vehicleId":"\x","region":"UK","timestamp":1,"measurement":2}"#,
        r#"{"eventType":"IC_RPM","vehicleId":"\u00g1","region":"UK","timestamp":1,"measurement":2}"#,
        r#"{"eventType":"IC_RPM","vehicleId":"V","region":"UK","timestamp":"\ud83d","measurement":2}"#,
        r#"{"eventType":"\ud83d","vehicleId":"V","region":"UK","timestamp":1,"measurement":2}"#,
        r#"{"\ud83d":1,"eventType":"IC_RPM","vehicleId":"V","region":"UK","timestamp":1,"measurement":2}"#,
        // In a skipped field a lone surrogate passes, a bad escape does not.
        r#"{"x":"\ud83d","eventType":"IC_RPM","vehicleId":"V","region":"UK","timestamp":1,"measurement":2}"#,
        r#"{"x":{"\ud83d":"\ude97"},"eventType":"IC_RPM","vehicleId":"V","region":"UK","timestamp":1,"measurement":2}"#,
        r#"{"x":"\q","eventType":"IC_RPM","vehicleId":"V","region":"UK","timestamp":1,"measurement":2}"#,
        // A key that unescapes to no field, or to a longer one.
        r#"{"regio\u006e2":"x","eventType":"IC_RPM","vehicleId":"V","region":"UK","timestamp":1,"measurement":2}"#,
    ] {
        check_demo(input.as_bytes()).unwrap();
    }
    // Invalid UTF-8 in a string the plan reads; in one it skips it passes.
    let input = r#"{"x":"ab","eventType":"IC_RPM","vehicleId":"V1","region":"UK","timestamp":1,"measurement":2}"#;
    for marker in ["V1", "ab"] {
        let mut bytes = input.as_bytes().to_vec();
        bytes[input.find(marker).unwrap()] = 0xff;
        check_demo(&bytes).unwrap();
    }
}

#[test]
fn names_with_a_backslash_or_quote_are_read_escaped_only() {
    let plan = input_plan(
        r#"
        [input]
        shape = "wide"
        vehicle_id = 'v\id'
        labels = []
        [[input.signals]]
        name = "speed"
        type = "float"
        path = 'sp"d'
        "#,
    );
    let decoder = Decoder::new(&plan);
    let got = decode(
        &decoder,
        0,
        br#"{"v\\id":"V","timestamp":1,"sp\"d":2.5,"v\\bid":"X"}"#,
    );
    let speed = SignalValue {
        signal: SignalId(0),
        value: Value::Float(2.5),
    };
    assert_eq!(got, Ok(("V".into(), 1, vec![], vec![speed])));
    // Raw `\i` is no escape, `\b` a backspace: neither is `v\id`.
    for input in [
        r#"{"v\bid":"V","timestamp":1}"#,
        r#"{"v\id":"V","timestamp":1}"#,
    ] {
        assert_ne!(
            decode(&decoder, 0, input.as_bytes()).map(|r| r.0),
            Ok("V".into()),
            "{input}"
        );
    }
}

#[test]
fn a_repeated_field_counts_with_its_last_value() {
    let (_, timestamp, labels, values) = decode_demo(
        r#"{"eventType":"OIL","vehicleId":"","region":"UK","timestamp":1,"measurement":2,"timestamp":5,"region":"FR","vehicleId":"V","eventType":"WARNINGS","measurement":3}"#,
    )
    .unwrap();
    assert_eq!((timestamp, labels), (5, vec!["FR".to_string()]));
    assert_eq!(values[0].value, Value::Integer(3));
    assert_eq!(
        decode_demo(
            r#"{"eventType":"IC_RPM","vehicleId":"V","region":"UK","timestamp":1,"measurement":2,"region":null}"#
        ),
        Err(DecodeErrorKind::MissingField)
    );
    // A wrong type is refused wherever it is.
    assert_eq!(
        decode_demo(
            r#"{"eventType":"IC_RPM","vehicleId":"V","region":"UK","timestamp":"1","measurement":2,"timestamp":1}"#
        ),
        Err(DecodeErrorKind::WrongType)
    );
}

#[test]
fn skips_deeply_nested_values_it_does_not_read() {
    for depth in [1, 63, 64, 65, 200] {
        let nested = format!("{}1{}", "[{\"a\":".repeat(depth), "}]".repeat(depth));
        let input = format!(
            r#"{{"x":{nested},"eventType":"IC_RPM","vehicleId":"V","region":"UK","timestamp":1,"measurement":2}}"#
        );
        assert!(decode_demo(&input).is_ok(), "depth {depth}");
        let unbalanced = format!(r#"{{"x":{nested}],"eventType":"IC_RPM"}}"#);
        assert_eq!(decode_demo(&unbalanced), Err(DecodeErrorKind::InvalidJson));
    }
}

const WIDE: &str = r#"
[input]
shape = "wide"
vehicle_id = "vin"
time = "ts"
labels = ["region", "site.depot"]

[[input.signals]]
name = "speed"
type = "float"
min = 0
max = 300

[[input.signals]]
name = "odometer"
type = "integer"

[[input.signals]]
name = "ignition"
type = "boolean"

[[input.signals]]
name = "gear"
type = "state"
states = ["P", "R", "N", "D"]

[[input.signals]]
name = "coolant_c"
type = "float"
path = "signals.coolant_c"

[[input.signals]]
name = "oil_c"
type = "integer"
path = "signals.engine.oil_c"
min = -40
"#;

fn wide() -> &'static Decoder {
    static WIDE_DECODER: OnceLock<Decoder> = OnceLock::new();
    WIDE_DECODER.get_or_init(|| Decoder::new(&input_plan(WIDE)))
}

fn decode_wide(input: &str) -> Decoded {
    decode(wide(), 2, input.as_bytes())
}

/// A wide record with `fields` after the required ones.
fn wide_record(fields: &str) -> String {
    format!(r#"{{"vin":"V1","ts":1000,"region":"UK","site":{{"depot":"D1"}}{fields}}}"#)
}

/// A record's values as (signal, value), or why it is refused.
type Values = Result<Vec<(u16, Value)>, DecodeErrorKind>;

fn wide_values(fields: &str) -> Values {
    decode_wide(&wide_record(fields))
        .map(|(.., values)| values.iter().map(|v| (v.signal.0, v.value)).collect())
}

#[test]
fn decodes_wide_records_with_nested_paths_and_any_subset_of_signals() {
    let input = r#"{"fw":"1.2.3","signals":{"speed":"not this one","coolant_c":88.5,"engine":{"oil_c":-7,"x":[1,2]},"extra":{"a":{}}},
        "region":"UK","speed":72.25,"vin":"1HGCM82633A004352","diag":{"speed":"x","site":{"depot":5}},
        "ignition":true,"odometer":123456,"gear":"D","ts":1764000000123,"site":{"depot":"Leeds","other":null},"tail":[[],{}]}"#;
    let (vehicle_id, timestamp, labels, values) = decode_wide(input).unwrap();
    assert_eq!(vehicle_id, "1HGCM82633A004352");
    assert_eq!(timestamp, 1_764_000_000_123);
    assert_eq!(labels, ["UK", "Leeds"]);
    let values: Vec<(u16, Value)> = values.iter().map(|v| (v.signal.0, v.value)).collect();
    assert_eq!(
        values,
        [
            (0, Value::Float(72.25)),
            (1, Value::Integer(123_456)),
            (2, Value::Boolean(true)),
            (3, Value::State(3)),
            (4, Value::Float(88.5)),
            (5, Value::Integer(-7)),
        ]
    );
    // None, or null, or some: still a record of its vehicle.
    assert_eq!(wide_values(""), Ok(vec![]));
    assert_eq!(
        wide_values(r#","speed":null,"signals":null,"gear":null"#),
        Ok(vec![])
    );
    assert_eq!(
        wide_values(r#","signals":{"engine":{"oil_c":90}},"odometer":-1"#),
        Ok(vec![(1, Value::Integer(-1)), (5, Value::Integer(90))])
    );
}

#[test]
fn types_wide_signals() {
    use DecodeErrorKind::*;
    let cases: [(&str, Values); 22] = [
        (
            r#","odometer":9223372036854775807"#,
            Ok(vec![(1, Value::Integer(i64::MAX))]),
        ),
        (
            r#","odometer":-9223372036854775808"#,
            Ok(vec![(1, Value::Integer(i64::MIN))]),
        ),
        (r#","odometer":9223372036854775808"#, Err(WrongType)),
        (r#","odometer":1.5"#, Err(WrongType)),
        (r#","odometer":1.0"#, Err(WrongType)),
        (r#","odometer":1e3"#, Err(WrongType)),
        (r#","odometer":"1""#, Err(WrongType)),
        (r#","speed":1e2"#, Ok(vec![(0, Value::Float(100.0))])),
        (r#","speed":0.1"#, Ok(vec![(0, Value::Float(0.1))])),
        (r#","speed":-0"#, Ok(vec![(0, Value::Float(-0.0))])),
        (r#","speed":300"#, Ok(vec![(0, Value::Float(300.0))])),
        (r#","speed":300.0000001"#, Err(InvalidValue)),
        (r#","speed":-1"#, Err(InvalidValue)),
        (r#","speed":true"#, Err(WrongType)),
        (r#","speed":1e999"#, Err(InvalidJson)),
        (r#","ignition":false"#, Ok(vec![(2, Value::Boolean(false))])),
        (r#","ignition":"true""#, Err(WrongType)),
        (r#","ignition":1"#, Err(WrongType)),
        (r#","gear":"P""#, Ok(vec![(3, Value::State(0))])),
        (r#","gear":"\u0052""#, Ok(vec![(3, Value::State(1))])),
        (r#","gear":"X""#, Err(InvalidValue)),
        (r#","gear":["D"]"#, Err(WrongType)),
    ];
    for (fields, expected) in cases {
        assert_eq!(wide_values(fields), expected, "{fields}");
    }
    // Floats read exactly as Rust reads them, past the fast path too.
    for text in [
        "1234.567",
        "0.30000000000000004",
        "1.7976931348623157e308",
        "123456789012345678901234567890",
        "5e-324",
        "2.2250738585072014e-308",
    ] {
        let got = wide_values(&format!(r#","speed":0,"signals":{{"coolant_c":{text}}}"#)).unwrap();
        assert_eq!(got[1], (4, Value::Float(text.parse().unwrap())), "{text}");
    }
}

#[test]
fn refuses_wide_records_by_reason() {
    use DecodeErrorKind::*;
    let cases = [
        (
            r#"{"ts":1,"region":"UK","site":{"depot":"D"}}"#,
            MissingField,
        ),
        (
            r#"{"vin":null,"ts":1,"region":"UK","site":{"depot":"D"}}"#,
            MissingField,
        ),
        (
            r#"{"vin":"V","region":"UK","site":{"depot":"D"}}"#,
            MissingField,
        ),
        (r#"{"vin":"V","ts":1,"site":{"depot":"D"}}"#, MissingField),
        (r#"{"vin":"V","ts":1,"region":"UK"}"#, MissingField),
        (
            r#"{"vin":"V","ts":1,"region":"UK","site":null}"#,
            MissingField,
        ),
        (
            r#"{"vin":"V","ts":1,"region":"UK","site":{"depot":null}}"#,
            MissingField,
        ),
        (
            r#"{"vin":"V","ts":1,"region":"UK","site":{}}"#,
            MissingField,
        ),
        (r#"{"vin":"V","ts":1,"region":"UK","site":"D"}"#, WrongType),
        (
            r#"{"vin":"V","ts":1,"region":"UK","site":["D"]}"#,
            WrongType,
        ),
        (
            r#"{"vin":"V","ts":1,"region":"UK","site":{"depot":5}}"#,
            WrongType,
        ),
        (
            r#"{"vin":"V","ts":1,"region":"UK","site":{"depot":{}}}"#,
            WrongType,
        ),
        (
            r#"{"vin":5,"ts":1,"region":"UK","site":{"depot":"D"}}"#,
            WrongType,
        ),
        (
            r#"{"vin":"V","ts":1.5,"region":"UK","site":{"depot":"D"}}"#,
            WrongType,
        ),
        (
            r#"{"vin":"V","ts":1,"region":"UK","site":{"depot":"D"},"signals":3}"#,
            WrongType,
        ),
        (
            r#"{"vin":"V","ts":1,"region":"UK","site":{"depot":"D"},"signals":{"engine":[]}}"#,
            WrongType,
        ),
        (
            r#"{"vin":"","ts":1,"region":"UK","site":{"depot":"D"}}"#,
            InvalidValue,
        ),
        (
            r#"{"vin":"V","ts":1,"region":"UK","site":{"depot":""}}"#,
            InvalidValue,
        ),
        (
            r#"{"vin":"V","ts":1,"region":"UK","site":{"depot":"D"},"signals":{"engine":{"oil_c":-41}}}"#,
            InvalidValue,
        ),
        // Missing before invalid, wherever each is.
        (r#"{"vin":"","ts":1,"region":"UK","site":{}}"#, MissingField),
        (
            r#"{"vin":"V","ts":1,"region":"UK","site":{"depot":"D"}"#,
            InvalidJson,
        ),
        (
            r#"{"vin":"V","ts":1,"region":"UK","site":{"depot":"D"}}}"#,
            InvalidJson,
        ),
        (
            r#"{"vin":"V","ts":1,"region":"UK","site":{"depot":"D",}}"#,
            InvalidJson,
        ),
        ("[]", WrongType),
        ("\"V\"", WrongType),
    ];
    for (input, kind) in cases {
        assert_eq!(decode_wide(input).map(drop), Err(kind), "{input}");
    }
}

#[test]
fn wide_repeats_take_the_last_value() {
    assert_eq!(
        wide_values(r#","speed":1,"gear":"X","speed":2,"gear":"N","odometer":5,"odometer":null"#),
        Ok(vec![(0, Value::Float(2.0)), (3, Value::State(2))])
    );
    let (_, _, labels, _) = decode_wide(
        r#"{"vin":"V","ts":1,"site":{"depot":""},"region":"UK","site":{"depot":"D2"},"region":"FR"}"#,
    )
    .unwrap();
    assert_eq!(labels, ["FR", "D2"]);
}

#[test]
fn converts_every_time_format() {
    use DecodeErrorKind::*;
    let cases = [
        ("epoch_s", "1764000000", Ok(1_764_000_000_000)),
        ("epoch_s", "9223372036854776", Err(InvalidValue)),
        ("epoch_s", "1.5", Err(WrongType)),
        // Times before 1970 or after 9999 are not event times.
        ("epoch_ms", "-1", Err(InvalidValue)),
        ("epoch_ms", "0", Ok(0)),
        ("epoch_ms", "253402300799999", Ok(253_402_300_799_999)),
        ("epoch_ms", "253402300800000", Err(InvalidValue)),
        ("epoch_ms", "\"1\"", Err(WrongType)),
        ("epoch_us", "1764000000123999", Ok(1_764_000_000_123)),
        ("epoch_us", "-1", Err(InvalidValue)),
        ("epoch_us", "999", Ok(0)),
        ("epoch_ns", "1764000000123999999", Ok(1_764_000_000_123)),
        ("epoch_ns", "-1000001", Err(InvalidValue)),
        (
            "rfc3339",
            "\"2026-12-04T11:15:02.12+01:00\"",
            Ok(1_796_379_302_120),
        ),
        (
            "rfc3339",
            "\"2026-12-04T10:15:02.120Z\"",
            Ok(1_796_379_302_120),
        ),
        ("rfc3339", "\"2026-12-04 10:15:02Z\"", Err(InvalidValue)),
        ("rfc3339", "\"\"", Err(InvalidValue)),
        ("rfc3339", "1764000000123", Err(WrongType)),
        ("rfc3339", "null", Err(MissingField)),
    ];
    for (format, time, expected) in cases {
        let plan = input_plan(&WIDE.replace(
            "time = \"ts\"",
            &format!("time = \"ts\"\ntime_format = \"{format}\""),
        ));
        let input = format!(r#"{{"vin":"V","ts":{time},"region":"UK","site":{{"depot":"D"}}}}"#);
        let got = decode(&Decoder::new(&plan), 2, input.as_bytes()).map(|r| r.1);
        assert_eq!(got, expected, "{format} {time}");
    }
}

const NARROW: &str = r#"
[input]
shape = "narrow"
vehicle_id = "vehicle.id"
type_field = "kind"
value_field = "payload.value"
labels = []

[[input.signals]]
name = "speed"
type = "float"
key = "spd"

[[input.signals]]
name = "ignition"
type = "boolean"

[[input.signals]]
name = "gear"
type = "state"
states = ["P", "D"]

[[input.signals]]
name = "count"
type = "integer"
min = 0
max = 10
"#;

#[test]
fn types_narrow_values_by_their_signal_wherever_the_type_field_is() {
    use DecodeErrorKind::*;
    let decoder = Decoder::new(&input_plan(NARROW));
    let cases = [
        (
            r#""kind":"spd","payload":{"value":1}"#,
            Ok((0, Value::Float(1.0))),
        ),
        (
            r#""payload":{"value":1.5},"kind":"spd""#,
            Ok((0, Value::Float(1.5))),
        ),
        (
            r#""payload":{"value":true},"kind":"ignition""#,
            Ok((1, Value::Boolean(true))),
        ),
        (
            r#""kind":"gear","payload":{"value":"D","other":{}}"#,
            Ok((2, Value::State(1))),
        ),
        (
            r#""kind":"count","payload":{"value":10}"#,
            Ok((3, Value::Integer(10))),
        ),
        (
            r#""kind":"speed","payload":{"value":1}"#,
            Err(UnknownEventType),
        ),
        (
            r#""kind":"nope","payload":{"value":1}"#,
            Err(UnknownEventType),
        ),
        (r#""kind":"nope""#, Err(MissingField)),
        (r#""kind":"spd","payload":null"#, Err(MissingField)),
        (
            r#""kind":"spd","payload":{"value":null}"#,
            Err(MissingField),
        ),
        (r#""payload":{"value":1}"#, Err(MissingField)),
        (r#""kind":"spd","payload":{"value":true}"#, Err(WrongType)),
        (r#""payload":{"value":1.5},"kind":"count""#, Err(WrongType)),
        (r#""kind":"nope","payload":{"value":[1]}"#, Err(WrongType)),
        (
            r#""kind":"count","payload":{"value":11}"#,
            Err(InvalidValue),
        ),
        (
            r#""kind":"gear","payload":{"value":"N"}"#,
            Err(InvalidValue),
        ),
        (r#""kind":1,"payload":{"value":1}"#, Err(WrongType)),
    ];
    for (fields, expected) in cases {
        let input = format!(r#"{{"vehicle":{{"id":"V"}},"timestamp":5,{fields}}}"#);
        let got = decode(&decoder, 0, input.as_bytes()).map(|(.., values)| {
            assert_eq!(values.len(), 1);
            (values[0].signal.0, values[0].value)
        });
        assert_eq!(got, expected, "{fields}");
    }
}

#[test]
fn a_path_read_as_two_roles_feeds_both() {
    let plan = input_plan("[input]\nlabels = [\"vehicleId\"]");
    let decoder = Decoder::new(&plan);
    let got = decode(&decoder, 1, DESIGN.as_bytes()).unwrap();
    assert_eq!(
        (got.0.as_str(), got.2),
        ("1HGCM82633A004352", vec!["1HGCM82633A004352".to_string()])
    );
}

fn demo_json() -> impl Strategy<Value = String> {
    let event_type = prop_oneof![
        3 => Just("IC_RPM".to_string()),
        3 => Just("ELECTRIC_RPM".to_string()),
        3 => Just("WARNINGS".to_string()),
        1 => "[A-Z_]{0,12}",
    ];
    let string = prop_oneof![
        4 => "[0-9A-Z]{17}",
        4 => "[a-zA-Z é\"\\\\/\u{1}\u{1F697}-]{1,30}",
        1 => Just(String::new()),
    ];
    let number = prop_oneof![
        4 => any::<i64>().prop_map(|n| n.to_string()),
        4 => (-2000i64..2000).prop_map(|n| n.to_string()),
        3 => prop_oneof![
            Just("-0"),
            Just("1.5"),
            Just("1e3"),
            Just("1E+2"),
            Just("00"),
            Just("-9223372036854775808"),
            Just("9223372036854775808"),
            Just("-9223372036854775809"),
            Just("99999999999999999999"),
            Just("1e400"),
            Just("null"),
            Just("\"7\""),
            Just("true"),
            Just("[1]"),
            Just("{}"),
        ]
        .prop_map(str::to_string),
    ];
    let extra = prop_oneof![
        8 => Just(""),
        1 => Just(r#""extra":[1,2]"#),
        1 => Just(r#""x":null"#),
        1 => Just(r#""y":"pl\u00e9in""#),
        1 => Just(r#""z":-12.5e-3"#),
        1 => Just(r#""q":{"a":[{"b":"\ud83d"}],"c":1e400}"#),
        1 => Just(r#""timestamp":5"#),
        1 => Just(r#""\u0072egion":"FR""#),
        1 => Just(r#""regio":"FR""#),
    ];
    let ws = prop_oneof![Just(""), Just(" "), Just("\n\t"), Just("\r ")];
    (
        (event_type, string.clone(), string, number.clone(), number),
        (extra, any::<proptest::sample::Index>(), ws),
        (
            proptest::collection::vec(proptest::bool::weighted(0.95), 5),
            proptest::collection::vec(proptest::bool::weighted(0.2), 5),
        ),
    )
        .prop_map(
            |((t, v, r, ts, m), (extra, shuffle, ws), (present, escape))| {
                // Strings as serde writes them, or with every char above ASCII
                // as a `\u` escape (surrogate pairs past the BMP).
                let json_str = |s: &str, escape: bool| {
                    let plain = serde_json::to_string(s).unwrap();
                    if !escape {
                        return plain;
                    }
                    plain
                        .chars()
                        .map(|c| match c {
                            c if c.is_ascii() => c.to_string(),
                            c => c
                                .encode_utf16(&mut [0; 2])
                                .iter()
                                .map(|u| format!("\\u{u:04x}"))
                                .collect(),
                        })
                        .collect()
                };
                let key = |k: &str, escape: bool| {
                    if escape {
                        format!("\"\\u{:04X}{}\"", k.as_bytes()[0], &k[1..])
                    } else {
                        format!("\"{k}\"")
                    }
                };
                let mut fields: Vec<String> = [
                    format!(
                        "{}:{}",
                        key("eventType", escape[0]),
                        json_str(&t, escape[0])
                    ),
                    format!(
                        "{}:{}",
                        key("vehicleId", escape[1]),
                        json_str(&v, escape[1])
                    ),
                    format!("{}:{}", key("region", escape[2]), json_str(&r, escape[2])),
                    format!("{}:{ts}", key("timestamp", escape[3])),
                    format!("{}:{m}", key("measurement", escape[4])),
                ]
                .into_iter()
                .zip(present)
                .filter_map(|(f, keep)| keep.then_some(f))
                .collect();
                if !extra.is_empty() {
                    fields.push(extra.to_string());
                }
                let n = fields.len().max(1);
                fields.rotate_left(shuffle.index(n) % n);
                format!("{ws}{{{ws}{}{ws}}}{ws}", fields.join(&format!("{ws},{ws}")))
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn classifies_generated_demo_records_as_decode_event(json in demo_json()) {
        check_demo(json.as_bytes())?;
    }

    #[test]
    fn classifies_mutated_demo_records_as_decode_event(
        json in demo_json(),
        at in any::<proptest::sample::Index>(),
        byte in prop_oneof![
            any::<u8>(), Just(b'"'), Just(b','), Just(b'}'), Just(b'{'), Just(b'['),
            Just(b'\\'), Just(b'-'), Just(b'.'), Just(b'e'), Just(b'0'), Just(b':'), Just(0xff),
        ],
        op in 0..4u8,
    ) {
        let mut bytes = json.into_bytes();
        let i = at.index(bytes.len() + 1);
        match op {
            0 => bytes.truncate(i),
            1 => bytes.insert(i, byte),
            2 if i < bytes.len() => bytes[i] = byte,
            _ if i < bytes.len() => {
                bytes.remove(i);
            }
            _ => {}
        }
        check_demo(&bytes)?;
    }

    #[test]
    fn classifies_arbitrary_bytes_as_decode_event(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        check_demo(&bytes)?;
    }

    #[test]
    fn takes_every_plain_demo_event(
        t in 0..3usize,
        vin in "[0-9A-HJ-NPR-Z]{17}",
        region in ".{1,30}",
        ts in crate::EVENT_TIMES,
        m in any::<i64>(),
    ) {
        let event_type = [crate::EventType::IcRpm, crate::EventType::ElectricRpm, crate::EventType::Warnings][t];
        let e = RawEvent {
            event_type,
            vehicle_id: vin.as_str().into(),
            region: region.as_str().into(),
            timestamp: ts,
            measurement: if t == 2 { m.saturating_abs() } else { m },
        };
        prop_assert_eq!(decode_demo(&e.to_json()), Ok(as_record(&e)));
    }

    #[test]
    fn reads_floats_as_rust_does(f in any::<f64>().prop_filter("finite", |f| f.is_finite()), exp in any::<bool>()) {
        let text = if exp { format!("{f:e}") } else { format!("{f}") };
        let got = wide_values(&format!(r#","signals":{{"coolant_c":{text}}}"#)).unwrap();
        prop_assert_eq!(got, vec![(4, Value::Float(text.parse().unwrap()))]);
    }
}
