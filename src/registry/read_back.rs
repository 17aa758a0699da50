//! Reading a release back: the index, each manifest and every blob, hashed
//! again and checked against what was pushed.

use std::collections::BTreeMap;

use futures_util::StreamExt;
use oci_client::RegistryOperation;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{
    digest_of,
    oci::{DOCKER_LIST, DOCKER_MANIFEST},
    parse_config_platform, parse_index, parse_manifest, Descriptor, IndexManifest, Registry,
    OCI_INDEX, OCI_MANIFEST,
};

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

impl Registry {
    /// Reads an index back: the index, each manifest, and every blob, each
    /// hashed again here; checks that each of `platforms` is listed with the
    /// right os and architecture (in the index and in the image config).
    /// Problems are collected, not thrown: the report says everything found.
    pub async fn read_back(
        &self,
        repository: &str,
        index_digest: &str,
        platforms: &[String],
    ) -> ReadBack {
        let mut rb = ReadBack {
            reference: self.pinned(repository, index_digest),
            ..Default::default()
        };
        if let Err(e) = self
            .authorize(
                &self.reference(repository, index_digest),
                RegistryOperation::Pull,
            )
            .await
        {
            rb.problems.push(e.to_string());
            return rb;
        }
        let index_bytes = match self
            .fetch_manifest(repository, index_digest, &[OCI_INDEX, DOCKER_LIST])
            .await
        {
            Ok(b) => b,
            Err(e) => {
                rb.problems.push(e.to_string());
                return rb;
            }
        };
        rb.index_digest = digest_of(&index_bytes);
        rb.bytes_read += index_bytes.len() as u64;
        if rb.index_digest != index_digest {
            rb.problems.push(format!(
                "index {index_digest} read back as {}: the registry's copy differs",
                rb.index_digest
            ));
            return rb;
        }
        let index = match parse_index(&index_bytes) {
            Ok(i) => i,
            Err(e) => {
                rb.problems
                    .push(format!("index {index_digest} is not an image index: {e}"));
                return rb;
            }
        };
        rb.annotations = index.annotations.clone().unwrap_or_default();
        for want in platforms {
            match index.entries_for(want).as_slice() {
                [] => rb
                    .problems
                    .push(format!("index {index_digest} lists no {want} image")),
                [m] => {
                    rb.platforms.insert(want.clone(), m.digest.clone());
                }
                _ => rb
                    .problems
                    .push(format!("index {index_digest} lists {want} more than once")),
            }
        }
        for m in &index.manifests {
            let what = m
                .platform
                .as_ref()
                .map(|p| format!("{}/{}", p.os, p.architecture))
                .unwrap_or_else(|| "unknown platform".into());
            self.check_manifest(repository, m, &what, &mut rb).await;
        }
        rb
    }

    async fn check_manifest(
        &self,
        repository: &str,
        m: &IndexManifest,
        platform: &str,
        rb: &mut ReadBack,
    ) {
        let bytes = match self
            .fetch_manifest(repository, &m.digest, &[OCI_MANIFEST, DOCKER_MANIFEST])
            .await
        {
            Ok(b) => b,
            Err(e) => {
                rb.problems.push(e.to_string());
                return;
            }
        };
        rb.bytes_read += bytes.len() as u64;
        let got = digest_of(&bytes);
        if got != m.digest || bytes.len() as i64 != m.size {
            rb.problems.push(format!(
                "manifest {} ({platform}) read back as {got}, {} bytes: the registry's copy differs",
                m.digest,
                bytes.len()
            ));
            return;
        }
        let manifest = match parse_manifest(&bytes) {
            Ok(x) => x,
            Err(e) => {
                rb.problems.push(format!(
                    "manifest {} ({platform}) does not parse: {e}",
                    m.digest
                ));
                return;
            }
        };
        let what = format!("config of {platform}");
        if let Some(config) = self
            .check_blob(repository, &manifest.config, &what, rb)
            .await
        {
            match parse_config_platform(&config) {
                Ok(c) if c == platform => {}
                Ok(c) => rb.problems.push(format!(
                    "image {} is listed as {platform} but its config says {c}",
                    m.digest
                )),
                Err(e) => rb.problems.push(format!(
                    "config {} ({platform}) does not parse: {e}",
                    manifest.config.digest
                )),
            }
        }
        for (i, layer) in manifest.layers.iter().enumerate() {
            self.check_blob(
                repository,
                layer,
                &format!("layer {} of {} of {platform}", i + 1, manifest.layers.len()),
                rb,
            )
            .await;
        }
    }

