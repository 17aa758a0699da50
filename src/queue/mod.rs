//! The one queue every trigger goes through: schedules, webhooks, habctl,
//! habd's start, and the work that follows (a sync that finds a new verified
//! tag queues its build).
//!
//! ```text
//! webhook ─┐                      ┌─▶ sync ─▶ new verified refs ─▶ build ┐
//! schedule ┼─▶ store: queue item ─┤                                      │
//! habctl ──┘   (coalesced)        └─▶ rebuild ─▶ build of what channels run
//!                                          build ─▶ verified ─▶ edge moves ─▶ rollouts
//! ```
//!
//! Items live in the store ([`crate::store::QueueItem`]), so the queue
//! survives a restart: pending work stays pending, and work that was running
//! when habd stopped is queued again. The same work (pipeline, kind, ref) is
//! never pending twice nor running twice; builds are bounded per builder and
//! shared fairly across pipelines by the builders' slots
//! ([`crate::builder::slots`]).

mod decide;
mod intake;

pub use decide::{first_sync, rebuild_refs, who_asked, ItemEnd, ItemSummary};
pub use intake::Intake;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use chrono::Utc;
use tokio::sync::{watch, Notify};

use crate::{
    builder::{BuildError, Builds, Started},
    config::{Config, Pipeline},
    refplan::{auto_builds, may_build},
    store::blocking,
    store::{BuildRecord, Enqueue, Enqueued, Joined, QueueItem, QueueKind, Store, StoreError},
    sync::{SyncFailure, SyncReport, Syncer},
};

/// What an item produced, for callers waiting on it.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// A sync ran (or failed).
    Synced(Result<SyncReport, SyncFailure>),
    /// A build started (or could not): the record as it started, and whether
    /// an equal verified build was reused.
    BuildStarted(Result<(BuildRecord, bool), Arc<BuildError>>),
    /// A build ended.
    Built(Result<BuildRecord, Arc<BuildError>>),
    /// A rebuild queued the builds of these refs.
    Rebuilt(Result<Vec<String>, String>),
}

#[derive(Debug, Clone, Default)]
struct Progress {
    started: Option<Outcome>,
    done: Option<Outcome>,
}

struct Watch {
    tx: watch::Sender<Progress>,
    ended: Option<Instant>,
}

/// How long the outcome of an item is kept for late waiters (a request that
/// joined an item just as it ended).
const KEEP_OUTCOMES: Duration = Duration::from_secs(120);

/// The queue.
pub struct Queue {
    config: Arc<Config>,
    store: Store,
    syncer: Syncer,
    builds: Arc<Builds>,
    intake: Intake,
    wake: Arc<Notify>,
    watches: Mutex<HashMap<i64, Watch>>,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue").finish_non_exhaustive()
    }
}

/// The longest the worker sleeps without looking at the store: work queued
/// by another process sharing the store (habctl's tests, a second habd) is
/// seen within this.
const LOOK_AT_LEAST_EVERY: Duration = Duration::from_secs(5);

/// Webhook delivery ids are kept this long to recognise replays. GitHub
/// lets an operator redeliver for 3 days; a forged replay needs a valid
/// signature anyway, and at worst asks for one harmless sync.
const KEEP_DELIVERIES: chrono::Duration = chrono::Duration::days(90);

impl Queue {
    /// A queue over `store`, running syncs with `syncer` and builds with `builds`.
    pub fn new(
        config: Arc<Config>,
        store: Store,
        syncer: Syncer,
        builds: Arc<Builds>,
    ) -> Arc<Self> {
        let wake = Arc::new(Notify::new());
        Arc::new(Queue {
            config,
            intake: Intake::new(store.clone(), wake.clone()),
            store,
            syncer,
            builds,
            wake,
            watches: Mutex::new(HashMap::new()),
        })
    }

    /// The queue's one writer, for the triggers that do not wait for their
    /// work (webhooks, the scheduler).
    pub fn intake(&self) -> &Intake {
        &self.intake
    }

    /// Puts back what a stopped habd left running, then starts the worker.
    ///
    /// # Errors
    /// The store fails.
    pub fn spawn(self: &Arc<Self>) -> Result<tokio::task::JoinHandle<()>, StoreError> {
        let requeued = self.store.requeue_running()?;
        if requeued > 0 {
            tracing::warn!(
                count = requeued,
                "work running when habd stopped is queued again"
            );
        }
        Ok(tokio::spawn(self.clone().worker()))
    }

    fn pipeline(&self, name: &str) -> Option<Arc<Pipeline>> {
        self.config.pipeline(name).cloned()
    }

