//! Avro records: the binary encoding read against the schema the record
//! was written with, its paths resolved by field name.
//!
//! An Avro datum carries no field names, only values in the writer
//! schema's order, so the decoder of a record needs that schema: from a
//! schema file, or per record from a schema registry. Resolving the plan's
//! paths by name in each writer schema is what makes schema evolution
//! work: a record written with a field added, removed or moved decodes by
//! name, with no reader schema. A field of a union with `null` that holds
//! `null` is absent; enum symbols are read by name, for state signals and
//! labels; `timestamp-millis`/`-micros`/`-nanos` times must match
//! `input.time_format`.

use std::collections::HashMap;

use fleet_plan::{FieldPath, InputPlan, SignalType, TimeFormat};
use serde_json::Value as Json;

use super::json::{Cursor, Scalar, Str};
use super::{a, Decoder, Role, SchemaProblem, State, Stop};
use crate::record::RecordBatch;
use crate::{DecodeError, SmallStr};

/// A parsed Avro schema: its types in an arena, named types referred to by
/// index.
#[derive(Clone, Debug, PartialEq)]
pub struct AvroSchema {
    nodes: Vec<Node>,
    root: usize,
}

#[derive(Clone, Debug, PartialEq)]
enum Node {
    Null,
    Boolean,
    Int,
    /// `long`, with its logical type when it has one.
    Long(Option<TimeUnit>),
    Float,
    Double,
    Bytes,
    String,
    Record {
        name: String,
        fields: Vec<(String, usize)>,
    },
    Enum {
        symbols: Vec<String>,
    },
    Array(usize),
    Map(usize),
    Union(Vec<usize>),
    Fixed(usize),
    /// A name not yet defined while parsing; none is left after.
    Pending,
}

/// A `long`'s time logical type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TimeUnit {
    Millis,
    Micros,
    Nanos,
}

/// An Avro schema that cannot be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("not an Avro schema: {0}")]
pub struct AvroSchemaError(String);

impl AvroSchema {
    /// Parses the JSON text of a schema whose top type is a record.
    pub fn parse(text: &str) -> Result<AvroSchema, AvroSchemaError> {
        let json: Json = serde_json::from_str(text).map_err(|e| AvroSchemaError(format!("{e}")))?;
        let mut parser = Parser::default();
        let root = parser.node(&json, "")?;
        if let Some(name) = parser
            .names
            .iter()
            .find(|(_, &i)| parser.nodes[i] == Node::Pending)
            .map(|(n, _)| n)
        {
            return Err(AvroSchemaError(format!("type {name:?} is never defined")));
        }
        if !matches!(parser.nodes[root], Node::Record { .. }) {
            return Err(AvroSchemaError("the top type is not a record".into()));
        }
        Ok(AvroSchema {
            nodes: parser.nodes,
            root,
        })
    }
}

#[derive(Default)]
struct Parser {
    nodes: Vec<Node>,
    names: HashMap<String, usize>,
}

impl Parser {
    fn push(&mut self, node: Node) -> usize {
        self.nodes.push(node);
        self.nodes.len() - 1
    }

