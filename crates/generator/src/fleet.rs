//! The synthetic fleet: which vehicles exist, what model each is and where it runs.
//!
//! A fleet is a pure function of `(vehicles, seed)`, so the generator that sends
//! events and the reference CSV that the enricher reads always agree, even when
//! they are produced by different processes.

use std::collections::{HashMap, HashSet};
use std::io::{self, Write};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::config::GeneratorConfig;
use crate::vin;

/// Where the fleet runs, with relative weights: a rental company's fleet is
/// concentrated in a few markets and thin in others, and dashboards should show
/// that unevenness. The weights are invented.
pub const REGIONS: [(&str, u32); 20] = [
    ("US-East", 140),
    ("US-West", 120),
    ("DE", 100),
    ("UK", 90),
    ("FR", 80),
    ("JP", 70),
    ("US-Central", 60),
    ("ES", 50),
    ("IT", 45),
    ("CA", 40),
    ("BR", 40),
    ("IN", 30),
    ("AU", 30),
    ("NL", 25),
    ("KR", 20),
    ("MX", 20),
    ("SE", 15),
    ("PL", 15),
    ("SG", 10),
    ("AE", 10),
];

/// A vehicle model: its name, its share of the fleet (relative weight) and the
/// world manufacturer identifier (VIN positions 1–3) of the plant that builds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Model {
    /// The model name, as it appears in the reference data and in the `model` label.
    pub name: &'static str,
    /// Relative share of the fleet.
    pub weight: u32,
    /// VIN positions 1–3. The first character is the country of manufacture
    /// (J Japan, W Germany, S UK, V France, 5 USA, K Korea, 9 Brazil, M India);
    /// the rest is invented.
    pub wmi: &'static str,
}

/// The models of the fleet. Names and weights are invented; none contains a
/// comma or a quote, so the reference CSV needs no quoting.
pub const MODELS: [Model; 8] = [
    Model {
        name: "Nebulara",
        weight: 22,
        wmi: "JFX",
    },
    Model {
        name: "Aurelis",
        weight: 18,
        wmi: "WFX",
    },
    Model {
        name: "Solenne",
        weight: 14,
        wmi: "VFX",
    },
    Model {
        name: "Kestrel",
        weight: 12,
        wmi: "SFX",
    },
    Model {
        name: "Marisol",
        weight: 11,
        wmi: "5FX",
    },
    Model {
        name: "Zephyra",
        weight: 10,
        wmi: "KFX",
    },
    Model {
        name: "Tundrix",
        weight: 8,
        wmi: "9FX",
    },
    Model {
        name: "Lumora",
        weight: 5,
        wmi: "MFX",
    },
];

/// Model-year codes (VIN position 10) for 2022–2026.
const MODEL_YEARS: &[u8] = b"NPRST";

/// The header of the reference CSV (DESIGN: reference data).
pub const REFERENCE_CSV_HEADER: &str = "vehicle_id,model";

/// One vehicle of the fleet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vehicle {
    /// A valid 17-character VIN, unique in the fleet.
    pub vin: String,
    /// The model name, one of [`MODELS`].
    pub model: &'static str,
    /// The region, one of [`REGIONS`].
    pub region: &'static str,
}

/// A deterministic set of vehicles with distinct VINs.
#[derive(Clone, Debug)]
pub struct Fleet {
    vehicles: Vec<Vehicle>,
}

impl Fleet {
    /// `vehicles` vehicles, the same ones for the same `seed`.
    pub fn new(vehicles: usize, seed: u64) -> Fleet {
        let mut rng = SmallRng::seed_from_u64(seed);
        let mut seen = HashSet::with_capacity(vehicles);
        let mut fleet = Vec::with_capacity(vehicles);
        while fleet.len() < vehicles {
            let model = MODELS[pick_weighted(&mut rng, MODELS.iter().map(|m| m.weight))];
            let vin = random_vin(&mut rng, model.wmi.as_bytes());
            // The space of VINs is large enough that a clash is rare; redrawing
            // keeps them distinct without making them look sequential.
            if !seen.insert(vin) {
                continue;
            }
            let region = REGIONS[pick_weighted(&mut rng, REGIONS.iter().map(|r| r.1))].0;
            fleet.push(Vehicle {
                // Built from `vin::ALPHABET`, which is ASCII.
                vin: String::from_utf8_lossy(&vin).into_owned(),
                model: model.name,
                region,
            });
        }
        Fleet { vehicles: fleet }
    }

    /// The fleet described by `config.vehicles` and `config.seed`.
    pub fn from_config(config: &GeneratorConfig) -> Fleet {
        Fleet::new(config.vehicles, config.seed)
    }

    /// Every vehicle, in a fixed order.
    pub fn vehicles(&self) -> &[Vehicle] {
        &self.vehicles
    }

    /// The number of vehicles.
    pub fn len(&self) -> usize {
        self.vehicles.len()
    }

    /// Whether the fleet has no vehicles.
    pub fn is_empty(&self) -> bool {
        self.vehicles.is_empty()
    }

