//! The cluster's OCI registry, through oci-client: moves bytes, and decides
//! nothing about them. It publishes an image that a builder exported (blobs
//! the registry lacks, then its manifest), pushes the image index of a
//! release, tags, fetches manifests and streams blobs back (hashing them as
//! they arrive), and deletes manifests. Whether what came back is what was
//! pushed is judged in [`crate::readback`].
//!
//! Layers come out of the engine uncompressed (`docker save`); they are
//! gzip-compressed here at level 1, all layers at once, which is where
//! publishing wins over `docker push` (it compresses at Go's default level,
//! one stream at a time). Compression is deterministic (no timestamp in the
//! gzip header), so the same layer always gets the same digest and a blob the
//! registry has is never sent again.
//!
//! By concern: `retry` (transient failures, timeouts), `push`
//! (publish, index, tags), `read` (manifests, blobs, base images), `attach`
//! (artifacts naming a subject: referrers and the fallback tag), `delete`,
//! `saved` (the `docker save` archive) and `oci` (the wire types).

mod attach;
mod delete;
mod oci;
mod push;
mod read;
mod retry;
mod saved;

use std::sync::Arc;

use oci_client::{
    client::{ClientConfig, ClientProtocol},
    secrets::RegistryAuth,
    Client, Reference, RegistryOperation,
};

use crate::config::RegistryConfig;
pub use attach::{fallback_tag, Attached, Attachment};
pub use oci::{
    digest_of, parse_config_platform, parse_index, parse_manifest, Descriptor, Index,
    IndexManifest, IndexPlatform, Manifest, OCI_INDEX, OCI_MANIFEST,
};
pub use push::{IndexEntry, PushedImage};
pub use read::FetchedBlob;
use retry::transient;

/// Blobs uploaded at once: enough to keep both cores compressing while the
/// other uploads, few enough not to hold every layer of a large image in
/// flight.
const PARALLEL_BLOBS: usize = 4;

