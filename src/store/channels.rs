//! Release channels in the state store: where each channel of a pipeline
//! points (one VERIFIED build), and every move, with who, when and why.
//!
//! A move and its history row are one transaction, and a move to a build
//! that is not VERIFIED is refused inside it, so a channel can never point
//! at an unverified build, even if two promotes race.

use chrono::{DateTime, Utc};
use rusqlite::{params, OptionalExtension};
use serde::{Deserialize, Serialize};

use super::{now, Store, StoreError};

/// Where a channel points.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelState {
    /// Pipeline.
    pub pipeline: String,
    /// Channel name (`edge`, `stable`).
    pub name: String,
    /// The VERIFIED build it points at.
    pub build_id: i64,
    /// That build's image index.
    pub index_digest: String,
    /// When it last moved.
    pub moved_at: DateTime<Utc>,
    /// Who moved it (`habd` for automatic moves).
    pub moved_by: String,
    /// Why.
    pub reason: Option<String>,
}

/// One move of a channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelMove {
    /// Id.
    pub id: i64,
    /// Pipeline.
    pub pipeline: String,
    /// Channel.
    pub channel: String,
    /// The build it pointed at before, if any.
    pub from_build: Option<i64>,
    /// The build it points at since.
    pub to_build: i64,
    /// That build's index.
    pub index_digest: String,
    /// When.
    pub at: DateTime<Utc>,
    /// Who.
    pub by: String,
    /// Why.
    pub reason: Option<String>,
}

/// An image whose rollout failed its gates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KnownBad {
    /// The build whose rollout failed.
    pub build_id: i64,
    /// The fleet it failed on.
    pub fleet: String,
    /// The rollout.
    pub rollout_id: Option<i64>,
    /// The gate's reason.
    pub reason: String,
    /// When.
    pub at: DateTime<Utc>,
}

impl std::fmt::Display for KnownBad {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "known-bad: its rollout to fleet {} failed its gates ({})",
            self.fleet, self.reason
        )
    }
}

pub(super) fn known_bad_of(
    conn: &rusqlite::Connection,
    index_digest: &str,
) -> Result<Option<KnownBad>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT build_id, fleet, rollout_id, reason, at FROM known_bad WHERE index_digest = ?1",
            params![index_digest],
            |r| {
                Ok(KnownBad {
                    build_id: r.get(0)?,
                    fleet: r.get(1)?,
                    rollout_id: r.get(2)?,
                    reason: r.get(3)?,
                    at: r.get(4)?,
                })
            },
        )
        .optional()?)
}

/// Why a move was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MoveRefused {
    /// No such build.
    NoBuild(i64),
    /// The build is not VERIFIED (its state and reason).
    NotVerified {
        /// Its state.
        state: String,
        /// Why it failed, if it did.
        reason: Option<String>,
    },
    /// The build belongs to another pipeline.
    OtherPipeline(String),
}

