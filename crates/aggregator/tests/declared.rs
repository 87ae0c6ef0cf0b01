#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Property tests of declared metrics: random input schemas and metric
//! configurations, fleets, disorder, partitions and batch sizes, run through
//! the streaming cores (decoder, batcher, join, windows) and compared with
//! the independent batch oracle of fleet-testkit (`oracle::declared`).
//!
//! Within the out-of-orderness bound nothing is late in either output mode
//! and every JSON line equals the oracle's. Beyond it, in the partitioned
//! mode (whose watermark is each partition's own, as the oracle models it),
//! exactly the oracle's late records are dropped and the rest agree.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use fleet_core::OutputMode;
use fleet_plan::MetricPlan;
use fleet_testkit::oracle::declared::{self, approx_eq, DeclaredConfig, OracleRecord, VehicleRef};
use proptest::prelude::*;
use serde_json::Value as Json;

mod common;

use common::{OOO_MS, WINDOW_MS};

const START: i64 = 1_764_000_000_000;

/// A declared signal of the generated schema.
#[derive(Clone, Debug)]
enum Kind {
    Integer,
    Float,
    Boolean,
    State,
}

const STATES: [&str; 3] = ["P", "D", "R"];

/// One generated configuration and input.
#[derive(Clone, Debug)]
struct Case {
    toml: String,
    /// (partition, record) in arrival order.
    arrivals: Vec<(i32, String)>,
    partitions: i32,
    max_batch: usize,
    reference: HashMap<String, String>,
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        Just(Kind::Integer),
        Just(Kind::Float),
        Just(Kind::Boolean),
        Just(Kind::State)
    ]
}

/// A type-correct comparison of signal `i`.
fn comparison(i: usize, kind: &Kind) -> BoxedStrategy<String> {
    let name = format!("s{i}");
    match kind {
        Kind::Integer | Kind::Float => (
            prop::sample::select(vec!["=", "!=", "<", "<=", ">", ">="]),
            -3i64..4,
            any::<bool>(),
        )
            .prop_map(move |(op, c, frac)| {
                if frac {
                    format!("{name} {op} {c}.5")
                } else {
                    format!("{name} {op} {c}")
                }
            })
            .boxed(),
        Kind::Boolean => (any::<bool>(), any::<bool>())
            .prop_map(move |(eq, b)| format!("{name} {} {b}", if eq { "=" } else { "!=" }))
            .boxed(),
        Kind::State => prop::sample::subsequence(STATES.to_vec(), 1..3)
            .prop_map(move |states| {
                let list: Vec<String> = states.iter().map(|s| format!("\"{s}\"")).collect();
                format!("{name} in [{}]", list.join(", "))
            })
            .boxed(),
    }
}

/// A filter over the signals: one or two comparisons, maybe negated.
fn filter(kinds: Vec<Kind>) -> BoxedStrategy<String> {
    let n = kinds.len();
    let kinds = Arc::new(kinds);
    let one = {
        let kinds = Arc::clone(&kinds);
        (0..n)
            .prop_flat_map(move |i| comparison(i, &kinds[i]))
            .boxed()
    };
    (one.clone(), one, 0u8..4)
        .prop_map(|(a, b, how)| match how {
            0 => a,
            1 => format!("{a} and {b}"),
            2 => format!("({a} or {b})"),
            _ => format!("not ({a} or {b})"),
        })
        .boxed()
}

