//! The join itself: interned vehicles, models, regions and groups.
//!
//! Every VIN ever seen keeps its [`VehicleKey`] for the life of the process,
//! and the model of vehicle `k` is `vehicle_model[k]`, so a lookup is one hash
//! of the VIN plus an index. Loading new reference data re-points that vector
//! without renumbering vehicles.

use std::collections::HashMap;
use std::sync::Arc;

use fleet_core::{EnrichedBatch, EnrichedEvent, GroupId, GroupKey, SourceBatch, VehicleKey};

use crate::{ReferenceTable, UnknownVehiclePolicy, UNKNOWN_MODEL};

/// Index into the interned model names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct ModelIdx(u32);

/// Index into the interned region names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct RegionIdx(u32);

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

/// VIN → model lookup with interning; owned by the enricher task.
#[derive(Debug)]
pub struct VehicleCatalog {
    policy: UnknownVehiclePolicy,
    vehicles: HashMap<Box<str>, VehicleKey>,
    /// Model of each vehicle, `None` when not in the reference data.
    vehicle_model: Vec<Option<ModelIdx>>,
    /// Whether an unknown vehicle has been seen, to count distinct unknowns.
    unknown_seen: Vec<bool>,
    distinct_unknown: u64,
    reference_len: usize,
    models: Vec<Arc<str>>,
    model_index: HashMap<Arc<str>, ModelIdx>,
    unknown_model: ModelIdx,
    regions: HashMap<Box<str>, RegionIdx>,
    region_names: Vec<Arc<str>>,
    groups: HashMap<(ModelIdx, RegionIdx), GroupId>,
}

impl VehicleCatalog {
    /// A catalog over `reference`.
    pub fn new(reference: &ReferenceTable, policy: UnknownVehiclePolicy) -> Self {
        let mut catalog = VehicleCatalog {
            policy,
            vehicles: HashMap::with_capacity(reference.len()),
            vehicle_model: Vec::with_capacity(reference.len()),
            unknown_seen: Vec::new(),
            distinct_unknown: 0,
            reference_len: 0,
            models: Vec::new(),
            model_index: HashMap::new(),
            unknown_model: ModelIdx(0),
            regions: HashMap::new(),
            region_names: Vec::new(),
            groups: HashMap::new(),
        };
        catalog.unknown_model = catalog.intern_model(UNKNOWN_MODEL);
        catalog.load(reference);
        catalog
    }

    /// Replaces the reference data. Vehicles keep their keys; vehicles no
    /// longer listed become unknown.
    pub fn load(&mut self, reference: &ReferenceTable) {
        for m in self.vehicle_model.iter_mut() {
            *m = None;
        }
        for (vin, model) in reference.rows() {
            let key = self.intern_vehicle(vin);
            let model = self.intern_model(model);
            self.vehicle_model[key.0 as usize] = Some(model);
        }
        self.reference_len = reference.len();
    }

    /// Rows in the reference data in force.
    pub fn reference_len(&self) -> usize {
        self.reference_len
    }

    /// Distinct vehicles seen that are not in the reference data.
    pub fn distinct_unknown_vehicles(&self) -> u64 {
        self.distinct_unknown
    }

    fn intern_vehicle(&mut self, vin: &str) -> VehicleKey {
        if let Some(k) = self.vehicles.get(vin) {
            return *k;
        }
        // More than 4 billion distinct VINs cannot happen in one process's life
        // for a real fleet; saturate rather than wrap if it ever did.
        let key = VehicleKey(u32::try_from(self.vehicle_model.len()).unwrap_or(u32::MAX));
        self.vehicles.insert(vin.into(), key);
        self.vehicle_model.push(None);
        self.unknown_seen.push(false);
        key
    }

    fn intern_model(&mut self, model: &str) -> ModelIdx {
        if let Some(m) = self.model_index.get(model) {
            return *m;
        }
        let idx = ModelIdx(u32::try_from(self.models.len()).unwrap_or(u32::MAX));
        let name: Arc<str> = model.into();
        self.models.push(name.clone());
        self.model_index.insert(name, idx);
        idx
    }

    fn intern_region(&mut self, region: &str) -> RegionIdx {
        if let Some(r) = self.regions.get(region) {
            return *r;
        }
        let idx = RegionIdx(u32::try_from(self.region_names.len()).unwrap_or(u32::MAX));
        self.regions.insert(region.into(), idx);
        self.region_names.push(region.into());
        idx
    }

