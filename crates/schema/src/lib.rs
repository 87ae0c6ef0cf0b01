//! The schemas records of the binary formats are read against, loaded and
//! checked against `[input]` at start, or per record from a schema
//! registry ([`registry`]).
//!
//! `input.format = "protobuf"` takes a `.proto` file, compiled in process
//! (no `protoc` is needed, ever), or a compiled descriptor set
//! (`protoc --descriptor_set_out --include_imports`), and the record's
//! message type by full name; `"avro"` takes the `.avsc` file records are
//! written with. The decoder itself ([`fleet_core::decode`]) reads only its
//! own small schema types, so the reflection and compiler libraries stay in
//! this crate. Every path of `[input]` is resolved here once: a field the
//! schema lacks, or of a type the signal cannot take, is a configuration
//! error naming the `[input]` key.
#![deny(missing_docs)]

use std::path::Path;

use fleet_core::decode::{
    AvroSchema, Decoder, ProtoField, ProtoKind, ProtoMessage, ProtoSchema, RecordSchema,
};
use fleet_plan::{InputPlan, RecordFormat};
use prost_reflect::{DescriptorPool, Kind, MessageDescriptor};

pub mod registry;

pub use registry::{FramedDecoders, RegistryClient, Resolved, SchemaRef, SchemaRegistryConfig};

/// Why the records' schema cannot be used: each problem names its key.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{}", .problems.iter().map(|(k, p)| format!("{k}: {p}")).collect::<Vec<_>>().join("; "))]
pub struct SchemaError {
    /// `(key, problem)`, in the order found.
    pub problems: Vec<(String, String)>,
}

impl SchemaError {
    fn single(key: &str, problem: impl Into<String>) -> SchemaError {
        SchemaError {
            problems: vec![(key.to_owned(), problem.into())],
        }
    }
}

/// What records are read against.
#[derive(Clone, Debug, PartialEq)]
pub enum InputSchema {
    /// One schema for every record (none for JSON).
    Fixed(RecordSchema),
    /// The schema each record names in this registry.
    Registry(SchemaRegistryConfig),
}

/// Loads the schema `input` names, or takes the registry that names each
/// record's, and checks every path of `input` in a schema given.
pub fn load(
    input: &InputPlan,
    registry: &SchemaRegistryConfig,
) -> Result<InputSchema, SchemaError> {
    if registry.enabled() {
        return Ok(InputSchema::Registry(registry.clone()));
    }
    load_file(input).map(InputSchema::Fixed)
}

/// The schema file `input` names, checked.
fn load_file(input: &InputPlan) -> Result<RecordSchema, SchemaError> {
    let schema = match input.format {
        RecordFormat::Json => return Ok(RecordSchema::Json),
        RecordFormat::Protobuf => {
            let file = schema_file(input)?;
            let Some(name) = input.message.as_deref() else {
                return Err(SchemaError::single(
                    "input.message",
                    "name the record's Protobuf message type, with its package (\"fleet.v1.Record\")",
                ));
            };
            let pool = descriptor_pool(file)?;
            let Some(message) = pool.get_message_by_name(name) else {
                let mut known: Vec<String> = pool
                    .all_messages()
                    .map(|m| m.full_name().to_owned())
                    .collect();
                known.sort();
                known.truncate(20);
                return Err(SchemaError::single(
                    "input.message",
                    format!(
                        "{file} has no message type {name:?} (it has: {})",
                        known.join(", ")
                    ),
                ));
            };
            RecordSchema::Protobuf(proto_schema(&message))
        }
        RecordFormat::Avro => {
            let file = schema_file(input)?;
            let text = std::fs::read_to_string(file).map_err(|e| {
                SchemaError::single("input.schema_file", format!("cannot read {file}: {e}"))
            })?;
            let schema = AvroSchema::parse(&text)
                .map_err(|e| SchemaError::single("input.schema_file", format!("{file}: {e}")))?;
            RecordSchema::Avro(schema)
        }
    };
    let (_, problems) = Decoder::for_schema(input, &schema);
    if problems.is_empty() {
        Ok(schema)
    } else {
        Err(SchemaError {
            problems: problems.into_iter().map(|p| (p.key, p.detail)).collect(),
        })
    }
}

fn schema_file(input: &InputPlan) -> Result<&str, SchemaError> {
    input.schema_file.as_deref().ok_or_else(|| {
        SchemaError::single(
            "input.schema_file",
            format!(
                "{} records need their schema file (or a schema_registry.url)",
                input.format.as_str()
            ),
        )
    })
}

/// Reads records into batches: with one decoder, or with one per schema the
/// records name in a registry.
#[derive(Debug)]
pub enum RecordReader {
    /// Every record is read with this decoder.
    Fixed(Decoder),
    /// Records framed for a registry.
    Framed(FramedDecoders),
}

impl RecordReader {
    /// The reader of `input`'s records against `schema`.
    pub fn new(input: &InputPlan, schema: &InputSchema) -> Result<RecordReader, String> {
        Ok(match schema {
            InputSchema::Fixed(schema) => RecordReader::Fixed(Decoder::for_schema(input, schema).0),
            InputSchema::Registry(config) => {
                RecordReader::Framed(FramedDecoders::new(input, RegistryClient::new(config)?))
            }
        })
    }

