//! Rollouts in the state store: each rollout, what every node ran before
//! it began, which nodes have settled, and every step and gate result.
//! Written step by step, so a restarted habd resumes from the record.

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};

use super::{now, Store, StoreError};

/// Where a rollout stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RolloutState {
    /// Waiting for the rollout before it (one rollout at a time).
    Queued,
    /// Moving nodes to the new image.
    Running,
    /// A gate failed: restoring the nodes it changed.
    RollingBack,
    /// Paused by an operator between steps.
    Paused,
    /// Every node runs the new image and passed its gates.
    Succeeded,
    /// Rolled back (or could not be); `reason` says why.
    Failed,
    /// A newer rollout of the same fleet was queued before this one ran.
    Superseded,
}

impl RolloutState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            RolloutState::Queued => "queued",
            RolloutState::Running => "running",
            RolloutState::RollingBack => "rolling_back",
            RolloutState::Paused => "paused",
            RolloutState::Succeeded => "succeeded",
            RolloutState::Failed => "failed",
            RolloutState::Superseded => "superseded",
        }
    }

    /// True once nothing more will happen to it.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            RolloutState::Succeeded | RolloutState::Failed | RolloutState::Superseded
        )
    }

    fn parse(s: &str) -> rusqlite::Result<Self> {
        Ok(match s {
            "queued" => RolloutState::Queued,
            "running" => RolloutState::Running,
            "rolling_back" => RolloutState::RollingBack,
            "paused" => RolloutState::Paused,
            "succeeded" => RolloutState::Succeeded,
            "failed" => RolloutState::Failed,
            "superseded" => RolloutState::Superseded,
            other => {
                return Err(rusqlite::Error::FromSqlConversionFailure(
                    0,
                    rusqlite::types::Type::Text,
                    format!("unknown rollout state {other:?}").into(),
                ))
            }
        })
    }
}

/// A rollout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutRecord {
    /// Id.
    pub id: i64,
    /// Fleet.
    pub fleet: String,
    /// Pipeline.
    pub pipeline: String,
    /// Channel whose move started it.
    pub channel: String,
    /// Build rolled out.
    pub build_id: i64,
    /// `host/repo@sha256:…`.
    pub image: String,
    /// Where it stands.
    pub state: RolloutState,
    /// Why it failed.
    pub reason: Option<String>,
    /// What started it.
    pub trigger: String,
    /// Queued at.
    pub created_at: DateTime<Utc>,
    /// Started at.
    pub started_at: Option<DateTime<Utc>>,
    /// Ended at.
    pub finished_at: Option<DateTime<Utc>>,
    /// Per node: (ordinal, image before, settled).
    pub nodes: Vec<(u32, Option<String>, bool)>,
}

/// A recorded step or gate result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutStep {
    /// Id.
    pub id: i64,
    /// Node, if the step is about one.
    pub ordinal: Option<u32>,
    /// When.
    pub at: DateTime<Utc>,
    /// `update`, `gate`, `gate_passed`, `gate_failed`, `rollback`, `wait`…
    pub kind: String,
    /// What happened.
    pub detail: String,
}

const COLUMNS: &str = "id, fleet, pipeline, channel, build_id, image, state, reason, trigger,
    created_at, started_at, finished_at";

