//! The one door from "verified" to "rolled out".
//!
//! Two things move a channel forward: a build of the pipeline became
//! VERIFIED (its automatic channels, `edge`, advance) and an operator
//! promoted (`habctl promote`, `POST /pipelines/{name}/promote`). Both go
//! through [`Promotions::promote`], with the same guards in the same order
//! (the one move back, a failed rollout returning its channels to the build
//! before, is the rollout engine's undo, `rollout::rollback`):
//!
//! 1. the channel is declared and the target names a build of the pipeline
//!    ([`decide`], reading the store);
//! 2. the ref the build was made from is not now judged misbound;
//! 3. the registry still holds the build's index (a pruned build cannot run)
//!    and its provenance, signed by habd's key ([`crate::provenance`]): an
//!    image hab did not attest cannot be promoted, whatever the store says;
//! 4. a known-bad build moves only with `force` and a reason;
//! 5. the store moves the channel only to a VERIFIED build, in one
//!    transaction, recording who and why;
//! 6. every fleet that follows the channel gets a rollout queued.
//!
//! The build service knows none of this: it tells [`Promotions`] (as its
//! [`OnVerified`]) that a build verified, and writes the lines it gets back
//! into the build's log.

use std::sync::Arc;

use futures_util::future::BoxFuture;

use crate::{
    builder::OnVerified,
    channel::{self, PromoteError, PromoteTarget, Promoted},
    config::Pipeline,
    offload::blocking,
    provenance::Provenance,
    registry::Registry,
    rollout::Rollouts,
    store::{BuildRecord, MoveRefused, RolloutRecord, Store, StoreError},
};

/// What an operator (or habd, for an automatic channel) asks for.
#[derive(Debug, Clone)]
pub struct Promotion {
    /// The build to move the channel to.
    pub target: PromoteTarget,
    /// The channel.
    pub channel: String,
    /// Who asked (recorded with the move).
    pub by: String,
    /// Why (recorded with the move).
    pub reason: Option<String>,
    /// Move to a known-bad build anyway (needs a reason).
    pub force: bool,
    /// An automatic channel advancing after a build verified (names the
    /// rollouts' trigger), rather than an operator's promote.
    pub automatic: bool,
}

/// What a promote did: the move, and the rollouts it queued.
#[derive(Debug, Clone)]
pub struct PromoteOutcome {
    /// The build on the channel, and the move (None: it was already there).
    pub promoted: Promoted,
    /// One rollout per fleet that follows the channel.
    pub rollouts: Vec<RolloutRecord>,
}

/// The store-side guards of a promote (steps 1, 2 and 4 of the module's
/// list): the build `promotion` may move its channel to. Blocking (SQLite).
///
/// # Errors
/// An undeclared channel, a target that names no build of the pipeline, a
/// build made from a ref now judged misbound, or a known-bad build without
/// `force` and a reason.
pub fn decide(
    store: &Store,
    pipeline: &Pipeline,
    promotion: &Promotion,
) -> Result<BuildRecord, PromoteError> {
    let build = resolve(store, pipeline, promotion)?;
    if let Some(bad) = store.known_bad(build.id)? {
        let reason_given = promotion
            .reason
            .as_deref()
            .is_some_and(|r| !r.trim().is_empty());
        if !promotion.force || !reason_given {
            return Err(PromoteError::Refused(format!(
                "build {} is {bad}; to promote it anyway, say why: --force --reason \"…\"",
                build.id
            )));
        }
    }
    Ok(build)
}

