//! Protobuf records: the wire format read by field number, against a
//! message type given as a [`ProtoSchema`] (built from a `.proto` file or a
//! descriptor set outside this crate, so the hot path needs no reflection
//! library).
//!
//! The plan's paths are resolved by field name once, to field numbers; a
//! message is then walked tag by tag, fields no path names skipped by wire
//! type. Protobuf's own rules hold: a scalar given twice counts with its
//! last value, an embedded message given twice is merged, and a field
//! without presence (a proto3 scalar not marked `optional`) reads as its
//! default (0, `""`, `false`, the first enum value) when absent. Enum values
//! are read by name, for state signals and labels.

use fleet_plan::{FieldPath, InputPlan, SignalType, TimeFormat};

use super::json::{Cursor, Scalar, Str};
use super::{a, Decoder, Role, SchemaProblem, State, Stop};
use crate::record::RecordBatch;
use crate::{DecodeError, SmallStr};

/// A message type and every type it reaches, as the decoder reads them.
#[derive(Clone, Debug, PartialEq)]
pub struct ProtoSchema {
    /// The message types; fields refer to each other by index.
    pub messages: Vec<ProtoMessage>,
    /// The record's type.
    pub root: usize,
}

/// One message type.
#[derive(Clone, Debug, PartialEq)]
pub struct ProtoMessage {
    /// Its full name (`fleet.v1.Record`).
    pub name: String,
    /// Its fields.
    pub fields: Vec<ProtoField>,
}

/// One field of a message type.
#[derive(Clone, Debug, PartialEq)]
pub struct ProtoField {
    /// Its name in the `.proto` file.
    pub name: String,
    /// Its number on the wire.
    pub number: u32,
    /// Its type.
    pub kind: ProtoKind,
    /// `repeated` (or a map).
    pub repeated: bool,
    /// Whether an absent field is told from its default: proto2 fields,
    /// proto3 `optional` ones, fields of a `oneof` and messages.
    pub presence: bool,
}

/// A field's type.
#[derive(Clone, Debug, PartialEq)]
#[allow(missing_docs)]
pub enum ProtoKind {
    Double,
    Float,
    Int32,
    Int64,
    Uint32,
    Uint64,
    Sint32,
    Sint64,
    Fixed32,
    Fixed64,
    Sfixed32,
    Sfixed64,
    Bool,
    String,
    Bytes,
    /// An enum: its values by number and name.
    Enum(Vec<(i32, String)>),
    /// A message: its index in [`ProtoSchema::messages`].
    Message(usize),
}

impl ProtoKind {
    fn name(&self) -> &'static str {
        match self {
            ProtoKind::Double => "double",
            ProtoKind::Float => "float",
            ProtoKind::Int32 => "int32",
            ProtoKind::Int64 => "int64",
            ProtoKind::Uint32 => "uint32",
            ProtoKind::Uint64 => "uint64",
            ProtoKind::Sint32 => "sint32",
            ProtoKind::Sint64 => "sint64",
            ProtoKind::Fixed32 => "fixed32",
            ProtoKind::Fixed64 => "fixed64",
            ProtoKind::Sfixed32 => "sfixed32",
            ProtoKind::Sfixed64 => "sfixed64",
            ProtoKind::Bool => "bool",
            ProtoKind::String => "string",
            ProtoKind::Bytes => "bytes",
            ProtoKind::Enum(_) => "enum",
            ProtoKind::Message(_) => "message",
        }
    }

    fn integer(&self) -> bool {
        matches!(
            self,
            ProtoKind::Int32
                | ProtoKind::Int64
                | ProtoKind::Uint32
                | ProtoKind::Uint64
                | ProtoKind::Sint32
                | ProtoKind::Sint64
                | ProtoKind::Fixed32
                | ProtoKind::Fixed64
                | ProtoKind::Sfixed32
                | ProtoKind::Sfixed64
        )
    }

    fn number(&self) -> bool {
        self.integer() || matches!(self, ProtoKind::Double | ProtoKind::Float)
    }
}

/// How a field's value is read off the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Read {
    Int32,
    Int64,
    Uint32,
    Uint64,
    Sint32,
    Sint64,
    Bool,
    Enum,
    Fixed32,
    Sfixed32,
    Float,
    Fixed64,
    Sfixed64,
    Double,
    String,
    Message,
    /// A type no role reads: the field refuses the record when present.
    Refused,
}

