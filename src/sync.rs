//! One sync of one pipeline, end to end: fetch → read refs → plan the changes
//! against the store → keep dropped objects → verify what is new → commit it
//! all to the store in one transaction.
//!
//! [`Syncer`] runs syncs for the queue. Concurrent requests to sync the same
//! pipeline share one fetch: the queue joins them to the sync in flight and
//! gives each its report (`joined: true`), so a burst of triggers costs one
//! fetch, and nobody gets a 409 to retry.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use serde::{Deserialize, Serialize};

use crate::{
    config::Pipeline,
    mirror::{Mirror, MirrorError},
    refplan::{plan, ChangeKind, Known, Observed},
    store::{Store, StoreError, SyncRecord, SyncResult},
};

/// Why a sync failed.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// Fetching or reading the mirror failed.
    #[error(transparent)]
    Mirror(#[from] MirrorError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A failed sync: what was recorded, and why.
#[derive(Debug, Clone, Serialize, Deserialize, thiserror::Error)]
#[error("sync {sync_id} of {pipeline} failed: {reason}")]
pub struct SyncFailure {
    /// The recorded sync (0 when it could not even be recorded).
    pub sync_id: i64,
    /// Pipeline.
    pub pipeline: String,
    /// Why.
    pub reason: String,
}

/// What a sync did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SyncReport {
    /// The recorded sync.
    pub sync: SyncRecord,
    /// Each change, with its new target and verdict.
    pub changes: Vec<ChangeReport>,
    /// True when this request joined a sync already in flight.
    pub joined: bool,
}

/// One change as reported.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChangeReport {
    /// Ref name.
    pub name: String,
    /// What happened.
    pub change: ChangeKind,
    /// Target before.
    pub old_oid: Option<String>,
    /// Target now.
    pub new_oid: Option<String>,
    /// Commit now.
    pub commit: Option<String>,
    /// Verdict now (`verified`, `unsigned`, ...).
    pub verdict: Option<String>,
    /// The signer when verified.
    pub signer: Option<String>,
    /// Where the dropped object is kept, for moves and deletions.
    pub kept_as: Option<String>,
}

/// The mirror folder of a pipeline.
pub fn mirror_path(state_dir: &Path, pipeline: &str) -> PathBuf {
    state_dir.join("mirrors").join(format!("{pipeline}.git"))
}

/// Runs one sync, blocking (call from `spawn_blocking`).
///
/// # Guarantees
/// The store changes only in the last step, in one transaction: a failure or a
/// crash before it leaves the refs and verdicts as they were, and the next sync
/// sees the same changes again.
///
/// # Errors
/// [`SyncFailure`] with the reason, also recorded in the store.
pub fn sync_blocking(
    store: &Store,
    state_dir: &Path,
    pipeline: &Pipeline,
    trigger: &str,
) -> Result<SyncReport, SyncFailure> {
    let failure = |sync_id, reason: String| SyncFailure {
        sync_id,
        pipeline: pipeline.name.clone(),
        reason,
    };
    let id = store
        .begin_sync(&pipeline.name, trigger)
        .map_err(|e| failure(0, e.to_string()))?;
    match run(store, state_dir, pipeline, id) {
        Ok(report) => Ok(report),
        Err(e) => {
            let reason = e.to_string();
            tracing::warn!(pipeline = %pipeline.name, sync = id, %reason, "sync failed");
            if let Err(e) = store.fail_sync(id, &reason) {
                tracing::error!(sync = id, error = %e, "cannot record the failed sync");
            }
            Err(failure(id, reason))
        }
    }
}

fn run(
    store: &Store,
    state_dir: &Path,
    pipeline: &Pipeline,
    id: i64,
) -> Result<SyncReport, SyncError> {
    let mirror = Mirror::open_or_init(&mirror_path(state_dir, &pipeline.name))?;
    let stats = mirror.fetch(&pipeline.upstream, pipeline.upstream_timeout)?;
    let upstream = mirror.refs()?;
    let known: Vec<Known> = store
        .refs(&pipeline.name)?
        .into_iter()
        .map(|r| Known {
            name: r.name,
            oid: r.oid,
            state: r.state,
            judged_by: r.judged_by,
        })
        .collect();
    let changes = plan(&known, &upstream, |n| pipeline.refs.tracks(n));
    let mut observed = Vec::with_capacity(changes.len());
    let mut reports = Vec::with_capacity(changes.len());
    for change in changes {
        let kept_as = match (change.kind, &change.old_oid) {
            (ChangeKind::Moved | ChangeKind::Deleted, Some(old)) => {
                Some(mirror.keep(&change.name, old)?)
            }
            _ => None,
        };
        let (target, verdict) = match &change.new_oid {
            Some(oid) => {
                let (t, v) = mirror.inspect(&change.name, oid, pipeline.keyring.as_deref())?;
                (Some(t), Some(v))
            }
            None => (None, None),
        };
        reports.push(ChangeReport {
            name: change.name.clone(),
            change: change.kind,
            old_oid: change.old_oid.clone(),
            new_oid: change.new_oid.clone(),
            commit: target.as_ref().map(|t| t.commit.clone()),
            verdict: verdict.as_ref().map(|v| v.kind().to_string()),
            signer: verdict.as_ref().and_then(|v| v.signer().map(String::from)),
            kept_as,
        });
        if let (Some(v), Some(t)) = (&verdict, &target) {
            tracing::info!(pipeline = %pipeline.name, r#ref = %change.name, change = change.kind.as_str(),
                commit = %t.commit, verdict = %v, "ref changed");
        } else {
            tracing::info!(pipeline = %pipeline.name, r#ref = %change.name, change = change.kind.as_str(), "ref changed");
        }
        observed.push(Observed {
            change,
            target,
            verdict,
        });
    }
    let result = SyncResult {
        objects_received: i64::try_from(stats.objects_received).unwrap_or(i64::MAX),
        bytes_received: i64::try_from(stats.bytes_received).unwrap_or(i64::MAX),
        changes: observed,
    };
    let sync = store.finish_sync(id, &pipeline.name, &result)?;
    Ok(SyncReport {
        sync,
        changes: reports,
        joined: false,
    })
}

/// Runs syncs for the queue, off the async threads. The queue runs one
/// sync of a pipeline at a time and joins the triggers that arrive
/// meanwhile ([`crate::queue`]); this only runs them.
#[derive(Clone)]
pub struct Syncer {
    store: Store,
    state_dir: PathBuf,
}

impl Syncer {
    /// A syncer over `store`, with mirrors under `state_dir/mirrors`.
    pub fn new(store: Store, state_dir: PathBuf) -> Self {
        Syncer { store, state_dir }
    }

    /// Syncs `pipeline`, recording `trigger` as who asked.
    ///
    /// # Errors
    /// The sync's failure.
    pub async fn sync(
        &self,
        pipeline: Arc<Pipeline>,
        trigger: &str,
    ) -> Result<SyncReport, SyncFailure> {
        let (store, dir, name) = (
            self.store.clone(),
            self.state_dir.clone(),
            pipeline.name.clone(),
        );
        let trigger = trigger.to_string();
        tokio::task::spawn_blocking(move || sync_blocking(&store, &dir, &pipeline, &trigger))
            .await
            .unwrap_or_else(|e| {
                Err(SyncFailure {
                    sync_id: 0,
                    pipeline: name,
                    reason: format!("sync task died: {e}"),
                })
            })
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The state folder.
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }
}
