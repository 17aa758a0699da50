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
//! them again, so hab holds the rollout ([`UpdateError::Hold`]) for an
//! operator to resume or undo.
//!
//! Every API call is retried with backoff on what is routine on a real
//! cluster (429, 5xx, a reset connection, a failed or closed watch) within
//! [`RETRY_BUDGET`]. Every step is also recorded as an events.k8s.io/v1
//! Event on the StatefulSet, through kube-runtime's recorder.

use std::{
    future::Future,
    sync::LazyLock,
    time::{Duration, Instant},
};

use futures_util::{StreamExt, TryStreamExt};
use k8s_openapi::api::{
    apps::v1::StatefulSet,
    core::v1::{ObjectReference, Pod},
};
use kube::{
    api::{Api, DeleteParams, Patch, PatchParams, WatchParams},
    core::WatchEvent,
    runtime::events::{Event, EventType, Recorder, Reporter},
};
use prometheus_client::metrics::counter::Counter;
use serde_json::json;

use super::{
    node::{NodeStatus, UpdateError},
    plan::Direction,
};
use crate::config::FleetConfig;

/// The field manager of hab's patches (what `managedFields` shows).
pub const FIELD_MANAGER: &str = "habd";
/// The container hab sets the image of: the one named so, else the first.
pub const NODE_CONTAINER: &str = "node";
/// How long one API call is tried again on transient failures.
pub const RETRY_BUDGET: Duration = Duration::from_secs(30);
/// How often a pod being replaced is looked at (besides its watch).
const LOOK_EVERY: Duration = Duration::from_millis(250);
/// The longest single watch of a pod being replaced.
const WATCH_AT_MOST: Duration = Duration::from_secs(5);
/// The grace period Kubernetes gives a pod that names none.
const DEFAULT_GRACE: u64 = 30;

/// Kubernetes Events the API refused (counted in habd's metrics as
/// `hab_kubernetes_events_failed`).
pub static EVENTS_FAILED: LazyLock<Counter> = LazyLock::new(Counter::default);

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

fn replicas(sts: &StatefulSet) -> i32 {
    sts.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

fn partition(sts: &StatefulSet) -> Option<i32> {
    sts.spec
        .as_ref()?
        .update_strategy
        .as_ref()?
        .rolling_update
        .as_ref()?
        .partition
}

fn observed(sts: &StatefulSet) -> bool {
    let generation = sts.metadata.generation.unwrap_or(0);
    let seen = sts
        .status
        .as_ref()
        .and_then(|s| s.observed_generation)
        .unwrap_or(0);
    seen >= generation
}

fn update_revision(sts: &StatefulSet) -> Option<String> {
    sts.status.as_ref()?.update_revision.clone()
}

fn pod_revision(pod: &Pod) -> Option<&str> {
    pod.metadata
        .labels
        .as_ref()?
        .get("controller-revision-hash")
        .map(String::as_str)
}

fn terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

/// The node container's image as the pod's spec names it.
fn spec_image(pod: &Pod) -> Option<String> {
    let containers = &pod.spec.as_ref()?.containers;
    let c = containers
        .iter()
        .find(|c| c.name == NODE_CONTAINER)
        .or_else(|| containers.first())?;
    c.image.clone()
}

/// `repo` of `repo:tag`, `repo@sha256:…` or `repo`.
fn repository(image: &str) -> &str {
    let image = image.split('@').next().unwrap_or(image);
    match image.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => repo,
        _ => image,
    }
}

/// What the node runs, pinned: the spec's image when it names a digest;
/// for a tag, the digest the kubelet pulled (`imageID`), since the tag may
/// have moved since (hab moves channel tags). Only when the pod never
/// pulled an image is the tag all that is known.
fn pod_image(pod: &Pod) -> Option<String> {
    let spec = spec_image(pod)?;
    if spec.contains("@sha256:") {
        return Some(spec);
    }
    let pulled = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|cs| {
            cs.iter()
                .find(|c| c.name == NODE_CONTAINER)
                .or_else(|| cs.first())
        })
        .map(|c| c.image_id.as_str())
        .and_then(|id| id.rsplit_once("@sha256:").map(|(_, hex)| hex))
        .filter(|hex| hex.len() == 64);
    Some(match pulled {
        Some(hex) => format!("{}@sha256:{hex}", repository(&spec)),
        None => spec,
    })
}