impl Read {
    fn of(kind: &ProtoKind) -> Read {
        match kind {
            ProtoKind::Double => Read::Double,
            ProtoKind::Float => Read::Float,
            ProtoKind::Int32 => Read::Int32,
            ProtoKind::Int64 => Read::Int64,
            ProtoKind::Uint32 => Read::Uint32,
            ProtoKind::Uint64 => Read::Uint64,
            ProtoKind::Sint32 => Read::Sint32,
            ProtoKind::Sint64 => Read::Sint64,
            ProtoKind::Fixed32 => Read::Fixed32,
            ProtoKind::Fixed64 => Read::Fixed64,
            ProtoKind::Sfixed32 => Read::Sfixed32,
            ProtoKind::Sfixed64 => Read::Sfixed64,
            ProtoKind::Bool => Read::Bool,
            ProtoKind::String => Read::String,
            ProtoKind::Enum(_) => Read::Enum,
            ProtoKind::Message(_) => Read::Message,
            ProtoKind::Bytes => Read::Refused,
        }
    }

    /// The wire type the field's values come in.
    fn wire(self) -> u8 {
        match self {
            Read::Int32
            | Read::Int64
            | Read::Uint32
            | Read::Uint64
            | Read::Sint32
            | Read::Sint64
            | Read::Bool
            | Read::Enum => VARINT,
            Read::Fixed64 | Read::Sfixed64 | Read::Double => I64,
            Read::Fixed32 | Read::Sfixed32 | Read::Float => I32,
            Read::String | Read::Message | Read::Refused => LEN,
        }
    }
}

const VARINT: u8 = 0;
const I64: u8 = 1;
const LEN: u8 = 2;
const GROUP_START: u8 = 3;
const GROUP_END: u8 = 4;
const I32: u8 = 5;

/// Deepest nesting of groups skipped before a message counts as malformed.
const MAX_DEPTH: usize = 64;

/// A field some path names.
#[derive(Debug)]
struct Slot {
    number: u32,
    read: Read,
    /// Its dotted path, for refusals.
    path: Box<str>,
    roles: Vec<Role>,
    /// The level of the message it holds, when paths go on into it.
    child: Option<usize>,
    /// An enum's value names by number.
    names: Vec<(i32, SmallStr)>,
}

/// The fields the plan reads in one message type.
#[derive(Debug, Default)]
struct Level {
    slots: Vec<Slot>,
    /// Field number to slot, for numbers below [`DIRECT`]; others are found
    /// by a scan of `slots`.
    direct: Vec<u16>,
}

/// Field numbers looked up in a table; higher ones by a scan.
const DIRECT: u32 = 512;
const NO_SLOT: u16 = u16::MAX;

impl Level {
    #[inline]
    fn slot(&self, number: u32) -> Option<&Slot> {
        let i = if number < DIRECT {
            *self.direct.get(number as usize)?
        } else {
            self.slots.iter().position(|s| s.number == number)? as u16
        };
        self.slots.get(usize::from(i))
    }
}

/// The default a role takes when its field, without presence, is absent.
#[derive(Debug)]
enum Default {
    Int,
    Float,
    Bool,
    Str,
    Name(SmallStr),
}

/// The compiled reader of one message type.
#[derive(Debug)]
pub(super) struct Program {
    /// Level 0 is the record's type.
    levels: Vec<Level>,
    defaults: Vec<(Role, Default)>,
}

