//! The wire types of habd's HTTP API (`/api/v1`): every body the server
//! accepts or returns that is not a record of the store or a report of the
//! module that made it. The server ([`crate::server`]) writes them, the
//! client ([`crate::client`]) and habctl read them, so both sides agree by
//! construction rather than by indexing untyped JSON.
//!
//! Records the API carries as they are stored ([`BuildRecord`],
//! [`StoredRef`], [`RolloutRecord`], [`QueueItem`], ...) stay with the
//! store; a sync's report stays with [`crate::sync`], a prune's plan with
//! [`crate::prune`], a promote's outcome with [`crate::channel`].

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{
    channel::Promoted,
    prune::PrunePlan,
    readback::ReadBack,
    store::{
        BuildRecord, BuildState, ChannelMove, ChannelState, KnownBad, LogLine, QueueItem, RefEvent,
        RolloutRecord, RolloutStep, StoredRef, SyncRecord, TriggerRecord, VerificationRecord,
    },
};

/// The body of every refusal (any status but 2xx):
/// `{"error": "why, and what to do", "status": 409, "detail": {…}}`.
#[derive(Debug, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong, in words meant for the operator.
    pub error: String,
    /// The HTTP status again.
    #[serde(default)]
    pub status: u16,
    /// Structured facts for a script, where there are some (the ref and
    /// verdict of a refused build, the object a moved tag points at now,
    /// the sync that failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<serde_json::Value>,
}

// -- pipelines and refs -------------------------------------------------------

/// A pipeline as the API shows it (`GET /pipelines`, `/pipelines/{name}`).
#[derive(Debug, Serialize, Deserialize)]
pub struct PipelineView {
    /// Name.
    pub name: String,
    /// Implementation.
    pub implementation: String,
    /// Upstream URL.
    pub upstream: String,
    /// Tracked globs.
    pub track: Vec<String>,
    /// Ignored globs.
    pub ignore: Vec<String>,
    /// `signed` or `none`.
    pub policy: String,
    /// Pinned primary fingerprints.
    pub keys: Vec<String>,
    /// Sync schedule, as written.
    pub sync_schedule: Option<String>,
    /// When it next fires.
    #[serde(default)]
    pub next_sync: Option<DateTime<Utc>>,
    /// Rebuild schedule, as written.
    #[serde(default)]
    pub rebuild_schedule: Option<String>,
    /// When it next fires.
    #[serde(default)]
    pub next_rebuild: Option<DateTime<Utc>>,
    /// The schedules' time zone.
    #[serde(default)]
    pub timezone: String,
    /// True when webhooks can trigger it (a secret is configured).
    #[serde(default)]
    pub webhook: bool,
    /// True when new verified refs build by themselves.
    #[serde(default)]
    pub auto_build: bool,
    /// Channels.
    pub channels: Vec<String>,
    /// Refs by verdict.
    pub refs: BTreeMap<String, usize>,
    /// The last sync.
    pub last_sync: Option<SyncRecord>,
    /// Mirror clone URL path.
    pub mirror: String,
}

/// habd at a glance (`GET /status`).
#[derive(Debug, Serialize, Deserialize)]
pub struct StatusView {
    /// habd's version.
    pub version: String,
    /// Seconds since habd started.
    pub uptime_seconds: u64,
    /// The state folder.
    pub state_dir: std::path::PathBuf,
    /// The SQLite store.
    pub store: std::path::PathBuf,
    /// Ids of the builds running now.
    pub builds_running: Vec<i64>,
    /// Every pipeline.
    pub pipelines: Vec<PipelineView>,
}

/// A ref as the API shows it: the stored ref plus whether it may be built
/// (`GET /pipelines/{name}/refs`).
#[derive(Debug, Serialize, Deserialize)]
pub struct RefView {
    /// The stored ref.
    #[serde(flatten)]
    pub stored: StoredRef,
    /// True when the signature policy and the ref's state allow a build.
    pub buildable: bool,
    /// Why not, when not.
    pub refusal: Option<String>,
    /// The ref's newest build, if any: `{"id": 3, "state": "verified"}`.
    #[serde(default)]
    pub build: Option<RefBuild>,
}

