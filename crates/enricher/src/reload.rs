//! Hot reload of the reference CSV.
//!
//! The enricher polls the file's modification time and size; when either
//! changes it reads the whole file and, only if it parses, swaps the table in
//! between two batches. Lookups never wait for a reload and never see half a
//! file; a file that fails to parse leaves the previous table in force.

use std::path::PathBuf;
use std::time::Duration;

use fleet_core::FileWatch;

use crate::{ReferenceError, ReferenceTable};

/// Watches the reference CSV for changes.
#[derive(Debug)]
pub struct ReferenceWatch {
    file: FileWatch,
    dimensions: Vec<String>,
}

impl ReferenceWatch {
    /// Watches `path`, checking every `interval` and reading the columns
    /// named in `dimensions` besides the model; the file as it is now counts
    /// as already loaded.
    pub fn new(path: PathBuf, interval: Duration, dimensions: Vec<String>) -> Self {
        ReferenceWatch {
            file: FileWatch::new(path, interval),
            dimensions,
        }
    }

    /// How often to check.
    pub fn interval(&self) -> Duration {
        self.file.interval()
    }

    /// The file watched.
    pub fn path(&self) -> &std::path::Path {
        self.file.path()
    }

    /// Reads the file if it changed since the last call.
    pub fn poll(&mut self) -> Option<Result<ReferenceTable, ReferenceError>> {
        self.file
            .changed()
            .then(|| ReferenceTable::from_csv_file(self.file.path(), &self.dimensions))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_only_a_changed_file_and_reports_a_broken_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vehicles.csv");
        std::fs::write(&path, "vehicle_id,model\nV1,Aurex\n").unwrap();
        let mut watch = ReferenceWatch::new(path.clone(), Duration::from_millis(10), Vec::new());
        assert!(watch.poll().is_none(), "the file at start counts as loaded");
        std::fs::write(&path, "vehicle_id,model\nV1,Nebulara\nV2,Aurex\n").unwrap();
        let table = watch.poll().unwrap().unwrap();
        assert_eq!(table.len(), 2);
        assert!(watch.poll().is_none());
        std::fs::write(&path, "vehicle_id,model\nV1,Nebulara\nV2\n").unwrap();
        let error = watch.poll().unwrap().unwrap_err();
        assert!(error.to_string().contains("line 3"), "{error}");
        assert!(watch.poll().is_none(), "a broken file is reported once");
    }
}