/// Steps 1 and 2: the build the target names.
fn resolve(
    store: &Store,
    pipeline: &Pipeline,
    promotion: &Promotion,
) -> Result<BuildRecord, PromoteError> {
    channel::declared(pipeline, &promotion.channel)?;
    let build_id = match &promotion.target {
        PromoteTarget::Build(id) => *id,
        PromoteTarget::Digest(d) => match store.build_by_index(d)? {
            Some(b) if b.pipeline == pipeline.name => b.id,
            Some(b) => {
                return Err(PromoteError::Refused(format!(
                    "{d} is an image of pipeline {}, not {}",
                    b.pipeline, pipeline.name
                )))
            }
            None => {
                return Err(PromoteError::NotFound(format!(
                "no build of {} pushed index {d}: hab promotes only images it built and verified",
                pipeline.name
            )))
            }
        },
        PromoteTarget::Ref(r) => {
            let mut found = None;
            crate::refname::resolve(r, |n| {
                found = store.newest_verified(&pipeline.name, n)?;
                Ok::<_, StoreError>(found.is_some())
            })?;
            found.ok_or_else(|| {
                PromoteError::NotFound(format!(
                    "{r} of {} has no VERIFIED build (habctl build {} --ref {r} --wait)",
                    pipeline.name, pipeline.name
                ))
            })?
        }
    };
    let build = store
        .build(build_id)?
        .ok_or_else(|| PromoteError::NotFound(format!("no build {build_id}")))?;
    refuse_misbound(store, pipeline, &build)?;
    Ok(build)
}

/// Refuses a build whose ref is now judged misbound (a tag object under
/// another name, or no commit) at the very commit the build was made from:
/// a verdict reached under looser rules, and judged again since, must not
/// still reach a channel through a build made before. A build of what the
/// ref pointed at before it moved is not concerned.
fn refuse_misbound(
    store: &Store,
    pipeline: &Pipeline,
    build: &BuildRecord,
) -> Result<(), PromoteError> {
    match store.get_ref(&pipeline.name, &build.ref_name)? {
        Some(r) if r.verdict.is_misbound() && r.commit == build.commit => {
            Err(PromoteError::Refused(format!(
                "build {} was made from {}, which is now refused: {}",
                build.id, build.ref_name, r.verdict
            )))
        }
        _ => Ok(()),
    }
}

/// Step 5: the move itself, refused by the store unless the build is VERIFIED.
fn move_to(
    store: &Store,
    pipeline: &Pipeline,
    build_id: i64,
    promotion: &Promotion,
) -> Result<Promoted, PromoteError> {
    let moved = store.move_channel(
        &pipeline.name,
        &promotion.channel,
        build_id,
        &promotion.by,
        promotion.reason.as_deref(),
    )?;
    match moved {
        Ok(channel_move) => Ok(Promoted {
            build_id,
            channel_move,
        }),
        Err(MoveRefused::NoBuild(id)) => Err(PromoteError::NotFound(format!("no build {id}"))),
        Err(MoveRefused::OtherPipeline(p)) => Err(PromoteError::Refused(format!(
            "build {build_id} belongs to pipeline {p}, not {}",
            pipeline.name
        ))),
        Err(MoveRefused::NotVerified { state, reason }) => Err(PromoteError::Refused(format!(
            "build {build_id} is {}{}: only a VERIFIED build can be promoted",
            state.to_uppercase(),
            reason.map(|r| format!(" ({r})")).unwrap_or_default()
        ))),
    }
}

/// The door: channel moves and the rollouts they queue.
pub struct Promotions {
    store: Store,
    registry: Registry,
    provenance: Provenance,
    rollouts: Arc<Rollouts>,
}

impl std::fmt::Debug for Promotions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Promotions").finish_non_exhaustive()
    }
}

impl Promotions {
    /// The door over `store`, checking `registry` and each build's
    /// `provenance`, queueing on `rollouts`.
    pub fn new(
        store: Store,
        registry: Registry,
        provenance: Provenance,
        rollouts: Arc<Rollouts>,
    ) -> Arc<Self> {
        Arc::new(Promotions {
            store,
            registry,
            provenance,
            rollouts,
        })
    }

