//! The Docker rollout target: a fleet's nodes are containers on one Docker
//! host, `hab-<fleet>-<ordinal>`, each with its own named volume
//! `hab-<fleet>-<ordinal>-data` at `/data` that survives every update. RPC is
//! published on 127.0.0.1 only. The image each runs is pinned by digest and
//! recorded in a label, which is what a restarted habd reads back.

use std::collections::HashMap;

use bollard::{
    auth::DockerCredentials,
    models::{ContainerCreateBody, HostConfig, PortBinding, RestartPolicy, RestartPolicyNameEnum},
    query_parameters::{
        CreateContainerOptionsBuilder, RemoveContainerOptionsBuilder, StopContainerOptionsBuilder,
    },
    Docker,
};

use crate::builder::engine::{connect_docker, pull_for_platform, ConnectError};

/// Label holding the fleet's name.
pub const FLEET_LABEL: &str = "io.hab.fleet";
/// Label holding the pinned image a node runs.
pub const IMAGE_LABEL: &str = "io.hab.image";

/// Seconds a node gets to stop cleanly (bitcoind flushes its chainstate).
const STOP_TIMEOUT_SECS: i32 = 120;

/// Docker target errors.
#[derive(Debug, thiserror::Error)]
pub enum DockerTargetError {
    /// The engine cannot be reached.
    #[error("docker target at {endpoint}: {source}")]
    Connect {
        /// Endpoint.
        endpoint: String,
        /// Why.
        source: ConnectError,
    },
    /// A Docker call failed.
    #[error("{what}: {source}")]
    Api {
        /// What was being done.
        what: String,
        /// bollard's error.
        source: bollard::errors::Error,
    },
}

/// What a node should run.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    /// Fleet.
    pub fleet: String,
    /// Ordinal, from 0.
    pub ordinal: u32,
    /// `host/repo@sha256:…`.
    pub image: String,
    /// Environment (`NETWORK`, `RPC_USER`, `RPC_PASSWORD`).
    pub env: Vec<String>,
    /// RPC port in the container.
    pub rpc_port: u16,
    /// Host port on 127.0.0.1; None: Docker picks one.
    pub host_port: Option<u16>,
}

/// What a node's container runs now (the target-neutral view is
/// [`super::target::NodeStatus`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerStatus {
    /// The pinned image, from its label.
    pub image: Option<String>,
    /// Running.
    pub running: bool,
    /// The RPC port published on 127.0.0.1.
    pub host_port: Option<u16>,
}

/// A Docker host that runs fleets.
#[derive(Debug, Clone)]
pub struct DockerTarget {
    docker: Docker,
}

/// The container of a node.
pub fn container_name(fleet: &str, ordinal: u32) -> String {
    format!("hab-{fleet}-{ordinal}")
}

/// The volume of a node.
pub fn volume_name(fleet: &str, ordinal: u32) -> String {
    format!("hab-{fleet}-{ordinal}-data")
}

fn api(what: impl Into<String>) -> impl FnOnce(bollard::errors::Error) -> DockerTargetError {
    let what = what.into();
    move |source| DockerTargetError::Api { what, source }
}

impl DockerTarget {
    /// Connects to the target's engine (`tls`: key, certificate and CA of
    /// a `tcp://` endpoint).
    ///
    /// # Errors
    /// Unreachable endpoint.
    pub async fn connect(
        endpoint: &str,
        tls: Option<(&std::path::Path, &std::path::Path, &std::path::Path)>,
    ) -> Result<Self, DockerTargetError> {
        let docker =
            connect_docker(endpoint, tls)
                .await
                .map_err(|source| DockerTargetError::Connect {
                    endpoint: endpoint.into(),
                    source,
                })?;
        Ok(DockerTarget { docker })
    }

    /// What a node runs now; None when it has no container.
    ///
    /// # Errors
    /// A Docker call failed.
    pub async fn status(
        &self,
        fleet: &str,
        ordinal: u32,
    ) -> Result<Option<ContainerStatus>, DockerTargetError> {
        let name = container_name(fleet, ordinal);
        let c = match self.docker.inspect_container(&name, None).await {
            Ok(c) => c,
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => return Ok(None),
            Err(e) => return Err(api(format!("inspect {name}"))(e)),
        };
        let image = c
            .config
            .as_ref()
            .and_then(|c| c.labels.as_ref())
            .and_then(|l| l.get(IMAGE_LABEL).cloned());
        let running = c.state.as_ref().and_then(|s| s.running).unwrap_or(false);
        let host_port = c
            .network_settings
            .as_ref()
            .and_then(|n| n.ports.as_ref())
            .and_then(|ports| {
                ports
                    .values()
                    .flatten()
                    .flatten()
                    .find_map(|b| b.host_port.as_deref()?.parse().ok())
            });
        Ok(Some(ContainerStatus {
            image,
            running,
            host_port,
        }))
    }

