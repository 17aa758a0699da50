//! Running one build: prepare (ref, policy, recipe, keys) → build each
//! platform on its builder → publish the index → verify → tag the version.

use std::{collections::BTreeMap, path::PathBuf, sync::Arc};

use crate::{
    config::Pipeline,
    mirror::Mirror,
    refplan::may_build,
    registry::IndexEntry,
    store::{BuildRecord, BuildState, PlatformUpdate, StoredRef},
    sync::mirror_path,
};

use super::{
    blocking, context,
    engine::{BuildRequest, Engine},
    leftovers::{archive_name, local_tag, AbortOnDrop, Leftovers, LOCAL_TAGS},
    plan, BuildError, Builds, SIGNER_ANNOTATION,
};

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
pub(super) struct Prepared {
    pub(super) pipeline: Arc<Pipeline>,
    pub(super) stored: StoredRef,
    pub(super) version: String,
    pub(super) context: Vec<u8>,
    pub(super) platforms: Vec<PlatformPlan>,
    /// The recipe's files, hashed ([`plan::recipe_digest`]).
    pub(super) recipe_digest: String,
}

/// One platform of a prepared build.
pub(super) struct PlatformPlan {
    pub(super) platform: String,
    pub(super) builder: String,
    pub(super) key: String,
    /// Every build argument, `BASE_IMAGE` pinned to the digest in the key.
    pub(super) args: BTreeMap<String, String>,
}

impl Builds {
    /// Resolves the ref, checks the policy, reads the recipe and the tree,
    /// and computes every platform's key.
    pub(super) async fn prepare(
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
            recipe_digest: plan::recipe_digest(&recipe_files),
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

    pub(super) async fn execute(
        self: &Arc<Self>,
        id: i64,
        prep: Arc<Prepared>,
    ) -> Result<(), BuildError> {
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
        let attested = self
            .attest(&build, &prep, (&index_digest, index_bytes.len() as i64), &v)
            .await?;
        self.log(
            id,
            None,
            format!(
                "hab: signed provenance attached as {} (listed under tag {}{})",
                attested.manifest,
                attested.fallback_tag,
                if attested.referrers_api {
                    " and by the referrers API"
                } else {
                    "; the registry offers no referrers API"
                }
            ),
        );
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
}

fn stage(s: &str) -> PlatformUpdate {
    PlatformUpdate {
        stage: Some(s.into()),
        ..Default::default()
    }
}