impl Store {
    /// Points `channel` of `pipeline` at `build_id`, recording the move.
    /// Returns the move, or None when the channel already points there.
    ///
    /// # Errors
    /// `Ok(Err(..))` when the build may not be promoted; `Err` when the
    /// store fails. Nothing changes in either case.
    pub fn move_channel(
        &self,
        pipeline: &str,
        channel: &str,
        build_id: i64,
        by: &str,
        reason: Option<&str>,
    ) -> Result<Result<Option<ChannelMove>, MoveRefused>, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let build: Option<(String, String, Option<String>, Option<String>)> = tx
            .query_row(
                "SELECT pipeline, state, reason, index_digest FROM builds WHERE id = ?1",
                params![build_id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()?;
        let Some((owner, state, why, index)) = build else {
            return Ok(Err(MoveRefused::NoBuild(build_id)));
        };
        if owner != pipeline {
            return Ok(Err(MoveRefused::OtherPipeline(owner)));
        }
        let index = match (state.as_str(), index) {
            ("verified", Some(index)) => index,
            _ => return Ok(Err(MoveRefused::NotVerified { state, reason: why })),
        };
        let from: Option<i64> = tx
            .query_row(
                "SELECT build_id FROM channels WHERE pipeline = ?1 AND name = ?2",
                params![pipeline, channel],
                |r| r.get(0),
            )
            .optional()?;
        if from == Some(build_id) {
            return Ok(Ok(None));
        }
        let at = now();
        tx.execute(
            "INSERT INTO channels (pipeline, name, build_id, index_digest, moved_at, moved_by, reason)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (pipeline, name) DO UPDATE SET build_id = ?3, index_digest = ?4,
                moved_at = ?5, moved_by = ?6, reason = ?7",
            params![pipeline, channel, build_id, index, at, by, reason],
        )?;
        tx.execute(
            "INSERT INTO channel_moves (pipeline, channel, from_build, to_build, index_digest, at, by, reason)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![pipeline, channel, from, build_id, index, at, by, reason],
        )?;
        let id = tx.last_insert_rowid();
        tx.commit()?;
        Ok(Ok(Some(ChannelMove {
            id,
            pipeline: pipeline.into(),
            channel: channel.into(),
            from_build: from,
            to_build: build_id,
            index_digest: index,
            at,
            by: by.into(),
            reason: reason.map(str::to_string),
        })))
    }

    /// Where each channel of a pipeline points (channels never moved are absent).
    pub fn channels(&self, pipeline: &str) -> Result<Vec<ChannelState>, StoreError> {
        let conn = self.lock();
        let rows = conn
            .prepare(
                "SELECT pipeline, name, build_id, index_digest, moved_at, moved_by, reason
                 FROM channels WHERE pipeline = ?1 ORDER BY name",
            )?
            .query_map(params![pipeline], |r| {
                Ok(ChannelState {
                    pipeline: r.get(0)?,
                    name: r.get(1)?,
                    build_id: r.get(2)?,
                    index_digest: r.get(3)?,
                    moved_at: r.get(4)?,
                    moved_by: r.get(5)?,
                    reason: r.get(6)?,
                })
            })?
            .collect::<Result<_, _>>()?;
        Ok(rows)
    }

    /// The moves of a pipeline's channels (of one, with `channel`), newest first.
    pub fn channel_moves(
        &self,
        pipeline: &str,
        channel: Option<&str>,
        limit: u32,
    ) -> Result<Vec<ChannelMove>, StoreError> {
        let conn = self.lock();
        let rows = conn
            .prepare(
                "SELECT id, pipeline, channel, from_build, to_build, index_digest, at, by, reason
                 FROM channel_moves WHERE pipeline = ?1 AND (?2 IS NULL OR channel = ?2)
                 ORDER BY id DESC LIMIT ?3",
            )?
            .query_map(params![pipeline, channel, limit], |r| {
                Ok(ChannelMove {
                    id: r.get(0)?,
                    pipeline: r.get(1)?,
                    channel: r.get(2)?,
                    from_build: r.get(3)?,
                    to_build: r.get(4)?,
                    index_digest: r.get(5)?,
                    at: r.get(6)?,
                    by: r.get(7)?,
                    reason: r.get(8)?,
                })
            })?
            .collect::<Result<_, _>>()?;
        Ok(rows)
    }

    /// Marks the image of `build_id` known-bad: a rollout of it to `fleet`
    /// failed its gates for `reason`. The first mark stays. Returns the
    /// mark, or None when the build has no image.
    pub fn mark_known_bad(
        &self,
        build_id: i64,
        fleet: &str,
        rollout_id: Option<i64>,
        reason: &str,
    ) -> Result<Option<KnownBad>, StoreError> {
        let conn = self.lock();
        let row: Option<(String, Option<String>)> = conn
            .query_row(
                "SELECT pipeline, index_digest FROM builds WHERE id = ?1",
                params![build_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let Some((pipeline, Some(index))) = row else {
            return Ok(None);
        };
        conn.execute(
            "INSERT OR IGNORE INTO known_bad (index_digest, pipeline, build_id, fleet, rollout_id, reason, at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![index, pipeline, build_id, fleet, rollout_id, reason, now()],
        )?;
        known_bad_of(&conn, &index)
    }

    /// Whether the image of `build_id` is known-bad, and why.
    pub fn known_bad(&self, build_id: i64) -> Result<Option<KnownBad>, StoreError> {
        let conn = self.lock();
        let index: Option<Option<String>> = conn
            .query_row(
                "SELECT index_digest FROM builds WHERE id = ?1",
                params![build_id],
                |r| r.get(0),
            )
            .optional()?;
        match index.flatten() {
            Some(d) => known_bad_of(&conn, &d),
            None => Ok(None),
        }
    }

    /// The build `channel` of `pipeline` should return to when the build it
    /// names turned out bad: `preferred` (what the fleet returned to) if it
    /// is a VERIFIED build of the pipeline that is not known-bad, else the
    /// newest such build the channel named before.
    pub fn return_build(
        &self,
        pipeline: &str,
        channel: &str,
        preferred: Option<i64>,
    ) -> Result<Option<i64>, StoreError> {
        let conn = self.lock();
        let good = |id: i64| -> Result<bool, StoreError> {
            let row: Option<(String, String, Option<String>)> = conn
                .query_row(
                    "SELECT pipeline, state, index_digest FROM builds WHERE id = ?1",
                    params![id],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()?;
            Ok(match row {
                Some((p, state, Some(d))) if p == pipeline && state == "verified" => {
                    known_bad_of(&conn, &d)?.is_none()
                }
                _ => false,
            })
        };
        if let Some(id) = preferred {
            if good(id)? {
                return Ok(Some(id));
            }
        }
        let named: Vec<i64> = conn
            .prepare(
                "SELECT to_build FROM channel_moves WHERE pipeline = ?1 AND channel = ?2 ORDER BY id DESC",
            )?
            .query_map(params![pipeline, channel], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        for id in named {
            if good(id)? {
                return Ok(Some(id));
            }
        }
        Ok(None)
    }

    /// The newest VERIFIED build of `pipeline` for `ref_name`.
    pub fn newest_verified(
        &self,
        pipeline: &str,
        ref_name: &str,
    ) -> Result<Option<i64>, StoreError> {
        Ok(self
            .lock()
            .query_row(
                "SELECT MAX(id) FROM builds WHERE pipeline = ?1 AND ref_name = ?2 AND state = 'verified'",
                params![pipeline, ref_name],
                |r| r.get(0),
            )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{BuildState, NewBuild, NewPlatform};

    fn build(store: &Store, pipeline: &str, verify: bool) -> i64 {
        let b = store
            .create_build(&NewBuild {
                pipeline: pipeline.into(),
                ref_name: "refs/tags/v1".into(),
                commit: "c".into(),
                version: "v1".into(),
                signer: None,
                trigger: "test".into(),
                repository: "hab/x".into(),
                platforms: vec![NewPlatform {
                    platform: "linux/amd64".into(),
                    builder: "local".into(),
                    build_key: format!("k{}", rand_id()),
                    reuse: None,
                }],
            })
            .unwrap();
        if verify {
            store
                .finish_verified(b.id, &format!("sha256:{}", b.id))
                .unwrap();
        } else {
            store
                .end_build(b.id, BuildState::Failed, "step 3 failed")
                .unwrap();
        }
        b.id
    }

    fn rand_id() -> u64 {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        N.fetch_add(1, Ordering::Relaxed)
    }

    #[test]
    fn channels_move_only_to_verified_builds_of_their_pipeline() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.sqlite3")).unwrap();
        let a = build(&store, "node", true);
        let failed = build(&store, "node", false);
        let other = build(&store, "other", true);

        let m = store
            .move_channel("node", "stable", a, "alice", Some("first"))
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!((m.from_build, m.to_build), (None, a));
        assert_eq!(
            store
                .move_channel("node", "stable", a, "alice", None)
                .unwrap(),
            Ok(None),
            "already there: no move recorded"
        );
        assert_eq!(
            store
                .move_channel("node", "stable", failed, "bob", None)
                .unwrap(),
            Err(MoveRefused::NotVerified {
                state: "failed".into(),
                reason: Some("step 3 failed".into())
            })
        );
        assert_eq!(
            store
                .move_channel("node", "stable", other, "bob", None)
                .unwrap(),
            Err(MoveRefused::OtherPipeline("other".into()))
        );
        assert_eq!(
            store
                .move_channel("node", "stable", 999, "bob", None)
                .unwrap(),
            Err(MoveRefused::NoBuild(999))
        );
        let c = store.channels("node").unwrap();
        assert_eq!(c.len(), 1);
        assert_eq!((c[0].build_id, c[0].moved_by.as_str()), (a, "alice"));
        assert_eq!(store.channel_moves("node", None, 10).unwrap().len(), 1);

        let b = build(&store, "node", true);
        let m = store
            .move_channel("node", "stable", b, "carol", Some("v2"))
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!((m.from_build, m.to_build), (Some(a), b));
        let moves = store.channel_moves("node", Some("stable"), 10).unwrap();
        assert_eq!(moves.iter().map(|m| m.to_build).collect::<Vec<_>>(), [b, a]);
        assert_eq!(
            store.newest_verified("node", "refs/tags/v1").unwrap(),
            Some(b)
        );
    }
}
