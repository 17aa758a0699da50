//! What hab reads off a StatefulSet and its pods: the node container and
//! its image, the replicas and partition, the revisions, and whether a pod
//! is Ready or Terminating.

use k8s_openapi::api::{apps::v1::StatefulSet, core::v1::Pod};

use super::NODE_CONTAINER;

/// The grace period Kubernetes gives a pod that names none.
const DEFAULT_GRACE: u64 = 30;

pub(super) fn container_index(sts: &StatefulSet) -> Option<(usize, String)> {
    let containers = &sts.spec.as_ref()?.template.spec.as_ref()?.containers;
    let i = containers
        .iter()
        .position(|c| c.name == NODE_CONTAINER)
        .unwrap_or(0);
    Some((i, containers.get(i)?.name.clone()))
}

pub(super) fn template_image(sts: &StatefulSet) -> Option<String> {
    let (i, _) = container_index(sts)?;
    sts.spec.as_ref()?.template.spec.as_ref()?.containers[i]
        .image
        .clone()
}

pub(super) fn replicas(sts: &StatefulSet) -> i32 {
    sts.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

pub(super) fn partition(sts: &StatefulSet) -> Option<i32> {
    sts.spec
        .as_ref()?
        .update_strategy
        .as_ref()?
        .rolling_update
        .as_ref()?
        .partition
}

pub(super) fn observed(sts: &StatefulSet) -> bool {
    let generation = sts.metadata.generation.unwrap_or(0);
    let seen = sts
        .status
        .as_ref()
        .and_then(|s| s.observed_generation)
        .unwrap_or(0);
    seen >= generation
}

pub(super) fn update_revision(sts: &StatefulSet) -> Option<String> {
    sts.status.as_ref()?.update_revision.clone()
}

pub(super) fn pod_revision(pod: &Pod) -> Option<&str> {
    pod.metadata
        .labels
        .as_ref()?
        .get("controller-revision-hash")
        .map(String::as_str)
}

pub(super) fn terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

/// The node container's image as the pod's spec names it.
pub(super) fn spec_image(pod: &Pod) -> Option<String> {
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
pub(super) fn pod_image(pod: &Pod) -> Option<String> {
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

pub(super) fn pod_ready(pod: &Pod) -> bool {
    !terminating(pod)
        && pod.status.as_ref().is_some_and(|s| {
            s.phase.as_deref() == Some("Running")
                && s.conditions
                    .as_ref()
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
}

pub(super) fn grace(pod: &Pod) -> u64 {
    pod.metadata
        .deletion_grace_period_seconds
        .or_else(|| pod.spec.as_ref()?.termination_grace_period_seconds)
        .and_then(|g| u64::try_from(g).ok())
        .unwrap_or(DEFAULT_GRACE)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

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

    trait Pipe: Sized {
        fn pipe<T>(self, f: impl FnOnce(Self) -> T) -> T {
            f(self)
        }
    }
    impl Pipe for Pod {}
}
