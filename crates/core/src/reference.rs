//! Changes to the reference data (which model each vehicle is), as the
//! compacted-topic source delivers them to the enricher.
//!
//! A source that reads a whole table at once (the CSV file) hands over a
//! table; a source that follows a log (the Kafka topic) hands over one
//! [`ReferenceChanges::Snapshot`] once it has caught up with the log, then
//! [`ReferenceChanges::Delta`]s in log order.

use std::collections::BTreeMap;

/// One vehicle's reference record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VehicleRecord {
    /// The vehicle id (VIN).
    pub vehicle_id: String,
    /// Its model.
    pub model: String,
    /// Every other attribute of the record (for example `fuel_type`), as text.
    pub attributes: BTreeMap<String, String>,
}

/// One change of the reference data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReferenceChange {
    /// The vehicle was added or re-registered.
    Upsert(VehicleRecord),
    /// The vehicle was retired (a tombstone): it is unknown from now on.
    Delete {
        /// The vehicle id.
        vehicle_id: String,
    },
}

/// What a log-following reference source sends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReferenceChanges {
    /// The whole table as of the moment the source caught up with the log:
    /// it replaces whatever was in force.
    Snapshot(Vec<VehicleRecord>),
    /// Changes since the previous message, in log order.
    Delta(Vec<ReferenceChange>),
}
