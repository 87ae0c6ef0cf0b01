//! The service configuration that matches the wide records: `[input]` and
//! `[[metrics]]` (docs/METRICS.md).
//!
//! Written from the same [`WideLayout`] the records are rendered from, so
//! every declared signal is one the generator emits, at its path, with its
//! type and a range that holds every value. The metrics use every function
//! of docs/METRICS.md; one whose signals a smaller layout lacks is left out.

use std::fmt::Write as _;

use fleet_plan::{Function, SignalType};

use super::{
    write_float, WideLayout, WireFormat, LABEL_PATHS, PROTO_MESSAGE, TIME_PATH, VEHICLE_ID_PATH,
};

/// One `[[metrics]]`.
struct Metric {
    name: &'static str,
    help: &'static str,
    function: Function,
    signal: Option<&'static str>,
    filter: Option<&'static str>,
    by: &'static [&'static str],
    buckets: &'static [f64],
}

const fn metric(name: &'static str, help: &'static str, function: Function) -> Metric {
    Metric {
        name,
        help,
        function,
        signal: None,
        filter: None,
        by: &[],
        buckets: &[],
    }
}

/// The example's metrics, in declaration order.
const METRICS: [Metric; 12] = [
    metric(
        "vehicles_reporting",
        "Distinct vehicles with any record in the window.",
        Function::DistinctVehicles,
    ),
    Metric {
        filter: Some(r#"speed_kmh > 3 and gear in ["D", "R"]"#),
        ..metric(
            "vehicles_moving",
            "Vehicles driving in the window: faster than 3 km/h in D or R.",
            Function::DistinctVehicles,
        )
    },
    Metric {
        signal: Some("speed_kmh"),
        filter: Some("speed_kmh > 0"),
        buckets: &[10.0, 30.0, 50.0, 80.0, 100.0, 120.0],
        ..metric(
            "speed_kmh",
            "Speed of the window's records of rolling vehicles, km/h.",
            Function::Histogram,
        )
    },
    Metric {
        signal: Some("speed_kmh"),
        ..metric(
            "speed_kmh_seconds",
            "Speed summed over the window's records (one a second per vehicle): divided by 3600, the kilometres driven.",
            Function::Sum,
        )
    },
    Metric {
        signal: Some("soc_pct"),
        by: &["depot"],
        ..metric(
            "soc_pct_latest",
            "State of charge, %: each vehicle's latest reading in the window, averaged per depot.",
            Function::MeanOfLatest,
        )
    },
    Metric {
        filter: Some("charging = true"),
        by: &["depot"],
        ..metric(
            "vehicles_charging",
            "Vehicles plugged in and charging in the window, per depot.",
            Function::DistinctVehicles,
        )
    },
    Metric {
        signal: Some("coolant_c"),
        filter: Some("engine_rpm > 0"),
        buckets: &[60.0, 70.0, 80.0, 90.0, 95.0, 100.0, 105.0],
        ..metric(
            "coolant_c",
            "Engine coolant temperature of the window's records with the engine running, °C.",
            Function::Histogram,
        )
    },
    Metric {
        signal: Some("coolant_c"),
        ..metric(
            "coolant_c_max",
            "Hottest engine coolant reading in the window, °C.",
            Function::Max,
        )
    },
    Metric {
        signal: Some("lv_battery_v"),
        ..metric(
            "lv_battery_v_min",
            "Weakest 12 V battery: the lowest reading in the window, V (below about 12.2 V a vehicle may not start).",
            Function::Min,
        )
    },
    Metric {
        signal: Some("cabin_c"),
        ..metric(
            "cabin_c",
            "Cabin temperature over the window's records, °C.",
            Function::Mean,
        )
    },
    Metric {
        signal: Some("warnings"),
        ..metric(
            "warnings_on",
            "Warning lights on: each vehicle's latest count in the window, summed.",
            Function::SumOfLatest,
        )
    },
    Metric {
        filter: Some(
            "door_fl_open = true or door_fr_open = true or door_rl_open = true or door_rr_open = true or trunk_open = true",
        ),
        ..metric(
            "doors_open",
            "Records in the window with a door or the trunk open.",
            Function::Count,
        )
    },
];

/// Words of the filter language that are not signal names.
const KEYWORDS: [&str; 6] = ["and", "or", "not", "in", "true", "false"];

impl Metric {
    /// The signals it reads: its input and those its filter compares.
    fn signals(&self) -> impl Iterator<Item = &'static str> {
        let filter = self.filter.unwrap_or_default();
        // Quoted constants (states) are not names: drop what is between quotes.
        let unquoted = filter.split('"').step_by(2);
        let words = unquoted
            .flat_map(|part| part.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')))
            .filter(|w| {
                !w.is_empty()
                    && !w.starts_with(|c: char| c.is_ascii_digit())
                    && !KEYWORDS.contains(w)
            });
        self.signal.into_iter().chain(words)
    }
}

impl WideLayout {
    /// The `[input]` and `[[metrics]]` of a service configuration for these
    /// records, as TOML: every signal declared with its type, path (when it
    /// is not the name), states and range, and the metrics whose signals
    /// the layout has.
    pub fn config_toml(&self) -> String {
        self.config_toml_for(WireFormat::Json, "")
    }

    /// [`Self::config_toml`] for records in `format`, whose schema (as
    /// [`Self::proto_schema`] or [`Self::avro_schema`] write it) is at
    /// `schema_file`; their time is epoch milliseconds.
    pub fn config_toml_for(&self, format: WireFormat, schema_file: &str) -> String {
        self.config_toml_with(format, SchemaPlace::File(schema_file))
    }

    /// [`Self::config_toml`] for records in `format` framed for the schema
    /// registry at `url`.
    pub fn config_toml_framed(&self, format: WireFormat, url: &str) -> String {
        self.config_toml_with(format, SchemaPlace::Registry(url))
    }

    fn config_toml_with(&self, format: WireFormat, place: SchemaPlace<'_>) -> String {
        let schema_file = match place {
            SchemaPlace::File(file) => file,
            SchemaPlace::Registry(_) => "",
        };
        let mut out = String::new();
        let count = self.signals.len();
        let flags = match format {
            WireFormat::Json => String::new(),
            other => format!(" --format {}", other.as_str()),
        };
        let _ = writeln!(
            out,
            "# The records of `fleet-generator --shape wide --signals {count}{flags}`, and metrics\n\
             # over them that use every function of docs/METRICS.md. Written by\n\
             # `fleet-generator --shape wide --signals {count}{flags} --config-out PATH`.\n\
             # Feed the service with that generator (--brokers), not the embedded one."
        );
        let labels: Vec<String> = LABEL_PATHS.iter().map(|l| quoted(l)).collect();
        out.push_str("\n[input]\n");
        let time_format = match format {
            WireFormat::Json => "rfc3339",
            WireFormat::Protobuf | WireFormat::Avro => {
                let _ = writeln!(out, "format = {}", quoted(format.as_str()));
                if !schema_file.is_empty() {
                    let _ = writeln!(out, "schema_file = {}", quoted(schema_file));
                    if format == WireFormat::Protobuf {
                        let _ = writeln!(out, "message = {}", quoted(PROTO_MESSAGE));
                    }
                }
                "epoch_ms"
            }
        };
        let _ = write!(
            out,
            "shape = \"wide\"\nvehicle_id = {}\ntime = {}\ntime_format = \"{time_format}\"\nlabels = [{}]\n",
            quoted(VEHICLE_ID_PATH),
            quoted(TIME_PATH),
            labels.join(", ")
        );
        for signal in &self.signals {
            let _ = write!(
                out,
                "\n[[input.signals]]\nname = {}\ntype = {}\n",
                quoted(&signal.name),
                quoted(signal.signal_type.as_str())
            );
            if signal.path != signal.name {
                let _ = writeln!(out, "path = {}", quoted(&signal.path));
            }
            if !signal.states.is_empty() {
                let states: Vec<String> = signal.states.iter().map(|s| quoted(s)).collect();
                let _ = writeln!(out, "states = [{}]", states.join(", "));
            }
            if let Some((min, max)) = signal.range {
                for (key, bound) in [("min", min), ("max", max)] {
                    let _ = write!(out, "{key} = ");
                    write_number(&mut out, bound, signal.signal_type);
                    out.push('\n');
                }
            }
        }
        let declared = |name: &str| self.signals.iter().any(|s| s.name == name);
        for metric in METRICS.iter().filter(|m| m.signals().all(declared)) {
            let _ = write!(
                out,
                "\n[[metrics]]\nname = {}\nhelp = {}\nfunction = {}\n",
                quoted(metric.name),
                quoted(metric.help),
                quoted(metric.function.as_str())
            );
            if let Some(signal) = metric.signal {
                let _ = writeln!(out, "signal = {}", quoted(signal));
            }
            if let Some(filter) = metric.filter {
                let _ = writeln!(out, "where = {}", quoted(filter));
            }
            if !metric.by.is_empty() {
                let by: Vec<String> = metric.by.iter().map(|l| quoted(l)).collect();
                let _ = writeln!(out, "by = [{}]", by.join(", "));
            }
            if !metric.buckets.is_empty() {
                out.push_str("buckets = [");
                for (i, bound) in metric.buckets.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    write_float(&mut out, *bound);
                }
                out.push_str("]\n");
            }
        }
        if let SchemaPlace::Registry(url) = place {
            let _ = write!(out, "\n[schema_registry]\nurl = {}\n", quoted(url));
        }
        out
    }
}

/// Where a configuration says the records' schema is.
#[derive(Clone, Copy)]
enum SchemaPlace<'a> {
    File(&'a str),
    Registry(&'a str),
}

/// A TOML string: literal (`'…'`) when it contains a double quote (filters
/// with states read better so), else basic with JSON's escapes, which TOML shares.
fn quoted(text: &str) -> String {
    if text.contains('"') && !text.contains(['\'', '\n']) {
        format!("'{text}'")
    } else {
        serde_json::to_string(text).unwrap_or_default()
    }
}

/// A bound: an integer for an integer signal, else a float.
fn write_number(out: &mut String, value: f64, signal_type: SignalType) {
    if signal_type == SignalType::Integer {
        let _ = write!(out, "{}", value as i64);
    } else {
        write_float(out, value);
    }
}
