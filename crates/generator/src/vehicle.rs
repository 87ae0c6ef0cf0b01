//! What one simulated vehicle measures, second by second.
//!
//! A small Markov chain per vehicle: parked, electric drive, engine drive, or
//! both at once (hybrid). Each simulated second the vehicle may change state,
//! its motor speeds drift, a warning light may come on or go off, and it reports
//! one reading. Rates are per second and chosen so states last minutes, like
//! real trips; in the long run about half of the fleet is parked.

use fleet_core::EventType;
use rand::rngs::SmallRng;
use rand::Rng;

/// Which motors turn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Drive {
    /// Both motors still; reports 0 RPM.
    Parked,
    /// Electric motor only.
    Electric,
    /// Combustion engine only.
    Engine,
    /// Both motors.
    Hybrid,
}

impl Drive {
    /// Mean time in the state, seconds (invented, "minutes" per the design).
    fn mean_dwell_s(self) -> f64 {
        match self {
            Drive::Parked => 720.0,
            Drive::Electric => 240.0,
            Drive::Engine => 300.0,
            Drive::Hybrid => 180.0,
        }
    }

    /// Where the vehicle goes when it leaves the state, with relative weights.
    /// Hybrids mostly pull away on electric power and stop from it.
    fn successors(self) -> [(Drive, u32); 3] {
        match self {
            Drive::Parked => [
                (Drive::Electric, 70),
                (Drive::Engine, 30),
                (Drive::Hybrid, 0),
            ],
            Drive::Electric => [
                (Drive::Parked, 40),
                (Drive::Engine, 25),
                (Drive::Hybrid, 35),
            ],
            Drive::Engine => [
                (Drive::Parked, 30),
                (Drive::Electric, 30),
                (Drive::Hybrid, 40),
            ],
            Drive::Hybrid => [
                (Drive::Parked, 20),
                (Drive::Electric, 40),
                (Drive::Engine, 40),
            ],
        }
    }

    /// Long-run share of time in each state, per mille, so a fresh fleet starts
    /// in equilibrium (computed from the dwell times and successor weights).
    pub(crate) const STATIONARY: [(Drive, u32); 4] = [
        (Drive::Parked, 484),
        (Drive::Electric, 215),
        (Drive::Engine, 197),
        (Drive::Hybrid, 104),
    ];

    /// The state after one more second: `Some` when the vehicle leaves this one.
    pub(crate) fn transition(self, rng: &mut SmallRng) -> Option<Drive> {
        (rng.random::<f64>() < 1.0 / self.mean_dwell_s()).then(|| pick(rng, &self.successors()))
    }

    pub(crate) fn uses_engine(self) -> bool {
        matches!(self, Drive::Engine | Drive::Hybrid)
    }

    pub(crate) fn uses_electric(self) -> bool {
        matches!(self, Drive::Electric | Drive::Hybrid)
    }
}

/// Share of readings that are the warning-light count (the rest are RPM).
pub(crate) const WARNINGS_SHARE: f64 = 0.10;
/// Chance per second that one more warning light comes on: about once in three hours.
const LIGHT_ON_PER_S: f64 = 1.0 / 10_800.0;
/// Chance per second that a given light goes off: lights stay on about 15 minutes.
const LIGHT_OFF_PER_S: f64 = 1.0 / 900.0;
/// At most this many lights are on at once.
pub(crate) const MAX_LIGHTS: u8 = 3;
/// Combustion engine speed range while running (idle to a spirited overtake).
const IC_RPM: (i32, i32) = (750, 5_800);
/// Electric motor speed range while driving forward.
const ELECTRIC_RPM: (i32, i32) = (150, 11_000);
/// Chance per second that a driving electric motor starts regenerating
/// (reported as negative RPM), and that it stops.
const REGEN_START_PER_S: f64 = 0.06;
const REGEN_STOP_PER_S: f64 = 0.25;

