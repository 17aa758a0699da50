//! The dashboard's facts as plain data, and the plain functions over them:
//! how far each node is behind, which nodes run a build, which tag is a
//! pipeline's newest, and when its release reached each stage. The server
//! gathers the facts from the store; the pages and `/metrics` read them.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::store::{
    BuildRecord, ChannelMove, ChannelState, NodeLook, RefEvent, RolloutRecord, RolloutStep,
    StoredRef,
};

/// One pipeline's channels and the builds they point at.
#[derive(Debug, Clone)]
pub struct PipelineFacts {
    /// Pipeline.
    pub name: String,
    /// `bitcoind`, `btcd`, `bcoin`.
    pub implementation: String,
    /// Its channels in configured order, with what each points at.
    pub channels: Vec<(String, Option<ChannelState>)>,
    /// The builds the channels point at, by id.
    pub builds: BTreeMap<i64, BuildRecord>,
}

/// One fleet: its configuration, its newest rollout and that rollout's steps.
#[derive(Debug, Clone)]
pub struct FleetFacts {
    /// Fleet.
    pub name: String,
    /// Pipeline it runs.
    pub pipeline: String,
    /// Channel it follows.
    pub channel: String,
    /// `docker` or `kubernetes:…`.
    pub target: String,
    /// Nodes configured.
    pub nodes: u32,
    /// Its newest rollout.
    pub rollout: Option<RolloutRecord>,
    /// That rollout's steps, oldest first.
    pub steps: Vec<RolloutStep>,
}

/// What the overview and the fleets page read.
#[derive(Debug, Clone)]
pub struct Facts {
    /// When the facts were read.
    pub now: DateTime<Utc>,
    /// Every pipeline.
    pub pipelines: Vec<PipelineFacts>,
    /// Every fleet.
    pub fleets: Vec<FleetFacts>,
    /// The last look at every node.
    pub nodes: Vec<NodeLook>,
}

/// Blocks each node is behind the best healthy node on its chain (of every
/// implementation and fleet), by (fleet, ordinal); None where the node gave
/// no height.
pub fn lags(nodes: &[NodeLook]) -> BTreeMap<(String, u32), Option<u64>> {
    let mut best: BTreeMap<&str, u64> = BTreeMap::new();
    for n in nodes.iter().filter(|n| n.healthy) {
        if let (Some(c), Some(h)) = (n.chain.as_deref(), n.height) {
            let b = best.entry(c).or_default();
            *b = (*b).max(h);
        }
    }
    nodes
        .iter()
        .map(|n| {
            let lag = match (n.chain.as_deref(), n.height) {
                (Some(c), Some(h)) => Some(best.get(c).map_or(0, |b| b.saturating_sub(h))),
                _ => None,
            };
            ((n.fleet.clone(), n.ordinal), lag)
        })
        .collect()
}

/// The digest a pinned image names (`repo@sha256:…` → `sha256:…`).
pub fn digest_of(image: &str) -> Option<&str> {
    image.split_once('@').map(|(_, d)| d)
}

/// `sha256:0123456789ab…` → `0123456789ab` (12 hex digits, as `docker` shows).
pub fn short_digest(digest: &str) -> &str {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    &hex[..hex.len().min(12)]
}

/// The nodes whose image is the index `digest`.
pub fn nodes_on<'a>(nodes: &'a [NodeLook], digest: &str) -> Vec<&'a NodeLook> {
    nodes
        .iter()
        .filter(|n| n.image.as_deref().and_then(digest_of) == Some(digest))
        .collect()
}

/// "just now", "42 s ago", "5 min ago", "3 h ago", "2 d ago".
pub fn ago(now: DateTime<Utc>, then: DateTime<Utc>) -> String {
    let s = (now - then).num_seconds();
    match s {
        i64::MIN..=4 => "just now".into(),
        5..=59 => format!("{s} s ago"),
        60..=3599 => format!("{} min ago", s / 60),
        3600..=172_799 => format!("{} h ago", s / 3600),
        _ => format!("{} d ago", s / 86_400),
    }
}

/// A span in words: "40 s", "12 min", "5 h 3 min", "2 d 4 h".
pub fn span(seconds: i64) -> String {
    let s = seconds.max(0);
    match s {
        0..=59 => format!("{s} s"),
        60..=3599 => format!("{} min", s / 60),
        3600..=86_399 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        _ => format!("{} d {} h", s / 86_400, s % 86_400 / 3600),
    }
}

/// Orders tag names as versions: digit runs compare as numbers
/// (`v27.10` after `v27.9`), a release after its release candidates
/// (`v28.0` after `v28.0rc2`).
pub fn version_key(name: &str) -> Vec<(u8, u64, String)> {
    let short = name.strip_prefix("refs/tags/").unwrap_or(name);
    let mut out = Vec::new();
    let mut rest = short;
    while !rest.is_empty() {
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits > 0 {
            out.push((1, rest[..digits].parse().unwrap_or(u64::MAX), String::new()));
            rest = &rest[digits..];
        } else {
            let other = rest.len() - rest.trim_start_matches(|c: char| !c.is_ascii_digit()).len();
            let word = &rest[..other];
            // Separators sort with the number that follows; a suffix such as
            // "rc" sorts before the end of the name (a release).
            if word.chars().all(|c| c == '.' || c == '-' || c == '_') {
                out.push((1, 0, String::new()));
            } else {
                out.push((0, 0, word.to_string()));
            }
            rest = &rest[other..];
        }
    }
    out.push((0, 0, String::from("~")));
    out
}