    fn node(&mut self, json: &Json, namespace: &str) -> Result<usize, AvroSchemaError> {
        let bad = |what: String| Err(AvroSchemaError(what));
        match json {
            Json::String(name) => self.named(name, namespace),
            Json::Array(branches) => {
                let branches = branches
                    .iter()
                    .map(|b| self.node(b, namespace))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(self.push(Node::Union(branches)))
            }
            Json::Object(o) => {
                let kind = match o.get("type") {
                    Some(Json::String(kind)) => kind.as_str(),
                    Some(other) => return self.node(other, namespace),
                    None => return bad("a type without \"type\"".into()),
                };
                let text = |key: &str| o.get(key).and_then(Json::as_str);
                let full_name = |ns: &str| -> Result<(String, String), AvroSchemaError> {
                    let name = text("name")
                        .ok_or_else(|| AvroSchemaError(format!("a {kind} without a name")))?;
                    let ns = text("namespace").unwrap_or(ns);
                    Ok(match name.rsplit_once('.') {
                        Some((own, _)) => (name.to_owned(), own.to_owned()),
                        None if ns.is_empty() => (name.to_owned(), String::new()),
                        None => (format!("{ns}.{name}"), ns.to_owned()),
                    })
                };
                match kind {
                    "record" | "error" => {
                        let (name, ns) = full_name(namespace)?;
                        let at = self.define(&name)?;
                        let Some(Json::Array(list)) = o.get("fields") else {
                            return bad(format!("record {name} has no \"fields\" list"));
                        };
                        let mut fields = Vec::with_capacity(list.len());
                        for field in list {
                            let Some(fname) = field.get("name").and_then(Json::as_str) else {
                                return bad(format!("a field of {name} has no name"));
                            };
                            let Some(ftype) = field.get("type") else {
                                return bad(format!("field {name}.{fname} has no type"));
                            };
                            fields.push((fname.to_owned(), self.node(ftype, &ns)?));
                        }
                        self.nodes[at] = Node::Record { name, fields };
                        Ok(at)
                    }
                    "enum" => {
                        let (name, _) = full_name(namespace)?;
                        let at = self.define(&name)?;
                        let symbols = match o.get("symbols") {
                            Some(Json::Array(s)) => s
                                .iter()
                                .map(|s| s.as_str().map(str::to_owned))
                                .collect::<Option<Vec<_>>>(),
                            _ => None,
                        };
                        let Some(symbols) = symbols else {
                            return bad(format!("enum {name} has no \"symbols\" list"));
                        };
                        self.nodes[at] = Node::Enum { symbols };
                        Ok(at)
                    }
                    "fixed" => {
                        let (name, _) = full_name(namespace)?;
                        let at = self.define(&name)?;
                        let Some(size) = o.get("size").and_then(Json::as_u64) else {
                            return bad(format!("fixed {name} has no size"));
                        };
                        self.nodes[at] = Node::Fixed(size as usize);
                        Ok(at)
                    }
                    "array" => {
                        let items = o
                            .get("items")
                            .ok_or_else(|| AvroSchemaError("an array without items".into()))?;
                        let items = self.node(items, namespace)?;
                        Ok(self.push(Node::Array(items)))
                    }
                    "map" => {
                        let values = o
                            .get("values")
                            .ok_or_else(|| AvroSchemaError("a map without values".into()))?;
                        let values = self.node(values, namespace)?;
                        Ok(self.push(Node::Map(values)))
                    }
                    "long" => {
                        let unit = match text("logicalType") {
                            Some("timestamp-millis" | "local-timestamp-millis") => {
                                Some(TimeUnit::Millis)
                            }
                            Some("timestamp-micros" | "local-timestamp-micros") => {
                                Some(TimeUnit::Micros)
                            }
                            Some("timestamp-nanos" | "local-timestamp-nanos") => {
                                Some(TimeUnit::Nanos)
                            }
                            _ => None,
                        };
                        Ok(self.push(Node::Long(unit)))
                    }
                    primitive => self.named(primitive, namespace),
                }
            }
            other => bad(format!("{other} is no type")),
        }
    }

    /// A primitive type or a reference to a named one.
    fn named(&mut self, name: &str, namespace: &str) -> Result<usize, AvroSchemaError> {
        let node = match name {
            "null" => Node::Null,
            "boolean" => Node::Boolean,
            "int" => Node::Int,
            "long" => Node::Long(None),
            "float" => Node::Float,
            "double" => Node::Double,
            "bytes" => Node::Bytes,
            "string" => Node::String,
            _ => {
                let qualified = format!("{namespace}.{name}");
                let found = (!name.contains('.') && !namespace.is_empty())
                    .then(|| self.names.get(&qualified))
                    .flatten()
                    .or_else(|| self.names.get(name));
                return found
                    .copied()
                    .ok_or_else(|| AvroSchemaError(format!("unknown type {name:?}")));
            }
        };
        Ok(self.push(node))
    }

