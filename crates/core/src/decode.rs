//! The plan-driven record decoder: one JSON message to one [`Record`] of a
//! [`RecordBatch`], by the rules of docs/METRICS.md, "`[input]`: the record".
//!
//! The input plan's paths are compiled once into a matcher: per object
//! level, a table from field name to the field's roles (the vehicle id,
//! the time, a label, the narrow type or value field, a wide signal) and to
//! the level nested under it. A message is then read in one pass, with no
//! allocation per record: fields no path names are skipped with only their
//! syntax checked; a field with one role is read straight as the JSON type
//! the role wants (anything else — `null`, escapes, another type — goes the
//! general way); strings land in [`SmallStr`]s, labels and values straight
//! in the batch's arenas.
//!
//! Refusals are classified as [`crate::decode_event`] classifies the
//! reference demo's events (the tests compare the two): malformed JSON and
//! a wrong JSON type where they are met, in document order; then missing
//! fields, unknown signal names and invalid values, in that order, once the
//! message is read. Where docs/METRICS.md says nothing:
//! - a field given twice counts with its last value, leaf by leaf (a wrong
//!   type in any occurrence still refuses the record);
//! - an object a path goes through (`signals` in `signals.coolant_c`) that
//!   is `null` leaves the fields under it absent; any other non-object there
//!   is of the wrong type;
//! - as serde_json: a message that is no object is of the wrong type when
//!   its first value is JSON, `-0` is no integer, and a number beyond `f64`
//!   is not JSON.
//!
//! Flat narrow records in compact JSON (the reference demo's) first try a
//! shorter path, [`flat`], that writes a record only when it is complete
//! and valid and leaves everything else to the general one.
//!
//! Protobuf and Avro records ([`Decoder::protobuf`], [`Decoder::avro`]) are
//! read by their own walkers against a schema, into the same record state:
//! whatever the format, a record is assembled, checked and refused by the
//! rules above, so the reasons mean the same for every format. A binary
//! record that cannot be parsed at all is `malformed`.

use fleet_plan::{FieldPath, InputPlan, SignalId, SignalType, TimeFormat, Value};

use crate::record::{Record, RecordBatch, SignalValue};
use crate::{DecodeError, DecodeErrorKind, PartitionId, SmallStr};

mod avro;
mod flat;
mod json;
mod protobuf;
mod table;
mod time;

pub use avro::{AvroSchema, AvroSchemaError};
pub use protobuf::{ProtoField, ProtoKind, ProtoMessage, ProtoSchema};

#[cfg(test)]
mod testing;
#[cfg(test)]
mod tests;

use json::{Cursor, Invalid, Scalar, Str};
use table::{head, Names};

/// What a field of the record is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    VehicleId,
    Time,
    /// The `n`th event label.
    Label(usize),
    /// Narrow: the signal's key.
    Type,
    /// Narrow: the signal's value.
    Value,
    /// Wide: a signal.
    Signal(SignalId, SignalType),
}

/// The JSON type a role takes in its common form.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Want {
    Str,
    /// A string among the role's configured ones.
    Known,
    Number,
    Bool,
}

/// A field name at one object level.
#[derive(Debug)]
struct Entry {
    /// Its dotted path, for refusals.
    path: Box<str>,
    roles: Box<[Role]>,
    /// With one role: the role and the JSON type it takes.
    single: Option<(Role, Want)>,
    /// The level of the object it holds, when paths go on into it.
    child: Option<usize>,
}

/// The field names the plan reads in one object.
#[derive(Debug)]
struct Level {
    names: Names,
    entries: Vec<Entry>,
}

/// A state marking a string that is none of its signal's states: refused as
/// an invalid value once the record is read.
const UNKNOWN_STATE: u32 = u32::MAX;

/// Why reading stopped.
#[derive(Clone, Copy, Debug)]
enum Fault {
    Json,
    /// The field of this entry, `(level, entry)`, has the wrong JSON type.
    WrongType(u32, u32),
}

impl From<Invalid> for Fault {
    fn from(_: Invalid) -> Self {
        Fault::Json
    }
}

/// The narrow type field's value.
#[derive(Clone, Copy, Debug)]
enum Named {
    Known(SignalId),
    Unknown(Str),
}

#[derive(Clone, Copy, Debug)]
enum Time {
    Absent,
    At(i64),
    /// Present but not a time (or beyond `i64` milliseconds).
    Invalid,
}

/// A set of small numbers: in two words up to 128, on the heap beyond.
#[derive(Debug, Default)]
struct Bits {
    low: [u64; 2],
    high: Vec<u64>,
}

impl Bits {
    fn word(&mut self, i: usize) -> &mut u64 {
        match i / 64 {
            w @ 0..=1 => &mut self.low[w],
            w => {
                if self.high.len() < w - 1 {
                    self.high.resize(w - 1, 0);
                }
                &mut self.high[w - 2]
            }
        }
    }