    /// Records a trigger and queues its work (or joins it).
    ///
    /// # Errors
    /// The store fails; nothing is recorded.
    pub async fn request(&self, e: Enqueue) -> Result<Enqueued, StoreError> {
        self.intake.request(e).await
    }

    fn subscribe(&self, id: i64) -> watch::Receiver<Progress> {
        let mut w = self.watches.lock().unwrap_or_else(|e| e.into_inner());
        w.retain(|_, v| v.ended.is_none_or(|t| t.elapsed() < KEEP_OUTCOMES));
        w.entry(id)
            .or_insert_with(|| Watch {
                tx: watch::Sender::new(Progress::default()),
                ended: None,
            })
            .tx
            .subscribe()
    }

    fn publish(&self, id: i64, f: impl FnOnce(&mut Progress)) {
        let mut w = self.watches.lock().unwrap_or_else(|e| e.into_inner());
        w.retain(|k, v| *k == id || v.ended.is_none_or(|t| t.elapsed() < KEEP_OUTCOMES));
        let entry = w.entry(id).or_insert_with(|| Watch {
            tx: watch::Sender::new(Progress::default()),
            ended: None,
        });
        entry.tx.send_modify(f);
        if entry.tx.borrow().done.is_some() {
            entry.ended = Some(Instant::now());
        }
    }

    /// Syncs `pipeline` now: joins the sync running or pending, or queues
    /// one due at once, and waits for it. Returns the report and whether it
    /// joined work already asked for.
    ///
    /// # Errors
    /// The store fails before anything is queued.
    pub async fn sync_now(
        &self,
        pipeline: &str,
        source: &str,
        detail: Option<String>,
    ) -> Result<(Result<SyncReport, SyncFailure>, bool), StoreError> {
        let mut e = Enqueue::new(pipeline, QueueKind::Sync, source);
        e.detail = detail;
        e.join_running = true;
        let queued = self.request(e).await?;
        let joined = queued.joined != Joined::New;
        let mut rx = self.subscribe(queued.item.id);
        let outcome = rx
            .wait_for(|p| p.done.is_some())
            .await
            .ok()
            .and_then(|p| p.done.clone());
        let report = match outcome {
            Some(Outcome::Synced(r)) => r,
            _ => Err(SyncFailure {
                sync_id: 0,
                pipeline: pipeline.into(),
                reason: "the sync ended without a report".into(),
            }),
        };
        Ok((report, joined))
    }

    /// Builds `ref_name` of `pipeline`: joins the build of it already queued
    /// or running, or queues one due at once, and waits until it has
    /// started. Returns what started, whether an equal verified build was
    /// reused, and whether the request joined one already asked for.
    ///
    /// # Errors
    /// What [`Builds::start`] refuses (unknown ref, refused by the signature
    /// policy...), shared with every request that joined.
    pub async fn build_now(
        &self,
        pipeline: &str,
        ref_name: &str,
        source: &str,
    ) -> Result<(Started, bool), Arc<BuildError>> {
        let p = self
            .pipeline(pipeline)
            .ok_or_else(|| Arc::new(BuildError::NoSuchPipeline(pipeline.into())))?;
        // Queue items name the full ref, so `v1.0` and `refs/tags/v1.0` are
        // the same work.
        let store = self.store.clone();
        let asked = ref_name.to_string();
        let pn = p.name.clone();
        let full = blocking(move || {
            let found = crate::refname::resolve(&asked, |c| {
                Ok::<_, StoreError>(store.get_ref(&pn, c)?.is_some())
            })?;
            Ok(found.unwrap_or_else(|| crate::refname::default_full(&asked)))
        })
        .await
        .map_err(|e| Arc::new(BuildError::from(e)))?;
        let mut e = Enqueue::new(pipeline, QueueKind::Build, source);
        e.ref_name = full;
        e.join_running = true;
        let queued = self
            .request(e)
            .await
            .map_err(|e| Arc::new(BuildError::from(e)))?;
        let joined = queued.joined != Joined::New;
        let mut rx = self.subscribe(queued.item.id);
        let started = rx
            .wait_for(|p| p.started.is_some() || p.done.is_some())
            .await
            .ok()
            .and_then(|p| p.started.clone().or_else(|| p.done.clone()));
        match started {
            Some(Outcome::BuildStarted(Ok((build, reused)))) => {
                Ok((Started { build, reused }, joined))
            }
            Some(Outcome::BuildStarted(Err(e)) | Outcome::Built(Err(e))) => Err(e),
            Some(Outcome::Built(Ok(build))) => Ok((
                Started {
                    build,
                    reused: false,
                },
                joined,
            )),
            _ => Err(Arc::new(BuildError::Internal(
                "the build request ended without a build".into(),
            ))),
        }
    }

