//! Reference data: which model each vehicle is.
//!
//! Read from a CSV with a `vehicle_id,model` header (more columns are allowed
//! and ignored). A file that fails to parse is refused whole, naming the line,
//! so a half-read table never replaces a good one.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use fleet_core::SmallStr;

/// A loaded VIN → model table, in file order.
///
/// Compact, because a fleet may have ten million vehicles: each row is its
/// VIN (inline, no allocation for ids of up to 23 bytes) and the index of its
/// model among the distinct model names, 28 bytes per row.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReferenceTable {
    vins: Vec<SmallStr>,
    /// Per row, an index into `model_names`.
    models: Vec<u32>,
    model_names: Vec<Box<str>>,
}

/// Builds a [`ReferenceTable`] row by row, interning model names.
#[derive(Debug, Default)]
struct Builder {
    table: ReferenceTable,
    model_index: HashMap<Box<str>, u32>,
}

impl Builder {
    fn push(&mut self, vin: &str, model: &str) {
        let names = &mut self.table.model_names;
        let index = match self.model_index.get(model) {
            Some(&i) => i,
            None => {
                let i = u32::try_from(names.len()).unwrap_or(u32::MAX);
                names.push(model.into());
                self.model_index.insert(model.into(), i);
                i
            }
        };
        self.table.vins.push(SmallStr::new(vin));
        self.table.models.push(index);
    }

    fn finish(mut self) -> ReferenceTable {
        self.table.vins.shrink_to_fit();
        self.table.models.shrink_to_fit();
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
    /// The header lacks a required column.
    #[error("reference data has no `{column}` column in its header")]
    MissingColumn {
        /// The missing column.
        column: &'static str,
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
    /// A table from `(vehicle_id, model)` pairs.
    pub fn from_pairs<V: AsRef<str>, M: AsRef<str>>(
        pairs: impl IntoIterator<Item = (V, M)>,
    ) -> Self {
        let mut builder = Builder::default();
        for (vin, model) in pairs {
            builder.push(vin.as_ref(), model.as_ref());
        }
        builder.finish()
    }

    /// Reads a CSV file.
    pub fn from_csv_file(path: &Path) -> Result<Self, ReferenceError> {
        let file = std::fs::File::open(path).map_err(|cause| ReferenceError::Io {
            path: path.to_path_buf(),
            cause,
        })?;
        Self::from_csv_reader(std::io::BufReader::new(file))
    }

    /// Reads CSV from any reader.
    pub fn from_csv_reader(reader: impl Read) -> Result<Self, ReferenceError> {
        let mut csv = csv::ReaderBuilder::new()
            .has_headers(true)
            .flexible(true)
            .trim(csv::Trim::All)
            .from_reader(reader);
        let headers = csv.headers().map_err(|e| bad_row(1, e))?.clone();
        let column = |name: &'static str| {
            headers
                .iter()
                .position(|h| h == name)
                .ok_or(ReferenceError::MissingColumn { column: name })
        };
        let (vin_col, model_col) = (column("vehicle_id")?, column("model")?);
        let mut builder = Builder::default();
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
            let field = |col: usize, name: &str| match record.get(col) {
                Some(v) if !v.is_empty() => Ok(v),
                _ => Err(ReferenceError::BadRow {
                    line,
                    reason: format!("empty or missing {name}"),
                }),
            };
            builder.push(field(vin_col, "vehicle_id")?, field(model_col, "model")?);
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

    /// The rows `(vehicle_id, model)`, in file order; a later row for the
    /// same vehicle wins.
    pub fn rows(&self) -> impl ExactSizeIterator<Item = (&str, &str)> + '_ {
        self.vins
            .iter()
            .zip(&self.models)
            .map(|(vin, &m)| (vin.as_str(), self.model_name(m)))
    }

    fn model_name(&self, index: u32) -> &str {
        self.model_names.get(index as usize).map_or("", |m| m)
    }

    /// The distinct model names; [`Self::indexed_rows`] refers to them by index.
    pub(crate) fn model_names(&self) -> &[Box<str>] {
        &self.model_names
    }

    /// The rows as `(vehicle_id, index into model_names)`.
    pub(crate) fn indexed_rows(&self) -> impl Iterator<Item = (&SmallStr, u32)> + '_ {
        self.vins.iter().zip(self.models.iter().copied())
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
            + self.models.capacity() * std::mem::size_of::<u32>()
            + self.model_names.iter().map(|m| m.len() + 16).sum::<usize>()
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
        )
        .unwrap();
        assert_eq!(
            t.rows().collect::<Vec<_>>(),
            [("V1", "Nebulara"), ("V2", "Aurex")]
        );
        assert_eq!(t.model_names().len(), 2);
    }

    #[test]
    fn refuses_a_missing_column_and_names_bad_lines() {
        let e = ReferenceTable::from_csv_reader("vin,model\nV1,A\n".as_bytes()).unwrap_err();
        assert!(matches!(
            e,
            ReferenceError::MissingColumn {
                column: "vehicle_id"
            }
        ));
        let e = ReferenceTable::from_csv_reader("vehicle_id,model\nV1,A\nV2,\n".as_bytes())
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "reference data line 3: empty or missing model"
        );
    }
}
