//! The synthetic fleet: which vehicles exist, what model each is and where it runs.
//!
//! A fleet is a pure function of `(vehicles, seed)`, so the generator that sends
//! events and the reference CSV that the enricher reads always agree, even when
//! they are produced by different processes.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{self, Write};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

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

/// The fuel types of [`Model::fuel_type`], each used by at least one model.
pub const FUEL_TYPES: [&str; 4] = ["petrol", "diesel", "hybrid", "electric"];

/// A vehicle model: its name, its share of the fleet (relative weight), the
/// world manufacturer identifier (VIN positions 1–3) of the plant that builds
/// it and its fuel type.
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
    /// One of [`FUEL_TYPES`]: a reference attribute (the `fuel_type` column of
    /// the reference data) only. The simulated events do not depend on it.
    pub fuel_type: &'static str,
}

/// The models of the fleet. Names, weights and fuel types are invented; none
/// contains a comma or a quote, so the reference CSV needs no quoting.
pub const MODELS: [Model; 8] = [
    Model {
        name: "Nebulara",
        weight: 22,
        wmi: "JFX",
        fuel_type: "hybrid",
    },
    Model {
        name: "Aurelis",
        weight: 18,
        wmi: "WFX",
        fuel_type: "diesel",
    },
    Model {
        name: "Solenne",
        weight: 14,
        wmi: "VFX",
        fuel_type: "hybrid",
    },
    Model {
        name: "Kestrel",
        weight: 12,
        wmi: "SFX",
        fuel_type: "petrol",
    },
    Model {
        name: "Marisol",
        weight: 11,
        wmi: "5FX",
        fuel_type: "electric",
    },
    Model {
        name: "Zephyra",
        weight: 10,
        wmi: "KFX",
        fuel_type: "electric",
    },
    Model {
        name: "Tundrix",
        weight: 8,
        wmi: "9FX",
        fuel_type: "diesel",
    },
    Model {
        name: "Lumora",
        weight: 5,
        wmi: "MFX",
        fuel_type: "petrol",
    },
];

/// Model-year codes (VIN position 10) for [`FIRST_MODEL_YEAR`] and the years after it.
const MODEL_YEARS: &[u8] = b"NPRST";

/// The model year of the first code of [`MODEL_YEARS`].
const FIRST_MODEL_YEAR: u16 = 2022;

/// Index of the model-year code (position 10, counted from 1).
const MODEL_YEAR_INDEX: usize = 9;

/// The model year that the VIN code `code` (position 10) stands for, `None`
/// for a code the fleet does not use.
fn model_year(code: u8) -> Option<u16> {
    let index = MODEL_YEARS.iter().position(|&c| c == code)?;
    Some(FIRST_MODEL_YEAR + u16::try_from(index).ok()?)
}

/// The header of the reference CSV (docs/ARCHITECTURE.md, "Reference data"): `vehicle_id,model`
/// first, as every consumer expects, then the attributes that consumers knowing
/// only those two columns ignore.
pub const REFERENCE_CSV_HEADER: &str = "vehicle_id,model,fuel_type,model_year";

/// One vehicle of the fleet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vehicle {
    /// A valid 17-character VIN, unique in the fleet.
    pub vin: String,
    /// The model name, one of [`MODELS`].
    pub model: &'static str,
    /// The region, one of [`REGIONS`].
    pub region: &'static str,
    /// The fuel type of the model, one of [`FUEL_TYPES`].
    pub fuel_type: &'static str,
    /// The model year, 2022–2026, as coded at position 10 of the VIN.
    pub model_year: u16,
}

/// A vehicle's reference data as a JSON object, in the reference CSV's column order.
#[derive(Serialize)]
struct ReferenceRecord<'a> {
    model: &'a str,
    fuel_type: &'a str,
    model_year: u16,
}

