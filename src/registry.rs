//! The cluster's OCI registry, through oci-client: publishes an image that a
//! builder exported (blobs the registry lacks, then its manifest), pushes the
//! image index of a release, and reads everything back to check it.
//!
//! Layers come out of the engine uncompressed (`docker save`); they are
//! gzip-compressed here at level 1, all layers at once, which is where
//! publishing wins over `docker push` (it compresses at Go's default level,
//! one stream at a time). Compression is deterministic (no timestamp in the
//! gzip header), so the same layer always gets the same digest and a blob the
//! registry has is never sent again.

use std::{
    collections::{BTreeMap, HashMap},
    io::{Read, Write},
    path::Path,
    sync::{
        atomic::{AtomicI64, Ordering},
        Arc,
    },
};

use futures_util::{stream, StreamExt, TryStreamExt};
use oci_client::{
    client::{ClientConfig, ClientProtocol},
    secrets::RegistryAuth,
    Client, Reference, RegistryOperation,
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::{builder::plan, config::RegistryConfig};

/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

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
}

/// True when `e`, or an error it wraps, is a timeout (reqwest's, or an I/O
/// one): the registry stopped answering rather than answered badly.
fn timed_out(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        // oci-client wraps reqwest's error transparently: its `source()`
        // skips the reqwest error, so ask the wrapped one itself.
        if let Some(oci_client::errors::OciDistributionError::RequestError(r)) = err.downcast_ref()
        {
            if r.is_timeout() {
                return true;
            }
        }
        if err
            .downcast_ref::<reqwest::Error>()
            .is_some_and(|r| r.is_timeout())
            || err
                .downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
        {
            return true;
        }
        cur = err.source();
    }
    false
}

/// Attempts per registry call when it fails transiently (an HTTP 5xx or
/// 429, a refused or dropped connection): a registry restarting, or briefly
/// overloaded, is ridden out instead of failing the build.
const ATTEMPTS: u32 = 5;

/// The wait before the first retry; it doubles for each next one (0.5, 1,
/// 2, 4 s: 7.5 s in all before the call fails).
const FIRST_RETRY: std::time::Duration = std::time::Duration::from_millis(500);

/// Why a failed call may succeed if made again, in words: the registry
/// answered 5xx or 429, or the connection was refused or dropped. None for
/// anything else: a timeout (the registry already had `[registry] timeout`
/// to answer), a refusal, a client error, corrupt data.
fn transient(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    if timed_out(e) {
        return None;
    }
    let of_status = |code: u16| (code >= 500 || code == 429).then(|| format!("HTTP {code}"));
    let of_reqwest = |r: &reqwest::Error| match r.status() {
        Some(s) => of_status(s.as_u16()),
        None if r.is_connect() => Some("cannot connect".to_string()),
        None if r.is_request() || r.is_body() => Some("connection dropped".to_string()),
        None => None,
    };
    let mut cur = Some(e);
    while let Some(err) = cur {
        // oci-client wraps reqwest's error transparently: its `source()`
        // skips the reqwest error, so ask the wrapped one itself.
        match err.downcast_ref::<oci_client::errors::OciDistributionError>() {
            Some(oci_client::errors::OciDistributionError::ServerError { code, .. }) => {
                return of_status(*code)
            }
            Some(oci_client::errors::OciDistributionError::RequestError(r)) => {
                return of_reqwest(r)
            }
            _ => {}
        }
        if let Some(r) = err.downcast_ref::<reqwest::Error>() {
            return of_reqwest(r);
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind as K;
            // A stream's error wraps the client's (`source()` would skip it).
            if let (K::Other, Some(inner)) = (io.kind(), io.get_ref()) {
                return transient(inner);
            }
            return matches!(
                io.kind(),
                K::ConnectionRefused
                    | K::ConnectionReset
                    | K::ConnectionAborted
                    | K::BrokenPipe
                    | K::UnexpectedEof
                    | K::NotConnected
            )
            .then(|| io.kind().to_string());
        }
        cur = err.source();
    }
    None
}

/// A call that failed for good: its last error, and whether it failed
/// transiently every time it was made.
struct Failed<E> {
    error: E,
    attempts: u32,
    waited: std::time::Duration,
    exhausted: bool,
}

