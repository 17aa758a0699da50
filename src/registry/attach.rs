//! Artifacts attached to a manifest (OCI distribution spec 1.1): a
//! manifest whose `subject` names the index, found through the referrers
//! API where the registry offers it, and through the spec's tag-schema
//! fallback (an index tagged `sha256-<hex>` of the subject) where it does
//! not. Debian's docker-registry 2.8, which the chart ships, answers 404 to
//! referrers: hab keeps the fallback tag current on every registry, so
//! either way of looking finds the artifact.

use serde_json::json;

use super::{digest_of, Registry, RegistryError, OCI_INDEX, OCI_MANIFEST};

/// The largest artifact layer read back: an attestation is a few
/// kilobytes; whoever can push to the registry must not make habd hold
/// gigabytes.
const MAX_CONTENT: i64 = 16 * 1024 * 1024;

/// The empty JSON config of an artifact (`{}`).
const EMPTY_CONFIG: &str = "application/vnd.oci.empty.v1+json";

/// An artifact attached to a subject, as found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// The artifact manifest's digest.
    pub manifest: String,
    /// Its first layer's bytes (hab's artifacts have one layer).
    pub content: Vec<u8>,
    /// The digest the manifest names for that layer.
    pub named: String,
}

/// Where an artifact was made findable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attached {
    /// The artifact manifest's digest.
    pub manifest: String,
    /// The fallback tag it is listed under.
    pub fallback_tag: String,
    /// Whether the registry's referrers API lists it too.
    pub referrers_api: bool,
}

/// The fallback tag of `digest` (`sha256:ab…` → `sha256-ab…`).
pub fn fallback_tag(digest: &str) -> String {
    digest.replacen(':', "-", 1)
}

impl Registry {
    /// `GET url` with the registry's credentials: the body and content
    /// type, or None on 404.
    async fn get_raw(
        &self,
        url: &str,
        accept: &str,
    ) -> Result<Option<(Vec<u8>, String)>, RegistryError> {
        let what = || format!("GET {url}");
        let fail = |reason: String| RegistryError::Pull {
            what: "attached artifacts".into(),
            reference: url.to_string(),
            reason,
        };
        let res = self
            .retrying(&what, || {
                self.send_retryable(self.http.get(url).header(reqwest::header::ACCEPT, accept))
            })
            .await
            .map_err(|f| f.into_error(|e| self.failed(what, e, |e| fail(e.to_string()))))?;
        let status = res.status().as_u16();
        if status == 404 {
            return Ok(None);
        }
        let kind = res
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let body = res.bytes().await.map_err(|e| fail(e.to_string()))?;
        if status != 200 {
            return Err(fail(format!("HTTP {status}")));
        }
        Ok(Some((body.to_vec(), kind)))
    }

    /// Pushes `bytes` as a blob of `repository` unless it is there.
    async fn push_small_blob(
        &self,
        repository: &str,
        bytes: &[u8],
    ) -> Result<String, RegistryError> {
        let digest = digest_of(bytes);
        let r = self.reference(repository, &digest);
        self.authorize(&r, oci_client::RegistryOperation::Push)
            .await?;
        let what = || format!("push of blob {digest}");
        let push_err = |source| RegistryError::Push {
            what: format!("blob {digest}"),
            reference: r.whole(),
            source,
        };
        let exists = self
            .retrying(&what, || self.client.blob_exists(&r, &digest))
            .await
            .map_err(|f| f.into_error(|e| self.failed(what, e, push_err)))?;
        if !exists {
            self.retrying(&what, || self.client.push_blob(&r, bytes.to_vec(), &digest))
                .await
                .map_err(|f| f.into_error(|e| self.failed(what, e, push_err)))?;
        }
        Ok(digest)
    }

