//! One simulated vehicle of the wide records, second by second.
//!
//! The drive state is the narrow simulation's chain ([`Drive`]): parked, or
//! moving on electric power, the engine or both. Around it each quantity
//! follows simple first-order physics, so the signals agree with each other
//! as a real vehicle's do: speed follows the stretches of a trip (town,
//! country road, motorway, stops) and is 0 when parked; the gear is P or N
//! only at a standstill and R only while manoeuvring slowly; the traction
//! battery drains with speed and charges when plugged in; coolant and oil
//! warm up while the engine runs and cool towards the ambient temperature,
//! which follows the time of day; tyres warm with speed and their pressure
//! with them; doors open only at a standstill. Rates are per second.

use std::f64::consts::TAU;

use fleet_core::TimestampMs;
use rand::rngs::SmallRng;
use rand::Rng;

use fleet_plan::SignalType;

use super::Value;
use crate::vehicle::{initial_warning_lights, next_warning_lights, pick, Drive};

/// The states of the `gear` signal, indexed by [`Gear`].
pub(super) const GEAR_STATES: [&str; 4] = ["P", "R", "N", "D"];

/// What a signal of the layout reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Quantity {
    Speed,
    Gear,
    Soc,
    Coolant,
    Odometer,
    Charging,
    EngineRpm,
    Warnings,
    Cabin,
    Ambient,
    Oil,
    BatteryTemp,
    HvVolts,
    HvAmps,
    LvVolts,
    /// Front left, front right, rear left, rear right.
    Tyre(usize),
    /// The four doors in tyre order, then the trunk.
    Door(usize),
    AccelPedal,
    Brake,
    Headlights,
    /// The `n`th extra sensor.
    Extra(usize),
}

/// The gear selector, in [`GEAR_STATES`] order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Gear {
    Park,
    Reverse,
    Neutral,
    Drive,
}

/// A stretch of a trip: the speed aimed at (km/h) and how long (s).
#[derive(Clone, Copy, Debug)]
struct Stretch {
    speed: (f64, f64),
    seconds: (u32, u32),
}

const fn stretch(speed: (f64, f64), seconds: (u32, u32)) -> Stretch {
    Stretch { speed, seconds }
}

/// The stretches of a trip, with relative weights: stops at lights and in
/// traffic, town, country roads, motorway.
const STRETCHES: [(Stretch, u32); 4] = [
    (stretch((0.0, 0.0), (10, 45)), 15),
    (stretch((20.0, 50.0), (30, 180)), 45),
    (stretch((50.0, 90.0), (60, 300)), 25),
    (stretch((90.0, 130.0), (120, 600)), 15),
];

/// Largest speed gain and loss in one second, km/h (about 0.8 and 1.7 m/s²).
const ACCELERATION: f64 = 3.0;
const DECELERATION: f64 = 6.0;
/// Reversing out of a parking space: the speed aimed at, and the share of trips that start so.
const REVERSE_KMH: f64 = 5.0;
const REVERSE_SHARE: f64 = 0.3;
/// Traction battery: percent of charge per ampere-second (60 kWh at 360 V).
const SOC_PER_AMP_S: f64 = 100.0 / 600_000.0;
/// Charging current, A (negative: into the battery).
const CHARGE_AMPS: f64 = -40.0;
/// Chance per second that a parked vehicle below [`PLUG_IN_BELOW`] % is plugged in.
const PLUG_IN_PER_S: f64 = 0.004;
const PLUG_IN_BELOW: f64 = 75.0;
/// Chance per second that a closed door of a parked vehicle opens, and of the trunk.
const DOOR_OPEN_PER_S: f64 = 0.000_5;
const TRUNK_OPEN_PER_S: f64 = 0.000_3;
/// Tyre pressures are given cold, at this temperature (°C).
const COLD_TYRE_C: f64 = 20.0;
/// A leaking tyre is reinflated to its cold pressure when it falls below this, kPa.
const REINFLATE_BELOW_KPA: f64 = 160.0;

