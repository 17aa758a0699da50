//! The state store: one SQLite file under the state folder.
//!
//! Every write that belongs together is one transaction, so a crash leaves the
//! previous consistent state: a sync's ref changes, events and outcome land
//! together or not at all. Schema changes are numbered migrations tracked in
//! `PRAGMA user_version`. rusqlite is blocking: async callers go through
//! `spawn_blocking`.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension, Transaction};
use serde::{Deserialize, Serialize};

mod builds;
mod channels;
mod queue;
mod rollouts;

pub use builds::{
    BuildRecord, BuildState, KeyRecord, LogLine, NewBuild, NewPlatform, PlatformRecord,
    PlatformUpdate, VerificationRecord,
};
pub use channels::{ChannelMove, ChannelState, KnownBad, MoveRefused};
pub use queue::{
    Delivery, Enqueue, Enqueued, ItemState, Joined, QueueItem, QueueKind, TriggerRecord,
};
pub use rollouts::{RolloutRecord, RolloutState, RolloutStep};

use crate::{
    refplan::{ChangeKind, Observed, RefKind, RefState, JUDGED_BY},
    verify::Verdict,
};

/// Store errors.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be opened or migrated.
    #[error("cannot open state store {path}: {source}")]
    Open {
        /// The file.
        path: PathBuf,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// The disk holding the store is full: the write was rolled back.
    #[error("no space left on device for the state store ({0}): nothing of this change was recorded; free space in the state folder's filesystem and try again")]
    DiskFull(rusqlite::Error),
    /// A query failed.
    #[error("state store: {0}")]
    Sql(rusqlite::Error),
    /// A stored verdict did not parse (the database was edited by hand?).
    #[error("state store holds a malformed verdict for {pipeline} {name}: {source}")]
    Verdict {
        /// Pipeline.
        pipeline: String,
        /// Ref name.
        name: String,
        /// JSON error.
        source: serde_json::Error,
    },
    /// The blocking task running a store call died.
    #[error("state store task failed: {0}")]
    Task(String),
    /// An acknowledgement that does not name what the ref points at now.
    #[error("{name} of {pipeline} was not acknowledged: {reason}; it now points at {current_oid}: review that object (habctl refs {pipeline}) and acknowledge it with --oid {current_oid}")]
    AckRefused {
        /// Pipeline.
        pipeline: String,
        /// Ref name.
        name: String,
        /// What the ref points at now.
        current_oid: String,
        /// Why.
        reason: String,
    },
    /// No such ref.
    #[error("pipeline {pipeline} has no ref {name}")]
    NoSuchRef {
        /// Pipeline.
        pipeline: String,
        /// Ref name.
        name: String,
    },
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        // SQLite says "database or disk is full"; an operator needs to know
        // it is the disk, and that nothing was half written.
        if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull) {
            StoreError::DiskFull(e)
        } else {
            StoreError::Sql(e)
        }
    }
}

