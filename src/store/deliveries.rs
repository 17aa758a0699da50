//! Webhook deliveries in the state store: every delivery id seen, by
//! provider. A delivery is recorded in the same transaction as its trigger,
//! so a replay is recognised even across a crash, and a delivery is never
//! recorded without the work it asked for.

use chrono::{DateTime, Utc};
use rusqlite::{params, OptionalExtension};

use super::{
    now,
    queue::{enqueue_in, Enqueue, Enqueued},
    Store, StoreError,
};

/// What became of a webhook delivery.
#[derive(Debug, Clone, PartialEq)]
pub enum Delivery {
    /// First time seen: recorded, with the work it asked for.
    Accepted(Enqueued),
    /// Seen before: nothing done.
    Duplicate {
        /// When it was first seen.
        first_seen: DateTime<Utc>,
        /// The item it asked for then, if any.
        queue_id: Option<i64>,
    },
}

impl Store {
    /// Records a webhook delivery and queues its work, in one transaction;
    /// a delivery id seen before does nothing.
    ///
    /// # Errors
    /// The store fails; nothing is recorded.
    pub fn accept_delivery(
        &self,
        provider: &str,
        delivery: &str,
        event: &str,
        e: &Enqueue,
    ) -> Result<Delivery, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let seen: Option<(DateTime<Utc>, Option<i64>)> = tx
            .query_row(
                "SELECT at, queue_id FROM deliveries WHERE provider = ?1 AND delivery = ?2",
                params![provider, delivery],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        if let Some((first_seen, queue_id)) = seen {
            return Ok(Delivery::Duplicate {
                first_seen,
                queue_id,
            });
        }
        let out = enqueue_in(&tx, e)?;
        tx.execute(
            "INSERT INTO deliveries (provider, delivery, pipeline, event, queue_id, at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![provider, delivery, e.pipeline, event, out.item.id, now()],
        )?;
        tx.commit()?;
        Ok(Delivery::Accepted(out))
    }

    /// Records a delivery that asks for no work (a `ping`), so its replay is
    /// recognised too. Returns false when it was seen before.
    pub fn record_delivery(
        &self,
        provider: &str,
        delivery: &str,
        pipeline: &str,
        event: &str,
    ) -> Result<bool, StoreError> {
        let n = self.lock().execute(
            "INSERT OR IGNORE INTO deliveries (provider, delivery, pipeline, event, at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![provider, delivery, pipeline, event, now()],
        )?;
        Ok(n == 1)
    }

    /// Forgets webhook deliveries older than `before` (a replay older than
    /// that asks for one more sync, which is harmless: a sync only fetches
    /// and verifies). Returns how many.
    pub fn prune_deliveries(&self, before: DateTime<Utc>) -> Result<usize, StoreError> {
        Ok(self
            .lock()
            .execute("DELETE FROM deliveries WHERE at < ?1", params![before])?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::temp_store;
    use crate::store::QueueKind;

    #[test]
    fn a_delivery_is_accepted_once() {
        let (_d, s) = temp_store();
        let e = Enqueue::new("p", QueueKind::Sync, "webhook:github");
        assert!(matches!(
            s.accept_delivery("github", "d-1", "push", &e).unwrap(),
            Delivery::Accepted(_)
        ));
        assert!(matches!(
            s.accept_delivery("github", "d-1", "push", &e).unwrap(),
            Delivery::Duplicate { .. }
        ));
        // The same id from another provider is another delivery.
        assert!(matches!(
            s.accept_delivery("gitea", "d-1", "push", &e).unwrap(),
            Delivery::Accepted(_)
        ));
        assert_eq!(s.pending_items().unwrap()[0].triggers, 2);
    }
}
