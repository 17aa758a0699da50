//! The rollout targets behind one face: what a node runs and where its RPC
//! answers, moving a node to an image, removing one, and recording a step
//! where the target's own tools show it.

use super::{docker::DockerTarget, kube::KubeTarget, plan::Direction};
use crate::config::FleetConfig;

pub use super::node::{NodeEnv, NodeStatus, UpdateError};

/// A rollout target.
#[derive(Debug, Clone)]
pub enum Target {
    /// Containers on one Docker host.
    Docker(DockerTarget),
    /// A StatefulSet per fleet in a Kubernetes namespace.
    Kubernetes(KubeTarget),
}

impl Target {
    /// What node `ordinal` of `fleet` runs; None when it does not exist.
    ///
    /// # Errors
    /// The target could not be asked.
    pub async fn status(
        &self,
        fleet: &FleetConfig,
        ordinal: u32,
    ) -> Result<Option<NodeStatus>, String> {
        match self {
            Target::Docker(d) => Ok(d
                .status(&fleet.name, ordinal)
                .await
                .map_err(|e| e.to_string())?
                .map(|s| NodeStatus {
                    image: s.image,
                    running: s.running,
                    rpc_url: s.host_port.map(|p| {
                        let scheme = if fleet.rpc_tls { "https" } else { "http" };
                        format!("{scheme}://127.0.0.1:{p}/")
                    }),
                    rpc_resolve: None,
                })),
            Target::Kubernetes(k) => k.status(fleet, ordinal).await,
        }
    }

    /// Moves node `ordinal` to `image` (the rollout's target going forward,
    /// what it ran before going back). `accept_drift`: an operator resumed
    /// a rollout held because the target changed under it.
    ///
    /// # Errors
    /// The target refused, in words, or holds the rollout.
    pub async fn update(
        &self,
        fleet: &FleetConfig,
        ordinal: u32,
        image: &str,
        direction: Direction,
        env: NodeEnv,
        accept_drift: bool,
    ) -> Result<(), UpdateError> {
        match self {
            Target::Docker(d) => {
                let spec = super::docker::NodeSpec {
                    fleet: fleet.name.clone(),
                    ordinal,
                    image: image.to_string(),
                    env: env.env,
                    files: env.files,
                    rpc_port: fleet.rpc_port,
                    host_port: fleet
                        .host_port_base
                        .and_then(|b| b.checked_add(u16::try_from(ordinal).ok()?)),
                };
                d.replace(&spec, env.credentials)
                    .await
                    .map_err(|e| UpdateError::Failed(e.to_string()))
            }
            // The StatefulSet carries the node's environment (the chart).
            Target::Kubernetes(k) => {
                k.update(
                    fleet,
                    ordinal,
                    image,
                    direction,
                    fleet.gates.ready_timeout,
                    accept_drift,
                )
                .await
            }
        }
    }

    /// Removes node `ordinal` (rolling back a node that did not exist).
    ///
    /// # Errors
    /// The target refused, in words.
    pub async fn remove(&self, fleet: &FleetConfig, ordinal: u32) -> Result<(), String> {
        match self {
            Target::Docker(d) => {
                d.remove(&fleet.name, ordinal)
                    .await
                    .map_err(|e| e.to_string())?;
                d.remove_files(&fleet.name, ordinal)
                    .await
                    .map_err(|e| e.to_string())
            }
            Target::Kubernetes(_) => Err(format!(
                "node {ordinal} of {} is a pod of a StatefulSet: hab does not remove it",
                fleet.name
            )),
        }
    }

    /// Records a step where the target's own tools show it (Kubernetes
    /// Events on the StatefulSet); nothing on Docker.
    pub async fn record(&self, fleet: &FleetConfig, reason: &str, message: &str) {
        if let Target::Kubernetes(k) = self {
            k.event(fleet, reason, message).await;
        }
    }
}
