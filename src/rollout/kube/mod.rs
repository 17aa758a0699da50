//! The Kubernetes rollout target: a fleet is a StatefulSet named after it in
//! the target's namespace, its nodes the pods `<fleet>-<ordinal>`, each with
//! its PersistentVolumeClaim (which hab never touches).
//!
//! hab drives the StatefulSet controller by revisions, as the controller
//! itself decides (`stateful_set_control.go`): a pod is created on
//! `updateRevision` when its ordinal is at or above the partition, else on
//! `currentRevision`; and `currentRevision` moves to `updateRevision` once
//! every pod is updated and Ready. So, for one node, in either direction:
//!
//! 1. the set is frozen (`partition` = replicas) and its `node` container
//!    set to the image (by digest), unless it already is;
//! 2. hab waits until the controller has **observed** that spec
//!    (`observedGeneration`), so that `updateRevision` is the revision of
//!    the image, not a template its informer cache still holds;
//! 3. the partition is set to the node's ordinal; going forward the
//!    controller then replaces that pod itself; going back, or when the pod
//!    is not Ready, hab deletes it (never its PVC) once the controller has
//!    observed the partition: the controller recreates it on
//!    `updateRevision` (going back, that is the previous release even when
//!    `currentRevision` already names the bad one; and a pod stuck
//!    not-Ready is unstuck, kubernetes/kubernetes#67250);
//! 4. once the new pod exists on `updateRevision`, the set is frozen again,
//!    so nothing else changes a node behind hab's gates: not a later
//!    template change (an env var set by kubectl, a GitOps tool), nor the
//!    controller's own rolling update.
//!
//! Going forward, before touching a node, hab checks that the nodes it
//! already moved are still on `updateRevision`: if someone changed the
//! template since, moving the partition would make the controller replace
//! them again, so hab holds the rollout
//! ([`UpdateError::Hold`](super::node::UpdateError::Hold)) for an operator
//! to resume or undo.
//!
//! Every API call is retried with backoff on what is routine on a real
//! cluster (429, 5xx, a reset connection, a failed or closed watch) within
//! [`RETRY_BUDGET`]. Every step is also recorded as an events.k8s.io/v1
//! Event on the StatefulSet, through kube-runtime's recorder.
//!
//! `objects` reads a StatefulSet and its pods, `retry` retries the API
//! calls, `update` moves a node by revisions, and `events` records the
//! steps.

mod door;
mod events;
mod objects;
mod retry;
mod update;

use std::time::Duration;

use k8s_openapi::api::{apps::v1::StatefulSet, core::v1::Pod};
use kube::{
    api::Api,
    runtime::events::{Recorder, Reporter},
};

use super::node::NodeStatus;
use crate::config::FleetConfig;
use objects::{pod_image, pod_ready};
use retry::retrying;

pub use door::PodNode;
pub use events::EVENTS_FAILED;

/// The field manager of hab's patches (what `managedFields` shows).
pub const FIELD_MANAGER: &str = "habd";
/// The container hab sets the image of: the one named so, else the first.
pub const NODE_CONTAINER: &str = "node";
/// How long one API call is tried again on transient failures.
pub const RETRY_BUDGET: Duration = Duration::from_secs(30);

/// A namespace of a Kubernetes cluster.
#[derive(Clone)]
pub struct KubeTarget {
    client: kube::Client,
    namespace: String,
    recorder: Recorder,
}

impl std::fmt::Debug for KubeTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeTarget")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

impl KubeTarget {
    /// Connects: to `endpoint` when given (a URL), else as kubectl would
    /// (in-cluster service account, or the kubeconfig). Build one per
    /// target and keep it: it holds the connection pool.
    ///
    /// # Errors
    /// No usable configuration, in words.
    pub async fn connect(endpoint: Option<&str>, namespace: &str) -> Result<Self, String> {
        let config = match endpoint {
            Some(url) => kube::Config::new(
                url.parse()
                    .map_err(|e| format!("Kubernetes endpoint {url:?}: {e}"))?,
            ),
            None => kube::Config::infer()
                .await
                .map_err(|e| format!("no Kubernetes configuration: {e}"))?,
        };
        let client = kube::Client::try_from(config).map_err(|e| e.to_string())?;
        // The reporting instance: the pod's name in a cluster (the chart
        // sets POD_NAME), else the host's name.
        let mut reporter = Reporter::from(FIELD_MANAGER);
        if let Ok(pod) = std::env::var("POD_NAME") {
            reporter.instance = Some(pod);
        }
        let recorder = Recorder::new(client.clone(), reporter);
        Ok(KubeTarget {
            client,
            namespace: namespace.to_string(),
            recorder,
        })
    }

    fn sets(&self) -> Api<StatefulSet> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    async fn set(&self, name: &str) -> Result<Option<StatefulSet>, String> {
        let sets = self.sets();
        retrying(&format!("get statefulset {name}"), false, || {
            sets.get_opt(name)
        })
        .await
    }

    async fn pod(&self, name: &str) -> Result<Option<Pod>, String> {
        let pods = self.pods();
        retrying(&format!("get pod {name}"), false, || pods.get_opt(name)).await
    }

    /// Pod `<fleet>-<ordinal>` as a node; None when the StatefulSet does
    /// not exist.
    ///
    /// # Errors
    /// The API server could not be asked (after its retries), or the pod
    /// does not exist (it is being recreated): its image is then unknown.
    pub async fn status(
        &self,
        fleet: &FleetConfig,
        ordinal: u32,
    ) -> Result<Option<NodeStatus>, String> {
        let Some(set) = self.set(&fleet.name).await? else {
            return Ok(None);
        };
        let pod_name = format!("{}-{ordinal}", fleet.name);
        match self.pod(&pod_name).await? {
            // Between deletion and recreation a pod is a node out of
            // service whose image is not known: an error, so that no
            // decision is taken on it (the engine looks again).
            None => Err(format!(
                "pod {}-{ordinal} does not exist (being created?)",
                fleet.name
            )),
            Some(p) => {
                let ip = p.status.as_ref().and_then(|s| s.pod_ip.clone());
                let (rpc_url, rpc_resolve) = match ip {
                    None => (None, None),
                    Some(ip) if !fleet.rpc_tls => {
                        (Some(format!("http://{ip}:{}/", fleet.rpc_port)), None)
                    }
                    // Over TLS the pod is asked by its stable name under
                    // the StatefulSet's governing Service, which its
                    // certificate carries, reached at its IP.
                    Some(ip) => {
                        let service = set
                            .spec
                            .as_ref()
                            .map(|s| s.service_name.clone().unwrap_or_default())
                            .filter(|s| !s.is_empty())
                            .unwrap_or_else(|| fleet.name.clone());
                        let host = format!("{pod_name}.{service}.{}.svc", self.namespace);
                        let addr = ip
                            .parse::<std::net::IpAddr>()
                            .map(|ip| std::net::SocketAddr::new(ip, fleet.rpc_port))
                            .map_err(|e| format!("pod {pod_name} has IP {ip:?}: {e}"))?;
                        (
                            Some(format!("https://{host}:{}/", fleet.rpc_port)),
                            Some((host, addr)),
                        )
                    }
                };
                Ok(Some(NodeStatus {
                    image: pod_image(&p),
                    running: pod_ready(&p),
                    rpc_url,
                    rpc_resolve,
                }))
            }
        }
    }
}
