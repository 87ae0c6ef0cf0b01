//! Which vehicles the per-vehicle drill-down output follows.
//!
//! The selection itself ([`VehicleSelection`]) is decided once per vehicle
//! key and remembered in a bitset, so the hot path pays a bit test, not a
//! hash of the VIN per event. An allow-list reload forgets the decisions
//! (the next event of each vehicle decides again); a vehicle's id is
//! announced downstream once per process, the first time it is selected.

use std::sync::Arc;

use fleet_core::{SmallStr, VehicleKey};
use fleet_drilldown::VehicleSelection;

/// A [`VehicleSelection`] with its decisions cached per vehicle key.
#[derive(Debug)]
pub struct DrilldownSelector {
    selection: VehicleSelection,
    decided: Vec<u64>,
    selected: Vec<u64>,
    announced: Vec<u64>,
    announced_count: usize,
}

fn bit(set: &[u64], key: u32) -> bool {
    set.get(key as usize / 64)
        .is_some_and(|w| w & (1 << (key % 64)) != 0)
}

fn set_bit(set: &mut Vec<u64>, key: u32) {
    let word = key as usize / 64;
    if word >= set.len() {
        set.resize(word + 1, 0);
    }
    set[word] |= 1 << (key % 64);
}

impl Default for DrilldownSelector {
    fn default() -> Self {
        DrilldownSelector::new(VehicleSelection::Disabled)
    }
}

impl DrilldownSelector {
    /// Follows `selection`.
    pub fn new(selection: VehicleSelection) -> Self {
        DrilldownSelector {
            selection,
            decided: Vec::new(),
            selected: Vec::new(),
            announced: Vec::new(),
            announced_count: 0,
        }
    }

    /// Whether any vehicle can be selected.
    pub fn is_enabled(&self) -> bool {
        self.selection.is_enabled()
    }

    /// Whether `vehicle` (with id `vin`) is drilled down; announces it in
    /// `new` the first time it is.
    #[inline]
    pub fn selects(
        &mut self,
        vehicle: u32,
        vin: &SmallStr,
        new: &mut Vec<(VehicleKey, Arc<str>)>,
    ) -> bool {
        if !self.selection.is_enabled() {
            return false;
        }
        if !bit(&self.decided, vehicle) {
            set_bit(&mut self.decided, vehicle);
            if self.selection.selects(vin.as_str()) {
                set_bit(&mut self.selected, vehicle);
            }
        }
        if !bit(&self.selected, vehicle) {
            return false;
        }
        if !bit(&self.announced, vehicle) {
            set_bit(&mut self.announced, vehicle);
            self.announced_count += 1;
            new.push((VehicleKey(vehicle), vin.as_str().into()));
        }
        true
    }

    /// Distinct vehicles drilled down so far.
    pub fn vehicles(&self) -> usize {
        self.announced_count
    }

    /// The selection, for its allow-list reloads.
    pub fn selection_mut(&mut self) -> &mut VehicleSelection {
        &mut self.selection
    }

    /// The selection changed: decide every vehicle again on its next event.
    pub fn reselect(&mut self) {
        self.decided.clear();
        self.selected.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleet_drilldown::AllowList;

    #[test]
    fn decides_once_announces_once_and_reselects_after_a_reload() {
        let mut s = DrilldownSelector::new(VehicleSelection::AllowList {
            list: AllowList::from_vins(["V1"]),
            watch: None,
        });
        let mut new = Vec::new();
        assert!(s.selects(0, &"V1".into(), &mut new));
        assert!(s.selects(0, &"V1".into(), &mut new));
        assert!(!s.selects(200, &"V2".into(), &mut new));
        assert_eq!(new, [(VehicleKey(0), Arc::from("V1"))]);
        if let VehicleSelection::AllowList { list, .. } = s.selection_mut() {
            *list = AllowList::from_vins(["V2"]);
        }
        assert!(
            s.selects(0, &"V1".into(), &mut new),
            "decided before the reload"
        );
        s.reselect();
        assert!(!s.selects(0, &"V1".into(), &mut new));
        assert!(s.selects(200, &"V2".into(), &mut new));
        assert_eq!(new.len(), 2);
        assert_eq!(s.vehicles(), 2);
    }

    #[test]
    fn disabled_selects_nothing() {
        let mut s = DrilldownSelector::default();
        let mut new = Vec::new();
        assert!(!s.selects(0, &"V1".into(), &mut new));
        assert!(new.is_empty());
    }
}