/// Numbered migrations; `user_version` is the count applied. Append only.
const MIGRATIONS: &[&str] = &[
    // 1: syncs, refs and their history.
    "CREATE TABLE syncs (
        id INTEGER PRIMARY KEY,
        pipeline TEXT NOT NULL,
        trigger TEXT NOT NULL,
        started_at TEXT NOT NULL,
        finished_at TEXT,
        status TEXT NOT NULL CHECK (status IN ('running', 'ok', 'failed', 'interrupted')),
        error TEXT,
        objects_received INTEGER NOT NULL DEFAULT 0,
        bytes_received INTEGER NOT NULL DEFAULT 0,
        added INTEGER NOT NULL DEFAULT 0,
        moved INTEGER NOT NULL DEFAULT 0,
        deleted INTEGER NOT NULL DEFAULT 0
     );
     CREATE INDEX syncs_pipeline ON syncs (pipeline, id);
     CREATE TABLE refs (
        pipeline TEXT NOT NULL,
        name TEXT NOT NULL,
        kind TEXT NOT NULL,
        oid TEXT NOT NULL,
        commit_oid TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('active', 'moved', 'deleted')),
        verdict TEXT NOT NULL,
        verdict_json TEXT NOT NULL,
        signer TEXT,
        previous_oid TEXT,
        first_seen TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        acknowledged_at TEXT,
        acknowledged_by TEXT,
        PRIMARY KEY (pipeline, name)
     );
     CREATE TABLE ref_events (
        id INTEGER PRIMARY KEY,
        sync_id INTEGER REFERENCES syncs (id),
        pipeline TEXT NOT NULL,
        name TEXT NOT NULL,
        event TEXT NOT NULL,
        old_oid TEXT,
        new_oid TEXT,
        verdict TEXT,
        actor TEXT,
        at TEXT NOT NULL
     );
     CREATE INDEX ref_events_ref ON ref_events (pipeline, name, id);",
    // 2: builds, their platforms and logs, verified build keys, verifications.
    "CREATE TABLE builds (
        id INTEGER PRIMARY KEY,
        pipeline TEXT NOT NULL,
        ref_name TEXT NOT NULL,
        commit_oid TEXT NOT NULL,
        version TEXT NOT NULL,
        signer TEXT,
        trigger TEXT NOT NULL,
        repository TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('queued', 'building', 'publishing', 'verifying',
            'verified', 'failed', 'cancelled', 'interrupted')),
        reason TEXT,
        index_digest TEXT,
        created_at TEXT NOT NULL,
        finished_at TEXT,
        verified_at TEXT
     );
     CREATE INDEX builds_pipeline ON builds (pipeline, id);
     CREATE TABLE build_platforms (
        build_id INTEGER NOT NULL REFERENCES builds (id),
        platform TEXT NOT NULL,
        builder TEXT NOT NULL,
        build_key TEXT NOT NULL,
        stage TEXT NOT NULL,
        reused INTEGER NOT NULL DEFAULT 0,
        image_id TEXT,
        manifest_digest TEXT,
        manifest_size INTEGER,
        manifest_media_type TEXT,
        bytes_total INTEGER NOT NULL DEFAULT 0,
        bytes_pushed INTEGER NOT NULL DEFAULT 0,
        blobs_skipped INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (build_id, platform)
     );
     CREATE TABLE build_logs (
        build_id INTEGER NOT NULL REFERENCES builds (id),
        seq INTEGER NOT NULL,
        platform TEXT,
        at TEXT NOT NULL,
        line TEXT NOT NULL,
        PRIMARY KEY (build_id, seq)
     );
     CREATE TABLE build_keys (
        build_key TEXT PRIMARY KEY,
        platform TEXT NOT NULL,
        repository TEXT NOT NULL,
        manifest_digest TEXT NOT NULL,
        manifest_size INTEGER NOT NULL,
        manifest_media_type TEXT NOT NULL,
        build_id INTEGER NOT NULL REFERENCES builds (id),
        verified_at TEXT NOT NULL
     );
     CREATE TABLE verifications (
        id INTEGER PRIMARY KEY,
        build_id INTEGER REFERENCES builds (id),
        reference TEXT NOT NULL,
        at TEXT NOT NULL,
        ok INTEGER NOT NULL,
        reason TEXT,
        report TEXT NOT NULL
     );",
    // 3: release channels and every move of them.
    "CREATE TABLE channels (
        pipeline TEXT NOT NULL,
        name TEXT NOT NULL,
        build_id INTEGER NOT NULL REFERENCES builds (id),
        index_digest TEXT NOT NULL,
        moved_at TEXT NOT NULL,
        moved_by TEXT NOT NULL,
        reason TEXT,
        PRIMARY KEY (pipeline, name)
     );
     CREATE TABLE channel_moves (
        id INTEGER PRIMARY KEY,
        pipeline TEXT NOT NULL,
        channel TEXT NOT NULL,
        from_build INTEGER REFERENCES builds (id),
        to_build INTEGER NOT NULL REFERENCES builds (id),
        index_digest TEXT NOT NULL,
        at TEXT NOT NULL,
        by TEXT NOT NULL,
        reason TEXT
     );
     CREATE INDEX channel_moves_channel ON channel_moves (pipeline, channel, id);",
    // 4: rollouts, their nodes and every step and gate result.
    "CREATE TABLE rollouts (
        id INTEGER PRIMARY KEY,
        fleet TEXT NOT NULL,
        pipeline TEXT NOT NULL,
        channel TEXT NOT NULL,
        build_id INTEGER NOT NULL REFERENCES builds (id),
        image TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('queued', 'running', 'rolling_back', 'paused',
            'succeeded', 'failed', 'superseded')),
        paused_from TEXT,
        reason TEXT,
        trigger TEXT NOT NULL,
        created_at TEXT NOT NULL,
        started_at TEXT,
        finished_at TEXT
     );
     CREATE INDEX rollouts_fleet ON rollouts (fleet, id);
     CREATE TABLE rollout_nodes (
        rollout_id INTEGER NOT NULL REFERENCES rollouts (id),
        ordinal INTEGER NOT NULL,
        before_image TEXT,
        settled INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (rollout_id, ordinal)
     );
     CREATE TABLE rollout_steps (
        id INTEGER PRIMARY KEY,
        rollout_id INTEGER NOT NULL REFERENCES rollouts (id),
        ordinal INTEGER,
        at TEXT NOT NULL,
        kind TEXT NOT NULL,
        detail TEXT NOT NULL
     );
     CREATE INDEX rollout_steps_rollout ON rollout_steps (rollout_id, id);",
    // 5: the trigger queue, every trigger received, webhook deliveries seen,
    // and the last slot each schedule fired for.
    "CREATE TABLE queue (
        id INTEGER PRIMARY KEY,
        pipeline TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('sync', 'rebuild', 'build')),
        ref_name TEXT NOT NULL DEFAULT '',
        state TEXT NOT NULL CHECK (state IN ('pending', 'running', 'done', 'failed')),
        due_at TEXT NOT NULL,
        created_at TEXT NOT NULL,
        started_at TEXT,
        finished_at TEXT,
        triggers INTEGER NOT NULL DEFAULT 1,
        source TEXT NOT NULL,
        result TEXT,
        error TEXT
     );
     CREATE UNIQUE INDEX queue_one_pending ON queue (pipeline, kind, ref_name) WHERE state = 'pending';
     CREATE INDEX queue_state ON queue (state, due_at);
     CREATE TABLE triggers (
        id INTEGER PRIMARY KEY,
        queue_id INTEGER NOT NULL REFERENCES queue (id),
        pipeline TEXT NOT NULL,
        kind TEXT NOT NULL,
        ref_name TEXT NOT NULL DEFAULT '',
        source TEXT NOT NULL,
        detail TEXT,
        at TEXT NOT NULL
     );
     CREATE INDEX triggers_queue ON triggers (queue_id);
     CREATE INDEX triggers_pipeline ON triggers (pipeline, id);
     CREATE TABLE deliveries (
        provider TEXT NOT NULL,
        delivery TEXT NOT NULL,
        pipeline TEXT NOT NULL,
        event TEXT NOT NULL,
        queue_id INTEGER REFERENCES queue (id),
        at TEXT NOT NULL,
        PRIMARY KEY (provider, delivery)
     );
     CREATE TABLE schedule_runs (
        pipeline TEXT NOT NULL,
        kind TEXT NOT NULL,
        last_slot TEXT NOT NULL,
        fired_at TEXT NOT NULL,
        PRIMARY KEY (pipeline, kind)
     );",
    // 6: an acknowledgement names the object it accepts; every verdict
    // names the rules it was judged by (0: before tag binding and the
    // OpenPGP policy), so a sync judges older ones again.
    "ALTER TABLE refs ADD COLUMN acknowledged_oid TEXT;
     ALTER TABLE refs ADD COLUMN judged_by INTEGER NOT NULL DEFAULT 0;",
    // 7: images whose rollout failed its gates, by index digest (a reuse
    // of the same image is the same bad image), with the fleet and why.
    "CREATE TABLE known_bad (
        index_digest TEXT PRIMARY KEY,
        pipeline TEXT NOT NULL,
        build_id INTEGER NOT NULL REFERENCES builds (id),
        fleet TEXT NOT NULL,
        rollout_id INTEGER REFERENCES rollouts (id),
        reason TEXT NOT NULL,
        at TEXT NOT NULL
     );",
];

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