/// Resolves the paths of `fields` in `schema`: the program, and what the
/// schema lacks or types differently from the plan (each such field
/// refuses the records that carry it).
pub(super) fn compile(
    input: &InputPlan,
    fields: &[(&FieldPath, Role)],
    schema: &ProtoSchema,
) -> (Program, Vec<SchemaProblem>) {
    let mut levels: Vec<Level> = vec![Level::default()];
    let mut types = vec![schema.root];
    let mut defaults = Vec::new();
    let mut problems = Vec::new();
    'paths: for &(path, role) in fields {
        let segments = path.segments();
        let mut level = 0;
        for (depth, segment) in segments.iter().enumerate() {
            let Some(message) = schema.messages.get(types[level]) else {
                continue 'paths;
            };
            let Some(field) = message.fields.iter().find(|f| &f.name == segment) else {
                problems.push(SchemaProblem::new(
                    role,
                    input,
                    format!("message {} has no field {segment:?}", message.name),
                ));
                continue 'paths;
            };
            let here = segments[..=depth].join(".");
            let last = depth + 1 == segments.len();
            let problem = match (&field.kind, last, field.repeated) {
                (_, _, true) => Some(format!("{here} is a repeated field")),
                (ProtoKind::Message(_), true, _) => Some(format!("{here} is a message")),
                (kind, false, _) if !matches!(kind, ProtoKind::Message(_)) => {
                    Some(format!("{here} is {}, not a message", a(kind.name())))
                }
                (kind, true, _) => mismatch(input, role, kind)
                    .map(|want| format!("{here} is {}, {want}", a(kind.name()))),
                _ => None,
            };
            let i = match levels[level]
                .slots
                .iter()
                .position(|s| s.number == field.number)
            {
                Some(i) => i,
                None => {
                    levels[level].slots.push(Slot {
                        number: field.number,
                        read: Read::of(&field.kind),
                        path: here.into(),
                        roles: Vec::new(),
                        child: None,
                        names: match &field.kind {
                            ProtoKind::Enum(values) => values
                                .iter()
                                .map(|(n, name)| (*n, SmallStr::new(name)))
                                .collect(),
                            _ => Vec::new(),
                        },
                    });
                    levels[level].slots.len() - 1
                }
            };
            if let Some(problem) = problem {
                levels[level].slots[i].read = Read::Refused;
                problems.push(SchemaProblem::new(role, input, problem));
                continue 'paths;
            }
            if last {
                levels[level].slots[i].roles.push(role);
                if !field.presence {
                    defaults.push((role, default_of(&field.kind)));
                }
            } else {
                level = match levels[level].slots[i].child {
                    Some(child) => child,
                    None => {
                        let ProtoKind::Message(m) = field.kind else {
                            continue 'paths;
                        };
                        levels.push(Level::default());
                        types.push(m);
                        levels[level].slots[i].child = Some(levels.len() - 1);
                        levels.len() - 1
                    }
                };
            }
        }
    }
    for level in &mut levels {
        let top = level
            .slots
            .iter()
            .map(|s| s.number + 1)
            .filter(|&n| n <= DIRECT)
            .max()
            .unwrap_or(0);
        level.direct = vec![NO_SLOT; top as usize];
        for (i, slot) in level.slots.iter().enumerate() {
            if let Some(d) = level.direct.get_mut(slot.number as usize) {
                *d = i as u16;
            }
        }
    }
    (Program { levels, defaults }, problems)
}

/// Why a leaf of `kind` cannot serve `role`, if it cannot.
fn mismatch(input: &InputPlan, role: Role, kind: &ProtoKind) -> Option<String> {
    let named = matches!(kind, ProtoKind::String | ProtoKind::Enum(_));
    let fits = match role {
        Role::VehicleId | Role::Label(_) => named,
        Role::Type => matches!(kind, ProtoKind::String),
        Role::Time if input.time_format == TimeFormat::Rfc3339 => {
            matches!(kind, ProtoKind::String)
        }
        Role::Time => kind.integer(),
        Role::Value => {
            let types = |t: SignalType| input.signals.iter().any(|s| s.signal_type == t);
            (kind.number() && (types(SignalType::Integer) || types(SignalType::Float)))
                || (matches!(kind, ProtoKind::Bool) && types(SignalType::Boolean))
                || (matches!(kind, ProtoKind::String) && types(SignalType::State))
        }
        Role::Signal(_, SignalType::Integer) => kind.integer(),
        Role::Signal(_, SignalType::Float) => kind.number(),
        Role::Signal(_, SignalType::Boolean) => matches!(kind, ProtoKind::Bool),
        Role::Signal(_, SignalType::State) => named,
    };
    (!fits).then(|| {
        format!(
            "which cannot hold {}",
            match role {
                Role::VehicleId | Role::Label(_) => "a text".to_owned(),
                Role::Type => "a signal's key (a string)".to_owned(),
                Role::Time => format!("a time in {}", input.time_format.as_str()),
                Role::Value => "a value of the signals".to_owned(),
                Role::Signal(_, t) => format!("a {} signal", t.as_str()),
            }
        )
    })
}

