//! A builder: one Docker Engine, reached with bollard. Builds one platform
//! at a time with BuildKit, exports the image it made, and runs images once
//! for the smoke check.

use std::{collections::HashMap, path::Path};

use bollard::{
    auth::DockerCredentials,
    models::{BuildInfoAux, ContainerCreateBody, HostConfig},
    query_parameters::{
        BuildImageOptionsBuilder, BuilderVersion, CreateContainerOptionsBuilder,
        CreateImageOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder,
        RemoveImageOptionsBuilder,
    },
    Docker, API_DEFAULT_VERSION,
};
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;

use crate::config::BuilderConfig;

/// Requests to a builder may stream for hours (a Bitcoin Core build under
/// emulation); bollard's timeout covers a whole request, so it is sized to
/// the longest build we expect, not to a round trip.
const REQUEST_TIMEOUT_SECS: u64 = 6 * 3600;

/// Builder errors.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The endpoint could not be reached or spoke no Docker API.
    #[error("builder {builder} at {endpoint}: {source}")]
    Connect {
        /// Builder name.
        builder: String,
        /// Its endpoint.
        endpoint: String,
        /// Why.
        source: ConnectError,
    },
    /// The build failed; the step's output is in the build log.
    #[error("{0}")]
    BuildFailed(String),
    /// A Docker API call failed.
    #[error("builder {builder}: {what}: {source}")]
    Api {
        /// Builder name.
        builder: String,
        /// What was being done.
        what: String,
        /// bollard's error.
        source: bollard::errors::Error,
    },
    /// Writing the exported image failed.
    #[error("cannot write the exported image to {path}: {source}")]
    Export {
        /// Destination.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// One platform build.
#[derive(Debug, Clone)]
pub struct BuildRequest<'a> {
    /// The context archive.
    pub context: Vec<u8>,
    /// `linux/amd64`.
    pub platform: &'a str,
    /// Build arguments.
    pub args: &'a std::collections::BTreeMap<String, String>,
    /// Local tag for the result (`hab-build/<pipeline>:<id>-<arch>-<instance>-<n>`,
    /// see [`super::local_tag`]).
    pub tag: &'a str,
    /// Credentials for the registry a base image comes from.
    pub registry_auth: Option<(String, DockerCredentials)>,
}

/// What a smoke run produced.
#[derive(Debug, Clone)]
pub struct SmokeOutcome {
    /// The command's exit code.
    pub exit_code: i64,
    /// Its output (stdout and stderr, interleaved), trimmed to 4 KiB.
    pub output: String,
}

/// A connected Docker Engine.
#[derive(Debug, Clone)]
pub struct Engine {
    docker: Docker,
    name: String,
}

impl Engine {
    /// Connects to a builder and agrees on an API version with it (Debian's
    /// dockerd 20.10 speaks 1.41; bollard defaults to a newer one).
    ///
    /// # Errors
    /// The endpoint is unreachable or is not a Docker Engine.
    pub async fn connect(b: &BuilderConfig) -> Result<Self, EngineError> {
        let tls = match (&b.tls_key, &b.tls_cert, &b.tls_ca) {
            (Some(key), Some(cert), Some(ca)) => {
                Some((key.as_path(), cert.as_path(), ca.as_path()))
            }
            _ => None,
        };
        let docker =
            connect_docker(&b.endpoint, tls)
                .await
                .map_err(|source| EngineError::Connect {
                    builder: b.name.clone(),
                    endpoint: b.endpoint.clone(),
                    source,
                })?;
        Ok(Engine {
            docker,
            name: b.name.clone(),
        })
    }

    fn api_err(
        &self,
        what: impl Into<String>,
    ) -> impl FnOnce(bollard::errors::Error) -> EngineError {
        let builder = self.name.clone();
        let what = what.into();
        move |source| EngineError::Api {
            builder,
            what,
            source,
        }
    }

