//! Schedule bookkeeping in the state store: the last slot each schedule
//! fired for, recorded in the same transaction as the work it queued.

use chrono::{DateTime, Utc};
use rusqlite::{params, OptionalExtension};

use super::{
    now,
    queue::{enqueue_in, Enqueue, Enqueued, QueueKind},
    Store, StoreError,
};

impl Store {
    /// The last slot a schedule fired for (or its baseline), if any.
    pub fn schedule_last(
        &self,
        pipeline: &str,
        kind: QueueKind,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        Ok(self
            .lock()
            .query_row(
                "SELECT last_slot FROM schedule_runs WHERE pipeline = ?1 AND kind = ?2",
                params![pipeline, kind.as_str()],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Records where a schedule starts counting from, without firing it (the
    /// first time habd sees a schedule, nothing was missed).
    pub fn schedule_baseline(
        &self,
        pipeline: &str,
        kind: QueueKind,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.lock().execute(
            "INSERT OR IGNORE INTO schedule_runs (pipeline, kind, last_slot, fired_at)
             VALUES (?1, ?2, ?3, ?4)",
            params![pipeline, kind.as_str(), at, now()],
        )?;
        Ok(())
    }

    /// Fires a schedule for `slot`: records the slot and queues the work, in
    /// one transaction (a crash between them cannot lose or repeat a run).
    pub fn schedule_fire(&self, slot: DateTime<Utc>, e: &Enqueue) -> Result<Enqueued, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        tx.execute(
            "INSERT INTO schedule_runs (pipeline, kind, last_slot, fired_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (pipeline, kind) DO UPDATE SET last_slot = excluded.last_slot,
                fired_at = excluded.fired_at",
            params![e.pipeline, e.kind.as_str(), slot, now()],
        )?;
        let out = enqueue_in(&tx, e)?;
        tx.commit()?;
        Ok(out)
    }
}