/// One reading, before it is addressed to a vehicle and a time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Reading {
    pub(crate) event_type: EventType,
    pub(crate) measurement: i32,
}

/// The simulated state of one vehicle.
#[derive(Clone, Debug)]
pub(crate) struct VehicleSim {
    drive: Drive,
    ic_rpm: i32,
    electric_rpm: i32,
    warning_lights: u8,
}

impl VehicleSim {
    /// A vehicle drawn from the long-run distribution of states.
    pub(crate) fn new(rng: &mut SmallRng) -> VehicleSim {
        let drive = pick(rng, &Drive::STATIONARY);
        let warning_lights = initial_warning_lights(rng);
        VehicleSim {
            drive,
            ic_rpm: rng.random_range(900..=2_200),
            electric_rpm: rng.random_range(800..=3_000),
            warning_lights,
        }
    }

    /// Advances the vehicle by one second and returns what it reports.
    pub(crate) fn tick(&mut self, rng: &mut SmallRng) -> Reading {
        if let Some(next) = self.drive.transition(rng) {
            if next.uses_engine() && !self.drive.uses_engine() {
                self.ic_rpm = rng.random_range(900..=1_800);
            }
            if next.uses_electric() && !self.drive.uses_electric() {
                self.electric_rpm = rng.random_range(800..=3_000);
            }
            self.drive = next;
        }
        if self.drive.uses_engine() {
            self.ic_rpm = (self.ic_rpm + rng.random_range(-180..=180)).clamp(IC_RPM.0, IC_RPM.1);
        }
        if self.drive.uses_electric() {
            self.electric_rpm = self.next_electric_rpm(rng);
        }
        self.warning_lights = next_warning_lights(self.warning_lights, rng);
        self.report(rng.random::<f64>())
    }

    /// Forward speed drifts; sometimes the motor regenerates (negative), which
    /// lasts a few seconds.
    fn next_electric_rpm(&self, rng: &mut SmallRng) -> i32 {
        let rpm = self.electric_rpm;
        if rpm < 0 {
            if rng.random::<f64>() < REGEN_STOP_PER_S {
                rng.random_range(600..=2_000)
            } else {
                (rpm + rng.random_range(-150..=150)).clamp(-2_500, -100)
            }
        } else if rng.random::<f64>() < REGEN_START_PER_S {
            -rng.random_range(300..=2_500)
        } else {
            (rpm + rng.random_range(-350..=350)).clamp(ELECTRIC_RPM.0, ELECTRIC_RPM.1)
        }
    }

    /// One reading: the warning count, or the RPM of a sensor relevant to the
    /// state (`draw` is uniform in `[0, 1)`).
    fn report(&self, draw: f64) -> Reading {
        if draw < WARNINGS_SHARE {
            return Reading {
                event_type: EventType::Warnings,
                measurement: i32::from(self.warning_lights),
            };
        }
        let either_sensor_is_ic = draw < WARNINGS_SHARE + (1.0 - WARNINGS_SHARE) / 2.0;
        let (event_type, measurement) = match self.drive {
            Drive::Parked if either_sensor_is_ic => (EventType::IcRpm, 0),
            Drive::Parked => (EventType::ElectricRpm, 0),
            Drive::Engine => (EventType::IcRpm, self.ic_rpm),
            Drive::Electric => (EventType::ElectricRpm, self.electric_rpm),
            Drive::Hybrid if either_sensor_is_ic => (EventType::IcRpm, self.ic_rpm),
            Drive::Hybrid => (EventType::ElectricRpm, self.electric_rpm),
        };
        Reading {
            event_type,
            measurement,
        }
    }
}

/// Warning lights on in a vehicle drawn from the long-run distribution.
pub(crate) fn initial_warning_lights(rng: &mut SmallRng) -> u8 {
    match rng.random_range(0..1_000) {
        0..=919 => 0,
        920..=979 => 1,
        980..=994 => 2,
        _ => 3,
    }
}

