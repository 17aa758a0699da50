//! Build and publish: a verified ref becomes one image index in the registry.
//!
//! ```text
//! ref (verified) ─▶ keys per platform ─▶ all verified before? reuse the build
//!                        │ per platform: key verified before? reuse its image
//!                        ▼
//!   builder per platform (different builders run at once) ─▶ docker save
//!                        ▼
//!   registry: blobs it lacks, manifest ─▶ index (tag build-<id>)
//!                        ▼
//!   verify: read back + sha256 of everything, platforms, smoke run each
//!                        ▼
//!   VERIFIED: tag <version>, keys recorded as built
//! ```
//!
//! The decisions are in [`plan`]; the talking in [`engine`] (Docker) and
//! [`crate::registry`]. Every step is recorded in the store as it happens, so
//! `habctl show` and `habctl logs --follow` see a build live.

pub mod context;
pub mod engine;
pub mod plan;
pub mod slots;

use std::{
    collections::{BTreeMap, HashMap},
    path::PathBuf,
    sync::{Arc, Mutex},
};

use bollard::auth::DockerCredentials;
use serde::Serialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::{
    api::{SmokeReport, Verification},
    config::{Config, Pipeline},
    mirror::{Mirror, MirrorError},
    readback,
    refplan::may_build,
    registry::{IndexEntry, Registry, RegistryError},
    signature::Verdict,
    store::{
        BuildRecord, BuildState, NewBuild, NewPlatform, PlatformUpdate, Store, StoreError,
        StoredRef,
    },
    sync::mirror_path,
};
use context::ContextError;
use engine::{BuildRequest, Engine, EngineError};
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
    /// A blocking task died.
    #[error("internal error: {0}")]
    Internal(String),
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

/// Runs blocking work (SQLite, git) off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, BuildError> + Send + 'static,
) -> Result<T, BuildError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| BuildError::Internal(e.to_string()))?
}

/// A pipeline's base image, resolved for one platform.
struct Base {
    /// `repo@platform digest`.
    image: String,
    /// `repo@index digest`, when the base is an index.
    index: Option<String>,
    /// The platform's digest.
    digest: String,
}

/// Inputs of a build that are ready to run.
struct Prepared {
    pipeline: Arc<Pipeline>,
    stored: StoredRef,
    version: String,
    context: Vec<u8>,
    platforms: Vec<PlatformPlan>,
}

/// One platform of a prepared build.
struct PlatformPlan {
    platform: String,
    builder: String,
    key: String,
    /// Every build argument, `BASE_IMAGE` pinned to the digest in the key.
    args: BTreeMap<String, String>,
}

