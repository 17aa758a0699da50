//! Build and publish: a verified ref becomes one image index in the registry.
//!
//! ```text
//! ref (verified) ─▶ keys per platform ─▶ all verified and attested before? reuse the build
//!                        │ per platform: key verified before, its image a
//!                        │ subject of habd's attestation? reuse the image
//!                        ▼
//!   builder per platform (different builders run at once) ─▶ docker save
//!                        ▼
//!   registry: blobs it lacks, manifest ─▶ index (tag build-<id>)
//!                        ▼
//!   verify: read back + sha256 of everything, platforms, smoke run each
//!                        ▼
//!   attest: habd's signed provenance attached to the index (`attest`)
//!                        ▼
//!   VERIFIED: tag <version>, keys recorded as built
//! ```
//!
//! The decisions are in [`plan`]; the talking in [`engine`] (Docker) and
//! [`crate::registry`]. Every step is recorded in the store as it happens, so
//! `habctl show` and `habctl logs --follow` see a build live.

mod attest;
pub mod context;
pub mod engine;
mod leftovers;
pub mod plan;
mod run;
pub mod slots;
mod verification;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use bollard::auth::DockerCredentials;
use serde::Serialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::{
    config::{Config, Pipeline},
    mirror::MirrorError,
    registry::{Registry, RegistryError},
    signature::Verdict,
    store::{BuildRecord, BuildState, NewBuild, NewPlatform, Store, StoreError},
};
use context::ContextError;
use engine::EngineError;
pub use leftovers::{
    archive_name, local_tag, parse_archive_name, parse_local_tag, INSTANCE_FILE,
    LOCAL_TAG_REPOSITORY,
};
use slots::FairSlots;

/// Annotation carrying the fingerprint of the key that signed the release.
pub const SIGNER_ANNOTATION: &str = "io.hab.signer.fingerprint";

/// Why a build could not start, or failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// No pipeline of that name.
    #[error("no pipeline named {0:?}")]
    NoSuchPipeline(String),
    /// The pipeline has no `[build]` or `[image]`.
    #[error("pipeline {pipeline} does not build images: {reason}")]
    NotBuildable {
        /// Pipeline.
        pipeline: String,
        /// What is missing.
        reason: String,
    },
    /// The ref is not known (not synced, or not tracked).
    #[error("pipeline {pipeline} has no tracked ref {name:?}; sync first (habctl sync {pipeline}) or check refs.track")]
    NoSuchRef {
        /// Pipeline.
        pipeline: String,
        /// The ref asked for.
        name: String,
    },
    /// The ref may not be built (DESIGN.md invariant 1).
    #[error("{name} may not be built: {reason}")]
    Refused {
        /// Full ref name.
        name: String,
        /// Why.
        reason: String,
        /// Its verdict.
        verdict: Verdict,
    },
    /// No build of that id.
    #[error("no build {0}")]
    NoSuchBuild(i64),
    /// No builder builds the platform.
    #[error("no builder builds {0}")]
    NoBuilder(String),
    /// The recipe cannot be read.
    #[error(transparent)]
    Recipe(#[from] ContextError),
    /// The mirror cannot be read.
    #[error(transparent)]
    Mirror(#[from] MirrorError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The registry failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// A builder failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// Verification found problems.
    #[error("verification failed: {0}")]
    Verification(String),
    /// An operator cancelled it.
    #[error("cancelled")]
    Cancelled,
    /// habd's signing key cannot be read or made.
    #[error("habd's signing key: {0}")]
    SigningKey(#[from] crate::provenance::KeyError),
    /// A blocking task died.
    #[error("internal error: {0}")]
    Internal(String),
}

impl crate::offload::TaskDied for BuildError {
    fn task_died(reason: String) -> Self {
        BuildError::Internal(reason)
    }
}

/// What `start` did.
#[derive(Debug, Clone, Serialize)]
pub struct Started {
    /// The build (new, or the verified one reused).
    pub build: BuildRecord,
    /// True when nothing needed building: an equal build had verified.
    pub reused: bool,
}

/// Told when a build becomes VERIFIED (habd's composition root wires the
/// channel door, [`crate::promotion`], here); returns lines for the build's
/// log. The build stays VERIFIED whatever it answers.
pub trait OnVerified: Send + Sync + 'static {
    /// Build `build` of `pipeline` verified.
    fn verified<'a>(
        &'a self,
        build: &'a BuildRecord,
        pipeline: &'a Arc<Pipeline>,
    ) -> futures_util::future::BoxFuture<'a, Vec<String>>;
}