fn default_of(kind: &ProtoKind) -> Default {
    match kind {
        ProtoKind::Double | ProtoKind::Float => Default::Float,
        ProtoKind::Bool => Default::Bool,
        ProtoKind::String | ProtoKind::Bytes | ProtoKind::Message(_) => Default::Str,
        ProtoKind::Enum(values) => values
            .iter()
            .find(|(n, _)| *n == 0)
            .or(values.first())
            .map_or(Default::Int, |(_, name)| Default::Name(SmallStr::new(name))),
        _ => Default::Int,
    }
}

impl Program {
    /// Reads the message `bytes` into the record begun in `batch`.
    pub(super) fn read(
        &self,
        decoder: &Decoder,
        c: &Cursor<'_>,
        st: &mut State,
        batch: &mut RecordBatch,
    ) -> Result<(), DecodeError> {
        self.message(decoder, c, 0, 0..c.bytes.len(), st, batch)
            .map_err(|stop| stop.refusal("Protobuf"))?;
        for (role, default) in &self.defaults {
            if decoder.is_set(*role, st) {
                continue;
            }
            let empty = Str {
                start: 0,
                len: 0,
                ascii: true,
                escaped: false,
            };
            let value = match default {
                Default::Int => Scalar::Int(0),
                Default::Float => Scalar::Float(0.0),
                Default::Bool => Scalar::Bool(false),
                Default::Str => Scalar::Str(empty),
                Default::Name(name) => {
                    decoder.apply_name(*role, name, st, batch);
                    continue;
                }
            };
            // The plan's check let only defaults of a fitting type here.
            let _ = decoder.apply(*role, value, c, st, batch);
        }
        Ok(())
    }

    /// The fields of `bytes[range]`, a message of `level`.
    fn message(
        &self,
        decoder: &Decoder,
        c: &Cursor<'_>,
        level: usize,
        range: std::ops::Range<usize>,
        st: &mut State,
        batch: &mut RecordBatch,
    ) -> Result<(), Stop> {
        let bytes = c.bytes.get(..range.end).unwrap_or_default();
        let mut at = range.start;
        let level_slots = self.levels.get(level);
        while at < bytes.len() {
            let tag = varint(bytes, &mut at)?;
            let (number, wire) = ((tag >> 3) as u32, (tag & 7) as u8);
            if number == 0 {
                return Err(Stop::Malformed("field number 0"));
            }
            let Some(slot) = level_slots.and_then(|l| l.slot(number)) else {
                skip(bytes, &mut at, number, wire, 0)?;
                continue;
            };
            if slot.read == Read::Refused || wire != slot.read.wire() {
                return Err(Stop::WrongType(slot.path.clone()));
            }
            let value = match slot.read {
                Read::Message | Read::String => {
                    let len = varint(bytes, &mut at)?;
                    let end = usize::try_from(len)
                        .ok()
                        .and_then(|len| at.checked_add(len))
                        .filter(|&end| end <= bytes.len())
                        .ok_or(Stop::Malformed("a length beyond the message"))?;
                    let start = at;
                    at = end;
                    if slot.read == Read::Message {
                        if let Some(child) = slot.child {
                            self.message(decoder, c, child, start..end, st, batch)?;
                        }
                        continue;
                    }
                    let text = &bytes[start..end];
                    Scalar::Str(Str {
                        start,
                        len: end - start,
                        ascii: text.is_ascii(),
                        escaped: false,
                    })
                }
                Read::Enum => {
                    let n = varint(bytes, &mut at)? as i32;
                    let name = match slot.names.iter().find(|(k, _)| *k == n) {
                        Some((_, name)) => name.clone(),
                        None => SmallStr::new(&n.to_string()),
                    };
                    for &role in &slot.roles {
                        decoder.apply_name(role, &name, st, batch);
                    }
                    continue;
                }
                read => number_value(read, bytes, &mut at)?,
            };
            decoder.take_field(&slot.roles, &slot.path, value, c, st, batch)?;
        }
        Ok(())
    }
}