impl Vehicle {
    /// The vehicle's reference data as the value of a message in the reference
    /// topic (docs/ARCHITECTURE.md, "Reference data"; key = VIN):
    /// `{"model":"…","fuel_type":"…","model_year":2024}`, the year a number.
    pub fn reference_json(&self) -> String {
        let record = ReferenceRecord {
            model: self.model,
            fuel_type: self.fuel_type,
            model_year: self.model_year,
        };
        // Serialising a struct of strings and an integer cannot fail.
        serde_json::to_string(&record).unwrap_or_default()
    }

    /// The vehicle's reference attributes, the CSV's columns after
    /// `vehicle_id`: `model`, `fuel_type` and `model_year` (decimal).
    pub fn reference_attributes(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("model".to_string(), self.model.to_string()),
            ("fuel_type".to_string(), self.fuel_type.to_string()),
            ("model_year".to_string(), self.model_year.to_string()),
        ])
    }
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
                fuel_type: model.fuel_type,
                // Read back from the VIN, not drawn: the random sequence, hence
                // every VIN, region and event of a seed, stays what it was.
                // `random_vin` writes a code of `MODEL_YEARS`, so the fallback
                // is never taken.
                model_year: model_year(vin[MODEL_YEAR_INDEX]).unwrap_or(FIRST_MODEL_YEAR),
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

    /// Writes the reference CSV: the header [`REFERENCE_CSV_HEADER`]
    /// (`vehicle_id,model,fuel_type,model_year`), then one row per vehicle.
    pub fn write_reference_csv(&self, mut out: impl Write) -> io::Result<()> {
        writeln!(out, "{REFERENCE_CSV_HEADER}")?;
        for v in &self.vehicles {
            writeln!(
                out,
                "{},{},{},{}",
                v.vin, v.model, v.fuel_type, v.model_year
            )?;
        }
        out.flush()
    }

    /// VIN → model, the reference data as consumers that know only
    /// `vehicle_id,model` see it.
    pub fn reference_map(&self) -> HashMap<String, String> {
        self.vehicles
            .iter()
            .map(|v| (v.vin.clone(), v.model.to_string()))
            .collect()
    }

    /// The fleet as reference records (the embedded source's reference data),
    /// every attribute kept.
    pub fn reference_records(&self) -> Vec<fleet_core::VehicleRecord> {
        self.vehicles
            .iter()
            .map(|v| fleet_core::VehicleRecord {
                vehicle_id: v.vin.clone(),
                model: v.model.to_string(),
                attributes: v.reference_attributes(),
            })
            .collect()
    }

    /// VIN → every reference attribute (`model`, `fuel_type`, `model_year`),
    /// the content of the reference CSV after `vehicle_id`; see
    /// [`Vehicle::reference_attributes`].
    pub fn reference_attributes(&self) -> HashMap<String, BTreeMap<String, String>> {
        self.vehicles
            .iter()
            .map(|v| (v.vin.clone(), v.reference_attributes()))
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
    out[MODEL_YEAR_INDEX] = MODEL_YEARS[rng.random_range(0..MODEL_YEARS.len())];
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
        assert_eq!(lines.next(), Some("vehicle_id,model,fuel_type,model_year"));
        let map = fleet.reference_map();
        let attributes = fleet.reference_attributes();
        let rows: Vec<&str> = lines.collect();
        assert_eq!(rows.len(), 1_000);
        assert_eq!(map.len(), 1_000);
        assert_eq!(attributes.len(), 1_000);
        let columns: Vec<&str> = REFERENCE_CSV_HEADER.split(',').collect();
        for (row, vehicle) in rows.iter().zip(fleet.vehicles()) {
            assert_eq!(
                *row,
                format!(
                    "{},{},{},{}",
                    vehicle.vin, vehicle.model, vehicle.fuel_type, vehicle.model_year
                )
            );
            assert_eq!(map[&vehicle.vin], vehicle.model);
            // The attributes are the row's columns after vehicle_id, by name.
            let by_column: BTreeMap<String, String> = columns[1..]
                .iter()
                .zip(row.split(',').skip(1))
                .map(|(c, v)| (c.to_string(), v.to_string()))
                .collect();
            assert_eq!(attributes[&vehicle.vin], by_column, "{row}");
        }
    }

    #[test]
    fn model_year_codes_map_to_2022_through_2026() {
        let years: Vec<Option<u16>> = b"NPRST".iter().map(|&c| model_year(c)).collect();
        assert_eq!(
            years,
            [Some(2022), Some(2023), Some(2024), Some(2025), Some(2026)]
        );
        assert_eq!(model_year(b'M'), None);
        assert_eq!(model_year(b'V'), None);
        assert_eq!(model_year(b'n'), None);
    }

    #[test]
    fn vehicles_take_fuel_type_from_their_model_and_year_from_their_vin() {
        let fleet = Fleet::new(10_000, 13);
        let mut years = HashSet::new();
        let mut fuels = HashSet::new();
        for v in fleet.vehicles() {
            let model = MODELS.iter().find(|m| m.name == v.model).unwrap();
            assert_eq!(v.fuel_type, model.fuel_type);
            assert_eq!(model_year(v.vin.as_bytes()[9]), Some(v.model_year));
            years.insert(v.model_year);
            fuels.insert(v.fuel_type);
        }
        assert_eq!(years.len(), 5, "{years:?}");
        assert_eq!(fuels.len(), FUEL_TYPES.len(), "{fuels:?}");
    }

    #[test]
    fn every_fuel_type_has_a_model_and_every_model_a_fuel_type() {
        for fuel in FUEL_TYPES {
            assert!(MODELS.iter().any(|m| m.fuel_type == fuel), "{fuel}");
        }
        for model in MODELS {
            assert!(FUEL_TYPES.contains(&model.fuel_type), "{}", model.name);
        }
    }

    /// Values produced before the fuel type and model year were added: deriving
    /// them draws no random number, so a seed's fleet and events are unchanged.
    #[test]
    fn a_seed_gives_the_same_vins_models_regions_and_events_as_before() {
        let fleet = Fleet::new(1_000, 42);
        let pinned = [
            (0, "KFXAZPTK3NP295860", "Zephyra", "UK", 2022),
            (1, "SFX71KF56TS581495", "Kestrel", "AU", 2026),
            (2, "JFXMP9ZP3SK578145", "Nebulara", "US-East", 2025),
            (999, "SFXJWMV15SD756730", "Kestrel", "PL", 2025),
        ];
        for (i, vin, model, region, year) in pinned {
            let v = &fleet.vehicles()[i];
            assert_eq!(
                (v.vin.as_str(), v.model, v.region, v.model_year),
                (vin, model, region, year),
                "vehicle {i}"
            );
        }
        let config = GeneratorConfig {
            vehicles: 1_000,
            seed: 42,
            start_ms: Some(1_764_000_000_000),
            ..GeneratorConfig::default()
        };
        let mut generator = crate::EventGenerator::new(&fleet, &config).unwrap();
        let mut out = Vec::new();
        crate::jsonl::write_events(generator.take_exact(20_000), &mut out, |_| {}).unwrap();
        // FNV-1a of the JSON lines.
        let hash = out.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        assert_eq!((hash, out.len()), (0xb8a7_bae9_82af_9fd7, 2_341_895));
    }

    #[test]
    fn the_reference_json_has_every_attribute_and_a_numeric_year() {
        let vehicle = Vehicle {
            vin: "JFXMP9ZP3SK578145".to_string(),
            model: "Nebulara",
            region: "US-East",
            fuel_type: "hybrid",
            model_year: 2025,
        };
        assert_eq!(
            vehicle.reference_json(),
            r#"{"model":"Nebulara","fuel_type":"hybrid","model_year":2025}"#
        );
        for v in Fleet::new(200, 2).vehicles() {
            let value: serde_json::Value = serde_json::from_str(&v.reference_json()).unwrap();
            assert_eq!(
                value,
                serde_json::json!({
                    "model": v.model,
                    "fuel_type": v.fuel_type,
                    "model_year": v.model_year,
                })
            );
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
