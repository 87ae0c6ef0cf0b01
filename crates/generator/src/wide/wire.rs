//! The wide records in the binary formats: Protobuf and Avro.
//!
//! A layout's schema is written from the same paths as its JSON records
//! ([`WideLayout::proto_schema`], [`WideLayout::avro_schema`]): nested
//! objects become nested messages or records, state signals enums, every
//! signal optional (`optional` in proto3, a union with `null` in Avro), and
//! the time epoch milliseconds (`int64`; Avro's `timestamp-millis`), the way
//! binary telemetry carries it. Records are encoded from their JSON by the
//! formats' reference libraries (prost-reflect's dynamic messages,
//! apache-avro), not by this project's decoder's understanding of the
//! formats, so a test that decodes them checks the decoder against them.

use std::fmt::Write as _;

use apache_avro::types::Value as AvroValue;
use fleet_plan::SignalType;
use prost::Message as _;
use prost_reflect::{DynamicMessage, Kind, MessageDescriptor, ReflectMessage, Value as ProtoValue};
use serde_json::Value as Json;

use super::{Field, Node, WideLayout, WideRecord, TIME_PATH};
use crate::wide::vehicle::Quantity;

/// How the wide records are encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireFormat {
    /// One JSON object, as [`WideRecord::json`].
    Json,
    /// A Protobuf message of [`WideLayout::proto_schema`]'s `fleet.wide.Record`.
    Protobuf,
    /// An Avro datum of [`WideLayout::avro_schema`].
    Avro,
}

impl WireFormat {
    /// `input.format`'s name of it.
    pub fn as_str(self) -> &'static str {
        match self {
            WireFormat::Json => "json",
            WireFormat::Protobuf => "protobuf",
            WireFormat::Avro => "avro",
        }
    }
}

/// The Protobuf message type of the records.
pub const PROTO_MESSAGE: &str = "fleet.wide.Record";
const PROTO_PACKAGE: &str = "fleet.wide";

/// A field of the schema tree: its name and what it holds.
type Tree<'a> = Vec<(&'a str, Node<'a>)>;

impl WideLayout {
    /// The state signal of a [`Field::Signal`] leaf named `name`.
    fn states_of(&self, quantity: Quantity) -> &'static [&'static str] {
        self.signals
            .iter()
            .find(|s| s.quantity == quantity)
            .map_or(&[], |s| s.states)
    }

    /// The records' `.proto` file (proto3): message `fleet.wide.Record`.
    pub fn proto_schema(&self) -> String {
        let mut out = format!(
            "// The records of `fleet-generator --shape wide --signals {} --format protobuf`.\n\
             syntax = \"proto3\";\n\npackage {PROTO_PACKAGE};\n",
            self.signals.len()
        );
        let tree = self.tree();
        let mut enums = Vec::new();
        let mut messages = Vec::new();
        proto_message("Record", &tree, self, &mut enums, &mut messages);
        for (name, states) in enums {
            let values: Vec<String> = states
                .iter()
                .enumerate()
                .map(|(i, s)| format!("{s} = {i};"))
                .collect();
            let _ = write!(out, "\nenum {name} {{ {} }}\n", values.join(" "));
        }
        for message in messages {
            out.push('\n');
            out.push_str(&message);
        }
        out
    }

    /// The records' Avro schema (JSON): record `fleet.wide.Record`.
    pub fn avro_schema(&self) -> String {
        let tree = self.tree();
        let schema = avro_record("Record", &tree, self, true);
        let mut text = serde_json::to_string_pretty(&schema).unwrap_or_default();
        text.push('\n');
        text
    }
}

/// Type names: `site` → `Site`, `speed_kmh` → `SpeedKmh`.
fn type_name(field: &str) -> String {
    field
        .split('_')
        .map(|part| {
            let mut chars = part.chars();
            chars.next().map_or(String::new(), |c| {
                c.to_ascii_uppercase().to_string() + chars.as_str()
            })
        })
        .collect()
}

fn proto_message(
    name: &str,
    level: &Tree<'_>,
    layout: &WideLayout,
    enums: &mut Vec<(String, &'static [&'static str])>,
    messages: &mut Vec<String>,
) {
    let mut text = format!("message {name} {{\n");
    for (i, (field, node)) in level.iter().enumerate() {
        let number = i + 1;
        let declared = match node {
            Node::Object(children) => {
                let inner = type_name(field);
                proto_message(&inner, children, layout, enums, messages);
                format!("{inner} {field}")
            }
            Node::Leaf(Field::Vin | Field::Label(_)) => format!("string {field}"),
            Node::Leaf(Field::Time) => format!("int64 {field}"),
            Node::Leaf(Field::Signal(quantity, signal_type)) => {
                let t = match signal_type {
                    SignalType::Integer => "int64".to_owned(),
                    SignalType::Float => "double".to_owned(),
                    SignalType::Boolean => "bool".to_owned(),
                    SignalType::State => {
                        let e = type_name(field);
                        if !enums.iter().any(|(n, _)| *n == e) {
                            enums.push((e.clone(), layout.states_of(*quantity)));
                        }
                        e
                    }
                };
                format!("optional {t} {field}")
            }
        };
        let _ = writeln!(text, "  {declared} = {number};");
    }
    text.push_str("}\n");
    messages.insert(0, text);
}

