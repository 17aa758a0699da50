//! Reading from the registry: manifests and indexes by digest, blobs
//! streamed and hashed as they arrive, a base image's digests, whether a
//! manifest is still there.

use futures_util::StreamExt;
use oci_client::{secrets::RegistryAuth, Reference, RegistryOperation};
use sha2::{Digest, Sha256};

use super::{
    digest_of,
    oci::{DOCKER_LIST, DOCKER_MANIFEST},
    parse_index, Descriptor, Registry, RegistryError, OCI_INDEX, OCI_MANIFEST,
};

/// A blob as read back: the digest and size of what arrived, and why the
/// read failed, if it did. Nothing here says whether it is the blob asked
/// for: [`crate::readback`] decides.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FetchedBlob {
    /// `sha256:<hex>` of the bytes that arrived (every byte, or those that
    /// came before the read failed).
    pub digest: String,
    /// How many bytes arrived.
    pub size: u64,
    /// The bytes, when asked to keep them (a config, which is small);
    /// empty otherwise.
    pub bytes: Vec<u8>,
    /// Why the read failed, after its retries; None when it ended.
    pub error: Option<String>,
}

impl Registry {
    /// The digest of `image`'s manifest for `platform`: `image` names an
    /// index (the platform's entry is taken) or a single image manifest.
    /// Used to pin a recipe's base image, whose digest enters the build key.
    ///
    /// # Errors
    /// A malformed reference, an unreachable registry, or no such platform.
    pub async fn platform_digest(
        &self,
        image: &str,
        platform: &str,
    ) -> Result<String, RegistryError> {
        Ok(self.base_digests(image, platform).await?.1)
    }

    /// A base image's index digest (None when it is a single image, not an
    /// index) and its digest for `platform`.
    ///
    /// # Errors
    /// As [`Registry::platform_digest`].
    pub async fn base_digests(
        &self,
        image: &str,
        platform: &str,
    ) -> Result<(Option<String>, String), RegistryError> {
        let pull_err = |reason: String| RegistryError::Pull {
            what: format!("base image for {platform}"),
            reference: image.to_string(),
            reason,
        };
        let r: Reference = image
            .parse()
            .map_err(|e: oci_client::ParseError| pull_err(e.to_string()))?;
        let auth = if r.resolve_registry() == self.host {
            self.auth.clone()
        } else {
            RegistryAuth::Anonymous
        };
        let (bytes, _) = self
            .retrying(&|| format!("read of base image {image}"), || {
                self.client.pull_manifest_raw(
                    &r,
                    &auth,
                    &[OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST],
                )
            })
            .await
            .map_err(|f| f.into_error(|e| pull_err(e.to_string())))?;
        match parse_index(&bytes) {
            Ok(index) => index
                .entries_for(platform)
                .first()
                .map(|m| (Some(digest_of(&bytes)), m.digest.clone()))
                .ok_or_else(|| pull_err(format!("its index lists no {platform} image"))),
            Err(_) => Ok((None, digest_of(&bytes))),
        }
    }

    /// True when the registry still holds `repository@digest` (a HEAD
    /// request). A registry that cannot be asked counts as not holding it.
    pub async fn has_manifest(&self, repository: &str, digest: &str) -> bool {
        let r = self.reference(repository, digest);
        match self
            .retrying(&|| format!("HEAD of manifest {}", r.whole()), || {
                self.client.fetch_manifest_digest(&r, &self.auth)
            })
            .await
            .map_err(|f| f.error)
        {
            Ok(d) => d == digest,
            Err(e) => {
                tracing::debug!(reference = %r.whole(), error = %e, "manifest not found");
                false
            }
        }
    }

    /// Fetches a manifest or index by digest, raw.
    pub(super) async fn fetch_manifest(
        &self,
        repository: &str,
        digest: &str,
        accept: &[&str],
    ) -> Result<bytes::Bytes, RegistryError> {
        let r = self.reference(repository, digest);
        let what = || format!("read of manifest {digest}");
        let (bytes, _) = self
            .retrying(&what, || {
                self.client.pull_manifest_raw(&r, &self.auth, accept)
            })
            .await
            .map_err(|f| {
                f.into_error(|e| {
                    self.failed(what, e, |e| RegistryError::Pull {
                        what: format!("manifest {digest}"),
                        reference: r.whole(),
                        reason: e.to_string(),
                    })
                })
            })?;
        Ok(bytes)
    }

    /// Authenticates for reading `repository@digest`.
    ///
    /// # Errors
    /// [`RegistryError::Auth`], or [`RegistryError::Unreachable`] when the
    /// registry did not answer.
    pub async fn authorize_read(
        &self,
        repository: &str,
        digest: &str,
    ) -> Result<(), RegistryError> {
        self.authorize(&self.reference(repository, digest), RegistryOperation::Pull)
            .await
    }

    /// Fetches an image index (or Docker manifest list) by digest: its
    /// bytes exactly as the registry sent them.
    ///
    /// # Errors
    /// The read failed ([`RegistryError::Pull`], `Timeout`, `GaveUp`).
    pub async fn fetch_index(
        &self,
        repository: &str,
        digest: &str,
    ) -> Result<bytes::Bytes, RegistryError> {
        self.fetch_manifest(repository, digest, &[OCI_INDEX, DOCKER_LIST])
            .await
    }

    /// Fetches an image manifest by digest: its bytes exactly as the
    /// registry sent them.
    ///
    /// # Errors
    /// As [`Registry::fetch_index`].
    pub async fn fetch_image_manifest(
        &self,
        repository: &str,
        digest: &str,
    ) -> Result<bytes::Bytes, RegistryError> {
        self.fetch_manifest(repository, digest, &[OCI_MANIFEST, DOCKER_MANIFEST])
            .await
    }

    /// Streams the blob `d` names, hashing it as it arrives; keeps its bytes
    /// when `keep`. A read that fails transiently is made again, whole; one
    /// that fails otherwise reports what arrived before it did.
    pub async fn read_blob(&self, repository: &str, d: &Descriptor, keep: bool) -> FetchedBlob {
        let r = self.reference(repository, &d.digest);
        // Read whole again when the registry fails transiently; a read that
        // fails otherwise keeps what arrived, for the checks of read-back.
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
        let (read, error) = match self
            .retrying(&|| format!("read of blob {}", d.digest), read_once)
            .await
        {
            Ok(read) => (read, None),
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
                (read, Some(reason))
            }
        };
        let BlobRead { hasher, size, kept } = read;
        FetchedBlob {
            digest: format!("sha256:{}", hex::encode(hasher.finalize())),
            size,
            bytes: kept,
            error,
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