    /// Builds one platform with BuildKit, streaming the output to `log` as
    /// it comes. Dropping the future cancels the build: the engine stops it
    /// when the request's connection closes.
    ///
    /// # Errors
    /// [`EngineError::BuildFailed`] with the failing step and its error;
    /// its output has gone to `log`.
    pub async fn build(
        &self,
        req: BuildRequest<'_>,
        log: &mut (dyn FnMut(Vec<String>) + Send),
    ) -> Result<String, EngineError> {
        let args: HashMap<String, String> = req
            .args
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        // One session per build: concurrent builds must not share one.
        let session = format!(
            "hab-{}-{}",
            std::process::id(),
            SESSION_SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let options = BuildImageOptionsBuilder::default()
            .dockerfile("Dockerfile")
            .t(req.tag)
            .platform(req.platform)
            .buildargs(&args)
            .rm(true)
            .forcerm(true)
            .version(BuilderVersion::BuilderBuildKit)
            .session(&session)
            .build();
        let creds = req
            .registry_auth
            .map(|(host, c)| HashMap::from([(host, c)]));
        let mut stream =
            self.docker
                .build_image(options, creds, Some(bollard::body_full(req.context.into())));
        let mut progress = Progress::default();
        let mut image_id = None;
        while let Some(item) = stream.next().await {
            match item {
                Ok(info) => {
                    if let Some(s) = info.stream {
                        log(s.lines().map(str::to_string).collect());
                    }
                    match info.aux {
                        Some(BuildInfoAux::BuildKit(status)) => log(progress.render(&status)),
                        Some(BuildInfoAux::Default(id)) => image_id = id.id,
                        None => {}
                    }
                }
                Err(bollard::errors::Error::DockerStreamError { error }) => {
                    let step = progress.failed_step();
                    log(vec![format!("ERROR: {error}")]);
                    return Err(EngineError::BuildFailed(match step {
                        Some(step) => format!("build step {step} failed: {error}"),
                        None => format!("build failed: {error}"),
                    }));
                }
                Err(e) => return Err(self.api_err("build")(e)),
            }
        }
        match image_id {
            Some(id) => Ok(id),
            // Some engines leave out the id; the tag names the result.
            None => {
                let inspect = self
                    .docker
                    .inspect_image(req.tag)
                    .await
                    .map_err(self.api_err(format!("inspect {}", req.tag)))?;
                inspect
                    .id
                    .ok_or_else(|| EngineError::BuildFailed("the engine named no image".into()))
            }
        }
    }

    /// Writes `docker save` of an image to `dest`; returns its size.
    ///
    /// # Errors
    /// The image is missing or the file cannot be written.
    pub async fn export(&self, image: &str, dest: &Path) -> Result<u64, EngineError> {
        let export_err = |source| EngineError::Export {
            path: dest.to_path_buf(),
            source,
        };
        let mut file = tokio::fs::File::create(dest).await.map_err(export_err)?;
        let mut stream = self.docker.export_image(image);
        let mut size = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(self.api_err(format!("export {image}")))?;
            size += chunk.len() as u64;
            file.write_all(&chunk).await.map_err(export_err)?;
        }
        file.flush().await.map_err(export_err)?;
        Ok(size)
    }

    /// Removes a local image (a build's tag, once pushed). Missing is fine.
    /// Returns true when there was one to remove.
    pub async fn remove_image(&self, image: &str) -> bool {
        let opts = RemoveImageOptionsBuilder::default().force(true).build();
        match self.docker.remove_image(image, Some(opts), None).await {
            Ok(_) => true,
            Err(e) => {
                tracing::debug!(image, error = %e, "could not remove a local image");
                false
            }
        }
    }

    /// The builder's name (as configured).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Every local tag on the engine that starts with `prefix`
    /// (`hab-build/`).
    ///
    /// # Errors
    /// The engine cannot list its images.
    pub async fn local_tags(&self, prefix: &str) -> Result<Vec<String>, EngineError> {
        let images = self
            .docker
            .list_images(None::<bollard::query_parameters::ListImagesOptions>)
            .await
            .map_err(self.api_err("list images"))?;
        let mut tags: Vec<String> = images
            .into_iter()
            .flat_map(|i| i.repo_tags)
            .filter(|t| t.starts_with(prefix))
            .collect();
        tags.sort_unstable();
        tags.dedup();
        Ok(tags)
    }

    /// Pulls `reference` for `platform` from the registry and runs `command`
    /// in it once, without network. The container and the pulled image are
    /// removed afterwards.
    ///
    /// # Errors
    /// The pull or a container call failed (a non-zero exit is an outcome,
    /// not an error).
    pub async fn smoke(
        &self,
        reference: &str,
        platform: &str,
        command: &[String],
        credentials: Option<DockerCredentials>,
    ) -> Result<SmokeOutcome, EngineError> {
        pull_for_platform(&self.docker, reference, Some(platform), credentials)
            .await
            .map_err(self.api_err(format!("pull {reference}")))?;
        let outcome = self.run_once(reference, platform, command).await;
        self.remove_image(reference).await;
        outcome
    }