/// The simulated state of one vehicle.
#[derive(Clone, Debug)]
pub(super) struct WideVehicle {
    drive: Drive,
    /// km/h, and its change over the last second.
    speed: f64,
    acceleration: f64,
    /// The speed aimed at, and the seconds left of the stretch.
    target: f64,
    stretch_s: u32,
    /// Seconds of reversing left at the start of a trip.
    reverse_s: u32,
    /// Waiting in neutral during the current stop.
    neutral_at_stop: bool,
    /// A trip ended: the driver's door opens once the vehicle stands.
    arriving: bool,
    gear: Gear,
    /// State of charge, %; with a charge target while plugged in.
    soc: f64,
    charge_to: Option<f64>,
    amps: f64,
    odometer_km: f64,
    engine_rpm: f64,
    /// Temperatures, °C; `ambient` = `ambient_mean` + the time of day.
    ambient_mean: f64,
    ambient: f64,
    coolant: f64,
    oil: f64,
    battery: f64,
    cabin: f64,
    tyre: f64,
    /// Cold pressures (kPa), and a slow leak: which tyre, kPa per second.
    tyre_cold_kpa: [f64; 4],
    leak: Option<(usize, f64)>,
    /// Seconds each door (four, then the trunk) stays open.
    door_open_s: [u32; 5],
    /// How much below a healthy resting voltage this 12 V battery is, V.
    lv_weakness: f64,
    parked_s: u32,
    headlights: bool,
    warning_lights: u8,
    /// The extra sensors' values.
    extras: Vec<f64>,
}

impl WideVehicle {
    /// A vehicle drawn from the long-run distribution of drive states, with
    /// its own battery, tyres and climate; `extras` are the extra sensors' ranges.
    pub(super) fn new(rng: &mut SmallRng, extras: &[(f64, f64)]) -> WideVehicle {
        let drive = pick(rng, &Drive::STATIONARY);
        let ambient_mean = rng.random_range(-5.0..30.0);
        let moving = drive != Drive::Parked;
        let coolant = if drive.uses_engine() {
            rng.random_range(80.0..95.0)
        } else {
            ambient_mean + rng.random_range(0.0..15.0)
        };
        WideVehicle {
            drive,
            speed: if moving {
                rng.random_range(20.0..80.0)
            } else {
                0.0
            },
            acceleration: 0.0,
            target: 0.0,
            stretch_s: 0,
            reverse_s: 0,
            neutral_at_stop: false,
            arriving: false,
            gear: if moving { Gear::Drive } else { Gear::Park },
            soc: rng.random_range(25.0..95.0),
            charge_to: None,
            amps: 0.0,
            odometer_km: rng.random_range(2_000.0..180_000.0),
            engine_rpm: 0.0,
            ambient_mean,
            ambient: ambient_mean,
            coolant,
            oil: coolant,
            battery: ambient_mean + 5.0,
            cabin: if moving { 21.0 } else { ambient_mean },
            tyre: ambient_mean,
            tyre_cold_kpa: [(); 4].map(|()| rng.random_range(220.0..250.0)),
            leak: (rng.random::<f64>() < 0.03)
                .then(|| (rng.random_range(0..4), rng.random_range(0.000_5..0.003))),
            door_open_s: [0; 5],
            lv_weakness: if rng.random::<f64>() < 0.05 {
                rng.random_range(0.2..0.6)
            } else {
                0.0
            },
            parked_s: 0,
            headlights: false,
            warning_lights: initial_warning_lights(rng),
            extras: extras
                .iter()
                .map(|&(min, max)| rng.random_range(min..=max))
                .collect(),
        }
    }

    /// Advances the vehicle by one second, to `timestamp`.
    pub(super) fn tick(
        &mut self,
        rng: &mut SmallRng,
        timestamp: TimestampMs,
        extras: &[(f64, f64)],
    ) {
        let was_moving = self.drive != Drive::Parked;
        if let Some(next) = self.drive.transition(rng) {
            self.drive = next;
        }
        let moving = self.drive != Drive::Parked;
        if moving && !was_moving {
            self.start_trip(rng);
        } else if !moving && was_moving {
            self.reverse_s = 0;
            self.arriving = true;
        }
        self.drive_on(rng, moving);
        self.energy(rng, moving);
        let hour = timestamp.rem_euclid(86_400_000) as f64 / 3_600_000.0;
        self.climate(rng, hour);
        self.doors(rng);
        self.headlights = self.speed > 0.0 && !(7.0..18.0).contains(&hour);
        self.warning_lights = next_warning_lights(self.warning_lights, rng);
        for (value, &(min, max)) in self.extras.iter_mut().zip(extras) {
            let (center, span) = ((min + max) / 2.0, (max - min) / 2.0);
            let noise = rng.random_range(-0.05..0.05) * span;
            *value = (*value + 0.02 * (center - *value) + noise).clamp(min, max);
        }
    }