    /// Whether it holds every number below `n`.
    #[inline]
    fn has_all(&self, n: usize) -> bool {
        match n {
            0 => true,
            1..=64 => self.low[0] | !(u64::MAX >> (64 - n)) == u64::MAX,
            _ => (0..n).all(|i| self.contains(i)),
        }
    }

    fn contains(&self, i: usize) -> bool {
        let w = match i / 64 {
            w @ 0..=1 => self.low[w],
            w => self.high.get(w - 2).copied().unwrap_or(0),
        };
        w & (1 << (i % 64)) != 0
    }

    /// Adds `i`; whether it was absent.
    #[inline]
    fn insert(&mut self, i: usize) -> bool {
        let w = self.word(i);
        let absent = *w & (1 << (i % 64)) == 0;
        *w |= 1 << (i % 64);
        absent
    }

    /// Removes `i`; whether it was present.
    fn remove(&mut self, i: usize) -> bool {
        let w = self.word(i);
        let present = *w & (1 << (i % 64)) != 0;
        *w &= !(1 << (i % 64));
        present
    }
}

/// What one record has shown so far, besides what is already in its batch.
#[derive(Debug)]
struct State {
    /// The vehicle id is present (it is in the record, last in the batch).
    vehicle_id: bool,
    time: Time,
    signal: Option<Named>,
    value: Option<Scalar>,
    /// Labels present (bit `n` for the `n`th), then wide signals present.
    seen: Bits,
    /// How many of the wide values present are invalid.
    invalid: usize,
    labels_at: usize,
    values_at: usize,
}

/// The JSON types the narrow value may have: those of some signal.
#[derive(Clone, Copy, Debug, Default)]
struct Types {
    integer: bool,
    float: bool,
    boolean: bool,
    state: bool,
}

impl Types {
    fn take(self, value: Scalar) -> bool {
        match value {
            Scalar::Int(_) => self.integer || self.float,
            Scalar::Float(_) => self.float,
            Scalar::Bool(_) => self.boolean,
            Scalar::Str(_) => self.state,
            Scalar::Null => false,
        }
    }

    /// The one JSON type of them all, if there is one.
    fn want(self) -> Option<Want> {
        match (self.integer || self.float, self.boolean, self.state) {
            (true, false, false) => Some(Want::Number),
            (false, true, false) => Some(Want::Bool),
            (false, false, true) => Some(Want::Str),
            _ => None,
        }
    }
}

/// Decodes messages into records by an [`InputPlan`].
#[derive(Debug)]
pub struct Decoder {
    plan: InputPlan,
    /// Level 0 is the record.
    levels: Vec<Level>,
    /// Narrow: signal keys to signals.
    keys: Names,
    narrow_types: Types,
    /// Per signal, its states (none for other types).
    states: Vec<Names>,
    /// Some signal has a range or states to check.
    checked: bool,
    /// Records are flat and narrow: [`flat`]'s fast path is tried first.
    flat: bool,
    /// Records are not JSON but of this binary format.
    binary: Option<Box<Binary>>,
}

/// Why a binary record's reading stopped short.
#[derive(Debug)]
enum Stop {
    /// It cannot be parsed in its format: why.
    Malformed(&'static str),
    /// The field at this path has a type the plan cannot read (or came in
    /// another wire type than its schema's).
    WrongType(Box<str>),
    Refused(DecodeError),
}

impl From<&'static str> for Stop {
    fn from(why: &'static str) -> Stop {
        Stop::Malformed(why)
    }
}

impl Stop {
    /// The refusal, for a record of `format`.
    fn refusal(self, format: &str) -> DecodeError {
        match self {
            Stop::Malformed(why) => refuse(
                DecodeErrorKind::Malformed,
                format!("not a valid {format} record of its schema ({why})"),
            ),
            Stop::WrongType(path) => refuse(
                DecodeErrorKind::WrongType,
                format!("{path} has a {format} type the plan cannot read"),
            ),
            Stop::Refused(e) => e,
        }
    }
}

/// A binary format's compiled reader.
#[derive(Debug)]
enum Binary {
    Protobuf(protobuf::Program),
    Avro(avro::Program),
}

/// What records are read against: nothing for JSON, else the schema of a
/// binary format.
#[derive(Clone, Debug, PartialEq)]
pub enum RecordSchema {
    /// JSON objects, read by field name.
    Json,
    /// Protobuf messages of the schema's root type.
    Protobuf(ProtoSchema),
    /// Avro data written with the schema.
    Avro(AvroSchema),
}

/// Something a record schema lacks or types differently from `[input]`:
/// at start, a configuration error naming `key`; in a schema met later (a
/// schema registry's), the records that need the field are refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SchemaProblem {
    /// The `[input]` key whose path it is (`input.signals.speed.path`).
    pub key: String,
    /// What is wrong, naming the field.
    pub detail: String,
}