fn rollout_by_id(conn: &Connection, id: i64) -> Result<RolloutRecord, StoreError> {
    let nodes = conn
        .prepare(
            "SELECT ordinal, before_image, settled FROM rollout_nodes WHERE rollout_id = ?1 ORDER BY ordinal",
        )?
        .query_map(params![id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(conn.query_row(
        &format!("SELECT {COLUMNS} FROM rollouts WHERE id = ?1"),
        params![id],
        |r| {
            let state: String = r.get(6)?;
            Ok(RolloutRecord {
                id: r.get(0)?,
                fleet: r.get(1)?,
                pipeline: r.get(2)?,
                channel: r.get(3)?,
                build_id: r.get(4)?,
                image: r.get(5)?,
                state: RolloutState::parse(&state)?,
                reason: r.get(7)?,
                trigger: r.get(8)?,
                created_at: r.get(9)?,
                started_at: r.get(10)?,
                finished_at: r.get(11)?,
                nodes,
            })
        },
    )?)
}

impl Store {
    /// Queues a rollout of `fleet` to `image`; queued rollouts of the same
    /// fleet that never started are superseded by it.
    #[allow(clippy::too_many_arguments)]
    pub fn queue_rollout(
        &self,
        fleet: &str,
        pipeline: &str,
        channel: &str,
        build_id: i64,
        image: &str,
        trigger: &str,
    ) -> Result<RolloutRecord, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let at = now();
        tx.execute(
            "UPDATE rollouts SET state = 'superseded', finished_at = ?2,
                reason = 'a newer rollout of this fleet was queued'
             WHERE fleet = ?1 AND state = 'queued'",
            params![fleet, at],
        )?;
        tx.execute(
            "INSERT INTO rollouts (fleet, pipeline, channel, build_id, image, state, trigger, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, 'queued', ?6, ?7)",
            params![fleet, pipeline, channel, build_id, image, trigger, at],
        )?;
        let id = tx.last_insert_rowid();
        let r = rollout_by_id(&tx, id)?;
        tx.commit()?;
        Ok(r)
    }

    /// Starts a queued rollout, recording what each node ran before it.
    pub fn begin_rollout(
        &self,
        id: i64,
        before: &[(u32, Option<String>)],
    ) -> Result<RolloutRecord, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        tx.execute(
            "UPDATE rollouts SET state = 'running', started_at = ?2 WHERE id = ?1 AND state = 'queued'",
            params![id, now()],
        )?;
        for (ordinal, image) in before {
            tx.execute(
                "INSERT OR IGNORE INTO rollout_nodes (rollout_id, ordinal, before_image, settled)
                 VALUES (?1, ?2, ?3, 0)",
                params![id, ordinal, image],
            )?;
        }
        let r = rollout_by_id(&tx, id)?;
        tx.commit()?;
        Ok(r)
    }

    /// A rollout by id.
    pub fn rollout(&self, id: i64) -> Result<Option<RolloutRecord>, StoreError> {
        let conn = self.lock();
        let exists: Option<i64> = conn
            .query_row("SELECT id FROM rollouts WHERE id = ?1", params![id], |r| {
                r.get(0)
            })
            .optional()?;
        exists.map(|id| rollout_by_id(&conn, id)).transpose()
    }

    /// Rollouts, newest first, of one fleet or all.
    pub fn rollouts(
        &self,
        fleet: Option<&str>,
        limit: u32,
    ) -> Result<Vec<RolloutRecord>, StoreError> {
        let conn = self.lock();
        let ids: Vec<i64> = conn
            .prepare("SELECT id FROM rollouts WHERE (?1 IS NULL OR fleet = ?1) ORDER BY id DESC LIMIT ?2")?
            .query_map(params![fleet, limit], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        ids.into_iter().map(|id| rollout_by_id(&conn, id)).collect()
    }

    /// The rollout to work on: one running, rolling back or paused (there
    /// is at most one), else the oldest queued.
    pub fn current_rollout(&self) -> Result<Option<RolloutRecord>, StoreError> {
        let conn = self.lock();
        let id: Option<i64> = conn
            .query_row(
                "SELECT id FROM rollouts WHERE state IN ('running', 'rolling_back', 'paused')
                 UNION ALL SELECT * FROM (SELECT id FROM rollouts WHERE state = 'queued' ORDER BY id LIMIT 1)
                 LIMIT 1",
                [],
                |r| r.get(0),
            )
            .optional()?;
        id.map(|id| rollout_by_id(&conn, id)).transpose()
    }

    /// Sets a rollout's state (and reason) if it is in one of `from`;
    /// final states also set the end time. Returns whether it changed: a
    /// pause or undo that landed first wins over the engine's write.
    pub fn set_rollout_state(
        &self,
        id: i64,
        from: &[RolloutState],
        state: RolloutState,
        reason: Option<&str>,
    ) -> Result<bool, StoreError> {
        let finished = state.is_final().then(now);
        let from: Vec<&str> = from.iter().map(|s| s.as_str()).collect();
        Ok(self.lock().execute(
            "UPDATE rollouts SET state = ?2, reason = COALESCE(?3, reason),
                finished_at = COALESCE(?4, finished_at)
             WHERE id = ?1 AND state IN (SELECT value FROM json_each(?5))",
            params![
                id,
                state.as_str(),
                reason,
                finished,
                serde_json::to_string(&from).unwrap_or_default()
            ],
        )? == 1)
    }

    /// Pauses a rollout, remembering which way it was going.
    pub fn pause_rollout(&self, id: i64) -> Result<bool, StoreError> {
        Ok(self.lock().execute(
            "UPDATE rollouts SET paused_from = state, state = 'paused'
             WHERE id = ?1 AND state IN ('running', 'rolling_back')",
            params![id],
        )? == 1)
    }

    /// Resumes a paused rollout the way it was going.
    pub fn resume_rollout(&self, id: i64) -> Result<bool, StoreError> {
        Ok(self.lock().execute(
            "UPDATE rollouts SET state = COALESCE(paused_from, 'running'), paused_from = NULL
             WHERE id = ?1 AND state = 'paused'",
            params![id],
        )? == 1)
    }

    /// Undoes a rollout in one step: a queued one is superseded; a running
    /// or paused one turns back, every node to be restored and held to its
    /// gates again. Returns the state it was in, or None when it was in no
    /// state an undo applies to (it ended meanwhile).
    pub fn undo_rollout(&self, id: i64) -> Result<Option<RolloutState>, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let state: Option<String> = tx
            .query_row(
                "SELECT state FROM rollouts WHERE id = ?1",
                params![id],
                |r| r.get(0),
            )
            .optional()?;
        let Some(state) = state.map(|s| RolloutState::parse(&s)).transpose()? else {
            return Ok(None);
        };
        let changed = match state {
            RolloutState::Queued => tx.execute(
                "UPDATE rollouts SET state = 'superseded', finished_at = ?2,
                    reason = 'undone by an operator before it started'
                 WHERE id = ?1 AND state = 'queued'",
                params![id, now()],
            )?,
            RolloutState::Running | RolloutState::Paused => {
                let n = tx.execute(
                    "UPDATE rollouts SET state = 'rolling_back', paused_from = NULL,
                        reason = COALESCE(reason, 'undone by an operator')
                     WHERE id = ?1 AND state IN ('running', 'paused')",
                    params![id],
                )?;
                tx.execute(
                    "UPDATE rollout_nodes SET settled = 0 WHERE rollout_id = ?1",
                    params![id],
                )?;
                n
            }
            _ => 0,
        };
        tx.commit()?;
        Ok((changed == 1).then_some(state))
    }

    /// Records whether a node has settled (passed its gates since it changed).
    pub fn set_node_settled(&self, id: i64, ordinal: u32, settled: bool) -> Result<(), StoreError> {
        self.lock().execute(
            "UPDATE rollout_nodes SET settled = ?3 WHERE rollout_id = ?1 AND ordinal = ?2",
            params![id, ordinal, settled],
        )?;
        Ok(())
    }

    /// Claims a node for a change: marks it unsettled only if the rollout
    /// is still `state`. The engine calls this immediately before it
    /// touches a node, so a pause or undo recorded before is never
    /// overtaken (the claim fails and the engine reads the rollout again).
    pub fn claim_node(
        &self,
        id: i64,
        ordinal: u32,
        state: RolloutState,
    ) -> Result<bool, StoreError> {
        Ok(self.lock().execute(
            "UPDATE rollout_nodes SET settled = 0 WHERE rollout_id = ?1 AND ordinal = ?2
               AND EXISTS (SELECT 1 FROM rollouts WHERE id = ?1 AND state = ?3)",
            params![id, ordinal, state.as_str()],
        )? == 1)
    }

    /// Turns a running rollout back: state `rolling_back` with the reason,
    /// and each node settled exactly when `settled` says (those never
    /// touched). With `gate_failed` (the gate's reason), the rollout's image
    /// is marked known-bad in the same transaction. Returns false (and
    /// changes nothing) unless it was running.
    pub fn turn_rollout_back(
        &self,
        id: i64,
        reason: &str,
        settled: &[(u32, bool)],
        gate_failed: Option<&str>,
    ) -> Result<bool, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let n = tx.execute(
            "UPDATE rollouts SET state = 'rolling_back', reason = ?2 WHERE id = ?1 AND state = 'running'",
            params![id, reason],
        )?;
        if n == 1 {
            if let Some(why) = gate_failed {
                tx.execute(
                    "INSERT OR IGNORE INTO known_bad (index_digest, pipeline, build_id, fleet, rollout_id, reason, at)
                     SELECT b.index_digest, b.pipeline, b.id, r.fleet, r.id, ?2, ?3
                     FROM rollouts r JOIN builds b ON b.id = r.build_id
                     WHERE r.id = ?1 AND b.index_digest IS NOT NULL",
                    params![id, why, now()],
                )?;
            }
            for (ordinal, s) in settled {
                tx.execute(
                    "UPDATE rollout_nodes SET settled = ?3 WHERE rollout_id = ?1 AND ordinal = ?2",
                    params![id, ordinal, s],
                )?;
            }
        }
        tx.commit()?;
        Ok(n == 1)
    }

    /// Records a step.
    pub fn rollout_step(
        &self,
        id: i64,
        ordinal: Option<u32>,
        kind: &str,
        detail: &str,
    ) -> Result<(), StoreError> {
        self.lock().execute(
            "INSERT INTO rollout_steps (rollout_id, ordinal, at, kind, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![id, ordinal, now(), kind, detail],
        )?;
        Ok(())
    }

    /// A rollout's steps, oldest first.
    pub fn rollout_steps(&self, id: i64) -> Result<Vec<RolloutStep>, StoreError> {
        let conn = self.lock();
        let rows = conn
            .prepare(
                "SELECT id, ordinal, at, kind, detail FROM rollout_steps WHERE rollout_id = ?1 ORDER BY id",
            )?
            .query_map(params![id], |r| {
                Ok(RolloutStep {
                    id: r.get(0)?,
                    ordinal: r.get(1)?,
                    at: r.get(2)?,
                    kind: r.get(3)?,
                    detail: r.get(4)?,
                })
            })?
            .collect::<Result<_, _>>()?;
        Ok(rows)
    }
}
