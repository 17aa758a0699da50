//! Reading from the registry: manifests and indexes by digest, a base
//! image's digests, whether a manifest is still there.

use oci_client::{secrets::RegistryAuth, Reference};

use super::{
    digest_of,
    oci::{DOCKER_LIST, DOCKER_MANIFEST},
    parse_index, Registry, RegistryError, OCI_INDEX, OCI_MANIFEST,
};

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
}