/// The build service: starts builds, runs them in the background, verifies.
pub struct Builds {
    config: Arc<Config>,
    store: Store,
    registry: Registry,
    /// Signs and attaches each verified build's provenance.
    provenance: crate::provenance::Provenance,
    on_verified: Arc<dyn OnVerified>,
    /// One build at a time per builder (a build uses every core it gets),
    /// handed out fairly across pipelines.
    slots: HashMap<String, Arc<FairSlots>>,
    running: Mutex<HashMap<i64, CancellationToken>>,
    /// Bumped each time a build ends, for [`Builds::wait_final`].
    ended: watch::Sender<u64>,
    /// Per build, how many platforms still have leftovers (an archive, a
    /// local tag) to remove; a build is recorded as ended once it has none.
    leftovers: Arc<watch::Sender<HashMap<i64, usize>>>,
    /// This habd's mark in its builds' local tags ([`INSTANCE_FILE`]).
    instance: tokio::sync::OnceCell<String>,
}

impl std::fmt::Debug for Builds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Builds").finish_non_exhaustive()
    }
}

/// Blocking work (SQLite, git) off the async threads: [`crate::offload`]'s,
/// with the build service's error type.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, BuildError> + Send + 'static,
) -> Result<T, BuildError> {
    crate::offload::blocking(f).await
}

impl Builds {
    /// The service for `config`, recording into `store`, pushing to
    /// `registry`, telling `on_verified` of each build that verifies.
    pub fn new(
        config: Arc<Config>,
        store: Store,
        registry: Registry,
        provenance: crate::provenance::Provenance,
        on_verified: Arc<dyn OnVerified>,
    ) -> Arc<Self> {
        let slots = config
            .builders
            .iter()
            .map(|b| (b.name.clone(), FairSlots::new(1)))
            .collect();
        Arc::new(Builds {
            config,
            store,
            registry,
            provenance,
            on_verified,
            slots,
            running: Mutex::new(HashMap::new()),
            ended: watch::Sender::new(0),
            leftovers: Arc::new(watch::Sender::new(HashMap::new())),
            instance: tokio::sync::OnceCell::new(),
        })
    }

    /// Waits until build `id` has ended (verified, failed, cancelled or
    /// interrupted) and returns it.
    ///
    /// # Errors
    /// No such build, or the store fails.
    pub async fn wait_final(&self, id: i64) -> Result<BuildRecord, BuildError> {
        let mut ended = self.ended.subscribe();
        loop {
            ended.borrow_and_update();
            let store = self.store.clone();
            let b = blocking(move || store.build(id)?.ok_or(BuildError::NoSuchBuild(id))).await?;
            if b.state.is_final() {
                return Ok(b);
            }
            if ended.changed().await.is_err() {
                return Err(BuildError::Internal("the build service stopped".into()));
            }
        }
    }

