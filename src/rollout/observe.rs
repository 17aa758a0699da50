//! Looking at nodes: one node's state and RPC answer, and every node that
//! should be in service, as hab sees it now (a node it cannot see counts as
//! out of service).

use super::{target::Target, Rollouts};
use crate::store::blocking;
use crate::{
    config::FleetConfig,
    health::{self, Observation},
    store::{RolloutRecord, RolloutState},
};

impl Rollouts {
    /// Looks at one node: running, and its RPC answer.
    pub(super) async fn observe(
        &self,
        target: &Target,
        fleet: &FleetConfig,
        ordinal: u32,
    ) -> Observation {
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
    pub(super) async fn observe_read(
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
            (true, Some(url)) => {
                match (
                    self.rpc_password(fleet),
                    self.rpc_http(fleet, status.rpc_resolve.as_ref()),
                ) {
                    (Ok(pw), Ok(http)) => {
                        health::blockchain_info(&http, url, &fleet.rpc_user, &pw).await
                    }
                    (Err(e), _) | (_, Err(e)) => Err(e),
                }
            }
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
    pub(super) async fn peers(
        &self,
        rolling: &RolloutRecord,
        except: u32,
    ) -> Vec<(String, u32, Observation)> {
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
}

/// A node hab cannot see, counted out of service.
fn unseen(why: String) -> Observation {
    Observation {
        running: false,
        rpc: Err(why),
    }
}
