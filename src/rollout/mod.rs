//! Rollouts: fleets follow channels; when a channel moves, every fleet that
//! follows it is rolled to the new image, one node at a time, behind the
//! health gates. See [`plan`] for the decisions and [`docker`] for the
//! Docker target.

pub mod docker;
pub mod kube;
pub mod plan;
pub mod target;

use std::{
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use bollard::auth::DockerCredentials;
use serde::Serialize;
use tokio::sync::Notify;

use crate::{
    config::{Config, FleetConfig, TargetKind},
    health::{self, Observation, Soak, Verdict},
    registry::Registry,
    store::{RolloutRecord, RolloutState, Store, StoreError},
};
use docker::DockerTarget;
use plan::{Action, Direction, NodeState};
use target::{NodeEnv, Target};

/// How often a node under its gates is looked at. Short, so a rollout
/// moves on within a fraction of a second of a node settling.
const LOOK_EVERY: Duration = Duration::from_millis(200);

/// Rollout errors that stop the engine's current pass (not gate failures:
/// those are outcomes, recorded on the rollout).
#[derive(Debug, thiserror::Error)]
pub enum RolloutError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A blocking task died.
    #[error("internal error: {0}")]
    Internal(String),
}

/// A fleet and its nodes now, for `habctl rollout status`.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
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
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct NodeView {
    /// Ordinal.
    pub ordinal: u32,
    /// Pinned image it runs.
    pub image: Option<String>,
    /// Its RPC URL.
    pub rpc: Option<String>,
    /// Healthy now, or why not.
    pub health: Result<u64, String>,
}

/// The rollout engine: one rollout at a time across every fleet (so never
/// two implementations roll at once and at most one node of all fleets is
/// out of service), driven by a worker task.
pub struct Rollouts {
    config: Arc<Config>,
    store: Store,
    registry: Registry,
    wake: Notify,
    http: reqwest::Client,
}

impl std::fmt::Debug for Rollouts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rollouts").finish_non_exhaustive()
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, RolloutError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| RolloutError::Internal(e.to_string()))?
        .map_err(RolloutError::from)
}

impl Rollouts {
    /// The engine over `config`'s fleets.
    pub fn new(config: Arc<Config>, store: Store, registry: Registry) -> Arc<Self> {
        Arc::new(Rollouts {
            config,
            store,
            registry,
            wake: Notify::new(),
            http: reqwest::Client::new(),
        })
    }

