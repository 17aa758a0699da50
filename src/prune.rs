//! Registry pruning: which manifests of old builds may go, so the registry's
//! garbage collector can reclaim their blobs.
//!
//! Kept, always: the newest `keep` VERIFIED builds of each pipeline, every
//! build a channel points at, every build a fleet's node runs (a fleet
//! rolled back runs a build its channel no longer names), and every build
//! not ended yet. Of the other builds, the image index and the platform
//! manifests go, except a manifest a kept build also references (a
//! platform reused by build key is shared). The decision is [`plan`], over
//! plain data; the server's prune handler does the talking.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::store::BuildRecord;

/// One manifest to delete.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Doomed {
    /// The build it belongs to.
    pub build: i64,
    /// Repository.
    pub repository: String,
    /// Digest.
    pub digest: String,
    /// `index` or the platform.
    pub what: String,
}

/// What a prune keeps and deletes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrunePlan {
    /// Builds kept, by id.
    pub kept: Vec<i64>,
    /// Manifests to delete.
    pub delete: Vec<Doomed>,
}

/// Decides what to delete. `protected` are builds channels point at or
/// nodes run; `running_digests` are index digests nodes run (for builds
/// hab no longer has a channel for).
pub fn plan(
    builds: &[BuildRecord],
    keep: usize,
    protected: &BTreeSet<i64>,
    running_digests: &BTreeSet<String>,
) -> PrunePlan {
    let mut by_pipeline: BTreeMap<&str, Vec<&BuildRecord>> = BTreeMap::new();
    for b in builds {
        by_pipeline.entry(b.pipeline.as_str()).or_default().push(b);
    }
    let mut kept = BTreeSet::new();
    for list in by_pipeline.values_mut() {
        list.sort_by_key(|b| std::cmp::Reverse(b.id));
        for b in list.iter().filter(|b| b.verified()).take(keep) {
            kept.insert(b.id);
        }
    }
    for b in builds {
        let runs = b
            .index_digest
            .as_ref()
            .is_some_and(|d| running_digests.contains(d));
        if protected.contains(&b.id) || runs || !b.state.is_final() {
            kept.insert(b.id);
        }
    }
    let manifests = |b: &BuildRecord| -> Vec<(String, String, String)> {
        let mut m: Vec<(String, String, String)> = b
            .index_digest
            .iter()
            .map(|d| (b.repository.clone(), d.clone(), "index".to_string()))
            .collect();
        m.extend(b.platforms.iter().filter_map(|p| {
            Some((
                b.repository.clone(),
                p.manifest_digest.clone()?,
                p.platform.clone(),
            ))
        }));
        m
    };
    let still_used: BTreeSet<(String, String)> = builds
        .iter()
        .filter(|b| kept.contains(&b.id))
        .flat_map(|b| manifests(b).into_iter().map(|(r, d, _)| (r, d)))
        .collect();
    let mut delete = Vec::new();
    let mut seen = BTreeSet::new();
    for b in builds.iter().filter(|b| !kept.contains(&b.id)) {
        for (repository, digest, what) in manifests(b) {
            if still_used.contains(&(repository.clone(), digest.clone()))
                || !seen.insert((repository.clone(), digest.clone()))
            {
                continue;
            }
            delete.push(Doomed {
                build: b.id,
                repository,
                digest,
                what,
            });
        }
    }
    // Indexes first: an index never points at a manifest already gone.
    delete.sort_by_key(|d| (d.what != "index", d.build, d.digest.clone()));
    PrunePlan {
        kept: kept.into_iter().collect(),
        delete,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{BuildState, PlatformRecord};

    fn build(id: i64, pipeline: &str, state: BuildState, platforms: &[&str]) -> BuildRecord {
        BuildRecord {
            known_bad: None,
            id,
            pipeline: pipeline.into(),
            ref_name: format!("refs/tags/v{id}"),
            commit: "c".into(),
            version: format!("v{id}"),
            signer: None,
            trigger: "test".into(),
            repository: format!("hab/{pipeline}"),
            state,
            reason: None,
            index_digest: Some(format!("sha256:index{id}")),
            created_at: chrono::Utc::now(),
            finished_at: None,
            verified_at: None,
            attestation: None,
            platforms: platforms
                .iter()
                .map(|m| PlatformRecord {
                    platform: "linux/amd64".into(),
                    builder: "local".into(),
                    build_key: "k".into(),
                    stage: "verified".into(),
                    reused: false,
                    image_id: None,
                    manifest_digest: Some(format!("sha256:{m}")),
                    manifest_size: None,
                    manifest_media_type: None,
                    bytes_total: 0,
                    bytes_pushed: 0,
                    blobs_skipped: 0,
                })
                .collect(),
        }
    }

    #[test]
    fn keeps_the_newest_verified_what_channels_name_and_what_nodes_run() {
        use BuildState::*;
        let builds = vec![
            build(1, "core", Verified, &["m1"]),
            build(2, "core", Verified, &["m2"]),
            build(3, "core", Failed, &["m3"]),
            build(4, "core", Verified, &["m2"]), // reuses build 2's platform
            build(5, "core", Verified, &["m5"]),
            build(6, "core", Building, &[]),
            build(7, "btcd", Verified, &["b7"]),
            build(8, "core", Verified, &["m8"]),
        ];
        let stable = BTreeSet::from([1]);
        let p = plan(&builds, 2, &stable, &BTreeSet::new());
        // Newest two verified of core (8, 5), of btcd (7); stable's 1; 6 runs.
        assert_eq!(p.kept, vec![1, 5, 6, 7, 8]);
        let gone: Vec<(i64, &str)> = p
            .delete
            .iter()
            .map(|d| (d.build, d.digest.as_str()))
            .collect();
        assert_eq!(
            gone,
            vec![
                (2, "sha256:index2"),
                (3, "sha256:index3"),
                (4, "sha256:index4"),
                (2, "sha256:m2"),
                (3, "sha256:m3"),
            ],
            "m2 once, though builds 2 and 4 share it; indexes first"
        );
        // A fleet rolled back to build 2 keeps it, and m2 with it.
        let p = plan(
            &builds,
            2,
            &stable,
            &BTreeSet::from(["sha256:index2".to_string()]),
        );
        assert!(p.kept.contains(&2));
        assert!(!p.delete.iter().any(|d| d.digest == "sha256:m2"));
    }
}
