//! Records encoded by the reference libraries (prost-reflect's dynamic
//! messages, apache-avro) decode to exactly what the JSON decoder makes of
//! the same record in JSON; schemas that do not fit `[input]` are refused
//! by key.

use std::path::Path;

use apache_avro::types::Value as AvroValue;
use fleet_core::decode::{Decoder, RecordSchema};
use fleet_core::record::RecordBatch;
use fleet_core::{DecodeError, DecodeErrorKind};
use fleet_plan::{InputPlan, MetricPlan};
use prost::Message;
use prost_reflect::{DynamicMessage, ReflectMessage, Value as ProtoValue};
use serde_json::{json, Value as Json};

use super::*;

const PROTO: &str = r#"
syntax = "proto3";
package fleet.v1;

enum Gear { P = 0; R = 1; N = 2; D = 3; }
message Site { string depot = 1; }
message Signals { optional double coolant_c = 1; }

message Record {
  string vin = 1;
  int64 ts = 2;
  string region = 3;
  Site site = 4;
  optional double speed_kmh = 5;
  optional Gear gear = 6;
  optional sint32 soc_pct = 7;
  Signals signals = 8;
  optional bool charging = 9;
  repeated int32 history = 10;
  optional string note = 11;
}
"#;

/// The `[input]` both formats are read with: wide, nested, every type.
fn input(format: &str, schema_file: &Path, message: &str) -> InputPlan {
    let toml = format!(
        r#"
[input]
format = "{format}"
schema_file = "{}"
message = "{message}"
shape = "wide"
vehicle_id = "vin"
time = "ts"
time_format = "epoch_ms"
labels = ["region", "site.depot"]
[[input.signals]]
name = "speed_kmh"
type = "float"
max = 250.0
[[input.signals]]
name = "gear"
type = "state"
states = ["P", "R", "N", "D"]
[[input.signals]]
name = "soc_pct"
type = "integer"
[[input.signals]]
name = "coolant_c"
type = "float"
path = "signals.coolant_c"
[[input.signals]]
name = "charging"
type = "boolean"
[[metrics]]
name = "records"
help = "Records."
function = "count"
"#,
        schema_file.display()
    );
    match MetricPlan::from_toml(&toml, &[]) {
        Ok(plan) => plan.input,
        Err(problems) => panic!("{problems:?}"),
    }
}

fn json_decoder(plan: &InputPlan) -> Decoder {
    let mut json = plan.clone();
    json.format = RecordFormat::Json;
    Decoder::new(&json)
}

/// One record decoded, its values in signal order (a record's values come
/// in the order its fields do, which differs between formats).
fn decode(decoder: &Decoder, bytes: &[u8]) -> Result<RecordBatch, DecodeError> {
    let mut batch = RecordBatch::with_capacity(1);
    decoder.decode_into(bytes, 3, 42, &mut batch)?;
    batch.values.sort_by_key(|v| v.signal);
    Ok(batch)
}

fn proto_setup(dir: &Path) -> (InputPlan, Decoder, MessageDescriptor) {
    let file = dir.join("fleet.proto");
    std::fs::write(&file, PROTO).unwrap();
    let plan = input("protobuf", &file, "fleet.v1.Record");
    let schema = load_file(&plan).unwrap();
    let (decoder, problems) = Decoder::for_schema(&plan, &schema);
    assert_eq!(problems, []);
    let pool = protox::compile([&file], [dir]).unwrap();
    let pool = DescriptorPool::from_file_descriptor_set(pool).unwrap();
    let message = pool.get_message_by_name("fleet.v1.Record").unwrap();
    (plan, decoder, message)
}

/// The Protobuf encoding of a JSON record, by prost-reflect's own mapping.
fn to_proto(message: &MessageDescriptor, record: &Json) -> Vec<u8> {
    let mut m = DynamicMessage::new(message.clone());
    fill(&mut m, record);
    m.encode_to_vec()
}

fn fill(m: &mut DynamicMessage, record: &Json) {
    for (name, value) in record.as_object().unwrap() {
        let field = m.descriptor().get_field_by_name(name).unwrap();
        let v = match (field.kind(), value) {
            (Kind::Message(inner), Json::Object(_)) => {
                let mut sub = DynamicMessage::new(inner);
                fill(&mut sub, value);
                ProtoValue::Message(sub)
            }
            (Kind::Enum(e), Json::String(s)) => {
                ProtoValue::EnumNumber(e.get_value_by_name(s.as_str()).unwrap().number())
            }
            (Kind::Double, v) => ProtoValue::F64(v.as_f64().unwrap()),
            (Kind::Int64, v) => ProtoValue::I64(v.as_i64().unwrap()),
            (Kind::Sint32 | Kind::Int32, v) => ProtoValue::I32(v.as_i64().unwrap() as i32),
            (Kind::Bool, v) => ProtoValue::Bool(v.as_bool().unwrap()),
            (Kind::String, v) => ProtoValue::String(v.as_str().unwrap().to_owned()),
            (kind, v) => panic!("{kind:?} {v}"),
        };
        m.set_field(&field, v);
    }
}