/// The newest build of a ref.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RefBuild {
    /// Build id.
    pub id: i64,
    /// Its state.
    pub state: BuildState,
    /// Set when its image is known-bad (a rollout of it failed its gates).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub known_bad: Option<KnownBad>,
}

/// `POST /pipelines/{name}/acknowledge`: accept a tag that moved.
#[derive(Debug, Serialize, Deserialize)]
pub struct AckRequest {
    /// `v27.0` or `refs/tags/v27.0`.
    #[serde(rename = "ref")]
    pub ref_name: String,
    /// The object acknowledged (a prefix of 7 or more hex digits will do);
    /// without it, the ref must not have moved again since it was flagged.
    #[serde(default)]
    pub oid: Option<String>,
    /// Who acknowledges (recorded; `api` when absent).
    #[serde(default)]
    pub by: Option<String>,
}

// -- builds ---------------------------------------------------------------------

/// A build as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BuildView {
    /// The stored build.
    #[serde(flatten)]
    pub build: BuildRecord,
    /// True once every check passed.
    pub verified: bool,
    /// Build key per platform.
    pub build_keys: BTreeMap<String, String>,
    /// Image manifest digest per platform.
    pub digests: BTreeMap<String, String>,
    /// `host/repository@index digest`, once pushed.
    pub reference: Option<String>,
    /// Verification runs, when showing one build.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub verifications: Vec<VerificationRecord>,
    /// True when a request found this build already made and verified.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reused: bool,
    /// True when the request joined a build of the same ref already queued
    /// or running, instead of starting another.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub joined: bool,
}

impl BuildView {
    /// The view of `build`, pinned in the registry as `reference` once it
    /// pushed an index.
    pub fn new(build: BuildRecord, reference: Option<String>) -> Self {
        BuildView {
            verified: build.verified(),
            build_keys: build
                .platforms
                .iter()
                .map(|p| (p.platform.clone(), p.build_key.clone()))
                .collect(),
            digests: build
                .platforms
                .iter()
                .filter_map(|p| Some((p.platform.clone(), p.manifest_digest.clone()?)))
                .collect(),
            reference,
            build,
            verifications: Vec::new(),
            reused: false,
            joined: false,
        }
    }
}

/// `POST /pipelines/{name}/builds`: build a ref.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartBuildRequest {
    /// `v1.0.0` or `refs/tags/v1.0.0`.
    #[serde(rename = "ref")]
    pub ref_name: String,
    /// Who asks (`habctl`); recorded.
    pub trigger: Option<String>,
}

/// `GET /builds?pipeline=&limit=`.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct BuildsQuery {
    /// Only this pipeline's.
    pub pipeline: Option<String>,
    /// At most this many (50 when absent, at most 1000).
    pub limit: Option<u32>,
}

/// `GET /builds/{id}/logs?after=&limit=`.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct LogQuery {
    /// Lines after this one (0: from the first).
    pub after: Option<i64>,
    /// At most this many (1000 when absent, at most 10000).
    pub limit: Option<u32>,
}

/// A page of a build's output.
#[derive(Debug, Serialize, Deserialize)]
pub struct LogPage {
    /// Lines after the one asked for.
    pub lines: Vec<LogLine>,
    /// The build's state now.
    pub state: BuildState,
    /// True when the build has ended: no more lines will come.
    pub done: bool,
}

/// What `POST /builds/{id}/cancel` answers.
#[derive(Debug, Serialize, Deserialize)]
pub struct CancelView {
    /// The build.
    pub id: i64,
    /// Always true: the build was told to stop.
    pub cancelling: bool,
}