    /// Replaces a node's container with one running `spec.image`: pulls
    /// first (so the node is down only for the restart), stops the old
    /// container cleanly, and starts the new one on the same volume. The
    /// pull is for the host's own platform; a reference to the same digest
    /// that someone pulled for another platform does not block it (see
    /// [`pull_for_platform`]).
    ///
    /// # Errors
    /// The pull or a container call failed; the old container is stopped
    /// only after the pull succeeded.
    pub async fn replace(
        &self,
        spec: &NodeSpec,
        credentials: Option<DockerCredentials>,
    ) -> Result<(), DockerTargetError> {
        // For the host's own platform: a reference to the index that someone
        // pulled for another platform is stale here and must not block it.
        let platform = self.platform().await?;
        pull_for_platform(&self.docker, &spec.image, platform.as_deref(), credentials)
            .await
            .map_err(api(format!("pull {}", spec.image)))?;
        self.remove(&spec.fleet, spec.ordinal).await?;

        let name = container_name(&spec.fleet, spec.ordinal);
        let port = format!("{}/tcp", spec.rpc_port);
        let binding = PortBinding {
            host_ip: Some("127.0.0.1".into()),
            host_port: Some(spec.host_port.map(|p| p.to_string()).unwrap_or_default()),
        };
        let body = ContainerCreateBody {
            image: Some(spec.image.clone()),
            env: Some(spec.env.clone()),
            labels: Some(HashMap::from([
                (FLEET_LABEL.to_string(), spec.fleet.clone()),
                (IMAGE_LABEL.to_string(), spec.image.clone()),
                ("io.hab.ordinal".to_string(), spec.ordinal.to_string()),
            ])),
            exposed_ports: Some(vec![port.clone()]),
            stop_timeout: Some(i64::from(STOP_TIMEOUT_SECS)),
            host_config: Some(HostConfig {
                binds: Some(vec![format!(
                    "{}:/data",
                    volume_name(&spec.fleet, spec.ordinal)
                )]),
                port_bindings: Some(HashMap::from([(port, Some(vec![binding]))])),
                restart_policy: Some(RestartPolicy {
                    name: Some(RestartPolicyNameEnum::UNLESS_STOPPED),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let opts = CreateContainerOptionsBuilder::default().name(&name).build();
        self.docker
            .create_container(Some(opts), body)
            .await
            .map_err(api(format!("create {name}")))?;
        self.docker
            .start_container(&name, None)
            .await
            .map_err(api(format!("start {name}")))?;
        Ok(())
    }

    /// The engine's own platform (`linux/amd64`), None when it does not say.
    async fn platform(&self) -> Result<Option<String>, DockerTargetError> {
        let v = self
            .docker
            .version()
            .await
            .map_err(api("ask the engine its platform"))?;
        Ok(match (v.os, v.arch) {
            (Some(os), Some(arch)) if !os.is_empty() && !arch.is_empty() => {
                Some(format!("{os}/{arch}"))
            }
            _ => None,
        })
    }

    /// Stops and removes a node's container; its volume stays.
    ///
    /// # Errors
    /// A Docker call failed (a missing container is fine).
    pub async fn remove(&self, fleet: &str, ordinal: u32) -> Result<(), DockerTargetError> {
        let name = container_name(fleet, ordinal);
        let stop = StopContainerOptionsBuilder::default()
            .t(STOP_TIMEOUT_SECS)
            .build();
        match self.docker.stop_container(&name, Some(stop)).await {
            Ok(())
            | Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 304 | 404,
                ..
            }) => {}
            Err(e) => return Err(api(format!("stop {name}"))(e)),
        }
        let rm = RemoveContainerOptionsBuilder::default().force(true).build();
        match self.docker.remove_container(&name, Some(rm)).await {
            Ok(())
            | Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(()),
            Err(e) => Err(api(format!("remove {name}"))(e)),
        }
    }
}