/// What a finished sync found, applied in one transaction.
#[derive(Debug, Clone, Default)]
pub struct SyncResult {
    /// Objects the fetch received.
    pub objects_received: i64,
    /// Bytes the fetch received.
    pub bytes_received: i64,
    /// The changes, each with its new target and verdict.
    pub changes: Vec<Observed>,
}

/// A recorded sync.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncRecord {
    /// Id.
    pub id: i64,
    /// Pipeline.
    pub pipeline: String,
    /// What started it: the queue's description of its triggers
    /// (`webhook:github (50 triggers), queue 12`, `schedule: */30 * * * * at …`).
    pub trigger: String,
    /// Start.
    pub started_at: DateTime<Utc>,
    /// End.
    pub finished_at: Option<DateTime<Utc>>,
    /// `running`, `ok`, `failed`, `interrupted`.
    pub status: String,
    /// Why it failed.
    pub error: Option<String>,
    /// Objects received.
    pub objects_received: i64,
    /// Bytes received.
    pub bytes_received: i64,
    /// Refs added.
    pub added: i64,
    /// Refs moved.
    pub moved: i64,
    /// Refs deleted.
    pub deleted: i64,
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

/// The store. Cheap to clone; one connection behind a mutex (SQLite serialises
/// writers anyway, and habd's write rate is a handful per minute).
#[derive(Clone)]
pub struct Store {
    conn: Arc<Mutex<Connection>>,
    path: PathBuf,
}

