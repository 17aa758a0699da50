//! What builds leave behind on the way (a local tag on the builder, an
//! archive in `state_dir/tmp`), its removal, and the sweep at habd's start;
//! the habd's instance mark that names its local tags.

use std::{collections::HashMap, path::PathBuf, sync::Arc};

use tokio::sync::watch;

use super::{
    blocking,
    engine::{Engine, EngineError},
    BuildError, Builds,
};

impl Builds {
    /// This habd's mark in its builds' local tags, made once and kept in
    /// [`INSTANCE_FILE`] of the state folder.
    pub(super) async fn instance(&self) -> Result<String, BuildError> {
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
}

/// Numbers the local tags of this process's builds.
pub(super) static LOCAL_TAGS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The repository of every local tag a build makes on its builder.
pub const LOCAL_TAG_REPOSITORY: &str = "hab-build";

/// File in the state folder holding this habd's mark, made once: it is in
/// the local tag of each of its builds, so that the sweep at start removes
/// its own leftovers and never those of another habd sharing the builder.
pub const INSTANCE_FILE: &str = "instance-id";

/// How long removing a build's leftovers may take before habd stops
/// waiting for it (the sweep at the next start removes what remains).
pub(super) const CLEANUP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

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
pub(super) struct Leftovers {
    pending: Arc<watch::Sender<HashMap<i64, usize>>>,
    build: i64,
    engine: Engine,
    tag: String,
    archive: PathBuf,
    cleaned: bool,
}

impl Leftovers {
    pub(super) fn new(
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

    pub(super) async fn clean(mut self) {
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
pub(super) struct AbortOnDrop(pub(super) Vec<tokio::task::AbortHandle>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for h in &self.0 {
            h.abort();
        }
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