/// A metric over the signals, its TOML text.
fn metric(index: usize, kinds: Vec<Kind>, labels: Vec<String>) -> BoxedStrategy<String> {
    let numeric: Vec<usize> = (0..kinds.len())
        .filter(|i| matches!(kinds[*i], Kind::Integer | Kind::Float))
        .collect();
    let functions: Vec<&'static str> = if numeric.is_empty() {
        vec!["count", "distinct_vehicles"]
    } else {
        vec![
            "count",
            "distinct_vehicles",
            "sum",
            "mean",
            "min",
            "max",
            "sum_of_latest",
            "mean_of_latest",
            "histogram",
        ]
    };
    let n = kinds.len();
    (
        prop::sample::select(functions),
        prop::sample::select(if numeric.is_empty() { vec![0] } else { numeric }),
        0..=n,
        prop::option::weighted(0.6, filter(kinds)),
        prop::option::weighted(0.3, prop::sample::subsequence(labels.clone(), 0..=labels.len())),
        prop::collection::btree_set(-4i32..8, 1..4),
    )
        .prop_map(move |(function, numeric_signal, any_signal, filter, by, bounds)| {
            let mut m = format!(
                "[[metrics]]\nname = \"m{index}\"\nhelp = \"generated\"\nfunction = \"{function}\"\n"
            );
            let signal = match function {
                "count" | "distinct_vehicles" => (any_signal < n).then_some(any_signal),
                _ => Some(numeric_signal),
            };
            if let Some(s) = signal {
                m += &format!("signal = \"s{s}\"\n");
            }
            if let Some(f) = filter {
                m += &format!("where = '{f}'\n");
            }
            if let Some(by) = by {
                let by: Vec<String> = by.iter().map(|l| format!("\"{l}\"")).collect();
                m += &format!("by = [{}]\n", by.join(", "));
            }
            if function == "histogram" {
                let b: Vec<String> = bounds.iter().map(|b| format!("{b}.0")).collect();
                m += &format!("buckets = [{}]\n", b.join(", "));
            }
            m
        })
        .boxed()
}

/// A value of `kind`, as JSON text; sometimes absent (wide records).
fn value(kind: &Kind, pick: u32) -> String {
    match kind {
        Kind::Integer => format!("{}", (pick % 9) as i64 - 4),
        Kind::Float => format!("{}", ((pick % 17) as f64 - 8.0) * 0.75),
        Kind::Boolean => format!("{}", pick.is_multiple_of(2)),
        Kind::State => format!("\"{}\"", STATES[(pick % 3) as usize]),
    }
}

fn vin(v: u32) -> String {
    format!("VIN{v:05}")
}