    /// Starts the worker (inside a tokio runtime). It picks up a rollout a
    /// previous habd left running, and every one queued since.
    pub fn spawn(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move { this.worker().await })
    }

    /// Wakes the worker (a rollout was queued, resumed or undone).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// A channel moved: queues a rollout of every fleet that follows it.
    ///
    /// # Errors
    /// The store failed.
    pub async fn channel_moved(
        &self,
        pipeline: &str,
        channel: &str,
        build_id: i64,
        repository: &str,
        index_digest: &str,
        trigger: &str,
    ) -> Result<Vec<RolloutRecord>, RolloutError> {
        // The channel's name is also a tag of the index: what a node
        // installed before any rollout pinned it (the chart's first
        // install, by tag) starts on the channel's verified image.
        if let Err(e) = self
            .registry
            .tag_digest(repository, index_digest, channel)
            .await
        {
            tracing::warn!(repository, channel, error = %e, "cannot tag the index with the channel's name");
        }
        let image = self.registry.pinned_for_nodes(repository, index_digest);
        let mut queued = Vec::new();
        for f in self.config.fleets_following(pipeline, channel) {
            let store = self.store.clone();
            let (fl, p, c, i, t) = (
                f.name.clone(),
                pipeline.to_string(),
                channel.to_string(),
                image.clone(),
                trigger.to_string(),
            );
            let r = blocking(move || store.queue_rollout(&fl, &p, &c, build_id, &i, &t)).await?;
            tracing::info!(fleet = %f.name, rollout = r.id, image = %image, "rollout queued");
            queued.push(r);
        }
        if !queued.is_empty() {
            self.wake();
        }
        Ok(queued)
    }

    fn fleet(&self, name: &str) -> Option<&FleetConfig> {
        self.config.fleets.iter().find(|f| f.name == name)
    }

    async fn worker(self: Arc<Self>) {
        loop {
            let store = self.store.clone();
            let current = blocking(move || store.current_rollout()).await;
            let idle = match current {
                Ok(Some(r)) if r.state != RolloutState::Paused => {
                    if let Err(e) = self.run(r).await {
                        tracing::error!(error = %e, "rollout engine: store failed; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    false
                }
                Ok(_) => true,
                Err(e) => {
                    tracing::error!(error = %e, "rollout engine: store failed; retrying");
                    true
                }
            };
            if idle {
                // Woken by a queue, resume or undo; the timeout is a backstop.
                let _ = tokio::time::timeout(Duration::from_secs(5), self.wake.notified()).await;
            }
        }
    }

    fn rpc_password(&self, fleet: &FleetConfig) -> Result<String, String> {
        let file = fleet.rpc_password_file.clone().unwrap_or_else(|| {
            self.config
                .state_dir
                .join("fleets")
                .join(format!("{}.rpc-password", fleet.name))
        });
        crate::secrets::read_or_create_password(&file)
            .map_err(|e| format!("no RPC password for fleet {}: {e}", fleet.name))
    }

    async fn target(&self, fleet: &FleetConfig) -> Result<Target, String> {
        let t = self
            .config
            .targets
            .iter()
            .find(|t| t.name == fleet.target)
            .ok_or_else(|| format!("no target {}", fleet.target))?;
        match t.kind {
            TargetKind::Docker => DockerTarget::connect(
                t.endpoint
                    .as_deref()
                    .unwrap_or("unix:///var/run/docker.sock"),
            )
            .await
            .map(Target::Docker)
            .map_err(|e| e.to_string()),
            TargetKind::Kubernetes => kube::KubeTarget::connect(
                t.endpoint.as_deref(),
                t.namespace.as_deref().unwrap_or("default"),
            )
            .await
            .map(Target::Kubernetes),
        }
    }

    /// Looks at one node: running, and its RPC answer.
    async fn observe(&self, target: &Target, fleet: &FleetConfig, ordinal: u32) -> Observation {
        let status = match target.status(fleet, ordinal).await {
            Ok(Some(s)) => s,
            Ok(None) => {
                return Observation {
                    running: false,
                    rpc: Err("no container".into()),
                }
            }
            Err(e) => {
                return Observation {
                    running: false,
                    rpc: Err(e.to_string()),
                }
            }
        };
        let rpc = match (status.running, &status.rpc_url) {
            (true, Some(url)) => match self.rpc_password(fleet) {
                Ok(pw) => health::blockchain_info(&self.http, url, &fleet.rpc_user, &pw).await,
                Err(e) => Err(e),
            },
            (true, None) => Err("no RPC address".into()),
            (false, _) => Err("not running".into()),
        };
        Observation {
            running: status.running,
            rpc,
        }
    }

    /// Every other node of every fleet on a Docker target that exists.
    async fn peers(&self, except: (&str, u32)) -> Vec<(String, u32, Observation)> {
        let mut out = Vec::new();
        for f in &self.config.fleets {
            let Ok(target) = self.target(f).await else {
                continue;
            };
            for o in 0..f.nodes {
                if (f.name.as_str(), o) == except {
                    continue;
                }
                if let Ok(None) = target.status(f, o).await {
                    continue;
                }
                out.push((f.name.clone(), o, self.observe(&target, f, o).await));
            }
        }
        out
    }

    async fn step(&self, id: i64, ordinal: Option<u32>, kind: &str, detail: String) {
        tracing::info!(rollout = id, node = ordinal, kind, "{detail}");
        let store = self.store.clone();
        let kind = kind.to_string();
        if let Err(e) = blocking(move || store.rollout_step(id, ordinal, &kind, &detail)).await {
            tracing::warn!(rollout = id, error = %e, "cannot record a rollout step");
        }
    }

    async fn run(&self, r: RolloutRecord) -> Result<(), RolloutError> {
        let id = r.id;
        let Some(fleet) = self.fleet(&r.fleet).cloned() else {
            let store = self.store.clone();
            return blocking(move || {
                store.set_rollout_state(
                    id,
                    RolloutState::Failed,
                    Some("the fleet is no longer configured"),
                )
            })
            .await;
        };
        let target = match self.target(&fleet).await {
            Ok(t) => t,
            Err(reason) => {
                let store = self.store.clone();
                return blocking(move || {
                    store.set_rollout_state(id, RolloutState::Failed, Some(&reason))
                })
                .await;
            }
        };
        if r.state == RolloutState::Queued {
            let mut before = Vec::new();
            for o in 0..fleet.nodes {
                // What each node runs must be known for sure: a node taken
                // for absent would be removed by a rollback.
                match target.status(&fleet, o).await {
                    Ok(s) => before.push((o, s.and_then(|s| s.image))),
                    Err(e) => {
                        tracing::warn!(fleet = %fleet.name, node = o, error = %e, "cannot read the node; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        return Ok(());
                    }
                }
            }
            let store = self.store.clone();
            blocking(move || store.begin_rollout(id, &before)).await?;
            self.step(
                id,
                None,
                "start",
                format!("rolling {} to {}", fleet.name, r.image),
            )
            .await;
        }
        loop {
            let store = self.store.clone();
            let Some(r) = blocking(move || store.rollout(id)).await? else {
                return Ok(());
            };
            let direction = match r.state {
                RolloutState::Running => Direction::Forward,
                RolloutState::RollingBack => Direction::Back,
                _ => return Ok(()),
            };
            let mut nodes = Vec::new();
            for (ordinal, before, settled) in &r.nodes {
                // Never decide on a node whose state could not be read: a
                // healthy node taken for missing would be replaced.
                let running = match target.status(&fleet, *ordinal).await {
                    Ok(s) => s.and_then(|s| s.image),
                    Err(e) => {
                        tracing::warn!(fleet = %fleet.name, node = ordinal, error = %e, "cannot read the node; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        return Ok(());
                    }
                };
                nodes.push(NodeState {
                    ordinal: *ordinal,
                    running,
                    before: before.clone(),
                    settled: *settled,
                });
            }
            match plan::next(&nodes, &r.image, direction) {
                Action::Update { ordinal, image } => {
                    if let Err(reason) = self.others_healthy(&fleet, ordinal).await {
                        self.fail_or_turn(&r, &nodes, direction, ordinal, reason)
                            .await?;
                        continue;
                    }
                    let from = nodes[ordinal as usize]
                        .running
                        .clone()
                        .unwrap_or_else(|| "nothing".into());
                    self.step(id, Some(ordinal), "update", format!("{from} -> {image}"))
                        .await;
                    let store = self.store.clone();
                    blocking(move || store.set_node_settled(id, ordinal, false)).await?;
                    let password = match self.rpc_password(&fleet) {
                        Ok(p) => p,
                        Err(reason) => {
                            self.fail_or_turn(&r, &nodes, direction, ordinal, reason)
                                .await?;
                            continue;
                        }
                    };
                    let env = NodeEnv {
                        env: vec![
                            format!("NETWORK={}", fleet.network),
                            format!("RPC_USER={}", fleet.rpc_user),
                            format!("RPC_PASSWORD={password}"),
                        ],
                        credentials: self.credentials(),
                    };
                    if let Err(e) = target.update(&fleet, ordinal, &image, direction, env).await {
                        self.fail_or_turn(&r, &nodes, direction, ordinal, e.to_string())
                            .await?;
                    }
                }
                Action::Remove { ordinal } => {
                    self.step(
                        id,
                        Some(ordinal),
                        "remove",
                        "the node did not exist before the rollout".into(),
                    )
                    .await;
                    if let Err(e) = target.remove(&fleet, ordinal).await {
                        self.fail(id, format!("cannot remove node {ordinal}: {e}"))
                            .await?;
                        return Ok(());
                    }
                }
                Action::Gate { ordinal } => match self.gate(&target, &fleet, ordinal, id).await {
                    Ok(tip) => {
                        self.step(
                            id,
                            Some(ordinal),
                            "gate_passed",
                            format!("healthy at height {tip} for {:.0?}", fleet.gates.soak),
                        )
                        .await;
                        target
                            .record(
                                &fleet,
                                "GatePassed",
                                &format!("node {ordinal} healthy at {tip}"),
                            )
                            .await;
                        let store = self.store.clone();
                        blocking(move || store.set_node_settled(id, ordinal, true)).await?;
                    }
                    Err(GateStop::Failed(reason)) => {
                        self.step(id, Some(ordinal), "gate_failed", reason.clone())
                            .await;
                        target
                            .record(&fleet, "GateFailed", &format!("node {ordinal}: {reason}"))
                            .await;
                        self.fail_or_turn(&r, &nodes, direction, ordinal, reason)
                            .await?;
                    }
                    Err(GateStop::Interrupted) => {}
                },
                Action::Finished => {
                    let (state, what) = match direction {
                        Direction::Forward => (
                            RolloutState::Succeeded,
                            "every node runs the new image and passed its gates".to_string(),
                        ),
                        Direction::Back => (
                            RolloutState::Failed,
                            "rolled back: every node runs what it ran before".to_string(),
                        ),
                    };
                    target
                        .record(
                            &fleet,
                            if direction == Direction::Forward {
                                "RolloutSucceeded"
                            } else {
                                "RolledBack"
                            },
                            &what,
                        )
                        .await;
                    self.step(id, None, state.as_str(), what).await;
                    let store = self.store.clone();
                    blocking(move || store.set_rollout_state(id, state, None)).await?;
                    return Ok(());
                }
            }
        }
    }

    fn credentials(&self) -> Option<DockerCredentials> {
        self.registry.credentials().map(|(u, p)| DockerCredentials {
            username: Some(u.clone()),
            password: Some(p.clone()),
            serveraddress: Some(self.registry.host().to_string()),
            ..Default::default()
        })
    }

    async fn fail(&self, id: i64, reason: String) -> Result<(), RolloutError> {
        self.step(id, None, "failed", reason.clone()).await;
        let store = self.store.clone();
        blocking(move || store.set_rollout_state(id, RolloutState::Failed, Some(&reason))).await
    }

    /// Going forward, a failure turns the rollout back; going back, it ends
    /// it FAILED as it stands (an operator must look).
    async fn fail_or_turn(
        &self,
        r: &RolloutRecord,
        nodes: &[NodeState],
        direction: Direction,
        ordinal: u32,
        reason: String,
    ) -> Result<(), RolloutError> {
        let id = r.id;
        match direction {
            Direction::Forward => {
                let reason = format!("node {ordinal} of {}: {reason}", r.fleet);
                self.step(
                    id,
                    Some(ordinal),
                    "rollback",
                    format!("rolling back: {reason}"),
                )
                .await;
                let mut nodes = nodes.to_vec();
                plan::turn_back(&mut nodes);
                let settled: Vec<(u32, bool)> =
                    nodes.iter().map(|n| (n.ordinal, n.settled)).collect();
                let store = self.store.clone();
                blocking(move || store.turn_rollout_back(id, &reason, &settled)).await
            }
            Direction::Back => {
                let first = r.reason.clone().unwrap_or_default();
                self.fail(
                    id,
                    format!("{first}; then the rollback of node {ordinal} failed too: {reason}"),
                )
                .await
            }
        }
    }

    /// Waits until every other node that exists is healthy (at most one
    /// node of all fleets out of service), up to the fleet's ready timeout.
    async fn others_healthy(&self, fleet: &FleetConfig, ordinal: u32) -> Result<(), String> {
        let deadline = Instant::now() + fleet.gates.ready_timeout;
        loop {
            let peers = self.peers((&fleet.name, ordinal)).await;
            let sick = peers.iter().find_map(|(f, o, obs)| {
                health::judge(obs, None, u64::MAX)
                    .err()
                    .map(|why| format!("node {o} of fleet {f} is not healthy ({why})"))
            });
            match sick {
                None => return Ok(()),
                Some(why) if Instant::now() >= deadline => {
                    return Err(format!("{why}; hab takes no second node out of service"))
                }
                Some(_) => tokio::time::sleep(LOOK_EVERY).await,
            }
        }
    }

    /// Holds a node to its gates: passed (its height), failed (why), or
    /// interrupted (paused or turned back by an operator).
    async fn gate(
        &self,
        target: &Target,
        fleet: &FleetConfig,
        ordinal: u32,
        id: i64,
    ) -> Result<u64, GateStop> {
        let mut soak = Soak::new(fleet.gates, Instant::now());
        let mut last_reason = None;
        loop {
            let obs = self.observe(target, fleet, ordinal).await;
            let peers = self.peers((&fleet.name, ordinal)).await;
            let best = health::best_tip(peers.iter().map(|(_, _, o)| o));
            let result = health::judge(&obs, best, fleet.gates.max_lag);
            // Record each change of what the gates say: the reason a node
            // is not healthy yet, and the moment it is (the soak begins).
            let now_says = result.as_ref().err().cloned().unwrap_or_default();
            if last_reason.as_ref() != Some(&now_says) {
                let detail = match &result {
                    Err(why) => why.clone(),
                    Ok(()) => format!(
                        "healthy at height {}; holding for {:.0?}",
                        obs.rpc.as_ref().map(|i| i.blocks).unwrap_or_default(),
                        fleet.gates.soak
                    ),
                };
                let kind = if result.is_ok() { "soaking" } else { "gate" };
                self.step(id, Some(ordinal), kind, detail).await;
                last_reason = Some(now_says);
            }
            match soak.observe(result, Instant::now()) {
                Verdict::Passed => {
                    return Ok(obs.rpc.map(|i| i.blocks).unwrap_or_default());
                }
                Verdict::Failed(reason) => return Err(GateStop::Failed(reason)),
                Verdict::Waiting { .. } => {}
            }
            let store = self.store.clone();
            let state = blocking(move || store.rollout(id))
                .await
                .ok()
                .flatten()
                .map(|r| r.state);
            let expected = if state == Some(RolloutState::RollingBack) {
                RolloutState::RollingBack
            } else {
                RolloutState::Running
            };
            if state != Some(expected) {
                return Err(GateStop::Interrupted);
            }
            tokio::time::sleep(
                LOOK_EVERY.min(soak.deadline().saturating_duration_since(Instant::now())),
            )
            .await;
        }
    }

    /// Every fleet with its nodes now and its newest rollout.
    ///
    /// # Errors
    /// The store failed.
    pub async fn fleets(&self) -> Result<Vec<FleetView>, RolloutError> {
        let mut out = Vec::new();
        for f in &self.config.fleets {
            let store = self.store.clone();
            let name = f.name.clone();
            let rollout =
                blocking(move || Ok(store.rollouts(Some(&name), 1)?.into_iter().next())).await?;
            let mut nodes = Vec::new();
            match self.target(f).await {
                Ok(target) => {
                    for o in 0..f.nodes {
                        let status = target.status(f, o).await.ok().flatten();
                        let obs = self.observe(&target, f, o).await;
                        nodes.push(NodeView {
                            ordinal: o,
                            image: status.as_ref().and_then(|s| s.image.clone()),
                            rpc: status.and_then(|s| s.rpc_url),
                            health: health::judge(&obs, None, u64::MAX)
                                .and_then(|()| obs.rpc.map(|i| i.blocks)),
                        });
                    }
                }
                Err(e) => nodes.extend((0..f.nodes).map(|o| NodeView {
                    ordinal: o,
                    image: None,
                    rpc: None,
                    health: Err(e.clone()),
                })),
            }
            out.push(FleetView {
                name: f.name.clone(),
                pipeline: f.pipeline.clone(),
                channel: f.channel.clone(),
                target: f.target.clone(),
                nodes,
                rollout,
            });
        }
        Ok(out)
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The state folder (for the fleets' generated RPC passwords).
    pub fn state_dir(&self) -> PathBuf {
        self.config.state_dir.clone()
    }
}

/// Why a gate stopped without passing.
#[derive(Debug)]
enum GateStop {
    Failed(String),
    Interrupted,
}
