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

use super::node::{NodeFile, NODE_FILES_DIR};
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
    /// hab will not do it, and says why.
    #[error("cannot {what}: {reason}")]
    Refused {
        /// What was being done.
        what: String,
        /// Why not.
        reason: String,
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
    /// Environment (`NETWORK`, `RPC_USER`): never a secret.
    pub env: Vec<String>,
    /// Files mounted read-only at [`NODE_FILES_DIR`] (mode 0400, owned by
    /// the image's user): its config with the RPC credentials, TLS material.
    pub files: Vec<NodeFile>,
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

/// The volume holding a node's files, mounted read-only at
/// [`NODE_FILES_DIR`]; made anew at every update.
pub fn files_volume_name(fleet: &str, ordinal: u32) -> String {
    format!("hab-{fleet}-{ordinal}-files")
}

/// The numeric user and group an image's `USER` names (`1000`,
/// `1000:1000`; none: root).
///
/// # Errors
/// A user by name: its number is in the image's /etc/passwd, which hab does
/// not read; the recipe should say `USER <uid>`.
pub fn numeric_user(user: Option<&str>) -> Result<(u64, u64), String> {
    let user = user.unwrap_or("").trim();
    if user.is_empty() {
        return Ok((0, 0));
    }
    let (u, g) = user.split_once(':').unwrap_or((user, ""));
    let uid: u64 = u.parse().map_err(|_| {
        format!(
            "the image runs as user {user:?}, not a number: hab gives a node its files \
             owned by its user, so the recipe must say USER <uid>[:<gid>]"
        )
    })?;
    let gid = if g.is_empty() {
        uid
    } else {
        g.parse()
            .map_err(|_| format!("the image's group {g:?} is not a number"))?
    };
    Ok((uid, gid))
}

/// A tar of `files`, each mode 0400 owned by `uid:gid`.
fn files_tar(files: &[NodeFile], uid: u64, gid: u64) -> std::io::Result<Vec<u8>> {
    let mut tar = tar::Builder::new(Vec::new());
    for f in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(f.contents.len() as u64);
        h.set_mode(0o400);
        h.set_uid(uid);
        h.set_gid(gid);
        h.set_mtime(0);
        h.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut h, &f.name, f.contents.as_slice())?;
    }
    tar.into_inner()
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
        let user = self
            .docker
            .inspect_image(&spec.image)
            .await
            .map_err(api(format!("inspect {}", spec.image)))?
            .config
            .and_then(|c| c.user);
        let (uid, gid) =
            numeric_user(user.as_deref()).map_err(|reason| DockerTargetError::Refused {
                what: format!("give {} its files", spec.image),
                reason,
            })?;
        self.remove(&spec.fleet, spec.ordinal).await?;
        let files = files_volume_name(&spec.fleet, spec.ordinal);
        self.fill_files(spec, &files, uid, gid).await?;

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
                binds: Some(vec![
                    format!("{}:/data", volume_name(&spec.fleet, spec.ordinal)),
                    format!("{files}:{NODE_FILES_DIR}:ro"),
                ]),
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

    /// Makes the volume `volume` hold exactly `spec.files`, mode 0400,
    /// owned by `uid:gid`: through a container of the node's image that is
    /// created with the volume, never started, and removed (the engine's
    /// archive API works on a remote engine too, and no file is left on
    /// habd's own disk).
    async fn fill_files(
        &self,
        spec: &NodeSpec,
        volume: &str,
        uid: u64,
        gid: u64,
    ) -> Result<(), DockerTargetError> {
        let filler = format!("{volume}-writer");
        let rm = || RemoveContainerOptionsBuilder::default().force(true).build();
        let _ = self.docker.remove_container(&filler, Some(rm())).await;
        match self
            .docker
            .remove_volume(
                volume,
                None::<bollard::query_parameters::RemoveVolumeOptions>,
            )
            .await
        {
            Ok(())
            | Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => {}
            Err(e) => return Err(api(format!("remove volume {volume}"))(e)),
        }
        self.docker
            .create_volume(bollard::models::VolumeCreateRequest {
                name: Some(volume.to_string()),
                labels: Some(HashMap::from([(
                    FLEET_LABEL.to_string(),
                    spec.fleet.clone(),
                )])),
                ..Default::default()
            })
            .await
            .map_err(api(format!("create volume {volume}")))?;
        let body = ContainerCreateBody {
            image: Some(spec.image.clone()),
            labels: Some(HashMap::from([(
                FLEET_LABEL.to_string(),
                spec.fleet.clone(),
            )])),
            host_config: Some(HostConfig {
                binds: Some(vec![format!("{volume}:{NODE_FILES_DIR}")]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let opts = CreateContainerOptionsBuilder::default()
            .name(&filler)
            .build();
        self.docker
            .create_container(Some(opts), body)
            .await
            .map_err(api(format!("create {filler}")))?;
        let tar = files_tar(&spec.files, uid, gid).map_err(|e| DockerTargetError::Refused {
            what: format!("pack the files of {}", spec.fleet),
            reason: e.to_string(),
        })?;
        let upload = self
            .docker
            .upload_to_container(
                &filler,
                Some(
                    bollard::query_parameters::UploadToContainerOptionsBuilder::new()
                        .path(NODE_FILES_DIR)
                        .build(),
                ),
                bollard::body_full(tar.into()),
            )
            .await
            .map_err(api(format!("write the files of {filler}")));
        let removed = self
            .docker
            .remove_container(&filler, Some(rm()))
            .await
            .map_err(api(format!("remove {filler}")));
        upload.and(removed)
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

    /// Removes a node's files (its volume of secrets), once its container
    /// is gone.
    ///
    /// # Errors
    /// A Docker call failed (a missing volume is fine).
    pub async fn remove_files(&self, fleet: &str, ordinal: u32) -> Result<(), DockerTargetError> {
        let volume = files_volume_name(fleet, ordinal);
        match self
            .docker
            .remove_volume(
                &volume,
                None::<bollard::query_parameters::RemoveVolumeOptions>,
            )
            .await
        {
            Ok(())
            | Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(()),
            Err(e) => Err(api(format!("remove volume {volume}"))(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_image_user_is_a_number() {
        assert_eq!(numeric_user(None), Ok((0, 0)));
        assert_eq!(numeric_user(Some("")), Ok((0, 0)));
        assert_eq!(numeric_user(Some("1000")), Ok((1000, 1000)));
        assert_eq!(numeric_user(Some("1000:50")), Ok((1000, 50)));
        let e = numeric_user(Some("node")).unwrap_err();
        assert!(e.contains("USER <uid>"), "{e}");
        assert!(numeric_user(Some("1000:staff")).is_err());
    }

    #[test]
    fn the_files_tar_says_0400_and_the_owner() {
        let files = [NodeFile {
            name: "btcd.conf".into(),
            contents: b"rpcpass=x\n".to_vec(),
        }];
        let bytes = files_tar(&files, 1000, 1000).unwrap();
        let mut archive = tar::Archive::new(bytes.as_slice());
        let entry = archive.entries().unwrap().next().unwrap().unwrap();
        let h = entry.header();
        assert_eq!(h.mode().unwrap(), 0o400);
        assert_eq!((h.uid().unwrap(), h.gid().unwrap()), (1000, 1000));
        assert_eq!(&*entry.path().unwrap(), std::path::Path::new("btcd.conf"));
    }
}
