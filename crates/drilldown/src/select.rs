//! Which vehicles are drilled down: every one, a stable sample, or an allow list.
//!
//! [`VehicleSelection::selects`] runs once per event (or once per new vehicle,
//! where the caller caches the answer), so it does no allocation and no I/O.
//! The allow list can be re-read while the service runs: [`AllowListWatch`]
//! polls the file's modification time and size and swaps the list in only
//! when the whole new file has been read.

use std::collections::HashSet;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use fleet_core::FileWatch;

use crate::config::{valid_fraction, DrilldownConfig, VehicleScope};

/// Why the vehicle selection could not be built or reloaded.
#[derive(Debug, thiserror::Error)]
pub enum DrilldownError {
    /// The allow-list file could not be opened or read.
    #[error("cannot read the drill-down allow list {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        source: io::Error,
    },
    /// The allow-list file is not UTF-8 text.
    #[error("the drill-down allow list {} is not UTF-8 text (line {line})", path.display())]
    NotUtf8 {
        /// The file.
        path: PathBuf,
        /// The first line with invalid UTF-8, counted from 1.
        line: usize,
    },
    /// `vehicles = "allow_list"` without `allow_list_path`.
    #[error("drilldown.allow_list_path is required with vehicles = \"allow_list\"")]
    NoAllowListPath,
    /// `sample_fraction` is not in (0, 1].
    #[error("drilldown.sample_fraction {fraction} is not in (0, 1]")]
    InvalidFraction {
        /// The configured value.
        fraction: f64,
    },
}

/// The FNV-1a 64-bit offset basis (FNV specification, draft-eastlake-fnv).
const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
/// The FNV 64-bit prime, 2^40 + 2^8 + 0xb3 (same source).
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// The stable 64-bit hash of a VIN that decides [`Sample`] membership.
///
/// **This function is a contract**: other instances, restarts, other
/// machines, and any tool that predicts which vehicles a dashboard shows rely
/// on it. Do not change it. It is, on the VIN's UTF-8 bytes exactly as the
/// event carries them (no trimming, no case folding), with wrapping 64-bit
/// arithmetic:
///
/// 1. FNV-1a 64: `h = 0xcbf29ce484222325`; for each byte `b`:
///    `h = (h ^ b) * 0x100000001b3`.
/// 2. The splitmix64 finalizer (Steele, Lea and Flood, 2014), because FNV's
///    high bits are weak for short strings that differ only at the end, as
///    VIN serial numbers do:
///    `h = (h ^ (h >> 30)) * 0xbf58476d1ce4e5b9;`
///    `h = (h ^ (h >> 27)) * 0x94d049bb133111eb;`
///    `h = h ^ (h >> 31)`.
///
/// A vehicle is in the sample of fraction `f` iff `vin_hash(vin) < f · 2^64`
/// (exact: scaling by 2^64 is exact in binary floating point), so a larger
/// fraction keeps every vehicle of a smaller one. In Python:
/// `vin_hash(vin) < int(f * 2**64)`. For example `vin_hash("V1")` is
/// `0x12691286a9a70047`.
pub fn vin_hash(vin: &str) -> u64 {
    splitmix64_finalize(fnv1a64(vin.as_bytes()))
}

fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(FNV_OFFSET_BASIS, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(FNV_PRIME)
    })
}

fn splitmix64_finalize(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A stable pseudo-random share of the fleet; see [`vin_hash`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    fraction: f64,
    /// `floor(fraction · 2^64)`; 2^64 for a fraction of 1, so that every hash is below it.
    threshold: u128,
}

impl Sample {
    /// 2^64 as a float (exact).
    const TWO_POW_64: f64 = 18_446_744_073_709_551_616.0;

    /// The share `fraction` of vehicles, in (0, 1].
    pub fn new(fraction: f64) -> Result<Self, DrilldownError> {
        if !valid_fraction(fraction) {
            return Err(DrilldownError::InvalidFraction { fraction });
        }
        // Exact: multiplying by a power of two only changes the exponent, and
        // the float-to-integer cast truncates, which for an integer hash
        // compares the same as the real product.
        let threshold = (fraction * Self::TWO_POW_64) as u128;
        Ok(Sample {
            fraction,
            threshold,
        })
    }

    /// The configured share.
    pub fn fraction(&self) -> f64 {
        self.fraction
    }

    /// Whether `vehicle_id` is in the sample.
    pub fn selects(&self, vehicle_id: &str) -> bool {
        u128::from(vin_hash(vehicle_id)) < self.threshold
    }
}

/// A set of VINs, read from a file with one VIN per line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AllowList {
    // Boxed strings: 16 bytes of handle per VIN instead of String's 24, and
    // no spare capacity.
    vins: HashSet<Box<str>>,
}