impl<E> Failed<E> {
    /// The error `map` makes of it, saying how often it was tried when the
    /// retries ran out.
    fn into_error(self, map: impl FnOnce(E) -> RegistryError) -> RegistryError {
        let last = map(self.error);
        if self.exhausted && self.attempts > 1 {
            RegistryError::GaveUp {
                attempts: self.attempts,
                waited: self.waited,
                last: Box::new(last),
            }
        } else {
            last
        }
    }
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").field("url", &self.url).finish()
    }
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
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
        })
    }

    /// The error for a failed call: [`RegistryError::Timeout`] when the
    /// registry went silent, else what `otherwise` makes of it.
    fn failed<E: std::error::Error + 'static>(
        &self,
        what: impl FnOnce() -> String,
        e: E,
        otherwise: impl FnOnce(E) -> RegistryError,
    ) -> RegistryError {
        if timed_out(&e) {
            RegistryError::Timeout {
                url: self.url.clone(),
                what: what(),
                timeout: self.timeout,
            }
        } else {
            otherwise(e)
        }
    }

    /// Makes `call` until it succeeds, fails in a way retrying cannot help,
    /// or has failed transiently [`ATTEMPTS`] times, waiting twice as long
    /// before each next attempt. Every retry is logged (habd's log), with
    /// what failed and why.
    async fn retrying<T, E, Fut>(
        &self,
        what: &(dyn Fn() -> String + Sync),
        mut call: impl FnMut() -> Fut,
    ) -> Result<T, Failed<E>>
    where
        E: std::error::Error + 'static,
        Fut: std::future::Future<Output = Result<T, E>>,
    {
        let mut wait = FIRST_RETRY;
        let mut waited = std::time::Duration::ZERO;
        let mut attempt = 1;
        loop {
            let error = match call().await {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            let Some(why) = transient(&error) else {
                return Err(Failed {
                    error,
                    attempts: attempt,
                    waited,
                    exhausted: false,
                });
            };
            if attempt >= ATTEMPTS {
                return Err(Failed {
                    error,
                    attempts: attempt,
                    waited,
                    exhausted: true,
                });
            }
            tracing::warn!(
                registry = %self.url,
                attempt,
                attempts = ATTEMPTS,
                error = %error,
                "registry: {} failed ({why}); trying again in {:.1}s",
                what(),
                wait.as_secs_f64()
            );
            tokio::time::sleep(wait).await;
            waited += wait;
            wait *= 2;
            attempt += 1;
        }
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
        let digest = sha256(&body);
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

    async fn push_manifest(
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
        let digest = sha256(&body);
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
                .map(|m| (Some(sha256(&bytes)), m.digest.clone()))
                .ok_or_else(|| pull_err(format!("its index lists no {platform} image"))),
            Err(_) => Ok((None, sha256(&bytes))),
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

    /// Fetches a manifest or index by digest, raw.
    async fn fetch_manifest(
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
        rb.index_digest = sha256(&index_bytes);
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
        let got = sha256(&bytes);
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

/// An image index (OCI index or Docker manifest list) as read back from a
/// registry: the fields hab reads.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Index {
    /// One entry per image.
    pub manifests: Vec<IndexManifest>,
    /// The index's annotations (hab writes the build's provenance there).
    pub annotations: Option<BTreeMap<String, String>>,
}

/// One image of an index.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct IndexManifest {
    /// The image manifest's digest (`sha256:<hex>`).
    pub digest: String,
    /// Its size in bytes.
    pub size: i64,
    /// The platform it is for, when the index says.
    pub platform: Option<IndexPlatform>,
}

/// The platform of an index entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct IndexPlatform {
    /// `linux`.
    pub os: String,
    /// `amd64`, `arm64`.
    pub architecture: String,
}

impl Index {
    /// The entries for `platform` (`linux/arm64`): one, when the index is
    /// sound.
    pub fn entries_for(&self, platform: &str) -> Vec<&IndexManifest> {
        let (os, arch) = (plan::os(platform), plan::architecture(platform));
        self.manifests
            .iter()
            .filter(|m| {
                m.platform
                    .as_ref()
                    .is_some_and(|p| p.os == os && p.architecture == arch)
            })
            .collect()
    }
}

/// An image manifest as read back from a registry: its config and layers.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Manifest {
    /// The image config blob.
    pub config: Descriptor,
    /// The layer blobs, bottom first.
    pub layers: Vec<Descriptor>,
}

/// A blob a manifest names.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Descriptor {
    /// `sha256:<hex>`.
    pub digest: String,
    /// Size in bytes.
    pub size: i64,
}

/// Reads an image index (or Docker manifest list) read from a registry.
///
/// # Errors
/// The bytes are not JSON of an index.
pub fn parse_index(bytes: &[u8]) -> Result<Index, serde_json::Error> {
    serde_json::from_slice(bytes)
}

/// Reads an image manifest read from a registry.
///
/// # Errors
/// The bytes are not JSON of an image manifest.
pub fn parse_manifest(bytes: &[u8]) -> Result<Manifest, serde_json::Error> {
    serde_json::from_slice(bytes)
}

/// The platform an image config says it is for, as `os/architecture`.
///
/// # Errors
/// The bytes are not JSON of an image config with `os` and `architecture`.
pub fn parse_config_platform(bytes: &[u8]) -> Result<String, serde_json::Error> {
    #[derive(Deserialize)]
    struct ConfigPlatform {
        os: String,
        architecture: String,
    }
    let c: ConfigPlatform = serde_json::from_slice(bytes)?;
    Ok(format!("{}/{}", c.os, c.architecture))
}