    /// The decoder of the message `bytes`, and its payload; or why it is
    /// refused; or the schema to fetch from the registry first.
    pub fn resolve<'a>(&'a self, bytes: &'a [u8]) -> Resolved<'a> {
        match self {
            RecordReader::Fixed(decoder) => Resolved::Ready(decoder, bytes),
            RecordReader::Framed(framed) => framed.resolve(bytes),
        }
    }

    /// Fetches `schema` from the registry, asking again until it answers.
    pub async fn fetch(&mut self, schema: SchemaRef) {
        if let RecordReader::Framed(framed) = self {
            framed.fetch(schema).await;
        }
    }
}

/// The descriptors of a `.proto` file (compiled, with the files it imports
/// from its own directory) or of a descriptor set.
fn descriptor_pool(file: &str) -> Result<DescriptorPool, SchemaError> {
    let key = "input.schema_file";
    let path = Path::new(file);
    if path.extension().is_some_and(|e| e == "proto") {
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
        let dir = dir.unwrap_or(Path::new("."));
        let name = path.file_name().map(Path::new).unwrap_or(path);
        let set = protox::compile([name], [dir])
            .map_err(|e| SchemaError::single(key, format!("{file}: {e}")))?;
        return DescriptorPool::from_file_descriptor_set(set)
            .map_err(|e| SchemaError::single(key, format!("{file}: {e}")));
    }
    let bytes = std::fs::read(path)
        .map_err(|e| SchemaError::single(key, format!("cannot read {file}: {e}")))?;
    DescriptorPool::decode(bytes.as_slice()).map_err(|e| {
        SchemaError::single(
            key,
            format!("{file} is neither a .proto file nor a descriptor set: {e}"),
        )
    })
}

/// The descriptors of one `.proto` source held in memory, named `name`
/// (it may import Google's well-known types, nothing else).
pub fn compile_proto_source(name: &str, source: &str) -> Result<DescriptorPool, protox::Error> {
    #[derive(Debug)]
    struct Source(String, String);
    impl protox::file::FileResolver for Source {
        fn open_file(&self, name: &str) -> Result<protox::file::File, protox::Error> {
            if name == self.0 {
                protox::file::File::from_source(name, &self.1)
            } else {
                protox::file::GoogleFileResolver::new().open_file(name)
            }
        }
    }
    let mut compiler =
        protox::Compiler::with_file_resolver(Source(name.to_owned(), source.to_owned()));
    compiler.open_file(name)?;
    Ok(compiler.descriptor_pool())
}

/// `message` and every message type it reaches, as the decoder reads them.
pub fn proto_schema(message: &MessageDescriptor) -> ProtoSchema {
    let mut types = vec![message.clone()];
    let mut messages = Vec::new();
    let mut i = 0;
    while let Some(m) = types.get(i).cloned() {
        let fields = m
            .fields()
            .map(|f| {
                let kind = match f.kind() {
                    Kind::Double => ProtoKind::Double,
                    Kind::Float => ProtoKind::Float,
                    Kind::Int32 => ProtoKind::Int32,
                    Kind::Int64 => ProtoKind::Int64,
                    Kind::Uint32 => ProtoKind::Uint32,
                    Kind::Uint64 => ProtoKind::Uint64,
                    Kind::Sint32 => ProtoKind::Sint32,
                    Kind::Sint64 => ProtoKind::Sint64,
                    Kind::Fixed32 => ProtoKind::Fixed32,
                    Kind::Fixed64 => ProtoKind::Fixed64,
                    Kind::Sfixed32 => ProtoKind::Sfixed32,
                    Kind::Sfixed64 => ProtoKind::Sfixed64,
                    Kind::Bool => ProtoKind::Bool,
                    Kind::String => ProtoKind::String,
                    Kind::Bytes => ProtoKind::Bytes,
                    Kind::Enum(e) => ProtoKind::Enum(
                        e.values()
                            .map(|v| (v.number(), v.name().to_owned()))
                            .collect(),
                    ),
                    // A group is read as the message it is, but on the
                    // wire it is no length-delimited field: the decoder
                    // refuses it where a path needs it, by wire type.
                    Kind::Message(inner) => {
                        let at = match types.iter().position(|t| *t == inner) {
                            Some(at) => at,
                            None => {
                                types.push(inner);
                                types.len() - 1
                            }
                        };
                        ProtoKind::Message(at)
                    }
                };
                ProtoField {
                    name: f.name().to_owned(),
                    number: f.number(),
                    kind,
                    repeated: f.is_list() || f.is_map(),
                    presence: f.supports_presence(),
                }
            })
            .collect();
        messages.push(ProtoMessage {
            name: m.full_name().to_owned(),
            fields,
        });
        i += 1;
    }
    ProtoSchema { messages, root: 0 }
}

#[cfg(test)]
mod tests;
