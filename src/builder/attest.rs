//! The last step of a build before VERIFIED: the facts of how it was made,
//! signed by habd and attached to its index ([`crate::provenance`]). A
//! build whose attestation cannot be attached does not become VERIFIED:
//! no rollout would accept it. And what may be reused: a build, or a
//! platform's image, only when habd's attestation vouches for it.

use crate::{
    api::Verification,
    mirror::Mirror,
    provenance::{Attested, BuildFacts, PlatformFacts},
    refplan::RefKind,
    signature::Verdict,
    store::{BuildRecord, KeyRecord},
    sync::mirror_path,
};

use super::{blocking, run::Prepared, BuildError, Builds};

impl Builds {
    /// Signs and attaches the provenance of `build`, whose index
    /// (`index_size` bytes) verified as `v`.
    pub(super) async fn attest(
        &self,
        build: &BuildRecord,
        prep: &Prepared,
        index: (&str, i64),
        v: &Verification,
    ) -> Result<Attested, BuildError> {
        let stored = prep.stored.clone();
        let tag_object = if stored.kind == RefKind::AnnotatedTag {
            let mirror = mirror_path(&self.config.state_dir, &prep.pipeline.name);
            let oid = stored.oid.clone();
            Some(blocking(move || Ok(Mirror::open_or_init(&mirror)?.read_raw(&oid)?)).await?)
        } else {
            None
        };
        let platforms = build
            .platforms
            .iter()
            .map(|p| {
                let plan = prep.platforms.iter().find(|x| x.platform == p.platform);
                let args = plan.map(|x| x.args.clone()).unwrap_or_default();
                PlatformFacts {
                    platform: p.platform.clone(),
                    digest: p.manifest_digest.clone().unwrap_or_default(),
                    build_key: p.build_key.clone(),
                    base_image: args.get("BASE_IMAGE").cloned(),
                    args,
                }
            })
            .collect();
        let facts = BuildFacts {
            repository: build.repository.clone(),
            index_digest: index.0.to_string(),
            platforms,
            pipeline: build.pipeline.clone(),
            upstream: prep.pipeline.upstream.clone(),
            ref_name: build.ref_name.clone(),
            commit: build.commit.clone(),
            version: build.version.clone(),
            recipe: prep
                .pipeline
                .build
                .as_ref()
                .map(|b| b.recipe.clone())
                .unwrap_or_default(),
            recipe_digest: prep.recipe_digest.clone(),
            ref_oid: stored.oid.clone(),
            tag_object,
            verdict: stored.verdict.kind().to_string(),
            verdict_text: stored.verdict.to_string(),
            signer: match &stored.verdict {
                Verdict::Verified { fingerprint, .. } => Some(fingerprint.clone()),
                _ => None,
            },
            builder_id: self.provenance.builder_id(),
            build_id: build.id,
            started: build.created_at,
            finished: chrono::Utc::now(),
            verification: serde_json::to_value(v).unwrap_or_default(),
        };
        let attested =
            self.provenance.attest(&facts, index.1).await.map_err(|e| {
                BuildError::Verification(format!("cannot attach its attestation: {e}"))
            })?;
        let (store, id, manifest) = (self.store.clone(), build.id, attested.manifest.clone());
        blocking(move || Ok(store.set_attestation(id, &manifest)?)).await?;
        Ok(attested)
    }

    /// Whether habd's attestation of `index` (a build of `build`'s
    /// pipeline) is in the registry: a build is reused only then.
    pub(super) async fn attested(&self, build: &BuildRecord, index: &str) -> Result<(), String> {
        match self.provenance.check(&build.repository, index).await {
            Ok(c) if c.pipeline == build.pipeline => Ok(()),
            Ok(c) => Err(format!(
                "habd attested {index} as a build of pipeline {}, not {}",
                c.pipeline, build.pipeline
            )),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Whether habd's attestation of the build that made the image a build
    /// key is recorded to have made names that image *with that build
    /// key*: an image is reused only then, so a store that says otherwise
    /// cannot slip in an image, not even habd's own of another release.
    pub(super) async fn image_attested(&self, key: &KeyRecord) -> bool {
        let store = self.store.clone();
        let id = key.build_id;
        let Ok(Some(made)) = blocking(move || Ok(store.build(id)?)).await else {
            return false;
        };
        let Some(index) = made.index_digest.as_deref() else {
            return false;
        };
        match self.provenance.check(&made.repository, index).await {
            Ok(c) => c
                .images
                .iter()
                .any(|(_, d, k)| *d == key.manifest_digest && *k == key.build_key),
            Err(e) => {
                tracing::warn!(build = id, error = %e, "the image of build key {} is not attested: building it again", key.build_key);
                false
            }
        }
    }
}
