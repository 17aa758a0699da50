//! Publishing: an exported image's blobs and manifest, a release's image
//! index, and its tags.

use std::{
    collections::BTreeMap,
    io::Write,
    path::Path,
    sync::{
        atomic::{AtomicI64, Ordering},
        Arc,
    },
};

use futures_util::{stream, StreamExt, TryStreamExt};
use oci_client::RegistryOperation;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{
    digest_of,
    oci::{OCI_CONFIG, OCI_LAYER_GZIP},
    saved::read_saved,
    Registry, RegistryError, OCI_INDEX, OCI_MANIFEST, PARALLEL_BLOBS,
};
use crate::builder::plan;

/// An image manifest in the registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushedImage {
    /// Manifest digest.
    pub digest: String,
    /// Manifest size.
    pub size: i64,
    /// Manifest media type.
    pub media_type: String,
    /// Bytes of all blobs (compressed layers and config).
    pub bytes_total: i64,
    /// Bytes uploaded now.
    pub bytes_pushed: i64,
    /// Blobs the registry already had.
    pub blobs_skipped: i64,
}

/// A manifest to list in an index.
#[derive(Debug, Clone)]
pub struct IndexEntry {
    /// `linux/amd64`.
    pub platform: String,
    /// Manifest digest.
    pub digest: String,
    /// Manifest size.
    pub size: i64,
    /// Manifest media type.
    pub media_type: String,
}

struct Blob {
    digest: String,
    bytes: bytes::Bytes,
    media_type: &'static str,
}

impl Registry {
    /// Publishes an image exported by `docker save` into `repository`: its
    /// layers (compressed), its config, then its manifest, by digest. Blobs
    /// the registry already has are not uploaded. `progress` gets the bytes
    /// uploaded so far.
    ///
    /// # Errors
    /// The archive is not a `docker save` archive, or a push failed.
    pub async fn publish_saved(
        &self,
        saved: &Path,
        repository: &str,
        progress: Arc<dyn Fn(i64, i64) + Send + Sync>,
    ) -> Result<PushedImage, RegistryError> {
        let path = saved.to_path_buf();
        let image = tokio::task::spawn_blocking(move || read_saved(&path))
            .await
            .map_err(|e| RegistryError::Export {
                path: saved.display().to_string(),
                reason: e.to_string(),
            })??;

        let base = self.reference(repository, &image.config_digest);
        self.authorize(&base, RegistryOperation::Push).await?;

        // Compress every layer, all at once on the blocking pool.
        let layers: Vec<Blob> = stream::iter(
            image
                .layers
                .into_iter()
                .map(|raw| tokio::task::spawn_blocking(move || compress(raw))),
        )
        .buffered(PARALLEL_BLOBS)
        .map(|r| {
            r.map_err(|e| RegistryError::Export {
                path: saved.display().to_string(),
                reason: e.to_string(),
            })
        })
        .try_collect()
        .await?;
        let config = Blob {
            digest: image.config_digest.clone(),
            bytes: image.config.into(),
            media_type: OCI_CONFIG,
        };

        let bytes_total: i64 =
            layers.iter().map(|b| b.bytes.len() as i64).sum::<i64>() + config.bytes.len() as i64;
        let pushed = Arc::new(AtomicI64::new(0));
        let skipped = Arc::new(AtomicI64::new(0));
        progress(0, bytes_total);
        let blobs: Vec<(String, bytes::Bytes)> = layers
            .iter()
            .chain(std::iter::once(&config))
            .map(|b| (b.digest.clone(), b.bytes.clone()))
            .collect();
        let uploads: Vec<_> = blobs
            .into_iter()
            .map(|(digest, data)| {
                let blob = Blob {
                    digest,
                    bytes: data,
                    media_type: OCI_CONFIG,
                };
                let r = self.reference(repository, &blob.digest);
                let pushed = pushed.clone();
                let skipped = skipped.clone();
                let progress = progress.clone();
                let this = self.clone();
                async move {
                    let this = &this;
                    let push_err = |source| {
                        this.failed(
                            || format!("push of blob {}", blob.digest),
                            source,
                            |source| RegistryError::Push {
                                what: format!("blob {}", blob.digest),
                                reference: r.whole(),
                                source,
                            },
                        )
                    };
                    let what = || format!("push of blob {}", blob.digest);
                    let gate = this.upload_gate(repository, &blob.digest);
                    let _one_at_a_time = gate.lock().await;
                    let exists = this
                        .retrying(&what, || this.client.blob_exists(&r, &blob.digest))
                        .await
                        .map_err(|f| f.into_error(push_err))?;
                    if exists {
                        skipped.fetch_add(1, Ordering::Relaxed);
                        return Ok(());
                    }
                    this.retrying(&what, || {
                        this.client.push_blob(&r, blob.bytes.clone(), &blob.digest)
                    })
                    .await
                    .map_err(|f| f.into_error(push_err))?;
                    let now = pushed.fetch_add(blob.bytes.len() as i64, Ordering::Relaxed)
                        + blob.bytes.len() as i64;
                    progress(now, bytes_total);
                    Ok::<(), RegistryError>(())
                }
            })
            .collect();
        stream::iter(uploads)
            .buffer_unordered(PARALLEL_BLOBS)
            .try_collect::<Vec<()>>()
            .await?;

        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": config.media_type, "digest": config.digest, "size": config.bytes.len()},
            "layers": layers.iter().map(|l| json!({
                "mediaType": l.media_type, "digest": l.digest, "size": l.bytes.len()
            })).collect::<Vec<_>>(),
        });
        let body = serde_json::to_vec(&manifest).expect("a manifest serializes");
        let digest = digest_of(&body);
        let size = body.len() as i64;
        self.push_manifest(repository, &digest, body, OCI_MANIFEST)
            .await?;
        Ok(PushedImage {
            digest,
            size,
            media_type: OCI_MANIFEST.into(),
            bytes_total,
            bytes_pushed: pushed.load(Ordering::Relaxed),
            blobs_skipped: skipped.load(Ordering::Relaxed),
        })
    }

    pub(super) async fn push_manifest(
        &self,
        repository: &str,
        tag_or_digest: &str,
        body: Vec<u8>,
        media_type: &str,
    ) -> Result<(), RegistryError> {
        let r = if tag_or_digest.starts_with("sha256:") {
            self.reference(repository, tag_or_digest)
        } else {
            self.tagged(repository, tag_or_digest)
        };
        self.authorize(&r, RegistryOperation::Push).await?;
        let what = || format!("push of manifest {}", r.whole());
        let media_type = reqwest::header::HeaderValue::from_str(media_type)
            .expect("a media type is a header value");
        self.retrying(&what, || {
            self.client
                .push_manifest_raw(&r, body.clone(), media_type.clone())
        })
        .await
        .map_err(|f| {
            f.into_error(|e| {
                self.failed(what, e, |source| RegistryError::Push {
                    what: "manifest".into(),
                    reference: r.whole(),
                    source,
                })
            })
        })?;
        Ok(())
    }

    /// Pushes an image index listing `entries` under each of `tags`; returns
    /// its digest and bytes (the digest of exactly the bytes sent).
    ///
    /// # Errors
    /// A push failed.
    pub async fn push_index(
        &self,
        repository: &str,
        entries: &[IndexEntry],
        annotations: &BTreeMap<String, String>,
        tags: &[String],
    ) -> Result<(String, Vec<u8>), RegistryError> {
        let manifests: Vec<serde_json::Value> = entries
            .iter()
            .map(|e| {
                let mut platform = json!({
                    "architecture": plan::architecture(&e.platform),
                    "os": plan::os(&e.platform),
                });
                if plan::architecture(&e.platform) == "arm64" {
                    platform["variant"] = json!("v8");
                }
                json!({"mediaType": e.media_type, "digest": e.digest, "size": e.size, "platform": platform})
            })
            .collect();
        let index = json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": manifests,
            "annotations": annotations,
        });
        let body = serde_json::to_vec(&index).expect("an index serializes");
        let digest = digest_of(&body);
        self.push_manifest(repository, &digest, body.clone(), OCI_INDEX)
            .await?;
        for tag in tags {
            self.tag(repository, tag, &body).await?;
        }
        Ok((digest, body))
    }

    /// Puts an index (its exact bytes) under a tag.
    ///
    /// # Errors
    /// The push failed.
    pub async fn tag(
        &self,
        repository: &str,
        tag: &str,
        index: &[u8],
    ) -> Result<(), RegistryError> {
        self.push_manifest(repository, tag, index.to_vec(), OCI_INDEX)
            .await
    }

    /// Tags the index `digest` (already in the registry) as `tag`.
    ///
    /// # Errors
    /// The index cannot be read or the tag pushed.
    pub async fn tag_digest(
        &self,
        repository: &str,
        digest: &str,
        tag: &str,
    ) -> Result<(), RegistryError> {
        let index = self
            .fetch_manifest(repository, digest, &[OCI_INDEX])
            .await?;
        self.tag(repository, tag, &index).await
    }
}

