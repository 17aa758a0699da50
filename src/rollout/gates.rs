//! The gates: a node updated is held to its health gates through its soak,
//! and no node is taken out of service while another one is.

use std::time::{Duration, Instant};

use super::{target::Target, Rollouts};
use crate::store::blocking;
use crate::{
    config::FleetConfig,
    health::{self, GateVerdict, Soak},
    store::{RolloutRecord, RolloutState},
};

/// How often a node under its gates is looked at. Short, so a rollout
/// moves on within a fraction of a second of a node settling.
const LOOK_EVERY: Duration = Duration::from_millis(200);

impl Rollouts {
    /// Waits until every other node that should be in service is healthy
    /// (at most one node of all fleets out of service), up to the fleet's
    /// ready timeout. Reads the rollout's state on every look: a pause or
    /// undo issued meanwhile interrupts the wait.
    pub(super) async fn others_healthy(
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
    pub(super) async fn gate(
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
                GateVerdict::Passed => {
                    return Ok(obs.rpc.map(|i| i.blocks).unwrap_or_default());
                }
                GateVerdict::Failed(reason) => return Err(GateStop::Failed(reason)),
                GateVerdict::Waiting { .. } => {}
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
}

/// Why a rollout may not take a node out of service now.
#[derive(Debug)]
pub(super) enum Budget {
    /// Another node stayed out of service for the whole ready timeout.
    Exhausted(String),
    /// An operator paused or undid the rollout meanwhile.
    Interrupted,
}

/// Why a gate stopped without passing.
#[derive(Debug)]
pub(super) enum GateStop {
    Failed(String),
    Interrupted,
}