/// A numeric field's value.
#[inline]
fn number_value(read: Read, bytes: &[u8], at: &mut usize) -> Result<Scalar, Stop> {
    let unsigned = |v: u64| match i64::try_from(v) {
        Ok(i) => Scalar::Int(i),
        Err(_) => Scalar::Float(v as f64),
    };
    Ok(match read {
        Read::Int32 => Scalar::Int(i64::from(varint(bytes, at)? as i32)),
        Read::Int64 => Scalar::Int(varint(bytes, at)? as i64),
        Read::Uint32 => Scalar::Int(i64::from(varint(bytes, at)? as u32)),
        Read::Uint64 => unsigned(varint(bytes, at)?),
        Read::Sint32 => {
            let v = varint(bytes, at)? as u32;
            Scalar::Int(i64::from((v >> 1) as i32 ^ -((v & 1) as i32)))
        }
        Read::Sint64 => {
            let v = varint(bytes, at)?;
            Scalar::Int((v >> 1) as i64 ^ -((v & 1) as i64))
        }
        Read::Bool => Scalar::Bool(varint(bytes, at)? != 0),
        Read::Fixed32 => Scalar::Int(i64::from(u32::from_le_bytes(fixed(bytes, at)?))),
        Read::Sfixed32 => Scalar::Int(i64::from(i32::from_le_bytes(fixed(bytes, at)?))),
        Read::Float => Scalar::Float(f64::from(f32::from_le_bytes(fixed(bytes, at)?))),
        Read::Fixed64 => unsigned(u64::from_le_bytes(fixed(bytes, at)?)),
        Read::Sfixed64 => Scalar::Int(i64::from_le_bytes(fixed(bytes, at)?)),
        Read::Double => Scalar::Float(f64::from_le_bytes(fixed(bytes, at)?)),
        Read::Enum | Read::String | Read::Message | Read::Refused => {
            return Err(Stop::Malformed("no number"))
        }
    })
}

#[inline]
fn varint(bytes: &[u8], at: &mut usize) -> Result<u64, Stop> {
    let mut value = 0u64;
    for shift in (0..70).step_by(7) {
        let byte = *bytes
            .get(*at)
            .ok_or(Stop::Malformed("a varint cut short"))?;
        *at += 1;
        if shift == 63 && byte > 1 {
            return Err(Stop::Malformed("a varint beyond 64 bits"));
        }
        value |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Ok(value);
        }
    }
    Err(Stop::Malformed("a varint beyond 64 bits"))
}

#[inline]
fn fixed<const N: usize>(bytes: &[u8], at: &mut usize) -> Result<[u8; N], Stop> {
    let chunk: [u8; N] = bytes
        .get(*at..)
        .and_then(|rest| rest.first_chunk::<N>())
        .copied()
        .ok_or(Stop::Malformed("a fixed-width value cut short"))?;
    *at += N;
    Ok(chunk)
}

/// Skips the value of a field no path names.
fn skip(bytes: &[u8], at: &mut usize, number: u32, wire: u8, depth: usize) -> Result<(), Stop> {
    match wire {
        VARINT => varint(bytes, at).map(drop),
        I64 => fixed::<8>(bytes, at).map(drop),
        I32 => fixed::<4>(bytes, at).map(drop),
        LEN => {
            let len = varint(bytes, at)?;
            *at = usize::try_from(len)
                .ok()
                .and_then(|len| at.checked_add(len))
                .filter(|&end| end <= bytes.len())
                .ok_or(Stop::Malformed("a length beyond the message"))?;
            Ok(())
        }
        GROUP_START => {
            if depth >= MAX_DEPTH {
                return Err(Stop::Malformed("groups nested too deep"));
            }
            loop {
                let tag = varint(bytes, at)?;
                let (inner, wire) = ((tag >> 3) as u32, (tag & 7) as u8);
                if wire == GROUP_END {
                    return if inner == number {
                        Ok(())
                    } else {
                        Err(Stop::Malformed("a group ended by another field"))
                    };
                }
                skip(bytes, at, inner, wire, depth + 1)?;
            }
        }
        _ => Err(Stop::Malformed("an unknown wire type")),
    }
}
