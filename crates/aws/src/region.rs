//! AWS region names, checked one way for every signer.
//!
//! SigV4 signs for a region, and the MSK token names one in its host, so a
//! name that is not a region (a typo, or an availability zone such as
//! `eu-west-1a`, which sits next to the region in many consoles) only shows
//! as a refused signature much later. [`Region`] can only hold a region
//! name, and [`RegionError`] says what the refused name looks like instead.

use std::fmt;
use std::ops::Deref;
use std::str::FromStr;

/// An AWS region name: a partition/geography prefix and a direction of
/// lowercase letters, then a number (`eu-west-1`, `us-gov-west-1`,
/// `cn-north-1`, `ap-southeast-4`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Region(String);

/// Why a name is not a [`Region`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RegionError {
    /// An availability zone (`eu-west-1a`) or a Local or Wavelength Zone
    /// (`us-west-2-lax-1a`): close, but not what is signed for.
    #[error("{name:?} is an availability zone, not a region: use {region:?}")]
    AvailabilityZone {
        /// The name given.
        name: String,
        /// The region of the zone.
        region: String,
    },
    /// Anything else.
    #[error("{0:?} is not an AWS region name (like \"eu-west-1\")")]
    NotARegion(String),
}

impl Region {
    /// `name` as a region, or why it is not one.
    pub fn parse(name: &str) -> Result<Region, RegionError> {
        if is_region(name) {
            return Ok(Region(name.to_owned()));
        }
        match zone_region(name) {
            Some(region) => Err(RegionError::AvailabilityZone {
                name: name.to_owned(),
                region: region.to_owned(),
            }),
            None => Err(RegionError::NotARegion(name.to_owned())),
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// At least three dash-separated parts: lowercase letters, then a number.
fn is_region(name: &str) -> bool {
    let mut parts = name.rsplit('-');
    let number = parts.next().unwrap_or_default();
    let mut words = 0;
    for word in parts {
        if word.is_empty() || !word.bytes().all(|b| b.is_ascii_lowercase()) {
            return false;
        }
        words += 1;
    }
    words >= 2 && !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit())
}

/// The region of a zone name: a region followed by zone letters
/// (`eu-west-1a`), or by a zone's own dash-separated name
/// (`us-west-2-lax-1a`, `us-east-1-wl1-bos-wlz-1`).
fn zone_region(name: &str) -> Option<&str> {
    let without_letters = name.trim_end_matches(|c: char| c.is_ascii_lowercase());
    if without_letters.len() < name.len() && is_region(without_letters) {
        return Some(without_letters);
    }
    name.match_indices('-')
        .map(|(at, _)| &name[..at])
        .find(|prefix| is_region(prefix))
}

impl FromStr for Region {
    type Err = RegionError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Region::parse(name)
    }
}

impl TryFrom<String> for Region {
    type Error = RegionError;

    fn try_from(name: String) -> Result<Self, Self::Error> {
        if is_region(&name) {
            Ok(Region(name))
        } else {
            Region::parse(&name)
        }
    }
}

impl From<Region> for String {
    fn from(region: Region) -> Self {
        region.0
    }
}

impl Deref for Region {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Region {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl PartialEq<str> for Region {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for Region {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl PartialEq<String> for Region {
    fn eq(&self, other: &String) -> bool {
        &self.0 == other
    }
}

/// The region in an AWS endpoint's host name: the label right after one of
/// `services`, in a host under `amazonaws.com` or `amazonaws.com.cn`.
/// `aps-workspaces.eu-west-1.amazonaws.com` (AMP, also through a VPC
/// endpoint: `vpce-….aps-workspaces.<region>.vpce.amazonaws.com`),
/// `b-1.<cluster>.<id>.c2.kafka.<region>.amazonaws.com` (MSK).
/// Case-insensitive. `None` for any other host.
pub fn region_from_host(host: &str, services: &[&str]) -> Option<Region> {
    let host = host.to_ascii_lowercase();
    if !(host.ends_with(".amazonaws.com") || host.ends_with(".amazonaws.com.cn")) {
        return None;
    }
    let mut labels = host.split('.');
    labels.find(|label| services.contains(label))?;
    labels.next().and_then(|label| Region::parse(label).ok())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn accepts_region_names() {
        for name in [
            "eu-west-1",
            "us-east-2",
            "us-gov-west-1",
            "cn-north-1",
            "ap-southeast-4",
            "il-central-1",
            "us-isob-east-1",
        ] {
            let region = Region::parse(name).unwrap();
            assert_eq!(region, name);
            assert_eq!(region.to_string(), name);
            assert_eq!(name.parse::<Region>().unwrap(), region);
            assert_eq!(Region::try_from(name.to_string()).unwrap(), region);
        }
    }

    #[test]
    fn refuses_anything_else() {
        for name in [
            "",
            "eu",
            "eu-west",
            "west-1",
            "EU-WEST-1",
            "Ireland",
            "eu--1",
            "-eu-west-1",
            "eu-west-",
            "eu-west-1.evil.com/x?",
            "eu west 1",
            "eu-west-1 ",
            "eu-1-west",
            "eu-west-x1",
        ] {
            assert_eq!(
                Region::parse(name),
                Err(RegionError::NotARegion(name.to_string())),
                "{name:?}"
            );
            assert!(Region::try_from(name.to_string()).is_err(), "{name:?}");
        }
    }

    #[test]
    fn names_availability_zones_as_such() {
        for (zone, region) in [
            ("eu-west-1a", "eu-west-1"),
            ("us-east-1f", "us-east-1"),
            ("us-west-2-lax-1a", "us-west-2"),
            ("us-east-1-wl1-bos-wlz-1", "us-east-1"),
        ] {
            let error = Region::parse(zone).unwrap_err();
            assert_eq!(
                error,
                RegionError::AvailabilityZone {
                    name: zone.into(),
                    region: region.into()
                }
            );
            let message = error.to_string();
            assert!(message.contains("availability zone"), "{message}");
            assert!(message.contains(&format!("use {region:?}")), "{message}");
        }
    }

    #[test]
    fn reads_the_region_of_endpoint_host_names() {
        let aps = ["aps-workspaces"];
        let msk = ["kafka", "kafka-serverless"];
        let cases: [(&str, &[&str], Option<&str>); 11] = [
            (
                "aps-workspaces.eu-west-1.amazonaws.com",
                &aps,
                Some("eu-west-1"),
            ),
            (
                "vpce-0a1b2c3d.aps-workspaces.ap-southeast-2.vpce.amazonaws.com",
                &aps,
                Some("ap-southeast-2"),
            ),
            (
                "aps-workspaces.cn-north-1.amazonaws.com.cn",
                &aps,
                Some("cn-north-1"),
            ),
            (
                "b-1.fleet.abc123.c2.kafka.eu-west-1.amazonaws.com",
                &msk,
                Some("eu-west-1"),
            ),
            (
                "BOOT-abcd.c1.KAFKA-SERVERLESS.us-east-2.amazonaws.com",
                &msk,
                Some("us-east-2"),
            ),
            ("aps-workspaces.eu-west-1.example.com", &aps, None),
            ("aps.eu-west-1.amazonaws.com", &aps, None),
            ("aps-workspaces.amazonaws.com", &aps, None),
            ("aps-workspaces.Ireland.amazonaws.com", &aps, None),
            ("b-1.x.kafka.eu-west-1a.amazonaws.com", &msk, None),
            ("localhost", &msk, None),
        ];
        for (host, services, region) in cases {
            assert_eq!(
                region_from_host(host, services).as_deref(),
                region,
                "{host}"
            );
        }
    }
}
