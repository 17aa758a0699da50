//! Moving one node by revisions (see the [module docs](super)): the image
//! set on a frozen StatefulSet, the partition moved to the node once the
//! controller observed it, a stale pod deleted, the set frozen again; and
//! the hold when the template changed under the rollout.

use std::time::{Duration, Instant};

use futures_util::{StreamExt, TryStreamExt};
use k8s_openapi::api::{apps::v1::StatefulSet, core::v1::Pod};
use kube::{
    api::{DeleteParams, Patch, PatchParams, WatchParams},
    core::WatchEvent,
};
use serde_json::json;

use super::{
    objects::{
        container_index, grace, observed, partition, pod_ready, pod_revision, replicas, spec_image,
        template_image, terminating, update_revision,
    },
    retry::retrying,
    KubeTarget, FIELD_MANAGER,
};
use crate::{
    config::FleetConfig,
    rollout::{node::UpdateError, plan::Direction},
};

/// How often a pod being replaced is looked at (besides its watch).
const LOOK_EVERY: Duration = Duration::from_millis(250);
/// The longest single watch of a pod being replaced.
const WATCH_AT_MOST: Duration = Duration::from_secs(5);

impl KubeTarget {
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
}
