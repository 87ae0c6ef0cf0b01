//! Decoded records of any declared shape, kept in a batch's arenas.
//!
//! A record's labels and signal values vary in number with the
//! configuration (docs/METRICS.md), so a [`Record`] holds only their place
//! in its [`RecordBatch`]: the batch owns one vector of label values and one
//! of signal values for all its records. Decoding a record appends to them,
//! which allocates only while a batch grows past its largest size so far:
//! nothing per record in the steady state.

use fleet_plan::{SignalId, Value};

use crate::{PartitionId, SmallStr, TimestampMs};

/// One signal's value in a record.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SignalValue {
    /// Which signal.
    pub signal: SignalId,
    /// Its value, of the signal's type.
    pub value: Value,
}

/// One decoded record: where it came from, its vehicle and time, and the
/// place of its labels and values in its batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// The partition it was read from (0 for a file or the generator).
    pub partition: PartitionId,
    /// Its offset in the partition.
    pub offset: i64,
    /// The vehicle id.
    pub vehicle_id: SmallStr,
    /// Event time, epoch ms.
    pub timestamp: TimestampMs,
    /// Index of its first label value in [`RecordBatch::labels`]; it has as
    /// many as the plan has event labels, in plan order.
    pub labels_at: u32,
    /// Index of its first signal value in [`RecordBatch::values`].
    pub values_at: u32,
    /// How many signal values it carries (in the narrow shape, one).
    pub values_len: u16,
}

/// Records and the arenas their labels and values live in.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RecordBatch {
    /// The records, in the order read.
    pub records: Vec<Record>,
    /// Every record's label values, one run per record.
    pub labels: Vec<SmallStr>,
    /// Every record's signal values, one run per record.
    pub values: Vec<SignalValue>,
}

impl RecordBatch {
    /// An empty batch with room for `records` records.
    pub fn with_capacity(records: usize) -> Self {
        RecordBatch {
            records: Vec::with_capacity(records),
            labels: Vec::with_capacity(records),
            values: Vec::with_capacity(records),
        }
    }

    /// How many records.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether it holds no record.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Empties it, keeping the memory.
    pub fn clear(&mut self) {
        self.records.clear();
        self.labels.clear();
        self.values.clear();
    }

    /// The label values of `record` (`labels` per record).
    pub fn labels_of(&self, record: &Record, labels: usize) -> &[SmallStr] {
        let at = record.labels_at as usize;
        &self.labels[at..at + labels]
    }

    /// The signal values of `record`.
    pub fn values_of(&self, record: &Record) -> &[SignalValue] {
        let at = record.values_at as usize;
        &self.values[at..at + usize::from(record.values_len)]
    }

    /// Drops what was appended after `records`, `labels` and `values`
    /// entries: undoes a record whose decoding failed half way.
    pub fn truncate(&mut self, records: usize, labels: usize, values: usize) {
        self.records.truncate(records);
        self.labels.truncate(labels);
        self.values.truncate(values);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_find_their_labels_and_values() {
        let mut batch = RecordBatch::with_capacity(2);
        for (i, region) in ["UK", "FR"].into_iter().enumerate() {
            let labels_at = batch.labels.len() as u32;
            let values_at = batch.values.len() as u32;
            batch.labels.push(SmallStr::new(region));
            for s in 0..=i {
                batch.values.push(SignalValue {
                    signal: SignalId(s as u16),
                    value: Value::Integer(i as i64),
                });
            }
            batch.records.push(Record {
                partition: 0,
                offset: i as i64,
                vehicle_id: SmallStr::new("V"),
                timestamp: 1000,
                labels_at,
                values_at,
                values_len: (i + 1) as u16,
            });
        }
        let second = &batch.records[1];
        assert_eq!(batch.labels_of(second, 1), [SmallStr::new("FR")]);
        assert_eq!(batch.values_of(second).len(), 2);
        batch.truncate(1, 1, 1);
        assert_eq!(batch.values_of(&batch.records[0]).len(), 1);
        batch.clear();
        assert!(batch.is_empty());
    }
}
