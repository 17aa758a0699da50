//! Is a Bitcoin node healthy? The node's JSON-RPC (`getblockchaininfo`,
//! with basic auth) is asked, and the answer judged by plain functions:
//! running and answering, not in initial block download, its tip within
//! `max_lag` blocks of the best tip among the other healthy nodes (of every
//! implementation), all of it held for the soak time.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::config::Gates;

/// What `getblockchaininfo` says (the fields the gates read).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainInfo {
    /// `main`, `test`, `testnet4`, `signet`, `regtest`.
    pub chain: String,
    /// Blocks validated.
    pub blocks: u64,
    /// Headers known.
    #[serde(default)]
    pub headers: u64,
    /// Still in initial block download.
    #[serde(default)]
    pub initialblockdownload: bool,
}

/// One look at one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observation {
    /// The container or pod is running (and, on Kubernetes, Ready).
    pub running: bool,
    /// The RPC answer, or why there was none.
    pub rpc: Result<ChainInfo, String>,
}

/// Asks a node's RPC at `url` (`http://127.0.0.1:18443/`).
///
/// # Errors
/// The reason, in words: refused, timed out, 401, an RPC error (its code
/// and message, e.g. -28 while the node loads its block index).
pub async fn blockchain_info(
    http: &reqwest::Client,
    url: &str,
    user: &str,
    password: &str,
) -> Result<ChainInfo, String> {
    let resp = http
        .post(url)
        .basic_auth(user, Some(password))
        .timeout(Duration::from_secs(5))
        .json(&serde_json::json!({
            "jsonrpc": "1.0", "id": "hab", "method": "getblockchaininfo", "params": []
        }))
        .send()
        .await
        .map_err(|e| format!("RPC at {url} did not answer: {}", with_causes(&e)))?;
    let status = resp.status();
    if status == reqwest::StatusCode::UNAUTHORIZED {
        return Err(format!("RPC at {url} refused the credentials (401)"));
    }
    let body = resp
        .bytes()
        .await
        .map_err(|e| format!("RPC at {url} answered HTTP {status} but the body broke off: {e}"))?;
    parse_blockchain_info(&body).map_err(|e| match e {
        AnswerError::NotJson(e) => {
            format!("RPC at {url} answered HTTP {status} without JSON: {e}")
        }
        e @ AnswerError::Rpc { .. } => e.to_string(),
        AnswerError::Unexpected(e) => {
            format!("RPC at {url}: unexpected getblockchaininfo answer: {e}")
        }
    })
}

/// An error and its causes, innermost last: reqwest's own words ("error
/// sending request") say nothing of a refused certificate or connection.
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = c.source();
    }
    text
}

/// Why a body is not a usable `getblockchaininfo` answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnswerError {
    /// The body is not JSON at all.
    #[error("not JSON: {0}")]
    NotJson(String),
    /// The node answered with a JSON-RPC error (e.g. -28 while it loads).
    #[error("RPC error {code}: {message}")]
    Rpc {
        /// The error's `code`, as JSON.
        code: String,
        /// The error's `message`, or `?`.
        message: String,
    },
    /// JSON, but no `result` with the fields the gates read.
    #[error("unexpected getblockchaininfo answer: {0}")]
    Unexpected(String),
}

/// Reads a JSON-RPC answer to `getblockchaininfo` (the body only; a node
/// may answer an RPC error with HTTP 500 and a JSON body all the same).
///
/// # Errors
/// The body is not JSON, carries an RPC error, or lacks the fields.
pub fn parse_blockchain_info(body: &[u8]) -> Result<ChainInfo, AnswerError> {
    let body: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| AnswerError::NotJson(e.to_string()))?;
    if let Some(err) = body.get("error").filter(|e| !e.is_null()) {
        return Err(AnswerError::Rpc {
            code: err["code"].to_string(),
            message: err["message"].as_str().unwrap_or("?").to_string(),
        });
    }
    serde_json::from_value(body["result"].clone())
        .map_err(|e| AnswerError::Unexpected(e.to_string()))
}

/// The best tip among healthy peers (running, answering, not in IBD).
pub fn best_tip<'a>(peers: impl IntoIterator<Item = &'a Observation>) -> Option<u64> {
    peers
        .into_iter()
        .filter(|o| o.running)
        .filter_map(|o| o.rpc.as_ref().ok())
        .filter(|i| !i.initialblockdownload)
        .map(|i| i.blocks)
        .max()
}

/// Judges one observation against the gates.
///
/// # Errors
/// The first gate that does not pass, in words.
pub fn judge(node: &Observation, best_peer_tip: Option<u64>, max_lag: u64) -> Result<(), String> {
    if !node.running {
        // What hab saw instead (no container, an unreachable target), if
        // it knows more than that.
        return Err(match &node.rpc {
            Err(why) if !why.is_empty() => why.clone(),
            _ => "not running".into(),
        });
    }
    let info = node.rpc.as_ref().map_err(Clone::clone)?;
    if info.initialblockdownload {
        return Err(format!(
            "in initial block download ({} of {} blocks)",
            info.blocks, info.headers
        ));
    }
    if let Some(best) = best_peer_tip {
        // Saturating: a node may claim any height, up to u64::MAX.
        if best > info.blocks.saturating_add(max_lag) {
            return Err(format!(
                "tip {} is {} blocks behind the best healthy peer ({best}); at most {max_lag} allowed",
                info.blocks,
                best - info.blocks
            ));
        }
    }
    Ok(())
}

