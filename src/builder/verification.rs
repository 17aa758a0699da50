//! Verification of a build's image index: read back and hash everything,
//! check its platforms, smoke-run each platform.

use std::collections::BTreeMap;

use crate::{
    api::{SmokeReport, Verification},
    readback,
    store::BuildRecord,
};

use super::{blocking, engine::Engine, BuildError, Builds};

impl Builds {
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
        let started = std::time::Instant::now();
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
            seconds: started.elapsed().as_secs_f64(),
            provenance: None,
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
        let mut v = self
            .verify_index(Some(&build), &build.repository, &index)
            .await?;
        if v.ok && build.verified() {
            v.provenance = Some(match self.attested(&build, &index).await {
                Ok(()) => "attested by habd's key".to_string(),
                Err(why) => format!(
                    "{why}: it cannot be promoted or rolled; habctl build {} --ref {} builds it again",
                    build.pipeline, build.version
                ),
            });
        }
        Ok(v)
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
