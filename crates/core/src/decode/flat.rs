//! The fast path for flat narrow records in compact JSON, the reference
//! demo's shape: `{"eventType":"IC_RPM","vehicleId":"…","region":"UK",
//! "timestamp":1764000000123,"measurement":2450}`.
//!
//! Every field the plan reads is a top-level field with one role, so a
//! record is a run of `"name":value` pairs with nothing to remember but the
//! values. This path reads exactly that — names found by the level's
//! [`Names::quoted`](super::table::Names::quoted), plain strings, exact
//! numbers, no whitespace — into locals, and writes the record to the batch
//! only once it is complete and valid. Anything else (whitespace, escapes,
//! unknown or repeated fields, a missing field, an unknown signal, an
//! invalid value) leaves the batch untouched and goes the general way, which
//! decides and classifies it. Tests check that the two agree.

use fleet_plan::{InputPlan, TimeFormat};

use super::json::{Cursor, Scalar};
use super::{small, time, Decoder, Level, Role};
use crate::record::{Record, RecordBatch};
use crate::{PartitionId, SmallStr};

/// The most event labels the fast path keeps in locals.
const MAX_LABELS: usize = 8;

/// Whether records of `input`, read by `levels`, can take the fast path.
pub(super) fn eligible(input: &InputPlan, levels: &[Level]) -> bool {
    let top_level_only = levels.len() == 1
        && levels[0]
            .entries
            .iter()
            .all(|e| e.single.is_some() && e.child.is_none());
    input.narrow.is_some()
        && top_level_only
        && input.labels.len() <= MAX_LABELS
        && input.time_format != TimeFormat::Rfc3339
}

impl Decoder {
    /// Decodes a flat narrow record into `batch`; `None`, the batch
    /// untouched, for any record the general way must read.
    #[inline]
    pub(super) fn decode_flat(
        &self,
        bytes: &[u8],
        partition: PartitionId,
        offset: i64,
        batch: &mut RecordBatch,
    ) -> Option<()> {
        let level = self.levels.first()?;
        let mut c = Cursor::new(bytes);
        if c.next()? != b'{' || c.next()? != b'"' {
            return None;
        }
        let mut vehicle_id = None;
        let mut timestamp = None;
        let mut signal = None;
        let mut value = None;
        let mut labels = [SmallStr::EMPTY; MAX_LABELS];
        let mut labels_seen = 0u32;
        loop {
            let i = match level.names.quoted(c.bytes, c.pos) {
                Some((i, len)) => {
                    c.pos += len;
                    i
                }
                // A name the plan does not read, or one sharing its first
                // byte with another.
                None => {
                    c.pos -= 1;
                    let name = c.plain_str()?;
                    let i = level.names.find(c.raw(name))?;
                    if c.next()? != b':' {
                        return None;
                    }
                    i
                }
            };
            let (role, _) = level.entries.get(i)?.single?;
            match role {
                Role::VehicleId if vehicle_id.is_none() => {
                    let id = c.plain_str().filter(|s| s.len > 0)?;
                    vehicle_id = Some(small(&c, id).ok()?);
                }
                Role::Time if timestamp.is_none() => match c.plain_number()? {
                    Scalar::Int(t) => {
                        let ms = time::epoch_ms(t, self.plan.time_format)?;
                        if !crate::EVENT_TIMES.contains(&ms) {
                            return None;
                        }
                        timestamp = Some(ms);
                    }
                    _ => return None,
                },
                Role::Label(n) if labels_seen & (1 << n) == 0 => {
                    let label = c.plain_str().filter(|s| s.len > 0)?;
                    labels[n] = small(&c, label).ok()?;
                    labels_seen |= 1 << n;
                }
                Role::Type if signal.is_none() => {
                    signal = Some(match self.keys.quoted(c.bytes, c.pos + 1) {
                        Some((s, len)) if c.peek() == Some(b'"') => {
                            c.pos += 1 + len;
                            s
                        }
                        _ => {
                            let key = c.plain_str()?;
                            self.keys.find(c.raw(key))?
                        }
                    });
                }
                Role::Value if value.is_none() => value = Some(c.plain_number()?),
                _ => return None,
            }
            match c.next()? {
                b',' if c.next()? == b'"' => {}
                b'}' if c.at_end() => break,
                _ => return None,
            }
        }
        let labels_len = self.plan.labels.len();
        let timestamp = timestamp?;
        let vehicle_id = vehicle_id?;
        if labels_seen.count_ones() as usize != labels_len {
            return None;
        }
        let signal = fleet_plan::SignalId(u16::try_from(signal?).ok()?);
        let value = self.narrow_value(signal, value?, &c)?;
        if !self.valid(&value) {
            return None;
        }
        let labels_at = batch.labels.len();
        let values_at = batch.values.len();
        for label in &mut labels[..labels_len] {
            batch.labels.push(std::mem::replace(label, SmallStr::EMPTY));
        }
        batch.values.push(value);
        batch.records.push(Record {
            partition,
            offset,
            vehicle_id,
            timestamp,
            labels_at: labels_at as u32,
            values_at: values_at as u32,
            values_len: 1,
        });
        Some(())
    }
}