/// `POST /verify`: a build id or `repository@digest`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyRequest {
    /// A build id.
    pub build: Option<i64>,
    /// `repository@sha256:…` (with or without the registry host).
    pub reference: Option<String>,
}

/// What a verification run found (`POST /verify`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Verification {
    /// Passed every check.
    pub ok: bool,
    /// The first problem, in words.
    pub reason: Option<String>,
    /// The read-back of the index.
    pub read_back: ReadBack,
    /// Smoke runs per platform: exit code and output.
    pub smoke: BTreeMap<String, SmokeReport>,
    /// How long the verification took, in seconds.
    #[serde(default)]
    pub seconds: f64,
    /// Of a VERIFIED build verified again: its signed provenance (found,
    /// attached now, or why not).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provenance: Option<String>,
}

/// One smoke run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SmokeReport {
    /// The command.
    pub command: Vec<String>,
    /// Exit code (None when it could not run).
    pub exit_code: Option<i64>,
    /// Output, or why it could not run.
    pub output: String,
}

/// `POST /registry/prune`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PruneRequest {
    /// Verified builds to keep per pipeline (at least 1).
    pub keep: usize,
    /// Show what would go, delete nothing.
    #[serde(default)]
    pub dry_run: bool,
}

/// What a prune did.
#[derive(Debug, Serialize, Deserialize)]
pub struct PruneReport {
    /// The plan: builds kept, manifests to delete.
    #[serde(flatten)]
    pub plan: PrunePlan,
    /// Manifests deleted (none on a dry run).
    pub deleted: usize,
    /// Manifests that were already gone.
    pub missing: usize,
    /// Deletions that failed, with why.
    pub errors: Vec<String>,
    /// What went with each deleted index: its attestations and their
    /// fallback-tag index (`what`: `attestation`).
    #[serde(default)]
    pub attached: Vec<crate::prune::Doomed>,
    /// True on a dry run.
    pub dry_run: bool,
}

// -- the chain of a release, the queue -----------------------------------------

/// Everything that happened to one build, from upstream to the nodes
/// (`GET /builds/{id}/chain`).
#[derive(Debug, Serialize, Deserialize)]
pub struct Chain {
    /// The build: keys, digests, index.
    pub build: BuildView,
    /// The ref it was built from: commit, verdict, signer.
    #[serde(rename = "ref")]
    pub stored_ref: Option<StoredRef>,
    /// What happened to that ref (added by sync N, moved, acknowledged).
    pub ref_events: Vec<RefEvent>,
    /// The sync that first saw the ref.
    pub sync: Option<SyncRecord>,
    /// What asked for that sync (webhook deliveries, a schedule slot, habctl).
    pub sync_triggers: Vec<TriggerRecord>,
    /// What asked for the build (the sync that found it, habctl, a rebuild).
    pub build_triggers: Vec<TriggerRecord>,
    /// Every verification run of the build.
    pub verifications: Vec<VerificationRecord>,
    /// Channel moves to this build.
    pub channel_moves: Vec<ChannelMove>,
    /// Rollouts of this build, with their steps.
    pub rollouts: Vec<RolloutView>,
}

/// One fleet now, and the chain of the build its nodes run
/// (`GET /fleets/{name}`).
#[derive(Debug, Serialize, Deserialize)]
pub struct FleetChain {
    /// Nodes, images, health, newest rollout.
    pub fleet: FleetView,
    /// The build the fleet runs (its newest succeeded rollout's), whole.
    pub chain: Option<Chain>,
}

/// `GET /queue?pipeline=&limit=`.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct QueueQuery {
    /// Only this pipeline's.
    pub pipeline: Option<String>,
    /// At most this many (30 when absent, at most 1000).
    pub limit: Option<u32>,
}