    fn start_trip(&mut self, rng: &mut SmallRng) {
        self.charge_to = None;
        self.door_open_s = [0; 5];
        self.arriving = false;
        self.neutral_at_stop = false;
        self.stretch_s = 0;
        // Out of a parking space, not when a stop turns into a new trip.
        self.reverse_s = if self.speed == 0.0 && rng.random::<f64>() < REVERSE_SHARE {
            rng.random_range(4..=10)
        } else {
            0
        };
    }

    /// Speed, gear, odometer and pedals.
    fn drive_on(&mut self, rng: &mut SmallRng, moving: bool) {
        if !moving {
            self.target = 0.0;
        } else if self.reverse_s > 0 {
            self.reverse_s -= 1;
            // The last two seconds stop the vehicle before it drives off.
            self.target = if self.reverse_s > 2 { REVERSE_KMH } else { 0.0 };
        } else if self.stretch_s == 0 {
            let stretch = pick(rng, &STRETCHES);
            self.target = rng.random_range(stretch.speed.0..=stretch.speed.1);
            self.stretch_s = rng.random_range(stretch.seconds.0..=stretch.seconds.1);
            self.neutral_at_stop = self.target == 0.0 && rng.random::<f64>() < 0.25;
        } else {
            self.stretch_s -= 1;
        }
        let noise = if self.target > 0.0 {
            rng.random_range(-0.8..0.8)
        } else {
            0.0
        };
        let change = (self.target - self.speed + noise).clamp(-DECELERATION, ACCELERATION);
        let mut speed = self.speed + change;
        if self.target == 0.0 && speed < 1.5 {
            speed = 0.0;
        }
        let speed = speed.clamp(0.0, 200.0);
        self.acceleration = speed - self.speed;
        self.speed = speed;
        self.odometer_km += speed / 3_600.0;
        self.gear = match (moving, self.speed > 0.0) {
            _ if self.reverse_s > 0 => Gear::Reverse,
            (false, false) => Gear::Park,
            (true, false) if self.neutral_at_stop => Gear::Neutral,
            _ => Gear::Drive,
        };
        self.parked_s = if self.gear == Gear::Park {
            self.parked_s.saturating_add(1)
        } else {
            0
        };
        let engine = moving && self.drive.uses_engine();
        self.engine_rpm = if engine {
            (750.0
                + self.speed * 26.0
                + self.acceleration.max(0.0) * 300.0
                + rng.random_range(-40.0..40.0))
            .clamp(650.0, 6_500.0)
        } else {
            0.0
        };
    }

    /// Traction battery and charging.
    fn energy(&mut self, rng: &mut SmallRng, moving: bool) {
        if !moving && self.speed == 0.0 {
            if self.charge_to.is_none()
                && self.soc < PLUG_IN_BELOW
                && rng.random::<f64>() < PLUG_IN_PER_S
            {
                self.charge_to = Some(rng.random_range(80.0..=100.0));
            }
            if self.charge_to.is_some_and(|to| self.soc >= to) {
                self.charge_to = None;
            }
        }
        let traction = 8.0 + self.speed * 0.9 + self.acceleration.max(0.0) * 25.0;
        let regeneration = (self.acceleration + 1.0).min(0.0) * 12.0;
        let amps = if self.charge_to.is_some() {
            CHARGE_AMPS
        } else if !moving && self.speed == 0.0 {
            0.5
        } else {
            match self.drive {
                Drive::Electric => traction + regeneration,
                Drive::Hybrid => traction * 0.5 + regeneration,
                // The engine charges the battery a little.
                Drive::Engine | Drive::Parked => -6.0 + regeneration,
            }
        };
        self.amps = amps + rng.random_range(-0.5..0.5);
        self.soc = (self.soc - self.amps * SOC_PER_AMP_S).clamp(2.0, 100.0);
    }