struct Blob {
    digest: String,
    bytes: bytes::Bytes,
    media_type: &'static str,
}

/// An image as `docker save` wrote it.
struct SavedImage {
    config: Vec<u8>,
    config_digest: String,
    /// Uncompressed layer tars, bottom first.
    layers: Vec<Vec<u8>>,
}

fn read_saved(path: &Path) -> Result<SavedImage, RegistryError> {
    let err = |reason: String| RegistryError::Export {
        path: path.display().to_string(),
        reason,
    };
    let file = std::fs::File::open(path).map_err(|e| err(e.to_string()))?;
    let mut files: HashMap<String, Vec<u8>> = HashMap::new();
    let mut ar = tar::Archive::new(std::io::BufReader::new(file));
    for entry in ar.entries().map_err(|e| err(e.to_string()))? {
        let mut entry = entry.map_err(|e| err(e.to_string()))?;
        if entry.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let name = entry
            .path()
            .map_err(|e| err(e.to_string()))?
            .to_string_lossy()
            .into_owned();
        let mut data = Vec::with_capacity(entry.size() as usize);
        entry
            .read_to_end(&mut data)
            .map_err(|e| err(e.to_string()))?;
        files.insert(name, data);
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct SaveManifest {
        config: String,
        layers: Vec<String>,
    }
    let manifest: Vec<SaveManifest> = serde_json::from_slice(
        files
            .get("manifest.json")
            .ok_or_else(|| err("no manifest.json".into()))?,
    )
    .map_err(|e| err(format!("manifest.json: {e}")))?;
    let [m] = manifest.as_slice() else {
        return Err(err(format!(
            "holds {} images, expected one",
            manifest.len()
        )));
    };
    let config = files
        .remove(&m.config)
        .ok_or_else(|| err(format!("no {}", m.config)))?;
    let mut layers = Vec::new();
    for l in &m.layers {
        // The same layer may appear twice in an image; keep the bytes.
        let data = files
            .get(l)
            .cloned()
            .ok_or_else(|| err(format!("no {l}")))?;
        layers.push(data);
    }
    // Every layer must be the one the config names (its diff_id).
    #[derive(Deserialize)]
    struct Rootfs {
        diff_ids: Vec<String>,
    }
    #[derive(Deserialize)]
    struct Cfg {
        rootfs: Rootfs,
    }
    let cfg: Cfg = serde_json::from_slice(&config).map_err(|e| err(format!("config: {e}")))?;
    if cfg.rootfs.diff_ids.len() != layers.len() {
        return Err(err(format!(
            "config lists {} layers, the archive holds {}",
            cfg.rootfs.diff_ids.len(),
            layers.len()
        )));
    }
    for (i, (want, data)) in cfg.rootfs.diff_ids.iter().zip(&layers).enumerate() {
        if &sha256(data) != want {
            return Err(err(format!("layer {} is not {want}", i + 1)));
        }
    }
    Ok(SavedImage {
        config_digest: sha256(&config),
        config,
        layers,
    })
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
        digest: sha256(&bytes),
        bytes: bytes.into(),
        media_type: OCI_LAYER_GZIP,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_errors_and_lost_connections_are_worth_retrying_and_nothing_else() {
        use oci_client::errors::OciDistributionError as E;
        let server = |code| E::ServerError {
            code,
            url: "http://r/v2/x/blobs/uploads/".into(),
            message: String::new(),
        };
        assert_eq!(transient(&server(500)).as_deref(), Some("HTTP 500"));
        assert_eq!(transient(&server(503)).as_deref(), Some("HTTP 503"));
        assert_eq!(transient(&server(429)).as_deref(), Some("HTTP 429"));
        assert_eq!(transient(&server(404)), None);
        assert_eq!(transient(&server(400)), None);
        let io = |kind| std::io::Error::new(kind, "x");
        assert!(transient(&io(std::io::ErrorKind::ConnectionRefused)).is_some());
        assert!(transient(&io(std::io::ErrorKind::ConnectionReset)).is_some());
        // A stream's error wrapping the client's.
        assert!(transient(&std::io::Error::other(server(502))).is_some());
        // A timeout is the registry's `[registry] timeout` running out.
        assert_eq!(transient(&io(std::io::ErrorKind::TimedOut)), None);
        assert_eq!(transient(&E::UnauthorizedError { url: "u".into() }), None);
    }

    #[test]
    fn compression_is_deterministic() {
        let raw: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let a = compress(raw.clone());
        let b = compress(raw);
        assert_eq!(a.digest, b.digest);
        assert!(a.bytes.len() < 100_000);
    }
}
