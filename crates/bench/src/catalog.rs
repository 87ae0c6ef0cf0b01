//! `fleet-bench catalog`: the VIN → model table at fleet scale.
//!
//! The scale target (issue #5) is a reference table of 10,000,000 vehicles
//! that loads in seconds, costs at most 64 bytes per vehicle of resident
//! memory, and answers a lookup in at most 100 ns on one core. This mode
//! makes that many distinct, valid VINs, writes them as a reference CSV in
//! memory, and measures, one step at a time:
//!
//! - parsing the CSV into a [`ReferenceTable`] and building the
//!   [`VehicleCatalog`] from it (CPU time of this thread, and the growth of
//!   the process's resident set, `VmRSS` of `/proc/self/status`);
//! - the catalog alone, once the parsed table is dropped (what the service
//!   keeps between reloads);
//! - a hot reload of the same table ([`VehicleCatalog::load`]);
//! - lookups of random known VINs ([`VehicleCatalog::model_of`]), and the
//!   enricher's whole per-event join ([`VehicleCatalog::enrich_batch`]) on
//!   batches of events of random known vehicles.

use std::hint::black_box;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use fleet_core::{Record, RecordBatch, SmallStr};
use fleet_enricher::{ReferenceTable, UnknownVehiclePolicy, VehicleCatalog};
use fleet_generator::{vin, MODELS, REGIONS};
use nix::time::{clock_gettime, ClockId};
use serde::Serialize;

/// Options of the catalog mode.
#[derive(Debug, Args)]
pub struct CatalogArgs {
    /// Vehicles in the reference table.
    #[arg(long, default_value_t = 10_000_000)]
    vehicles: usize,
    /// Random lookups of known VINs to time.
    #[arg(long, default_value_t = 10_000_000)]
    lookups: usize,
    /// Seed of the VINs and of the lookup order.
    #[arg(long, default_value_t = 11)]
    seed: u64,
    /// Print one JSON object instead of the text.
    #[arg(long)]
    json: bool,
}

/// What the catalog mode measured.
#[derive(Debug, Serialize)]
struct CatalogReport {
    vehicles: usize,
    csv_bytes: usize,
    /// CPU seconds to parse the CSV into a `ReferenceTable`.
    parse_s: f64,
    /// CPU seconds to build the `VehicleCatalog` from the table.
    build_s: f64,
    /// Resident bytes per vehicle of the parsed table.
    table_rss_bytes_per_vehicle: f64,
    /// Resident bytes per vehicle of the table and the catalog together
    /// (the peak of a load).
    load_peak_rss_bytes_per_vehicle: f64,
    /// Resident bytes per vehicle of the catalog alone.
    catalog_rss_bytes_per_vehicle: f64,
    /// The catalog's VIN table as allocated, bytes per vehicle.
    catalog_table_bytes_per_vehicle: f64,
    /// CPU seconds of a reload of the same table into the loaded catalog.
    reload_s: f64,
    lookups: usize,
    /// CPU ns per `model_of` of a random known VIN.
    lookup_ns: f64,
    /// CPU ns per event of `enrich_batch` over batches of random known vehicles.
    enrich_ns_per_event: f64,
}

/// This thread's CPU time.
fn thread_cpu() -> anyhow::Result<Duration> {
    let t = clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID).context("clock_gettime")?;
    let secs = u64::try_from(t.tv_sec()).unwrap_or(0);
    let nanos = u32::try_from(t.tv_nsec()).unwrap_or(0);
    Ok(Duration::new(secs, nanos))
}

/// Resident set size now, bytes.
fn rss_bytes() -> anyhow::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status").context("/proc/self/status")?;
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .context("no VmRSS in /proc/self/status")?;
    Ok(kib * 1024)
}

/// A small, fast generator for the lookup order (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next()) * n as u128) >> 64) as usize
    }
}

/// 33^8: eight VIN characters of a distinct number per vehicle.
const SPACE: u64 = 33u64.pow(8);

/// `n` distinct valid VINs (`fleet_generator::vin` alphabet and check digit)
/// with their models: vehicle `i` gets the number `(i·A + B) mod 33^8`
/// (a bijection, `A` being prime to 33), written in eight positions.
fn make_vins(n: usize, seed: u64) -> Vec<(SmallStr, &'static str)> {
    const A: u64 = 0x2_9e37_79b9; // neither divisible by 3 nor by 11
    let b = seed % SPACE;
    (0..n as u64)
        .map(|i| {
            let model = &MODELS[(i % MODELS.len() as u64) as usize];
            let mut j =
                ((u128::from(i) * u128::from(A) + u128::from(b)) % u128::from(SPACE)) as u64;
            let mut v = [b'0'; vin::LENGTH];
            v[..3].copy_from_slice(model.wmi.as_bytes());
            for pos in [3, 4, 5, 6, 7, 9, 10, 11] {
                v[pos] = vin::ALPHABET[(j % 33) as usize];
                j /= 33;
            }
            for (k, pos) in (12..vin::LENGTH).enumerate() {
                v[pos] = b'0' + ((i >> (k * 3)) % 10) as u8;
            }
            v[vin::CHECK_DIGIT_INDEX] = vin::check_digit(&v).unwrap_or(b'0');
            // Every byte comes from the ASCII VIN alphabet.
            let id = SmallStr::new(std::str::from_utf8(&v).unwrap_or_default());
            (id, model.name)
        })
        .collect()
}

