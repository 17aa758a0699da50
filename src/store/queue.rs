//! The trigger queue in the state store: one row per unit of work (sync a
//! pipeline, rebuild what it runs, build one ref) and one row per trigger
//! that asked for it. The webhook deliveries already seen (`deliveries`)
//! and the last slot each schedule fired for (`schedules`) land work here
//! through [`enqueue_in`], in their own transaction.
//!
//! Coalescing happens here, inside one transaction: at most one item per
//! (pipeline, kind, ref) is pending (a partial unique index holds that even
//! if two habds shared the file), and a trigger for work already pending
//! joins it instead of adding more.

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension, Transaction};
use serde::{Deserialize, Serialize};

use super::{now, Store, StoreError};

/// What a queue item does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QueueKind {
    /// Fetch the upstream and verify what changed.
    Sync,
    /// Build again what the pipeline's channels run (new base images).
    Rebuild,
    /// Build one ref.
    Build,
}

impl QueueKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            QueueKind::Sync => "sync",
            QueueKind::Rebuild => "rebuild",
            QueueKind::Build => "build",
        }
    }

    fn parse(s: &str) -> rusqlite::Result<Self> {
        Ok(match s {
            "sync" => QueueKind::Sync,
            "rebuild" => QueueKind::Rebuild,
            "build" => QueueKind::Build,
            other => return Err(bad_text(format!("unknown queue kind {other:?}"))),
        })
    }
}

/// Where a queue item stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ItemState {
    /// Waiting for its due time (or for the same work running now to end).
    Pending,
    /// Running.
    Running,
    /// Ran to its end.
    Done,
    /// Could not run, or its work failed (`error` says why).
    Failed,
}

impl ItemState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            ItemState::Pending => "pending",
            ItemState::Running => "running",
            ItemState::Done => "done",
            ItemState::Failed => "failed",
        }
    }

    fn parse(s: &str) -> rusqlite::Result<Self> {
        Ok(match s {
            "pending" => ItemState::Pending,
            "running" => ItemState::Running,
            "done" => ItemState::Done,
            "failed" => ItemState::Failed,
            other => return Err(bad_text(format!("unknown queue state {other:?}"))),
        })
    }
}

fn bad_text(msg: String) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, msg.into())
}

/// One unit of work in the queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueItem {
    /// Id.
    pub id: i64,
    /// Pipeline.
    pub pipeline: String,
    /// What it does.
    pub kind: QueueKind,
    /// The ref, for builds (full name); empty otherwise.
    #[serde(rename = "ref")]
    pub ref_name: String,
    /// Where it stands.
    pub state: ItemState,
    /// Not run before this.
    pub due_at: DateTime<Utc>,
    /// When the first trigger asked for it.
    pub created_at: DateTime<Utc>,
    /// When it started.
    pub started_at: Option<DateTime<Utc>>,
    /// When it ended.
    pub finished_at: Option<DateTime<Utc>>,
    /// How many triggers asked for it (a burst of webhooks is one item).
    pub triggers: i64,
    /// The source of the first trigger (`webhook:github`, `schedule`, ...).
    pub source: String,
    /// What it produced (`{"sync_id": 4}`, `{"build_id": 7, "state": ...}`).
    pub result: Option<serde_json::Value>,
    /// Why it failed.
    pub error: Option<String>,
}

/// One trigger, as received.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TriggerRecord {
    /// Id.
    pub id: i64,
    /// The item it asked for (or joined).
    pub queue_id: i64,
    /// Pipeline.
    pub pipeline: String,
    /// What it asked for.
    pub kind: QueueKind,
    /// The ref, for builds.
    #[serde(rename = "ref")]
    pub ref_name: String,
    /// `webhook:github`, `webhook:gitea`, `webhook:generic`, `schedule`,
    /// `habctl`, `start`, `sync`, `rebuild`, `restart`.
    pub source: String,
    /// The delivery id, the schedule slot, the sync that found the ref...
    pub detail: Option<String>,
    /// When.
    pub at: DateTime<Utc>,
}

/// A request for work.
#[derive(Debug, Clone)]
pub struct Enqueue {
    /// Pipeline.
    pub pipeline: String,
    /// What to do.
    pub kind: QueueKind,
    /// The ref, for builds; empty otherwise.
    pub ref_name: String,
    /// Who asks (see [`TriggerRecord::source`]).
    pub source: String,
    /// Details for the record.
    pub detail: Option<String>,
    /// Not before this. A request joining pending work makes it due no later
    /// than this.
    pub due_at: DateTime<Utc>,
    /// Join the same work when it is running now, rather than queueing more
    /// after it. An operator asking "sync now" joins the sync in flight; a
    /// webhook must not (its push may have landed after that fetch began).
    pub join_running: bool,
}

