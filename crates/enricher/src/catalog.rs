//! The join itself: interned vehicles, models, regions and groups.
//!
//! Every VIN ever seen keeps its [`VehicleKey`] for the life of the process.
//! The VIN table ([`IdTable`]) holds, next to each VIN, its key and its
//! profile (its model and configured dimension values, interned: a fleet has
//! few distinct ones), so the join of one event is one probe of one cache
//! line. Loading new reference data re-points the profiles without
//! renumbering vehicles. Regions are interned in a second, small table, and
//! (profile, region) pairs in a dense two-level array.

use std::collections::HashMap;
use std::sync::Arc;

use fleet_core::{
    EnrichedBatch, EnrichedEvent, GroupId, GroupKey, Labels, ReferenceChange, SmallStr,
    SourceBatch, VehicleKey, VehicleRecord,
};
use fleet_plan::{LabelSource, MetricPlan, MODEL_LABEL};

use crate::drilldown::DrilldownSelector;
use crate::reference::{attribute, profile_key};
use crate::region_index::RegionIndex;
use crate::table::IdTable;
use crate::{ReferenceTable, UnknownVehiclePolicy, UNKNOWN_MODEL};

/// The profile of a vehicle that is not in the reference data in force.
const NO_MODEL: u32 = u32::MAX;
/// How many events ahead `enrich_batch` asks for the VIN slot.
const PREFETCH_DISTANCE: usize = 16;
/// No group yet for a (profile, region) pair.
const NO_GROUP: u32 = u32::MAX;

/// What the reference data says about a vehicle: its model and dimensions,
/// as labels.
#[derive(Debug)]
struct Profile {
    model: Arc<str>,
    dimensions: Labels,
}

/// The names of `plan`'s event labels, in plan order.
fn event_label_names(plan: &MetricPlan) -> Arc<[Arc<str>]> {
    plan.labels
        .iter()
        .filter(|l| matches!(l.source, LabelSource::Event(_)))
        .map(|l| Arc::from(l.name.as_str()))
        .collect()
}

/// What one batch did, for the metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Enrichment {
    /// Events joined to a known vehicle.
    pub known: u64,
    /// Events of vehicles missing from the reference data (grouped as unknown or dropped).
    pub unknown: u64,
    /// Of those, events dropped by the policy.
    pub dropped: u64,
}

/// VIN → (model, dimensions) lookup with interning; owned by the enricher task.
#[derive(Debug)]
pub struct VehicleCatalog {
    policy: UnknownVehiclePolicy,
    /// VIN → (vehicle key, profile index or [`NO_MODEL`]).
    vehicles: IdTable,
    /// Keys handed out so far: the next vehicle gets this one.
    next_vehicle: u32,
    /// Bit per vehicle key: seen while not in the reference data.
    unknown_seen: Vec<u64>,
    distinct_unknown: u64,
    reference_len: usize,
    /// The configured dimensions, in order: the label names of the groups.
    dimensions: Arc<[Arc<str>]>,
    profiles: Vec<Profile>,
    /// [`profile_key`] → profile index.
    profile_index: HashMap<Box<str>, u32>,
    key_buffer: String,
    unknown_profile: u32,
    /// The names of the records' own labels (plan order); the reference demo's `region`.
    event_labels: Arc<[Arc<str>]>,
    /// Event label value → value index (every label shares it).
    regions: IdTable,
    /// The same for the values seen so far, in front of `regions`.
    region_index: RegionIndex,
    region_names: Vec<Arc<str>>,
    /// With two or more event labels: their value indices → tuple index.
    label_tuples: HashMap<Box<[u32]>, u32>,
    /// Per tuple index, the event labels' values.
    tuple_values: Vec<Arc<[Arc<str>]>>,
    tuple_buffer: Vec<u32>,
    /// `group_ids[profile][tuple]`: the group's id, or [`NO_GROUP`].
    group_ids: Vec<Vec<u32>>,
    next_group: u32,
    /// The vehicles of the per-vehicle drill-down output.
    drilldown: DrilldownSelector,
}

