//! The walk of one rollout: at each step the planner decides, from the
//! nodes as they are now, what comes next (update a node, remove one, hold
//! one to its gates, finish); a node is claimed in the store before it is
//! touched, so a restarted habd resumes from the record.

use std::time::Duration;

use bollard::auth::DockerCredentials;

use super::{
    conf,
    gates::{Budget, GateStop},
    node::{NodeEnv, UpdateError},
    plan::{self, Action, Direction, NodeState},
    rollback::befores,
    target::Target,
    RolloutError, Rollouts,
};
use crate::{
    config::FleetConfig,
    store::blocking,
    store::{RolloutRecord, RolloutState},
};

impl Rollouts {
    /// Checks that the registry holds an attestation of `image`
    /// (`host/repo@sha256:…`) signed by habd's key, naming its digest, made
    /// for a build of `pipeline` (habd's genuine image of another pipeline
    /// does not run on this fleet).
    async fn attestation_of(&self, image: &str, pipeline: &str) -> Result<(), String> {
        let (name, digest) = image
            .rsplit_once('@')
            .ok_or_else(|| format!("{image} is not pinned by digest"))?;
        let repository = name.split_once('/').map_or(name, |(_, r)| r);
        let claims = self
            .provenance
            .check(repository, digest)
            .await
            .map_err(|e| format!("{image} may not run: {e}"))?;
        if claims.pipeline != pipeline {
            return Err(format!(
                "{image} may not run: habd attested it as a build of pipeline {}, not {pipeline}",
                claims.pipeline
            ));
        }
        Ok(())
    }

    pub(super) async fn run(&self, r: RolloutRecord) -> Result<(), RolloutError> {
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
            // Nothing runs on a node unless habd's own signed provenance
            // vouches for its digest (DESIGN.md invariant 8).
            if let Err(why) = self.attestation_of(&r.image, &fleet.pipeline).await {
                return self.fail(&r, format!("{why}; no node was touched")).await;
            }
            self.step(
                id,
                None,
                "attested",
                format!("{} carries provenance signed by habd's key", r.image),
            )
            .await;
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
                    // Before each node, again: a rollout resumed after a
                    // restart, or whose attestation was deleted since it
                    // started, changes no node more.
                    if direction == Direction::Forward {
                        if let Err(why) = self.attestation_of(&image, &fleet.pipeline).await {
                            let why = format!("{why}; node {ordinal} not touched");
                            self.fail_or_turn(&r, &nodes, direction, ordinal, why)
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
                    let env = match self.node_env(&fleet, &target) {
                        Ok(env) => env,
                        Err(reason) => {
                            self.fail_or_turn(&r, &nodes, direction, ordinal, reason)
                                .await?;
                            continue;
                        }
                    };
                    // The front door stops sending the node calls and lets
                    // those in flight finish before it goes down.
                    self.drain_node(&fleet, ordinal).await;
                    match target
                        .update(&fleet, ordinal, &image, direction, env, accept_drift)
                        .await
                    {
                        Ok(()) => {}
                        Err(UpdateError::Failed(e)) => {
                            self.fail_or_turn(&r, &nodes, direction, ordinal, e).await?;
                        }
                        Err(UpdateError::Hold(why)) => {
                            // Held before touching it: the node serves on.
                            self.undrain_node(&target, &fleet, ordinal).await;
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
                Action::Gate { ordinal } => {
                    match self.gate_and_undrain(&target, &fleet, ordinal, &r).await {
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
                    }
                }
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

    /// What a node of `fleet` is given besides its image. On a Docker
    /// target: its files (see [`super::conf`]); on Kubernetes the chart
    /// gives them, from Secrets.
    fn node_env(&self, fleet: &FleetConfig, target: &Target) -> Result<NodeEnv, String> {
        let files = match target {
            Target::Kubernetes(_) => Vec::new(),
            Target::Docker(_) => {
                let implementation = self
                    .config
                    .pipeline(&fleet.pipeline)
                    .map(|p| p.implementation)
                    .ok_or_else(|| format!("no pipeline {}", fleet.pipeline))?;
                let password = self.rpc_password(fleet)?;
                let tls = if fleet.rpc_tls {
                    Some(conf::fleet_server_tls(&self.config.state_dir, fleet)?)
                } else {
                    None
                };
                conf::node_files(implementation, &fleet.rpc_user, &password, tls.as_ref())
            }
        };
        Ok(NodeEnv {
            env: vec![
                format!("NETWORK={}", fleet.network),
                format!("RPC_USER={}", fleet.rpc_user),
            ],
            files,
            credentials: self.credentials(),
        })
    }

    fn credentials(&self) -> Option<DockerCredentials> {
        self.registry.credentials().map(|(u, p)| DockerCredentials {
            username: Some(u.clone()),
            password: Some(p.clone()),
            serveraddress: Some(self.registry.host().to_string()),
            ..Default::default()
        })
    }
}