impl Builds {
    /// The service for `config`, recording into `store`, pushing to
    /// `registry`, telling `on_verified` of each build that verifies.
    pub fn new(
        config: Arc<Config>,
        store: Store,
        registry: Registry,
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
            // wiped since would otherwise hand out digests of nothing).
            let index = build.index_digest.clone().unwrap_or_default();
            if self.registry.has_manifest(&build.repository, &index).await {
                return Ok(Started {
                    build,
                    reused: true,
                });
            }
            tracing::warn!(build = build.id, %index, "a verified build's index is gone from the registry: building again");
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

    /// This habd's mark in its builds' local tags, made once and kept in
    /// [`INSTANCE_FILE`] of the state folder.
    async fn instance(&self) -> Result<String, BuildError> {
        let path = self.config.state_dir.join(INSTANCE_FILE);
        self.instance
            .get_or_try_init(|| {
                blocking(move || {
                    crate::secrets::read_or_create(&path, 6)
                        .map(|(mark, _)| mark)
                        .map_err(|e| {
                            BuildError::Internal(format!("habd's mark for its local tags: {e}"))
                        })
                })
            })
            .await
            .cloned()
    }

    /// Removes what builds that did not end in a running habd left behind
    /// (habd was killed, or stopped mid-build): every archive in
    /// `state_dir/tmp` and this habd's local tags on each builder, except
    /// those of builds running now. Logs what it removed; returns how many
    /// archives and tags. Run at habd's start.
    pub async fn sweep_leftovers(&self) -> (usize, usize) {
        // Whether a build runs is asked at the moment its leftover is found:
        // a build that started since is running by the time it made any.
        let mut archives = 0;
        let tmp = self.config.state_dir.join("tmp");
        match std::fs::read_dir(&tmp) {
            Ok(entries) => {
                for entry in entries.flatten() {
                    let name = entry.file_name().to_string_lossy().into_owned();
                    let Some(id) = parse_archive_name(&name) else {
                        continue;
                    };
                    if self.is_running(id) {
                        continue;
                    }
                    let path = entry.path();
                    match std::fs::remove_file(&path) {
                        Ok(()) => {
                            archives += 1;
                            tracing::info!(build = id, archive = %path.display(), "swept the archive of an interrupted build");
                        }
                        Err(e) => {
                            tracing::warn!(archive = %path.display(), error = %e, "cannot sweep the archive of an interrupted build")
                        }
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(folder = %tmp.display(), error = %e, "cannot look for the archives of interrupted builds")
            }
        }
        let mut tags = 0;
        match self.instance().await {
            Ok(instance) => {
                let mut seen = Vec::new();
                for b in &self.config.builders {
                    if seen.contains(&&b.endpoint) {
                        continue;
                    }
                    seen.push(&b.endpoint);
                    tags += self.sweep_builder(b, &instance).await;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot sweep the local tags of interrupted builds")
            }
        }
        tracing::info!(
            archives,
            tags,
            "swept what interrupted builds left behind: {archives} archives, {tags} local tags"
        );
        (archives, tags)
    }

    async fn sweep_builder(&self, builder: &crate::config::BuilderConfig, instance: &str) -> usize {
        let listed = tokio::time::timeout(SWEEP_CONNECT_TIMEOUT, async {
            let engine = Engine::connect(builder).await?;
            let tags = engine
                .local_tags(&format!("{LOCAL_TAG_REPOSITORY}/"))
                .await?;
            Ok::<_, EngineError>((engine, tags))
        })
        .await;
        let (engine, listed) = match listed {
            Ok(Ok(x)) => x,
            Ok(Err(e)) => {
                tracing::warn!(builder = %builder.name, error = %e, "cannot sweep the builder's local tags of interrupted builds");
                return 0;
            }
            Err(_) => {
                tracing::warn!(builder = %builder.name, "the builder did not answer; its local tags of interrupted builds stay");
                return 0;
            }
        };
        let mut swept = 0;
        for tag in listed {
            let Some((id, mark)) = parse_local_tag(&tag) else {
                continue;
            };
            // Another habd's tag, or a build of ours that runs now.
            if mark != instance || self.is_running(id) {
                continue;
            }
            if engine.remove_image(&tag).await {
                swept += 1;
                tracing::info!(builder = %builder.name, build = id, tag, "swept the local tag of an interrupted build");
            }
        }
        swept
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
        if tokio::time::timeout(CLEANUP_TIMEOUT, gone).await.is_err() {
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

    /// Resolves the ref, checks the policy, reads the recipe and the tree,
    /// and computes every platform's key.
    async fn prepare(
        &self,
        pipeline: Arc<Pipeline>,
        ref_name: &str,
    ) -> Result<Prepared, BuildError> {
        let not_buildable = |reason: &str| BuildError::NotBuildable {
            pipeline: pipeline.name.clone(),
            reason: reason.into(),
        };
        let recipe = pipeline
            .build
            .clone()
            .ok_or_else(|| not_buildable("it has no [build] section"))?;
        if pipeline.image_repository.is_none() {
            return Err(not_buildable("it has no [image] repository"));
        }
        let recipe_dir = self
            .config
            .recipe_dir(&pipeline)
            .ok_or_else(|| not_buildable("it has no [build] section"))?;
        let store = self.store.clone();
        let mirror = mirror_path(&self.config.state_dir, &pipeline.name);
        let p = pipeline.clone();
        let asked = ref_name.to_string();
        let (stored, recipe_files, tree) = blocking(move || {
            let mut found = None;
            for c in crate::refname::candidates(&asked) {
                if !p.refs.tracks(&c) {
                    continue;
                }
                if let Some(r) = store.get_ref(&p.name, &c)? {
                    found = Some(r);
                    break;
                }
            }
            let stored = found.ok_or_else(|| BuildError::NoSuchRef {
                pipeline: p.name.clone(),
                name: asked.clone(),
            })?;
            if let Err(reason) = may_build(stored.state, &stored.verdict, p.policy) {
                return Err(BuildError::Refused {
                    name: stored.name.clone(),
                    reason,
                    verdict: stored.verdict.clone(),
                });
            }
            let recipe_files = context::load_recipe(&recipe_dir)?;
            let tree = Mirror::open_or_init(&mirror)?.tree_files(&stored.commit)?;
            Ok((stored, recipe_files, tree))
        })
        .await?;

        let version = plan::version_tag(&stored.name);
        let mut platforms = Vec::new();
        for platform in &recipe.platforms {
            let builder = self
                .config
                .builder_for(platform)
                .ok_or_else(|| BuildError::NoBuilder(platform.to_string()))?;
            let base = match &recipe.base_image {
                Some(base) => Some(self.resolve_base(base, platform.as_str()).await?),
                None => None,
            };
            let a = plan::build_args(
                &recipe.args,
                &version,
                &stored.commit,
                tree.commit_time,
                base.as_ref()
                    .map(|b| (b.image.as_str(), b.index.as_deref())),
            );
            let key = plan::build_key(&plan::KeyInputs {
                commit: &stored.commit,
                recipe: &recipe_files,
                args: &a,
                platform: platform.as_str(),
                base_digest: base.as_ref().map(|b| b.digest.as_str()),
            });
            platforms.push(PlatformPlan {
                platform: platform.to_string(),
                builder: builder.name.clone(),
                key,
                args: a,
            });
        }
        let context = context::context_tar(&recipe_files, &tree)?;
        Ok(Prepared {
            pipeline,
            stored,
            version,
            context,
            platforms,
        })
    }

    /// A base image's digest for one platform, pinned as `BASE_IMAGE`, and
    /// its index pinned as `BASE_INDEX` (for a recipe's cross-compiling
    /// stage, which runs on the builder's own platform).
    async fn resolve_base(&self, base: &str, platform: &str) -> Result<Base, BuildError> {
        let (index, digest) = self.registry.base_digests(base, platform).await?;
        let repo = base.split('@').next().unwrap_or(base);
        let repo = match repo.rfind(':') {
            Some(i) if !repo[i..].contains('/') => &repo[..i],
            _ => repo,
        };
        Ok(Base {
            image: format!("{repo}@{digest}"),
            index: index.map(|i| format!("{repo}@{i}")),
            digest,
        })
    }

    async fn set_state(&self, id: i64, state: BuildState) -> Result<(), BuildError> {
        let store = self.store.clone();
        blocking(move || Ok(store.set_build_state(id, state)?)).await
    }

    fn update(&self, id: i64, platform: &str, u: PlatformUpdate) {
        if let Err(e) = self.store.update_platform(id, platform, &u) {
            tracing::warn!(build = id, error = %e, "cannot record build progress");
        }
    }

    fn docker_credentials(&self) -> Option<DockerCredentials> {
        self.registry.credentials().map(|(u, p)| DockerCredentials {
            username: Some(u.clone()),
            password: Some(p.clone()),
            serveraddress: Some(self.registry.host().to_string()),
            ..Default::default()
        })
    }

    async fn execute(self: &Arc<Self>, id: i64, prep: Arc<Prepared>) -> Result<(), BuildError> {
        let store = self.store.clone();
        let build = blocking(move || store.build(id)?.ok_or(BuildError::NoSuchBuild(id))).await?;
        self.set_state(id, BuildState::Building).await?;

        // Platforms on different builders build at once; on one builder, in turn.
        let mut by_builder: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for p in build.platforms.iter().filter(|p| !p.reused) {
            by_builder
                .entry(p.builder.clone())
                .or_default()
                .push(p.platform.clone());
        }
        for p in build.platforms.iter().filter(|p| p.reused) {
            self.log(
                id,
                Some(&p.platform),
                format!(
                    "hab: {} reuses verified image {} (build key {})",
                    p.platform,
                    p.manifest_digest.as_deref().unwrap_or("?"),
                    p.build_key
                ),
            );
        }
        let runs: Vec<_> = by_builder
            .into_iter()
            .map(|(builder, platforms)| {
                let this = self.clone();
                let build = build.clone();
                let prep = prep.clone();
                tokio::spawn(async move {
                    for platform in platforms {
                        this.build_platform(&build, &builder, &platform, &prep)
                            .await?;
                    }
                    Ok::<(), BuildError>(())
                })
            })
            .collect();
        // Aborted with the build: a cancelled build stops every platform.
        let guards: Vec<_> = runs.iter().map(|h| h.abort_handle()).collect();
        let _abort = AbortOnDrop(guards);
        for r in futures_util::future::join_all(runs).await {
            r.map_err(|e| BuildError::Internal(e.to_string()))??;
        }

        // Publish the index.
        self.set_state(id, BuildState::Publishing).await?;
        let store = self.store.clone();
        let build = blocking(move || store.build(id)?.ok_or(BuildError::NoSuchBuild(id))).await?;
        let entries: Vec<IndexEntry> = build
            .platforms
            .iter()
            .map(|p| IndexEntry {
                platform: p.platform.clone(),
                digest: p.manifest_digest.clone().unwrap_or_default(),
                size: p.manifest_size.unwrap_or_default(),
                media_type: p.manifest_media_type.clone().unwrap_or_default(),
            })
            .collect();
        let annotations = self.annotations(&build, &prep);
        let (index_digest, index_bytes) = self
            .registry
            .push_index(
                &build.repository,
                &entries,
                &annotations,
                &[format!("build-{id}")],
            )
            .await?;
        let store = self.store.clone();
        let d = index_digest.clone();
        blocking(move || Ok(store.set_index_digest(id, &d)?)).await?;
        self.log(
            id,
            None,
            format!(
                "hab: pushed index {} tagged build-{id}",
                self.registry.pinned(&build.repository, &index_digest)
            ),
        );

        // Verify, then tag the version.
        self.set_state(id, BuildState::Verifying).await?;
        let v = self
            .verify_index(Some(&build), &build.repository, &index_digest)
            .await?;
        if !v.ok {
            return Err(BuildError::Verification(
                v.reason.unwrap_or_else(|| "unknown".into()),
            ));
        }
        self.registry
            .tag(&build.repository, &build.version, &index_bytes)
            .await?;
        let store = self.store.clone();
        let d = index_digest.clone();
        blocking(move || Ok(store.finish_verified(id, &d)?)).await?;
        self.log(
            id,
            None,
            format!(
                "hab: VERIFIED {} and tagged {}",
                self.registry.pinned(&build.repository, &index_digest),
                build.version
            ),
        );
        // The build stays VERIFIED whatever happens to the channels.
        for line in self.on_verified.verified(&build, &prep.pipeline).await {
            self.log(id, None, line);
        }
        Ok(())
    }

    fn annotations(&self, build: &BuildRecord, prep: &Prepared) -> BTreeMap<String, String> {
        let mut a = BTreeMap::from([
            (
                "org.opencontainers.image.source".to_string(),
                prep.pipeline.upstream.clone(),
            ),
            (
                "org.opencontainers.image.revision".to_string(),
                build.commit.clone(),
            ),
            (
                "org.opencontainers.image.version".to_string(),
                build.version.clone(),
            ),
            (
                "org.opencontainers.image.created".to_string(),
                build
                    .created_at
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            ),
            ("io.hab.ref".to_string(), build.ref_name.clone()),
            ("io.hab.build".to_string(), build.id.to_string()),
        ]);
        if let Some(signer) = &build.signer {
            a.insert(SIGNER_ANNOTATION.to_string(), signer.clone());
        }
        a
    }

    async fn build_platform(
        &self,
        build: &BuildRecord,
        builder: &str,
        platform: &str,
        prep: &Prepared,
    ) -> Result<(), BuildError> {
        let id = build.id;
        let slot = self
            .slots
            .get(builder)
            .cloned()
            .ok_or_else(|| BuildError::NoBuilder(platform.into()))?;
        self.update(id, platform, stage("waiting"));
        let _slot = slot.acquire(&build.pipeline).await;
        let builder_cfg = self
            .config
            .builders
            .iter()
            .find(|b| b.name == builder)
            .ok_or_else(|| BuildError::NoBuilder(platform.into()))?;
        let key = build
            .platforms
            .iter()
            .find(|p| p.platform == platform)
            .map(|p| p.build_key.clone())
            .unwrap_or_default();
        self.log(
            id,
            Some(platform),
            format!("hab: building {platform} on builder {builder} (build key {key})"),
        );
        self.update(id, platform, stage("building"));
        let engine = Engine::connect(builder_cfg).await?;
        let args = prep
            .platforms
            .iter()
            .find(|p| p.platform == platform)
            .map(|p| p.args.clone())
            .unwrap_or_default();
        if let Some(base) = args.get("BASE_IMAGE") {
            self.log(
                id,
                Some(platform),
                format!("hab: base image for {platform} pinned as {base}"),
            );
        }
        let arch = plan::architecture(platform);
        let tag = local_tag(
            &prep.pipeline.name,
            id,
            arch,
            &self.instance().await?,
            LOCAL_TAGS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        );
        let tmp = self.config.state_dir.join("tmp");
        let saved: PathBuf = tmp.join(archive_name(id, arch));
        // From here until they are removed, whatever ends the build (pushed,
        // failed, or cancelled: this future dropped), the local tag and the
        // archive are leftovers of this build (removed when `leftovers` is
        // cleaned or dropped).
        let leftovers = Leftovers::new(
            self.leftovers.clone(),
            id,
            engine.clone(),
            tag.clone(),
            saved.clone(),
        );
        let store = self.store.clone();
        let p = platform.to_string();
        let mut log = move |lines: Vec<String>| {
            if let Err(e) = store.append_log(id, Some(&p), &lines) {
                tracing::warn!(build = id, error = %e, "cannot store build output");
            }
        };
        let image_id = engine
            .build(
                BuildRequest {
                    context: prep.context.clone(),
                    platform,
                    args: &args,
                    tag: &tag,
                    registry_auth: self
                        .docker_credentials()
                        .map(|c| (self.registry.host().to_string(), c)),
                },
                &mut log,
            )
            .await?;
        self.update(
            id,
            platform,
            PlatformUpdate {
                stage: Some("exporting".into()),
                image_id: Some(image_id.clone()),
                ..Default::default()
            },
        );

        tokio::fs::create_dir_all(&tmp)
            .await
            .map_err(|e| BuildError::Internal(format!("{}: {e}", tmp.display())))?;
        let result = async {
            engine.export(&tag, &saved).await?;
            self.update(id, platform, stage("pushing"));
            let store = self.store.clone();
            let p = platform.to_string();
            let progress = Arc::new(move |pushed: i64, total: i64| {
                let u = PlatformUpdate {
                    bytes_pushed: Some(pushed),
                    bytes_total: Some(total),
                    ..Default::default()
                };
                let _ = store.update_platform(id, &p, &u);
            });
            Ok::<_, BuildError>(
                self.registry
                    .publish_saved(&saved, &build.repository, progress)
                    .await?,
            )
        }
        .await;
        leftovers.clean().await;
        let pushed = result?;
        self.update(
            id,
            platform,
            PlatformUpdate {
                stage: Some("pushed".into()),
                manifest: Some((
                    pushed.digest.clone(),
                    pushed.size,
                    pushed.media_type.clone(),
                )),
                bytes_total: Some(pushed.bytes_total),
                bytes_pushed: Some(pushed.bytes_pushed),
                blobs_skipped: Some(pushed.blobs_skipped),
                ..Default::default()
            },
        );
        self.log(
            id,
            Some(platform),
            format!(
                "hab: pushed {platform} image {} ({} of {} bytes uploaded, {} blobs already there)",
                pushed.digest, pushed.bytes_pushed, pushed.bytes_total, pushed.blobs_skipped
            ),
        );
        Ok(())
    }

    /// Verifies an index: read back and hash everything, check platforms,
    /// smoke-run each platform. With `build`, its pipeline's platforms and
    /// smoke command are the standard, and the run is logged to it.
    ///
    /// # Errors
    /// Only if the store fails; a failed check is an outcome.
    pub async fn verify_index(
        &self,
        build: Option<&BuildRecord>,
        repository: &str,
        index_digest: &str,
    ) -> Result<Verification, BuildError> {
        let pipeline = build.and_then(|b| self.pipeline(&b.pipeline).ok());
        let platforms: Vec<String> = build
            .map(|b| b.platforms.iter().map(|p| p.platform.clone()).collect())
            .unwrap_or_default();
        let id = build.map(|b| b.id);
        let note = |line: String| {
            if let Some(id) = id {
                self.log(id, None, line);
            }
        };
        note(format!(
            "hab: reading back {}",
            self.registry.pinned(repository, index_digest)
        ));
        let read_back =
            readback::read_back(&self.registry, repository, index_digest, &platforms).await;
        let mut problems = read_back.problems.clone();
        note(format!(
            "hab: read back {} blobs, {} bytes; {} problems",
            read_back.blobs_checked,
            read_back.bytes_read,
            problems.len()
        ));
        let mut smoke = BTreeMap::new();
        if problems.is_empty() {
            let command = pipeline
                .as_ref()
                .and_then(|p| p.build.as_ref())
                .map(|b| b.smoke.clone())
                .unwrap_or_default();
            let to_run = readback::check::smoke_targets(&platforms, &read_back.platforms);
            if command.is_empty() {
                note("hab: no smoke command configured; images not run".into());
            } else {
                for (platform, digest) in to_run {
                    let report = self
                        .smoke_one(repository, &platform, &digest, &command)
                        .await;
                    note(format!(
                        "hab: smoke {platform}: `{}` exited {}: {}",
                        command.join(" "),
                        report
                            .exit_code
                            .map_or("(did not run)".to_string(), |c| c.to_string()),
                        report.output.trim()
                    ));
                    if let Err(r) = readback::check::smoke_run(
                        &command,
                        &platform,
                        report.exit_code,
                        &report.output,
                    ) {
                        problems.push(r.to_string());
                    }
                    smoke.insert(platform, report);
                }
            }
        }
        for p in &problems {
            note(format!("hab: verify: {p}"));
        }
        let v = Verification {
            ok: problems.is_empty(),
            reason: problems.first().cloned(),
            read_back,
            smoke,
        };
        let store = self.store.clone();
        let reference = self.registry.pinned(repository, index_digest);
        let report = serde_json::to_value(&v).unwrap_or_default();
        let (ok, reason) = (v.ok, v.reason.clone());
        blocking(move || {
            Ok(store.record_verification(id, &reference, ok, reason.as_deref(), &report)?)
        })
        .await?;
        Ok(v)
    }

    async fn smoke_one(
        &self,
        repository: &str,
        platform: &str,
        digest: &str,
        command: &[String],
    ) -> SmokeReport {
        let fail = |output: String| SmokeReport {
            command: command.to_vec(),
            exit_code: None,
            output,
        };
        let Some(builder) = platform
            .parse()
            .ok()
            .and_then(|p| self.config.builder_for(&p))
        else {
            return fail(format!("no builder runs {platform}"));
        };
        let engine = match Engine::connect(builder).await {
            Ok(e) => e,
            Err(e) => return fail(e.to_string()),
        };
        let reference = self.registry.pinned(repository, digest);
        match engine
            .smoke(&reference, platform, command, self.docker_credentials())
            .await
        {
            Ok(o) => SmokeReport {
                command: command.to_vec(),
                exit_code: Some(o.exit_code),
                output: o.output,
            },
            Err(e) => fail(e.to_string()),
        }
    }

    /// Re-runs verification of a build on demand (`habctl verify <id>`).
    ///
    /// # Errors
    /// No such build, or it never pushed an index.
    pub async fn verify_build(&self, id: i64) -> Result<Verification, BuildError> {
        let store = self.store.clone();
        let build = blocking(move || store.build(id)?.ok_or(BuildError::NoSuchBuild(id))).await?;
        let Some(index) = build.index_digest.clone() else {
            return Err(BuildError::Verification(format!(
                "build {id} pushed no index ({})",
                build.state.as_str()
            )));
        };
        self.verify_index(Some(&build), &build.repository, &index)
            .await
    }

    /// Verifies `repository@digest` (`habctl verify hab/fixture@sha256:…`):
    /// when a build pushed that index, as that build; otherwise every
    /// platform the index lists is read back (no smoke command is known).
    ///
    /// # Errors
    /// Malformed reference, or the store failed.
    pub async fn verify_reference(&self, reference: &str) -> Result<Verification, BuildError> {
        let (repository, digest) = readback::check::pinned_parts(self.registry.host(), reference)
            .map_err(|r| BuildError::Verification(r.to_string()))?;
        let store = self.store.clone();
        let d = digest.to_string();
        let build = blocking(move || Ok(store.build_by_index(&d)?)).await?;
        self.verify_index(build.as_ref(), repository, digest).await
    }
}

/// Numbers the local tags of this process's builds.
static LOCAL_TAGS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The repository of every local tag a build makes on its builder.
pub const LOCAL_TAG_REPOSITORY: &str = "hab-build";

/// File in the state folder holding this habd's mark, made once: it is in
/// the local tag of each of its builds, so that the sweep at start removes
/// its own leftovers and never those of another habd sharing the builder.
pub const INSTANCE_FILE: &str = "instance-id";

/// How long removing a build's leftovers may take before habd stops
/// waiting for it (the sweep at the next start removes what remains).
const CLEANUP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// How long the sweep at start waits for a builder to answer.
const SWEEP_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// The local tag of one platform of build `id`:
/// `hab-build/<pipeline>:<id>-<arch>-<instance>-<n>`, unique on the builder
/// even when several habds share it and number their builds alike.
pub fn local_tag(pipeline: &str, id: i64, arch: &str, instance: &str, n: u64) -> String {
    format!("{LOCAL_TAG_REPOSITORY}/{pipeline}:{id}-{arch}-{instance}-{n}")
}

/// The build id and the habd's mark in a tag made by [`local_tag`]; None
/// for any other tag.
pub fn parse_local_tag(tag: &str) -> Option<(i64, &str)> {
    let rest = tag.strip_prefix(LOCAL_TAG_REPOSITORY)?.strip_prefix('/')?;
    let (_, rest) = rest.rsplit_once(':')?;
    let mut parts = rest.rsplitn(3, '-');
    let n = parts.next()?;
    let instance = parts.next()?;
    let (id, arch) = parts.next()?.split_once('-')?;
    n.parse::<u64>().ok()?;
    if arch.is_empty() || instance.is_empty() {
        return None;
    }
    Some((id.parse().ok()?, instance))
}

/// The file one platform of build `id` is exported to, under
/// `state_dir/tmp`.
pub fn archive_name(id: i64, arch: &str) -> String {
    format!("build-{id}-{arch}.tar")
}

/// The build id of a file named by [`archive_name`]; None for any other.
pub fn parse_archive_name(name: &str) -> Option<i64> {
    let rest = name.strip_prefix("build-")?.strip_suffix(".tar")?;
    let (id, arch) = rest.split_once('-')?;
    if arch.is_empty() {
        return None;
    }
    id.parse().ok()
}

/// What one platform of a build leaves behind until its image is pushed:
/// the local tag on the builder and the archive in `state_dir/tmp`.
/// [`Leftovers::clean`] removes them; dropped without it (the build failed
/// before its export, or was cancelled), it has a task remove them, which
/// [`Builds::finish`] waits for.
struct Leftovers {
    pending: Arc<watch::Sender<HashMap<i64, usize>>>,
    build: i64,
    engine: Engine,
    tag: String,
    archive: PathBuf,
    cleaned: bool,
}

impl Leftovers {
    fn new(
        pending: Arc<watch::Sender<HashMap<i64, usize>>>,
        build: i64,
        engine: Engine,
        tag: String,
        archive: PathBuf,
    ) -> Self {
        pending.send_modify(|m| *m.entry(build).or_default() += 1);
        Leftovers {
            pending,
            build,
            engine,
            tag,
            archive,
            cleaned: false,
        }
    }

    async fn clean(mut self) {
        // Cancelled while at it, the drop starts over (removing is idempotent).
        remove_leftovers(&self.engine, &self.tag, &self.archive).await;
        release(&self.pending, self.build);
        self.cleaned = true;
    }
}

impl Drop for Leftovers {
    fn drop(&mut self) {
        if self.cleaned {
            return;
        }
        let (pending, build) = (self.pending.clone(), self.build);
        let (engine, tag, archive) = (
            self.engine.clone(),
            std::mem::take(&mut self.tag),
            std::mem::take(&mut self.archive),
        );
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(async move {
                    remove_leftovers(&engine, &tag, &archive).await;
                    tracing::info!(build, tag, archive = %archive.display(), "removed what the build left behind");
                    release(&pending, build);
                });
            }
            // No runtime left (habd is stopping): the archive now, the tag
            // at the next start's sweep.
            Err(_) => {
                let _ = std::fs::remove_file(&archive);
                release(&pending, build);
            }
        }
    }
}

fn release(pending: &watch::Sender<HashMap<i64, usize>>, build: i64) {
    pending.send_modify(|m| {
        if let Some(n) = m.get_mut(&build) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&build);
            }
        }
    });
}

async fn remove_archive(archive: &std::path::Path) {
    match tokio::fs::remove_file(archive).await {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            tracing::warn!(archive = %archive.display(), error = %e, "cannot remove a build's archive");
        }
    }
}