impl VehicleCatalog {
    /// A catalog over `reference`, grouping by the dimensions it was read with.
    pub fn new(reference: &ReferenceTable, policy: UnknownVehiclePolicy) -> Self {
        let mut catalog = VehicleCatalog {
            policy,
            vehicles: IdTable::with_capacity(reference.len()),
            next_vehicle: 0,
            unknown_seen: Vec::new(),
            distinct_unknown: 0,
            reference_len: 0,
            dimensions: Arc::from([]),
            profiles: Vec::new(),
            profile_index: HashMap::new(),
            key_buffer: String::new(),
            unknown_profile: 0,
            event_labels: event_label_names(&MetricPlan::reference_demo()),
            regions: IdTable::with_capacity(64),
            region_index: RegionIndex::default(),
            region_names: Vec::new(),
            label_tuples: HashMap::new(),
            tuple_values: Vec::new(),
            tuple_buffer: Vec::new(),
            group_ids: Vec::new(),
            next_group: 0,
            drilldown: DrilldownSelector::default(),
        };
        catalog.load(reference);
        catalog
    }

    /// Groups by `names` from now on (the unknown profile has one `unknown`
    /// per dimension).
    fn set_dimensions(&mut self, names: &Arc<[Arc<str>]>) {
        self.dimensions = Arc::clone(names);
        let unknown = vec![UNKNOWN_MODEL; 1 + names.len()];
        self.unknown_profile = self.intern_profile(&unknown);
    }

    /// Groups by the records' own labels of `plan` (by default the
    /// reference demo's: `region`), which the source's records carry in
    /// plan order.
    pub fn with_event_labels(mut self, plan: &MetricPlan) -> Self {
        self.event_labels = event_label_names(plan);
        self
    }

    /// Marks the events of the vehicles `drilldown` selects for the
    /// per-vehicle drill-down output.
    pub fn with_drilldown(mut self, drilldown: DrilldownSelector) -> Self {
        self.drilldown = drilldown;
        self
    }

    /// The drill-down selection, for its reloads.
    pub fn drilldown_mut(&mut self) -> &mut DrilldownSelector {
        &mut self.drilldown
    }

    /// Replaces the reference data. Vehicles keep their keys; vehicles no
    /// longer listed become unknown.
    pub fn load(&mut self, reference: &ReferenceTable) {
        if self.profiles.is_empty() || reference.dimension_names() != &self.dimensions {
            self.set_dimensions(reference.dimension_names());
        }
        for meta in self.vehicles.values_mut() {
            meta.value = NO_MODEL;
        }
        let profiles: Vec<u32> = reference
            .profiles()
            .iter()
            .map(|p| {
                let values: Vec<&str> = p.iter().map(|v| &**v).collect();
                self.intern_profile(&values)
            })
            .collect();
        self.vehicles
            .reserve(reference.len().saturating_sub(self.vehicles.len()));
        for (vin, profile) in reference.indexed_rows() {
            let next = self.next_vehicle;
            let (meta, inserted) = self.vehicles.entry(vin, next, NO_MODEL);
            meta.value = profiles.get(profile as usize).copied().unwrap_or(NO_MODEL);
            if inserted {
                // More than 4 billion distinct VINs cannot happen in one
                // process's life for a real fleet; saturate rather than wrap.
                self.next_vehicle = next.saturating_add(1);
            }
        }
        self.reference_len = reference.len();
    }

    /// Replaces the reference data with a log-following source's snapshot
    /// (see [`load`](Self::load)).
    pub fn load_records(&mut self, records: &[VehicleRecord]) {
        let table = ReferenceTable::from_records(records, &self.dimensions);
        self.load(&table);
    }

    /// Applies one change of a log-following source (the reference topic):
    /// an upsert gives the vehicle its (new) model from the next event on, a
    /// delete makes it unknown. Vehicles keep their keys either way.
    pub fn apply(&mut self, change: &ReferenceChange) {
        let (vehicle_id, model) = match change {
            ReferenceChange::Upsert(record) => (&record.vehicle_id, self.profile_of(record)),
            ReferenceChange::Delete { vehicle_id } => (vehicle_id, NO_MODEL),
        };
        let next = self.next_vehicle;
        let (meta, inserted) = self.vehicles.entry_str(vehicle_id, next, NO_MODEL);
        let had_model = meta.value != NO_MODEL;
        meta.value = model;
        if inserted {
            self.next_vehicle = next.saturating_add(1);
        }
        match (had_model, model != NO_MODEL) {
            (false, true) => self.reference_len += 1,
            (true, false) => self.reference_len = self.reference_len.saturating_sub(1),
            _ => {}
        }
    }