    /// Reserves the node of a named type, so fields can refer to it.
    fn define(&mut self, name: &str) -> Result<usize, AvroSchemaError> {
        if self.names.contains_key(name) {
            return Err(AvroSchemaError(format!("type {name:?} is defined twice")));
        }
        let at = self.push(Node::Pending);
        self.names.insert(name.to_owned(), at);
        Ok(at)
    }
}

/// Deepest nesting of values before a datum counts as malformed.
const MAX_DEPTH: usize = 64;

/// One field of a record the plan reads in.
#[derive(Debug)]
struct Step {
    /// Its type in the writer schema.
    node: usize,
    /// Its dotted path, for refusals; empty when no path names it.
    path: Box<str>,
    roles: Vec<Role>,
    /// The level of the record under it (through a union with `null`),
    /// when paths go on into it.
    child: Option<usize>,
    /// A type the plan refused: the record is refused unless it is `null`.
    refused: bool,
}

/// The compiled reader of one writer schema.
#[derive(Debug)]
pub(super) struct Program {
    nodes: Vec<Node>,
    /// Per record type the plan goes into, its fields in writer order;
    /// level 0 is the top record.
    levels: Vec<(usize, Vec<Step>)>,
    /// Enum symbols as labels.
    symbols: HashMap<usize, Vec<SmallStr>>,
}

/// Resolves the paths of `fields` in `schema`: the program, and what the
/// schema lacks or types differently from the plan.
pub(super) fn compile(
    input: &InputPlan,
    fields: &[(&FieldPath, Role)],
    schema: &AvroSchema,
) -> (Program, Vec<SchemaProblem>) {
    let nodes = schema.nodes.clone();
    let steps_of = |record: usize| -> Vec<Step> {
        match &nodes[record] {
            Node::Record { fields, .. } => fields
                .iter()
                .map(|&(_, node)| Step {
                    node,
                    path: Box::default(),
                    roles: Vec::new(),
                    child: None,
                    refused: false,
                })
                .collect(),
            _ => Vec::new(),
        }
    };
    let mut levels = vec![(schema.root, steps_of(schema.root))];
    let mut problems = Vec::new();
    'paths: for &(path, role) in fields {
        let segments = path.segments();
        let mut level = 0;
        for (depth, segment) in segments.iter().enumerate() {
            let record = levels[level].0;
            let Node::Record { name, fields } = &nodes[record] else {
                continue 'paths;
            };
            let Some(i) = fields.iter().position(|(f, _)| f == segment) else {
                problems.push(SchemaProblem::new(
                    role,
                    input,
                    format!("record {name} has no field {segment:?}"),
                ));
                continue 'paths;
            };
            let here = segments[..=depth].join(".");
            let node = fields[i].1;
            let last = depth + 1 == segments.len();
            let step = &mut levels[level].1[i];
            step.path = here.clone().into();
            let branches = non_null(&nodes, node);
            if !last {
                let records: Vec<usize> = branches
                    .iter()
                    .copied()
                    .filter(|&b| matches!(nodes[b], Node::Record { .. }))
                    .collect();
                let [inner] = records[..] else {
                    step.refused = true;
                    problems.push(SchemaProblem::new(
                        role,
                        input,
                        format!("{here} is not a record (or a union of one with null)"),
                    ));
                    continue 'paths;
                };
                level = match step.child {
                    Some(child) => child,
                    None => {
                        let child = levels.len();
                        levels[level].1[i].child = Some(child);
                        levels.push((inner, steps_of(inner)));
                        child
                    }
                };
                continue;
            }
            let unfit: Vec<String> = branches
                .iter()
                .filter_map(|&b| mismatch(input, role, &nodes[b]))
                .collect();
            if let Some(why) = unfit.first() {
                step.refused = true;
                problems.push(SchemaProblem::new(role, input, format!("{here} {why}")));
                continue 'paths;
            }
            step.roles.push(role);
        }
    }
    let symbols = nodes
        .iter()
        .enumerate()
        .filter_map(|(i, n)| match n {
            Node::Enum { symbols } => Some((i, symbols.iter().map(|s| SmallStr::new(s)).collect())),
            _ => None,
        })
        .collect();
    (
        Program {
            nodes,
            levels,
            symbols,
        },
        problems,
    )
}

