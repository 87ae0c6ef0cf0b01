//! Noticing that a file changed, for hot reloads (the reference CSV, the
//! drill-down allow list).
//!
//! A version of a file is its modification time and size: a reload reads the
//! whole file only when either changed since the last look. The file is
//! stamped before it is read, so a change made while it is being read is seen
//! by the next look.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// What identifies a version of a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
}

fn stamp(path: &Path) -> Option<FileStamp> {
    let meta = std::fs::metadata(path).ok()?;
    Some(FileStamp {
        modified: meta.modified().ok(),
        len: meta.len(),
    })
}

/// Watches one file, looked at every `interval` by its owner.
#[derive(Debug)]
pub struct FileWatch {
    path: PathBuf,
    interval: Duration,
    seen: Option<FileStamp>,
}

impl FileWatch {
    /// Watches `path`; the file as it is now counts as seen.
    pub fn new(path: PathBuf, interval: Duration) -> Self {
        let seen = stamp(&path);
        FileWatch {
            path,
            interval,
            seen,
        }
    }

    /// How often the owner looks.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// The file watched.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the file changed (or appeared, or went away) since the last
    /// look; each change is reported once.
    pub fn changed(&mut self) -> bool {
        let now = stamp(&self.path);
        if now == self.seen {
            return false;
        }
        self.seen = now;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_change_is_reported_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("list.txt");
        std::fs::write(&path, "a\n").unwrap();
        let mut watch = FileWatch::new(path.clone(), Duration::from_millis(10));
        assert!(!watch.changed(), "the file at start counts as seen");
        std::fs::write(&path, "a\nb\n").unwrap();
        assert!(watch.changed());
        assert!(!watch.changed());
        std::fs::remove_file(&path).unwrap();
        assert!(watch.changed(), "gone is a change too");
    }
}