fn avro_record(name: &str, level: &Tree<'_>, layout: &WideLayout, top: bool) -> Json {
    let fields: Vec<Json> = level
        .iter()
        .map(|(field, node)| {
            let t = match node {
                Node::Object(children) => avro_record(&type_name(field), children, layout, false),
                Node::Leaf(Field::Vin | Field::Label(_)) => Json::from("string"),
                Node::Leaf(Field::Time) => {
                    serde_json::json!({"type": "long", "logicalType": "timestamp-millis"})
                }
                Node::Leaf(Field::Signal(quantity, signal_type)) => {
                    let t = match signal_type {
                        SignalType::Integer => Json::from("long"),
                        SignalType::Float => Json::from("double"),
                        SignalType::Boolean => Json::from("boolean"),
                        SignalType::State => serde_json::json!({
                            "type": "enum",
                            "name": type_name(field),
                            "symbols": layout.states_of(*quantity),
                        }),
                    };
                    return serde_json::json!({"name": field, "type": ["null", t], "default": null});
                }
            };
            serde_json::json!({"name": field, "type": t})
        })
        .collect();
    let mut record = serde_json::json!({"type": "record", "name": name, "fields": fields});
    if top {
        record["namespace"] = Json::from(PROTO_PACKAGE);
    }
    record
}

/// Why the records cannot be encoded.
#[derive(Debug, thiserror::Error)]
#[error("cannot encode the wide records as {format}: {detail}")]
pub struct WireError {
    format: &'static str,
    detail: String,
}

/// Encodes wide records in one format.
#[derive(Debug)]
pub struct WideEncoder {
    kind: Encoder,
    /// Framed for a schema registry: the header before each payload.
    frame: Option<Vec<u8>>,
}

#[derive(Debug)]
enum Encoder {
    Json,
    Protobuf(MessageDescriptor),
    Avro(Box<apache_avro::Schema>),
}

impl WideEncoder {
    /// The encoder of `layout`'s records in `format`, by the schema
    /// [`WideLayout::proto_schema`] or [`WideLayout::avro_schema`] writes.
    pub fn new(layout: &WideLayout, format: WireFormat) -> Result<WideEncoder, WireError> {
        let schema = match format {
            WireFormat::Json => String::new(),
            WireFormat::Protobuf => layout.proto_schema(),
            WireFormat::Avro => layout.avro_schema(),
        };
        WideEncoder::with_schema(format, &schema)
    }

    /// The encoder of records in `format` by `schema` (the text of a
    /// `.proto` file with `fleet.wide.Record`, or of an Avro schema): a
    /// newer version of the layout's own, say. Fields the JSON records have
    /// and the schema lacks are an error; fields the schema has and the
    /// records lack are left out (Protobuf) or take their default (Avro).
    pub fn with_schema(format: WireFormat, schema: &str) -> Result<WideEncoder, WireError> {
        let error = |detail: String| WireError {
            format: format.as_str(),
            detail,
        };
        let kind = match format {
            WireFormat::Json => Encoder::Json,
            WireFormat::Protobuf => {
                let pool = fleet_schema::compile_proto_source("wide.proto", schema)
                    .map_err(|e| error(e.to_string()))?;
                let message = pool
                    .get_message_by_name(PROTO_MESSAGE)
                    .ok_or_else(|| error(format!("no message {PROTO_MESSAGE}")))?;
                Encoder::Protobuf(message)
            }
            WireFormat::Avro => Encoder::Avro(Box::new(
                apache_avro::Schema::parse_str(schema).map_err(|e| error(e.to_string()))?,
            )),
        };
        Ok(WideEncoder { kind, frame: None })
    }

    /// Frames every record for a schema registry where the schema is
    /// `schema_id`: a zero byte, the id (4 bytes, big-endian), for Protobuf
    /// the message's index in its file (Confluent's wire format).
    pub fn framed(mut self, schema_id: u32) -> WideEncoder {
        let mut frame = vec![0];
        frame.extend(schema_id.to_be_bytes());
        if let Encoder::Protobuf(message) = &self.kind {
            let index = message
                .parent_file()
                .messages()
                .position(|m| m == *message)
                .unwrap_or_default();
            match index {
                // The first message is written as a lone 0.
                0 => frame.push(0),
                // One index, zigzag: 2i.
                i => {
                    frame.push(2);
                    let mut v = (i as u64) << 1;
                    while v >= 0x80 {
                        frame.push((v as u8 & 0x7f) | 0x80);
                        v >>= 7;
                    }
                    frame.push(v as u8);
                }
            }
        }
        self.frame = Some(frame);
        self
    }

