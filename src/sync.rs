//! One sync of one pipeline, end to end: fetch → read refs → plan the changes
//! against the store → keep dropped objects → verify what is new → commit it
//! all to the store in one transaction.
//!
//! [`Syncer`] runs syncs for the server. Concurrent requests to sync the same
//! pipeline share one fetch: the second caller waits for the sync in flight
//! and gets its report (`joined: true`), so a burst of triggers costs one
//! fetch, and nobody gets a 409 to retry.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

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

type Outcome = Option<Result<SyncReport, SyncFailure>>;

/// Runs syncs for the server, one fetch per pipeline at a time.
#[derive(Clone)]
pub struct Syncer {
    store: Store,
    state_dir: PathBuf,
    inflight: Arc<Mutex<HashMap<String, watch::Receiver<Outcome>>>>,
}

impl Syncer {
    /// A syncer over `store`, with mirrors under `state_dir/mirrors`.
    pub fn new(store: Store, state_dir: PathBuf) -> Self {
        Syncer {
            store,
            state_dir,
            inflight: Arc::default(),
        }
    }

    /// Syncs `pipeline`, or joins the sync of it already running.
    ///
    /// # Errors
    /// The sync's failure (shared by every caller that joined it).
    pub async fn sync(
        &self,
        pipeline: Arc<Pipeline>,
        trigger: &str,
    ) -> Result<SyncReport, SyncFailure> {
        let (mut rx, joined) = {
            let mut inflight = self.inflight.lock().unwrap_or_else(|e| e.into_inner());
            match inflight.get(&pipeline.name) {
                Some(rx) => (rx.clone(), true),
                None => {
                    let (tx, rx) = watch::channel(None);
                    inflight.insert(pipeline.name.clone(), rx.clone());
                    let this = self.clone();
                    let trigger = trigger.to_string();
                    let p = pipeline.clone();
                    tokio::spawn(async move {
                        let (store, dir, name) =
                            (this.store.clone(), this.state_dir.clone(), p.name.clone());
                        let outcome = tokio::task::spawn_blocking(move || {
                            sync_blocking(&store, &dir, &p, &trigger)
                        })
                        .await
                        .unwrap_or_else(|e| {
                            Err(SyncFailure {
                                sync_id: 0,
                                pipeline: name.clone(),
                                reason: format!("sync task died: {e}"),
                            })
                        });
                        // Leave the map before publishing, so a request that
                        // arrives after the result starts a fresh sync.
                        this.inflight
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .remove(&name);
                        let _ = tx.send(Some(outcome));
                    });
                    (rx, false)
                }
            }
        };
        let outcome = rx
            .wait_for(Option::is_some)
            .await
            .map(|o| o.clone())
            .ok()
            .flatten()
            .unwrap_or_else(|| {
                Err(SyncFailure {
                    sync_id: 0,
                    pipeline: pipeline.name.clone(),
                    reason: "sync task ended without a result".into(),
                })
            });
        outcome.map(|mut r| {
            r.joined = joined;
            r
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