    async fn worker(self: Arc<Self>) {
        let mut pruned: Option<Instant> = None;
        loop {
            if pruned.is_none_or(|t| t.elapsed() > Duration::from_secs(3600)) {
                pruned = Some(Instant::now());
                let store = self.store.clone();
                let before = Utc::now() - KEEP_DELIVERIES;
                if let Err(e) = blocking(move || store.prune_deliveries(before)).await {
                    tracing::warn!(error = %e, "cannot forget old webhook deliveries");
                }
            }
            let store = self.store.clone();
            let pending = match blocking(move || store.pending_items()).await {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the queue");
                    Vec::new()
                }
            };
            let now = Utc::now();
            let mut next =
                now + chrono::Duration::from_std(LOOK_AT_LEAST_EVERY).unwrap_or_default();
            for item in pending {
                if item.due_at > now {
                    next = next.min(item.due_at);
                    continue;
                }
                let store = self.store.clone();
                match blocking(move || store.start_item(item.id)).await {
                    Ok(Some(item)) => {
                        tokio::spawn(self.clone().run(item));
                    }
                    // The same work is running; this runs after it.
                    Ok(None) => {}
                    Err(e) => {
                        tracing::error!(error = %e, item = item.id, "cannot start queued work")
                    }
                }
            }
            let wait = (next - Utc::now()).to_std().unwrap_or(Duration::ZERO);
            tokio::select! {
                () = self.wake.notified() => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    async fn run(self: Arc<Self>, item: QueueItem) {
        let id = item.id;
        let end = match self.pipeline(&item.pipeline) {
            None => ItemEnd::failed(
                None,
                format!("pipeline {} is no longer configured", item.pipeline),
            ),
            Some(p) => match item.kind {
                QueueKind::Sync => self.run_sync(&item, p).await,
                QueueKind::Rebuild => self.run_rebuild(&item, p).await,
                QueueKind::Build => self.run_build(&item, p).await,
            },
        };
        // The end must be recorded: an item left `running` holds its work
        // (a pipeline's syncs, a ref's builds) until habd restarts, every
        // trigger for it joining it. A store that cannot write (a full
        // disk) is asked again, less and less often, until it can.
        let mut wait = Duration::from_millis(500);
        loop {
            let store = self.store.clone();
            let (r, err) = (end.result_json(), end.error.clone());
            match blocking(move || store.finish_item(id, r.as_ref(), err.as_deref())).await {
                Ok(()) => break,
                Err(e) => {
                    tracing::error!(item = id, error = %e, "cannot record the end of queued work; trying again in {:.1}s", wait.as_secs_f64());
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(30));
                }
            }
        }
        if let Some(e) = end.error {
            tracing::warn!(item = id, pipeline = %item.pipeline, kind = item.kind.as_str(), reason = %e, "queued work failed");
        }
        // Work of the same kind may be waiting for this to end.
        self.wake.notify_one();
    }

    /// Who asked for `item`, for the record of the work it runs.
    async fn describe(&self, item: &QueueItem) -> String {
        let store = self.store.clone();
        let id = item.id;
        let triggers = blocking(move || store.triggers_of(id))
            .await
            .unwrap_or_default();
        who_asked(id, &item.source, &triggers)
    }

    async fn run_sync(&self, item: &QueueItem, p: Arc<Pipeline>) -> ItemEnd {
        let label = self.describe(item).await;
        let outcome = self.syncer.sync(p.clone(), &label).await;
        let end = match &outcome {
            Ok(r) => ItemEnd::done(ItemSummary::Synced {
                sync_id: r.sync.id,
                added: r.sync.added,
                moved: r.sync.moved,
                deleted: r.sync.deleted,
            }),
            Err(f) => ItemEnd::failed(
                Some(ItemSummary::SyncFailed { sync_id: f.sync_id }),
                f.reason.clone(),
            ),
        };
        if let Ok(report) = &outcome {
            if let Err(e) = self.queue_new_builds(&p, report).await {
                tracing::error!(pipeline = %p.name, error = %e, "cannot queue the builds a sync found");
            }
        }
        self.publish(item.id, |pr| pr.done = Some(Outcome::Synced(outcome)));
        end
    }

    async fn queue_new_builds(
        &self,
        p: &Arc<Pipeline>,
        report: &SyncReport,
    ) -> Result<(), StoreError> {
        if !p.build.as_ref().is_some_and(|b| b.auto) || report.changes.is_empty() {
            return Ok(());
        }
        let store = self.store.clone();
        let pipeline = p.clone();
        let sync_id = report.sync.id;
        let changes: Vec<_> = report
            .changes
            .iter()
            .map(|c| (c.name.clone(), c.change))
            .collect();
        let intake = self.intake.clone();
        let queued = blocking(move || {
            let first_sync = first_sync(sync_id, &store.syncs(&pipeline.name, 1000)?);
            let refs = store.refs(&pipeline.name)?;
            let wanted = auto_builds(&changes, first_sync, |name| {
                refs.iter().any(|r| {
                    r.name == name
                        && pipeline.refs.tracks(name)
                        && may_build(r.state, &r.verdict, pipeline.policy).is_ok()
                })
            });
            let mut queued = Vec::new();
            for name in wanted {
                let mut e = Enqueue::new(&pipeline.name, QueueKind::Build, "sync");
                e.ref_name = name.clone();
                e.detail = Some(format!("sync {sync_id} found it verified"));
                queued.push((name, intake.request_blocking(&e)?.item.id));
            }
            Ok(queued)
        })
        .await?;
        for (name, item) in &queued {
            tracing::info!(pipeline = %p.name, r#ref = %name, queue = item, "new verified ref: build queued");
        }
        if !queued.is_empty() {
            self.intake.wake();
        }
        Ok(())
    }

    async fn run_rebuild(&self, item: &QueueItem, p: Arc<Pipeline>) -> ItemEnd {
        let (store, intake) = (self.store.clone(), self.intake.clone());
        let pipeline = p.clone();
        let item_id = item.id;
        let r = blocking(move || {
            let mut on_channels = Vec::new();
            for c in store.channels(&pipeline.name)? {
                on_channels.extend(store.build(c.build_id)?);
            }
            let refs = rebuild_refs(&on_channels, &store.builds(Some(&pipeline.name), 200)?);
            for name in &refs {
                let mut e = Enqueue::new(&pipeline.name, QueueKind::Build, "rebuild");
                e.ref_name = name.clone();
                e.detail = Some(format!("rebuild (queue {item_id})"));
                intake.request_blocking(&e)?;
            }
            Ok(refs)
        })
        .await;
        self.intake.wake();
        let end = match &r {
            Ok(refs) => ItemEnd::done(ItemSummary::Rebuilt { refs: refs.clone() }),
            Err(e) => ItemEnd::failed(None, e.to_string()),
        };
        self.publish(item.id, |pr| {
            pr.done = Some(Outcome::Rebuilt(r.map_err(|e| e.to_string())));
        });
        end
    }

    async fn run_build(&self, item: &QueueItem, p: Arc<Pipeline>) -> ItemEnd {
        let trigger = match item.source.as_str() {
            "sync" | "rebuild" | "restart" => self.describe(item).await,
            other => other.to_string(),
        };
        let started = self.builds.start(&p.name, &item.ref_name, &trigger).await;
        let (build, reused) = match started {
            Ok(s) => (s.build, s.reused),
            Err(e) => {
                let reason = e.to_string();
                let e = Arc::new(e);
                self.publish(item.id, |pr| {
                    pr.started = Some(Outcome::BuildStarted(Err(e.clone())));
                    pr.done = Some(Outcome::Built(Err(e)));
                });
                return ItemEnd::failed(None, reason);
            }
        };
        let id = build.id;
        let store = self.store.clone();
        let item_id = item.id;
        let started = ItemEnd::done(ItemSummary::Build {
            build_id: id,
            reused: Some(reused),
            state: None,
        });
        if let Some(result) = started.result_json() {
            let _ = blocking(move || store.set_item_result(item_id, &result)).await;
        }
        self.publish(item.id, |pr| {
            pr.started = Some(Outcome::BuildStarted(Ok((build, reused))));
        });
        match self.builds.wait_final(id).await {
            Ok(b) => {
                let end = ItemEnd {
                    summary: Some(ItemSummary::Build {
                        build_id: b.id,
                        reused: Some(reused),
                        state: Some(b.state),
                    }),
                    error: (!b.verified()).then(|| {
                        format!(
                            "build {} ended {}: {}",
                            b.id,
                            b.state.as_str(),
                            b.reason.clone().unwrap_or_default()
                        )
                    }),
                };
                self.publish(item.id, |pr| pr.done = Some(Outcome::Built(Ok(b))));
                end
            }
            Err(e) => {
                let reason = e.to_string();
                let e = Arc::new(e);
                self.publish(item.id, |pr| pr.done = Some(Outcome::Built(Err(e))));
                ItemEnd::failed(
                    Some(ItemSummary::Build {
                        build_id: id,
                        reused: None,
                        state: None,
                    }),
                    reason,
                )
            }
        }
    }
}
