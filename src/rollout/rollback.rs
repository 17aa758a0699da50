//! When a rollout goes wrong: it ends FAILED as it stands, or turns back
//! (and, when a gate failed, marks its image known-bad and returns the
//! channels that name it to the build before).

use super::{
    plan::{self, Direction, NodeState},
    RolloutError, Rollouts,
};
use crate::{
    store::blocking,
    store::{RolloutRecord, RolloutState},
};

impl Rollouts {
    /// Ends the rollout FAILED as it stands, unless an operator changed
    /// its state meanwhile.
    pub(super) async fn fail(&self, r: &RolloutRecord, reason: String) -> Result<(), RolloutError> {
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
    pub(super) async fn fail_or_turn(
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
    pub(super) async fn fail_or_turn_marking(
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
    pub(super) async fn budget_exhausted(
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
    pub(super) async fn return_channels(
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
}

/// What each node ran before the rollout.
pub(super) fn befores(nodes: &[NodeState]) -> Vec<(Option<String>, u32)> {
    nodes
        .iter()
        .map(|n| (n.before.clone(), n.ordinal))
        .collect()
}
