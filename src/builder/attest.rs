//! The last step of a build before VERIFIED: the facts of how it was made,
//! signed by habd and attached to its index ([`crate::provenance`]). A
//! build whose attestation cannot be attached does not become VERIFIED:
//! no rollout would accept it.

use crate::{
    api::Verification,
    mirror::Mirror,
    provenance::{Attested, BuildFacts, PlatformFacts},
    refplan::RefKind,
    signature::Verdict,
    store::BuildRecord,
    sync::mirror_path,
};

use super::{blocking, run::Prepared, BuildError, Builds};
use crate::provenance::{Failure, ProvenanceError};

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

    /// The provenance of a VERIFIED build verified again (`habctl verify
    /// ID`), in words: found, or, for a build verified before hab signed
    /// provenance, attached now when the build can be told apart exactly
    /// (its ref, recipe, arguments and base images give the build keys it
    /// was made with).
    pub(super) async fn provenance_of(
        &self,
        build: &BuildRecord,
        index: &str,
        v: &Verification,
    ) -> String {
        match self.provenance.check(&build.repository, index).await {
            Ok(c) => format!("attested by habd's key (builder {})", c.builder),
            Err(ProvenanceError::Failure(Failure::Missing { .. })) => {
                match self.attest_again(build, index, v).await {
                    Ok(a) => {
                        let line = format!(
                            "none was attached; signed and attached now as {} (tag {})",
                            a.manifest, a.fallback_tag
                        );
                        self.log(build.id, None, format!("hab: provenance: {line}"));
                        line
                    }
                    Err(e) => format!("none is attached, and none can be now: {e}"),
                }
            }
            Err(e) => format!("does not verify: {e}"),
        }
    }

    async fn attest_again(
        &self,
        build: &BuildRecord,
        index: &str,
        v: &Verification,
    ) -> Result<Attested, BuildError> {
        let pipeline = self.pipeline(&build.pipeline)?;
        let prep = self.prepare(pipeline, &build.ref_name).await?;
        for p in &build.platforms {
            let same = prep
                .platforms
                .iter()
                .any(|x| x.platform == p.platform && x.key == p.build_key);
            if !same {
                return Err(BuildError::Verification(format!(
                    "the {} image's inputs (ref, recipe, arguments or base image) changed since build {} was made: build the release again",
                    p.platform, build.id
                )));
            }
        }
        let size = self
            .registry
            .fetch_index(&build.repository, index)
            .await?
            .len() as i64;
        self.attest(build, &prep, (index, size), v).await
    }
}