fn full_record() -> Json {
    json!({
        "vin": "1HGCM82633A004352", "ts": 1_764_000_000_123_i64, "region": "UK",
        "site": {"depot": "north"}, "speed_kmh": 87.5, "gear": "D", "soc_pct": -3,
        "signals": {"coolant_c": 91.25}, "charging": false, "note": "ignored"
    })
}

#[test]
fn protobuf_records_decode_as_their_json_does() {
    let dir = tempfile::tempdir().unwrap();
    let (plan, decoder, message) = proto_setup(dir.path());
    let json = json_decoder(&plan);
    let mut partial = full_record();
    for absent in ["speed_kmh", "gear", "charging", "note"] {
        partial.as_object_mut().unwrap().remove(absent);
    }
    let mut beyond_utf16 = full_record();
    beyond_utf16["region"] = json!("Ünïcödé 🚗 région");
    beyond_utf16["vin"] = json!("VIN-WITH-A-LONG-NAME-BEYOND-INLINE-CAPACITY");
    for record in [full_record(), partial, beyond_utf16] {
        let want = decode(&json, record.to_string().as_bytes()).unwrap();
        let got = decode(&decoder, &to_proto(&message, &record)).unwrap();
        assert_eq!(got, want, "{record}");
    }
}

#[test]
fn protobuf_refusals_match_the_json_ones() {
    let dir = tempfile::tempdir().unwrap();
    let (plan, decoder, message) = proto_setup(dir.path());
    let json = json_decoder(&plan);
    // Out of range; a state past the enum; proto3's default for an absent
    // vin ("") and region.
    let mut fast = full_record();
    fast["speed_kmh"] = json!(300.0);
    let mut no_vin = full_record();
    no_vin.as_object_mut().unwrap().remove("vin");
    let mut json_no_vin = no_vin.clone();
    json_no_vin["vin"] = json!("");
    let mut no_site = full_record();
    no_site.as_object_mut().unwrap().remove("site");
    let mut json_no_site = no_site.clone();
    json_no_site["site"] = json!({"depot": ""});
    for (record, as_json) in [
        (fast.clone(), fast),
        (no_vin, json_no_vin),
        (no_site, json_no_site),
    ] {
        let want = decode(&json, as_json.to_string().as_bytes()).unwrap_err();
        let got = decode(&decoder, &to_proto(&message, &record)).unwrap_err();
        assert_eq!(got, want, "{record}");
    }
}

#[test]
fn protobuf_damage_is_malformed_or_of_the_wrong_type_and_leaves_the_batch_alone() {
    let dir = tempfile::tempdir().unwrap();
    let (_, decoder, message) = proto_setup(dir.path());
    let good = to_proto(&message, &full_record());
    let mut batch = RecordBatch::with_capacity(4);
    decoder.decode_into(&good, 0, 0, &mut batch).unwrap();
    let kind = |bytes: &[u8], batch: &mut RecordBatch| {
        decoder.decode_into(bytes, 0, 1, batch).unwrap_err().kind
    };
    for cut in [1, good.len() / 2, good.len() - 1] {
        assert_eq!(kind(&good[..cut], &mut batch), DecodeErrorKind::Malformed);
    }
    // speed_kmh (field 5, a double) sent as a varint.
    let mut wrong = good.clone();
    wrong.extend([5 << 3, 7]);
    assert_eq!(kind(&wrong, &mut batch), DecodeErrorKind::WrongType);
    // A region that is not UTF-8.
    let mut bad_text = good.clone();
    bad_text.extend([3 << 3 | 2, 2, 0xc3, 0x28]);
    assert_eq!(kind(&bad_text, &mut batch), DecodeErrorKind::Malformed);
    // A NaN speed.
    let mut nan = good.clone();
    nan.push(5 << 3 | 1);
    nan.extend(f64::NAN.to_le_bytes());
    assert_eq!(kind(&nan, &mut batch), DecodeErrorKind::InvalidValue);
    // The repeated field no path reads is skipped, packed or not.
    let mut skipped = good.clone();
    skipped.extend([10 << 3 | 2, 2, 1, 2, 10 << 3, 9]);
    decoder.decode_into(&skipped, 0, 2, &mut batch).unwrap();
    assert_eq!(batch.records.len(), 2);
    assert_eq!(batch.records[1].offset, 2);
}

