//! Builds in the state store: one row per build, with its platforms
//! (`platforms`), its output (`build_logs`) and its verification runs
//! (`verifications`) beside it.
//!
//! A build key lands in `build_keys` in the same transaction that marks its
//! build VERIFIED, so "this key was built and verified" is never half true.

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};

use super::{
    now,
    platforms::{platforms_of, NewPlatform, PlatformRecord},
    Store, StoreError,
};

/// Where a build stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BuildState {
    /// Accepted, waiting for a builder.
    Queued,
    /// Images building.
    Building,
    /// Pushing blobs, manifests and the index.
    Publishing,
    /// Reading everything back and smoke-running each platform.
    Verifying,
    /// Every check passed: the index may be rolled out.
    Verified,
    /// A step failed; `reason` says which.
    Failed,
    /// Cancelled by an operator.
    Cancelled,
    /// habd stopped while the build ran.
    Interrupted,
}

impl BuildState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            BuildState::Queued => "queued",
            BuildState::Building => "building",
            BuildState::Publishing => "publishing",
            BuildState::Verifying => "verifying",
            BuildState::Verified => "verified",
            BuildState::Failed => "failed",
            BuildState::Cancelled => "cancelled",
            BuildState::Interrupted => "interrupted",
        }
    }

    /// True once nothing more will happen to the build.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            BuildState::Verified
                | BuildState::Failed
                | BuildState::Cancelled
                | BuildState::Interrupted
        )
    }

    fn parse(s: &str) -> rusqlite::Result<Self> {
        Ok(match s {
            "queued" => BuildState::Queued,
            "building" => BuildState::Building,
            "publishing" => BuildState::Publishing,
            "verifying" => BuildState::Verifying,
            "verified" => BuildState::Verified,
            "failed" => BuildState::Failed,
            "cancelled" => BuildState::Cancelled,
            "interrupted" => BuildState::Interrupted,
            other => {
                return Err(rusqlite::Error::FromSqlConversionFailure(
                    0,
                    rusqlite::types::Type::Text,
                    format!("unknown build state {other:?}").into(),
                ))
            }
        })
    }
}

/// A build, with its platforms.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildRecord {
    /// Build id (also the `build-<id>` tag).
    pub id: i64,
    /// Pipeline.
    pub pipeline: String,
    /// Full ref name built.
    #[serde(rename = "ref")]
    pub ref_name: String,
    /// The commit built.
    pub commit: String,
    /// Version tag given to the index once verified.
    pub version: String,
    /// Fingerprint of the key that signed the ref, when signed.
    pub signer: Option<String>,
    /// What asked for it (`habctl`, `api`, `schedule`…).
    pub trigger: String,
    /// Repository in the registry (`hab/bitcoind`).
    pub repository: String,
    /// Where it stands.
    pub state: BuildState,
    /// Why it failed, or what it reused.
    pub reason: Option<String>,
    /// The image index pushed.
    pub index_digest: Option<String>,
    /// Accepted at.
    pub created_at: DateTime<Utc>,
    /// Finished at.
    pub finished_at: Option<DateTime<Utc>>,
    /// Verified at.
    pub verified_at: Option<DateTime<Utc>>,
    /// The manifest (`sha256:…`) of its signed provenance in the registry,
    /// attached when it verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attestation: Option<String>,
    /// Per platform.
    pub platforms: Vec<PlatformRecord>,
    /// Set when a rollout of its image failed its gates: no automatic
    /// move, rollout or rebuild goes to it again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub known_bad: Option<super::KnownBad>,
}

impl BuildRecord {
    /// True when the build verified.
    pub fn verified(&self) -> bool {
        self.state == BuildState::Verified
    }
}

/// A build about to start.
#[derive(Debug, Clone)]
pub struct NewBuild {
    /// Pipeline.
    pub pipeline: String,
    /// Full ref name.
    pub ref_name: String,
    /// Commit.
    pub commit: String,
    /// Version tag.
    pub version: String,
    /// Signer fingerprint.
    pub signer: Option<String>,
    /// Trigger.
    pub trigger: String,
    /// Repository.
    pub repository: String,
    /// Platforms with their keys.
    pub platforms: Vec<NewPlatform>,
}

const BUILD_COLUMNS: &str = "id, pipeline, ref_name, commit_oid, version, signer, trigger,
    repository, state, reason, index_digest, created_at, finished_at, verified_at, attestation";

