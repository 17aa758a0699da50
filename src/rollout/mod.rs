//! Rollouts: fleets follow channels; when a channel moves, every fleet that
//! follows it is rolled to the new image, one node at a time, behind the
//! health gates. See [`plan`] for the decisions and [`docker`] for the
//! Docker target.

pub mod docker;
pub mod kube;
pub mod node;
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
use node::{NodeEnv, UpdateError};
use plan::{Action, Direction, NodeState};
use target::Target;

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
    /// One client per Kubernetes target, made once and reused (its
    /// connection pool; a new client per look invites 429s).
    kube_targets: tokio::sync::Mutex<std::collections::HashMap<String, kube::KubeTarget>>,
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
            kube_targets: Default::default(),
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
        self.queue_followers(
            pipeline,
            channel,
            build_id,
            repository,
            index_digest,
            trigger,
            None,
        )
        .await
    }

    /// Queues a rollout to the build of every fleet that follows the
    /// channel, but `except`.
    #[allow(clippy::too_many_arguments)]
    async fn queue_followers(
        &self,
        pipeline: &str,
        channel: &str,
        build_id: i64,
        repository: &str,
        index_digest: &str,
        trigger: &str,
        except: Option<&str>,
    ) -> Result<Vec<RolloutRecord>, RolloutError> {
        let image = self.registry.pinned_for_nodes(repository, index_digest);
        let mut queued = Vec::new();
        for f in self.config.fleets_following(pipeline, channel) {
            if Some(f.name.as_str()) == except {
                continue;
            }
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

    /// At start: a fleet hab has never rolled out (one added to the
    /// configuration since) is rolled to the build its channel names now,
    /// unless that build is known-bad.
    async fn join_new_fleets(&self) -> Result<(), RolloutError> {
        for f in &self.config.fleets {
            let store = self.store.clone();
            let (name, pipeline, channel) = (f.name.clone(), f.pipeline.clone(), f.channel.clone());
            let at = blocking(move || {
                if !store.rollouts(Some(&name), 1)?.is_empty() {
                    return Ok(None);
                }
                let Some(c) = store
                    .channels(&pipeline)?
                    .into_iter()
                    .find(|c| c.name == channel)
                else {
                    return Ok(None);
                };
                match store.build(c.build_id)? {
                    Some(b) if b.known_bad.is_none() => Ok(Some((c, b.repository))),
                    _ => Ok(None),
                }
            })
            .await?;
            let Some((c, repository)) = at else {
                continue;
            };
            let image = self.registry.pinned_for_nodes(&repository, &c.index_digest);
            let store = self.store.clone();
            let (fl, p, ch, i) = (f.name.clone(), f.pipeline.clone(), f.channel.clone(), image);
            let trigger = format!("fleet {} joined channel {}", f.name, f.channel);
            let r = blocking(move || store.queue_rollout(&fl, &p, &ch, c.build_id, &i, &trigger))
                .await?;
            tracing::info!(fleet = %f.name, rollout = r.id, "new fleet: rollout to its channel's build queued");
            self.wake();
        }
        Ok(())
    }

    fn fleet(&self, name: &str) -> Option<&FleetConfig> {
        self.config.fleets.iter().find(|f| f.name == name)
    }

    async fn worker(self: Arc<Self>) {
        if let Err(e) = self.join_new_fleets().await {
            tracing::error!(error = %e, "cannot queue the rollouts of new fleets");
        }
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
            TargetKind::Kubernetes => {
                let mut made = self.kube_targets.lock().await;
                if let Some(k) = made.get(&t.name) {
                    return Ok(Target::Kubernetes(k.clone()));
                }
                let k = kube::KubeTarget::connect(
                    t.endpoint.as_deref(),
                    t.namespace.as_deref().unwrap_or("default"),
                )
                .await?;
                made.insert(t.name.clone(), k.clone());
                Ok(Target::Kubernetes(k))
            }
        }
    }

    /// Looks at one node: running, and its RPC answer.
    async fn observe(&self, target: &Target, fleet: &FleetConfig, ordinal: u32) -> Observation {
        self.observe_read(target, fleet, ordinal)
            .await
            .unwrap_or_else(|e| Observation {
                running: false,
                rpc: Err(e),
            })
    }

    /// [`Self::observe`], with a state the target could not tell (its API
    /// failing, a pod being recreated) as an error rather than a node that
    /// does not run.
    async fn observe_read(
        &self,
        target: &Target,
        fleet: &FleetConfig,
        ordinal: u32,
    ) -> Result<Observation, String> {
        let status = match target.status(fleet, ordinal).await {
            Ok(Some(s)) => s,
            Ok(None) => {
                return Ok(Observation {
                    running: false,
                    rpc: Err("no container".into()),
                })
            }
            Err(e) => return Err(e.to_string()),
        };
        let rpc = match (status.running, &status.rpc_url) {
            (true, Some(url)) => match self.rpc_password(fleet) {
                Ok(pw) => health::blockchain_info(&self.http, url, &fleet.rpc_user, &pw).await,
                Err(e) => Err(e),
            },
            (true, None) => Err("no RPC address".into()),
            (false, _) => Err("not running".into()),
        };
        Ok(Observation {
            running: status.running,
            rpc,
        })
    }

    /// Every node of every fleet that should be in service, but `except`
    /// of the rolling fleet, as seen now. A node whose state cannot be read
    /// (its target unreachable, its container or pod missing, its status
    /// unreadable) is seen as out of service: hab never counts on a node it
    /// cannot see. A node that should not exist yet (one this rollout, or a
    /// fleet's last, has not created) is left out.
    async fn peers(&self, rolling: &RolloutRecord, except: u32) -> Vec<(String, u32, Observation)> {
        let mut out = Vec::new();
        for f in &self.config.fleets {
            // None: a fleet hab never rolled out; its nodes that exist count.
            let expected = self.expected_nodes(f, rolling).await;
            let wanted = |o: u32| !(f.name == rolling.fleet && o == except);
            let target = match self.target(f).await {
                Ok(t) => t,
                Err(e) => {
                    // Unreachable: hab cannot tell which exist, so all count.
                    let count = |o: &u32| expected.as_ref().is_none_or(|e| e.contains(o));
                    for o in (0..f.nodes).filter(|o| wanted(*o) && count(o)) {
                        out.push((
                            f.name.clone(),
                            o,
                            unseen(format!("its target {} cannot be reached: {e}", f.target)),
                        ));
                    }
                    continue;
                }
            };
            for o in (0..f.nodes).filter(|o| wanted(*o)) {
                let seen = match target.status(f, o).await {
                    Err(e) => unseen(format!("its state cannot be read: {e}")),
                    Ok(None) if expected.as_ref().is_some_and(|e| e.contains(&o)) => {
                        unseen("its container or pod is missing".into())
                    }
                    Ok(None) => continue,
                    Ok(Some(_)) => self.observe(&target, f, o).await,
                };
                out.push((f.name.clone(), o, seen));
            }
        }
        out
    }

    /// The nodes of `fleet` that should exist: for the rolling fleet, those
    /// that ran before the rollout or were created and settled by it; for
    /// another, those its last rollout left running (every node after a
    /// success, those that ran before after a failure). A fleet hab never
    /// rolled out has None: its nodes that exist count, and all of them
    /// when its target cannot be reached (hab cannot tell).
    async fn expected_nodes(
        &self,
        fleet: &FleetConfig,
        rolling: &RolloutRecord,
    ) -> Option<Vec<u32>> {
        let from_record = |r: &RolloutRecord| -> Vec<u32> {
            r.nodes
                .iter()
                .filter(|(_, before, settled)| {
                    before.is_some()
                        || r.state == RolloutState::Succeeded
                        || (r.id == rolling.id && *settled)
                })
                .map(|(o, _, _)| *o)
                .collect()
        };
        if fleet.name == rolling.fleet {
            return Some(from_record(rolling));
        }
        let store = self.store.clone();
        let name = fleet.name.clone();
        let last = blocking(move || {
            Ok(store
                .rollouts(Some(&name), 20)?
                .into_iter()
                .find(|r| r.started_at.is_some()))
        })
        .await;
        match last {
            Ok(Some(r)) => Some(from_record(&r)),
            // Never rolled out (or the store failed).
            _ => None,
        }
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
            return self
                .fail(&r, "the fleet is no longer configured".into())
                .await;
        };
        if r.state == RolloutState::Queued {
            // A build marked known-bad since this was queued: only a channel
            // an operator moved to it on purpose (promote --force) rolls it.
            let store = self.store.clone();
            let rr = r.clone();
            let stale = blocking(move || {
                let Some(bad) = store.known_bad(rr.build_id)? else {
                    return Ok(None);
                };
                let named = store
                    .channels(&rr.pipeline)?
                    .into_iter()
                    .any(|c| c.name == rr.channel && c.build_id == rr.build_id);
                Ok((!named).then_some(bad))
            })
            .await?;
            if let Some(bad) = stale {
                let store = self.store.clone();
                let why = format!("build {} is {bad}", r.build_id);
                blocking(move || {
                    store.set_rollout_state(
                        id,
                        &[RolloutState::Queued],
                        RolloutState::Superseded,
                        Some(&why),
                    )
                })
                .await?;
                return Ok(());
            }
        }
        if r.state == RolloutState::RollingBack {
            // A restart between the turn and the channels' return.
            let nodes: Vec<(Option<String>, u32)> =
                r.nodes.iter().map(|(o, b, _)| (b.clone(), *o)).collect();
            self.return_channels(&r, &nodes).await?;
        }
        let target = match self.target(&fleet).await {
            Ok(t) => t,
            Err(reason) if r.state == RolloutState::Queued => {
                return self
                    .fail(
                        &r,
                        format!(
                            "target {} cannot be reached: {reason}; no node was touched",
                            fleet.target
                        ),
                    )
                    .await;
            }
            Err(reason) => {
                // Started: its nodes are mid-change; wait for the target.
                tracing::warn!(fleet = %fleet.name, error = %reason, "cannot reach the fleet's target; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                return Ok(());
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
                    match self.others_healthy(&fleet, &r, ordinal).await {
                        Ok(()) => {}
                        Err(Budget::Interrupted) => continue,
                        Err(Budget::Exhausted(reason)) => {
                            self.budget_exhausted(&r, &nodes, direction, ordinal, reason)
                                .await?;
                            continue;
                        }
                    }
                    // An operator who resumed a rollout held because the
                    // target changed under it accepts that change.
                    let store = self.store.clone();
                    let steps = blocking(move || store.rollout_steps(id)).await?;
                    let last = |kind: &str| steps.iter().rposition(|s| s.kind == kind);
                    // Held, and no node updated since (waits may follow).
                    let accept_drift = last("held") > last("update");
                    // The last look at the rollout before the node changes,
                    // and the record that it is about to: a pause or undo
                    // that landed since wins, and this node is not touched.
                    let store = self.store.clone();
                    let state = r.state;
                    if !blocking(move || store.claim_node(id, ordinal, state)).await? {
                        continue;
                    }
                    let from = nodes[ordinal as usize]
                        .running
                        .clone()
                        .unwrap_or_else(|| "nothing".into());
                    self.step(id, Some(ordinal), "update", format!("{from} -> {image}"))
                        .await;
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
                    match target
                        .update(&fleet, ordinal, &image, direction, env, accept_drift)
                        .await
                    {
                        Ok(()) => {}
                        Err(UpdateError::Failed(e)) => {
                            self.fail_or_turn(&r, &nodes, direction, ordinal, e).await?;
                        }
                        Err(UpdateError::Hold(why)) => {
                            let store = self.store.clone();
                            if blocking(move || store.pause_rollout(id)).await? {
                                self.step(
                                    id,
                                    Some(ordinal),
                                    "held",
                                    format!("paused, node {ordinal} not touched: {why}"),
                                )
                                .await;
                                target.record(&fleet, "RolloutHeld", &why).await;
                            }
                        }
                    }
                }
                Action::Remove { ordinal } => {
                    let store = self.store.clone();
                    let state = r.state;
                    if !blocking(move || store.claim_node(id, ordinal, state)).await? {
                        continue;
                    }
                    self.step(
                        id,
                        Some(ordinal),
                        "remove",
                        "the node did not exist before the rollout".into(),
                    )
                    .await;
                    if let Err(e) = target.remove(&fleet, ordinal).await {
                        self.fail(&r, format!("cannot remove node {ordinal}: {e}"))
                            .await?;
                        return Ok(());
                    }
                }
                Action::Gate { ordinal } => match self.gate(&target, &fleet, ordinal, &r).await {
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
                        let turned = self
                            .fail_or_turn_marking(&r, &nodes, direction, ordinal, reason, true)
                            .await?;
                        if turned {
                            self.step(
                                id,
                                Some(ordinal),
                                "known_bad",
                                format!("build {} marked known-bad", r.build_id),
                            )
                            .await;
                            self.return_channels(&r, &befores(&nodes)).await?;
                        }
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
                    let store = self.store.clone();
                    let from = r.state;
                    if blocking(move || store.set_rollout_state(id, &[from], state, None)).await? {
                        self.step(id, None, state.as_str(), what).await;
                    }
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

    /// Ends the rollout FAILED as it stands, unless an operator changed
    /// its state meanwhile.
    async fn fail(&self, r: &RolloutRecord, reason: String) -> Result<(), RolloutError> {
        let store = self.store.clone();
        let (id, from, why) = (r.id, r.state, reason.clone());
        if blocking(move || store.set_rollout_state(id, &[from], RolloutState::Failed, Some(&why)))
            .await?
        {
            self.step(id, None, "failed", reason).await;
        }
        Ok(())
    }

    /// Going forward, a failure turns the rollout back; going back, it ends
    /// it FAILED as it stands (an operator must look). Returns whether the
    /// rollout turned back (not if an operator paused or undid it first).
    async fn fail_or_turn(
        &self,
        r: &RolloutRecord,
        nodes: &[NodeState],
        direction: Direction,
        ordinal: u32,
        reason: String,
    ) -> Result<bool, RolloutError> {
        self.fail_or_turn_marking(r, nodes, direction, ordinal, reason, false)
            .await
    }

    /// [`Self::fail_or_turn`]; with `gate_failed`, turning back also marks
    /// the image known-bad (one transaction, so a crash cannot lose it).
    async fn fail_or_turn_marking(
        &self,
        r: &RolloutRecord,
        nodes: &[NodeState],
        direction: Direction,
        ordinal: u32,
        reason: String,
        gate_failed: bool,
    ) -> Result<bool, RolloutError> {
        let id = r.id;
        match direction {
            Direction::Forward => {
                let reason = format!("node {ordinal} of {}: {reason}", r.fleet);
                let mut nodes = nodes.to_vec();
                plan::turn_back(&mut nodes);
                let settled: Vec<(u32, bool)> =
                    nodes.iter().map(|n| (n.ordinal, n.settled)).collect();
                let store = self.store.clone();
                let why = reason.clone();
                let turned = blocking(move || {
                    store.turn_rollout_back(id, &why, &settled, gate_failed.then_some(why.as_str()))
                })
                .await?;
                if turned {
                    self.step(
                        id,
                        Some(ordinal),
                        "rollback",
                        format!("rolling back: {reason}"),
                    )
                    .await;
                }
                Ok(turned)
            }
            Direction::Back => {
                let first = r.reason.clone().unwrap_or_default();
                self.fail(
                    r,
                    format!("{first}; then the rollback of node {ordinal} failed too: {reason}"),
                )
                .await?;
                Ok(false)
            }
        }
    }

    /// Another node stayed out of service for the whole ready timeout. If
    /// this rollout has changed no node yet it ends FAILED without touching
    /// one; otherwise it turns back (the rollback waits for the same budget
    /// before each node), or, going back already, ends FAILED as it stands.
    async fn budget_exhausted(
        &self,
        r: &RolloutRecord,
        nodes: &[NodeState],
        direction: Direction,
        ordinal: u32,
        reason: String,
    ) -> Result<(), RolloutError> {
        let untouched = nodes.iter().all(|n| n.running == n.before);
        if direction == Direction::Forward && untouched {
            self.fail(
                r,
                format!(
                    "not started on node {ordinal} of {}: {reason}; no node was touched",
                    r.fleet
                ),
            )
            .await
        } else {
            self.fail_or_turn(r, nodes, direction, ordinal, reason)
                .await
                .map(|_| ())
        }
    }

    /// The rollout's image is known-bad (a gate failed going forward):
    /// every channel of the pipeline that still names it returns to the
    /// build this fleet is returning to (or, when that is unknown, the last
    /// good build the channel named), recorded as habd's move with the
    /// reason, and the fleets following it are rolled there, but this one,
    /// whose rollback restores it. Idempotent: run again after a restart.
    async fn return_channels(
        &self,
        r: &RolloutRecord,
        nodes: &[(Option<String>, u32)],
    ) -> Result<(), RolloutError> {
        let returning_to = nodes
            .iter()
            .find_map(|(before, _)| before.as_deref())
            .and_then(|image| image.rsplit_once('@'))
            .map(|(_, digest)| digest.to_string());
        let store = self.store.clone();
        let rr = r.clone();
        let moves = blocking(move || {
            let Some(bad) = store.known_bad(rr.build_id)? else {
                return Ok(Vec::new());
            };
            let bad_index = store.build(rr.build_id)?.and_then(|b| b.index_digest);
            let preferred = match returning_to {
                Some(d) => store.build_by_index(&d)?.map(|b| b.id),
                None => None,
            };
            let mut moves = Vec::new();
            for c in store.channels(&rr.pipeline)? {
                if bad_index.as_deref() != Some(c.index_digest.as_str()) {
                    continue;
                }
                let Some(back) = store.return_build(&rr.pipeline, &c.name, preferred)? else {
                    moves.push((c.name.clone(), None));
                    continue;
                };
                let reason = format!(
                    "automatic: build {} is known-bad (rollout {} to fleet {} failed its gates: {}); back to build {back}",
                    rr.build_id, rr.id, bad.fleet, bad.reason
                );
                if let Ok(Some(m)) =
                    store.move_channel(&rr.pipeline, &c.name, back, "habd", Some(&reason))?
                {
                    let repository = store.build(back)?.map(|b| b.repository).unwrap_or_default();
                    moves.push((c.name.clone(), Some((m, repository))));
                }
            }
            Ok(moves)
        })
        .await?;
        for (channel, moved) in moves {
            let Some((m, repository)) = moved else {
                self.step(
                    r.id,
                    None,
                    "channel",
                    format!("channel {channel} named no earlier good build: it stays, and hab rolls no fleet to a known-bad build"),
                )
                .await;
                continue;
            };
            self.step(
                r.id,
                None,
                "channel",
                format!("channel {channel} back to build {}", m.to_build),
            )
            .await;
            if let Err(e) = self
                .registry
                .tag_digest(&repository, &m.index_digest, &channel)
                .await
            {
                tracing::warn!(channel, error = %e, "cannot tag the index with the channel's name");
            }
            self.queue_followers(
                &r.pipeline,
                &channel,
                m.to_build,
                &repository,
                &m.index_digest,
                &format!(
                    "channel {channel} returned from known-bad build {}",
                    r.build_id
                ),
                Some(&r.fleet),
            )
            .await?;
        }
        Ok(())
    }

    /// Waits until every other node that should be in service is healthy
    /// (at most one node of all fleets out of service), up to the fleet's
    /// ready timeout. Reads the rollout's state on every look: a pause or
    /// undo issued meanwhile interrupts the wait.
    async fn others_healthy(
        &self,
        fleet: &FleetConfig,
        r: &RolloutRecord,
        ordinal: u32,
    ) -> Result<(), Budget> {
        let started = Instant::now();
        let deadline = started + fleet.gates.ready_timeout;
        let mut said = None;
        loop {
            if self.state_of(r.id).await != Some(r.state) {
                return Err(Budget::Interrupted);
            }
            let peers = self.peers(r, ordinal).await;
            let sick = peers.iter().find_map(|(f, o, obs)| {
                health::judge(obs, None, u64::MAX)
                    .err()
                    .map(|why| format!("node {o} of fleet {f} is out of service ({why})"))
            });
            match sick {
                None => return Ok(()),
                Some(why) if Instant::now() >= deadline => {
                    return Err(Budget::Exhausted(format!(
                        "{why}; waited {:.0?} for it, and hab takes no second node out of service",
                        started.elapsed()
                    )))
                }
                Some(why) => {
                    if said.as_ref() != Some(&why) {
                        self.step(
                            r.id,
                            Some(ordinal),
                            "wait",
                            format!("waiting before node {ordinal}: {why}"),
                        )
                        .await;
                        said = Some(why);
                    }
                    tokio::time::sleep(LOOK_EVERY).await;
                }
            }
        }
    }

    /// A rollout's state now (None if the store cannot say).
    async fn state_of(&self, id: i64) -> Option<RolloutState> {
        let store = self.store.clone();
        blocking(move || store.rollout(id))
            .await
            .ok()
            .flatten()
            .map(|r| r.state)
    }

    /// Holds a node to its gates: passed (its height), failed (why), or
    /// interrupted (paused or turned back by an operator).
    async fn gate(
        &self,
        target: &Target,
        fleet: &FleetConfig,
        ordinal: u32,
        r: &RolloutRecord,
    ) -> Result<u64, GateStop> {
        let id = r.id;
        let mut soak = Soak::new(fleet.gates, Instant::now());
        let mut last_reason = None;
        let mut unreadable_since: Option<Instant> = None;
        loop {
            // A state the target cannot tell right now (its API failing, a
            // pod being recreated) is no verdict on the node: looked at
            // again, for at most `ready_timeout`.
            let obs = match self.observe_read(target, fleet, ordinal).await {
                Ok(obs) => {
                    unreadable_since = None;
                    obs
                }
                Err(e) => {
                    let since = *unreadable_since.get_or_insert_with(Instant::now);
                    if since.elapsed() >= fleet.gates.ready_timeout {
                        return Err(GateStop::Failed(format!(
                            "its state could not be read for {:.0?}: {e}",
                            fleet.gates.ready_timeout
                        )));
                    }
                    tracing::info!(fleet = %fleet.name, node = ordinal, error = %e, "cannot read the node under its gates; looking again");
                    if self.state_of(id).await != Some(r.state) {
                        return Err(GateStop::Interrupted);
                    }
                    tokio::time::sleep(LOOK_EVERY).await;
                    continue;
                }
            };
            let peers = self.peers(r, ordinal).await;
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
            if self.state_of(id).await != Some(r.state) {
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

/// Why a rollout may not take a node out of service now.
#[derive(Debug)]
enum Budget {
    /// Another node stayed out of service for the whole ready timeout.
    Exhausted(String),
    /// An operator paused or undid the rollout meanwhile.
    Interrupted,
}

/// What each node ran before the rollout.
fn befores(nodes: &[NodeState]) -> Vec<(Option<String>, u32)> {
    nodes
        .iter()
        .map(|n| (n.before.clone(), n.ordinal))
        .collect()
}

/// A node hab cannot see, counted out of service.
fn unseen(why: String) -> Observation {
    Observation {
        running: false,
        rpc: Err(why),
    }
}

/// Why a gate stopped without passing.
#[derive(Debug)]
enum GateStop {
    Failed(String),
    Interrupted,
}