/// A pipeline's newest tag: the active tag whose name sorts last as a
/// version.
pub fn newest_tag(refs: &[StoredRef]) -> Option<&StoredRef> {
    refs.iter()
        .filter(|r| r.name.starts_with("refs/tags/"))
        .filter(|r| r.state == crate::refplan::RefState::Active)
        .max_by_key(|r| version_key(&r.name))
}

/// When one release reached each stage, from upstream's tag to each channel.
#[derive(Debug, Clone, PartialEq)]
pub struct ReleaseStages {
    /// The tag.
    pub tag: StoredRef,
    /// First seen in a sync.
    pub seen: DateTime<Utc>,
    /// Its signature verdict recorded as verified (None: it did not verify).
    pub verified: Option<DateTime<Utc>>,
    /// The build of it (its newest).
    pub build: Option<BuildRecord>,
    /// When that build verified (built, pushed and read back).
    pub built: Option<DateTime<Utc>>,
    /// Per channel, in configured order: when a build of this tag first
    /// reached it.
    pub channels: Vec<(String, Option<DateTime<Utc>>)>,
}

impl ReleaseStages {
    /// Every stage reached, with seconds since the tag was seen:
    /// `verified`, `built`, then each channel.
    pub fn reached(&self) -> Vec<(String, i64)> {
        let since = |t: DateTime<Utc>| (t - self.seen).num_seconds().max(0);
        let mut out = Vec::new();
        if let Some(t) = self.verified {
            out.push(("verified".to_string(), since(t)));
        }
        if let Some(t) = self.built {
            out.push(("built".to_string(), since(t)));
        }
        for (c, t) in &self.channels {
            if let Some(t) = t {
                out.push((c.clone(), since(*t)));
            }
        }
        out
    }
}

/// A release's stages from its stored tag, that tag's events, its newest
/// build, and the pipeline's channel moves.
pub fn release_stages(
    tag: &StoredRef,
    events: &[RefEvent],
    build: Option<BuildRecord>,
    moves: &[ChannelMove],
    channels: &[String],
    builds_of_tag: &[i64],
) -> ReleaseStages {
    let verified = tag.verdict.is_verified().then(|| {
        events
            .iter()
            .filter(|e| e.new_oid.as_deref() == Some(tag.oid.as_str()))
            .map(|e| e.at)
            .min()
            .unwrap_or(tag.updated_at)
    });
    let built = build.as_ref().and_then(|b| b.verified_at);
    let channels = channels
        .iter()
        .map(|c| {
            let first = moves
                .iter()
                .filter(|m| &m.channel == c && builds_of_tag.contains(&m.to_build))
                .map(|m| m.at)
                .min();
            (c.clone(), first)
        })
        .collect();
    ReleaseStages {
        tag: tag.clone(),
        seen: tag.first_seen,
        verified,
        build,
        built,
        channels,
    }
}

/// The steps of a rollout that concern one node, newest last.
pub fn steps_of(steps: &[RolloutStep], ordinal: u32) -> Vec<&RolloutStep> {
    steps
        .iter()
        .filter(|s| s.ordinal == Some(ordinal))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(
        fleet: &str,
        ordinal: u32,
        chain: &str,
        height: Option<u64>,
        healthy: bool,
    ) -> NodeLook {
        NodeLook {
            fleet: fleet.into(),
            ordinal,
            image: Some(format!("r/x@sha256:{fleet}{ordinal}")),
            rpc: None,
            chain: Some(chain.into()),
            height,
            headers: height,
            ibd: Some(false),
            healthy,
            reason: None,
            observed_at: Utc::now(),
        }
    }

    #[test]
    fn lag_is_against_the_best_healthy_node_of_the_same_chain() {
        let nodes = vec![
            node("a", 0, "main", Some(100), true),
            node("a", 1, "main", Some(97), true),
            // An unhealthy node far ahead does not set the best tip.
            node("b", 0, "main", Some(500), false),
            node("c", 0, "test", Some(20), true),
            node("c", 1, "test", None, false),
        ];
        let l = lags(&nodes);
        assert_eq!(l[&("a".into(), 0)], Some(0));
        assert_eq!(l[&("a".into(), 1)], Some(3));
        assert_eq!(l[&("b".into(), 0)], Some(0));
        assert_eq!(l[&("c".into(), 0)], Some(0));
        assert_eq!(l[&("c".into(), 1)], None);
    }

    #[test]
    fn versions_order_as_people_read_them() {
        let mut v = vec![
            "refs/tags/v28.0",
            "refs/tags/v27.10",
            "refs/tags/v27.9",
            "refs/tags/v28.0rc2",
            "refs/tags/v28.0rc10",
        ];
        v.sort_by_key(|n| version_key(n));
        assert_eq!(
            v,
            [
                "refs/tags/v27.9",
                "refs/tags/v27.10",
                "refs/tags/v28.0rc2",
                "refs/tags/v28.0rc10",
                "refs/tags/v28.0"
            ]
        );
    }

    #[test]
    fn ages_and_spans_read_as_words() {
        let now = Utc::now();
        assert_eq!(ago(now, now), "just now");
        assert_eq!(ago(now, now - chrono::Duration::seconds(42)), "42 s ago");
        assert_eq!(ago(now, now - chrono::Duration::hours(3)), "3 h ago");
        assert_eq!(ago(now, now - chrono::Duration::days(9)), "9 d ago");
        assert_eq!(span(3 * 3600 + 120), "3 h 2 min");
        assert_eq!(short_digest("sha256:0123456789abcdef"), "0123456789ab");
    }
}
