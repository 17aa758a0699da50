//! What the dashboard and `/metrics` read without asking anything outside:
//! the last look at each node, the operator actions with who took them, and
//! the recent webhook deliveries.

use chrono::{DateTime, Utc};
use rusqlite::params;
use serde::{Deserialize, Serialize};

use super::{now, Store, StoreError};

/// The last look at one node of a fleet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeLook {
    /// Fleet.
    pub fleet: String,
    /// Ordinal in the fleet.
    pub ordinal: u32,
    /// The pinned image it runs.
    pub image: Option<String>,
    /// Its RPC URL.
    pub rpc: Option<String>,
    /// The chain its RPC names (`main`, `test`, `regtest`…).
    pub chain: Option<String>,
    /// Blocks validated.
    pub height: Option<u64>,
    /// Headers known.
    pub headers: Option<u64>,
    /// In initial block download.
    pub ibd: Option<bool>,
    /// Its gates pass (running, answering, not in IBD).
    pub healthy: bool,
    /// Why not, when not.
    pub reason: Option<String>,
    /// When habd looked.
    pub observed_at: DateTime<Utc>,
}

/// An operator action (promote, pause, resume, undo), with who took it and
/// what came of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionRecord {
    /// Id.
    pub id: i64,
    /// When.
    pub at: DateTime<Utc>,
    /// Who: the name given at sign-in and the token's fingerprint.
    pub who: String,
    /// `promote`, `pause`, `resume`, `undo`.
    pub action: String,
    /// What it acted on (`fleet core-main`, `bitcoind build 12 to stable`).
    pub target: String,
    /// `ok`, or the refusal.
    pub outcome: String,
}

/// A webhook delivery as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryRecord {
    /// `github`, `gitea`, `generic`.
    pub provider: String,
    /// The delivery's id (the sender's, as sent).
    pub delivery: String,
    /// Pipeline.
    pub pipeline: String,
    /// The event it named.
    pub event: String,
    /// The queue item it asked for, if any.
    pub queue_id: Option<i64>,
    /// When it arrived.
    pub at: DateTime<Utc>,
}

fn to_i64(n: Option<u64>) -> Option<i64> {
    n.map(|n| i64::try_from(n).unwrap_or(i64::MAX))
}