    fn group(&mut self, model: ModelIdx, region: RegionIdx, new: &mut Vec<GroupKey>) -> GroupId {
        let next = GroupId(u32::try_from(self.groups.len()).unwrap_or(u32::MAX));
        *self.groups.entry((model, region)).or_insert_with(|| {
            new.push(GroupKey {
                model: self.models[model.0 as usize].clone(),
                region: self.region_names[region.0 as usize].clone(),
            });
            next
        })
    }

    /// Joins a batch; returns the enriched batch and what happened.
    pub fn enrich_batch(&mut self, batch: SourceBatch) -> (EnrichedBatch, Enrichment) {
        let mut out = EnrichedBatch {
            new_groups: Vec::new(),
            events: Vec::with_capacity(batch.len()),
            consumed_without_output: Vec::new(),
        };
        let mut stats = Enrichment::default();
        for source in batch {
            let vehicle = self.intern_vehicle(&source.event.vehicle_id);
            let model = match self.vehicle_model[vehicle.0 as usize] {
                Some(m) => {
                    stats.known += 1;
                    m
                }
                None => {
                    stats.unknown += 1;
                    let seen = &mut self.unknown_seen[vehicle.0 as usize];
                    if !*seen {
                        *seen = true;
                        self.distinct_unknown += 1;
                    }
                    if self.policy == UnknownVehiclePolicy::Drop {
                        stats.dropped += 1;
                        out.consumed_without_output
                            .push((source.partition, source.offset));
                        continue;
                    }
                    self.unknown_model
                }
            };
            let region = self.intern_region(&source.event.region);
            let group = self.group(model, region, &mut out.new_groups);
            out.events.push(EnrichedEvent {
                partition: source.partition,
                offset: source.offset,
                vehicle,
                group,
                event_type: source.event.event_type,
                timestamp: source.event.timestamp,
                measurement: source.event.measurement,
            });
        }
        (out, stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleet_core::{EventType, RawEvent, SourceEvent};

    fn ev(offset: i64, vin: &str, region: &str) -> SourceEvent {
        SourceEvent {
            partition: 0,
            offset,
            event: RawEvent {
                event_type: EventType::IcRpm,
                vehicle_id: vin.into(),
                region: region.into(),
                timestamp: 1000 + offset,
                measurement: 900,
            },
        }
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
        let (b, stats) = c.enrich_batch(vec![
            ev(0, "V1", "UK"),
            ev(1, "V2", "UK"),
            ev(2, "V1", "UK"),
        ]);
        assert_eq!(
            stats,
            Enrichment {
                known: 3,
                unknown: 0,
                dropped: 0
            }
        );
        assert_eq!(b.new_groups.len(), 2);
        assert_eq!(&*b.new_groups[0].model, "Nebulara");
        assert_eq!(b.events[0].group, b.events[2].group);
        assert_eq!(b.events[0].vehicle, b.events[2].vehicle);
        assert_ne!(b.events[0].vehicle, b.events[1].vehicle);
        let (b2, _) = c.enrich_batch(vec![ev(3, "V2", "UK"), ev(4, "V2", "FR")]);
        assert_eq!(b2.new_groups.len(), 1, "only (Aurex, FR) is new");
        assert_eq!(b2.events[1].group, GroupId(2));
    }

    #[test]
    fn unknown_vehicles_are_grouped_or_dropped_and_counted() {
        let mut c = VehicleCatalog::new(&table(), UnknownVehiclePolicy::Unknown);
        let (b, stats) = c.enrich_batch(vec![ev(0, "X9", "UK"), ev(1, "X9", "UK")]);
        assert_eq!(stats.unknown, 2);
        assert_eq!(&*b.new_groups[0].model, UNKNOWN_MODEL);
        assert_eq!(c.distinct_unknown_vehicles(), 1);

        let mut d = VehicleCatalog::new(&table(), UnknownVehiclePolicy::Drop);
        let (b, stats) = d.enrich_batch(vec![ev(0, "X9", "UK"), ev(1, "V1", "UK")]);
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
    fn reload_moves_vehicles_without_renumbering() {
        let mut c = VehicleCatalog::new(&table(), UnknownVehiclePolicy::Unknown);
        let (b1, _) = c.enrich_batch(vec![ev(0, "V1", "UK")]);
        c.load(&ReferenceTable::from_pairs([(
            "V1".to_string(),
            "Aurex".to_string(),
        )]));
        let (b2, _) = c.enrich_batch(vec![ev(1, "V1", "UK"), ev(2, "V2", "UK")]);
        assert_eq!(b1.events[0].vehicle, b2.events[0].vehicle);
        assert_eq!(&*b2.new_groups[0].model, "Aurex");
        assert_eq!(&*b2.new_groups[1].model, UNKNOWN_MODEL, "V2 was retired");
    }
}
