//! Channel policy: which build a `promote` names, whether it may go on a
//! channel, and which channels advance by themselves when a build verifies.
//!
//! A channel points at one VERIFIED build (DESIGN.md invariant 2); the store
//! refuses anything else inside the move's transaction, and this module
//! turns the operator's words (`v1.2.0`, `12`, `build-12`, `sha256:…`,
//! `hab/node@sha256:…`) into a build and the refusals into reasons.

use crate::{
    config::Pipeline,
    refname::{self, natural_cmp},
    store::{ChannelMove, MoveRefused, Store, StoreError},
};

/// What a promote names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A build id (`12` or `build-12`).
    Build(i64),
    /// An index digest (`sha256:…`, optionally `repository@sha256:…`).
    Digest(String),
    /// A tag or branch (`v1.2.0`, `refs/tags/v1.2.0`): its newest VERIFIED build.
    Ref(String),
}

impl Target {
    /// Reads the operator's words.
    pub fn parse(s: &str) -> Self {
        let s = s.trim();
        // A bare number is a build id (write refs/tags/2024 for a tag so named).
        let id = s.strip_prefix("build-").unwrap_or(s);
        if !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()) {
            if let Ok(id) = id.parse() {
                return Target::Build(id);
            }
        }
        if let Some(i) = s.find("sha256:") {
            if i == 0 || s[..i].ends_with('@') {
                return Target::Digest(s[i..].to_string());
            }
        }
        Target::Ref(s.to_string())
    }
}