#[test]
fn a_protobuf_record_of_a_newer_schema_decodes_by_field_number() {
    let dir = tempfile::tempdir().unwrap();
    let (plan, decoder, _) = proto_setup(dir.path());
    // v2 adds fields of every wire type and a nested message.
    let v2 = PROTO.replace(
        "optional string note = 11;",
        "optional string note = 11; fixed32 a = 12; double b = 13; Site c = 14; sfixed64 d = 15;",
    );
    let v2_dir = dir.path().join("v2");
    std::fs::create_dir(&v2_dir).unwrap();
    std::fs::write(v2_dir.join("fleet.proto"), v2).unwrap();
    let set = protox::compile(["fleet.proto"], [&v2_dir]).unwrap();
    let pool = DescriptorPool::from_file_descriptor_set(set).unwrap();
    let message = pool.get_message_by_name("fleet.v1.Record").unwrap();
    let mut record = full_record();
    record["a"] = json!(7);
    let mut m = DynamicMessage::new(message.clone());
    fill(&mut m, &full_record());
    m.set_field_by_name("a", ProtoValue::U32(7));
    m.set_field_by_name("b", ProtoValue::F64(1.5));
    let mut site = DynamicMessage::new(pool.get_message_by_name("fleet.v1.Site").unwrap());
    site.set_field_by_name("depot", ProtoValue::String("x".into()));
    m.set_field_by_name("c", ProtoValue::Message(site));
    m.set_field_by_name("d", ProtoValue::I64(-9));
    let want = decode(&json_decoder(&plan), full_record().to_string().as_bytes()).unwrap();
    assert_eq!(decode(&decoder, &m.encode_to_vec()).unwrap(), want);
}

#[test]
fn a_descriptor_set_serves_as_the_proto_file_does() {
    let dir = tempfile::tempdir().unwrap();
    let (_, decoder, message) = proto_setup(dir.path());
    let set = protox::compile(["fleet.proto"], [dir.path()]).unwrap();
    let file = dir.path().join("fleet.binpb");
    std::fs::write(&file, set.encode_to_vec()).unwrap();
    let plan = input("protobuf", &file, "fleet.v1.Record");
    let schema = load_file(&plan).unwrap();
    let (from_set, _) = Decoder::for_schema(&plan, &schema);
    let bytes = to_proto(&message, &full_record());
    assert_eq!(decode(&from_set, &bytes), decode(&decoder, &bytes));
}

fn problems(plan: &InputPlan) -> Vec<(String, String)> {
    load_file(plan).unwrap_err().problems
}

#[test]
fn a_protobuf_schema_that_does_not_fit_the_input_is_refused_by_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("fleet.proto");
    std::fs::write(&file, PROTO).unwrap();
    let unknown = input("protobuf", &file, "fleet.v1.Nope");
    let p = problems(&unknown);
    assert_eq!(p[0].0, "input.message");
    assert!(p[0].1.contains("fleet.v1.Record"), "{p:?}");

    let changed = |from: &str, to: &str| {
        std::fs::write(&file, PROTO.replace(from, to)).unwrap();
        problems(&input("protobuf", &file, "fleet.v1.Record"))
    };
    let p = changed(
        "optional sint32 soc_pct = 7;",
        "optional double soc_pct = 7;",
    );
    assert_eq!(p[0].0, "input.signals.soc_pct.path");
    assert!(p[0].1.contains("soc_pct is a double"), "{p:?}");
    let p = changed("Signals signals = 8;", "repeated Signals signals = 8;");
    assert_eq!(p[0].0, "input.signals.coolant_c.path");
    assert!(p[0].1.contains("repeated"), "{p:?}");
    let p = changed("string region = 3;", "string area = 3;");
    assert_eq!(
        p[0],
        (
            "input.labels".into(),
            "message fleet.v1.Record has no field \"region\"".into()
        )
    );
    let p = changed("int64 ts = 2;", "string ts = 2;");
    assert_eq!(p[0].0, "input.time");
    let p = changed("syntax = \"proto3\";", "syntax = \"proto3\"; message {");
    assert_eq!(p[0].0, "input.schema_file");
    std::fs::remove_file(&file).unwrap();
    assert_eq!(problems(&unknown)[0].0, "input.schema_file");
}