fn case(max_delay_ms: i64) -> impl Strategy<Value = Case> {
    (
        prop::collection::vec(kind(), 1..5),
        any::<bool>(),
        0usize..3,
        1u32..10,
        1i32..4,
        1usize..30,
        1usize..150,
    )
        .prop_flat_map(move |(kinds, wide, labels, vehicles, partitions, max_batch, n)| {
            let wide = wide || kinds.len() == 1;
            let event_labels: Vec<&str> = ["region", "site.depot"][..labels].to_vec();
            let mut label_names = vec!["model".to_string()];
            label_names.extend(event_labels.iter().map(|l| l.rsplit('.').next().unwrap().to_string()));
            let metrics = (0..4usize)
                .map(|i| metric(i, kinds.clone(), label_names.clone()))
                .collect::<Vec<_>>();
            let record = (0..vehicles, 1i64..400, 0..=max_delay_ms, any::<u32>(), any::<u32>());
            (
                Just((kinds, wide, event_labels, vehicles, partitions, max_batch)),
                metrics,
                1usize..=4,
                prop::collection::vec(record, n),
                prop::collection::vec(any::<u32>(), n),
            )
        })
        .prop_map(
            |((kinds, wide, event_labels, vehicles, partitions, max_batch), metrics, used, raw, picks)| {
                let mut toml = format!(
                    "[input]\nshape = \"{}\"\nvehicle_id = \"vin\"\ntime = \"t\"\nlabels = [{}]\ntype_field = \"kind\"\nvalue_field = \"v\"\n",
                    if wide { "wide" } else { "narrow" },
                    event_labels.iter().map(|l| format!("\"{l}\"")).collect::<Vec<_>>().join(", ")
                );
                for (i, k) in kinds.iter().enumerate() {
                    let ty = match k {
                        Kind::Integer => "integer",
                        Kind::Float => "float",
                        Kind::Boolean => "boolean",
                        Kind::State => "state",
                    };
                    toml += &format!("[[input.signals]]\nname = \"s{i}\"\ntype = \"{ty}\"\n");
                    if matches!(k, Kind::State) {
                        toml += "states = [\"P\", \"D\", \"R\"]\n";
                    }
                    if wide && i % 2 == 1 {
                        toml += &format!("path = \"sig.s{i}\"\n");
                    }
                }
                for m in &metrics[..used] {
                    toml += m;
                }
                let mut t = START + 777;
                let mut timed = Vec::new();
                for (i, (v, step, delay, pick, present)) in raw.into_iter().enumerate() {
                    t += step;
                    let mut fields = vec![format!("\"vin\":\"{}\"", vin(v)), format!("\"t\":{t}")];
                    if !event_labels.is_empty() {
                        fields.push(format!("\"region\":\"{}\"", ["UK", "DE"][(v % 2) as usize]));
                    }
                    if event_labels.len() > 1 {
                        fields.push(format!("\"site\":{{\"depot\":\"{}\"}}", ["north", "south"][(pick % 2) as usize]));
                    }
                    if wide {
                        let mut nested = Vec::new();
                        for (s, k) in kinds.iter().enumerate() {
                            if present >> s & 1 == 1 || present.is_multiple_of(7) {
                                let field = format!("\"s{s}\":{}", value(k, pick.rotate_left(s as u32 * 5)));
                                if s % 2 == 1 { nested.push(field) } else { fields.push(field) }
                            }
                        }
                        if !nested.is_empty() {
                            fields.push(format!("\"sig\":{{{}}}", nested.join(",")));
                        }
                    } else {
                        let s = present as usize % kinds.len();
                        fields.push(format!("\"kind\":\"s{s}\""));
                        fields.push(format!("\"v\":{}", value(&kinds[s], pick)));
                    }
                    // Now and then a record with a wrong type: malformed, skipped.
                    if pick.is_multiple_of(23) {
                        fields.push("\"t\":\"late\"".to_string());
                    }
                    timed.push((t + delay, i, v, format!("{{{}}}", fields.join(","))));
                }
                timed.sort_by_key(|(arrival, i, _, _)| (*arrival, *i));
                let mut queues: Vec<std::collections::VecDeque<String>> =
                    vec![Default::default(); partitions as usize];
                for (_, _, v, record) in timed {
                    queues[(v % partitions as u32) as usize].push_back(record);
                }
                let mut arrivals = Vec::new();
                let mut pick = picks.into_iter().cycle();
                while queues.iter().any(|q| !q.is_empty()) {
                    let nonempty: Vec<usize> =
                        (0..queues.len()).filter(|q| !queues[*q].is_empty()).collect();
                    let q = nonempty[pick.next().unwrap_or(0) as usize % nonempty.len()];
                    if let Some(r) = queues[q].pop_front() {
                        arrivals.push((q as i32, r));
                    }
                }
                let reference = (0..vehicles)
                    .filter(|v| v % 3 != 2)
                    .map(|v| (vin(v), ["Nebulara", "Aurelis"][(v % 2) as usize].to_string()))
                    .collect();
                Case { toml, arrivals, partitions, max_batch, reference }
            },
        )
}

/// The streaming side's JSON lines and late count.
fn run_pipeline(c: &Case, plan: &Arc<MetricPlan>, mode: OutputMode) -> (Vec<String>, usize) {
    let arrivals: Vec<(i32, Vec<u8>)> = c
        .arrivals
        .iter()
        .map(|(p, r)| (*p, r.clone().into_bytes()))
        .collect();
    let input = common::Input {
        arrivals: &arrivals,
        partitions: c.partitions,
        max_batch: c.max_batch,
        reference: &c.reference,
    };
    let run = common::run_from_rewind(&input, plan, mode, Vec::new());
    let (out, late) = (run.aggregates, run.late);
    (out.iter().map(|a| a.to_json_line(plan)).collect(), late)
}