    /// Writes the reference CSV: the header `vehicle_id,model`, then one row per vehicle.
    pub fn write_reference_csv(&self, mut out: impl Write) -> io::Result<()> {
        writeln!(out, "{REFERENCE_CSV_HEADER}")?;
        for vehicle in &self.vehicles {
            writeln!(out, "{},{}", vehicle.vin, vehicle.model)?;
        }
        out.flush()
    }

    /// VIN → model, the content of the reference data.
    pub fn reference_map(&self) -> HashMap<String, String> {
        self.vehicles
            .iter()
            .map(|v| (v.vin.clone(), v.model.to_string()))
            .collect()
    }
}

/// An index drawn with probability proportional to its weight.
fn pick_weighted(rng: &mut SmallRng, weights: impl Iterator<Item = u32> + Clone) -> usize {
    let total: u32 = weights.clone().sum();
    let mut ticket = rng.random_range(0..total);
    let mut last = 0;
    for (i, weight) in weights.enumerate() {
        if ticket < weight {
            return i;
        }
        ticket -= weight;
        last = i;
    }
    last
}

/// A VIN of the manufacturer `wmi`: random descriptor, model year, plant and
/// serial number, and the check digit that makes it valid.
fn random_vin(rng: &mut SmallRng, wmi: &[u8]) -> [u8; vin::LENGTH] {
    let mut out = [b'0'; vin::LENGTH];
    out[..3].copy_from_slice(wmi);
    for c in &mut out[3..8] {
        *c = vin::ALPHABET[rng.random_range(0..vin::ALPHABET.len())];
    }
    out[9] = MODEL_YEARS[rng.random_range(0..MODEL_YEARS.len())];
    out[10] = vin::ALPHABET[rng.random_range(10..vin::ALPHABET.len())];
    // North American serial numbers (positions 12–17) are digits.
    for c in &mut out[11..] {
        *c = b'0' + rng.random_range(0..10u8);
    }
    // Every byte above is from the alphabet, so the check digit exists.
    out[vin::CHECK_DIGIT_INDEX] = vin::check_digit(&out).unwrap_or(b'X');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hundred_thousand_vins_are_valid_and_distinct() {
        let fleet = Fleet::new(100_000, 11);
        assert_eq!(fleet.len(), 100_000);
        let mut seen = HashSet::new();
        for v in fleet.vehicles() {
            assert!(vin::is_valid(&v.vin), "{}", v.vin);
            assert!(!v.vin.contains(['I', 'O', 'Q']), "{}", v.vin);
            assert!(seen.insert(v.vin.as_str()), "duplicate {}", v.vin);
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_fleet_and_another_seed_another() {
        assert_eq!(Fleet::new(500, 7).vehicles(), Fleet::new(500, 7).vehicles());
        assert_ne!(Fleet::new(500, 7).vehicles(), Fleet::new(500, 8).vehicles());
    }

    #[test]
    fn regions_and_models_follow_their_weights() {
        let fleet = Fleet::new(100_000, 3);
        let count = |f: &dyn Fn(&Vehicle) -> bool| fleet.vehicles().iter().filter(|v| f(v)).count();
        let region_total: u32 = REGIONS.iter().map(|r| r.1).sum();
        for (region, weight) in REGIONS {
            let expected = 100_000.0 * f64::from(weight) / f64::from(region_total);
            let seen = count(&|v| v.region == region) as f64;
            assert!(
                (seen - expected).abs() < 0.15 * expected + 50.0,
                "{region}: {seen} vs {expected}"
            );
        }
        let model_total: u32 = MODELS.iter().map(|m| m.weight).sum();
        for model in MODELS {
            let expected = 100_000.0 * f64::from(model.weight) / f64::from(model_total);
            let seen = count(&|v| v.model == model.name) as f64;
            assert!(
                (seen - expected).abs() < 0.1 * expected,
                "{}: {seen} vs {expected}",
                model.name
            );
        }
    }

    #[test]
    fn the_reference_csv_has_the_header_and_one_row_per_vehicle() {
        let fleet = Fleet::new(1_000, 5);
        let mut csv = Vec::new();
        fleet.write_reference_csv(&mut csv).unwrap();
        let text = String::from_utf8(csv).unwrap();
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some("vehicle_id,model"));
        let map = fleet.reference_map();
        let rows: Vec<&str> = lines.collect();
        assert_eq!(rows.len(), 1_000);
        assert_eq!(map.len(), 1_000);
        for (row, vehicle) in rows.iter().zip(fleet.vehicles()) {
            assert_eq!(*row, format!("{},{}", vehicle.vin, vehicle.model));
            assert_eq!(map[&vehicle.vin], vehicle.model);
        }
    }

    #[test]
    fn names_need_no_csv_quoting() {
        for name in MODELS
            .iter()
            .map(|m| m.name)
            .chain(REGIONS.iter().map(|r| r.0))
        {
            assert!(
                !name.is_empty() && !name.contains([',', '"', '\n', '\r']),
                "{name}"
            );
        }
    }
}