const AVSC: &str = r#"{
  "type": "record", "name": "Record", "namespace": "fleet.v1",
  "fields": [
    {"name": "vin", "type": "string"},
    {"name": "extras", "type": {"type": "map", "values": {"type": "array", "items": "double"}}},
    {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    {"name": "region", "type": "string"},
    {"name": "site", "type": {"type": "record", "name": "Site", "fields": [
        {"name": "code", "type": {"type": "fixed", "name": "Code", "size": 3}},
        {"name": "depot", "type": "string"}]}},
    {"name": "speed_kmh", "type": ["null", "double"], "default": null},
    {"name": "gear", "type": ["null", {"type": "enum", "name": "Gear", "symbols": ["P", "R", "N", "D"]}], "default": null},
    {"name": "soc_pct", "type": ["null", "int"], "default": null},
    {"name": "signals", "type": ["null", {"type": "record", "name": "Signals", "fields": [
        {"name": "coolant_c", "type": ["null", "float"], "default": null}]}], "default": null},
    {"name": "charging", "type": ["null", "boolean"], "default": null},
    {"name": "note", "type": ["null", "string", "bytes"], "default": null}
  ]
}"#;

fn avro_setup(dir: &Path, schema: &str) -> (InputPlan, Decoder, apache_avro::Schema) {
    let file = dir.join("fleet.avsc");
    std::fs::write(&file, schema).unwrap();
    let plan = input("avro", &file, "");
    let loaded = load_file(&plan).unwrap();
    assert!(matches!(loaded, RecordSchema::Avro(_)));
    let (decoder, problems) = Decoder::for_schema(&plan, &loaded);
    assert_eq!(problems, []);
    (
        plan,
        decoder,
        apache_avro::Schema::parse_str(schema).unwrap(),
    )
}

/// The Avro datum of a JSON record, resolved against `schema` by apache-avro
/// (absent fields take their defaults).
fn to_avro(schema: &apache_avro::Schema, record: &Json) -> Vec<u8> {
    let mut record = record.clone();
    let fields = record.as_object_mut().unwrap();
    fields
        .entry("extras")
        .or_insert(json!({"a": [1.0, 2.0], "b": []}));
    fields.entry("site").or_insert(json!({}));
    if let Some(site) = fields.get_mut("site").and_then(Json::as_object_mut) {
        site.entry("code").or_insert(json!([65, 66, 67]));
    }
    let value = avro_value(&record);
    apache_avro::to_avro_datum(schema, value.resolve(schema).unwrap()).unwrap()
}

