//! `reference_csv`: the reference table's CSV reader
//! (`fleet_enricher::ReferenceTable::from_csv_reader`,
//! crates/enricher/src/reference.rs) on arbitrary bytes.
//!
//! The first byte says which dimension columns are declared (none, one or
//! two; even: none), the rest is the CSV. The reader ends in an error or a
//! table, never a panic; a table has the declared dimensions, a non-empty
//! VIN and model on every row, and the rows of the CSV read plainly
//! (`vehicle_id` and `model` of each record, trimmed, in file order): what
//! the table interns is what the file says.
#![no_main]

use fleet_enricher::ReferenceTable;
use libfuzzer_sys::fuzz_target;

/// The dimension columns declared, by the first byte of the input.
fn dimensions(selector: u8) -> Vec<String> {
    let names: &[&str] = match selector % 4 {
        0 | 2 => &[],
        1 => &["fuel_type"],
        _ => &["fuel_type", "model_year"],
    };
    names.iter().map(|n| n.to_string()).collect()
}

/// `(vehicle_id, model)` of every record of `csv`, read plainly, as the
/// reader is configured (a header, rows of any length, fields trimmed);
/// `None` when the CSV itself does not parse.
fn plain_rows(csv: &[u8]) -> Option<Vec<(String, String)>> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(csv);
    let headers = reader.headers().ok()?.clone();
    let vin = headers.iter().position(|h| h == "vehicle_id")?;
    let model = headers.iter().position(|h| h == "model")?;
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.ok()?;
        let field = |i: usize| record.get(i).unwrap_or_default().to_owned();
        rows.push((field(vin), field(model)));
    }
    Some(rows)
}

fuzz_target!(|input: &[u8]| {
    let Some((&selector, csv)) = input.split_first() else {
        return;
    };
    let dimensions = dimensions(selector);
    let Ok(table) = ReferenceTable::from_csv_reader(csv, &dimensions) else {
        return;
    };
    let declared: Vec<&str> = table.dimension_names().iter().map(|d| &**d).collect();
    assert_eq!(declared, dimensions, "the table's dimensions");
    let rows: Vec<(String, String)> = table
        .rows()
        .map(|(vin, model)| (vin.to_owned(), model.to_owned()))
        .collect();
    for (vin, model) in &rows {
        assert!(!vin.is_empty(), "a row with an empty VIN");
        assert!(!model.is_empty(), "a row of {vin:?} with an empty model");
    }
    let plain = plain_rows(csv).expect("a CSV the table reads parses plainly");
    assert_eq!(rows, plain, "the table's rows are not the file's");
});
