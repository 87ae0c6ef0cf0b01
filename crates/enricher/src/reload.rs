//! Hot reload of the reference CSV.
//!
//! The enricher polls the file's modification time and size; when either
//! changes it reads the whole file and, only if it parses, swaps the table in
//! between two batches. Lookups never wait for a reload and never see half a
//! file; a file that fails to parse leaves the previous table in force.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use crate::{ReferenceError, ReferenceTable};

/// What identifies a version of the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
}

/// Watches the reference CSV for changes.
#[derive(Debug)]
pub struct ReferenceWatch {
    path: PathBuf,
    dimensions: Vec<String>,
    interval: Duration,
    seen: Option<FileStamp>,
}

impl ReferenceWatch {
    /// Watches `path`, checking every `interval` and reading the columns
    /// named in `dimensions` besides the model; the file as it is now counts
    /// as already loaded.
    pub fn new(path: PathBuf, interval: Duration, dimensions: Vec<String>) -> Self {
        let seen = stamp(&path);
        ReferenceWatch {
            path,
            dimensions,
            interval,
            seen,
        }
    }

    /// How often to check.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// The file watched.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Reads the file if it changed since the last call.
    pub fn poll(&mut self) -> Option<Result<ReferenceTable, ReferenceError>> {
        let now = stamp(&self.path);
        if now == self.seen {
            return None;
        }
        self.seen = now;
        Some(ReferenceTable::from_csv_file(&self.path, &self.dimensions))
    }
}

fn stamp(path: &std::path::Path) -> Option<FileStamp> {
    let meta = std::fs::metadata(path).ok()?;
    Some(FileStamp {
        modified: meta.modified().ok(),
        len: meta.len(),
    })
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
