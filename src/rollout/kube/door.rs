//! What the RPC front door run apart (`habd gateway`) knows of a fleet on
//! Kubernetes, and how habd tells it to drain a node: the fleet's pods,
//! through a watch on the API (so a pod's new address, its Terminating
//! state or a drain mark reaches every front door at once), and the
//! [`DRAIN_ANNOTATION`] habd sets on a pod before a rollout takes it down.

use std::collections::BTreeMap;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::{
    api::{Patch, PatchParams},
    runtime::{watcher, WatchStreamExt},
};
use serde_json::json;

use super::{objects::pod_ready, retry::retrying, KubeTarget, FIELD_MANAGER};
use crate::config::{FleetConfig, DRAIN_ANNOTATION};

/// A pod of a fleet, as a front door sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodNode {
    /// The pod's name (`<fleet>-<ordinal>`).
    pub name: String,
    /// Its RPC URL, once it has an IP: `http://<ip>:<port>/`, or over TLS
    /// `https://<pod>.<service>.<namespace>.svc:<port>/`, the name its
    /// certificate carries, reached at `resolve`.
    pub url: Option<String>,
    /// Over TLS: that name and the pod's address.
    pub resolve: Option<(String, std::net::SocketAddr)>,
    /// Why it may get no call now: terminating, drained for a rollout, or
    /// not Ready.
    pub hold: Option<String>,
}

fn pod_node(fleet: &FleetConfig, names: &PodNames, p: &Pod) -> PodNode {
    let name = p.metadata.name.clone().unwrap_or_default();
    let ip = p.status.as_ref().and_then(|s| s.pod_ip.clone());
    let addr = ip
        .as_deref()
        .and_then(|ip| ip.parse::<std::net::IpAddr>().ok())
        .map(|ip| std::net::SocketAddr::new(ip, fleet.rpc_port));
    let drain = p
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(DRAIN_ANNOTATION));
    let hold = if p.metadata.deletion_timestamp.is_some() {
        Some("terminating".to_string())
    } else if let Some(why) = drain {
        Some(format!("drained ({DRAIN_ANNOTATION}: {why})"))
    } else if !pod_ready(p) {
        Some("not Ready".to_string())
    } else {
        None
    };
    if fleet.rpc_tls {
        let host = format!("{name}.{}.{}.svc", names.service, names.namespace);
        return PodNode {
            url: addr.map(|_| format!("https://{host}:{}/", fleet.rpc_port)),
            resolve: addr.map(|a| (host, a)),
            name,
            hold,
        };
    }
    PodNode {
        name,
        url: ip.map(|ip| format!("http://{ip}:{}/", fleet.rpc_port)),
        resolve: None,
        hold,
    }
}

/// What a pod's TLS name is made of: the StatefulSet's governing Service
/// and the namespace.
struct PodNames {
    service: String,
    namespace: String,
}

impl KubeTarget {
    /// The label selector of the pods of StatefulSet `name` (its
    /// `spec.selector.matchLabels`), and its governing Service (`name`
    /// when it names none).
    ///
    /// # Errors
    /// The API cannot be asked, the set does not exist, or it selects by
    /// expressions (not supported here).
    async fn pod_selector(&self, name: &str) -> Result<(String, String), String> {
        let set = self
            .set(name)
            .await?
            .ok_or_else(|| format!("no StatefulSet {name} in namespace {}", self.namespace))?;
        let spec = set.spec.unwrap_or_default();
        let service = spec
            .service_name
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| name.to_string());
        let labels = spec
            .selector
            .match_labels
            .filter(|l| !l.is_empty())
            .ok_or_else(|| format!("StatefulSet {name} selects its pods by no label"))?;
        let selector = labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",");
        Ok((selector, service))
    }

    /// Watches the pods of `fleet` and calls `changed` with all of them,
    /// by name, each time one changes; returns only when `changed` says
    /// to stop (false). A failed watch is started again with backoff.
    ///
    /// # Errors
    /// The StatefulSet's selector cannot be read.
    pub async fn watch_nodes(
        &self,
        fleet: &FleetConfig,
        mut changed: impl FnMut(Vec<PodNode>) -> bool,
    ) -> Result<(), String> {
        let (selector, service) = self.pod_selector(&fleet.name).await?;
        let names = PodNames {
            service,
            namespace: self.namespace.clone(),
        };
        let mut stream = std::pin::pin!(watcher(
            self.pods(),
            watcher::Config::default().labels(&selector)
        )
        .default_backoff());
        let mut pods: BTreeMap<String, PodNode> = BTreeMap::new();
        let mut listing: Option<BTreeMap<String, PodNode>> = None;
        while let Some(event) = stream.next().await {
            match event {
                Ok(watcher::Event::Init) => listing = Some(BTreeMap::new()),
                Ok(watcher::Event::InitApply(p)) => {
                    let n = pod_node(fleet, &names, &p);
                    listing
                        .get_or_insert_with(BTreeMap::new)
                        .insert(n.name.clone(), n);
                }
                Ok(watcher::Event::InitDone) => pods = listing.take().unwrap_or_default(),
                Ok(watcher::Event::Apply(p)) => {
                    let n = pod_node(fleet, &names, &p);
                    pods.insert(n.name.clone(), n);
                }
                Ok(watcher::Event::Delete(p)) => {
                    pods.remove(p.metadata.name.as_deref().unwrap_or_default());
                }
                Err(e) => {
                    tracing::info!(fleet = %fleet.name, error = %e, "the pod watch failed; watching again");
                    continue;
                }
            }
            if listing.is_none() && !changed(pods.values().cloned().collect()) {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Marks pod `pod` for draining (`why`: who and when), or takes the
    /// mark off (None). A pod that no longer exists needs neither.
    ///
    /// # Errors
    /// The API refused the patch (after its retries).
    pub async fn mark_drain(&self, pod: &str, why: Option<&str>) -> Result<(), String> {
        let pods = self.pods();
        let patch = json!({"metadata": {"annotations": {DRAIN_ANNOTATION: why}}});
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.to_string()),
            ..PatchParams::default()
        };
        let patch = Patch::Merge(&patch);
        match retrying(&format!("annotate pod {pod}"), true, || {
            pods.patch(pod, &params, &patch)
        })
        .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.contains("404") || e.contains("not found") => Ok(()),
            Err(e) => Err(e),
        }
    }
}