impl AllowList {
    /// Reads the file at `path`: one VIN per line, trimmed; blank lines and
    /// lines starting with `#` are ignored; a leading byte-order mark and
    /// CRLF line ends are fine.
    pub fn from_file(path: &Path) -> Result<Self, DrilldownError> {
        let bytes = std::fs::read(path).map_err(|source| DrilldownError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let text = std::str::from_utf8(&bytes).map_err(|e| DrilldownError::NotUtf8 {
            path: path.to_path_buf(),
            line: 1 + bytes[..e.valid_up_to()]
                .iter()
                .filter(|&&b| b == b'\n')
                .count(),
        })?;
        Ok(Self::parse(text))
    }

    /// Parses the text of an allow-list file (see [`AllowList::from_file`]).
    pub fn parse(text: &str) -> Self {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        Self::from_vins(
            text.lines()
                .map(str::trim)
                .filter(|line| !line.is_empty() && !line.starts_with('#')),
        )
    }

    /// The list of `vins`, taken as they are.
    pub fn from_vins<I, S>(vins: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut vins: HashSet<Box<str>> = vins.into_iter().map(|v| v.as_ref().into()).collect();
        vins.shrink_to_fit();
        AllowList { vins }
    }

    /// Whether `vehicle_id` is listed (exact, case-sensitive match).
    pub fn contains(&self, vehicle_id: &str) -> bool {
        self.vins.contains(vehicle_id)
    }

    /// How many distinct VINs are listed.
    pub fn len(&self) -> usize {
        self.vins.len()
    }

    /// Whether no VIN is listed.
    pub fn is_empty(&self) -> bool {
        self.vins.is_empty()
    }
}

/// Watches the allow-list file for changes, as the enricher watches the
/// reference CSV ([`FileWatch`]).
#[derive(Debug)]
pub struct AllowListWatch {
    file: FileWatch,
}

impl AllowListWatch {
    /// Reads the list at `path` and watches it, checking every `interval`.
    ///
    /// The file is stamped before it is read, so a change made while it is
    /// being read is picked up by the next [`poll`](Self::poll).
    pub fn load(path: PathBuf, interval: Duration) -> Result<(AllowList, Self), DrilldownError> {
        let watch = AllowListWatch::new(path, interval);
        let list = AllowList::from_file(watch.path())?;
        Ok((list, watch))
    }

    /// Watches `path`, checking every `interval`; the file as it is now
    /// counts as already loaded.
    pub fn new(path: PathBuf, interval: Duration) -> Self {
        AllowListWatch {
            file: FileWatch::new(path, interval),
        }
    }

    /// How often to check.
    pub fn interval(&self) -> Duration {
        self.file.interval()
    }

    /// The file watched.
    pub fn path(&self) -> &Path {
        self.file.path()
    }

    /// If the file changed since the last look, reads it and, only if that
    /// succeeds, replaces `list`: `Some(Ok(len))` with the new number of VINs.
    /// A file that cannot be read leaves `list` as it was and gives
    /// `Some(Err(_))`, once per change. `None` when nothing changed.
    pub fn poll(&mut self, list: &mut AllowList) -> Option<Result<usize, DrilldownError>> {
        if !self.file.changed() {
            return None;
        }
        Some(AllowList::from_file(self.file.path()).map(|fresh| {
            *list = fresh;
            list.len()
        }))
    }
}

/// Decides per VIN whether the vehicle is drilled down.
#[derive(Debug)]
pub enum VehicleSelection {
    /// The drill-down is off: no vehicle is selected.
    Disabled,
    /// Every vehicle.
    All,
    /// A stable share of the fleet.
    Sample(Sample),
    /// The VINs of a file.
    AllowList {
        /// The VINs in force.
        list: AllowList,
        /// Re-reads the file when it changes; `None` when it is read at start only.
        watch: Option<AllowListWatch>,
    },
}

impl VehicleSelection {
    /// The selection `config` asks for ([`VehicleSelection::Disabled`] when
    /// it is not enabled); reads the allow list, if any.
    pub fn from_config(config: &DrilldownConfig) -> Result<Self, DrilldownError> {
        if !config.enabled {
            return Ok(VehicleSelection::Disabled);
        }
        Ok(match config.vehicles {
            VehicleScope::All => VehicleSelection::All,
            VehicleScope::Sample => VehicleSelection::Sample(Sample::new(config.sample_fraction)?),
            VehicleScope::AllowList => {
                if config.allow_list_path.trim().is_empty() {
                    return Err(DrilldownError::NoAllowListPath);
                }
                let path = PathBuf::from(&config.allow_list_path);
                match config.allow_list_reload_interval() {
                    Some(interval) => {
                        let (list, watch) = AllowListWatch::load(path, interval)?;
                        VehicleSelection::AllowList {
                            list,
                            watch: Some(watch),
                        }
                    }
                    None => VehicleSelection::AllowList {
                        list: AllowList::from_file(&path)?,
                        watch: None,
                    },
                }
            }
        })
    }