impl Store {
    /// Replaces the last look at every node of `fleet` (one transaction:
    /// a reader sees one look or the other, never a mix); nodes beyond the
    /// ones given are forgotten (the fleet shrank).
    ///
    /// # Errors
    /// The store fails; the previous look stays.
    pub fn record_node_status(&self, fleet: &str, nodes: &[NodeLook]) -> Result<(), StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        tx.execute("DELETE FROM node_status WHERE fleet = ?1", params![fleet])?;
        for n in nodes {
            tx.execute(
                "INSERT INTO node_status (fleet, ordinal, image, rpc, chain, height, headers, ibd,
                    healthy, reason, observed_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                params![
                    fleet,
                    n.ordinal,
                    n.image,
                    n.rpc,
                    n.chain,
                    to_i64(n.height),
                    to_i64(n.headers),
                    n.ibd,
                    n.healthy,
                    n.reason,
                    n.observed_at
                ],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// The last look at every node, by fleet and ordinal.
    ///
    /// # Errors
    /// The store fails.
    pub fn node_statuses(&self) -> Result<Vec<NodeLook>, StoreError> {
        let conn = self.lock();
        let mut st = conn.prepare_cached(
            "SELECT fleet, ordinal, image, rpc, chain, height, headers, ibd, healthy, reason,
                    observed_at
             FROM node_status ORDER BY fleet, ordinal",
        )?;
        let rows = st
            .query_map([], |r| {
                let height: Option<i64> = r.get(5)?;
                let headers: Option<i64> = r.get(6)?;
                Ok(NodeLook {
                    fleet: r.get(0)?,
                    ordinal: r.get(1)?,
                    image: r.get(2)?,
                    rpc: r.get(3)?,
                    chain: r.get(4)?,
                    height: height.and_then(|h| u64::try_from(h).ok()),
                    headers: headers.and_then(|h| u64::try_from(h).ok()),
                    ibd: r.get(7)?,
                    healthy: r.get(8)?,
                    reason: r.get(9)?,
                    observed_at: r.get(10)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Records an operator action.
    ///
    /// # Errors
    /// The store fails.
    pub fn record_action(
        &self,
        who: &str,
        action: &str,
        target: &str,
        outcome: &str,
    ) -> Result<ActionRecord, StoreError> {
        let at = now();
        let conn = self.lock();
        conn.execute(
            "INSERT INTO actions (at, who, action, target, outcome) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![at, who, action, target, outcome],
        )?;
        Ok(ActionRecord {
            id: conn.last_insert_rowid(),
            at,
            who: who.into(),
            action: action.into(),
            target: target.into(),
            outcome: outcome.into(),
        })
    }

    /// The newest operator actions first.
    ///
    /// # Errors
    /// The store fails.
    pub fn actions(&self, limit: u32) -> Result<Vec<ActionRecord>, StoreError> {
        let conn = self.lock();
        let mut st = conn.prepare_cached(
            "SELECT id, at, who, action, target, outcome FROM actions ORDER BY id DESC LIMIT ?1",
        )?;
        let rows = st
            .query_map(params![limit], |r| {
                Ok(ActionRecord {
                    id: r.get(0)?,
                    at: r.get(1)?,
                    who: r.get(2)?,
                    action: r.get(3)?,
                    target: r.get(4)?,
                    outcome: r.get(5)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// The newest webhook deliveries first.
    ///
    /// # Errors
    /// The store fails.
    pub fn deliveries(&self, limit: u32) -> Result<Vec<DeliveryRecord>, StoreError> {
        let conn = self.lock();
        let mut st = conn.prepare_cached(
            "SELECT provider, delivery, pipeline, event, queue_id, at FROM deliveries
             ORDER BY at DESC LIMIT ?1",
        )?;
        let rows = st
            .query_map(params![limit], |r| {
                Ok(DeliveryRecord {
                    provider: r.get(0)?,
                    delivery: r.get(1)?,
                    pipeline: r.get(2)?,
                    event: r.get(3)?,
                    queue_id: r.get(4)?,
                    at: r.get(5)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }
}

/// How long one build took, and its verification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BuildDuration {
    /// Pipeline.
    pub pipeline: String,
    /// Seconds from queued to its end (verified, failed or cancelled).
    pub build_seconds: Option<f64>,
    /// Seconds the verification (read-back and smoke runs) took.
    pub verify_seconds: Option<f64>,
}

impl Store {
    /// The newest `limit` finished builds' durations, and the last
    /// verification's of each.
    ///
    /// # Errors
    /// The store fails.
    pub fn build_durations(&self, limit: u32) -> Result<Vec<BuildDuration>, StoreError> {
        let conn = self.lock();
        let mut st = conn.prepare_cached(
            "SELECT b.pipeline,
                    (julianday(b.finished_at) - julianday(b.created_at)) * 86400.0,
                    (SELECT json_extract(v.report, '$.seconds') FROM verifications v
                      WHERE v.build_id = b.id ORDER BY v.id DESC LIMIT 1)
             FROM builds b WHERE b.finished_at IS NOT NULL ORDER BY b.id DESC LIMIT ?1",
        )?;
        let rows = st
            .query_map(params![limit], |r| {
                Ok(BuildDuration {
                    pipeline: r.get(0)?,
                    build_seconds: r.get(1)?,
                    verify_seconds: r.get(2)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::temp_store;

    fn node(fleet: &str, ordinal: u32, height: u64) -> NodeLook {
        NodeLook {
            fleet: fleet.into(),
            ordinal,
            image: Some("r/x@sha256:aa".into()),
            rpc: None,
            chain: Some("regtest".into()),
            height: Some(height),
            headers: Some(height),
            ibd: Some(false),
            healthy: true,
            reason: None,
            observed_at: Utc::now(),
        }
    }

    #[test]
    fn a_look_replaces_the_fleets_last_and_keeps_the_others() {
        let (_d, s) = temp_store();
        s.record_node_status("a", &[node("a", 0, 1), node("a", 1, 1)])
            .unwrap();
        s.record_node_status("b", &[node("b", 0, 7)]).unwrap();
        s.record_node_status("a", &[node("a", 0, 2)]).unwrap();
        let all = s.node_statuses().unwrap();
        assert_eq!(all.len(), 2, "{all:?}");
        assert_eq!(all[0].height, Some(2));
        assert_eq!(all[1].fleet, "b");
    }

    #[test]
    fn actions_are_kept_newest_first() {
        let (_d, s) = temp_store();
        s.record_action("ann (token 1a2b)", "pause", "fleet a", "ok")
            .unwrap();
        s.record_action("bob (token 3c4d)", "resume", "fleet a", "ok")
            .unwrap();
        let a = s.actions(10).unwrap();
        assert_eq!(a[0].who, "bob (token 3c4d)");
        assert_eq!(a[1].action, "pause");
    }
}