    async fn run_once(
        &self,
        image: &str,
        platform: &str,
        command: &[String],
    ) -> Result<SmokeOutcome, EngineError> {
        let body = ContainerCreateBody {
            image: Some(image.to_string()),
            entrypoint: command.first().map(|c| vec![c.clone()]),
            cmd: Some(command.iter().skip(1).cloned().collect()),
            network_disabled: Some(true),
            host_config: Some(HostConfig {
                network_mode: Some("none".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let opts = CreateContainerOptionsBuilder::default()
            .platform(platform)
            .build();
        let created = self
            .docker
            .create_container(Some(opts), body)
            .await
            .map_err(self.api_err(format!("create a container of {image}")))?;
        let id = created.id;
        let result = async {
            self.docker
                .start_container(&id, None)
                .await
                .map_err(self.api_err(format!("start a container of {image}")))?;
            let mut exit_code = 0;
            let mut wait = self.docker.wait_container(&id, None);
            while let Some(w) = wait.next().await {
                match w {
                    Ok(r) => exit_code = r.status_code,
                    Err(bollard::errors::Error::DockerContainerWaitError { code, .. }) => {
                        exit_code = code
                    }
                    Err(e) => return Err(self.api_err("wait for the smoke command")(e)),
                }
            }
            let mut output = String::new();
            let logs = LogsOptionsBuilder::default()
                .stdout(true)
                .stderr(true)
                .build();
            let mut l = self.docker.logs(&id, Some(logs));
            while let Some(Ok(chunk)) = l.next().await {
                output.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
            }
            if output.len() > 4096 {
                let mut cut = 4096;
                while !output.is_char_boundary(cut) {
                    cut -= 1;
                }
                output.truncate(cut);
            }
            Ok(SmokeOutcome { exit_code, output })
        }
        .await;
        let rm = RemoveContainerOptionsBuilder::default().force(true).build();
        let _ = self.docker.remove_container(&id, Some(rm)).await;
        result
    }
}

/// True when dockerd refused a pull because the digest reference already
/// names another image ("Cannot overwrite digest").
fn is_digest_conflict(e: &bollard::errors::Error) -> bool {
    let message = match e {
        bollard::errors::Error::DockerStreamError { error } => error,
        bollard::errors::Error::DockerResponseServerError { message, .. } => message,
        _ => return false,
    };
    message.contains("Cannot overwrite digest")
}

async fn pull_once(
    docker: &Docker,
    reference: &str,
    platform: Option<&str>,
    credentials: Option<DockerCredentials>,
) -> Result<(), bollard::errors::Error> {
    let mut pull = CreateImageOptionsBuilder::default().from_image(reference);
    if let Some(p) = platform {
        pull = pull.platform(p);
    }
    let mut s = docker.create_image(Some(pull.build()), None, credentials);
    while let Some(item) = s.next().await {
        item?;
    }
    Ok(())
}

/// Pulls `reference` (`host/repo@sha256:…`) for `platform` (`linux/amd64`;
/// None: the engine's own, and no stale reference is recognised).
///
/// Debian's dockerd 20.10 keeps one image per digest reference: once anyone
/// on the host pulled an index digest for another platform, a pull of the
/// same digest for this one is refused ("Cannot overwrite digest"). When the
/// reference names an image of another platform, it is stale for this pull:
/// it is removed (only the reference: an image a container uses stays) and
/// the pull is tried once more. Returns the stale reference's platform when
/// one was removed.
///
/// # Errors
/// bollard's error: of the pull (the second one after a removal), or of the
/// removal of the stale reference.
pub async fn pull_for_platform(
    docker: &Docker,
    reference: &str,
    platform: Option<&str>,
    credentials: Option<DockerCredentials>,
) -> Result<Option<String>, bollard::errors::Error> {
    let refused = match pull_once(docker, reference, platform, credentials.clone()).await {
        Ok(()) => return Ok(None),
        Err(e) if is_digest_conflict(&e) => e,
        Err(e) => return Err(e),
    };
    let Some(platform) = platform else {
        return Err(refused);
    };
    let Ok(local) = docker.inspect_image(reference).await else {
        return Err(refused);
    };
    let (os, arch) = (
        local.os.unwrap_or_default(),
        local.architecture.unwrap_or_default(),
    );
    if os == super::plan::os(platform) && arch == super::plan::architecture(platform) {
        // Not another platform's image: nothing hab should touch.
        return Err(refused);
    }
    let stale = format!("{os}/{arch}");
    let rm = RemoveImageOptionsBuilder::default()
        .force(true)
        .noprune(true)
        .build();
    docker.remove_image(reference, Some(rm), None).await?;
    tracing::warn!(
        reference,
        stale = %stale,
        platform,
        "removed a stale digest reference (pulled for another platform) that blocked the pull"
    );
    pull_once(docker, reference, Some(platform), credentials).await?;
    Ok(Some(stale))
}

/// Why a Docker Engine could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The endpoint scheme is not one hab speaks.
    #[error("endpoint {0:?} is neither unix:// nor tcp://")]
    Scheme(String),
    /// A `tcp://` endpoint without TLS material: hab never speaks to an
    /// engine API in the clear.
    #[error(
        "endpoint {0:?} is an engine API over the network: hab speaks to it only with \
         mutual TLS (tls_ca, tls_cert, tls_key)"
    )]
    Plaintext(String),
    /// bollard's error (no socket, refused, not a Docker API).
    #[error("{0} (is dockerd running? scripts/setup.sh starts it)")]
    Api(#[from] bollard::errors::Error),
}

/// Connects to a Docker Engine (`unix:///var/run/docker.sock`, or
/// `tcp://host:2376` with mutual TLS material as (key, cert, ca); never
/// plain tcp),
/// agrees on an API version with it (Debian's dockerd 20.10 speaks 1.41;
/// bollard defaults to a newer one) and pings it.
///
/// # Errors
/// [`ConnectError`].
pub async fn connect_docker(
    endpoint: &str,
    tls: Option<(&Path, &Path, &Path)>,
) -> Result<Docker, ConnectError> {
    let docker = if let Some(path) = endpoint.strip_prefix("unix://") {
        Docker::connect_with_socket(path, REQUEST_TIMEOUT_SECS, API_DEFAULT_VERSION)
    } else if endpoint.starts_with("tcp://") {
        match tls {
            Some((key, cert, ca)) => Docker::connect_with_ssl(
                endpoint,
                key,
                cert,
                ca,
                REQUEST_TIMEOUT_SECS,
                API_DEFAULT_VERSION,
            ),
            None => return Err(ConnectError::Plaintext(endpoint.into())),
        }
    } else {
        return Err(ConnectError::Scheme(endpoint.into()));
    }?;
    let docker = docker.negotiate_version().await?;
    docker.ping().await?;
    Ok(docker)
}

static SESSION_SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Turns BuildKit's status messages into log lines, numbered as `docker
/// build` numbers its steps.
#[derive(Debug, Default)]
struct Progress {
    steps: HashMap<String, Step>,
    failed: Option<String>,
}

#[derive(Debug)]
struct Step {
    number: usize,
    name: String,
    started: bool,
    done: bool,
}

impl Progress {
    fn render(&mut self, status: &bollard::moby::buildkit::v1::StatusResponse) -> Vec<String> {
        let mut lines = Vec::new();
        for v in &status.vertexes {
            let next = self.steps.len() + 1;
            let step = self.steps.entry(v.digest.clone()).or_insert(Step {
                number: next,
                name: v.name.clone(),
                started: false,
                done: false,
            });
            if v.started.is_some() && !step.started {
                step.started = true;
                lines.push(format!("#{} {}", step.number, step.name));
            }
            if !v.error.is_empty() {
                lines.push(format!("#{} ERROR: {}", step.number, v.error));
                self.failed = Some(format!("#{} {}", step.number, step.name));
            } else if v.completed.is_some() && !step.done {
                step.done = true;
                lines.push(format!(
                    "#{} {}",
                    step.number,
                    if v.cached { "CACHED" } else { "DONE" }
                ));
            }
        }
        for l in &status.logs {
            let number = self.steps.get(&l.vertex).map_or(0, |s| s.number);
            for line in String::from_utf8_lossy(&l.msg).lines() {
                lines.push(format!("#{number} {line}"));
            }
        }
        lines
    }

    fn failed_step(&self) -> Option<String> {
        self.failed.clone()
    }
}