impl Enqueue {
    /// A request for `kind` work on `pipeline`, due now.
    pub fn new(pipeline: &str, kind: QueueKind, source: &str) -> Self {
        Enqueue {
            pipeline: pipeline.into(),
            kind,
            ref_name: String::new(),
            source: source.into(),
            detail: None,
            due_at: now(),
            join_running: false,
        }
    }
}

/// How a request landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Joined {
    /// A new item.
    New,
    /// Joined an item already pending.
    Pending,
    /// Joined the item running now.
    Running,
}

/// The item a request landed on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Enqueued {
    /// The item.
    pub item: QueueItem,
    /// New, or joined.
    pub joined: Joined,
    /// The trigger's record.
    pub trigger_id: i64,
}

const ITEM_COLUMNS: &str = "id, pipeline, kind, ref_name, state, due_at, created_at, started_at,
    finished_at, triggers, source, result, error";

fn row_to_item(r: &rusqlite::Row<'_>) -> rusqlite::Result<QueueItem> {
    let kind: String = r.get(2)?;
    let state: String = r.get(4)?;
    let result: Option<String> = r.get(11)?;
    Ok(QueueItem {
        id: r.get(0)?,
        pipeline: r.get(1)?,
        kind: QueueKind::parse(&kind)?,
        ref_name: r.get(3)?,
        state: ItemState::parse(&state)?,
        due_at: r.get(5)?,
        created_at: r.get(6)?,
        started_at: r.get(7)?,
        finished_at: r.get(8)?,
        triggers: r.get(9)?,
        source: r.get(10)?,
        result: result.and_then(|s| serde_json::from_str(&s).ok()),
        error: r.get(12)?,
    })
}

fn item_by_id(conn: &Connection, id: i64) -> rusqlite::Result<QueueItem> {
    conn.query_row(
        &format!("SELECT {ITEM_COLUMNS} FROM queue WHERE id = ?1"),
        params![id],
        row_to_item,
    )
}

fn item_in_state(
    conn: &Connection,
    e: &Enqueue,
    state: &str,
) -> rusqlite::Result<Option<QueueItem>> {
    conn.query_row(
        &format!(
            "SELECT {ITEM_COLUMNS} FROM queue
             WHERE pipeline = ?1 AND kind = ?2 AND ref_name = ?3 AND state = ?4
             ORDER BY id DESC LIMIT 1"
        ),
        params![e.pipeline, e.kind.as_str(), e.ref_name, state],
        row_to_item,
    )
    .optional()
}

/// Records the trigger and lands it on an item, inside `tx`.
pub(super) fn enqueue_in(tx: &Transaction<'_>, e: &Enqueue) -> Result<Enqueued, StoreError> {
    let at = now();
    let (item_id, joined) =
        if let Some(running) = item_in_state(tx, e, "running")?.filter(|_| e.join_running) {
            (running.id, Joined::Running)
        } else if let Some(pending) = item_in_state(tx, e, "pending")? {
            let due = pending.due_at.min(e.due_at);
            tx.execute(
                "UPDATE queue SET triggers = triggers + 1, due_at = ?2 WHERE id = ?1",
                params![pending.id, due],
            )?;
            (pending.id, Joined::Pending)
        } else {
            tx.execute(
                "INSERT INTO queue (pipeline, kind, ref_name, state, due_at, created_at, source)
             VALUES (?1, ?2, ?3, 'pending', ?4, ?5, ?6)",
                params![
                    e.pipeline,
                    e.kind.as_str(),
                    e.ref_name,
                    e.due_at,
                    at,
                    e.source
                ],
            )?;
            (tx.last_insert_rowid(), Joined::New)
        };
    if joined == Joined::Running {
        tx.execute(
            "UPDATE queue SET triggers = triggers + 1 WHERE id = ?1",
            params![item_id],
        )?;
    }
    tx.execute(
        "INSERT INTO triggers (queue_id, pipeline, kind, ref_name, source, detail, at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            item_id,
            e.pipeline,
            e.kind.as_str(),
            e.ref_name,
            e.source,
            e.detail,
            at
        ],
    )?;
    let trigger_id = tx.last_insert_rowid();
    Ok(Enqueued {
        item: item_by_id(tx, item_id)?,
        joined,
        trigger_id,
    })
}