    /// Streams a blob, hashing it; returns its bytes when it is a config
    /// (small), None for layers or on a problem.
    async fn check_blob(
        &self,
        repository: &str,
        d: &Descriptor,
        what: &str,
        rb: &mut ReadBack,
    ) -> Option<Vec<u8>> {
        let r = self.reference(repository, &d.digest);
        let keep = what.starts_with("config");
        // Read whole again when the registry fails transiently; a read that
        // fails otherwise keeps what arrived, for the checks below.
        let read_once = || async {
            let mut read = BlobRead {
                hasher: Sha256::new(),
                size: 0,
                kept: Vec::new(),
            };
            let result: Result<(), Box<dyn std::error::Error + Send + Sync>> = async {
                let mut s = self.client.pull_blob_stream(&r, d.digest.as_str()).await?;
                while let Some(chunk) = s.next().await {
                    let chunk = chunk?;
                    read.hasher.update(&chunk);
                    read.size += chunk.len() as u64;
                    if keep {
                        read.kept.extend_from_slice(&chunk);
                    }
                }
                Ok(())
            }
            .await;
            match result {
                Ok(()) => Ok(read),
                Err(source) => Err(BlobReadError { read, source }),
            }
        };
        let (read, result) = match self
            .retrying(&|| format!("read of blob {}", d.digest), read_once)
            .await
        {
            Ok(read) => (read, Ok(())),
            Err(f) => {
                let exhausted = f.exhausted.then_some((f.attempts, f.waited));
                let BlobReadError { read, source } = f.error;
                let mut reason = source.to_string();
                if let Some((attempts, waited)) = exhausted {
                    reason.push_str(&format!(
                        "; gave up after {attempts} attempts over {}s",
                        waited.as_secs_f64()
                    ));
                }
                (read, Err(reason))
            }
        };
        let BlobRead { hasher, size, kept } = read;
        rb.bytes_read += size;
        rb.blobs_checked += 1;
        let got = format!("sha256:{}", hex::encode(hasher.finalize()));
        // oci-client also checks the digest and fails the stream's last read;
        // when every byte arrived, our own hash says plainly what happened.
        let whole = size as i64 == d.size;
        let problem = match result {
            _ if whole && got != d.digest => Some(format!(
                "blob {} ({what}) read back as {got}: the registry's copy is corrupt",
                d.digest
            )),
            Err(e) => Some(format!(
                "blob {} ({what}) could not be read back: {e}",
                d.digest
            )),
            Ok(()) if got != d.digest => Some(format!(
                "blob {} ({what}) read back as {got}: the registry's copy is corrupt",
                d.digest
            )),
            Ok(()) if size as i64 != d.size => Some(format!(
                "blob {} ({what}) read back with {size} bytes, the manifest says {}",
                d.digest, d.size
            )),
            Ok(()) => None,
        };
        match problem {
            Some(p) => {
                rb.problems.push(p);
                None
            }
            None => keep.then_some(kept),
        }
    }
}

/// What one read of a blob got.
struct BlobRead {
    hasher: Sha256,
    size: u64,
    kept: Vec<u8>,
}

/// A read of a blob that failed, with what arrived before it did.
struct BlobReadError {
    read: BlobRead,
    source: Box<dyn std::error::Error + Send + Sync>,
}

impl std::fmt::Debug for BlobReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobReadError")
            .field("size", &self.read.size)
            .field("source", &self.source)
            .finish()
    }
}

impl std::fmt::Display for BlobReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.source.fmt(f)
    }
}

impl std::error::Error for BlobReadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.source)
    }
}
