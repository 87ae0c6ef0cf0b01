//! Reference data: which model each vehicle is, and its other attributes.
//!
//! Read from a CSV with a `vehicle_id,model` header. More columns are
//! allowed: those named as dimensions in the configuration are kept (they
//! become labels of the aggregates), the others are ignored. A file that
//! fails to parse is refused whole, naming the line, so a half-read table
//! never replaces a good one.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use fleet_core::{SmallStr, VehicleRecord};

use crate::UNKNOWN_MODEL;

/// A loaded reference table, in file order.
///
/// Compact, because a fleet may have ten million vehicles: each row is its
/// VIN (inline, no allocation for ids of up to 23 bytes) and the index of its
/// *profile*, 28 bytes per row. A profile is one distinct combination of
/// model and dimension values; a fleet has few of them, so they are interned.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReferenceTable {
    vins: Vec<SmallStr>,
    /// Per row, an index into `profiles`.
    profile_of: Vec<u32>,
    /// Distinct profiles: the model, then one value per dimension.
    profiles: Vec<Box<[Box<str>]>>,
    /// The dimensions kept, in configured order (shared with the labels of
    /// the groups built from the table).
    dimension_names: Arc<[Arc<str>]>,
}

/// The interning key of a profile: each value preceded by its length in
/// bytes and a colon, so that two profiles share a key only when they hold
/// the same values, whatever characters those contain (values joined by a
/// separator would mix up `["a\u{1f}b", "c"]` and `["a", "b\u{1f}c"]`);
/// built in a reused buffer.
pub(crate) fn profile_key<'a>(
    buffer: &mut String,
    values: impl IntoIterator<Item = &'a str>,
) -> &str {
    use std::fmt::Write as _;
    buffer.clear();
    for v in values {
        // Writing to a String cannot fail.
        let _ = write!(buffer, "{}:", v.len());
        buffer.push_str(v);
    }
    buffer
}

/// Builds a [`ReferenceTable`] row by row, interning profiles.
#[derive(Debug, Default)]
struct Builder {
    table: ReferenceTable,
    profile_index: HashMap<Box<str>, u32>,
    key: String,
}

impl Builder {
    fn new(dimension_names: &[impl AsRef<str>]) -> Self {
        let mut builder = Builder::default();
        builder.table.dimension_names = dimension_names
            .iter()
            .map(|d| Arc::from(d.as_ref()))
            .collect();
        builder
    }

    /// Adds a row: `values` are the model, then the dimensions in order.
    fn push<'v>(&mut self, vin: &str, values: impl Iterator<Item = &'v str> + Clone) {
        let key = profile_key(&mut self.key, values.clone());
        let index = match self.profile_index.get(key) {
            Some(&i) => i,
            None => {
                let profiles = &mut self.table.profiles;
                let i = u32::try_from(profiles.len()).unwrap_or(u32::MAX);
                profiles.push(values.map(Box::from).collect());
                self.profile_index.insert(key.into(), i);
                i
            }
        };
        self.table.vins.push(SmallStr::new(vin));
        self.table.profile_of.push(index);
    }

    fn finish(mut self) -> ReferenceTable {
        self.table.vins.shrink_to_fit();
        self.table.profile_of.shrink_to_fit();
        self.table
    }
}

/// Why reference data could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ReferenceError {
    /// The file could not be opened or read.
    #[error("cannot read reference file {path}: {cause}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        cause: std::io::Error,
    },
    /// The header lacks a required column, or a configured dimension.
    #[error("reference data has no `{column}` column in its header")]
    MissingColumn {
        /// The missing column.
        column: String,
    },
    /// A row is malformed.
    #[error("reference data line {line}: {reason}")]
    BadRow {
        /// 1-based line number.
        line: u64,
        /// What is wrong.
        reason: String,
    },
}

impl ReferenceTable {
    /// A table from `(vehicle_id, model)` pairs, without dimensions.
    pub fn from_pairs<V: AsRef<str>, M: AsRef<str>>(
        pairs: impl IntoIterator<Item = (V, M)>,
    ) -> Self {
        let mut builder = Builder::default();
        for (vin, model) in pairs {
            builder.push(vin.as_ref(), std::iter::once(model.as_ref()));
        }
        builder.finish()
    }