    /// Rows in the reference data in force.
    pub fn reference_len(&self) -> usize {
        self.reference_len
    }

    /// Distinct vehicles seen that are not in the reference data.
    pub fn distinct_unknown_vehicles(&self) -> u64 {
        self.distinct_unknown
    }

    /// Distinct vehicles known to the catalog: every vehicle of the reference
    /// data in force or before, and every one seen in an event.
    pub fn vehicles(&self) -> usize {
        self.vehicles.len()
    }

    /// The model of `vehicle_id` in the reference data in force; `None` for
    /// an unknown vehicle. A read-only lookup, for benchmarks, tools and
    /// the dead letters of dropped records.
    pub fn model_of(&self, vehicle_id: &SmallStr) -> Option<&str> {
        let meta = self.vehicles.get(vehicle_id)?;
        self.profiles.get(meta.value as usize).map(|p| &*p.model)
    }

    /// Heap bytes of the VIN table, the part that grows with the fleet.
    pub fn vehicle_table_bytes(&self) -> usize {
        self.vehicles.heap_bytes() + self.unknown_seen.capacity() * 8
    }

    /// The profile of `values`: the model, then one value per dimension.
    fn intern_profile(&mut self, values: &[&str]) -> u32 {
        let key = profile_key(&mut self.key_buffer, values.iter().copied());
        if let Some(&p) = self.profile_index.get(key) {
            return p;
        }
        let idx = u32::try_from(self.profiles.len()).unwrap_or(u32::MAX);
        self.profile_index.insert(key.into(), idx);
        self.profiles.push(Profile {
            model: values.first().copied().unwrap_or(UNKNOWN_MODEL).into(),
            dimensions: self
                .dimensions
                .iter()
                .zip(values.iter().skip(1))
                .map(|(name, &value)| (name.clone(), Arc::from(value)))
                .collect(),
        });
        idx
    }

    /// The profile of a log-following source's record.
    fn profile_of(&mut self, record: &VehicleRecord) -> u32 {
        let names = Arc::clone(&self.dimensions);
        let mut values = Vec::with_capacity(1 + names.len());
        values.push(record.model.as_str());
        values.extend(names.iter().map(|d| attribute(record, d)));
        self.intern_profile(&values)
    }

    #[inline(always)]
    fn intern_region(&mut self, region: &SmallStr) -> u32 {
        match region
            .inline_words()
            .and_then(|key| self.region_index.get(&key))
        {
            Some(index) => index,
            None => self.intern_region_slow(region),
        }
    }

    #[inline(never)]
    fn intern_region_slow(&mut self, region: &SmallStr) -> u32 {
        let next = u32::try_from(self.region_names.len()).unwrap_or(u32::MAX);
        let (meta, inserted) = self.regions.entry(region, next, 0);
        let idx = meta.id;
        if inserted {
            self.region_names.push(region.as_str().into());
        }
        if let Some(key) = region.inline_words() {
            self.region_index.insert(key, idx);
        }
        idx
    }

    /// Whether records of unknown vehicles are dropped.
    pub fn drops_unknown(&self) -> bool {
        self.policy == UnknownVehiclePolicy::Drop
    }

    /// Counts `vehicle` as a distinct unknown vehicle the first time.
    fn saw_unknown(&mut self, vehicle: u32) {
        let (word, bit) = (vehicle as usize / 64, vehicle % 64);
        if word >= self.unknown_seen.len() {
            self.unknown_seen.resize(word + 1, 0);
        }
        let w = &mut self.unknown_seen[word];
        if *w & (1 << bit) == 0 {
            *w |= 1 << bit;
            self.distinct_unknown += 1;
        }
    }

    /// The index of a record's event label values (one label: its value's
    /// index; none: 0).
    #[inline(always)]
    fn intern_labels(&mut self, labels: &[SmallStr]) -> u32 {
        match labels {
            [one] => self.intern_region(one),
            _ => self.intern_tuple(labels),
        }
    }