    /// Moves a channel of `pipeline` as `promotion` asks, after every guard
    /// of the module's list, and queues the rollouts of the fleets that
    /// follow it. The only function that moves a channel forward.
    ///
    /// # Errors
    /// A guard refused (nothing changed), or the store failed.
    pub async fn promote(
        &self,
        pipeline: &Arc<Pipeline>,
        promotion: Promotion,
    ) -> Result<PromoteOutcome, PromoteError> {
        let promotion = Arc::new(promotion);
        let (store, p, pr) = (self.store.clone(), pipeline.clone(), promotion.clone());
        let build = blocking(move || resolve(&store, &p, &pr)).await?;
        // A build pruned from the registry since it verified cannot run:
        // say so before anything moves.
        if build.verified() {
            let index = build.index_digest.clone().unwrap_or_default();
            if !self.registry.has_manifest(&build.repository, &index).await {
                return Err(PromoteError::Refused(format!(
                    "build {} ({}) is no longer in the registry (pruned?): build it again with habctl build {} --ref {}",
                    build.id, build.version, build.pipeline, build.version
                )));
            }
            let why = match self.provenance.check(&build.repository, &index).await {
                Ok(c) if c.pipeline == pipeline.name => None,
                Ok(c) => Some(format!(
                    "habd attested its index as a build of pipeline {}, not {}",
                    c.pipeline, pipeline.name
                )),
                Err(e) => Some(e.to_string()),
            };
            if let Some(why) = why {
                return Err(PromoteError::Refused(format!(
                    "build {} ({}) cannot be promoted: {why}",
                    build.id, build.version
                )));
            }
        }
        // The rest is decided on the build just checked, whatever the
        // operator's words resolve to by now.
        let pinned = Promotion {
            target: PromoteTarget::Build(build.id),
            ..(*promotion).clone()
        };
        let (store, p) = (self.store.clone(), pipeline.clone());
        let promoted = blocking(move || {
            let build = decide(&store, &p, &pinned)?;
            move_to(&store, &p, build.id, &pinned)
        })
        .await?;
        let mut rollouts = Vec::new();
        if let Some(m) = &promoted.channel_move {
            let trigger = if promotion.automatic {
                format!("channel {} advanced", m.channel)
            } else {
                format!("promote by {}", m.by)
            };
            rollouts = self
                .rollouts
                .channel_moved(
                    &m.pipeline,
                    &m.channel,
                    m.to_build,
                    &build.repository,
                    &m.index_digest,
                    &trigger,
                )
                .await
                .map_err(|e| PromoteError::Internal(e.to_string()))?;
        }
        Ok(PromoteOutcome { promoted, rollouts })
    }

    /// A build of `pipeline` became VERIFIED: its automatic channels
    /// advance to it, forward only ([`channel::advances`]), through
    /// [`Promotions::promote`]. Returns the lines for the build's log.
    pub async fn build_verified(
        &self,
        build: &BuildRecord,
        pipeline: &Arc<Pipeline>,
    ) -> Vec<String> {
        let mut lines = Vec::new();
        if let Err(e) = self.advance(build, pipeline, &mut lines).await {
            lines.push(format!("hab: automatic channels not advanced: {e}"));
        }
        lines
    }

    async fn advance(
        &self,
        build: &BuildRecord,
        pipeline: &Arc<Pipeline>,
        lines: &mut Vec<String>,
    ) -> Result<(), PromoteError> {
        let id = build.id;
        for name in channel::auto_channels(pipeline) {
            let (store, p, c) = (self.store.clone(), pipeline.name.clone(), name.to_string());
            let current_ref = blocking(move || {
                let current = store.channels(&p)?.into_iter().find(|s| s.name == c);
                Ok::<_, StoreError>(match current {
                    Some(s) => store.build(s.build_id)?.map(|b| b.ref_name),
                    None => None,
                })
            })
            .await?;
            if !channel::advances(current_ref.as_deref(), &build.ref_name) {
                continue;
            }
            let outcome = self
                .promote(
                    pipeline,
                    Promotion {
                        target: PromoteTarget::Build(id),
                        channel: name.to_string(),
                        by: "habd".into(),
                        reason: Some(format!(
                            "automatic: build {id} of {} verified",
                            build.ref_name
                        )),
                        force: false,
                        automatic: true,
                    },
                )
                .await?;
            let Some(m) = outcome.promoted.channel_move else {
                continue;
            };
            for r in &outcome.rollouts {
                lines.push(format!("hab: rollout {} of fleet {} queued", r.id, r.fleet));
            }
            lines.push(format!(
                "hab: channel {name} of {} advanced to build {id}{}",
                pipeline.name,
                m.from_build
                    .map(|f| format!(" (was build {f})"))
                    .unwrap_or_default()
            ));
        }
        Ok(())
    }
}

impl OnVerified for Promotions {
    fn verified<'a>(
        &'a self,
        build: &'a BuildRecord,
        pipeline: &'a Arc<Pipeline>,
    ) -> BoxFuture<'a, Vec<String>> {
        Box::pin(self.build_verified(build, pipeline))
    }
}