    /// A table from a log-following source's records, keeping the attributes
    /// named in `dimensions` (a record without one gets `unknown`).
    pub fn from_records(records: &[VehicleRecord], dimensions: &[impl AsRef<str>]) -> Self {
        let mut builder = Builder::new(dimensions);
        for record in records {
            let values = std::iter::once(record.model.as_str())
                .chain(dimensions.iter().map(|d| attribute(record, d.as_ref())));
            builder.push(&record.vehicle_id, values);
        }
        builder.finish()
    }

    /// Reads a CSV file, keeping the columns named in `dimensions`.
    pub fn from_csv_file(path: &Path, dimensions: &[String]) -> Result<Self, ReferenceError> {
        let file = std::fs::File::open(path).map_err(|cause| ReferenceError::Io {
            path: path.to_path_buf(),
            cause,
        })?;
        Self::from_csv_reader(std::io::BufReader::new(file), dimensions)
    }

    /// Reads CSV from any reader, keeping the columns named in `dimensions`;
    /// an empty dimension value reads as `unknown`.
    pub fn from_csv_reader(
        reader: impl Read,
        dimensions: &[String],
    ) -> Result<Self, ReferenceError> {
        let mut csv = csv::ReaderBuilder::new()
            .has_headers(true)
            .flexible(true)
            .trim(csv::Trim::All)
            .from_reader(reader);
        let headers = csv.headers().map_err(|e| bad_row(1, e))?.clone();
        let column = |name: &str| {
            headers
                .iter()
                .position(|h| h == name)
                .ok_or_else(|| ReferenceError::MissingColumn {
                    column: name.to_owned(),
                })
        };
        let (vin_col, model_col) = (column("vehicle_id")?, column("model")?);
        let dimension_cols = dimensions
            .iter()
            .map(|d| column(d))
            .collect::<Result<Vec<_>, _>>()?;
        let mut builder = Builder::new(dimensions);
        // One record, reused: no allocation per row.
        let mut record = csv::StringRecord::new();
        loop {
            match csv.read_record(&mut record) {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => {
                    let line = e.position().map_or(0, |p| p.line());
                    return Err(bad_row(line, e));
                }
            }
            let line = record.position().map_or(0, |p| p.line());
            // A quote left open takes the rows after it into one field.
            if record.iter().any(|f| f.contains(['\n', '\r'])) {
                return Err(ReferenceError::BadRow {
                    line,
                    reason: "a field holds a line break: a quote left open?".into(),
                });
            }
            let field = |col: usize, name: &str| match record.get(col) {
                Some(v) if !v.is_empty() => Ok(v),
                _ => Err(ReferenceError::BadRow {
                    line,
                    reason: format!("empty or missing {name}"),
                }),
            };
            let vin = field(vin_col, "vehicle_id")?;
            let model = field(model_col, "model")?;
            let values =
                std::iter::once(model).chain(dimension_cols.iter().map(
                    |&col| match record.get(col) {
                        Some(v) if !v.is_empty() => v,
                        _ => UNKNOWN_MODEL,
                    },
                ));
            builder.push(vin, values);
        }
        Ok(builder.finish())
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.vins.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.vins.is_empty()
    }

    /// The dimensions this table was read with, in configured order.
    pub fn dimension_names(&self) -> &Arc<[Arc<str>]> {
        &self.dimension_names
    }

    /// The rows `(vehicle_id, model)`, in file order; a later row for the
    /// same vehicle wins.
    pub fn rows(&self) -> impl ExactSizeIterator<Item = (&str, &str)> + '_ {
        self.vins.iter().zip(&self.profile_of).map(|(vin, &p)| {
            let model = self
                .profiles
                .get(p as usize)
                .and_then(|values| values.first());
            (vin.as_str(), model.map_or("", |m| &**m))
        })
    }

    /// The distinct profiles (model, then dimension values);
    /// [`Self::indexed_rows`] refers to them by index.
    pub(crate) fn profiles(&self) -> &[Box<[Box<str>]>] {
        &self.profiles
    }

    /// The rows as `(vehicle_id, index into profiles)`.
    pub(crate) fn indexed_rows(&self) -> impl Iterator<Item = (&SmallStr, u32)> + '_ {
        self.vins.iter().zip(self.profile_of.iter().copied())
    }

    /// Heap bytes held by the table.
    pub fn heap_bytes(&self) -> usize {
        self.vins.capacity() * std::mem::size_of::<SmallStr>()
            + self
                .vins
                .iter()
                .filter(|v| !v.is_inline())
                .map(|v| v.len())
                .sum::<usize>()
            + self.profile_of.capacity() * std::mem::size_of::<u32>()
            + self
                .profiles
                .iter()
                .map(|p| 16 + p.iter().map(|v| v.len() + 16).sum::<usize>())
                .sum::<usize>()
    }
}

