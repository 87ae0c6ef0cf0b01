//! Reference data: which model each vehicle is.
//!
//! Read from a CSV with a `vehicle_id,model` header (more columns are allowed
//! and ignored). A file that fails to parse is refused whole, naming the line,
//! so a half-read table never replaces a good one.

use std::io::Read;
use std::path::{Path, PathBuf};

/// A loaded VIN → model table, in file order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReferenceTable {
    rows: Vec<(String, String)>,
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
    pub fn from_pairs(pairs: impl IntoIterator<Item = (String, String)>) -> Self {
        ReferenceTable {
            rows: pairs.into_iter().collect(),
        }
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
        let mut rows = Vec::new();
        for record in csv.records() {
            let record = record.map_err(|e| {
                let line = e.position().map_or(0, |p| p.line());
                bad_row(line, e)
            })?;
            let line = record.position().map_or(0, |p| p.line());
            let field = |col: usize, name: &str| match record.get(col) {
                Some(v) if !v.is_empty() => Ok(v.to_string()),
                _ => Err(ReferenceError::BadRow {
                    line,
                    reason: format!("empty or missing {name}"),
                }),
            };
            rows.push((field(vin_col, "vehicle_id")?, field(model_col, "model")?));
        }
        Ok(ReferenceTable { rows })
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The rows, in file order; a later row for the same vehicle wins.
    pub fn rows(&self) -> &[(String, String)] {
        &self.rows
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
            t.rows(),
            &[
                ("V1".to_string(), "Nebulara".to_string()),
                ("V2".to_string(), "Aurex".to_string())
            ]
        );
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
