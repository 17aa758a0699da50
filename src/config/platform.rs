//! The platforms hab builds for.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};

/// The platforms hab builds for.
pub const PLATFORMS: &[&str] = &["linux/amd64", "linux/arm64"];

/// A build platform (`linux/amd64`, `linux/arm64`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Platform(pub(super) String);

impl Platform {
    /// The platform string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Platform {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if PLATFORMS.contains(&s) {
            Ok(Platform(s.to_string()))
        } else {
            Err(format!(
                "unknown platform {s:?}; hab builds {}",
                PLATFORMS.join(", ")
            ))
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
