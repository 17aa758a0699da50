//! The Kubernetes rollout target: a fleet is a StatefulSet named after it in
//! the target's namespace, its nodes the pods `<fleet>-<ordinal>`, each with
//! its PersistentVolumeClaim (which hab never touches).
//!
//! Going forward, hab freezes the StatefulSet (`partition` = replicas), sets
//! the node container's image to `repository@sha256:…`, then walks the
//! partition down one ordinal at a time: the StatefulSet controller replaces
//! exactly the pod at the partition. Going back, the template is set back and
//! the partition kept at replicas, and each changed pod is deleted in turn:
//! the controller recreates it on the current (previous) revision. Deleting
//! is also what unsticks a pod that never became Ready on a bad revision —
//! the controller alone would wait for it forever (kubernetes/kubernetes#67250).
//! Every step is also recorded as a Kubernetes Event on the StatefulSet.

use std::time::{Duration, Instant};

use futures_util::{StreamExt, TryStreamExt};
use k8s_openapi::{
    api::{
        apps::v1::StatefulSet,
        core::v1::{Event, ObjectReference, Pod},
    },
    apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time},
};
use kube::{
    api::{Api, DeleteParams, Patch, PatchParams, PostParams, WatchParams},
    core::WatchEvent,
};
use serde_json::json;

use super::{plan::Direction, target::NodeStatus};
use crate::config::FleetConfig;

/// The field manager of hab's patches.
pub const FIELD_MANAGER: &str = "habd";
/// The container hab sets the image of: the one named so, else the first.
pub const NODE_CONTAINER: &str = "node";
/// Tries of a patch the API server answers with 409 Conflict.
const CONFLICT_RETRIES: u32 = 5;
/// How often a pod being replaced is looked at.
const LOOK_EVERY: Duration = Duration::from_millis(100);

/// A namespace of a Kubernetes cluster.
#[derive(Clone)]
pub struct KubeTarget {
    client: kube::Client,
    namespace: String,
}

impl std::fmt::Debug for KubeTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeTarget")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

fn container_index(sts: &StatefulSet) -> Option<(usize, String)> {
    let containers = &sts.spec.as_ref()?.template.spec.as_ref()?.containers;
    let i = containers
        .iter()
        .position(|c| c.name == NODE_CONTAINER)
        .unwrap_or(0);
    Some((i, containers.get(i)?.name.clone()))
}

fn template_image(sts: &StatefulSet) -> Option<String> {
    let (i, _) = container_index(sts)?;
    sts.spec.as_ref()?.template.spec.as_ref()?.containers[i]
        .image
        .clone()
}

fn pod_image(pod: &Pod) -> Option<String> {
    let containers = &pod.spec.as_ref()?.containers;
    let c = containers
        .iter()
        .find(|c| c.name == NODE_CONTAINER)
        .or_else(|| containers.first())?;
    c.image.clone()
}

