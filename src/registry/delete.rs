//! Deleting manifests (pruning old builds).

use super::{Registry, RegistryError};

impl Registry {
    /// Deletes a manifest (or index) by digest; true when it was there.
    /// The registry must allow deletes (`storage.delete.enabled`).
    ///
    /// # Errors
    /// The registry refuses (405 when deletes are disabled) or fails.
    pub async fn delete_manifest(
        &self,
        repository: &str,
        digest: &str,
    ) -> Result<bool, RegistryError> {
        let reference = format!("{}/{repository}@{digest}", self.host);
        let fail = |reason: String| RegistryError::Pull {
            what: format!("delete of manifest {digest}"),
            reference: reference.clone(),
            reason,
        };
        let url = format!("{}/v2/{repository}/manifests/{digest}", self.url);
        let what = || format!("delete of manifest {digest}");
        let res = self
            .retrying(&what, || self.send_retryable(self.http.delete(&url)))
            .await
            .map_err(|f| f.into_error(|e| self.failed(what, e, |e| fail(e.to_string()))))?;
        match res.status().as_u16() {
            200 | 202 => Ok(true),
            404 => Ok(false),
            405 => Err(fail(
                "the registry does not allow deletes: set storage.delete.enabled in its config"
                    .into(),
            )),
            s => Err(fail(format!("HTTP {s}"))),
        }
    }
}