impl Store {
    /// Records a new build, queued, with its platforms. Reused platforms are
    /// recorded with the verified image they reuse.
    pub fn create_build(&self, new: &NewBuild) -> Result<BuildRecord, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        tx.execute(
            "INSERT INTO builds (pipeline, ref_name, commit_oid, version, signer, trigger,
                repository, state, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'queued', ?8)",
            params![
                new.pipeline,
                new.ref_name,
                new.commit,
                new.version,
                new.signer,
                new.trigger,
                new.repository,
                now()
            ],
        )?;
        let id = tx.last_insert_rowid();
        for p in &new.platforms {
            let (stage, digest, size, media) = match &p.reuse {
                Some(k) => (
                    "reused",
                    Some(&k.manifest_digest),
                    Some(k.manifest_size),
                    Some(&k.manifest_media_type),
                ),
                None => ("queued", None, None, None),
            };
            tx.execute(
                "INSERT INTO build_platforms (build_id, platform, builder, build_key, stage, reused,
                    manifest_digest, manifest_size, manifest_media_type)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    id,
                    p.platform,
                    p.builder,
                    p.build_key,
                    stage,
                    p.reuse.is_some(),
                    digest,
                    size,
                    media
                ],
            )?;
        }
        let record = build_by_id(&tx, id)?;
        tx.commit()?;
        Ok(record)
    }

    /// A build by id.
    pub fn build(&self, id: i64) -> Result<Option<BuildRecord>, StoreError> {
        let conn = self.lock();
        let exists: Option<i64> = conn
            .query_row("SELECT id FROM builds WHERE id = ?1", params![id], |r| {
                r.get(0)
            })
            .optional()?;
        match exists {
            Some(_) => Ok(Some(build_by_id(&conn, id)?)),
            None => Ok(None),
        }
    }

    /// The newest build of each ref of a pipeline: (ref, id, state).
    pub fn latest_builds(
        &self,
        pipeline: &str,
    ) -> Result<Vec<(String, i64, BuildState)>, StoreError> {
        let conn = self.lock();
        let rows = conn
            .prepare(
                "SELECT ref_name, id, state FROM builds b WHERE pipeline = ?1
                   AND id = (SELECT MAX(id) FROM builds WHERE pipeline = ?1 AND ref_name = b.ref_name)",
            )?
            .query_map(params![pipeline], |r| {
                let state: String = r.get(2)?;
                Ok((r.get(0)?, r.get(1)?, BuildState::parse(&state)?))
            })?
            .collect::<Result<_, _>>()?;
        Ok(rows)
    }

    /// How many builds each pipeline has in each state.
    pub fn build_counts(&self) -> Result<Vec<(String, String, i64)>, StoreError> {
        let conn = self.lock();
        let rows = conn
            .prepare("SELECT pipeline, state, COUNT(*) FROM builds GROUP BY pipeline, state")?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<Result<_, _>>()?;
        Ok(rows)
    }

    /// The newest build that pushed `index_digest`.
    pub fn build_by_index(&self, index_digest: &str) -> Result<Option<BuildRecord>, StoreError> {
        let conn = self.lock();
        let id: Option<i64> = conn
            .query_row(
                "SELECT id FROM builds WHERE index_digest = ?1 ORDER BY id DESC LIMIT 1",
                params![index_digest],
                |r| r.get(0),
            )
            .optional()?;
        id.map(|id| build_by_id(&conn, id)).transpose()
    }

    /// Builds, newest first, of one pipeline or all.
    pub fn builds(
        &self,
        pipeline: Option<&str>,
        limit: u32,
    ) -> Result<Vec<BuildRecord>, StoreError> {
        let conn = self.lock();
        let ids: Vec<i64> = conn
            .prepare(
                "SELECT id FROM builds WHERE (?1 IS NULL OR pipeline = ?1)
                 ORDER BY id DESC LIMIT ?2",
            )?
            .query_map(params![pipeline, limit], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        ids.into_iter().map(|id| build_by_id(&conn, id)).collect()
    }

    /// Moves a running build to a new state (not out of a final one).
    pub fn set_build_state(&self, id: i64, state: BuildState) -> Result<(), StoreError> {
        self.lock().execute(
            "UPDATE builds SET state = ?2 WHERE id = ?1
               AND state NOT IN ('verified', 'failed', 'cancelled', 'interrupted')",
            params![id, state.as_str()],
        )?;
        Ok(())
    }

    /// Records the pushed index digest.
    pub fn set_index_digest(&self, id: i64, digest: &str) -> Result<(), StoreError> {
        self.lock().execute(
            "UPDATE builds SET index_digest = ?2 WHERE id = ?1",
            params![id, digest],
        )?;
        Ok(())
    }

    /// Ends a build that did not verify (failed or cancelled) with its reason.
    /// A build already final is left as it is.
    pub fn end_build(&self, id: i64, state: BuildState, reason: &str) -> Result<(), StoreError> {
        debug_assert!(state.is_final() && state != BuildState::Verified);
        self.lock().execute(
            "UPDATE builds SET state = ?2, reason = ?3, finished_at = ?4 WHERE id = ?1
               AND state NOT IN ('verified', 'failed', 'cancelled', 'interrupted')",
            params![id, state.as_str(), reason, now()],
        )?;
        Ok(())
    }

    /// Records the manifest of a build's signed provenance.
    ///
    /// # Errors
    /// The store failed.
    pub fn set_attestation(&self, id: i64, manifest: &str) -> Result<(), StoreError> {
        self.lock().execute(
            "UPDATE builds SET attestation = ?2 WHERE id = ?1",
            params![id, manifest],
        )?;
        Ok(())
    }

    /// Marks a build VERIFIED and records its platforms' keys as built and
    /// verified, in one transaction.
    pub fn finish_verified(&self, id: i64, index_digest: &str) -> Result<(), StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let at = now();
        tx.execute(
            "UPDATE builds SET state = 'verified', index_digest = ?2, finished_at = ?3,
                verified_at = ?3, reason = NULL WHERE id = ?1",
            params![id, index_digest, at],
        )?;
        tx.execute(
            "INSERT OR REPLACE INTO build_keys (build_key, platform, repository, manifest_digest,
                manifest_size, manifest_media_type, build_id, verified_at)
             SELECT p.build_key, p.platform, b.repository, p.manifest_digest, p.manifest_size,
                p.manifest_media_type, b.id, ?2
             FROM build_platforms p JOIN builds b ON b.id = p.build_id
             WHERE b.id = ?1 AND p.manifest_digest IS NOT NULL AND p.reused = 0",
            params![id, at],
        )?;
        tx.execute(
            "UPDATE build_platforms SET stage = 'verified' WHERE build_id = ?1 AND stage <> 'reused'",
            params![id],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// The newest VERIFIED build of `pipeline` for `ref_name` whose platforms
    /// carry exactly `keys`: asking for it again reuses it whole.
    pub fn verified_build_with_keys(
        &self,
        pipeline: &str,
        ref_name: &str,
        keys: &[String],
    ) -> Result<Option<BuildRecord>, StoreError> {
        let mut wanted: Vec<&str> = keys.iter().map(String::as_str).collect();
        wanted.sort_unstable();
        let candidates = {
            let conn = self.lock();
            let ids: Vec<i64> = conn
                .prepare(
                    "SELECT id FROM builds WHERE pipeline = ?1 AND ref_name = ?2
                       AND state = 'verified' ORDER BY id DESC",
                )?
                .query_map(params![pipeline, ref_name], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            ids.into_iter()
                .map(|id| build_by_id(&conn, id))
                .collect::<Result<Vec<_>, _>>()?
        };
        Ok(candidates.into_iter().find(|b| {
            let mut have: Vec<&str> = b.platforms.iter().map(|p| p.build_key.as_str()).collect();
            have.sort_unstable();
            have == wanted
        }))
    }

    /// Ends builds a previous process left running: their images may be half
    /// pushed, but nothing was tagged with the version or marked verified.
    pub fn mark_builds_interrupted(&self) -> Result<usize, StoreError> {
        Ok(self.lock().execute(
            "UPDATE builds SET state = 'interrupted', finished_at = ?1,
                reason = 'habd stopped during the build; start it again with habctl build'
             WHERE state IN ('queued', 'building', 'publishing', 'verifying')",
            params![now()],
        )?)
    }
}

fn build_by_id(conn: &Connection, id: i64) -> Result<BuildRecord, StoreError> {
    let platforms = platforms_of(conn, id)?;
    conn.query_row(
        &format!("SELECT {BUILD_COLUMNS} FROM builds WHERE id = ?1"),
        params![id],
        |r| {
            let state: String = r.get(8)?;
            Ok(BuildRecord {
                id: r.get(0)?,
                pipeline: r.get(1)?,
                ref_name: r.get(2)?,
                commit: r.get(3)?,
                version: r.get(4)?,
                signer: r.get(5)?,
                trigger: r.get(6)?,
                repository: r.get(7)?,
                state: BuildState::parse(&state)?,
                reason: r.get(9)?,
                index_digest: r.get(10)?,
                created_at: r.get(11)?,
                finished_at: r.get(12)?,
                verified_at: r.get(13)?,
                attestation: r.get(14)?,
                platforms,
                known_bad: None,
            })
        },
    )
    .map_err(StoreError::from)
    .and_then(|mut b| {
        if let Some(d) = &b.index_digest {
            b.known_bad = super::channels::known_bad_of(conn, d)?;
        }
        Ok(b)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::PlatformUpdate;

    fn new_build(keys: &[(&str, &str)]) -> NewBuild {
        NewBuild {
            pipeline: "fixture".into(),
            ref_name: "refs/tags/v1.0.0".into(),
            commit: "c0ffee".into(),
            version: "v1.0.0".into(),
            signer: Some("ABCD".into()),
            trigger: "test".into(),
            repository: "hab/fixture".into(),
            platforms: keys
                .iter()
                .map(|(p, k)| NewPlatform {
                    platform: p.to_string(),
                    builder: "local".into(),
                    build_key: k.to_string(),
                    reuse: None,
                })
                .collect(),
        }
    }

    #[test]
    fn keys_count_as_built_only_once_verified() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.sqlite3")).unwrap();
        let b = store
            .create_build(&new_build(&[("linux/amd64", "k1"), ("linux/arm64", "k2")]))
            .unwrap();
        assert_eq!(b.state, BuildState::Queued);
        for (p, d) in [("linux/amd64", "sha256:a"), ("linux/arm64", "sha256:b")] {
            store
                .update_platform(
                    b.id,
                    p,
                    &PlatformUpdate {
                        stage: Some("pushed".into()),
                        manifest: Some((d.into(), 10, "m".into())),
                        ..Default::default()
                    },
                )
                .unwrap();
        }
        assert!(store.verified_key("k1", "hab/fixture").unwrap().is_none());
        let keys = vec!["k2".to_string(), "k1".to_string()];
        assert!(store
            .verified_build_with_keys("fixture", "refs/tags/v1.0.0", &keys)
            .unwrap()
            .is_none());

        store.finish_verified(b.id, "sha256:idx").unwrap();
        let k = store.verified_key("k1", "hab/fixture").unwrap().unwrap();
        assert_eq!(k.manifest_digest, "sha256:a");
        assert!(store.verified_key("k1", "other/repo").unwrap().is_none());
        let again = store
            .verified_build_with_keys("fixture", "refs/tags/v1.0.0", &keys)
            .unwrap()
            .unwrap();
        assert_eq!(again.index_digest.as_deref(), Some("sha256:idx"));
        // A final state is not left by a late update.
        store.set_build_state(b.id, BuildState::Building).unwrap();
        store.end_build(b.id, BuildState::Failed, "late").unwrap();
        assert_eq!(
            store.build(b.id).unwrap().unwrap().state,
            BuildState::Verified
        );
    }

    #[test]
    fn logs_are_numbered_and_paged_and_running_builds_end_interrupted() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.sqlite3")).unwrap();
        let b = store
            .create_build(&new_build(&[("linux/amd64", "k1")]))
            .unwrap();
        store
            .append_log(b.id, Some("linux/amd64"), &["a".into(), "b".into()])
            .unwrap();
        store.append_log(b.id, None, &["c".into()]).unwrap();
        let all = store.logs(b.id, 0, 100).unwrap();
        assert_eq!(
            all.iter()
                .map(|l| (l.seq, l.line.as_str()))
                .collect::<Vec<_>>(),
            vec![(1, "a"), (2, "b"), (3, "c")]
        );
        assert_eq!(store.logs(b.id, 2, 100).unwrap().len(), 1);
        store.set_build_state(b.id, BuildState::Building).unwrap();
        assert_eq!(store.mark_builds_interrupted().unwrap(), 1);
        let b = store.build(b.id).unwrap().unwrap();
        assert_eq!(b.state, BuildState::Interrupted);
        assert!(b.reason.unwrap().contains("habd stopped"));
    }
}
