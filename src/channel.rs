//! Channel policy: which build a `promote` names, whether it may go on a
//! channel, and which channels advance by themselves when a build verifies.
//!
//! A channel points at one VERIFIED build (DESIGN.md invariant 2); the store
//! refuses anything else inside the move's transaction. This module reads
//! the operator's words (`v1.2.0`, `12`, `build-12`, `sha256:…`,
//! `hab/node@sha256:…`) and names the refusals; [`crate::promotion`] moves
//! channels.

use crate::{
    config::Pipeline,
    refname::{self, natural_cmp},
    store::{ChannelMove, StoreError},
};

/// What a promote names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PromoteTarget {
    /// A build id (`12` or `build-12`).
    Build(i64),
    /// An index digest (`sha256:…`, optionally `repository@sha256:…`).
    Digest(String),
    /// A tag or branch (`v1.2.0`, `refs/tags/v1.2.0`): its newest VERIFIED build.
    Ref(String),
}

impl PromoteTarget {
    /// Reads the operator's words.
    pub fn parse(s: &str) -> Self {
        let s = s.trim();
        // A bare number is a build id (write refs/tags/2024 for a tag so named).
        let id = s.strip_prefix("build-").unwrap_or(s);
        if !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()) {
            if let Ok(id) = id.parse() {
                return PromoteTarget::Build(id);
            }
        }
        if let Some(i) = s.find("sha256:") {
            if i == 0 || s[..i].ends_with('@') {
                return PromoteTarget::Digest(s[i..].to_string());
            }
        }
        PromoteTarget::Ref(s.to_string())
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
    /// A blocking task died, or the rollouts could not be queued.
    #[error("internal error: {0}")]
    Internal(String),
}

impl crate::offload::TaskDied for PromoteError {
    fn task_died(reason: String) -> Self {
        PromoteError::Internal(reason)
    }
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

/// Refuses a channel `pipeline` does not declare.
///
/// # Errors
/// [`PromoteError::UnknownChannel`], listing the declared ones.
pub fn declared(pipeline: &Pipeline, channel: &str) -> Result<(), PromoteError> {
    if pipeline.channels.iter().any(|c| c.name == channel) {
        return Ok(());
    }
    Err(PromoteError::UnknownChannel {
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
    })
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
        Some(cur) => {
            natural_cmp(refname::short(new), refname::short(cur)) != std::cmp::Ordering::Less
        }
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
        assert_eq!(PromoteTarget::parse("12"), PromoteTarget::Build(12));
        assert_eq!(PromoteTarget::parse("build-12"), PromoteTarget::Build(12));
        assert_eq!(
            PromoteTarget::parse("sha256:abc"),
            PromoteTarget::Digest("sha256:abc".into())
        );
        assert_eq!(
            PromoteTarget::parse("127.0.0.1:5000/hab/node@sha256:abc"),
            PromoteTarget::Digest("sha256:abc".into())
        );
        assert_eq!(
            PromoteTarget::parse("v1.2.0"),
            PromoteTarget::Ref("v1.2.0".into())
        );
        assert_eq!(PromoteTarget::parse("2024"), PromoteTarget::Build(2024));
        assert_eq!(
            PromoteTarget::parse("refs/tags/v1"),
            PromoteTarget::Ref("refs/tags/v1".into())
        );
        assert_eq!(
            PromoteTarget::parse("v12"),
            PromoteTarget::Ref("v12".into())
        );
    }
}