/// Registry errors.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The registry did not answer.
    #[error("registry at {url} is not reachable: {reason} (is it running?)")]
    Unreachable {
        /// Base URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// The registry refused the credentials, or wants some.
    #[error("registry at {url} refused access: {reason}")]
    Auth {
        /// Base URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// Reading the password file failed.
    #[error("{0}")]
    Credentials(std::io::Error),
    /// The exported image is not what `docker save` writes.
    #[error("exported image {path}: {reason}")]
    Export {
        /// The archive.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// A push failed.
    #[error("push of {what} to {reference} failed: {source}")]
    Push {
        /// Blob or manifest.
        what: String,
        /// Where.
        reference: String,
        /// oci-client's error.
        source: oci_client::errors::OciDistributionError,
    },
    /// The registry stopped answering: nothing arrived for the configured
    /// `[registry] timeout`.
    #[error("registry at {url} sent nothing for {}s during {what} ([registry] timeout): is it overloaded or stuck?", timeout.as_secs_f64())]
    Timeout {
        /// Base URL.
        url: String,
        /// What hab was doing (`push of blob sha256:…`).
        what: String,
        /// The configured timeout.
        timeout: std::time::Duration,
    },
    /// The registry kept failing transiently (HTTP 5xx or 429, refused or
    /// dropped connections) through every attempt.
    #[error("{last}; gave up after {attempts} attempts over {}s", waited.as_secs_f64())]
    GaveUp {
        /// Attempts made.
        attempts: u32,
        /// Time waited between them.
        waited: std::time::Duration,
        /// The last attempt's error.
        last: Box<RegistryError>,
    },
    /// A read failed.
    #[error("read of {what} from {reference} failed: {reason}")]
    Pull {
        /// What.
        what: String,
        /// Where.
        reference: String,
        /// Why.
        reason: String,
    },
}

/// A client for the configured registry.
#[derive(Clone)]
pub struct Registry {
    client: Arc<Client>,
    auth: RegistryAuth,
    host: String,
    pull_host: Option<String>,
    url: String,
    credentials: Option<(String, String)>,
    /// For the calls oci-client does not make (the `/v2/` check, deletes),
    /// with the same timeouts.
    http: reqwest::Client,
    timeout: std::time::Duration,
    /// One upload of a blob at a time per repository and digest: two
    /// platforms of a build often share a layer, and a registry given the
    /// same blob twice at once may answer the manifest naming it with
    /// "blob unknown". The second waits, then finds the blob there.
    uploads: Arc<std::sync::Mutex<std::collections::HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").field("url", &self.url).finish()
    }
}

impl Registry {
    /// A client for `cfg` (credentials read from its password file).
    ///
    /// # Errors
    /// The password file cannot be read.
    pub fn new(cfg: &RegistryConfig) -> Result<Self, RegistryError> {
        let credentials = cfg.credentials().map_err(RegistryError::Credentials)?;
        let auth = match &credentials {
            Some((u, p)) => RegistryAuth::Basic(u.clone(), p.clone()),
            None => RegistryAuth::Anonymous,
        };
        let protocol = if cfg.url.scheme() == "http" {
            ClientProtocol::Http
        } else {
            ClientProtocol::Https
        };
        // A registry that accepts a connection and then says nothing must
        // not hold a build forever: every connect and every read is bounded
        // by the configured timeout (a read timeout restarts with each
        // chunk, so a large layer that keeps arriving is never cut).
        let client = Client::new(ClientConfig {
            protocol,
            // One PUT per blob: the registry is near, and a monolithic upload
            // is one round trip instead of three.
            use_monolithic_push: true,
            max_concurrent_upload: PARALLEL_BLOBS,
            connect_timeout: Some(cfg.timeout),
            read_timeout: Some(cfg.timeout),
            ..Default::default()
        });
        let http = reqwest::Client::builder()
            .connect_timeout(cfg.timeout)
            .read_timeout(cfg.timeout)
            .build()
            .map_err(|e| RegistryError::Unreachable {
                url: cfg.url.to_string(),
                reason: e.to_string(),
            })?;
        Ok(Registry {
            client: Arc::new(client),
            auth,
            host: cfg.host(),
            pull_host: cfg.pull_host.clone(),
            url: cfg.url.as_str().trim_end_matches('/').to_string(),
            credentials,
            http,
            timeout: cfg.timeout,
            uploads: Arc::default(),
        })
    }

    /// The gate of uploads of `digest` into `repository` (see `uploads`).
    fn upload_gate(&self, repository: &str, digest: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut gates = self.uploads.lock().unwrap_or_else(|e| e.into_inner());
        // Forget the gates no upload holds any more.
        gates.retain(|_, g| Arc::strong_count(g) > 1);
        gates
            .entry(format!("{repository}@{digest}"))
            .or_default()
            .clone()
    }

    /// `host:port` of the registry.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// User and password, when configured (the builders' pulls need them).
    pub fn credentials(&self) -> Option<&(String, String)> {
        self.credentials.as_ref()
    }

    /// Sends `req` with the registry's credentials. A server error (5xx,
    /// 429) is an error, worth another try; any other status is the
    /// registry's answer.
    async fn send_retryable(
        &self,
        mut req: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, reqwest::Error> {
        if let Some((u, p)) = &self.credentials {
            req = req.basic_auth(u, Some(p));
        }
        let res = req.send().await?;
        if res.status().is_server_error() || res.status().as_u16() == 429 {
            res.error_for_status()
        } else {
            Ok(res)
        }
    }

    /// Checks that the registry answers and accepts our credentials.
    ///
    /// # Errors
    /// [`RegistryError::Unreachable`] or [`RegistryError::Auth`], with how to
    /// fix it.
    pub async fn check(&self) -> Result<(), RegistryError> {
        let url = format!("{}/v2/", self.url);
        let res = self
            .retrying(&|| format!("GET {url}"), || {
                self.send_retryable(self.http.get(&url))
            })
            .await
            .map_err(|f| {
                f.into_error(|e| {
                    self.failed(
                        || "the check of /v2/".into(),
                        e,
                        |e| RegistryError::Unreachable {
                            url: self.url.clone(),
                            reason: e.to_string(),
                        },
                    )
                })
            })?;
        match res.status().as_u16() {
            200 => Ok(()),
            401 => Err(RegistryError::Auth {
                url: self.url.clone(),
                reason: match &self.credentials {
                    Some((u, _)) => format!(
                        "the password for user {u:?} was not accepted (401); check registry.password_file"
                    ),
                    None => "it wants credentials (401): set registry.username and registry.password_file in hab.toml".into(),
                },
            }),
            s => Err(RegistryError::Unreachable {
                url: self.url.clone(),
                reason: format!("GET /v2/ answered HTTP {s}; is this an OCI registry?"),
            }),
        }
    }

    fn reference(&self, repository: &str, digest: &str) -> Reference {
        Reference::with_digest(self.host.clone(), repository.into(), digest.into())
    }

    fn tagged(&self, repository: &str, tag: &str) -> Reference {
        Reference::with_tag(self.host.clone(), repository.into(), tag.into())
    }

    /// `host/repository@digest`.
    pub fn pinned(&self, repository: &str, digest: &str) -> String {
        format!("{}/{repository}@{digest}", self.host)
    }

    /// `pull_host/repository@digest`: the same image as nodes name it, when
    /// they reach the registry by another address than habd does (in a
    /// cluster, kubelets pull through the node's network, not the Service).
    pub fn pinned_for_nodes(&self, repository: &str, digest: &str) -> String {
        format!(
            "{}/{repository}@{digest}",
            self.pull_host.as_deref().unwrap_or(&self.host)
        )
    }

    async fn authorize(&self, r: &Reference, op: RegistryOperation) -> Result<(), RegistryError> {
        let what = || format!("authentication for {}", r.whole());
        self.retrying(&what, || self.client.auth(r, &self.auth, op))
            .await
            .map(|_| ())
            .map_err(|f| {
                f.into_error(|e| {
                    self.failed(what, e, |e| {
                        // A registry that is down did not refuse anything.
                        if transient(&e).is_some() {
                            RegistryError::Unreachable {
                                url: self.url.clone(),
                                reason: e.to_string(),
                            }
                        } else {
                            RegistryError::Auth {
                                url: self.url.clone(),
                                reason: e.to_string(),
                            }
                        }
                    })
                })
            })
    }
}