    /// Attaches `content` (of `media_type`) to `subject` (an index of
    /// `repository`, `subject_size` bytes) as an artifact of
    /// `artifact_type`, and lists it under the subject's fallback tag.
    ///
    /// # Errors
    /// A push or read failed; nothing is listed under the fallback tag
    /// unless the artifact is in the registry.
    pub async fn attach(
        &self,
        repository: &str,
        subject: (&str, i64),
        artifact_type: &str,
        media_type: &str,
        content: &[u8],
    ) -> Result<Attached, RegistryError> {
        let config = self.push_small_blob(repository, b"{}").await?;
        let layer = self.push_small_blob(repository, content).await?;
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": artifact_type,
            "config": {"mediaType": EMPTY_CONFIG, "digest": config, "size": 2, "data": "e30="},
            "layers": [{"mediaType": media_type, "digest": layer, "size": content.len()}],
            "subject": {"mediaType": OCI_INDEX, "digest": subject.0, "size": subject.1},
            "annotations": {
                "org.opencontainers.image.created":
                    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            },
        });
        let body = serde_json::to_vec(&manifest).expect("a manifest serializes");
        let digest = digest_of(&body);
        let size = body.len();
        self.push_manifest(repository, &digest, body, OCI_MANIFEST)
            .await?;

        // The fallback tag: the index of every artifact of the subject.
        let tag = fallback_tag(subject.0);
        let url = format!("{}/v2/{repository}/manifests/{tag}", self.url);
        let mut listed: Vec<serde_json::Value> = match self.get_raw(&url, OCI_INDEX).await? {
            Some((bytes, _)) => serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| v["manifests"].as_array().cloned())
                .unwrap_or_default(),
            None => Vec::new(),
        };
        listed.retain(|d| d["digest"] != digest.as_str());
        listed.push(json!({
            "mediaType": OCI_MANIFEST,
            "digest": digest,
            "size": size,
            "artifactType": artifact_type,
        }));
        let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": listed});
        let index = serde_json::to_vec(&index).expect("an index serializes");
        self.push_manifest(repository, &tag, index, OCI_INDEX)
            .await?;

        let referrers_api = self
            .referrers_api(repository, subject.0)
            .await
            .is_some_and(|l| l.iter().any(|(d, _)| *d == digest));
        Ok(Attached {
            manifest: digest,
            fallback_tag: tag,
            referrers_api,
        })
    }

    /// The referrers API's list for `subject` (digest, artifact type), or
    /// None when the registry does not offer the API.
    async fn referrers_api(
        &self,
        repository: &str,
        subject: &str,
    ) -> Option<Vec<(String, String)>> {
        let url = format!("{}/v2/{repository}/referrers/{subject}", self.url);
        match self.get_raw(&url, OCI_INDEX).await {
            Ok(Some((bytes, kind))) if kind.starts_with(OCI_INDEX) => Some(listing(&bytes)),
            _ => None,
        }
    }

    /// Everything listed as attached to `subject` (digest, artifact type):
    /// by the referrers API, then under the fallback tag; and the fallback
    /// index's bytes, when there is one.
    async fn listed(
        &self,
        repository: &str,
        subject: &str,
    ) -> Result<(Vec<(String, String)>, Option<Vec<u8>>), RegistryError> {
        let mut found = self
            .referrers_api(repository, subject)
            .await
            .unwrap_or_default();
        let url = format!(
            "{}/v2/{repository}/manifests/{}",
            self.url,
            fallback_tag(subject)
        );
        let fallback = self.get_raw(&url, OCI_INDEX).await?.map(|(b, _)| b);
        if let Some(bytes) = &fallback {
            found.extend(listing(bytes));
        }
        Ok((found, fallback))
    }

    /// The artifact manifests attached to `subject` with `artifact_type`:
    /// through the referrers API, and the fallback tag.
    ///
    /// # Errors
    /// The registry failed (an absent list is no error: an empty one).
    pub async fn referrers(
        &self,
        repository: &str,
        subject: &str,
        artifact_type: &str,
    ) -> Result<Vec<String>, RegistryError> {
        let (found, _) = self.listed(repository, subject).await?;
        let mut out: Vec<String> = Vec::new();
        for (d, t) in found {
            if t == artifact_type && !out.contains(&d) {
                out.push(d);
            }
        }
        Ok(out)
    }

    /// Reads the artifact `manifest` (attached to `subject`) and its layer.
    /// None when the manifest is not an artifact of `subject` (a list may
    /// name anything; only the manifest's own `subject` counts).
    ///
    /// # Errors
    /// The registry failed.
    pub async fn attachment(
        &self,
        repository: &str,
        subject: &str,
        manifest: &str,
    ) -> Result<Option<Attachment>, RegistryError> {
        let bytes = self
            .fetch_manifest(repository, manifest, &[OCI_MANIFEST])
            .await?;
        if digest_of(&bytes) != manifest {
            return Ok(None);
        }
        let m: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
        if m["subject"]["digest"] != subject {
            return Ok(None);
        }
        let Some(layer) = m["layers"][0]["digest"].as_str() else {
            return Ok(None);
        };
        let size = m["layers"][0]["size"].as_i64().unwrap_or(i64::MAX);
        if !(0..=MAX_CONTENT).contains(&size) {
            return Ok(None);
        }
        let d = super::Descriptor {
            digest: layer.to_string(),
            size,
        };
        let blob = self.read_blob(repository, &d, true).await;
        if let Some(e) = blob.error {
            return Err(RegistryError::Pull {
                what: format!("blob {layer}"),
                reference: self.pinned(repository, manifest),
                reason: e,
            });
        }
        Ok(Some(Attachment {
            manifest: manifest.to_string(),
            content: blob.bytes,
            named: layer.to_string(),
        }))
    }

    /// Deletes every artifact attached to `subject` and its fallback tag
    /// (pruning: an attestation goes with its index). Returns the
    /// manifests deleted.
    ///
    /// # Errors
    /// The registry refused or failed.
    pub async fn detach_all(
        &self,
        repository: &str,
        subject: &str,
    ) -> Result<Vec<String>, RegistryError> {
        let mut deleted = Vec::new();
        let (found, fallback) = self.listed(repository, subject).await?;
        for (d, _) in found {
            if !deleted.contains(&d) && self.delete_manifest(repository, &d).await? {
                deleted.push(d);
            }
        }
        // The fallback index lists this subject's artifacts only: its
        // digest is its tag's alone.
        if let Some(bytes) = fallback {
            let d = digest_of(&bytes);
            if self.delete_manifest(repository, &d).await? {
                deleted.push(d);
            }
        }
        Ok(deleted)
    }
}

/// (digest, artifactType) of every entry of an index listing.
fn listing(bytes: &[u8]) -> Vec<(String, String)> {
    let v: serde_json::Value = serde_json::from_slice(bytes).unwrap_or_default();
    v["manifests"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|d| {
                    Some((
                        d["digest"].as_str()?.to_string(),
                        d["artifactType"].as_str().unwrap_or("").to_string(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fallback_tag_is_the_specs() {
        assert_eq!(fallback_tag("sha256:0123abcd"), "sha256-0123abcd");
        let l = listing(
            br#"{"manifests":[{"digest":"sha256:aa","artifactType":"x"},{"digest":"sha256:bb"}]}"#,
        );
        assert_eq!(
            l,
            vec![
                ("sha256:aa".to_string(), "x".to_string()),
                ("sha256:bb".to_string(), String::new())
            ]
        );
        assert!(listing(b"<html>").is_empty());
    }
}