/// JSON as apache-avro values: objects as records (unions and enums are
/// then resolved by the library against the schema).
fn avro_value(json: &Json) -> AvroValue {
    match json {
        Json::Object(o) if o.contains_key("a") => AvroValue::Map(
            o.iter()
                .map(|(k, v)| (k.clone(), AvroValue::from(v.clone())))
                .map(|(k, v)| match v {
                    AvroValue::Array(items) => (
                        k,
                        AvroValue::Array(
                            items
                                .into_iter()
                                .map(|i| match i {
                                    AvroValue::Long(l) => AvroValue::Double(l as f64),
                                    AvroValue::Double(d) => AvroValue::Double(d),
                                    other => other,
                                })
                                .collect(),
                        ),
                    ),
                    other => (k, other),
                })
                .collect(),
        ),
        Json::Object(o) => AvroValue::Record(
            o.iter()
                .map(|(k, v)| {
                    let v = match (k.as_str(), v) {
                        ("code", Json::Array(bytes)) => AvroValue::Fixed(
                            3,
                            bytes.iter().map(|b| b.as_u64().unwrap() as u8).collect(),
                        ),
                        ("gear", Json::String(s)) => AvroValue::Enum(
                            ["P", "R", "N", "D"].iter().position(|g| g == s).unwrap() as u32,
                            s.clone(),
                        ),
                        ("soc_pct", Json::Number(n)) => AvroValue::Int(n.as_i64().unwrap() as i32),
                        ("ts", Json::Number(n)) => AvroValue::TimestampMillis(n.as_i64().unwrap()),
                        ("coolant_c", Json::Number(n)) => {
                            AvroValue::Float(n.as_f64().unwrap() as f32)
                        }
                        _ => avro_value(v),
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        other => AvroValue::from(other.clone()),
    }
}

#[test]
fn avro_records_decode_as_their_json_does() {
    let dir = tempfile::tempdir().unwrap();
    let (plan, decoder, schema) = avro_setup(dir.path(), AVSC);
    let json = json_decoder(&plan);
    let mut partial = full_record();
    for absent in ["speed_kmh", "gear", "charging", "signals"] {
        partial.as_object_mut().unwrap().remove(absent);
    }
    let mut other = full_record();
    other["region"] = json!("Ünïcödé 🚗 région");
    other["gear"] = json!("R");
    for record in [full_record(), partial, other] {
        let want = decode(&json, record.to_string().as_bytes()).unwrap();
        let got = decode(&decoder, &to_avro(&schema, &record)).unwrap();
        assert_eq!(got, want, "{record}");
    }
}

#[test]
fn avro_damage_is_malformed_and_range_refusals_match_json() {
    let dir = tempfile::tempdir().unwrap();
    let (plan, decoder, schema) = avro_setup(dir.path(), AVSC);
    let good = to_avro(&schema, &full_record());
    for cut in [0, 1, good.len() / 2, good.len() - 1] {
        let e = decode(&decoder, &good[..cut]).unwrap_err();
        assert_eq!(e.kind, DecodeErrorKind::Malformed, "cut at {cut}: {e:?}");
    }
    let mut longer = good.clone();
    longer.push(0);
    assert_eq!(
        decode(&decoder, &longer).unwrap_err().kind,
        DecodeErrorKind::Malformed
    );
    let mut fast = full_record();
    fast["speed_kmh"] = json!(300.0);
    let want = decode(&json_decoder(&plan), fast.to_string().as_bytes()).unwrap_err();
    assert_eq!(
        decode(&decoder, &to_avro(&schema, &fast)).unwrap_err(),
        want
    );
}

#[test]
fn an_avro_record_decodes_by_field_name_whatever_the_writer_schema_adds_or_moves() {
    let dir = tempfile::tempdir().unwrap();
    let (plan, _, _) = avro_setup(dir.path(), AVSC);
    // The writer moved charging first and added a field.
    let moved = AVSC
        .replace(
            r#"{"name": "charging", "type": ["null", "boolean"], "default": null},"#,
            "",
        )
        .replace(
            r#"{"name": "vin", "type": "string"},"#,
            r#"{"name": "charging", "type": ["null", "boolean"], "default": null},
               {"name": "added", "type": "long", "default": 0},
               {"name": "vin", "type": "string"},"#,
        );
    let writer = AvroSchema::parse(&moved).unwrap();
    let (decoder, problems) = Decoder::for_schema(&plan, &RecordSchema::Avro(writer));
    assert_eq!(problems, []);
    let schema = apache_avro::Schema::parse_str(&moved).unwrap();
    let mut record = full_record();
    record["added"] = json!(5);
    record["charging"] = json!(true);
    let mut as_json = full_record();
    as_json["charging"] = json!(true);
    let want = decode(&json_decoder(&plan), as_json.to_string().as_bytes()).unwrap();
    assert_eq!(decode(&decoder, &to_avro(&schema, &record)).unwrap(), want);
}

#[test]
fn an_avro_schema_that_does_not_fit_the_input_is_refused_by_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("fleet.avsc");
    let changed = |from: &str, to: &str| {
        std::fs::write(&file, AVSC.replace(from, to)).unwrap();
        problems(&input("avro", &file, ""))
    };
    let p = changed("timestamp-millis", "timestamp-micros");
    assert_eq!(p[0].0, "input.time");
    assert!(p[0].1.contains("epoch_us"), "{p:?}");
    let p = changed(r#"["null", "int"]"#, r#"["null", "int", "string"]"#);
    assert_eq!(p[0].0, "input.signals.soc_pct.path");
    let p = changed(r#""name": "depot""#, r#""name": "yard""#);
    assert_eq!(
        p[0],
        (
            "input.labels".into(),
            "record fleet.v1.Site has no field \"depot\"".into()
        )
    );
    let p = changed(
        r#""type": "record", "name": "Record""#,
        r#""type": "recrd", "name": "Record""#,
    );
    assert_eq!(p[0].0, "input.schema_file");
    assert!(p[0].1.contains("unknown type"), "{p:?}");
}

#[test]
fn json_needs_no_schema() {
    let plan = MetricPlan::reference_demo().input;
    assert_eq!(load_file(&plan), Ok(RecordSchema::Json));
    let registry = SchemaRegistryConfig::default();
    assert_eq!(
        load(&plan, &registry),
        Ok(InputSchema::Fixed(RecordSchema::Json))
    );
}