    #[inline(never)]
    fn intern_tuple(&mut self, labels: &[SmallStr]) -> u32 {
        let mut key = std::mem::take(&mut self.tuple_buffer);
        key.clear();
        for l in labels {
            let v = self.intern_region(l);
            key.push(v);
        }
        let index = match self.label_tuples.get(&key[..]) {
            Some(&i) => i,
            None => {
                let i = u32::try_from(self.tuple_values.len()).unwrap_or(u32::MAX);
                self.tuple_values.push(
                    key.iter()
                        .map(|&v| self.region_names[v as usize].clone())
                        .collect(),
                );
                self.label_tuples.insert(key.clone().into_boxed_slice(), i);
                i
            }
        };
        self.tuple_buffer = key;
        index
    }

    /// The event labels' values of tuple index `labels` (see [`Self::intern_labels`]).
    fn label_values(&self, labels: u32) -> Vec<Arc<str>> {
        match self.event_labels.len() {
            1 => self
                .region_names
                .get(labels as usize)
                .cloned()
                .into_iter()
                .collect(),
            _ => self
                .tuple_values
                .get(labels as usize)
                .map(|v| v.to_vec())
                .unwrap_or_default(),
        }
    }

    #[inline]
    fn group(&mut self, profile: u32, region: u32, new: &mut Vec<GroupKey>) -> GroupId {
        let (m, r) = (profile as usize, region as usize);
        if let Some(&g) = self.group_ids.get(m).and_then(|row| row.get(r)) {
            if g != NO_GROUP {
                return GroupId(g);
            }
        }
        self.new_group(profile, region, new)
    }

    #[cold]
    fn new_group(&mut self, profile: u32, region: u32, new: &mut Vec<GroupKey>) -> GroupId {
        let (m, r) = (profile as usize, region as usize);
        if self.group_ids.len() <= m {
            self.group_ids.resize(m + 1, Vec::new());
        }
        let row = &mut self.group_ids[m];
        if row.len() <= r {
            row.resize(r + 1, NO_GROUP);
        }
        let id = self.next_group;
        row[r] = id;
        self.next_group = id.saturating_add(1);
        let profile = &self.profiles[m];
        let mut labels = vec![(Arc::from(MODEL_LABEL), profile.model.clone())];
        labels.extend(
            self.event_labels
                .iter()
                .cloned()
                .zip(self.label_values(region)),
        );
        labels.extend(profile.dimensions.iter().cloned());
        new.push(GroupKey {
            labels: labels.into(),
            partition: None,
        });
        GroupId(id)
    }