/// Runs the catalog mode and prints its report.
pub fn run(args: &CatalogArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.vehicles > 0, "--vehicles must be positive");
    let n = args.vehicles;
    eprintln!("Making {n} VINs and their reference CSV (not timed)…");
    let vins = make_vins(n, args.seed);
    let mut csv = Vec::with_capacity(n * 28 + 32);
    csv.extend_from_slice(b"vehicle_id,model\n");
    for (id, model) in &vins {
        csv.extend_from_slice(id.as_bytes());
        csv.push(b',');
        csv.extend_from_slice(model.as_bytes());
        csv.push(b'\n');
    }
    let mut rng = Rng(args.seed | 1);
    let order: Vec<u32> = (0..args.lookups).map(|_| rng.below(n) as u32).collect();

    let per_vehicle = |after: u64, before: u64| after.saturating_sub(before) as f64 / n as f64;
    let rss0 = rss_bytes()?;
    eprintln!("Parsing the CSV…");
    let t0 = thread_cpu()?;
    let table = ReferenceTable::from_csv_reader(csv.as_slice(), &[]).context("parsing the CSV")?;
    let t1 = thread_cpu()?;
    let rss1 = rss_bytes()?;
    eprintln!("Building the catalog…");
    let mut catalog = VehicleCatalog::new(&table, UnknownVehiclePolicy::Unknown);
    let t2 = thread_cpu()?;
    let rss2 = rss_bytes()?;
    eprintln!("Reloading…");
    catalog.load(&table);
    let t3 = thread_cpu()?;
    drop(table);
    let rss3 = rss_bytes()?;
    anyhow::ensure!(
        catalog.vehicles() == n,
        "{} vehicles in the catalog",
        catalog.vehicles()
    );

    eprintln!("Looking up {} random known VINs…", args.lookups);
    // The VINs to look up, in lookup order, read sequentially: the timed
    // loop's only random accesses are the catalog's.
    let probes: Vec<SmallStr> = order.iter().map(|&i| vins[i as usize].0.clone()).collect();
    let start = thread_cpu()?;
    let mut found = 0usize;
    for vin in &probes {
        found += usize::from(catalog.model_of(vin).is_some());
    }
    let lookup = thread_cpu()?.saturating_sub(start);
    drop(probes);
    anyhow::ensure!(
        found == order.len(),
        "{found} of {} VINs found",
        order.len()
    );

    eprintln!(
        "Enriching {} events of random known vehicles…",
        args.lookups
    );
    let mut enrich = Duration::ZERO;
    let mut enriched = 0usize;
    for (b, chunk) in order.chunks(2048).enumerate() {
        let mut batch = RecordBatch::with_capacity(chunk.len());
        for (&i, k) in chunk.iter().zip(0i64..) {
            batch.records.push(Record {
                partition: 0,
                offset: b as i64 * 2048 + k,
                vehicle_id: vins[i as usize].0.clone(),
                timestamp: 1_764_000_000_000 + k,
                labels_at: batch.labels.len() as u32,
                values_at: 0,
                values_len: 0,
            });
            batch
                .labels
                .push(REGIONS[i as usize % REGIONS.len()].0.into());
        }
        let start = thread_cpu()?;
        let (out, stats) = catalog.enrich_batch(batch);
        enrich += thread_cpu()?.saturating_sub(start);
        enriched += out.events.len();
        anyhow::ensure!(stats.unknown == 0, "unknown vehicles: {stats:?}");
        black_box(out);
    }

    let ns = |d: Duration, count: usize| d.as_secs_f64() * 1e9 / count.max(1) as f64;
    let report = CatalogReport {
        vehicles: n,
        csv_bytes: csv.len(),
        parse_s: (t1 - t0).as_secs_f64(),
        build_s: (t2 - t1).as_secs_f64(),
        table_rss_bytes_per_vehicle: per_vehicle(rss1, rss0),
        load_peak_rss_bytes_per_vehicle: per_vehicle(rss2, rss0),
        catalog_rss_bytes_per_vehicle: per_vehicle(rss3, rss0),
        catalog_table_bytes_per_vehicle: catalog.vehicle_table_bytes() as f64 / n as f64,
        reload_s: (t3 - t2).as_secs_f64(),
        lookups: order.len(),
        lookup_ns: ns(lookup, order.len()),
        enrich_ns_per_event: ns(enrich, enriched),
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        let r = &report;
        println!(
            "fleet-bench catalog: {} vehicles, reference CSV of {:.0} MB",
            r.vehicles,
            r.csv_bytes as f64 / 1e6
        );
        println!(
            "load: parse {:.2} s + build {:.2} s = {:.2} s CPU; hot reload of the same table {:.2} s",
            r.parse_s,
            r.build_s,
            r.parse_s + r.build_s,
            r.reload_s
        );
        println!(
            "resident bytes per vehicle: catalog alone {:.1} (its VIN table as allocated {:.1}); \
             parsed table {:.1}; peak of a load (table + catalog) {:.1}",
            r.catalog_rss_bytes_per_vehicle,
            r.catalog_table_bytes_per_vehicle,
            r.table_rss_bytes_per_vehicle,
            r.load_peak_rss_bytes_per_vehicle
        );
        println!(
            "lookup of a random known VIN: {:.1} ns (model_of, {} lookups); \
             enrich_batch: {:.1} ns per event",
            r.lookup_ns, r.lookups, r.enrich_ns_per_event
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn vins_are_valid_and_distinct() {
        let vins = make_vins(20_000, 11);
        let distinct: HashSet<_> = vins.iter().map(|(v, _)| v.clone()).collect();
        assert_eq!(distinct.len(), vins.len());
        for (v, _) in &vins {
            assert!(vin::is_valid(v), "{v}");
        }
    }

    #[test]
    fn a_small_catalog_run_completes() {
        run(&CatalogArgs {
            vehicles: 5_000,
            lookups: 10_000,
            seed: 3,
            json: true,
        })
        .unwrap();
    }
}