async fn remove_leftovers(engine: &Engine, tag: &str, archive: &std::path::Path) {
    remove_archive(archive).await;
    if tokio::time::timeout(CLEANUP_TIMEOUT, engine.remove_image(tag))
        .await
        .is_err()
    {
        tracing::warn!(
            builder = engine.name(),
            tag,
            "the builder did not answer; habd's next start sweeps the tag"
        );
    }
    // An export cut short may have been creating the file at that moment.
    remove_archive(archive).await;
}

/// Aborts the platform tasks when the build's future is dropped (cancelled).
struct AbortOnDrop(Vec<tokio::task::AbortHandle>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for h in &self.0 {
            h.abort();
        }
    }
}

fn stage(s: &str) -> PlatformUpdate {
    PlatformUpdate {
        stage: Some(s.into()),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_tags_and_archives_name_their_build() {
        let tag = local_tag("bitcoind", 12, "arm64", "0a1b2c3d4e5f", 7);
        assert_eq!(tag, "hab-build/bitcoind:12-arm64-0a1b2c3d4e5f-7");
        assert_eq!(parse_local_tag(&tag), Some((12, "0a1b2c3d4e5f")));
        for other in [
            "hab-build/bitcoind:latest",
            "hab-build/bitcoind:12-arm64-1234-5-x",
            "other/bitcoind:12-arm64-0a1b2c3d4e5f-7",
            "hab-build/bitcoind:x-arm64-0a1b2c3d4e5f-7",
        ] {
            assert_eq!(parse_local_tag(other), None, "{other}");
        }
        assert_eq!(archive_name(12, "amd64"), "build-12-amd64.tar");
        assert_eq!(parse_archive_name("build-12-amd64.tar"), Some(12));
        for other in ["build-12.tar", "build-x-amd64.tar", "notes.txt"] {
            assert_eq!(parse_archive_name(other), None, "{other}");
        }
    }
}
