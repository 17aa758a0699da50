//! Syncs in the state store: each sync of a pipeline, how it ended and what
//! it received; a sync's ref changes land in the same transaction as its
//! end (see [`super::refs`]).

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection};
use serde::{Deserialize, Serialize};

use super::{now, refs::apply_change, Store, StoreError};
use crate::refplan::{ChangeKind, Observed};

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

impl Store {
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

    /// Syncs by pipeline and status (for metrics).
    pub fn sync_counts(&self) -> Result<Vec<(String, String, i64)>, StoreError> {
        let conn = self.lock();
        let rows = conn
            .prepare("SELECT pipeline, status, COUNT(*) FROM syncs GROUP BY pipeline, status")?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<Result<_, _>>()?;
        Ok(rows)
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