/// The branches of a union other than `null`, or the type itself.
fn non_null(nodes: &[Node], node: usize) -> Vec<usize> {
    match &nodes[node] {
        Node::Union(branches) => branches
            .iter()
            .copied()
            .filter(|&b| nodes[b] != Node::Null)
            .collect(),
        _ => vec![node],
    }
}

/// Why a leaf of type `node` cannot serve `role`, if it cannot.
fn mismatch(input: &InputPlan, role: Role, node: &Node) -> Option<String> {
    let integer = matches!(node, Node::Int | Node::Long(_));
    let number = integer || matches!(node, Node::Float | Node::Double);
    let named = matches!(node, Node::String | Node::Enum { .. });
    let type_name = match node {
        Node::Null => "null",
        Node::Boolean => "boolean",
        Node::Int => "int",
        Node::Long(_) => "long",
        Node::Float => "float",
        Node::Double => "double",
        Node::Bytes => "bytes",
        Node::String => "string",
        Node::Record { .. } => "record",
        Node::Enum { .. } => "enum",
        Node::Array(_) => "array",
        Node::Map(_) => "map",
        Node::Union(_) => "union",
        Node::Fixed(_) => "fixed",
        Node::Pending => "undefined type",
    };
    let fits = match role {
        Role::VehicleId | Role::Label(_) => named,
        Role::Type => matches!(node, Node::String),
        Role::Time => match (input.time_format, node) {
            (TimeFormat::Rfc3339, Node::String) => true,
            (TimeFormat::Rfc3339, _) => false,
            (format, Node::Long(Some(unit))) => {
                let want = match unit {
                    TimeUnit::Millis => TimeFormat::EpochMs,
                    TimeUnit::Micros => TimeFormat::EpochUs,
                    TimeUnit::Nanos => TimeFormat::EpochNs,
                };
                if format != want {
                    return Some(format!(
                        "is a long in {}, and input.time_format is {}",
                        want.as_str(),
                        format.as_str()
                    ));
                }
                true
            }
            _ => integer,
        },
        Role::Value => {
            let types = |t: SignalType| input.signals.iter().any(|s| s.signal_type == t);
            (number && (types(SignalType::Integer) || types(SignalType::Float)))
                || (matches!(node, Node::Boolean) && types(SignalType::Boolean))
                || (matches!(node, Node::String) && types(SignalType::State))
        }
        Role::Signal(_, SignalType::Integer) => integer,
        Role::Signal(_, SignalType::Float) => number,
        Role::Signal(_, SignalType::Boolean) => matches!(node, Node::Boolean),
        Role::Signal(_, SignalType::State) => named,
    };
    (!fits).then(|| {
        let want = match role {
            Role::VehicleId | Role::Label(_) => "a text".to_owned(),
            Role::Type => "a signal's key (a string)".to_owned(),
            Role::Time => format!("a time in {}", input.time_format.as_str()),
            Role::Value => "a value of the signals".to_owned(),
            Role::Signal(_, t) => format!("a {} signal", t.as_str()),
        };
        format!("is {}, which cannot hold {want}", a(type_name))
    })
}

/// A value read for the plan.
enum Read {
    Scalar(Scalar),
    Symbol(usize, usize),
    /// `null`: the field is absent.
    Null,
    /// A record the plan goes into, read already.
    Done,
}

impl Program {
    /// Reads the datum `bytes` into the record begun in `batch`.
    pub(super) fn read(
        &self,
        decoder: &Decoder,
        c: &Cursor<'_>,
        st: &mut State,
        batch: &mut RecordBatch,
    ) -> Result<(), DecodeError> {
        let mut at = 0;
        let read = self
            .record(decoder, c, 0, &mut at, st, batch)
            .and_then(|()| {
                (at == c.bytes.len())
                    .then_some(())
                    .ok_or(Stop::Malformed("bytes after the record"))
            });
        read.map_err(|stop| stop.refusal("Avro"))
    }

