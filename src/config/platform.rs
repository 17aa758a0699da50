//! The platforms hab builds for.
//!
//! A [`Platform`] is one of the two hab builds, never a free string: it is
//! checked where it enters (a config file, the store, a JSON body) and
//! written `os/arch` (`linux/amd64`) wherever it leaves (Docker's
//! `--platform`, the store, the API, logs), so that every byte of those
//! stays as it was when platforms were strings.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A platform hab builds for: an OCI `os` and `architecture`.
///
/// The variants are in the order of their names, so that platforms sort as
/// their names do (a map keyed by platform serializes as one keyed by name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Platform {
    /// `linux/amd64`.
    LinuxAmd64,
    /// `linux/arm64`.
    LinuxArm64,
}

impl Platform {
    /// Every platform hab builds for, in order.
    pub const ALL: [Platform; 2] = [Platform::LinuxAmd64, Platform::LinuxArm64];

    /// The name, `os/arch` (`linux/arm64`), as Docker's `--platform` takes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Platform::LinuxAmd64 => "linux/amd64",
            Platform::LinuxArm64 => "linux/arm64",
        }
    }

    /// The OCI `os` (`linux`).
    pub fn os(self) -> &'static str {
        match self {
            Platform::LinuxAmd64 | Platform::LinuxArm64 => "linux",
        }
    }

    /// The OCI `architecture` (`amd64`, `arm64`).
    pub fn arch(self) -> &'static str {
        match self {
            Platform::LinuxAmd64 => "amd64",
            Platform::LinuxArm64 => "arm64",
        }
    }
}

/// A name that is not one of [`Platform::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown platform {name:?}; hab builds {}", Platform::ALL.map(Platform::as_str).join(", "))]
pub struct UnknownPlatform {
    /// The name as given.
    pub name: String,
}

impl FromStr for Platform {
    type Err = UnknownPlatform;

    fn from_str(s: &str) -> Result<Self, UnknownPlatform> {
        Platform::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| UnknownPlatform { name: s.into() })
    }
}

impl fmt::Display for Platform {
    /// The name; width and alignment apply (`{:<12}` pads it).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl Serialize for Platform {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Platform {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = std::borrow::Cow::<'de, str>::deserialize(d)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn parses_the_two_it_builds() {
        assert_eq!("linux/amd64".parse(), Ok(Platform::LinuxAmd64));
        assert_eq!("linux/arm64".parse(), Ok(Platform::LinuxArm64));
        for p in Platform::ALL {
            assert_eq!(p.as_str().parse(), Ok(p));
            assert_eq!(p.to_string(), p.as_str());
            assert_eq!(format!("{}/{}", p.os(), p.arch()), p.as_str());
        }
    }

    #[test]
    fn os_and_arch() {
        assert_eq!(Platform::LinuxAmd64.os(), "linux");
        assert_eq!(Platform::LinuxAmd64.arch(), "amd64");
        assert_eq!(Platform::LinuxArm64.os(), "linux");
        assert_eq!(Platform::LinuxArm64.arch(), "arm64");
    }

    #[test]
    fn an_unknown_platform_says_which_are_known() {
        for bad in ["linux/s390x", "amd64", "linux/arm64/v8", "Linux/amd64", ""] {
            let err = bad.parse::<Platform>().unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("unknown platform {bad:?}; hab builds linux/amd64, linux/arm64")
            );
        }
    }

    #[test]
    fn display_pads_like_the_name() {
        assert_eq!(format!("{:<12}|", Platform::LinuxArm64), "linux/arm64 |");
        assert_eq!(format!("{:>12}", Platform::LinuxAmd64), " linux/amd64");
    }

    #[test]
    fn serde_is_the_name() {
        let json = serde_json::to_string(&Platform::ALL).unwrap();
        assert_eq!(json, r#"["linux/amd64","linux/arm64"]"#);
        let back: Vec<Platform> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, Platform::ALL);
        let err = serde_json::from_str::<Platform>(r#""linux/s390x""#).unwrap_err();
        assert!(
            err.to_string().starts_with(
                r#"unknown platform "linux/s390x"; hab builds linux/amd64, linux/arm64"#
            ),
            "{err}"
        );
        assert!(serde_json::from_str::<Platform>("7").is_err());
    }

    #[test]
    fn maps_keyed_by_platform_serialize_as_maps_keyed_by_name() {
        let by_platform: BTreeMap<Platform, u8> =
            Platform::ALL.into_iter().rev().zip([2, 1]).collect();
        let by_name: BTreeMap<&str, u8> =
            by_platform.iter().map(|(p, n)| (p.as_str(), *n)).collect();
        assert_eq!(
            serde_json::to_string(&by_platform).unwrap(),
            serde_json::to_string(&by_name).unwrap()
        );
        let back: BTreeMap<Platform, u8> =
            serde_json::from_str(r#"{"linux/arm64":2,"linux/amd64":1}"#).unwrap();
        assert_eq!(back, by_platform);
        let mut sorted = Platform::ALL;
        sorted.sort_by_key(|p| p.as_str());
        assert_eq!(sorted, Platform::ALL, "variant order is name order");
    }
}