impl SchemaProblem {
    fn new(role: Role, input: &InputPlan, detail: String) -> SchemaProblem {
        let key = match role {
            Role::VehicleId => "input.vehicle_id".to_owned(),
            Role::Time => "input.time".to_owned(),
            Role::Label(_) => "input.labels".to_owned(),
            Role::Type => "input.type_field".to_owned(),
            Role::Value => "input.value_field".to_owned(),
            Role::Signal(id, _) => match input.signals.get(usize::from(id.0)) {
                Some(s) => format!("input.signals.{}.path", s.name),
                None => "input.signals".to_owned(),
            },
        };
        SchemaProblem { key, detail }
    }
}

impl std::fmt::Display for SchemaProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.key, self.detail)
    }
}

impl Decoder {
    /// The decoder of JSON records of `input`.
    pub fn new(input: &InputPlan) -> Decoder {
        let fields = fields(input);
        let keys: Vec<&str> = input
            .signals
            .iter()
            .map(|s| s.key.as_deref().unwrap_or(&s.name))
            .collect();
        let mut narrow_types = Types::default();
        for s in &input.signals {
            match s.signal_type {
                SignalType::Integer => narrow_types.integer = true,
                SignalType::Float => narrow_types.float = true,
                SignalType::Boolean => narrow_types.boolean = true,
                SignalType::State => narrow_types.state = true,
            }
        }
        let want = |role: Role| match role {
            Role::VehicleId | Role::Label(_) => Some(Want::Str),
            Role::Type | Role::Signal(_, SignalType::State) => Some(Want::Known),
            Role::Time if input.time_format == TimeFormat::Rfc3339 => Some(Want::Str),
            Role::Time => Some(Want::Number),
            Role::Value => narrow_types.want(),
            Role::Signal(_, SignalType::Integer | SignalType::Float) => Some(Want::Number),
            Role::Signal(_, SignalType::Boolean) => Some(Want::Bool),
        };
        let levels = levels(&fields, want);
        Decoder {
            binary: None,
            flat: flat::eligible(input, &levels),
            plan: input.clone(),
            levels,
            keys: Names::new(&keys, "\""),
            narrow_types,
            states: input
                .signals
                .iter()
                .map(|s| Names::new(&s.states, "\""))
                .collect(),
            checked: input
                .signals
                .iter()
                .any(|s| s.min.is_some() || s.max.is_some() || !s.states.is_empty()),
        }
    }

    /// The decoder of records of `input` read against `schema`; and every
    /// path `schema` lacks or types differently.
    pub fn for_schema(input: &InputPlan, schema: &RecordSchema) -> (Decoder, Vec<SchemaProblem>) {
        match schema {
            RecordSchema::Json => (Decoder::new(input), Vec::new()),
            RecordSchema::Protobuf(schema) => Decoder::protobuf(input, schema),
            RecordSchema::Avro(schema) => Decoder::avro(input, schema),
        }
    }

    /// The decoder of Protobuf records of `input`, messages of `schema`'s
    /// root type; and every path `schema` lacks or types differently.
    pub fn protobuf(input: &InputPlan, schema: &ProtoSchema) -> (Decoder, Vec<SchemaProblem>) {
        let (program, problems) = protobuf::compile(input, &fields(input), schema);
        (Decoder::binary(input, Binary::Protobuf(program)), problems)
    }

    /// The decoder of Avro records of `input` written with `schema`; and
    /// every path `schema` lacks or types differently.
    pub fn avro(input: &InputPlan, schema: &AvroSchema) -> (Decoder, Vec<SchemaProblem>) {
        let (program, problems) = avro::compile(input, &fields(input), schema);
        (Decoder::binary(input, Binary::Avro(program)), problems)
    }

    fn binary(input: &InputPlan, binary: Binary) -> Decoder {
        Decoder {
            flat: false,
            binary: Some(Box::new(binary)),
            ..Decoder::new(input)
        }
    }

    /// Decodes one message value and appends it to `batch` as one record
    /// read from `partition` at `offset`; on error appends nothing and says
    /// why the message is refused.
    pub fn decode_into(
        &self,
        bytes: &[u8],
        partition: PartitionId,
        offset: i64,
        batch: &mut RecordBatch,
    ) -> Result<(), DecodeError> {
        if let Some(binary) = &self.binary {
            return self.assemble(
                bytes,
                partition,
                offset,
                batch,
                |c, st, batch| match &**binary {
                    Binary::Protobuf(p) => p.read(self, c, st, batch),
                    Binary::Avro(p) => p.read(self, c, st, batch),
                },
            );
        }
        if self.flat && self.decode_flat(bytes, partition, offset, batch).is_some() {
            return Ok(());
        }
        self.assemble(bytes, partition, offset, batch, |c, st, batch| {
            self.read(c, st, batch)
        })
    }