fn now() -> DateTime<Utc> {
    Utc::now()
}

impl Store {
    /// Opens (creating if needed) the store and applies pending migrations.
    ///
    /// # Errors
    /// The file cannot be opened, or a migration fails (nothing of it is applied).
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let open_err = |source| StoreError::Open {
            path: path.to_path_buf(),
            source,
        };
        let mut conn = Connection::open(path).map_err(open_err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(open_err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(open_err)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(open_err)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(open_err)?;
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(open_err)?;
        for (i, sql) in MIGRATIONS
            .iter()
            .enumerate()
            .skip(usize::try_from(version).unwrap_or(0))
        {
            let tx = conn.transaction().map_err(open_err)?;
            tx.execute_batch(sql).map_err(open_err)?;
            tx.pragma_update(None, "user_version", i as i64 + 1)
                .map_err(open_err)?;
            tx.commit().map_err(open_err)?;
        }
        Ok(Store {
            conn: Arc::new(Mutex::new(conn)),
            path: path.to_path_buf(),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Schema version (number of migrations applied).
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        Ok(self
            .lock()
            .pragma_query_value(None, "user_version", |r| r.get(0))?)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite half-written (an open
        // transaction rolls back on drop), so a poisoned lock is safe to reuse.
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Marks syncs left `running` by a previous process as interrupted. Their
    /// changes were never committed.
    pub fn mark_interrupted(&self) -> Result<usize, StoreError> {
        Ok(self.lock().execute(
            "UPDATE syncs SET status = 'interrupted', finished_at = ?1,
                    error = 'habd stopped before the sync finished; nothing of it was applied'
             WHERE status = 'running'",
            params![now()],
        )?)
    }

    /// Records the start of a sync, closing as failed a sync of the same
    /// pipeline whose end could not be recorded.
    pub fn begin_sync(&self, pipeline: &str, trigger: &str) -> Result<i64, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let at = now();
        // A pipeline syncs once at a time, so a sync of it still `running`
        // is one whose end could not be recorded (the store could not
        // write, e.g. a full disk): it is closed now, not left running.
        tx.execute(
            "UPDATE syncs SET status = 'failed', finished_at = ?2,
                error = 'habd could not record how this sync ended (the state store could not write; see habd''s log); nothing of it was applied'
             WHERE pipeline = ?1 AND status = 'running'",
            params![pipeline, at],
        )?;
        tx.execute(
            "INSERT INTO syncs (pipeline, trigger, started_at, status) VALUES (?1, ?2, ?3, 'running')",
            params![pipeline, trigger, at],
        )?;
        let id = tx.last_insert_rowid();
        tx.commit()?;
        Ok(id)
    }

    /// Records a failed sync. Refs are untouched.
    pub fn fail_sync(&self, id: i64, error: &str) -> Result<(), StoreError> {
        self.lock().execute(
            "UPDATE syncs SET status = 'failed', finished_at = ?2, error = ?3 WHERE id = ?1",
            params![id, now(), error],
        )?;
        Ok(())
    }

    /// Applies a sync's changes and marks it done, in one transaction.
    pub fn finish_sync(
        &self,
        id: i64,
        pipeline: &str,
        result: &SyncResult,
    ) -> Result<SyncRecord, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let at = now();
        let (mut added, mut moved, mut deleted) = (0i64, 0i64, 0i64);
        for observed in &result.changes {
            match observed.change.kind {
                ChangeKind::Added | ChangeKind::Restored => added += 1,
                ChangeKind::Moved | ChangeKind::Updated => moved += 1,
                ChangeKind::Deleted => deleted += 1,
                ChangeKind::Rejudged => {}
            }
            apply_change(&tx, id, pipeline, observed, at)?;
        }
        tx.execute(
            "UPDATE syncs SET status = 'ok', finished_at = ?2, objects_received = ?3,
                    bytes_received = ?4, added = ?5, moved = ?6, deleted = ?7
             WHERE id = ?1",
            params![
                id,
                at,
                result.objects_received,
                result.bytes_received,
                added,
                moved,
                deleted
            ],
        )?;
        let record = sync_by_id(&tx, id)?;
        tx.commit()?;
        Ok(record)
    }

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

    /// The most recent syncs of a pipeline, newest first.
    pub fn syncs(&self, pipeline: &str, limit: u32) -> Result<Vec<SyncRecord>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn.prepare(&format!(
            "SELECT {SYNC_COLUMNS} FROM syncs WHERE pipeline = ?1 ORDER BY id DESC LIMIT ?2"
        ))?;
        let rows = stmt.query_map(params![pipeline, limit], row_to_sync)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// One sync.
    pub fn sync(&self, id: i64) -> Result<SyncRecord, StoreError> {
        sync_by_id(&self.lock(), id)
    }
}

const SYNC_COLUMNS: &str = "id, pipeline, trigger, started_at, finished_at, status, error,
    objects_received, bytes_received, added, moved, deleted";

fn sync_by_id(conn: &Connection, id: i64) -> Result<SyncRecord, StoreError> {
    Ok(conn.query_row(
        &format!("SELECT {SYNC_COLUMNS} FROM syncs WHERE id = ?1"),
        params![id],
        row_to_sync,
    )?)
}

fn row_to_sync(r: &rusqlite::Row<'_>) -> rusqlite::Result<SyncRecord> {
    Ok(SyncRecord {
        id: r.get(0)?,
        pipeline: r.get(1)?,
        trigger: r.get(2)?,
        started_at: r.get(3)?,
        finished_at: r.get(4)?,
        status: r.get(5)?,
        error: r.get(6)?,
        objects_received: r.get(7)?,
        bytes_received: r.get(8)?,
        added: r.get(9)?,
        moved: r.get(10)?,
        deleted: r.get(11)?,
    })
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

fn apply_change(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sync_left_running_is_closed_by_the_next_sync_of_its_pipeline() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.sqlite3")).unwrap();
        // Its end was never recorded (the disk was full when it failed).
        let stale = store.begin_sync("a", "test").unwrap();
        let other = store.begin_sync("b", "test").unwrap();
        let next = store.begin_sync("a", "test").unwrap();
        let a = store.syncs("a", 10).unwrap();
        let status = |id: i64, list: &[SyncRecord]| {
            let s = list.iter().find(|s| s.id == id).unwrap();
            (s.status.clone(), s.error.clone())
        };
        let (st, error) = status(stale, &a);
        assert_eq!(st, "failed");
        assert!(error
            .unwrap()
            .contains("could not record how this sync ended"));
        assert_eq!(status(next, &a).0, "running");
        assert_eq!(status(other, &store.syncs("b", 10).unwrap()).0, "running");
    }
}
