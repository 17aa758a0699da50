//! `[registry]` of hab.toml: the cluster's own OCI registry.

use std::path::PathBuf;

use serde::Serialize;
use url::Url;

/// The cluster's own OCI registry.
#[derive(Debug, Clone, Serialize)]
pub struct RegistryConfig {
    /// Base URL (`http://127.0.0.1:5000`).
    pub url: Url,
    /// User for basic auth, if the registry wants it.
    pub username: Option<String>,
    /// File holding the password.
    pub password_file: Option<PathBuf>,
    /// `host[:port]` nodes pull images from, when not the URL's (in a
    /// cluster: the address kubelets reach the registry at).
    pub pull_host: Option<String>,
    /// The longest any registry request may wait for the registry to
    /// answer or to send more (connect, and each read). Not a bound on a
    /// whole transfer: a large layer that keeps arriving is never cut.
    #[serde(with = "super::fleets::secs")]
    pub timeout: std::time::Duration,
}

/// The registry's default `timeout`: a registry in the cluster answers in
/// milliseconds; one that says nothing for a minute is not coming back, and
/// a minute still covers a garbage-collecting registry's pauses.
pub const DEFAULT_REGISTRY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

impl RegistryConfig {
    /// The registry's `host:port`, as image references name it.
    pub fn host(&self) -> String {
        match self.url.port() {
            Some(port) => format!("{}:{port}", self.url.host_str().unwrap_or("localhost")),
            None => self.url.host_str().unwrap_or("localhost").to_string(),
        }
    }

    /// User and password for basic auth, when a user is configured.
    ///
    /// # Errors
    /// The password file cannot be read.
    pub fn credentials(&self) -> std::io::Result<Option<(String, String)>> {
        let Some(user) = &self.username else {
            return Ok(None);
        };
        let password = match &self.password_file {
            Some(f) => std::fs::read_to_string(f)
                .map_err(|e| {
                    std::io::Error::new(
                        e.kind(),
                        format!("registry password file {}: {e}", f.display()),
                    )
                })?
                .trim_end_matches(['\r', '\n'])
                .to_string(),
            None => String::new(),
        };
        Ok(Some((user.clone(), password)))
    }
}
