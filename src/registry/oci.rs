//! The OCI wire formats hab reads and writes: media types, the fields of an
//! image index, an image manifest and an image config that hab reads, and
//! the digest of bytes.

use std::collections::BTreeMap;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::builder::plan;

/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub(super) const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub(super) const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub(super) const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub(super) const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// The OCI digest of `bytes`: `sha256:<hex>`.
pub fn digest_of(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// An image index (OCI index or Docker manifest list) as read back from a
/// registry: the fields hab reads.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Index {
    /// One entry per image.
    pub manifests: Vec<IndexManifest>,
    /// The index's annotations (hab writes the build's provenance there).
    pub annotations: Option<BTreeMap<String, String>>,
}

/// One image of an index.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct IndexManifest {
    /// The image manifest's digest (`sha256:<hex>`).
    pub digest: String,
    /// Its size in bytes.
    pub size: i64,
    /// The platform it is for, when the index says.
    pub platform: Option<IndexPlatform>,
}

/// The platform of an index entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct IndexPlatform {
    /// `linux`.
    pub os: String,
    /// `amd64`, `arm64`.
    pub architecture: String,
}

impl Index {
    /// The entries for `platform` (`linux/arm64`): one, when the index is
    /// sound.
    pub fn entries_for(&self, platform: &str) -> Vec<&IndexManifest> {
        let (os, arch) = (plan::os(platform), plan::architecture(platform));
        self.manifests
            .iter()
            .filter(|m| {
                m.platform
                    .as_ref()
                    .is_some_and(|p| p.os == os && p.architecture == arch)
            })
            .collect()
    }
}

/// An image manifest as read back from a registry: its config and layers.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Manifest {
    /// The image config blob.
    pub config: Descriptor,
    /// The layer blobs, bottom first.
    pub layers: Vec<Descriptor>,
}

/// A blob a manifest names.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Descriptor {
    /// `sha256:<hex>`.
    pub digest: String,
    /// Size in bytes.
    pub size: i64,
}

/// Reads an image index (or Docker manifest list) read from a registry.
///
/// # Errors
/// The bytes are not JSON of an index.
pub fn parse_index(bytes: &[u8]) -> Result<Index, serde_json::Error> {
    serde_json::from_slice(bytes)
}

/// Reads an image manifest read from a registry.
///
/// # Errors
/// The bytes are not JSON of an image manifest.
pub fn parse_manifest(bytes: &[u8]) -> Result<Manifest, serde_json::Error> {
    serde_json::from_slice(bytes)
}

/// The platform an image config says it is for, as `os/architecture`.
///
/// # Errors
/// The bytes are not JSON of an image config with `os` and `architecture`.
pub fn parse_config_platform(bytes: &[u8]) -> Result<String, serde_json::Error> {
    #[derive(Deserialize)]
    struct ConfigPlatform {
        os: String,
        architecture: String,
    }
    let c: ConfigPlatform = serde_json::from_slice(bytes)?;
    Ok(format!("{}/{}", c.os, c.architecture))
}