fn pod_ready(pod: &Pod) -> bool {
    !terminating(pod)
        && pod.status.as_ref().is_some_and(|s| {
            s.phase.as_deref() == Some("Running")
                && s.conditions
                    .as_ref()
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
}

fn grace(pod: &Pod) -> u64 {
    pod.metadata
        .deletion_grace_period_seconds
        .or_else(|| pod.spec.as_ref()?.termination_grace_period_seconds)
        .and_then(|g| u64::try_from(g).ok())
        .unwrap_or(DEFAULT_GRACE)
}

/// Whether an API failure is routine (worth another try): throttling (429),
/// a server error, a reset or refused connection, a timeout; with
/// `conflicts`, a 409 too (a patch raced another writer).
fn transient(e: &kube::Error, conflicts: bool) -> bool {
    match e {
        kube::Error::Api(s) => {
            matches!(s.code, 429 | 500 | 502 | 503 | 504) || (conflicts && s.code == 409)
        }
        kube::Error::HyperError(_) | kube::Error::Service(_) | kube::Error::ReadEvents(_) => true,
        _ => false,
    }
}

/// Calls `f` until it succeeds, fails for good, or [`RETRY_BUDGET`] is
/// spent on transient failures (each logged), waiting longer each time.
async fn retrying<T, F, Fut>(what: &str, conflicts: bool, mut f: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, kube::Error>>,
{
    let started = Instant::now();
    let mut wait = Duration::from_millis(100);
    let mut tries = 0u32;
    loop {
        tries += 1;
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) if transient(&e, conflicts) && started.elapsed() + wait < RETRY_BUDGET => {
                tracing::info!(
                    what,
                    error = %e,
                    "Kubernetes API: a transient failure; trying again in {wait:.1?}"
                );
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(2));
            }
            Err(e) if tries > 1 => {
                return Err(format!(
                    "{what}: {e} (tried {tries} times over {:.0?})",
                    started.elapsed()
                ))
            }
            Err(e) => return Err(format!("{what}: {e}")),
        }
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
        if self.set(&fleet.name).await?.is_none() {
            return Ok(None);
        }
        match self.pod(&format!("{}-{ordinal}", fleet.name)).await? {
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

    /// Patches the StatefulSet as habd's field manager, retrying transient
    /// failures and 409 Conflicts.
    async fn patch(
        &self,
        name: &str,
        patch: serde_json::Value,
        strategic: bool,
    ) -> Result<StatefulSet, String> {
        let sets = self.sets();
        let pp = PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..Default::default()
        };
        retrying(&format!("patch of statefulset {name}"), true, || {
            let p = if strategic {
                Patch::Strategic(patch.clone())
            } else {
                Patch::Merge(patch.clone())
            };
            let (sets, pp) = (sets.clone(), pp.clone());
            async move { sets.patch(name, &pp, &p).await }
        })
        .await
    }

    async fn set_partition(&self, name: &str, partition: i32) -> Result<StatefulSet, String> {
        self.patch(
            name,
            json!({"spec": {"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": partition}}}}),
            false,
        )
        .await
    }

    /// Waits until the StatefulSet controller has observed the latest spec
    /// (`observedGeneration` ≥ `generation`), as `kubectl rollout status`
    /// requires before it trusts the status; returns the set as observed.
    async fn observed(&self, name: &str, deadline: Instant) -> Result<StatefulSet, String> {
        loop {
            let sts = self
                .set(name)
                .await?
                .ok_or_else(|| format!("statefulset {name} does not exist"))?;
            if observed(&sts) {
                return Ok(sts);
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "statefulset {name}: the controller has not observed generation {}",
                    sts.metadata.generation.unwrap_or(0)
                ));
            }
            tokio::time::sleep(LOOK_EVERY / 2).await;
        }
    }

    /// Moves node `ordinal` to `image` (going back: to what it ran), and
    /// waits until its pod has been recreated on the revision of that image
    /// (not until it is Ready: that is the gates' business). `wait` starts
    /// once the old pod is gone: a Terminating pod has its grace period on
    /// top. With `accept_drift`, a template changed outside hab since the
    /// rollout began does not hold the rollout (an operator resumed it).
    ///
    /// # Errors
    /// [`UpdateError::Hold`] when moving on would replace nodes again;
    /// [`UpdateError::Failed`] when the API server refused, or the pod was
    /// not recreated in time.
    pub async fn update(
        &self,
        fleet: &FleetConfig,
        ordinal: u32,
        image: &str,
        direction: Direction,
        wait: Duration,
        accept_drift: bool,
    ) -> Result<(), UpdateError> {
        let name = &fleet.name;
        let failed = UpdateError::Failed;
        let sts = self
            .set(name)
            .await
            .map_err(failed)?
            .ok_or_else(|| failed(format!("statefulset {name} does not exist")))?;
        let replicas = replicas(&sts);
        let mut deadline = Instant::now() + wait;
        if template_image(&sts).as_deref() != Some(image) {
            // Freeze first, so the controller moves no pod on its own.
            self.set_partition(name, replicas).await.map_err(failed)?;
            self.set_image(name, &sts, image).await.map_err(failed)?;
            self.event(fleet, "ImageSet", &format!("template image set to {image}"))
                .await;
        }
        // The revision of the image, once the controller has seen it.
        let sts = self.observed(name, deadline).await.map_err(failed)?;
        let mut revision = update_revision(&sts)
            .ok_or_else(|| failed(format!("statefulset {name} reports no updateRevision")))?;
        let pod_name = format!("{name}-{ordinal}");
        if direction == Direction::Forward && !accept_drift {
            self.check_drift(name, replicas, ordinal, image, &revision)
                .await?;
        }
        let mut deleted: Option<String> = None;
        let mut waited_for_termination = false;
        loop {
            let pod = self.pod(&pod_name).await.map_err(failed)?;
            // The set as it is now, read once per look, when the pod is not
            // (yet) where it should be.
            let live = match &pod {
                Some(p) if pod_revision(p) == Some(&revision) => None,
                _ => self.set(name).await.map_err(failed)?,
            };
            if let (Some(p), Some(newer)) = (
                &pod,
                live.as_ref()
                    .filter(|s| observed(s))
                    .and_then(update_revision),
            ) {
                // A template changed by someone else meanwhile (the image
                // unchanged) moved updateRevision on: a pod on the image and
                // on the set's newest revision is as good (never replaced
                // twice for it).
                if pod_revision(p) == Some(&newer) && spec_image(p).as_deref() == Some(image) {
                    revision = newer;
                }
            }
            match &pod {
                Some(p) if !terminating(p) && pod_revision(p) == Some(revision.as_str()) => {
                    break;
                }
                Some(p) if terminating(p) => {
                    // The wait for the new pod starts once the old one is
                    // gone: its grace period is added, once.
                    if !waited_for_termination {
                        waited_for_termination = true;
                        deadline += Duration::from_secs(grace(p));
                    }
                }
                _ => {
                    // On the wrong revision, or missing: the partition at
                    // this ordinal (so it is recreated on updateRevision),
                    // seen by the controller; then the stale pod deleted.
                    if live.as_ref().and_then(template_image).as_deref() != Some(image) {
                        // Someone (a helm upgrade racing this step) set
                        // the image back: set it again, frozen first.
                        tracing::warn!(statefulset = %name, "the node image was changed under the rollout; setting it again");
                        self.freeze(name, replicas).await;
                        self.set_image(name, &sts, image).await.map_err(failed)?;
                        let seen = self.observed(name, deadline).await.map_err(failed)?;
                        revision = update_revision(&seen).ok_or_else(|| {
                            failed(format!("statefulset {name} reports no updateRevision"))
                        })?;
                        continue;
                    }
                    if live.as_ref().and_then(partition) != Some(ordinal as i32) {
                        self.set_partition(name, ordinal as i32)
                            .await
                            .map_err(failed)?;
                        self.observed(name, deadline).await.map_err(failed)?;
                        self.event(
                            fleet,
                            "PartitionMoved",
                            &format!("partition {ordinal}: {pod_name} to {image}"),
                        )
                        .await;
                        continue;
                    }
                    // Going forward the controller replaces a Ready pod
                    // itself; one that is not Ready it would wait on
                    // forever (#67250), and going back hab never waits for
                    // its rolling update (currentRevision may be the bad one).
                    if let Some(p) = &pod {
                        let delete = direction == Direction::Back || !pod_ready(p);
                        if delete && deleted != p.metadata.uid {
                            deleted = p.metadata.uid.clone();
                            self.delete_pod(&pod_name).await.map_err(failed)?;
                            self.event(
                                fleet,
                                "PodDeleted",
                                &format!("{pod_name} deleted to come back on {image}"),
                            )
                            .await;
                            continue;
                        }
                    }
                }
            }
            if Instant::now() >= deadline {
                self.freeze(name, replicas).await;
                return Err(failed(format!(
                    "pod {pod_name} was not recreated on {image} (revision {revision}) within {:.0?}",
                    wait
                )));
            }
            self.changed(&pod_name, pod.as_ref(), deadline).await;
        }
        // Frozen again: nothing else changes a node behind hab's gates.
        self.set_partition(name, replicas).await.map_err(failed)?;
        Ok(())
    }

    /// Sets the node container's image. A strategic merge patch merges
    /// `containers` by name: only the image changes (a JSON merge patch
    /// would replace the list).
    async fn set_image(&self, name: &str, sts: &StatefulSet, image: &str) -> Result<(), String> {
        let (_, container) =
            container_index(sts).ok_or_else(|| format!("statefulset {name} has no container"))?;
        self.patch(
            name,
            json!({"spec": {"template": {"spec": {"containers": [{"name": container, "image": image}]}}}}),
            true,
        )
        .await
        .map(|_| ())
    }

    /// Freezes the set (best effort: a rollout that failed says why).
    async fn freeze(&self, name: &str, replicas: i32) {
        if let Err(e) = self.set_partition(name, replicas).await {
            tracing::warn!(statefulset = name, error = %e, "cannot freeze the statefulset");
        }
    }

    /// Holds when a node hab already moved to `image` is no longer on the
    /// set's update revision: the template changed outside hab, and moving
    /// the partition would replace those nodes again.
    async fn check_drift(
        &self,
        name: &str,
        replicas: i32,
        ordinal: u32,
        image: &str,
        revision: &str,
    ) -> Result<(), UpdateError> {
        let mut moved = Vec::new();
        for o in (0..u32::try_from(replicas).unwrap_or(0)).filter(|o| *o != ordinal) {
            let Some(p) = self
                .pod(&format!("{name}-{o}"))
                .await
                .map_err(UpdateError::Failed)?
            else {
                continue;
            };
            if !terminating(&p)
                && spec_image(&p).as_deref() == Some(image)
                && pod_revision(&p).is_some_and(|r| r != revision)
            {
                moved.push(o);
            }
        }
        if moved.is_empty() {
            return Ok(());
        }
        let list = moved
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        Err(UpdateError::Hold(format!(
            "the pod template of statefulset {name} changed outside hab during the rollout \
             (update revision now {revision}): moving on would make the controller replace \
             node(s) {list} again; resume to let it, or undo"
        )))
    }

    async fn delete_pod(&self, pod_name: &str) -> Result<(), String> {
        let (pods, dp) = (self.pods(), DeleteParams::default());
        retrying(&format!("delete pod {pod_name}"), false, || async {
            match pods.delete(pod_name, &dp).await {
                Ok(_) => Ok(()),
                // Gone already.
                Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
                Err(e) => Err(e),
            }
        })
        .await
    }

    /// Returns once pod `pod_name` may have changed: on its watch's first
    /// event, or after at most [`WATCH_AT_MOST`]. A watch that cannot be
    /// opened, fails or closes is only a reason to look again.
    async fn changed(&self, pod_name: &str, seen: Option<&Pod>, deadline: Instant) {
        let left = deadline
            .saturating_duration_since(Instant::now())
            .min(WATCH_AT_MOST);
        let version = seen
            .and_then(|p| p.metadata.resource_version.clone())
            .unwrap_or_else(|| "0".into());
        let wp = WatchParams::default()
            .fields(&format!("metadata.name={pod_name}"))
            .timeout(u32::try_from(left.as_secs()).unwrap_or(5).clamp(1, 290));
        let watched = tokio::time::timeout(left, async {
            let events = self.pods().watch(&wp, &version).await?;
            let mut events = events.boxed();
            if let Some(WatchEvent::Error(e)) = events.try_next().await? {
                tracing::debug!(pod = pod_name, error = %e.message, "watch error; looking again");
            }
            Ok::<_, kube::Error>(())
        })
        .await;
        if let Ok(Err(e)) = watched {
            tracing::debug!(pod = pod_name, error = %e, "watch failed; looking again");
        }
        tokio::time::sleep(LOOK_EVERY).await;
    }

    /// Records a Kubernetes Event on the fleet's StatefulSet
    /// (events.k8s.io/v1, reporting controller `habd`). A refused Event is
    /// logged and counted (`hab_kubernetes_events_failed`), never fatal.
    pub async fn event(&self, fleet: &FleetConfig, reason: &str, message: &str) {
        let reference = ObjectReference {
            api_version: Some("apps/v1".into()),
            kind: Some("StatefulSet".into()),
            name: Some(fleet.name.clone()),
            namespace: Some(self.namespace.clone()),
            ..Default::default()
        };
        let warning = matches!(reason, "GateFailed" | "RolledBack" | "RolloutHeld");
        let ev = Event {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.into(),
            // The API takes at most 1 kB.
            note: Some(message.chars().take(1000).collect()),
            action: "Rollout".into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&ev, &reference).await {
            EVENTS_FAILED.inc();
            tracing::warn!(fleet = %fleet.name, reason, error = %e, "the Kubernetes API refused an event");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(spec_image: &str, image_id: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "n-0"},
            "spec": {"containers": [{"name": "node", "image": spec_image}]},
            "status": {"containerStatuses": [{"name": "node", "image": spec_image, "imageID": image_id,
                "ready": true, "restartCount": 0}]},
        }))
        .unwrap()
    }

    #[test]
    fn a_pod_on_a_tag_is_known_by_the_digest_it_pulled() {
        let hex = "a".repeat(64);
        assert_eq!(
            pod(
                "10.0.0.1:5000/hab/node:stable",
                &format!("docker-pullable://10.0.0.1:5000/hab/node@sha256:{hex}")
            )
            .pipe(|p| pod_image(&p)),
            Some(format!("10.0.0.1:5000/hab/node@sha256:{hex}"))
        );
        // containerd's form, and a digest in the spec wins.
        assert_eq!(
            pod("r/node", &format!("r/node@sha256:{hex}")).pipe(|p| pod_image(&p)),
            Some(format!("r/node@sha256:{hex}"))
        );
        let spec = format!("r/node@sha256:{}", "b".repeat(64));
        assert_eq!(
            pod(&spec, &format!("r/node@sha256:{hex}")).pipe(|p| pod_image(&p)),
            Some(spec)
        );
        // Never pulled: only the tag is known.
        assert_eq!(
            pod("r/node:stable", "").pipe(|p| pod_image(&p)),
            Some("r/node:stable".into())
        );
    }

    #[test]
    fn routine_api_failures_are_tried_again() {
        let api = |code| {
            kube::Error::Api(Box::new(kube::core::Status {
                code,
                ..Default::default()
            }))
        };
        for code in [429, 500, 502, 503, 504] {
            assert!(transient(&api(code), false), "{code}");
        }
        assert!(!transient(&api(409), false));
        assert!(transient(&api(409), true));
        for code in [400, 403, 404, 422] {
            assert!(!transient(&api(code), true), "{code}");
        }
    }

    trait Pipe: Sized {
        fn pipe<T>(self, f: impl FnOnce(Self) -> T) -> T {
            f(self)
        }
    }
    impl Pipe for Pod {}
}
