//! Refs in the state store: each ref of a pipeline as the last sync saw it,
//! with its verdict and any acknowledgement, and every change to it.

use chrono::{DateTime, Utc};
use rusqlite::{params, OptionalExtension, Transaction};
use serde::{Deserialize, Serialize};

use super::{now, Store, StoreError};
use crate::{
    refplan::{ChangeKind, Observed, RefKind, RefState, JUDGED_BY},
    signature::Verdict,
};

/// A ref as the store knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredRef {
    /// Pipeline.
    pub pipeline: String,
    /// Full ref name.
    pub name: String,
    /// Annotated tag, lightweight tag or branch.
    pub kind: RefKind,
    /// What the ref points at upstream (tag object or commit).
    pub oid: String,
    /// The commit it resolves to (empty when none: verdict `not_a_commit`).
    pub commit: String,
    /// Active, moved (awaiting acknowledgement) or deleted upstream.
    pub state: RefState,
    /// Signature verdict of `oid`.
    pub verdict: Verdict,
    /// The oid before a move, kept in the mirror.
    pub previous_oid: Option<String>,
    /// First seen.
    pub first_seen: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// When an operator acknowledged a move.
    pub acknowledged_at: Option<DateTime<Utc>>,
    /// Who acknowledged it.
    pub acknowledged_by: Option<String>,
    /// The object the acknowledgement accepted.
    #[serde(default)]
    pub acknowledged_oid: Option<String>,
    /// The verification rules the verdict was reached by
    /// ([`crate::refplan::JUDGED_BY`] when current).
    #[serde(default)]
    pub judged_by: i64,
}

/// A recorded change to a ref.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefEvent {
    /// The sync that saw it (None for operator actions).
    pub sync_id: Option<i64>,
    /// Ref name.
    pub name: String,
    /// `added`, `moved`, `deleted`, `restored`, `updated`, `acknowledged`.
    pub event: String,
    /// Before.
    pub old_oid: Option<String>,
    /// After.
    pub new_oid: Option<String>,
    /// Verdict after.
    pub verdict: Option<String>,
    /// Who (operator actions).
    pub actor: Option<String>,
    /// When.
    pub at: DateTime<Utc>,
}