    fn record(
        &self,
        decoder: &Decoder,
        c: &Cursor<'_>,
        level: usize,
        at: &mut usize,
        st: &mut State,
        batch: &mut RecordBatch,
    ) -> Result<(), Stop> {
        let Some((_, steps)) = self.levels.get(level) else {
            return Ok(());
        };
        for step in steps {
            if step.roles.is_empty() && step.child.is_none() && !step.refused {
                self.skip(c.bytes, step.node, at, 0)?;
                continue;
            }
            let read = self.value(decoder, c, step, step.node, at, st, batch)?;
            let value = match read {
                Read::Done => continue,
                Read::Null => {
                    for &role in &step.roles {
                        decoder.clear(role, st, batch);
                    }
                    continue;
                }
                Read::Symbol(node, i) => {
                    let name = self
                        .symbols
                        .get(&node)
                        .and_then(|s| s.get(i))
                        .ok_or(Stop::Malformed("an enum index beyond its symbols"))?;
                    for &role in &step.roles {
                        decoder.apply_name(role, name, st, batch);
                    }
                    continue;
                }
                Read::Scalar(value) => value,
            };
            decoder.take_field(&step.roles, &step.path, value, c, st, batch)?;
        }
        Ok(())
    }

    /// The value of a field the plan reads, of type `node`.
    #[allow(clippy::too_many_arguments)]
    fn value(
        &self,
        decoder: &Decoder,
        c: &Cursor<'_>,
        step: &Step,
        node: usize,
        at: &mut usize,
        st: &mut State,
        batch: &mut RecordBatch,
    ) -> Result<Read, Stop> {
        let bytes = c.bytes;
        Ok(match &self.nodes[node] {
            Node::Null => Read::Null,
            Node::Union(branches) => {
                let i = long(bytes, at)?;
                let branch = usize::try_from(i)
                    .ok()
                    .and_then(|i| branches.get(i))
                    .ok_or(Stop::Malformed("a union index beyond its branches"))?;
                return self.value(decoder, c, step, *branch, at, st, batch);
            }
            _ if step.refused => return Err(Stop::WrongType(step.path.clone())),
            Node::Record { .. } => {
                match step
                    .child
                    .filter(|&l| self.levels.get(l).map(|l| l.0) == Some(node))
                {
                    Some(child) => self.record(decoder, c, child, at, st, batch)?,
                    None => self.skip(bytes, node, at, 0)?,
                }
                Read::Done
            }
            Node::Boolean => match bytes.get(*at) {
                Some(&b @ (0 | 1)) => {
                    *at += 1;
                    Read::Scalar(Scalar::Bool(b == 1))
                }
                _ => return Err(Stop::Malformed("a boolean that is not 0 or 1")),
            },
            Node::Int => {
                let v = long(bytes, at)?;
                i32::try_from(v).map_err(|_| Stop::Malformed("an int beyond 32 bits"))?;
                Read::Scalar(Scalar::Int(v))
            }
            Node::Long(_) => Read::Scalar(Scalar::Int(long(bytes, at)?)),
            Node::Float => Read::Scalar(Scalar::Float(f64::from(f32::from_le_bytes(fixed(
                bytes, at,
            )?)))),
            Node::Double => Read::Scalar(Scalar::Float(f64::from_le_bytes(fixed(bytes, at)?))),
            Node::String => {
                let (start, end) = span(bytes, at)?;
                Read::Scalar(Scalar::Str(Str {
                    start,
                    len: end - start,
                    ascii: bytes[start..end].is_ascii(),
                    escaped: false,
                }))
            }
            Node::Enum { symbols } => {
                let i = long(bytes, at)?;
                match usize::try_from(i).ok().filter(|&i| i < symbols.len()) {
                    Some(i) => Read::Symbol(node, i),
                    None => return Err(Stop::Malformed("an enum index beyond its symbols")),
                }
            }
            _ => {
                self.skip(bytes, node, at, 0)?;
                return Err(Stop::WrongType(step.path.clone()));
            }
        })
    }