    /// Ambient, coolant, oil, battery, cabin and tyre temperatures.
    fn climate(&mut self, rng: &mut SmallRng, hour: f64) {
        // Warmest at 15:00, coldest at 03:00.
        self.ambient = self.ambient_mean + 6.0 * (TAU * (hour - 9.0) / 24.0).sin();
        let moving = self.drive != Drive::Parked;
        let engine = self.engine_rpm > 0.0;
        let coolant_target = if engine {
            90.0 + self.speed * 0.03
        } else if moving {
            32.0
        } else {
            self.ambient
        };
        let coolant_rate = if coolant_target > self.coolant {
            1.0 / 60.0
        } else {
            1.0 / 900.0
        };
        self.coolant +=
            (coolant_target - self.coolant) * coolant_rate + rng.random_range(-0.1..0.1);
        let oil_target = self.coolant + if engine { 10.0 } else { 0.0 };
        self.oil += (oil_target - self.oil) / 120.0;
        let battery_target = self.ambient + 6.0 + self.amps.abs() * 0.06;
        self.battery += (battery_target - self.battery) / 1_200.0;
        let (cabin_target, cabin_rate) = if moving {
            (21.5, 1.0 / 240.0)
        } else {
            (self.ambient, 1.0 / 1_800.0)
        };
        self.cabin += (cabin_target - self.cabin) * cabin_rate;
        self.tyre += (self.ambient + self.speed * 0.2 - self.tyre) / 600.0;
        if let Some((tyre, rate)) = self.leak {
            let cold = &mut self.tyre_cold_kpa[tyre];
            *cold -= rate;
            if *cold < REINFLATE_BELOW_KPA {
                *cold = 240.0;
            }
        }
    }

    /// Doors open only at a standstill; the driver's opens on arrival.
    fn doors(&mut self, rng: &mut SmallRng) {
        if self.speed > 0.0 || self.gear != Gear::Park {
            self.door_open_s = [0; 5];
            return;
        }
        if self.arriving {
            self.arriving = false;
            self.door_open_s[0] = rng.random_range(3..=12);
        }
        for (door, open_s) in self.door_open_s.iter_mut().enumerate() {
            let chance = if door == 4 {
                TRUNK_OPEN_PER_S
            } else {
                DOOR_OPEN_PER_S
            };
            if *open_s > 0 {
                *open_s -= 1;
            } else if rng.random::<f64>() < chance {
                *open_s = rng.random_range(5..=90);
            }
        }
    }

    /// The value `quantity` reports now, as a `signal_type`.
    pub(super) fn value(&self, quantity: Quantity, signal_type: SignalType) -> Value<'static> {
        let number = match quantity {
            Quantity::Gear => return Value::Text(GEAR_STATES[self.gear as usize]),
            Quantity::Charging => return Value::Boolean(self.charge_to.is_some()),
            Quantity::Door(door) => return Value::Boolean(self.door_open_s[door] > 0),
            Quantity::Brake => {
                let holding = self.speed == 0.0 && self.gear != Gear::Park;
                return Value::Boolean(self.acceleration < -1.0 || holding);
            }
            Quantity::Headlights => return Value::Boolean(self.headlights),
            Quantity::Warnings => return Value::Integer(i64::from(self.warning_lights)),
            Quantity::Odometer => return Value::Integer(self.odometer_km.floor() as i64),
            Quantity::Speed => self.speed,
            Quantity::Soc => self.soc,
            Quantity::EngineRpm => self.engine_rpm,
            Quantity::Coolant => self.coolant,
            Quantity::Oil => self.oil,
            Quantity::Cabin => self.cabin,
            Quantity::Ambient => self.ambient,
            Quantity::BatteryTemp => self.battery,
            Quantity::HvVolts => 320.0 + self.soc * 0.8 - self.amps * 0.04,
            Quantity::HvAmps => self.amps,
            Quantity::LvVolts => return Value::Float(round(self.lv_volts(), 100.0)),
            Quantity::Tyre(tyre) => {
                self.tyre_cold_kpa[tyre] * (273.15 + self.tyre) / (273.15 + COLD_TYRE_C)
            }
            Quantity::AccelPedal => {
                if self.speed > 0.0 && self.acceleration > -0.5 {
                    (3.0 + self.speed * 0.15 + self.acceleration.max(0.0) * 18.0).min(100.0)
                } else {
                    0.0
                }
            }
            Quantity::Extra(n) => self.extras[n],
        };
        match signal_type {
            SignalType::Integer => Value::Integer(number.round() as i64),
            _ => Value::Float(round(number, 10.0)),
        }
    }

    /// The 12 V battery: charged while anything runs, resting voltage
    /// sinking slowly over a long stand.
    fn lv_volts(&self) -> f64 {
        if self.gear != Gear::Park || self.charge_to.is_some() {
            14.1 + (self.amps * 0.001).clamp(-0.2, 0.2)
        } else {
            let stand = (f64::from(self.parked_s) / 36_000.0).min(0.3);
            12.7 - self.lv_weakness - stand
        }
    }
}

/// `value` rounded to `1 / scale`.
fn round(value: f64, scale: f64) -> f64 {
    (value * scale).round() / scale
}