/// Where a node's gate stands over time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GateVerdict {
    /// Keep looking.
    Waiting {
        /// The last failing gate, if it fails now.
        last: Option<String>,
    },
    /// Every gate held for the soak time.
    Passed,
    /// Not healthy within the ready timeout, or failed after it was healthy.
    Failed(String),
}

/// Follows one node's gate results: passed once they hold continuously for
/// `soak`; failed when not healthy by `ready_timeout`, or when a gate fails
/// after the node had been healthy for a while (a node that comes up and
/// falls over must not pass on a lucky look).
#[derive(Debug, Clone)]
pub struct Soak {
    gates: Gates,
    started: Instant,
    healthy_since: Option<Instant>,
}

impl Soak {
    /// Starts watching at `now`.
    pub fn new(gates: Gates, now: Instant) -> Self {
        Soak {
            gates,
            started: now,
            healthy_since: None,
        }
    }

    /// Takes one gate result seen at `now`.
    pub fn observe(&mut self, result: Result<(), String>, now: Instant) -> GateVerdict {
        match result {
            Ok(()) => {
                let since = *self.healthy_since.get_or_insert(now);
                if now.duration_since(since) >= self.gates.soak {
                    GateVerdict::Passed
                } else {
                    GateVerdict::Waiting { last: None }
                }
            }
            Err(reason) => {
                if let Some(since) = self.healthy_since.take() {
                    // Healthy, then not: during the soak that is a failure.
                    return GateVerdict::Failed(format!(
                        "{reason} (after {:.0?} healthy, during the {:.0?} soak)",
                        now.duration_since(since),
                        self.gates.soak
                    ));
                }
                if now.duration_since(self.started) >= self.gates.ready_timeout {
                    GateVerdict::Failed(format!(
                        "not healthy after {:.0?}: {reason}",
                        self.gates.ready_timeout
                    ))
                } else {
                    GateVerdict::Waiting { last: Some(reason) }
                }
            }
        }
    }

    /// When the next look is due to decide on time: the end of the soak, or
    /// the ready timeout.
    pub fn deadline(&self) -> Instant {
        match self.healthy_since {
            Some(since) => since + self.gates.soak,
            None => self.started + self.gates.ready_timeout,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(blocks: u64, ibd: bool) -> Observation {
        Observation {
            running: true,
            rpc: Ok(ChainInfo {
                chain: "regtest".into(),
                blocks,
                headers: blocks,
                initialblockdownload: ibd,
            }),
        }
    }

    #[test]
    fn gates_in_order() {
        let down = Observation {
            running: false,
            rpc: Err("not running".into()),
        };
        assert_eq!(judge(&down, None, 2), Err("not running".into()));
        let unseen = Observation {
            running: false,
            rpc: Err("its container or pod is missing".into()),
        };
        assert_eq!(
            judge(&unseen, None, 2),
            Err("its container or pod is missing".into()),
            "what hab saw instead is said"
        );
        let warming = Observation {
            running: true,
            rpc: Err("RPC error -28: Loading block index...".into()),
        };
        assert!(judge(&warming, None, 2).unwrap_err().contains("-28"));
        assert!(judge(&obs(10, true), None, 2)
            .unwrap_err()
            .contains("initial block download"));
        assert_eq!(judge(&obs(100, false), Some(102), 2), Ok(()));
        assert!(judge(&obs(100, false), Some(103), 2)
            .unwrap_err()
            .contains("3 blocks behind"));
        assert_eq!(
            judge(&obs(105, false), Some(100), 2),
            Ok(()),
            "ahead is fine"
        );
        assert_eq!(
            judge(&obs(5, false), None, 2),
            Ok(()),
            "no peers: no lag gate"
        );
        // Once an overflow: a node claiming the highest height there is.
        assert_eq!(judge(&obs(u64::MAX, false), Some(100), 2), Ok(()));
    }

    #[test]
    fn best_tip_counts_only_healthy_peers() {
        let peers = [
            obs(100, false),
            obs(900, true),
            Observation {
                running: false,
                rpc: Err("x".into()),
            },
            obs(101, false),
        ];
        assert_eq!(best_tip(&peers), Some(101));
        assert_eq!(best_tip(&[]), None);
    }

    #[test]
    fn soak_passes_only_after_holding_and_times_out() {
        let gates = Gates {
            max_lag: 2,
            soak: Duration::from_secs(10),
            ready_timeout: Duration::from_secs(60),
        };
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut s = Soak::new(gates, t0);
        assert_eq!(
            s.observe(Err("down".into()), at(1)),
            GateVerdict::Waiting {
                last: Some("down".into())
            }
        );
        assert_eq!(
            s.observe(Ok(()), at(5)),
            GateVerdict::Waiting { last: None }
        );
        assert_eq!(s.deadline(), at(15));
        assert_eq!(
            s.observe(Ok(()), at(14)),
            GateVerdict::Waiting { last: None }
        );
        assert_eq!(s.observe(Ok(()), at(15)), GateVerdict::Passed);

        // Healthy, then not, during the soak: failed.
        let mut s = Soak::new(gates, t0);
        s.observe(Ok(()), at(1));
        assert!(
            matches!(s.observe(Err("lag".into()), at(3)), GateVerdict::Failed(r) if r.contains("during the"))
        );

        // Never healthy: failed at the ready timeout, with the last reason.
        let mut s = Soak::new(gates, t0);
        assert!(matches!(
            s.observe(Err("-28".into()), at(59)),
            GateVerdict::Waiting { .. }
        ));
        assert!(
            matches!(s.observe(Err("-28".into()), at(60)), GateVerdict::Failed(r) if r.contains("not healthy after") && r.contains("-28"))
        );
    }
}