/// The number of warning lights on a second after `lights` were: now and
/// then one comes on, and each that is on goes off after a while.
pub(crate) fn next_warning_lights(lights: u8, rng: &mut SmallRng) -> u8 {
    let light = rng.random::<f64>();
    if light < LIGHT_ON_PER_S {
        (lights + 1).min(MAX_LIGHTS)
    } else if light < LIGHT_ON_PER_S + f64::from(lights) * LIGHT_OFF_PER_S {
        lights - 1
    } else {
        lights
    }
}

/// A choice drawn with probability proportional to its weight.
pub(crate) fn pick<T: Copy>(rng: &mut SmallRng, choices: &[(T, u32)]) -> T {
    let total: u32 = choices.iter().map(|c| c.1).sum();
    let mut ticket = rng.random_range(0..total.max(1));
    for &(choice, weight) in choices {
        if ticket < weight {
            return choice;
        }
        ticket -= weight;
    }
    choices[0].0
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    /// Runs `vehicles` vehicles for `seconds` and collects what they report.
    fn run(vehicles: usize, seconds: usize) -> (Vec<Reading>, Vec<Drive>) {
        let mut rng = SmallRng::seed_from_u64(1);
        let mut fleet: Vec<VehicleSim> = (0..vehicles).map(|_| VehicleSim::new(&mut rng)).collect();
        let mut readings = Vec::new();
        let mut drives = Vec::new();
        for _ in 0..seconds {
            for v in &mut fleet {
                readings.push(v.tick(&mut rng));
                drives.push(v.drive);
            }
        }
        (readings, drives)
    }

    #[test]
    fn readings_match_the_state() {
        let (readings, drives) = run(200, 600);
        for (r, d) in readings.iter().zip(&drives) {
            match (r.event_type, d) {
                (EventType::Warnings, _) => assert!((0..=3).contains(&r.measurement)),
                (_, Drive::Parked) => assert_eq!(r.measurement, 0),
                (EventType::IcRpm, Drive::Engine | Drive::Hybrid) => {
                    assert!((IC_RPM.0..=IC_RPM.1).contains(&r.measurement))
                }
                (EventType::ElectricRpm, Drive::Electric | Drive::Hybrid) => {
                    assert_ne!(r.measurement, 0)
                }
                other => panic!("unexpected reading {other:?}"),
            }
        }
        assert!(readings
            .iter()
            .any(|r| r.event_type == EventType::ElectricRpm && r.measurement < 0));
    }

    #[test]
    fn about_half_the_fleet_moves_and_few_lights_are_on() {
        let (readings, drives) = run(1_000, 300);
        let parked =
            drives.iter().filter(|d| **d == Drive::Parked).count() as f64 / drives.len() as f64;
        assert!((0.40..0.56).contains(&parked), "parked share {parked}");
        let warnings: Vec<i32> = readings
            .iter()
            .filter(|r| r.event_type == EventType::Warnings)
            .map(|r| r.measurement)
            .collect();
        let lit = warnings.iter().filter(|&&m| m > 0).count() as f64 / warnings.len() as f64;
        assert!(
            (0.02..0.15).contains(&lit),
            "share of vehicles with lights on {lit}"
        );
    }

    #[test]
    fn states_change_over_minutes_not_seconds() {
        let (_, drives) = run(100, 600);
        let changes = drives
            .chunks(100)
            .zip(drives.chunks(100).skip(1))
            .map(|(a, b)| a.iter().zip(b).filter(|(x, y)| x != y).count())
            .sum::<usize>() as f64;
        // 100 vehicles for 600 s with mean dwell times of 3–12 minutes.
        let per_vehicle_minute = changes / 100.0 / 10.0;
        assert!(
            (0.05..0.5).contains(&per_vehicle_minute),
            "{per_vehicle_minute}"
        );
    }
}