/// The value of attribute `name` of `record`; `unknown` when it has none.
pub(crate) fn attribute<'a>(record: &'a VehicleRecord, name: &str) -> &'a str {
    match record.attributes.get(name) {
        Some(v) if !v.is_empty() => v,
        _ => UNKNOWN_MODEL,
    }
}

fn bad_row(line: u64, e: csv::Error) -> ReferenceError {
    ReferenceError::BadRow {
        line,
        reason: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_required_columns_and_ignores_others() {
        let t = ReferenceTable::from_csv_reader(
            "market,vehicle_id,model\nEU,V1,Nebulara\nUS,V2,Aurex\n".as_bytes(),
            &[],
        )
        .unwrap();
        assert_eq!(
            t.rows().collect::<Vec<_>>(),
            [("V1", "Nebulara"), ("V2", "Aurex")]
        );
        assert_eq!(t.profiles().len(), 2);
    }

    /// What the `reference_csv` fuzz target checks (its table's rows are the
    /// file's): with the values of a profile joined by U+001F, a vehicle
    /// whose model or dimension held that character could take another
    /// vehicle's profile, and so its model, without a word.
    #[test]
    fn profiles_differ_whatever_characters_their_values_hold() {
        let t = ReferenceTable::from_csv_reader(
            "vehicle_id,model,fuel_type\nV1,A\u{1f}B,C\nV2,A,B\u{1f}C\nV3,A:1,B\nV4,A,1:B\n"
                .as_bytes(),
            &["fuel_type".to_string()],
        )
        .unwrap();
        assert_eq!(
            t.rows().collect::<Vec<_>>(),
            [("V1", "A\u{1f}B"), ("V2", "A"), ("V3", "A:1"), ("V4", "A")]
        );
        assert_eq!(t.profiles().len(), 4);
        let mut buffer = String::new();
        assert_eq!(profile_key(&mut buffer, ["ab", "", "c"]), "2:ab0:1:c");
    }

    #[test]
    fn keeps_configured_dimensions_as_interned_profiles() {
        let dims = ["fuel_type".to_string(), "market".to_string()];
        let t = ReferenceTable::from_csv_reader(
            "market,vehicle_id,model,fuel_type,colour\n\
             EU,V1,Nebulara,diesel,red\n\
             US,V2,Aurex,electric,blue\n\
             EU,V3,Nebulara,diesel,green\n\
             ,V4,Nebulara,diesel,green\n"
                .as_bytes(),
            &dims,
        )
        .unwrap();
        assert!(t
            .dimension_names()
            .iter()
            .map(|d| &**d)
            .eq(dims.iter().map(String::as_str)));
        let profiles: Vec<Vec<&str>> = t
            .profiles()
            .iter()
            .map(|p| p.iter().map(|v| &**v).collect())
            .collect();
        assert_eq!(
            profiles,
            [
                vec!["Nebulara", "diesel", "EU"],
                vec!["Aurex", "electric", "US"],
                vec!["Nebulara", "diesel", "unknown"],
            ],
            "V1 and V3 share a profile; V4's empty market reads unknown"
        );
        let e = ReferenceTable::from_csv_reader("vehicle_id,model\nV1,A\n".as_bytes(), &dims)
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "reference data has no `fuel_type` column in its header"
        );
    }

    #[test]
    fn refuses_a_missing_column_and_names_bad_lines() {
        let e = ReferenceTable::from_csv_reader("vin,model\nV1,A\n".as_bytes(), &[]).unwrap_err();
        assert!(matches!(e, ReferenceError::MissingColumn { column } if column == "vehicle_id"));
        let e = ReferenceTable::from_csv_reader("vehicle_id,model\nV1,A\nV2,\n".as_bytes(), &[])
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "reference data line 3: empty or missing model"
        );
        let open_quote = "vehicle_id,model\nV1,\"A\nV2,B\nV3,C\n";
        let e = ReferenceTable::from_csv_reader(open_quote.as_bytes(), &[]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "reference data line 2: a field holds a line break: a quote left open?"
        );
    }
}