    /// The registry client.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    fn pipeline(&self, name: &str) -> Result<Arc<Pipeline>, BuildError> {
        self.config
            .pipelines
            .iter()
            .find(|p| p.name == name)
            .cloned()
            .ok_or_else(|| BuildError::NoSuchPipeline(name.into()))
    }

    /// Starts a build of `ref_name` (`v1.0.0` or `refs/tags/v1.0.0`), or
    /// returns the verified build that already made exactly these images.
    ///
    /// # Errors
    /// Unknown pipeline or ref, a ref the signature policy refuses
    /// ([`BuildError::Refused`]), an unreadable recipe, or a store failure.
    /// Nothing is recorded when it fails.
    pub async fn start(
        self: &Arc<Self>,
        pipeline: &str,
        ref_name: &str,
        trigger: &str,
    ) -> Result<Started, BuildError> {
        let pipeline = self.pipeline(pipeline)?;
        let prepared = self.prepare(pipeline.clone(), ref_name).await?;
        let repository = pipeline.image_repository.clone().unwrap_or_default();

        let store = self.store.clone();
        let wanted: Vec<String> = prepared.platforms.iter().map(|p| p.key.clone()).collect();
        let (name, stored_name) = (pipeline.name.clone(), prepared.stored.name.clone());
        let previous =
            blocking(move || Ok(store.verified_build_with_keys(&name, &stored_name, &wanted)?))
                .await?;
        // Before anything is reused or recorded: a registry that is down or
        // refuses our credentials fails the request, with how to fix it.
        self.registry.check().await?;
        if let Some(build) = previous {
            // Reused only while the registry still holds it (a registry
            // wiped since would otherwise hand out digests of nothing),
            // attested by habd (the store alone does not vouch for it).
            let index = build.index_digest.clone().unwrap_or_default();
            if !self.registry.has_manifest(&build.repository, &index).await {
                tracing::warn!(build = build.id, %index, "a verified build's index is gone from the registry: building again");
            } else if let Err(why) = self.attested(&build, &index).await {
                tracing::warn!(build = build.id, %index, "{why}: building again");
            } else {
                return Ok(Started {
                    build,
                    reused: true,
                });
            }
        }

        let mut platforms = Vec::new();
        for plan in &prepared.platforms {
            let store = self.store.clone();
            let (k, r) = (plan.key.clone(), repository.clone());
            let mut reuse = blocking(move || Ok(store.verified_key(&k, &r)?)).await?;
            if let Some(k) = &reuse {
                if !self
                    .registry
                    .has_manifest(&k.repository, &k.manifest_digest)
                    .await
                    || !self.image_attested(k).await
                {
                    reuse = None;
                }
            }
            platforms.push(NewPlatform {
                platform: plan.platform.clone(),
                builder: plan.builder.clone(),
                build_key: plan.key.clone(),
                reuse,
            });
        }
        let new = NewBuild {
            pipeline: pipeline.name.clone(),
            ref_name: prepared.stored.name.clone(),
            commit: prepared.stored.commit.clone(),
            version: prepared.version.clone(),
            signer: prepared.stored.verdict.signer().map(str::to_string),
            trigger: trigger.into(),
            repository,
            platforms,
        };
        let store = self.store.clone();
        let build = blocking(move || Ok(store.create_build(&new)?)).await?;

        let cancel = CancellationToken::new();
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(build.id, cancel.clone());
        let this = self.clone();
        let id = build.id;
        let prepared = Arc::new(prepared);
        tokio::spawn(async move {
            let outcome = tokio::select! {
                r = this.execute(id, prepared) => r,
                () = cancel.cancelled() => Err(BuildError::Cancelled),
            };
            this.finish(id, outcome).await;
        });
        Ok(Started {
            build,
            reused: false,
        })
    }

    /// Cancels a running build. Returns false when it was not running.
    pub fn cancel(&self, id: i64) -> bool {
        match self
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
        {
            Some(t) => {
                t.cancel();
                true
            }
            None => false,
        }
    }

    fn is_running(&self, id: i64) -> bool {
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(&id)
    }

    /// Ids of the builds running now.
    pub fn running(&self) -> Vec<i64> {
        let mut ids: Vec<i64> = self
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .copied()
            .collect();
        ids.sort_unstable();
        ids
    }

    fn log(&self, id: i64, platform: Option<&str>, line: String) {
        tracing::info!(build = id, platform, "{line}");
        if let Err(e) = self.store.append_log(id, platform, &[line]) {
            tracing::warn!(build = id, error = %e, "cannot store a build log line");
        }
    }

    async fn finish(&self, id: i64, outcome: Result<(), BuildError>) {
        // A cancelled build's platforms remove what they left behind as they
        // are dropped: it has ended once they are gone.
        let mut leftovers = self.leftovers.subscribe();
        let gone = leftovers.wait_for(|m| !m.contains_key(&id));
        if tokio::time::timeout(leftovers::CLEANUP_TIMEOUT, gone)
            .await
            .is_err()
        {
            tracing::warn!(
                build = id,
                "the build's archive or local tag is still being removed; habd's next start sweeps what remains"
            );
        }
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
        let (state, reason) = match outcome {
            Ok(()) => {
                self.ended.send_modify(|n| *n += 1);
                return;
            }
            Err(BuildError::Cancelled) => {
                (BuildState::Cancelled, "cancelled by an operator".into())
            }
            Err(e) => (BuildState::Failed, e.to_string()),
        };
        // The end must be recorded, or the build would show `building`
        // until habd restarts: a store that cannot write (a full disk) is
        // asked again, less and less often, until it can.
        let line = format!("hab: build {}: {reason}", state.as_str());
        tracing::info!(build = id, "{line}");
        let mut logged = false;
        let mut wait = std::time::Duration::from_millis(500);
        loop {
            let store = self.store.clone();
            let (l, r) = (line.clone(), reason.clone());
            let attempt = blocking(move || {
                let logged = logged || store.append_log(id, None, &[l]).is_ok();
                Ok((
                    logged,
                    store.end_build(id, state, &r).map_err(BuildError::from),
                ))
            })
            .await;
            let ended = match attempt {
                Ok((l, ended)) => {
                    logged = l;
                    ended
                }
                Err(e) => Err(e),
            };
            match ended {
                Ok(()) => break,
                Err(e) => {
                    tracing::error!(
                        build = id,
                        error = %e,
                        "cannot record the end of build {id} ({}: {reason}); trying again in {:.1}s",
                        state.as_str(),
                        wait.as_secs_f64()
                    );
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(std::time::Duration::from_secs(30));
                }
            }
        }
        self.ended.send_modify(|n| *n += 1);
    }

    fn docker_credentials(&self) -> Option<DockerCredentials> {
        self.registry.credentials().map(|(u, p)| DockerCredentials {
            username: Some(u.clone()),
            password: Some(p.clone()),
            serveraddress: Some(self.registry.host().to_string()),
            ..Default::default()
        })
    }
}