/// Why a promote did not happen.
#[derive(Debug, thiserror::Error)]
pub enum PromoteError {
    /// The pipeline declares no such channel.
    #[error("pipeline {pipeline} has no channel {channel:?}; its channels: {known}")]
    UnknownChannel {
        /// Pipeline.
        pipeline: String,
        /// Channel asked for.
        channel: String,
        /// Declared channels.
        known: String,
    },
    /// Nothing matches the target.
    #[error("{0}")]
    NotFound(String),
    /// The build may not be promoted.
    #[error("{0}")]
    Refused(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a promote did.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Promoted {
    /// The build now on the channel.
    pub build_id: i64,
    /// The move recorded; None when the channel was already there.
    #[serde(rename = "move")]
    pub channel_move: Option<ChannelMove>,
}

/// Moves `channel` of `pipeline` to the build `target` names. Blocking
/// (SQLite). A known-bad build (its rollout failed its gates) moves only
/// with `force` and a reason.
///
/// # Errors
/// Unknown channel or target, a build that is not VERIFIED, or a known-bad
/// one without `force` and a reason; nothing changes then.
pub fn promote(
    store: &Store,
    pipeline: &Pipeline,
    target: &str,
    channel: &str,
    by: &str,
    reason: Option<&str>,
    force: bool,
) -> Result<Promoted, PromoteError> {
    let build_id = resolve(store, pipeline, target, channel)?;
    if let Some(bad) = store.known_bad(build_id)? {
        let reason_given = reason.is_some_and(|r| !r.trim().is_empty());
        if !force || !reason_given {
            return Err(PromoteError::Refused(format!(
                "build {build_id} is {bad}; to promote it anyway, say why: --force --reason \"…\""
            )));
        }
    }
    move_to(store, pipeline, build_id, channel, by, reason)
}

/// The build a promote of `target` to `channel` would move it to.
///
/// # Errors
/// An undeclared channel, or a target that names no build of the pipeline.
pub fn resolve(
    store: &Store,
    pipeline: &Pipeline,
    target: &str,
    channel: &str,
) -> Result<i64, PromoteError> {
    if !pipeline.channels.iter().any(|c| c.name == channel) {
        return Err(PromoteError::UnknownChannel {
            pipeline: pipeline.name.clone(),
            channel: channel.into(),
            known: if pipeline.channels.is_empty() {
                "none (declare [[channel]] in the pipeline file)".into()
            } else {
                pipeline
                    .channels
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        });
    }
    let build_id = match Target::parse(target) {
        Target::Build(id) => id,
        Target::Digest(d) => match store.build_by_index(&d)? {
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
        Target::Ref(r) => {
            let mut found = None;
            refname::resolve(&r, |n| {
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
    refuse_misbound(store, pipeline, build_id)?;
    Ok(build_id)
}

/// Refuses a build whose ref is now judged misbound (a tag object under
/// another name, or no commit) at the very commit the build was made from:
/// a verdict reached under looser rules, and judged again since, must not
/// still reach a channel through a build made before. A build of what the
/// ref pointed at before it moved is not concerned.
fn refuse_misbound(store: &Store, pipeline: &Pipeline, build_id: i64) -> Result<(), PromoteError> {
    let Some(build) = store.build(build_id)? else {
        return Ok(()); // the move itself reports the missing build
    };
    match store.get_ref(&pipeline.name, &build.ref_name)? {
        Some(r) if r.verdict.is_misbound() && r.commit == build.commit => {
            Err(PromoteError::Refused(format!(
                "build {build_id} was made from {}, which is now refused: {}",
                build.ref_name, r.verdict
            )))
        }
        _ => Ok(()),
    }
}

fn move_to(
    store: &Store,
    pipeline: &Pipeline,
    build_id: i64,
    channel: &str,
    by: &str,
    reason: Option<&str>,
) -> Result<Promoted, PromoteError> {
    match store.move_channel(&pipeline.name, channel, build_id, by, reason)? {
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

/// The channels that advance by themselves when a build of `pipeline` verifies.
pub fn auto_channels(pipeline: &Pipeline) -> impl Iterator<Item = &str> {
    pipeline
        .channels
        .iter()
        .filter(|c| c.auto)
        .map(|c| c.name.as_str())
}

/// Whether an automatic channel now on a build of `current` should move to
/// a newly verified build of `new`: only forward, by natural version order
/// (`v1.10.0` after `v1.9.2`), or to a rebuild of the same release. A rebuild
/// of an old release (a new base image) must not pull `edge` back.
pub fn advances(current: Option<&str>, new: &str) -> bool {
    match current {
        None => true,
        Some(cur) => natural_cmp(refname::short(new), refname::short(cur)) != std::cmp::Ordering::Less,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn automatic_channels_only_move_forward() {
        assert!(advances(None, "refs/tags/v1.0.0"));
        assert!(advances(Some("refs/tags/v1.9.2"), "refs/tags/v1.10.0"));
        assert!(!advances(Some("refs/tags/v1.10.0"), "refs/tags/v1.9.2"));
        assert!(
            advances(Some("refs/tags/v27.1"), "refs/tags/v27.1"),
            "a rebuild"
        );
        assert!(advances(Some("refs/tags/v27.1"), "refs/tags/v28.0"));
        assert!(!advances(Some("refs/tags/v28.0"), "refs/tags/v27.2"));
        assert!(advances(Some("refs/tags/v1.0"), "refs/tags/v1.0.1"));
    }

    #[test]
    fn targets_read_as_operators_write_them() {
        assert_eq!(Target::parse("12"), Target::Build(12));
        assert_eq!(Target::parse("build-12"), Target::Build(12));
        assert_eq!(
            Target::parse("sha256:abc"),
            Target::Digest("sha256:abc".into())
        );
        assert_eq!(
            Target::parse("127.0.0.1:5000/hab/node@sha256:abc"),
            Target::Digest("sha256:abc".into())
        );
        assert_eq!(Target::parse("v1.2.0"), Target::Ref("v1.2.0".into()));
        assert_eq!(Target::parse("2024"), Target::Build(2024));
        assert_eq!(
            Target::parse("refs/tags/v1"),
            Target::Ref("refs/tags/v1".into())
        );
        assert_eq!(Target::parse("v12"), Target::Ref("v12".into()));
    }
}
