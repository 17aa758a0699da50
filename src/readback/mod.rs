//! Image read-back: after a release's index is pushed, everything is read
//! from the registry again and judged: the index, each image manifest, each
//! config and layer, hashed here; each expected platform listed once, with
//! a config that says the same platform.
//!
//! The judging is in [`check`], pure functions over the bytes that came
//! back; [`read_back`] fetches them through [`Registry`] (which only moves
//! bytes) and collects every refusal into a [`ReadBack`] report, rather
//! than stopping at the first.

pub mod check;
mod refusal;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::registry::{digest_of, Descriptor, IndexManifest, Registry};
pub use refusal::Refusal;

/// What reading an index back found.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ReadBack {
    /// `host/repo@digest`.
    pub reference: String,
    /// Index digest as recomputed.
    pub index_digest: String,
    /// Per platform: manifest digest.
    pub platforms: BTreeMap<String, String>,
    /// Blobs read and hashed.
    pub blobs_checked: usize,
    /// Bytes read.
    pub bytes_read: u64,
    /// Every problem found; empty when all is well.
    pub problems: Vec<String>,
    /// Annotations of the index.
    pub annotations: BTreeMap<String, String>,
}

/// Reads `repository@index_digest` back: the index, each manifest, and
/// every blob, each hashed again here; checks that each of `platforms` is
/// listed with the right os and architecture (in the index and in the image
/// config). Problems are collected, not thrown: the report says everything
/// found.
pub async fn read_back(
    registry: &Registry,
    repository: &str,
    index_digest: &str,
    platforms: &[String],
) -> ReadBack {
    let mut rb = ReadBack {
        reference: registry.pinned(repository, index_digest),
        ..Default::default()
    };
    if let Err(e) = registry.authorize_read(repository, index_digest).await {
        rb.problems.push(e.to_string());
        return rb;
    }
    let index_bytes = match registry.fetch_index(repository, index_digest).await {
        Ok(b) => b,
        Err(e) => {
            rb.problems.push(e.to_string());
            return rb;
        }
    };
    rb.index_digest = digest_of(&index_bytes);
    rb.bytes_read += index_bytes.len() as u64;
    let index = match check::index_digest(index_digest, &index_bytes)
        .and_then(|()| check::index_parses(index_digest, &index_bytes))
    {
        Ok(i) => i,
        Err(r) => {
            rb.problems.push(r.to_string());
            return rb;
        }
    };
    rb.annotations = index.annotations.clone().unwrap_or_default();
    for want in platforms {
        match check::platform_entry(index_digest, &index, want) {
            Ok(m) => {
                rb.platforms.insert(want.clone(), m.digest.clone());
            }
            Err(r) => rb.problems.push(r.to_string()),
        }
    }
    for m in &index.manifests {
        let platform = check::entry_platform(m);
        read_image(registry, repository, m, &platform, &mut rb).await;
    }
    rb
}

/// Reads back one image of the index: its manifest, config and layers.
async fn read_image(
    registry: &Registry,
    repository: &str,
    m: &IndexManifest,
    platform: &str,
    rb: &mut ReadBack,
) {
    let bytes = match registry.fetch_image_manifest(repository, &m.digest).await {
        Ok(b) => b,
        Err(e) => {
            rb.problems.push(e.to_string());
            return;
        }
    };
    rb.bytes_read += bytes.len() as u64;
    let manifest = match check::manifest_digest(m, platform, &bytes)
        .and_then(|()| check::manifest_parses(m, platform, &bytes))
    {
        Ok(x) => x,
        Err(r) => {
            rb.problems.push(r.to_string());
            return;
        }
    };
    let what = check::config_label(platform);
    if let Some(config) = read_blob(registry, repository, &manifest.config, &what, true, rb).await {
        if let Err(r) = check::config_platform(&m.digest, platform, &manifest.config, &config) {
            rb.problems.push(r.to_string());
        }
    }
    for (i, layer) in manifest.layers.iter().enumerate() {
        let what = check::layer_label(platform, i, manifest.layers.len());
        read_blob(registry, repository, layer, &what, false, rb).await;
    }
}

/// Reads back one blob and checks it; its bytes when `keep` and it passed.
async fn read_blob(
    registry: &Registry,
    repository: &str,
    d: &Descriptor,
    what: &str,
    keep: bool,
    rb: &mut ReadBack,
) -> Option<Vec<u8>> {
    let read = registry.read_blob(repository, d, keep).await;
    rb.bytes_read += read.size;
    rb.blobs_checked += 1;
    match check::blob(d, what, &read) {
        Ok(()) => keep.then_some(read.bytes),
        Err(r) => {
            rb.problems.push(r.to_string());
            None
        }
    }
}
