//! The evidence an audit reads: the index's bytes and the envelopes
//! attached to it, from the registry or from an OCI image layout directory
//! (what `skopeo copy … oci:DIR` writes), and the audit over them.
//!
//! In a layout an attestation is found by its own `subject`, whatever tag
//! or index lists it: copying tools keep manifests but not the registry's
//! fallback tag, so every manifest the layout holds is looked at.

use std::path::{Path, PathBuf};

use super::{
    check::{audit, Audit, Failure},
    key::PublicKey,
    ATTESTATION_TYPE,
};
use crate::{
    registry::{digest_of, Registry, RegistryError},
    signature::Keyring,
};

/// An index and what is attached to it, as read.
#[derive(Debug, Clone, Default)]
pub struct Evidence {
    /// The index's bytes.
    pub index: Vec<u8>,
    /// Each attestation found: its manifest's digest, and its envelope's
    /// bytes (or why they cannot be believed).
    pub envelopes: Vec<(String, Result<Vec<u8>, Failure>)>,
}

/// Audits `digest` over `evidence`: passes when one attestation passes
/// every check of [`audit`].
///
/// # Errors
/// [`Failure::Missing`] when nothing is attached; otherwise the failure of
/// the last attestation tried.
pub fn audit_evidence(
    digest: &str,
    evidence: &Evidence,
    key: &PublicKey,
    keyring: &Keyring,
) -> Result<Audit, Failure> {
    let got = digest_of(&evidence.index);
    if got != digest {
        return Err(Failure::IndexAltered {
            want: digest.into(),
            got,
        });
    }
    let mut last = Failure::Missing {
        digest: digest.into(),
    };
    for (_, envelope) in &evidence.envelopes {
        match envelope {
            Ok(bytes) => match audit(digest, &evidence.index, bytes, key, keyring) {
                Ok(a) => return Ok(a),
                Err(f) => last = f,
            },
            Err(f) => last = f.clone(),
        }
    }
    Err(last)
}

/// The attestation envelopes the registry holds for `repository@digest`:
/// each manifest's digest, and its envelope's bytes, or
/// [`Failure::EnvelopeAltered`] when they are not the bytes the manifest
/// names. What a rollout and an audit both read.
///
/// # Errors
/// The registry failed.
pub async fn envelopes(
    registry: &Registry,
    repository: &str,
    digest: &str,
) -> Result<Vec<(String, Result<Vec<u8>, Failure>)>, RegistryError> {
    let mut envelopes = Vec::new();
    for manifest in registry
        .referrers(repository, digest, ATTESTATION_TYPE)
        .await?
    {
        if let Some(a) = registry.attachment(repository, digest, &manifest).await? {
            let got = digest_of(&a.content);
            let e = if got == a.named {
                Ok(a.content)
            } else {
                Err(Failure::EnvelopeAltered { want: a.named, got })
            };
            envelopes.push((manifest, e));
        }
    }
    Ok(envelopes)
}

/// Reads the evidence of `repository@digest` from the registry.
///
/// # Errors
/// The registry failed.
pub async fn from_registry(
    registry: &Registry,
    repository: &str,
    digest: &str,
) -> Result<Evidence, RegistryError> {
    let index = registry.fetch_index(repository, digest).await?.to_vec();
    let envelopes = envelopes(registry, repository, digest).await?;
    Ok(Evidence { index, envelopes })
}

/// An OCI image layout directory.
#[derive(Debug, Clone)]
pub struct Layout {
    dir: PathBuf,
}

impl Layout {
    /// Opens `dir`, which must hold `oci-layout` and `index.json`.
    ///
    /// # Errors
    /// Not an OCI image layout.
    pub fn open(dir: &Path) -> Result<Self, String> {
        for f in ["oci-layout", "index.json"] {
            if !dir.join(f).is_file() {
                return Err(format!(
                    "{} is not an OCI image layout (no {f}); make one with `skopeo copy --all docker://REPO@DIGEST oci:{}`",
                    dir.display(),
                    dir.display()
                ));
            }
        }
        Ok(Layout {
            dir: dir.to_path_buf(),
        })
    }

    fn blob(&self, digest: &str) -> Result<Vec<u8>, String> {
        let (alg, hex) = digest
            .split_once(':')
            .filter(|(_, h)| !h.contains(['/', '.']))
            .ok_or_else(|| format!("{digest:?} is not a digest"))?;
        let path = self.dir.join("blobs").join(alg).join(hex);
        std::fs::read(&path).map_err(|e| format!("the layout holds no blob {digest} ({e})"))
    }

    /// Every manifest the layout holds (digest, bytes): those `index.json`
    /// lists, and those the indexes among them list, to a few levels.
    fn manifests(&self) -> Result<Vec<(String, Vec<u8>)>, String> {
        let top = std::fs::read(self.dir.join("index.json"))
            .map_err(|e| format!("{}/index.json: {e}", self.dir.display()))?;
        let mut todo: Vec<(String, u8)> = children(&top).into_iter().map(|d| (d, 0)).collect();
        let mut seen = Vec::new();
        while let Some((d, depth)) = todo.pop() {
            if seen.iter().any(|(s, _)| *s == d) {
                continue;
            }
            let Ok(bytes) = self.blob(&d) else { continue };
            if depth < 3 {
                todo.extend(children(&bytes).into_iter().map(|c| (c, depth + 1)));
            }
            seen.push((d, bytes));
        }
        Ok(seen)
    }

    /// The evidence of `digest` in this layout.
    ///
    /// # Errors
    /// The layout holds no blob of the index, or cannot be read.
    pub fn evidence(&self, digest: &str) -> Result<Evidence, String> {
        let index = self.blob(digest)?;
        let mut envelopes = Vec::new();
        for (d, bytes) in self.manifests()? {
            let m: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
            if m["subject"]["digest"] != digest || m["artifactType"] != ATTESTATION_TYPE {
                continue;
            }
            let Some(layer) = m["layers"][0]["digest"].as_str() else {
                continue;
            };
            let e = self.blob(layer).map_err(Failure::Unreadable).and_then(|b| {
                let got = digest_of(&b);
                if got == layer {
                    Ok(b)
                } else {
                    Err(Failure::EnvelopeAltered {
                        want: layer.to_string(),
                        got,
                    })
                }
            });
            envelopes.push((d, e));
        }
        Ok(Evidence { index, envelopes })
    }
}

/// The digests an index lists (none, for anything else).
fn children(bytes: &[u8]) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_slice(bytes).unwrap_or_default();
    v["manifests"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|d| d["digest"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}