impl Store {
    /// The refs of a pipeline, by name.
    pub fn refs(&self, pipeline: &str) -> Result<Vec<StoredRef>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn.prepare(
            "SELECT pipeline, name, kind, oid, commit_oid, state, verdict_json, previous_oid,
                    first_seen, updated_at, acknowledged_at, acknowledged_by,
                    acknowledged_oid, judged_by
             FROM refs WHERE pipeline = ?1 ORDER BY name",
        )?;
        let rows = stmt.query_map(params![pipeline], row_to_ref)?;
        rows.map(|r| r.map_err(StoreError::from).and_then(|r| r))
            .collect()
    }

    /// One ref.
    pub fn get_ref(&self, pipeline: &str, name: &str) -> Result<Option<StoredRef>, StoreError> {
        let conn = self.lock();
        conn.query_row(
            "SELECT pipeline, name, kind, oid, commit_oid, state, verdict_json, previous_oid,
                    first_seen, updated_at, acknowledged_at, acknowledged_by,
                    acknowledged_oid, judged_by
             FROM refs WHERE pipeline = ?1 AND name = ?2",
            params![pipeline, name],
            row_to_ref,
        )
        .optional()?
        .transpose()
    }

    /// The recorded history of a ref, oldest first.
    pub fn ref_events(&self, pipeline: &str, name: &str) -> Result<Vec<RefEvent>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn.prepare(
            "SELECT sync_id, name, event, old_oid, new_oid, verdict, actor, at FROM ref_events
             WHERE pipeline = ?1 AND name = ?2 ORDER BY id",
        )?;
        let rows = stmt.query_map(params![pipeline, name], |r| {
            Ok(RefEvent {
                sync_id: r.get(0)?,
                name: r.get(1)?,
                event: r.get(2)?,
                old_oid: r.get(3)?,
                new_oid: r.get(4)?,
                verdict: r.get(5)?,
                actor: r.get(6)?,
                at: r.get(7)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Acknowledges a moved tag: it becomes active again, so its new target may
    /// be built once verified. The old target stays recorded in `previous_oid`;
    /// the object accepted is recorded in `acknowledged_oid`.
    ///
    /// An acknowledgement binds to an object, not a name: with `oid`, the ref
    /// must point at that object now; without, the ref must not have moved
    /// again since it was flagged (the object an operator reviewed after the
    /// first move may not be the one there now). Checked in the same
    /// transaction as the write, so a sync in between cannot slip past it.
    ///
    /// # Errors
    /// [`StoreError::NoSuchRef`] when the ref is unknown;
    /// [`StoreError::AckRefused`], naming the current object, when it does
    /// not match or the ref moved again.
    pub fn acknowledge(
        &self,
        pipeline: &str,
        name: &str,
        oid: Option<&str>,
        actor: &str,
    ) -> Result<StoredRef, StoreError> {
        let no_such_ref = || StoreError::NoSuchRef {
            pipeline: pipeline.into(),
            name: name.into(),
        };
        {
            let mut conn = self.lock();
            let tx = conn.transaction()?;
            let at = now();
            let current: String = tx
                .query_row(
                    "SELECT oid FROM refs WHERE pipeline = ?1 AND name = ?2",
                    params![pipeline, name],
                    |r| r.get(0),
                )
                .optional()?
                .ok_or_else(no_such_ref)?;
            let refused = |reason: String| StoreError::AckRefused {
                pipeline: pipeline.into(),
                name: name.into(),
                current_oid: current.clone(),
                reason,
            };
            match oid {
                // A prefix of 7 or more hex digits (as `habctl refs` shows
                // 12), in either case; anything shorter is ambiguous.
                Some(asked)
                    if asked.len() < 7 || !current.starts_with(&asked.to_ascii_lowercase()) =>
                {
                    return Err(refused(format!(
                        "--oid {asked} is not the object it points at"
                    )));
                }
                Some(_) => {}
                None => {
                    let moves: i64 = tx.query_row(
                        "SELECT COUNT(*) FROM ref_events
                         WHERE pipeline = ?1 AND name = ?2 AND event = 'moved'
                           AND id > COALESCE((SELECT MAX(id) FROM ref_events
                                              WHERE pipeline = ?1 AND name = ?2
                                                AND event = 'acknowledged'), 0)",
                        params![pipeline, name],
                        |r| r.get(0),
                    )?;
                    if moves > 1 {
                        return Err(refused(format!(
                            "it moved {moves} times since it was flagged, so the object reviewed may not be the one there now"
                        )));
                    }
                }
            }
            tx.execute(
                "UPDATE refs SET acknowledged_at = ?3, acknowledged_by = ?4, updated_at = ?3,
                        acknowledged_oid = ?5,
                        state = CASE WHEN state = 'moved' THEN 'active' ELSE state END
                 WHERE pipeline = ?1 AND name = ?2",
                params![pipeline, name, at, actor, current],
            )?;
            tx.execute(
                "INSERT INTO ref_events (pipeline, name, event, new_oid, actor, at)
                 VALUES (?1, ?2, 'acknowledged', ?3, ?4, ?5)",
                params![pipeline, name, current, actor, at],
            )?;
            tx.commit()?;
        }
        self.get_ref(pipeline, name)?.ok_or_else(no_such_ref)
    }
}

fn row_to_ref(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<StoredRef, StoreError>> {
    let pipeline: String = r.get(0)?;
    let name: String = r.get(1)?;
    let kind: String = r.get(2)?;
    let state: String = r.get(5)?;
    let verdict_json: String = r.get(6)?;
    let verdict = match serde_json::from_str(&verdict_json) {
        Ok(v) => v,
        Err(source) => {
            return Ok(Err(StoreError::Verdict {
                pipeline,
                name,
                source,
            }))
        }
    };
    Ok(Ok(StoredRef {
        kind: RefKind::from_db(&kind),
        oid: r.get(3)?,
        commit: r.get(4)?,
        state: RefState::from_db(&state),
        verdict,
        previous_oid: r.get(7)?,
        first_seen: r.get(8)?,
        updated_at: r.get(9)?,
        acknowledged_at: r.get(10)?,
        acknowledged_by: r.get(11)?,
        acknowledged_oid: r.get(12)?,
        judged_by: r.get(13)?,
        pipeline,
        name,
    }))
}

pub(super) fn apply_change(
    tx: &Transaction<'_>,
    sync_id: i64,
    pipeline: &str,
    observed: &Observed,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    let change = &observed.change;
    let verdict = observed.verdict.as_ref();
    let event = change.kind.as_str();
    match (&change.kind, verdict, &observed.target) {
        (ChangeKind::Deleted, _, _) => {
            tx.execute(
                "UPDATE refs SET state = 'deleted', updated_at = ?3 WHERE pipeline = ?1 AND name = ?2",
                params![pipeline, change.name, at],
            )?;
        }
        (ChangeKind::Rejudged, Some(v), Some(new)) => {
            // Same object, new rules: only the verdict changes; a moved tag
            // stays flagged, an acknowledgement stays.
            tx.execute(
                "UPDATE refs SET kind = ?3, commit_oid = ?4, verdict = ?5, verdict_json = ?6,
                        signer = ?7, judged_by = ?8, updated_at = ?9
                 WHERE pipeline = ?1 AND name = ?2",
                params![
                    pipeline,
                    change.name,
                    new.kind.as_str(),
                    new.commit,
                    v.kind(),
                    serde_json::to_string(v).expect("verdicts serialize"),
                    v.signer(),
                    JUDGED_BY,
                    at
                ],
            )?;
        }
        (_, Some(v), Some(new)) => {
            let json = serde_json::to_string(v).expect("verdicts serialize");
            // A move keeps the first oid seen before it (what was verified and
            // possibly built), and clears any earlier acknowledgement.
            let (state, previous, clear_ack) = match change.kind {
                ChangeKind::Moved => ("moved", change.old_oid.clone(), true),
                _ => ("active", None, false),
            };
            tx.execute(
                "INSERT INTO refs (pipeline, name, kind, oid, commit_oid, state, verdict,
                                   verdict_json, signer, previous_oid, first_seen, updated_at,
                                   judged_by)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?11, ?13)
                 ON CONFLICT (pipeline, name) DO UPDATE SET
                    kind = excluded.kind, oid = excluded.oid, commit_oid = excluded.commit_oid,
                    state = excluded.state, verdict = excluded.verdict,
                    verdict_json = excluded.verdict_json, signer = excluded.signer,
                    judged_by = excluded.judged_by,
                    acknowledged_oid = CASE WHEN ?12 THEN NULL ELSE refs.acknowledged_oid END,
                    previous_oid = CASE WHEN NOT ?12 THEN NULL
                                        WHEN refs.state = 'moved' THEN COALESCE(refs.previous_oid, excluded.previous_oid)
                                        ELSE excluded.previous_oid END,
                    acknowledged_at = CASE WHEN ?12 THEN NULL ELSE refs.acknowledged_at END,
                    acknowledged_by = CASE WHEN ?12 THEN NULL ELSE refs.acknowledged_by END,
                    updated_at = excluded.updated_at",
                params![
                    pipeline,
                    change.name,
                    new.kind.as_str(),
                    new.oid,
                    new.commit,
                    state,
                    v.kind(),
                    json,
                    v.signer(),
                    previous,
                    at,
                    clear_ack,
                    JUDGED_BY,
                ],
            )?;
        }
        _ => unreachable!("only deletions come without a target and verdict"),
    }
    tx.execute(
        "INSERT INTO ref_events (sync_id, pipeline, name, event, old_oid, new_oid, verdict, at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            sync_id,
            pipeline,
            change.name,
            event,
            change.old_oid,
            change.new_oid,
            verdict.map(Verdict::kind),
            at
        ],
    )?;
    Ok(())
}