fn pod_ready(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod.status.as_ref().is_some_and(|s| {
            s.phase.as_deref() == Some("Running")
                && s.conditions
                    .as_ref()
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
}

impl KubeTarget {
    /// Connects: to `endpoint` when given (a URL), else as kubectl would
    /// (in-cluster service account, or the kubeconfig).
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
        Ok(KubeTarget {
            client,
            namespace: namespace.to_string(),
        })
    }

    fn sets(&self) -> Api<StatefulSet> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// Pod `<fleet>-<ordinal>` as a node; None when the StatefulSet does
    /// not exist.
    ///
    /// # Errors
    /// The API server could not be asked, or the pod does not exist (it is
    /// being recreated): its image is then unknown.
    ///
    /// # Errors
    /// The API server could not be asked.
    pub async fn status(
        &self,
        fleet: &FleetConfig,
        ordinal: u32,
    ) -> Result<Option<NodeStatus>, String> {
        if self
            .sets()
            .get_opt(&fleet.name)
            .await
            .map_err(|e| e.to_string())?
            .is_none()
        {
            return Ok(None);
        }
        let pod = self
            .pods()
            .get_opt(&format!("{}-{ordinal}", fleet.name))
            .await
            .map_err(|e| e.to_string())?;
        match pod {
            // Between deletion and recreation a pod is a node out of
            // service whose image is not known: an error, so that no
            // decision is taken on it (the engine looks again).
            None => Err(format!(
                "pod {}-{ordinal} does not exist (being created?)",
                fleet.name
            )),
            Some(p) => Ok(Some(NodeStatus {
                image: pod_image(&p),
                running: pod_ready(&p),
                rpc_url: p
                    .status
                    .as_ref()
                    .and_then(|s| s.pod_ip.clone())
                    .map(|ip| format!("http://{ip}:{}/", fleet.rpc_port)),
            })),
        }
    }

    /// Patches the StatefulSet, retrying a 409 Conflict.
    async fn patch(
        &self,
        name: &str,
        pp: &PatchParams,
        patch: serde_json::Value,
        merge: bool,
    ) -> Result<StatefulSet, String> {
        let mut tries = 0;
        loop {
            tries += 1;
            let p = if merge {
                Patch::Merge(patch.clone())
            } else {
                Patch::Strategic(patch.clone())
            };
            match self.sets().patch(name, pp, &p).await {
                Ok(s) => return Ok(s),
                Err(kube::Error::Api(e)) if e.code == 409 && tries < CONFLICT_RETRIES => {
                    tracing::info!(statefulset = name, "409 Conflict on patch; retrying");
                    tokio::time::sleep(LOOK_EVERY).await;
                }
                Err(e) => return Err(format!("patch of statefulset {name}: {e}")),
            }
        }
    }

    async fn set_partition(&self, name: &str, partition: i32) -> Result<(), String> {
        self.patch(
            name,
            &PatchParams::default(),
            json!({"spec": {"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": partition}}}}),
            true,
        )
        .await
        .map(|_| ())
    }

    /// Moves node `ordinal` to `image`, and waits until its pod has been
    /// recreated on it (not until it is Ready: that is the gates' business).
    ///
    /// # Errors
    /// The API server refused, or the pod was not recreated within `wait`.
    pub async fn update(
        &self,
        fleet: &FleetConfig,
        ordinal: u32,
        image: &str,
        direction: Direction,
        wait: Duration,
    ) -> Result<(), String> {
        let name = &fleet.name;
        let sts = self
            .sets()
            .get(name)
            .await
            .map_err(|e| format!("statefulset {name}: {e}"))?;
        let replicas = sts.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        if template_image(&sts).as_deref() != Some(image) {
            // Freeze first, so the controller moves no pod on its own.
            self.set_partition(name, replicas).await?;
            let (_, container) = container_index(&sts)
                .ok_or_else(|| format!("statefulset {name} has no container"))?;
            // A strategic merge patch merges `containers` by name: only the
            // image changes (a JSON merge patch would replace the list).
            self.patch(
                name,
                &PatchParams::default(),
                json!({"spec": {"template": {"spec": {"containers": [{"name": container, "image": image}]}}}}),
                false,
            )
            .await?;
            self.event(fleet, "ImageSet", &format!("template image set to {image}"))
                .await;
        }
        let pod_name = format!("{name}-{ordinal}");
        let old_uid = self
            .pods()
            .get_opt(&pod_name)
            .await
            .map_err(|e| e.to_string())?
            .and_then(|p| p.metadata.uid);
        match direction {
            Direction::Forward => {
                self.set_partition(name, ordinal as i32).await?;
                self.event(
                    fleet,
                    "PartitionMoved",
                    &format!("partition {ordinal}: {pod_name} to {image}"),
                )
                .await;
            }
            Direction::Back => {
                // The pod, never its PersistentVolumeClaim.
                match self
                    .pods()
                    .delete(&pod_name, &DeleteParams::default())
                    .await
                {
                    Ok(_) => {}
                    Err(kube::Error::Api(e)) if e.code == 404 => {}
                    Err(e) => return Err(format!("delete pod {pod_name}: {e}")),
                }
                self.event(
                    fleet,
                    "PodDeleted",
                    &format!("{pod_name} deleted to come back on {image}"),
                )
                .await;
            }
        }
        let deadline = Instant::now() + wait;
        let done = |p: &Pod| {
            let recreated = old_uid.is_none() || p.metadata.uid != old_uid;
            // Going forward, a pod already on the image (a resumed rollout)
            // is done; going back, it must be a new pod.
            pod_image(p).as_deref() == Some(image)
                && p.metadata.deletion_timestamp.is_none()
                && (recreated || direction == Direction::Forward)
        };
        // The pod is followed by a watch: hab moves on as soon as the
        // controller has recreated it, with no polling interval to wait out.
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!(
                    "pod {pod_name} was not recreated on {image} within {wait:.0?}"
                ));
            }
            let wp = WatchParams::default()
                .fields(&format!("metadata.name={pod_name}"))
                .timeout(u32::try_from(left.as_secs().clamp(1, 290)).unwrap_or(290));
            let mut events = self
                .pods()
                .watch(&wp, "0")
                .await
                .map_err(|e| format!("watch pod {pod_name}: {e}"))?
                .boxed();
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                let next = match tokio::time::timeout(left, events.try_next()).await {
                    Ok(Ok(Some(ev))) => ev,
                    // The watch ended (its timeout) or failed: watch again.
                    Ok(Ok(None)) | Ok(Err(_)) => break,
                    Err(_) => break,
                };
                match next {
                    WatchEvent::Added(p) | WatchEvent::Modified(p) if done(&p) => {
                        return self.observed(name, deadline).await;
                    }
                    WatchEvent::Error(e) => {
                        tracing::debug!(pod = %pod_name, error = %e.message, "watch error; watching again");
                        break;
                    }
                    _ => {}
                }
            }
        }
    }

    /// Waits until the StatefulSet controller has observed the latest spec
    /// (`observedGeneration` ≥ `generation`), as `kubectl rollout status`
    /// requires before it trusts the status.
    async fn observed(&self, name: &str, deadline: Instant) -> Result<(), String> {
        loop {
            let sts = self.sets().get(name).await.map_err(|e| e.to_string())?;
            let generation = sts.metadata.generation.unwrap_or(0);
            let observed = sts
                .status
                .as_ref()
                .and_then(|s| s.observed_generation)
                .unwrap_or(0);
            if observed >= generation {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "statefulset {name}: the controller has not observed generation {generation}"
                ));
            }
            tokio::time::sleep(LOOK_EVERY).await;
        }
    }

    /// Records a Kubernetes Event on the fleet's StatefulSet (best effort).
    pub async fn event(&self, fleet: &FleetConfig, reason: &str, message: &str) {
        let now = k8s_openapi::jiff::Timestamp::now();
        let ev = Event {
            metadata: ObjectMeta {
                generate_name: Some(format!("{}-", fleet.name)),
                namespace: Some(self.namespace.clone()),
                ..Default::default()
            },
            involved_object: ObjectReference {
                api_version: Some("apps/v1".into()),
                kind: Some("StatefulSet".into()),
                name: Some(fleet.name.clone()),
                namespace: Some(self.namespace.clone()),
                ..Default::default()
            },
            reason: Some(reason.into()),
            message: Some(message.into()),
            type_: Some("Normal".into()),
            reporting_component: Some(FIELD_MANAGER.into()),
            first_timestamp: Some(Time(now)),
            last_timestamp: Some(Time(now)),
            event_time: Some(MicroTime(now)),
            count: Some(1),
            ..Default::default()
        };
        let events: Api<Event> = Api::namespaced(self.client.clone(), &self.namespace);
        if let Err(e) = events.create(&PostParams::default(), &ev).await {
            tracing::warn!(fleet = %fleet.name, error = %e, "cannot record a Kubernetes event");
        }
    }
}