/// The oracle's JSON lines and late count.
fn run_oracle(c: &Case, mode: OutputMode, ooo: Option<i64>) -> (Vec<String>, u64) {
    let config = DeclaredConfig::from_toml(&c.toml).unwrap();
    let input: Vec<OracleRecord> = c
        .arrivals
        .iter()
        .map(|(p, r)| OracleRecord {
            partition: *p,
            bytes: r.clone().into_bytes(),
        })
        .collect();
    let reference: HashMap<String, VehicleRef> = c
        .reference
        .iter()
        .map(|(v, m)| {
            (
                v.clone(),
                VehicleRef {
                    model: m.clone(),
                    dimensions: BTreeMap::new(),
                },
            )
        })
        .collect();
    let out = declared::expected_declared(
        &config,
        &input,
        &reference,
        WINDOW_MS,
        ooo,
        mode == OutputMode::Partitioned,
    );
    (out.json_lines(), out.late)
}

/// Equal JSON values, floats within the oracle's tolerance (sums of latest
/// float readings are added in another order).
fn same(a: &Json, b: &Json) -> bool {
    match (a, b) {
        (Json::Number(x), Json::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(i), Some(j)) => i == j,
            _ => approx_eq(
                x.as_f64().unwrap_or(f64::NAN),
                y.as_f64().unwrap_or(f64::NAN),
            ),
        },
        (Json::Object(x), Json::Object(y)) => {
            x.len() == y.len()
                && x.keys().zip(y.keys()).all(|(k, l)| k == l)
                && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

/// Both sides' lines, sorted (scopes close windows at different times),
/// compared field by field in order.
fn assert_same_lines(mut got: Vec<String>, mut want: Vec<String>, toml: &str) {
    let key = |l: &String| {
        let v: Json = serde_json::from_str(l).unwrap();
        let mut fields: Vec<String> = Vec::new();
        if let Json::Object(map) = &v {
            for (k, v) in map {
                if k.starts_with('m') && k != "model" {
                    break;
                }
                fields.push(format!("{k}={v}"));
            }
        }
        fields.join(",")
    };
    got.sort_by_key(key);
    want.sort_by_key(key);
    assert_eq!(
        got.len(),
        want.len(),
        "{toml}\ngot {got:#?}\nwant {want:#?}"
    );
    for (g, w) in got.iter().zip(&want) {
        // Field order matters too: compare key sequences as written.
        let gk: Vec<&str> = g.split("\":").collect();
        let wk: Vec<&str> = w.split("\":").collect();
        assert_eq!(gk.len(), wk.len(), "{toml}\n{g}\n{w}");
        let (gv, wv): (Json, Json) = (
            serde_json::from_str(g).unwrap(),
            serde_json::from_str(w).unwrap(),
        );
        assert!(same(&gv, &wv), "{toml}\ngot  {g}\nwant {w}");
    }
}

fn output_mode() -> impl Strategy<Value = OutputMode> {
    prop_oneof![Just(OutputMode::Single), Just(OutputMode::Partitioned)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn within_the_bound_declared_metrics_equal_the_oracle(
        c in case(OOO_MS - 1),
        mode in output_mode(),
    ) {
        let plan = Arc::new(MetricPlan::from_toml(&c.toml, &[]).map_err(|p| format!("{p:?}\n{}", c.toml)).unwrap());
        let (got, late) = run_pipeline(&c, &plan, mode);
        prop_assert_eq!(late, 0);
        let (want, _) = run_oracle(&c, mode, None);
        assert_same_lines(got, want, &c.toml);
    }

    #[test]
    fn beyond_the_bound_each_partition_drops_exactly_its_late_records(
        c in case(4 * OOO_MS),
    ) {
        let plan = Arc::new(MetricPlan::from_toml(&c.toml, &[]).unwrap());
        let (got, late) = run_pipeline(&c, &plan, OutputMode::Partitioned);
        let (want, want_late) = run_oracle(&c, OutputMode::Partitioned, Some(OOO_MS));
        prop_assert_eq!(late as u64, want_late);
        assert_same_lines(got, want, &c.toml);
    }
}