    /// Skips a value of type `node`.
    fn skip(&self, bytes: &[u8], node: usize, at: &mut usize, depth: usize) -> Result<(), Stop> {
        if depth > MAX_DEPTH {
            return Err(Stop::Malformed("values nested too deep"));
        }
        match &self.nodes[node] {
            Node::Null | Node::Pending => {}
            Node::Boolean => {
                bytes.get(*at).ok_or("a value cut short")?;
                *at += 1;
            }
            Node::Int | Node::Long(_) | Node::Enum { .. } => {
                long(bytes, at)?;
            }
            Node::Float => *at = end_of(bytes, *at, 4)?,
            Node::Double => *at = end_of(bytes, *at, 8)?,
            Node::Fixed(size) => *at = end_of(bytes, *at, *size)?,
            Node::Bytes | Node::String => {
                span(bytes, at)?;
            }
            Node::Record { fields, .. } => {
                for &(_, field) in fields {
                    self.skip(bytes, field, at, depth + 1)?;
                }
            }
            Node::Union(branches) => {
                let i = long(bytes, at)?;
                let branch = usize::try_from(i)
                    .ok()
                    .and_then(|i| branches.get(i))
                    .ok_or(Stop::Malformed("a union index beyond its branches"))?;
                self.skip(bytes, *branch, at, depth + 1)?;
            }
            Node::Array(items) => {
                self.blocks(bytes, at, |p, at| p.skip(bytes, *items, at, depth + 1))?
            }
            Node::Map(values) => self.blocks(bytes, at, |p, at| {
                span(bytes, at)?;
                p.skip(bytes, *values, at, depth + 1)
            })?,
        }
        Ok(())
    }

    /// The blocks of an array or a map, each item skipped by `item`; a block
    /// that gives its size in bytes is stepped over whole.
    fn blocks(
        &self,
        bytes: &[u8],
        at: &mut usize,
        item: impl Fn(&Self, &mut usize) -> Result<(), Stop>,
    ) -> Result<(), Stop> {
        loop {
            let count = long(bytes, at)?;
            if count == 0 {
                return Ok(());
            }
            if count < 0 {
                let size = long(bytes, at)?;
                let size = usize::try_from(size).map_err(|_| "a negative block size")?;
                *at = end_of(bytes, *at, size)?;
                continue;
            }
            for _ in 0..count {
                item(self, at)?;
            }
        }
    }
}

/// A zigzag-encoded `long`.
#[inline]
fn long(bytes: &[u8], at: &mut usize) -> Result<i64, Stop> {
    let mut value = 0u64;
    for shift in (0..70).step_by(7) {
        let byte = *bytes.get(*at).ok_or("a number cut short")?;
        *at += 1;
        if shift == 63 && byte > 1 {
            return Err(Stop::Malformed("a number beyond 64 bits"));
        }
        value |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Ok((value >> 1) as i64 ^ -((value & 1) as i64));
        }
    }
    Err(Stop::Malformed("a number beyond 64 bits"))
}

#[inline]
fn fixed<const N: usize>(bytes: &[u8], at: &mut usize) -> Result<[u8; N], Stop> {
    let chunk = *bytes
        .get(*at..)
        .and_then(|rest| rest.first_chunk::<N>())
        .ok_or("a value cut short")?;
    *at += N;
    Ok(chunk)
}

/// `at + len`, if the bytes go that far.
#[inline]
fn end_of(bytes: &[u8], at: usize, len: usize) -> Result<usize, Stop> {
    at.checked_add(len)
        .filter(|&end| end <= bytes.len())
        .ok_or(Stop::Malformed("a length beyond the record"))
}

/// The bytes of a `bytes` or `string` value: its start and end.
#[inline]
fn span(bytes: &[u8], at: &mut usize) -> Result<(usize, usize), Stop> {
    let len = long(bytes, at)?;
    let len = usize::try_from(len).map_err(|_| "a negative length")?;
    let start = *at;
    *at = end_of(bytes, start, len)?;
    Ok((start, *at))
}