    /// The message value of `record`.
    pub fn encode(&self, record: &WideRecord) -> Result<Vec<u8>, WireError> {
        let payload = self.payload(record)?;
        Ok(match &self.frame {
            Some(frame) => [frame.as_slice(), &payload].concat(),
            None => payload,
        })
    }

    fn payload(&self, record: &WideRecord) -> Result<Vec<u8>, WireError> {
        let json = || -> Result<Json, WireError> {
            let mut value: Json = serde_json::from_str(&record.json).map_err(|e| WireError {
                format: "json",
                detail: e.to_string(),
            })?;
            value[TIME_PATH] = Json::from(record.timestamp);
            Ok(value)
        };
        match &self.kind {
            Encoder::Json => Ok(record.json.clone().into_bytes()),
            Encoder::Protobuf(message) => {
                let mut m = DynamicMessage::new(message.clone());
                proto_fill(&mut m, &json()?).map_err(|detail| WireError {
                    format: "protobuf",
                    detail,
                })?;
                Ok(m.encode_to_vec())
            }
            Encoder::Avro(schema) => {
                let error = |detail: String| WireError {
                    format: "avro",
                    detail,
                };
                let value = avro_value(&json()?)
                    .resolve(schema)
                    .map_err(|e| error(e.to_string()))?;
                apache_avro::to_avro_datum(schema, value).map_err(|e| error(e.to_string()))
            }
        }
    }
}

/// Sets the fields of `m` from the JSON object `record`, by name.
fn proto_fill(m: &mut DynamicMessage, record: &Json) -> Result<(), String> {
    let Some(fields) = record.as_object() else {
        return Err(format!("{record} is no object"));
    };
    for (name, value) in fields {
        let Some(field) = m.descriptor().get_field_by_name(name) else {
            return Err(format!("no field {name}"));
        };
        let v = match (field.kind(), value) {
            (Kind::Message(inner), Json::Object(_)) => {
                let mut sub = DynamicMessage::new(inner);
                proto_fill(&mut sub, value)?;
                ProtoValue::Message(sub)
            }
            (Kind::Enum(e), Json::String(s)) => match e.get_value_by_name(s.as_str()) {
                Some(v) => ProtoValue::EnumNumber(v.number()),
                None => return Err(format!("{name}: no value {s}")),
            },
            (Kind::Double, Json::Number(n)) => ProtoValue::F64(n.as_f64().unwrap_or(f64::NAN)),
            (Kind::Int64, Json::Number(n)) => match n.as_i64() {
                Some(i) => ProtoValue::I64(i),
                None => return Err(format!("{name}: {n} is no int64")),
            },
            (Kind::Bool, Json::Bool(b)) => ProtoValue::Bool(*b),
            (Kind::String, Json::String(s)) => ProtoValue::String(s.clone()),
            (kind, v) => return Err(format!("{name}: {v} is no {kind:?}")),
        };
        m.set_field(&field, v);
    }
    Ok(())
}

/// A JSON record as an Avro value: objects as records (apache-avro then
/// resolves unions, enums and the time's logical type against the schema).
fn avro_value(json: &Json) -> AvroValue {
    match json {
        Json::Object(o) => {
            AvroValue::Record(o.iter().map(|(k, v)| (k.clone(), avro_value(v))).collect())
        }
        Json::String(s) => AvroValue::String(s.clone()),
        Json::Bool(b) => AvroValue::Boolean(*b),
        Json::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) if !n.is_f64() => AvroValue::Long(i),
            (_, Some(f)) => AvroValue::Double(f),
            _ => AvroValue::Null,
        },
        Json::Null | Json::Array(_) => AvroValue::Null,
    }
}

/// A wide record encoded for the wire: its Kafka key and value.
#[derive(Debug)]
pub struct WireRecord {
    key: String,
    value: Result<Vec<u8>, String>,
}

impl WideEncoder {
    /// `record` ready for the wire; a failure to encode it is reported when
    /// it is written.
    pub fn wire(&self, record: WideRecord) -> WireRecord {
        let value = self.encode(&record).map_err(|e| e.to_string());
        WireRecord {
            key: record.vin,
            value,
        }
    }
}

impl crate::jsonl::JsonRecord for WireRecord {
    fn key(&self) -> &str {
        &self.key
    }

    /// Writes the encoded value (binary for Protobuf and Avro).
    fn write_json(&self, out: &mut impl std::io::Write) -> std::io::Result<()> {
        match &self.value {
            Ok(bytes) => out.write_all(bytes),
            Err(e) => Err(std::io::Error::other(e.clone())),
        }
    }
}