    /// Joins a batch; returns the enriched batch and what happened. The
    /// records' signal values move to the enriched batch as they are.
    pub fn enrich_batch(&mut self, batch: SourceBatch) -> (EnrichedBatch, Enrichment) {
        let mut out = EnrichedBatch {
            new_vehicles: Vec::new(),
            new_groups: Vec::new(),
            events: Vec::with_capacity(batch.len()),
            values: Vec::new(),
            consumed_without_output: Vec::new(),
        };
        let mut stats = Enrichment::default();
        let labels = self.event_labels.len();
        for (i, record) in batch.records.iter().enumerate() {
            if let Some(ahead) = batch.records.get(i + PREFETCH_DISTANCE) {
                self.vehicles.prefetch(&ahead.vehicle_id);
            }
            let next = self.next_vehicle;
            let (meta, inserted) = self.vehicles.entry(&record.vehicle_id, next, NO_MODEL);
            let (vehicle, profile) = (meta.id, meta.value);
            if inserted {
                self.next_vehicle = next.saturating_add(1);
            }
            let profile = if profile != NO_MODEL {
                stats.known += 1;
                profile
            } else {
                stats.unknown += 1;
                self.saw_unknown(vehicle);
                if self.policy == UnknownVehiclePolicy::Drop {
                    stats.dropped += 1;
                    out.consumed_without_output
                        .push((record.partition, record.offset));
                    continue;
                }
                self.unknown_profile
            };
            let at = record.labels_at as usize;
            let tuple = self.intern_labels(batch.labels.get(at..at + labels).unwrap_or_default());
            let group = self.group(profile, tuple, &mut out.new_groups);
            let drilldown =
                self.drilldown
                    .selects(vehicle, &record.vehicle_id, &mut out.new_vehicles);
            out.events.push(EnrichedEvent {
                drilldown,
                partition: record.partition,
                offset: record.offset,
                vehicle: VehicleKey(vehicle),
                group,
                timestamp: record.timestamp,
                values_at: record.values_at,
                values_len: record.values_len,
            });
        }
        out.values = batch.values;
        (out, stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleet_core::{Record, RecordBatch};

    /// A record at `offset` of vehicle `vin` with these event label values.
    fn rec<const N: usize>(
        offset: i64,
        vin: &str,
        labels: [&str; N],
    ) -> (i64, String, Vec<String>) {
        (
            offset,
            vin.to_string(),
            labels.iter().map(|l| l.to_string()).collect(),
        )
    }

    fn ev(offset: i64, vin: &str, region: &str) -> (i64, String, Vec<String>) {
        rec(offset, vin, [region])
    }

    fn records(records: Vec<(i64, String, Vec<String>)>) -> RecordBatch {
        let mut batch = RecordBatch::default();
        for (offset, vin, labels) in records {
            batch.records.push(Record {
                partition: 0,
                offset,
                vehicle_id: SmallStr::new(&vin),
                timestamp: 1000 + offset,
                labels_at: batch.labels.len() as u32,
                values_at: 0,
                values_len: 0,
            });
            batch.labels.extend(labels.iter().map(|l| SmallStr::new(l)));
        }
        batch
    }

    fn model(g: &GroupKey) -> &str {
        g.label("model").unwrap_or_default()
    }

    fn table() -> ReferenceTable {
        ReferenceTable::from_pairs([
            ("V1".to_string(), "Nebulara".to_string()),
            ("V2".to_string(), "Aurex".to_string()),
        ])
    }

    #[test]
    fn joins_models_and_announces_each_group_once() {
        let mut c = VehicleCatalog::new(&table(), UnknownVehiclePolicy::Unknown);
        let (b, stats) = c.enrich_batch(records(vec![
            ev(0, "V1", "UK"),
            ev(1, "V2", "UK"),
            ev(2, "V1", "UK"),
        ]));
        assert_eq!(
            stats,
            Enrichment {
                known: 3,
                unknown: 0,
                dropped: 0
            }
        );
        assert_eq!(b.new_groups.len(), 2);
        assert_eq!(model(&b.new_groups[0]), "Nebulara");
        assert_eq!(b.events[0].group, b.events[2].group);
        assert_eq!(b.events[0].vehicle, b.events[2].vehicle);
        assert_ne!(b.events[0].vehicle, b.events[1].vehicle);
        let (b2, _) = c.enrich_batch(records(vec![ev(3, "V2", "UK"), ev(4, "V2", "FR")]));
        assert_eq!(b2.new_groups.len(), 1, "only (Aurex, FR) is new");
        assert_eq!(b2.events[1].group, GroupId(2));
    }

    #[test]
    fn unknown_vehicles_are_grouped_or_dropped_and_counted() {
        let mut c = VehicleCatalog::new(&table(), UnknownVehiclePolicy::Unknown);
        let (b, stats) = c.enrich_batch(records(vec![ev(0, "X9", "UK"), ev(1, "X9", "UK")]));
        assert_eq!(stats.unknown, 2);
        assert_eq!(model(&b.new_groups[0]), UNKNOWN_MODEL);
        assert_eq!(c.distinct_unknown_vehicles(), 1);

        let mut d = VehicleCatalog::new(&table(), UnknownVehiclePolicy::Drop);
        let (b, stats) = d.enrich_batch(records(vec![ev(0, "X9", "UK"), ev(1, "V1", "UK")]));
        assert_eq!(
            stats,
            Enrichment {
                known: 1,
                unknown: 1,
                dropped: 1
            }
        );
        assert_eq!(b.events.len(), 1);
        assert_eq!(b.consumed_without_output, vec![(0, 0)]);
    }

    #[test]
    fn retired_vehicles_turn_unknown_and_each_unknown_vehicle_counts_once() {
        let mut c = VehicleCatalog::new(&table(), UnknownVehiclePolicy::Unknown);
        c.enrich_batch(records(vec![ev(0, "X9", "UK")]));
        assert_eq!(c.distinct_unknown_vehicles(), 1);
        c.load(&ReferenceTable::from_pairs([("X9", "Aurex")]));
        let (_, stats) = c.enrich_batch(records(vec![
            ev(1, "X9", "UK"),
            ev(2, "V1", "UK"),
            ev(3, "V1", "UK"),
        ]));
        assert_eq!((stats.known, stats.unknown), (1, 2));
        assert_eq!(c.distinct_unknown_vehicles(), 2, "X9 before, V1 now");
        assert_eq!(c.model_of(&"X9".into()), Some("Aurex"));
        assert_eq!(c.model_of(&"V1".into()), None);
        c.load(&table());
        c.enrich_batch(records(vec![ev(4, "X9", "UK"), ev(5, "V1", "UK")]));
        assert_eq!(c.distinct_unknown_vehicles(), 2, "X9 was counted before");
        assert_eq!(c.vehicles(), 3);
        assert_eq!(c.reference_len(), 2);
    }

    #[test]
    fn ids_of_any_length_join() {
        let long = "a vehicle id that is far longer than a VIN";
        let mut c = VehicleCatalog::new(
            &ReferenceTable::from_pairs([(long, "Aurex"), ("V1", "Nebulara")]),
            UnknownVehiclePolicy::Unknown,
        );
        let (b, stats) = c.enrich_batch(records(vec![
            ev(0, long, "a region name longer than 23 bytes"),
            ev(1, "V1", "UK"),
        ]));
        assert_eq!(stats.known, 2);
        assert_eq!(model(&b.new_groups[0]), "Aurex");
        assert_eq!(
            b.new_groups[0].label("region"),
            Some("a region name longer than 23 bytes")
        );
        assert_ne!(b.events[0].vehicle, b.events[1].vehicle);
    }

    #[test]
    fn reload_moves_vehicles_without_renumbering() {
        let mut c = VehicleCatalog::new(&table(), UnknownVehiclePolicy::Unknown);
        let (b1, _) = c.enrich_batch(records(vec![ev(0, "V1", "UK")]));
        c.load(&ReferenceTable::from_pairs([(
            "V1".to_string(),
            "Aurex".to_string(),
        )]));
        let (b2, _) = c.enrich_batch(records(vec![ev(1, "V1", "UK"), ev(2, "V2", "UK")]));
        assert_eq!(b1.events[0].vehicle, b2.events[0].vehicle);
        assert_eq!(model(&b2.new_groups[0]), "Aurex");
        assert_eq!(model(&b2.new_groups[1]), UNKNOWN_MODEL, "V2 was retired");
    }

    #[test]
    fn topic_changes_move_add_and_retire_vehicles_without_renumbering() {
        let mut c = VehicleCatalog::new(&table(), UnknownVehiclePolicy::Unknown);
        let (b1, _) = c.enrich_batch(records(vec![ev(0, "V1", "UK")]));
        let upsert = |vin: &str, model: &str| {
            ReferenceChange::Upsert(VehicleRecord {
                vehicle_id: vin.into(),
                model: model.into(),
                attributes: Default::default(),
            })
        };
        c.apply(&upsert("V1", "Zephyr"));
        c.apply(&upsert("V3", "Zephyr"));
        c.apply(&ReferenceChange::Delete {
            vehicle_id: "V2".into(),
        });
        c.apply(&ReferenceChange::Delete {
            vehicle_id: "V9".into(),
        });
        assert_eq!(c.reference_len(), 2, "V1 and V3");
        let (b2, stats) = c.enrich_batch(records(vec![
            ev(1, "V1", "UK"),
            ev(2, "V3", "UK"),
            ev(3, "V2", "UK"),
        ]));
        assert_eq!(b1.events[0].vehicle, b2.events[0].vehicle);
        assert_eq!(b2.events[0].group, b2.events[1].group);
        assert_eq!(model(&b2.new_groups[0]), "Zephyr");
        assert_eq!(model(&b2.new_groups[1]), UNKNOWN_MODEL, "V2 was retired");
        assert_eq!(stats.unknown, 1);
        // A snapshot replaces everything.
        c.load_records(&[VehicleRecord {
            vehicle_id: "V2".into(),
            model: "Aurex".into(),
            attributes: Default::default(),
        }]);
        assert_eq!(c.reference_len(), 1);
    }

    #[test]
    fn dimensions_split_groups_and_follow_the_reference_data() {
        let dims = ["fuel_type".to_string()];
        let table = ReferenceTable::from_csv_reader(
            "vehicle_id,model,fuel_type\nV1,Aurex,diesel\nV2,Aurex,electric\n".as_bytes(),
            &dims,
        )
        .unwrap();
        let mut c = VehicleCatalog::new(&table, UnknownVehiclePolicy::Unknown);
        let (b, _) = c.enrich_batch(records(vec![
            ev(0, "V1", "UK"),
            ev(1, "V2", "UK"),
            ev(2, "X9", "UK"),
        ]));
        fn labels(g: &GroupKey) -> (String, Vec<(&str, &str)>) {
            let dims = g.labels.iter().skip(2).map(|(n, v)| (&**n, &**v)).collect();
            (model(g).to_string(), dims)
        }
        assert_eq!(
            b.new_groups.iter().map(labels).collect::<Vec<_>>(),
            [
                ("Aurex".to_string(), vec![("fuel_type", "diesel")]),
                ("Aurex".to_string(), vec![("fuel_type", "electric")]),
                (UNKNOWN_MODEL.to_string(), vec![("fuel_type", "unknown")]),
            ]
        );
        // A topic record re-fuels V1; one without the attribute reads unknown.
        let mut attributes = std::collections::BTreeMap::new();
        attributes.insert("fuel_type".to_string(), "electric".to_string());
        c.apply(&ReferenceChange::Upsert(VehicleRecord {
            vehicle_id: "V1".into(),
            model: "Aurex".into(),
            attributes,
        }));
        c.apply(&ReferenceChange::Upsert(VehicleRecord {
            vehicle_id: "V3".into(),
            model: "Aurex".into(),
            attributes: Default::default(),
        }));
        let (b2, _) = c.enrich_batch(records(vec![ev(3, "V1", "UK"), ev(4, "V3", "UK")]));
        assert_eq!(b2.events[0].group, b.events[1].group, "V1 is electric now");
        assert_eq!(
            labels(&b2.new_groups[0]),
            ("Aurex".to_string(), vec![("fuel_type", "unknown")])
        );
        // A snapshot keeps the dimensions too.
        c.load_records(&[VehicleRecord {
            vehicle_id: "V3".into(),
            model: "Aurex".into(),
            attributes: [("fuel_type".to_string(), "diesel".to_string())].into(),
        }]);
        let (b3, _) = c.enrich_batch(records(vec![ev(5, "V3", "UK")]));
        assert_eq!(b3.events[0].group, b.events[0].group);
    }

    #[test]
    fn groups_by_every_event_label_of_the_plan_or_none() {
        let plan = |labels: &str| {
            MetricPlan::from_toml(&format!("[input]\nlabels = {labels}"), &[]).unwrap()
        };
        let mut c = VehicleCatalog::new(&table(), UnknownVehiclePolicy::Unknown)
            .with_event_labels(&plan(r#"["region", "site.depot"]"#));
        let (b, _) = c.enrich_batch(records(vec![
            rec(0, "V1", ["UK", "north"]),
            rec(1, "V1", ["UK", "south"]),
            rec(2, "V1", ["UK", "north"]),
            rec(3, "V1", ["north", "UK"]),
        ]));
        assert_eq!(b.new_groups.len(), 3);
        assert_eq!(b.events[0].group, b.events[2].group);
        assert_eq!(
            b.new_groups[1],
            GroupKey::new([("model", "Nebulara"), ("region", "UK"), ("depot", "south")])
        );
        assert_eq!(
            b.new_groups[2],
            GroupKey::new([("model", "Nebulara"), ("region", "north"), ("depot", "UK")])
        );
        let mut c = VehicleCatalog::new(&table(), UnknownVehiclePolicy::Unknown)
            .with_event_labels(&plan("[]"));
        let (b, _) = c.enrich_batch(records(vec![rec(0, "V1", []), rec(1, "V2", [])]));
        assert_eq!(
            b.new_groups,
            [
                GroupKey::new([("model", "Nebulara")]),
                GroupKey::new([("model", "Aurex")])
            ]
        );
    }
}