    /// Whether the vehicle `vehicle_id` is drilled down.
    #[inline]
    pub fn selects(&self, vehicle_id: &str) -> bool {
        match self {
            VehicleSelection::Disabled => false,
            VehicleSelection::All => true,
            VehicleSelection::Sample(sample) => sample.selects(vehicle_id),
            VehicleSelection::AllowList { list, .. } => list.contains(vehicle_id),
        }
    }

    /// Whether any vehicle can be selected: false only when disabled.
    pub fn is_enabled(&self) -> bool {
        !matches!(self, VehicleSelection::Disabled)
    }

    /// How often [`poll_reload`](Self::poll_reload) should be called; `None`
    /// when there is nothing to reload.
    pub fn reload_interval(&self) -> Option<Duration> {
        match self {
            VehicleSelection::AllowList {
                watch: Some(watch), ..
            } => Some(watch.interval()),
            _ => None,
        }
    }

    /// Re-reads the allow list if its file changed (see [`AllowListWatch::poll`]).
    /// After `Some(Ok(_))` the answers of [`selects`](Self::selects) may have
    /// changed, so a caller that caches them must forget them.
    pub fn poll_reload(&mut self) -> Option<Result<usize, DrilldownError>> {
        match self {
            VehicleSelection::AllowList {
                list,
                watch: Some(watch),
            } => watch.poll(list),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a64_and_the_finalizer_match_their_references() {
        // Test vectors of the FNV reference implementation.
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
        // The first output of splitmix64 seeded with 0 (Vigna's splitmix64.c).
        assert_eq!(
            splitmix64_finalize(0x9e37_79b9_7f4a_7c15),
            0xe220_a839_7b1d_cdaf
        );
    }

    #[test]
    fn vin_hash_is_pinned() {
        // Computed independently (Python) from the documented definition; a
        // change here changes which vehicles every instance drills down.
        for (vin, hash) in [
            ("1HGCM82633A004352", 0x69ea_363e_7207_84a5_u64),
            ("JH4KA7561PC008269", 0xac41_dd4d_efa7_c07b),
            ("WBA3A5C51CF256651", 0x0a1d_bf92_0846_043f),
            ("1FTFW1ET5DFC10312", 0xc473_f862_32f3_f5e7),
            ("V1", 0x1269_1286_a9a7_0047),
            ("", 0xf52a_15e9_a9b5_e89b),
        ] {
            assert_eq!(vin_hash(vin), hash, "{vin}");
        }
    }

    #[test]
    fn sample_membership_is_pinned() {
        let tenth = Sample::new(0.1).unwrap();
        let half = Sample::new(0.5).unwrap();
        for (vin, in_tenth, in_half) in [
            ("1HGCM82633A004352", false, true),
            ("JH4KA7561PC008269", false, false),
            ("WVWZZZ1JZXW000001", false, true),
            ("5YJ3E1EA7KF317000", false, true),
            ("WBA3A5C51CF256651", true, true),
            ("1FTFW1ET5DFC10312", false, false),
            ("SALVA2AE4EH877322", false, true),
            ("YV1MS382962183419", false, true),
            ("V1", true, true),
        ] {
            assert_eq!(tenth.selects(vin), in_tenth, "{vin} at 0.1");
            assert_eq!(half.selects(vin), in_half, "{vin} at 0.5");
        }
    }

    /// VIN-like strings: a few manufacturer prefixes and sequential serials,
    /// the worst case for a plain FNV (they differ only in the last bytes).
    fn vin_like(count: usize) -> impl Iterator<Item = String> {
        const PREFIXES: [&str; 4] = ["1HGCM8263", "WVWZZZ1JZ", "5YJ3E1EA7", "JH4KA7561"];
        (0..count).map(|i| format!("{}{:08}", PREFIXES[i % PREFIXES.len()], i))
    }

    #[test]
    fn a_tenth_samples_a_tenth_of_similar_vins() {
        let sample = Sample::new(0.1).unwrap();
        let n = 100_000;
        let selected = vin_like(n).filter(|v| sample.selects(v)).count();
        let share = selected as f64 / n as f64;
        // ±1 percentage point; the binomial standard deviation is 0.095.
        assert!((share - 0.1).abs() <= 0.01, "share {share}");
        // Sequential serials alone (a single prefix) too.
        let selected = (0..n)
            .filter(|i| sample.selects(&format!("1HGCM82633A{i:06}")))
            .count();
        let share = selected as f64 / n as f64;
        assert!((share - 0.1).abs() <= 0.01, "share {share}");
    }

    #[test]
    fn larger_fractions_keep_the_vehicles_of_smaller_ones() {
        let small = Sample::new(0.05).unwrap();
        let large = Sample::new(0.2).unwrap();
        for vin in vin_like(20_000) {
            assert!(!small.selects(&vin) || large.selects(&vin), "{vin}");
        }
    }

    #[test]
    fn fraction_one_selects_everything_and_bounds_are_exact() {
        let all = Sample::new(1.0).unwrap();
        assert_eq!(all.threshold, 1_u128 << 64);
        assert!(u128::from(u64::MAX) < all.threshold);
        assert!(vin_like(10_000).all(|v| all.selects(&v)));
        assert_eq!(Sample::new(0.5).unwrap().threshold, 1_u128 << 63);
        assert_eq!(Sample::new(0.25).unwrap().threshold, 1_u128 << 62);
        assert_eq!(Sample::new(0.1).unwrap().fraction(), 0.1);
        for bad in [0.0, -1.0, 1.5, f64::NAN] {
            assert!(
                matches!(
                    Sample::new(bad),
                    Err(DrilldownError::InvalidFraction { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn allow_list_skips_comments_and_blanks_and_trims() {
        let list = AllowList::parse(
            "\u{feff}# drill-down VINs\r\n  VIN1  \r\n\r\nVIN2\n#VIN3\n\tVIN4\nVIN1\n   # indented comment\n",
        );
        assert_eq!(list.len(), 3);
        for vin in ["VIN1", "VIN2", "VIN4"] {
            assert!(list.contains(vin), "{vin}");
        }
        for vin in ["VIN3", "#VIN3", "vin1", " VIN1", ""] {
            assert!(!list.contains(vin), "{vin:?}");
        }
        assert!(AllowList::parse("").is_empty());
        assert!(AllowList::parse("# nothing\n\n").is_empty());
        assert_eq!(AllowList::from_vins(["A", "B", "A"]).len(), 2);
    }

    #[test]
    fn allow_list_file_errors_name_the_path_and_reason() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.txt");
        let error = AllowList::from_file(&missing).unwrap_err();
        assert!(matches!(error, DrilldownError::Read { .. }), "{error:?}");
        assert!(error.to_string().contains("missing.txt"), "{error}");
        let error = AllowList::from_file(dir.path()).unwrap_err();
        assert!(matches!(error, DrilldownError::Read { .. }), "{error:?}");

        let binary = dir.path().join("binary.txt");
        std::fs::write(&binary, b"VIN1\nVIN2\nVI\xc3N3\n").unwrap();
        let error = AllowList::from_file(&binary).unwrap_err();
        assert!(
            matches!(error, DrilldownError::NotUtf8 { line: 3, .. }),
            "{error:?}"
        );
        assert!(error.to_string().contains("binary.txt"), "{error}");

        let good = dir.path().join("good.txt");
        std::fs::write(&good, "VIN1\nVIN2\n").unwrap();
        assert_eq!(AllowList::from_file(&good).unwrap().len(), 2);
    }

    #[test]
    fn watch_swaps_only_a_readable_changed_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vins.txt");
        std::fs::write(&path, "VIN1\n").unwrap();
        let (mut list, mut watch) =
            AllowListWatch::load(path.clone(), Duration::from_millis(10)).unwrap();
        assert_eq!(watch.interval(), Duration::from_millis(10));
        assert_eq!(watch.path(), path);
        assert!(list.contains("VIN1"));
        assert!(
            watch.poll(&mut list).is_none(),
            "the file at start is loaded"
        );

        std::fs::write(&path, "VIN1\nVIN2\n").unwrap();
        assert_eq!(watch.poll(&mut list).unwrap().unwrap(), 2);
        assert!(list.contains("VIN2"));
        assert!(watch.poll(&mut list).is_none());

        // Unreadable: the previous list stays in force, reported once.
        std::fs::write(&path, b"VIN1\n\xff\xff\xff\n").unwrap();
        let error = watch.poll(&mut list).unwrap().unwrap_err();
        assert!(matches!(error, DrilldownError::NotUtf8 { line: 2, .. }));
        assert!(watch.poll(&mut list).is_none(), "reported once");
        assert_eq!(list.len(), 2);
        assert!(list.contains("VIN2"));

        // Gone: still the previous list; back: read again.
        std::fs::remove_file(&path).unwrap();
        let error = watch.poll(&mut list).unwrap().unwrap_err();
        assert!(matches!(error, DrilldownError::Read { .. }), "{error:?}");
        assert!(watch.poll(&mut list).is_none());
        assert_eq!(list.len(), 2);
        std::fs::write(&path, "VIN3\n").unwrap();
        assert_eq!(watch.poll(&mut list).unwrap().unwrap(), 1);
        assert!(list.contains("VIN3") && !list.contains("VIN1"));
    }

    #[test]
    fn watch_new_counts_the_current_file_as_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vins.txt");
        let mut watch = AllowListWatch::new(path.clone(), Duration::from_secs(1));
        let mut list = AllowList::default();
        assert!(watch.poll(&mut list).is_none(), "absent then, absent now");
        std::fs::write(&path, "VIN9\n").unwrap();
        assert_eq!(watch.poll(&mut list).unwrap().unwrap(), 1);
        assert!(list.contains("VIN9"));
    }

    #[test]
    fn from_config_builds_each_scope() {
        let off = DrilldownConfig::default();
        let selection = VehicleSelection::from_config(&off).unwrap();
        assert!(!selection.is_enabled());
        assert!(!selection.selects("V1"));

        let all = DrilldownConfig {
            enabled: true,
            vehicles: VehicleScope::All,
            ..DrilldownConfig::default()
        };
        let selection = VehicleSelection::from_config(&all).unwrap();
        assert!(selection.is_enabled());
        assert!(selection.selects("V1") && selection.selects("anything"));
        assert_eq!(selection.reload_interval(), None);

        let sample = DrilldownConfig {
            enabled: true,
            sample_fraction: 0.1,
            ..DrilldownConfig::default()
        };
        let mut selection = VehicleSelection::from_config(&sample).unwrap();
        assert!(selection.selects("V1"));
        assert!(!selection.selects("1HGCM82633A004352"));
        assert!(selection.poll_reload().is_none());
        let error = VehicleSelection::from_config(&DrilldownConfig {
            sample_fraction: 0.0,
            ..sample
        })
        .unwrap_err();
        assert!(
            matches!(error, DrilldownError::InvalidFraction { .. }),
            "{error}"
        );

        let no_path = DrilldownConfig {
            enabled: true,
            vehicles: VehicleScope::AllowList,
            ..DrilldownConfig::default()
        };
        assert!(matches!(
            VehicleSelection::from_config(&no_path),
            Err(DrilldownError::NoAllowListPath)
        ));
    }

    #[test]
    fn from_config_allow_list_reloads_when_asked_to() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vins.txt");
        std::fs::write(&path, "VIN1\n").unwrap();
        let config = DrilldownConfig {
            enabled: true,
            vehicles: VehicleScope::AllowList,
            allow_list_path: path.display().to_string(),
            allow_list_reload_interval_ms: 250,
            ..DrilldownConfig::default()
        };
        let mut selection = VehicleSelection::from_config(&config).unwrap();
        assert_eq!(
            selection.reload_interval(),
            Some(Duration::from_millis(250))
        );
        assert!(selection.selects("VIN1") && !selection.selects("VIN2"));
        assert!(selection.poll_reload().is_none());
        std::fs::write(&path, "VIN2\nVIN3\n").unwrap();
        assert_eq!(selection.poll_reload().unwrap().unwrap(), 2);
        assert!(!selection.selects("VIN1") && selection.selects("VIN2"));

        let mut fixed = VehicleSelection::from_config(&DrilldownConfig {
            allow_list_reload_interval_ms: 0,
            ..config.clone()
        })
        .unwrap();
        assert_eq!(fixed.reload_interval(), None);
        std::fs::write(&path, "VIN4\n").unwrap();
        assert!(fixed.poll_reload().is_none());
        assert!(fixed.selects("VIN2") && !fixed.selects("VIN4"));

        std::fs::remove_file(&path).unwrap();
        let error = VehicleSelection::from_config(&config).unwrap_err();
        assert!(matches!(error, DrilldownError::Read { .. }), "{error}");
    }
}
