//! The queue's one writer. Every trigger enters here: habctl and the API
//! ([`Intake::request`]), webhooks ([`Intake::deliver`], with the delivery
//! recorded in the same transaction), schedules ([`Intake::fire`], with
//! the slot), habd's start, and the work that follows work (a sync that
//! found new verified refs, a rebuild). The store coalesces the same work
//! (pipeline, kind, ref) into one item; this wakes the worker.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio::sync::Notify;

use crate::{
    store::blocking,
    store::{Delivery, Enqueue, Enqueued, Store, StoreError},
};

/// Writes triggers into the store's queue and wakes the worker.
#[derive(Clone)]
pub struct Intake {
    store: Store,
    wake: Arc<Notify>,
}

impl std::fmt::Debug for Intake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Intake").finish_non_exhaustive()
    }
}

impl Intake {
    /// Triggers into `store`; `wake` is notified when work was queued.
    pub fn new(store: Store, wake: Arc<Notify>) -> Self {
        Intake { store, wake }
    }

    /// Wakes the worker.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Records a trigger and queues its work (or joins it).
    ///
    /// # Errors
    /// The store fails; nothing is recorded.
    pub async fn request(&self, e: Enqueue) -> Result<Enqueued, StoreError> {
        let store = self.store.clone();
        let out = blocking(move || store.enqueue(&e)).await?;
        self.wake();
        Ok(out)
    }

    /// [`Intake::request`] for code already off the async threads (inside
    /// a blocking task); the caller wakes the worker when done.
    ///
    /// # Errors
    /// The store fails; nothing is recorded.
    pub fn request_blocking(&self, e: &Enqueue) -> Result<Enqueued, StoreError> {
        self.store.enqueue(e)
    }

    /// A webhook delivery asking for work: recorded with its work in one
    /// transaction, or recognised as a replay (nothing queued).
    ///
    /// # Errors
    /// The store fails; nothing is recorded.
    pub async fn deliver(
        &self,
        provider: &str,
        delivery: &str,
        event: &str,
        e: Enqueue,
    ) -> Result<Delivery, StoreError> {
        let (store, p, d, ev) = (
            self.store.clone(),
            provider.to_string(),
            delivery.to_string(),
            event.to_string(),
        );
        let out = blocking(move || store.accept_delivery(&p, &d, &ev, &e)).await?;
        if matches!(out, Delivery::Accepted(_)) {
            self.wake();
        }
        Ok(out)
    }

    /// A webhook delivery that asks for no work (a ping, an event hab does
    /// not act on): recorded, so its replay is recognised. True the first
    /// time.
    ///
    /// # Errors
    /// The store fails.
    pub async fn note_delivery(
        &self,
        provider: &str,
        delivery: &str,
        pipeline: &str,
        event: &str,
    ) -> Result<bool, StoreError> {
        let (store, p, d, pl, ev) = (
            self.store.clone(),
            provider.to_string(),
            delivery.to_string(),
            pipeline.to_string(),
            event.to_string(),
        );
        blocking(move || store.record_delivery(&p, &d, &pl, &ev)).await
    }

    /// A schedule's `slot` fired: the slot and its work, in one
    /// transaction. Blocking (the scheduler's tick runs off the async
    /// threads); the caller wakes the worker.
    ///
    /// # Errors
    /// The store fails; neither is recorded.
    pub fn fire(&self, slot: DateTime<Utc>, e: &Enqueue) -> Result<Enqueued, StoreError> {
        self.store.schedule_fire(slot, e)
    }
}