fn compress(raw: Vec<u8>) -> Blob {
    // Level 1: layers of compiled binaries shrink nearly as much as at the
    // default level, at several times the speed.
    let mut gz = flate2::GzBuilder::new().mtime(0).write(
        Vec::with_capacity(raw.len() / 2),
        flate2::Compression::fast(),
    );
    gz.write_all(&raw).expect("writing to memory");
    let bytes = gz.finish().expect("writing to memory");
    Blob {
        digest: digest_of(&bytes),
        bytes: bytes.into(),
        media_type: OCI_LAYER_GZIP,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compression_is_deterministic() {
        let raw: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let a = compress(raw.clone());
        let b = compress(raw);
        assert_eq!(a.digest, b.digest);
        assert!(a.bytes.len() < 100_000);
    }

    #[tokio::test]
    async fn one_upload_of_a_blob_at_a_time_per_repository() {
        let r = Registry::new(&crate::config::Config::embedded_defaults().registry).unwrap();
        let a = r.upload_gate("hab/node", "sha256:aa");
        let held = a.lock().await;
        // The same blob into the same repository waits for the first…
        let again = r.upload_gate("hab/node", "sha256:aa");
        assert!(Arc::ptr_eq(&a, &again));
        assert!(again.try_lock().is_err());
        // …another blob, or the same into another repository, does not.
        assert!(r.upload_gate("hab/node", "sha256:bb").try_lock().is_ok());
        assert!(r.upload_gate("hab/other", "sha256:aa").try_lock().is_ok());
        drop(held);
        assert!(again.try_lock().is_ok());
    }
}
