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
use rusqlite::Connection;

mod build_logs;
mod builds;
mod channels;
mod deliveries;
mod looks;
mod platforms;
mod queue;
mod refs;
mod rollouts;
mod schedules;
mod schema;
mod syncs;
mod verifications;

pub use build_logs::LogLine;
pub use builds::{BuildRecord, BuildState, NewBuild};
pub use channels::{ChannelMove, ChannelState, KnownBad, MoveRefused};
pub use deliveries::Delivery;
pub use looks::{ActionRecord, BuildDuration, DeliveryRecord, NodeLook};
pub use platforms::{KeyRecord, NewPlatform, PlatformRecord, PlatformUpdate};
pub use queue::{Enqueue, Enqueued, ItemState, Joined, QueueItem, QueueKind, TriggerRecord};
pub use refs::{RefEvent, StoredRef};
pub use rollouts::{RolloutRecord, RolloutState, RolloutStep};
pub use syncs::{SyncRecord, SyncResult};
pub use verifications::VerificationRecord;

use schema::MIGRATIONS;

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

/// A store in a fresh temporary folder, for unit tests; the folder lasts as
/// long as the guard.
#[cfg(test)]
pub(crate) fn temp_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(&dir.path().join("s.sqlite3")).unwrap();
    (dir, s)
}

/// Store work off the async threads ([`crate::offload::blocking`], with
/// the store's error type).
///
/// # Errors
/// What `f` returns, or [`StoreError::Task`].
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    crate::offload::blocking(f).await
}

impl crate::offload::TaskDied for StoreError {
    fn task_died(reason: String) -> Self {
        StoreError::Task(reason)
    }
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
}