impl Store {
    /// Records a trigger and queues its work, or joins the same work already
    /// pending (or running, when `join_running`).
    ///
    /// # Errors
    /// The store fails; nothing is recorded.
    pub fn enqueue(&self, e: &Enqueue) -> Result<Enqueued, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let out = enqueue_in(&tx, e)?;
        tx.commit()?;
        Ok(out)
    }

    /// Pending items, soonest due first.
    pub fn pending_items(&self) -> Result<Vec<QueueItem>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn.prepare(&format!(
            "SELECT {ITEM_COLUMNS} FROM queue WHERE state = 'pending' ORDER BY due_at, id"
        ))?;
        let rows = stmt.query_map([], row_to_item)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Moves a pending item to running, unless the same work is running now
    /// (then it stays pending and runs after). Returns the item when started.
    pub fn start_item(&self, id: i64) -> Result<Option<QueueItem>, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let n = tx.execute(
            "UPDATE queue SET state = 'running', started_at = ?2
             WHERE id = ?1 AND state = 'pending' AND NOT EXISTS (
                SELECT 1 FROM queue AS o WHERE o.state = 'running' AND o.pipeline = queue.pipeline
                    AND o.kind = queue.kind AND o.ref_name = queue.ref_name)",
            params![id, now()],
        )?;
        let item = if n == 1 {
            Some(item_by_id(&tx, id)?)
        } else {
            None
        };
        tx.commit()?;
        Ok(item)
    }

    /// Records what a running item produced, and its end.
    pub fn finish_item(
        &self,
        id: i64,
        result: Option<&serde_json::Value>,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        self.lock().execute(
            "UPDATE queue SET state = ?2, finished_at = ?3, result = ?4, error = ?5 WHERE id = ?1",
            params![
                id,
                if error.is_some() { "failed" } else { "done" },
                now(),
                result.map(serde_json::Value::to_string),
                error
            ],
        )?;
        Ok(())
    }

    /// Records what a running item has produced so far (a build's id).
    pub fn set_item_result(&self, id: i64, result: &serde_json::Value) -> Result<(), StoreError> {
        self.lock().execute(
            "UPDATE queue SET result = ?2 WHERE id = ?1",
            params![id, result.to_string()],
        )?;
        Ok(())
    }

    /// Puts items left running by a stopped habd back in the queue, due now,
    /// each with a `restart` trigger on record. Returns how many.
    pub fn requeue_running(&self) -> Result<usize, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let at = now();
        let running: Vec<QueueItem> = {
            let mut stmt = tx.prepare(&format!(
                "SELECT {ITEM_COLUMNS} FROM queue WHERE state = 'running'"
            ))?;
            let rows = stmt.query_map([], row_to_item)?;
            rows.collect::<Result<_, _>>()?
        };
        for item in &running {
            // Pending work of the same kind absorbs the interrupted one.
            let e = Enqueue {
                pipeline: item.pipeline.clone(),
                kind: item.kind,
                ref_name: item.ref_name.clone(),
                source: "restart".into(),
                detail: Some(format!("item {} was running when habd stopped", item.id)),
                due_at: at,
                join_running: false,
            };
            tx.execute(
                "UPDATE queue SET state = 'failed', finished_at = ?2,
                        error = 'habd stopped while it ran; queued again' WHERE id = ?1",
                params![item.id, at],
            )?;
            enqueue_in(&tx, &e)?;
        }
        tx.commit()?;
        Ok(running.len())
    }

    /// One item.
    pub fn queue_item(&self, id: i64) -> Result<Option<QueueItem>, StoreError> {
        Ok(self
            .lock()
            .query_row(
                &format!("SELECT {ITEM_COLUMNS} FROM queue WHERE id = ?1"),
                params![id],
                row_to_item,
            )
            .optional()?)
    }

    /// The newest items, of one pipeline or all.
    pub fn queue_items(
        &self,
        pipeline: Option<&str>,
        limit: u32,
    ) -> Result<Vec<QueueItem>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn.prepare(&format!(
            "SELECT {ITEM_COLUMNS} FROM queue WHERE ?1 IS NULL OR pipeline = ?1
             ORDER BY id DESC LIMIT ?2"
        ))?;
        let rows = stmt.query_map(params![pipeline, limit], row_to_item)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The newest item of `kind` whose result has `field` = `value` (the
    /// build item that made build 7: `("build", "build_id", 7)`).
    pub fn item_with_result(
        &self,
        kind: QueueKind,
        field: &str,
        value: i64,
    ) -> Result<Option<QueueItem>, StoreError> {
        Ok(self
            .lock()
            .query_row(
                &format!(
                    "SELECT {ITEM_COLUMNS} FROM queue WHERE kind = ?1
                     AND json_extract(result, '$.' || ?2) = ?3 ORDER BY id DESC LIMIT 1"
                ),
                params![kind.as_str(), field, value],
                row_to_item,
            )
            .optional()?)
    }

    /// Items by kind and state (for metrics).
    pub fn queue_counts(&self) -> Result<Vec<(String, String, i64)>, StoreError> {
        let conn = self.lock();
        let rows = conn
            .prepare("SELECT kind, state, COUNT(*) FROM queue GROUP BY kind, state")?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<Result<_, _>>()?;
        Ok(rows)
    }

    /// The triggers that asked for an item.
    pub fn triggers_of(&self, queue_id: i64) -> Result<Vec<TriggerRecord>, StoreError> {
        self.triggers_where("queue_id = ?1", params![queue_id])
    }

    /// The newest triggers of a pipeline.
    pub fn triggers(&self, pipeline: &str, limit: u32) -> Result<Vec<TriggerRecord>, StoreError> {
        self.triggers_where(
            "pipeline = ?1 ORDER BY id DESC LIMIT ?2",
            params![pipeline, limit],
        )
    }

    fn triggers_where(
        &self,
        clause: &str,
        args: impl rusqlite::Params,
    ) -> Result<Vec<TriggerRecord>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn.prepare(&format!(
            "SELECT id, queue_id, pipeline, kind, ref_name, source, detail, at
             FROM triggers WHERE {clause}"
        ))?;
        let rows = stmt.query_map(args, |r| {
            let kind: String = r.get(3)?;
            Ok(TriggerRecord {
                id: r.get(0)?,
                queue_id: r.get(1)?,
                pipeline: r.get(2)?,
                kind: QueueKind::parse(&kind)?,
                ref_name: r.get(4)?,
                source: r.get(5)?,
                detail: r.get(6)?,
                at: r.get(7)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::temp_store;

    #[test]
    fn triggers_for_pending_work_coalesce() {
        let (_d, s) = temp_store();
        let e = Enqueue::new("p", QueueKind::Sync, "webhook:github");
        let first = s.enqueue(&e).unwrap();
        assert_eq!(first.joined, Joined::New);
        for _ in 0..49 {
            assert_eq!(s.enqueue(&e).unwrap().joined, Joined::Pending);
        }
        let items = s.pending_items().unwrap();
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].triggers, 50);
        assert_eq!(s.triggers_of(first.item.id).unwrap().len(), 50);
        // Other work of the pipeline is its own item.
        let mut b = Enqueue::new("p", QueueKind::Build, "sync");
        b.ref_name = "refs/tags/v1".into();
        assert_eq!(s.enqueue(&b).unwrap().joined, Joined::New);
        assert_eq!(s.pending_items().unwrap().len(), 2);
    }

    #[test]
    fn running_work_is_joined_only_when_asked() {
        let (_d, s) = temp_store();
        let e = Enqueue::new("p", QueueKind::Sync, "habctl");
        let id = s.enqueue(&e).unwrap().item.id;
        assert!(s.start_item(id).unwrap().is_some());
        let webhook = Enqueue::new("p", QueueKind::Sync, "webhook:gitea");
        let next = s.enqueue(&webhook).unwrap();
        assert_eq!(next.joined, Joined::New, "a push may postdate the fetch");
        // The follow-up cannot start while the first runs.
        assert!(s.start_item(next.item.id).unwrap().is_none());
        let operator = Enqueue {
            join_running: true,
            ..e
        };
        assert_eq!(s.enqueue(&operator).unwrap().joined, Joined::Running);
        s.finish_item(id, Some(&serde_json::json!({"sync_id": 1})), None)
            .unwrap();
        assert!(s.start_item(next.item.id).unwrap().is_some());
    }

    #[test]
    fn work_running_at_a_stop_is_queued_again() {
        let (_d, s) = temp_store();
        let id = s
            .enqueue(&Enqueue::new("p", QueueKind::Sync, "schedule"))
            .unwrap()
            .item
            .id;
        s.start_item(id).unwrap();
        assert_eq!(s.requeue_running().unwrap(), 1);
        let pending = s.pending_items().unwrap();
        assert_eq!(pending.len(), 1);
        assert_ne!(pending[0].id, id);
        assert_eq!(
            s.queue_item(id).unwrap().unwrap().state,
            ItemState::Failed,
            "the interrupted run stays on record"
        );
    }
}