/// A queue item with the triggers that asked for it.
#[derive(Debug, Serialize, Deserialize)]
pub struct QueueView {
    /// The item.
    #[serde(flatten)]
    pub item: QueueItem,
    /// Its triggers, oldest first (at most 20 shown).
    pub trigger_list: Vec<TriggerRecord>,
}

// -- channels -------------------------------------------------------------------

/// A pipeline's channels: each declared one, where it points, and the
/// moves (`GET /pipelines/{name}/channels`).
#[derive(Debug, Serialize, Deserialize)]
pub struct ChannelsView {
    /// Declared channels, with where each points (None: never moved).
    pub channels: Vec<ChannelView>,
    /// Moves, newest first.
    pub moves: Vec<ChannelMove>,
}

/// One channel.
#[derive(Debug, Serialize, Deserialize)]
pub struct ChannelView {
    /// Name.
    pub name: String,
    /// Advances by itself when a build verifies.
    pub auto: bool,
    /// Where it points.
    pub current: Option<ChannelState>,
    /// Set when the build it points at is known-bad (only an operator's
    /// `promote --force` leaves a channel there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub known_bad: Option<KnownBad>,
}

/// `POST /pipelines/{name}/promote`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromoteRequest {
    /// A tag, a build id (`12`, `build-12`) or an index digest.
    pub target: String,
    /// The channel to move.
    pub channel: String,
    /// Why (recorded).
    pub reason: Option<String>,
    /// Who (recorded).
    pub by: Option<String>,
    /// Promote a known-bad build anyway (needs a reason).
    #[serde(default)]
    pub force: bool,
}

/// What a promote did: the move, and the rollouts it queued.
#[derive(Debug, Serialize, Deserialize)]
pub struct PromoteView {
    /// The build and the move.
    #[serde(flatten)]
    pub promoted: Promoted,
    /// Rollouts queued, one per fleet following the channel.
    pub rollouts: Vec<RolloutRecord>,
}

// -- fleets and rollouts --------------------------------------------------------

/// A fleet and its nodes now (`GET /fleets`, `habctl rollout status`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FleetView {
    /// The fleet's configuration.
    pub name: String,
    /// Pipeline.
    pub pipeline: String,
    /// Channel followed.
    pub channel: String,
    /// Target.
    pub target: String,
    /// Per node: what it runs and whether its gates pass now.
    pub nodes: Vec<NodeView>,
    /// The newest rollout of the fleet.
    pub rollout: Option<RolloutRecord>,
}

/// One node now.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeView {
    /// Ordinal.
    pub ordinal: u32,
    /// Pinned image it runs.
    pub image: Option<String>,
    /// Its RPC URL.
    pub rpc: Option<String>,
    /// Healthy now (at that many blocks), or why not.
    pub health: Result<u64, String>,
    /// What its RPC said (`getblockchaininfo`), when it answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain: Option<crate::health::ChainInfo>,
}

/// `GET /rollouts?fleet=&limit=`.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct RolloutsQuery {
    /// Only this fleet's.
    pub fleet: Option<String>,
    /// At most this many (20 when absent, at most 1000).
    pub limit: Option<u32>,
}

/// A rollout with its steps (`GET /rollouts/{id}`).
#[derive(Debug, Serialize, Deserialize)]
pub struct RolloutView {
    /// The rollout.
    #[serde(flatten)]
    pub rollout: RolloutRecord,
    /// Every step and gate result, oldest first.
    pub steps: Vec<RolloutStep>,
}

/// habd's public signing key (`GET /api/v1/key`, `habctl key`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SigningKeyView {
    /// securesystemslib's key id (what DSSE signatures name).
    pub keyid: String,
    /// PEM `PUBLIC KEY` (SubjectPublicKeyInfo), for `habctl verify --key`,
    /// OpenSSL and securesystemslib.
    pub pem: String,
    /// The OpenSSH one-line form.
    pub openssh: String,
    /// The builder id habd's statements carry.
    pub builder_id: String,
}