    /// Begins a record in `batch`, has `read` fill it from `bytes`, and
    /// completes it, or takes it back out on refusal.
    #[inline(always)]
    fn assemble(
        &self,
        bytes: &[u8],
        partition: PartitionId,
        offset: i64,
        batch: &mut RecordBatch,
        read: impl FnOnce(&mut Cursor<'_>, &mut State, &mut RecordBatch) -> Result<(), DecodeError>,
    ) -> Result<(), DecodeError> {
        let records = batch.records.len();
        let mut c = Cursor::new(bytes);
        let mut st = State {
            vehicle_id: false,
            time: Time::Absent,
            signal: None,
            value: None,
            seen: Bits::default(),
            invalid: 0,
            labels_at: batch.labels.len(),
            values_at: batch.values.len(),
        };
        // Filled in place as the message is read.
        batch.records.push(Record {
            partition,
            offset,
            vehicle_id: SmallStr::EMPTY,
            timestamp: 0,
            labels_at: st.labels_at as u32,
            values_at: st.values_at as u32,
            values_len: 0,
        });
        batch
            .labels
            .resize(st.labels_at + self.plan.labels.len(), SmallStr::EMPTY);
        let decoded = read(&mut c, &mut st, batch).and_then(|()| self.finish(&c, &mut st, batch));
        if decoded.is_err() {
            batch.truncate(records, st.labels_at, st.values_at);
        }
        decoded
    }

    /// Reads the whole message, appending the labels and wide values seen.
    #[inline]
    fn read(
        &self,
        c: &mut Cursor<'_>,
        st: &mut State,
        batch: &mut RecordBatch,
    ) -> Result<(), DecodeError> {
        c.ws();
        if c.peek() != Some(b'{') {
            return Err(not_an_object(c));
        }
        c.pos += 1;
        match self.object(c, 0, st, batch) {
            Ok(()) => {}
            Err(Fault::Json) => return Err(not_json(c)),
            Err(Fault::WrongType(level, entry)) => {
                let path = self
                    .levels
                    .get(level as usize)
                    .and_then(|l| l.entries.get(entry as usize))
                    .map_or("a field", |e| &e.path);
                return Err(refuse(
                    DecodeErrorKind::WrongType,
                    format!("{path} has the wrong JSON type"),
                ));
            }
        }
        c.ws();
        if !c.at_end() {
            return Err(not_json(c));
        }
        Ok(())
    }

    /// The members of an object of `level`, its `{` read.
    fn object(
        &self,
        c: &mut Cursor<'_>,
        level: usize,
        st: &mut State,
        batch: &mut RecordBatch,
    ) -> Result<(), Fault> {
        let Some(names) = self.levels.get(level) else {
            return c.skip_value().map_err(Fault::from);
        };
        c.ws();
        if c.peek() == Some(b'}') {
            c.pos += 1;
            return Ok(());
        }
        c.eat_after_ws(b'"')?;
        loop {
            let found = match names.names.quoted(c.bytes, c.pos) {
                Some((i, len)) => {
                    c.pos += len;
                    Some(i)
                }
                None => {
                    let table = &names.names;
                    let found = match c.short_name() {
                        Some((name, head)) => table.get(c.raw(name), head),
                        None => {
                            let name = c.string()?;
                            c.text(name, |text| table.find(text))?
                        }
                    };
                    c.ws();
                    c.eat(b':')?;
                    found
                }
            };
            c.ws();
            match found.and_then(|i| Some((i, names.entries.get(i)?))) {
                Some((i, entry)) => {
                    let taken = match entry.single {
                        Some((role, want)) => self.take(role, want, c, st, batch),
                        None => false,
                    };
                    if !taken {
                        self.member(c, (level, i), entry, st, batch)?;
                    }
                }
                None => c.skip_value()?,
            }
            // Compact JSON: `,"` up to the next name.
            if c.bytes.get(c.pos..c.pos + 2) == Some(b",\"") {
                c.pos += 2;
                continue;
            }
            match c.next_after_ws() {
                Some(b',') => c.eat_after_ws(b'"')?,
                Some(b'}') => return Ok(()),
                _ => return Err(Fault::Json),
            }
        }
    }

    /// The common case of a field with one role: its value in the plain
    /// form of the JSON type the role wants, taken; `false`, nothing read,
    /// for any other value.
    #[inline(always)]
    fn take(
        &self,
        role: Role,
        want: Want,
        c: &mut Cursor<'_>,
        st: &mut State,
        batch: &mut RecordBatch,
    ) -> bool {
        let at = c.pos;
        // One call of `apply` per JSON type, so each is made for its type.
        let taken = match want {
            Want::Known => return self.take_known(role, c, st, batch),
            Want::Str => match c.plain_str() {
                Some(s) => self.apply(role, Scalar::Str(s), c, st, batch),
                None => Ok(false),
            },
            Want::Number => match c.plain_number() {
                Some(Scalar::Int(i)) => self.apply(role, Scalar::Int(i), c, st, batch),
                Some(Scalar::Float(f)) => self.apply(role, Scalar::Float(f), c, st, batch),
                _ => Ok(false),
            },
            Want::Bool => match c.plain_bool() {
                Some(b) => self.apply(role, Scalar::Bool(b), c, st, batch),
                None => Ok(false),
            },
        };
        if taken != Ok(true) {
            c.pos = at;
        }
        taken == Ok(true)
    }

    /// A string among the configured ones for `role` (a signal key or a
    /// state) written plainly: resolved without scanning for its end.
    #[inline(always)]
    fn take_known(
        &self,
        role: Role,
        c: &mut Cursor<'_>,
        st: &mut State,
        batch: &mut RecordBatch,
    ) -> bool {
        let names = match role {
            Role::Type => &self.keys,
            Role::Signal(signal, _) => match self.states.get(usize::from(signal.0)) {
                Some(states) => states,
                None => return false,
            },
            _ => return false,
        };
        if c.peek() != Some(b'"') {
            return false;
        }
        let Some((i, len)) = names.quoted(c.bytes, c.pos + 1) else {
            return false;
        };
        match role {
            Role::Type => st.signal = Some(Named::Known(SignalId(i as u16))),
            Role::Signal(signal, _) => {
                let value = Value::State(i as u32);
                self.put(SignalValue { signal, value }, st, batch);
            }
            _ => return false,
        }
        c.pos += 1 + len;
        true
    }

    /// The value of a field the plan reads, in any form.
    #[inline(never)]
    fn member(
        &self,
        c: &mut Cursor<'_>,
        (level, i): (usize, usize),
        entry: &Entry,
        st: &mut State,
        batch: &mut RecordBatch,
    ) -> Result<(), Fault> {
        let wrong = Fault::WrongType(level as u32, i as u32);
        match (c.peek(), entry.child) {
            (Some(b'{'), Some(child)) if entry.roles.is_empty() => {
                c.pos += 1;
                self.object(c, child, st, batch)
            }
            (Some(b'{' | b'['), _) => Err(wrong),
            _ => {
                let value = c.scalar()?;
                if entry.roles.is_empty() && value != Scalar::Null {
                    return Err(wrong);
                }
                for &role in entry.roles.iter() {
                    if !self.apply(role, value, c, st, batch)? {
                        return Err(wrong);
                    }
                }
                Ok(())
            }
        }
    }

    /// Takes `value` for `role`; `false`, changing nothing, when it has the
    /// wrong type.
    #[inline(always)]
    fn apply(
        &self,
        role: Role,
        value: Scalar,
        c: &Cursor<'_>,
        st: &mut State,
        batch: &mut RecordBatch,
    ) -> Result<bool, Invalid> {
        match (role, value) {
            (_, Scalar::Null) => self.clear(role, st, batch),
            (Role::VehicleId, Scalar::Str(s)) => {
                if let Some(record) = batch.records.last_mut() {
                    record.vehicle_id = small(c, s)?;
                }
                st.vehicle_id = true;
            }
            (Role::Label(i), Scalar::Str(s)) => {
                batch.labels[st.labels_at + i] = small(c, s)?;
                st.seen.insert(i);
            }
            (Role::Time, value) => match self.time(value, c)? {
                Some(time) => st.time = time,
                None => return Ok(false),
            },
            (Role::Type, Scalar::Str(s)) => {
                st.signal = Some(match lookup(c, s, &self.keys)? {
                    Some(i) => Named::Known(SignalId(i as u16)),
                    None => Named::Unknown(s),
                })
            }
            (Role::Value, value) if self.narrow_types.take(value) => st.value = Some(value),
            (Role::Signal(signal, kind), value) => match self.convert(signal, kind, value, c)? {
                Some(value) => self.put(SignalValue { signal, value }, st, batch),
                None => return Ok(false),
            },
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// A `null` for `role`: as if the field were absent.
    #[cold]
    fn clear(&self, role: Role, st: &mut State, batch: &mut RecordBatch) {
        match role {
            Role::VehicleId => st.vehicle_id = false,
            Role::Time => st.time = Time::Absent,
            Role::Label(i) => {
                st.seen.remove(i);
            }
            Role::Type => st.signal = None,
            Role::Value => st.value = None,
            Role::Signal(signal, _) => {
                if st
                    .seen
                    .remove(self.plan.labels.len() + usize::from(signal.0))
                {
                    let run = &batch.values[st.values_at..];
                    if let Some(i) = run.iter().position(|v| v.signal == signal) {
                        let old = batch.values.swap_remove(st.values_at + i);
                        st.invalid -= usize::from(!self.valid(&old));
                    }
                }
            }
        }
    }

    /// Takes `value` of the binary field at `path` for each of its `roles`.
    fn take_field(
        &self,
        roles: &[Role],
        path: &str,
        value: Scalar,
        c: &Cursor<'_>,
        st: &mut State,
        batch: &mut RecordBatch,
    ) -> Result<(), Stop> {
        if let Scalar::Float(f) = value {
            if !f.is_finite() {
                return Err(Stop::Refused(refuse(
                    DecodeErrorKind::InvalidValue,
                    format!("{path} is not a finite number"),
                )));
            }
        }
        for &role in roles {
            match self.apply(role, value, c, st, batch) {
                Ok(true) => {}
                Ok(false) => return Err(Stop::WrongType(path.into())),
                Err(_) => return Err(Stop::Malformed("a string that is not UTF-8")),
            }
        }
        Ok(())
    }

    /// Whether the record has a value for `role` so far.
    fn is_set(&self, role: Role, st: &State) -> bool {
        match role {
            Role::VehicleId => st.vehicle_id,
            Role::Time => !matches!(st.time, Time::Absent),
            Role::Label(i) => st.seen.contains(i),
            Role::Type => st.signal.is_some(),
            Role::Value => st.value.is_some(),
            Role::Signal(signal, _) => st
                .seen
                .contains(self.plan.labels.len() + usize::from(signal.0)),
        }
    }

    /// Takes an enum value's `name` for `role` (the plan lets enums serve
    /// only the vehicle id, labels and state signals).
    fn apply_name(&self, role: Role, name: &SmallStr, st: &mut State, batch: &mut RecordBatch) {
        match role {
            Role::VehicleId => {
                if let Some(record) = batch.records.last_mut() {
                    record.vehicle_id = name.clone();
                }
                st.vehicle_id = true;
            }
            Role::Label(i) => {
                batch.labels[st.labels_at + i] = name.clone();
                st.seen.insert(i);
            }
            Role::Signal(signal, SignalType::State) => {
                let state = self
                    .states
                    .get(usize::from(signal.0))
                    .and_then(|states| states.find(name.as_bytes()));
                let value = Value::State(state.map_or(UNKNOWN_STATE, |i| i as u32));
                self.put(SignalValue { signal, value }, st, batch);
            }
            _ => {}
        }
    }

    /// Adds a wide signal's value to the record, or replaces its earlier one.
    #[inline]
    fn put(&self, new: SignalValue, st: &mut State, batch: &mut RecordBatch) {
        let invalid = usize::from(!self.valid(&new));
        if st
            .seen
            .insert(self.plan.labels.len() + usize::from(new.signal.0))
        {
            batch.values.push(new);
            st.invalid += invalid;
        } else if let Some(old) = batch.values[st.values_at..]
            .iter_mut()
            .find(|v| v.signal == new.signal)
        {
            st.invalid = st.invalid - usize::from(!self.valid(old)) + invalid;
            *old = new;
        }
    }

    /// The time `value` says; `None` when it has the wrong type.
    #[inline(always)]
    fn time(&self, value: Scalar, c: &Cursor<'_>) -> Result<Option<Time>, Invalid> {
        let ms = match (self.plan.time_format, value) {
            (TimeFormat::Rfc3339, Scalar::Str(s)) => c.text(s, time::rfc3339_ms)?,
            (TimeFormat::Rfc3339, _) => return Ok(None),
            (format, Scalar::Int(i)) => time::epoch_ms(i, format),
            _ => return Ok(None),
        };
        let ms = ms.filter(|ms| crate::EVENT_TIMES.contains(ms));
        Ok(Some(ms.map_or(Time::Invalid, Time::At)))
    }

    /// `value` as a value of `signal`, of type `kind`; `None` when it has
    /// the wrong type.
    #[inline(always)]
    fn convert(
        &self,
        signal: SignalId,
        kind: SignalType,
        value: Scalar,
        c: &Cursor<'_>,
    ) -> Result<Option<Value>, Invalid> {
        Ok(match (kind, value) {
            (SignalType::Integer, Scalar::Int(i)) => Some(Value::Integer(i)),
            (SignalType::Float, Scalar::Int(i)) => Some(Value::Float(i as f64)),
            (SignalType::Float, Scalar::Float(f)) => Some(Value::Float(f)),
            (SignalType::Boolean, Scalar::Bool(b)) => Some(Value::Boolean(b)),
            (SignalType::State, Scalar::Str(text)) => {
                let state = match self.states.get(usize::from(signal.0)) {
                    Some(states) => lookup(c, text, states)?,
                    None => None,
                };
                Some(Value::State(state.map_or(UNKNOWN_STATE, |i| i as u32)))
            }
            _ => None,
        })
    }

    /// Whether a signal's value is in its range, or one of its states.
    #[inline(always)]
    fn valid(&self, v: &SignalValue) -> bool {
        if !self.checked {
            return true;
        }
        let s = self.plan.signal(v.signal);
        match v.value {
            Value::Integer(i) => s.in_range(i as f64),
            Value::Float(f) => s.in_range(f),
            Value::Boolean(_) => true,
            Value::State(i) => i != UNKNOWN_STATE,
        }
    }

    /// Completes the record read, once every field is checked.
    #[inline]
    fn finish(
        &self,
        c: &Cursor<'_>,
        st: &mut State,
        batch: &mut RecordBatch,
    ) -> Result<(), DecodeError> {
        let mut complete = st.vehicle_id && st.seen.has_all(self.plan.labels.len());
        if self.plan.narrow.is_some() {
            let value = match (st.signal, st.value) {
                (Some(Named::Known(signal)), Some(value)) => self.narrow_value(signal, value, c),
                _ => None,
            };
            match value {
                Some(value) => {
                    st.invalid += usize::from(!self.valid(&value));
                    batch.values.push(value);
                }
                None => complete = false,
            }
        }
        let labels = batch.labels.get(st.labels_at..).unwrap_or_default();
        complete &= st.invalid == 0 && !labels.iter().any(SmallStr::is_empty);
        let values_len = (batch.values.len() - st.values_at) as u16;
        match (batch.records.last_mut(), st.time) {
            (Some(record), Time::At(timestamp)) if complete && !record.vehicle_id.is_empty() => {
                record.timestamp = timestamp;
                record.values_len = values_len;
                Ok(())
            }
            _ => Err(self.refusal(c, st, batch)),
        }
    }

    /// The narrow value as a value of `signal`; `None` when it has another type.
    fn narrow_value(&self, signal: SignalId, value: Scalar, c: &Cursor<'_>) -> Option<SignalValue> {
        let kind = self.plan.signals.get(usize::from(signal.0))?.signal_type;
        let value = self.convert(signal, kind, value, c).ok()??;
        Some(SignalValue { signal, value })
    }

    /// Why a record read whole is refused: the first field missing, else an
    /// unknown signal, else the first invalid value.
    #[cold]
    fn refusal(&self, c: &Cursor<'_>, st: &State, batch: &RecordBatch) -> DecodeError {
        let plan = &self.plan;
        if !st.vehicle_id {
            return missing(&plan.vehicle_id);
        }
        if let Time::Absent = st.time {
            return missing(&plan.time);
        }
        if let Some(i) = (0..plan.labels.len()).find(|&i| !st.seen.contains(i)) {
            return missing(&plan.labels[i]);
        }
        if let Some(narrow) = &plan.narrow {
            let (Some(named), Some(value)) = (st.signal, st.value) else {
                let field = match st.signal {
                    None => &narrow.type_field,
                    Some(_) => &narrow.value_field,
                };
                return missing(field);
            };
            let signal = match named {
                Named::Known(signal) => signal,
                Named::Unknown(s) => {
                    let key = c
                        .text(s, |t| String::from_utf8_lossy(t).into_owned())
                        .unwrap_or_default();
                    return refuse(
                        DecodeErrorKind::UnknownEventType,
                        format!("{} {key:?} is no signal's key", narrow.type_field),
                    );
                }
            };
            if self.narrow_value(signal, value, c).is_none() {
                return refuse(
                    DecodeErrorKind::WrongType,
                    format!(
                        "{} is no {}",
                        narrow.value_field,
                        plan.signal(signal).signal_type.as_str()
                    ),
                );
            }
        }
        let invalid = |what: String| refuse(DecodeErrorKind::InvalidValue, what);
        if batch.records.last().is_none_or(|r| r.vehicle_id.is_empty()) {
            return invalid(format!("{} is empty", plan.vehicle_id));
        }
        if !matches!(st.time, Time::At(_)) {
            return invalid(format!(
                "{} is not a time in {} between 1970 and 9999",
                plan.time,
                plan.time_format.as_str()
            ));
        }
        let labels = batch.labels.get(st.labels_at..).unwrap_or_default();
        if let Some(i) = labels.iter().position(SmallStr::is_empty) {
            return invalid(format!("{} is empty", plan.labels[i]));
        }
        let values = batch.values.get(st.values_at..).unwrap_or_default();
        let v = values.iter().find(|v| !self.valid(v));
        let name = v.map_or("", |v| &plan.signal(v.signal).name);
        invalid(match v.map(|v| v.value) {
            Some(Value::State(_)) => format!("{name} is none of its states"),
            _ => format!("{name} is outside its range"),
        })
    }
}

/// Hooks for the fuzz targets (fuzz/fuzz_targets/decode.rs), which check
/// that the fast path and the general way agree on every input.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
impl Decoder {
    /// Whether records try the flat fast path first.
    pub fn takes_fast_path(&self) -> bool {
        self.flat
    }

    /// This decoder without the flat fast path: the general way alone.
    pub fn without_fast_path(mut self) -> Decoder {
        self.flat = false;
        self
    }
}

/// Every path the plan reads, with its role.
fn fields(input: &InputPlan) -> Vec<(&FieldPath, Role)> {
    let mut fields: Vec<(&FieldPath, Role)> = vec![
        (&input.vehicle_id, Role::VehicleId),
        (&input.time, Role::Time),
    ];
    fields.extend(
        input
            .labels
            .iter()
            .enumerate()
            .map(|(i, p)| (p, Role::Label(i))),
    );
    if let Some(narrow) = &input.narrow {
        fields.push((&narrow.type_field, Role::Type));
        fields.push((&narrow.value_field, Role::Value));
    } else {
        fields.extend(input.signals.iter().enumerate().filter_map(|(i, s)| {
            let role = Role::Signal(SignalId(i as u16), s.signal_type);
            Some((s.path.as_ref()?, role))
        }));
    }
    fields
}

/// The matcher of `fields`: level 0 for the record, one more per object a
/// path goes into.
fn levels(fields: &[(&FieldPath, Role)], want: impl Fn(Role) -> Option<Want>) -> Vec<Level> {
    let mut names: Vec<Vec<&str>> = vec![Vec::new()];
    let mut entries: Vec<Vec<Entry>> = vec![Vec::new()];
    for &(path, role) in fields {
        let mut level = 0;
        let segments = path.segments();
        for (depth, segment) in segments.iter().enumerate() {
            let i = match names[level].iter().position(|n| n == segment) {
                Some(i) => i,
                None => {
                    names[level].push(segment);
                    entries[level].push(Entry {
                        path: segments[..=depth].join(".").into(),
                        roles: Box::default(),
                        single: None,
                        child: None,
                    });
                    names[level].len() - 1
                }
            };
            if depth + 1 == segments.len() {
                let entry = &mut entries[level][i];
                entry.roles = entry.roles.iter().copied().chain([role]).collect();
            } else {
                level = match entries[level][i].child {
                    Some(child) => child,
                    None => {
                        let child = names.len();
                        names.push(Vec::new());
                        entries.push(Vec::new());
                        entries[level][i].child = Some(child);
                        child
                    }
                };
            }
        }
    }
    for entry in entries.iter_mut().flatten() {
        entry.single = match (&*entry.roles, entry.child) {
            (&[role], None) => want(role).map(|want| (role, want)),
            _ => None,
        };
    }
    names
        .iter()
        .zip(entries)
        .map(|(names, entries)| Level {
            names: Names::new(names, "\":"),
            entries,
        })
        .collect()
}

/// The string `s` as a [`SmallStr`].
#[inline(always)]
fn small(c: &Cursor<'_>, s: Str) -> Result<SmallStr, Invalid> {
    if s.ascii && !s.escaped {
        if let Some(small) = SmallStr::from_ascii_prefix(&c.bytes[s.start..], s.len) {
            return Ok(small);
        }
    }
    small_text(c, s)
}

/// [`small`] of a string longer than inline, not ASCII or escaped.
#[inline(never)]
fn small_text(c: &Cursor<'_>, s: Str) -> Result<SmallStr, Invalid> {
    c.text(s, |t| std::str::from_utf8(t).map(SmallStr::new))?
        .map_err(|_| Invalid)
}

/// The index of the string `s` in `table`.
#[inline]
fn lookup(c: &Cursor<'_>, s: Str, table: &Names) -> Result<Option<usize>, Invalid> {
    if s.escaped {
        return c.text(s, |t| table.find(t));
    }
    Ok(table.get(c.raw(s), head(&c.bytes[s.start..], s.len)))
}

/// `word` with its indefinite article: "an int32", "a string".
fn a(word: &str) -> String {
    match word.starts_with(['a', 'e', 'i', 'o', 'u']) {
        true => format!("an {word}"),
        false => format!("a {word}"),
    }
}

fn refuse(kind: DecodeErrorKind, detail: String) -> DecodeError {
    DecodeError { kind, detail }
}

fn not_json(c: &Cursor<'_>) -> DecodeError {
    refuse(
        DecodeErrorKind::InvalidJson,
        format!("not valid JSON (at byte {})", c.pos),
    )
}

fn missing(path: &FieldPath) -> DecodeError {
    refuse(
        DecodeErrorKind::MissingField,
        format!("{path} is absent or null"),
    )
}

/// A message that is not an object: of the wrong type if it is a JSON value
/// (the first one only is read, as serde_json does), else not JSON.
fn not_an_object(c: &mut Cursor<'_>) -> DecodeError {
    let value = match c.peek() {
        Some(b'[') => Ok(Scalar::Null),
        _ => c.scalar(),
    };
    match value {
        Ok(_) => refuse(DecodeErrorKind::WrongType, "not a JSON object".into()),
        Err(Invalid) => not_json(c),
    }
}
