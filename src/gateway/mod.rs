//! The RPC front door: one JSON-RPC endpoint before the nodes of a fleet,
//! speaking Bitcoin Core's conventions whichever implementation answers.
//!
//! It checks the nodes itself (`getblockchaininfo` every `look_every`) and
//! routes a call only to a node that answers, is out of initial block
//! download, is within `max_lag` blocks of the best tip it sees, is not
//! drained, and has at least the height the calling user has already been
//! shown (a client never sees the tip go backwards); among those, the
//! least lag, then the fewest calls in flight. A read that fails on one
//! node is retried on the next. Bad input (malformed JSON, an oversize body
//! or batch, a method outside the documented subset, one the user may not
//! call, wrong credentials) is answered in Bitcoin Core's error shape and
//! never reaches a node. [`Gateway::drain`] stops new calls to a node and
//! waits for the ones in flight: what a rollout does before taking it
//! down. Node credentials stay here: a client authenticates as one of the
//! front door's own users ([`access`]).
//!
//! `habd serve` runs it when hab.toml has `[gateway]`; `habd gateway`
//! runs it as a process of its own (`run = "apart"`, the chart's
//! Deployment; see `crate::rollout::door`).

pub mod access;
mod format;
mod http;

use std::{
    collections::{HashMap, HashSet},
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use axum::{routing::post, Router};
use serde_json::{json, Value};

use access::User;

/// Core's fields the front door cannot give from btcd, and why.
pub use format::BTCD_GAPS;

/// Whose JSON-RPC a node speaks: Bitcoin Core's own (bitcoind), or one
/// the front door translates ([`format`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// Bitcoin Core's: passed as it is.
    Core,
    /// btcd's.
    Btcd,
    /// bcoin's.
    Bcoin,
}

/// A node behind the front door.
#[derive(Debug, Clone)]
pub struct Backend {
    /// Its name in status and logs (e.g. `hab-bitcoind-0`).
    pub name: String,
    /// Its JSON-RPC URL.
    pub url: String,
    pub user: String,
    pub password: String,
    pub dialect: Dialect,
    /// Why whoever found the node says no call may go to it now (its pod
    /// is being drained for a rollout, is terminating, or is not Ready),
    /// whatever the front door's own looks say.
    pub hold: Option<String>,
    /// The client to call it with, when it needs its own: over TLS,
    /// trusting its fleet's CA only and reaching its certificate's name
    /// at its address (btcd). None: plain HTTP.
    pub http: Option<reqwest::Client>,
    /// Where `http` reaches a TLS node's name: with the URL, what makes
    /// it the same node (a pod recreated at a new address is a new one).
    pub address: Option<std::net::SocketAddr>,
}

/// Limits and routing settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Blocks a node may be behind the best tip seen and still be called.
    pub max_lag: u64,
    /// Largest request body accepted.
    pub max_body: usize,
    /// Most calls in one batch.
    pub max_batch: usize,
    /// How often each node is looked at.
    pub look_every: Duration,
    /// How long one call to a node may take.
    pub call_timeout: Duration,
    /// Calls a user may make each second (a batch counts each of its
    /// calls), with as many at once; over it, HTTP 429.
    pub max_calls_per_second: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            max_lag: 2,
            max_body: 1 << 20,
            max_batch: 100,
            look_every: Duration::from_millis(500),
            call_timeout: Duration::from_secs(10),
            max_calls_per_second: 1000,
        }
    }
}

/// What the front door knows of a node.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct DoorNode {
    pub name: String,
    /// It answered its last look.
    pub answers: bool,
    pub height: Option<u64>,
    pub initial_block_download: bool,
    /// Blocks behind the best tip seen.
    pub lag: Option<u64>,
    pub in_flight: usize,
    /// Calls forwarded to it (not counting the front door's looks).
    pub served: u64,
    pub drained: bool,
    /// Why it gets no calls, if it gets none.
    pub excluded: Option<String>,
}

struct Node {
    backend: Backend,
    /// The latest `Backend::hold` given for it.
    hold: Mutex<Option<String>>,
    seen: Mutex<Seen>,
    in_flight: AtomicUsize,
    served: AtomicU64,
}

#[derive(Default, Clone)]
struct Seen {
    answers: bool,
    height: Option<u64>,
    ibd: bool,
}

/// The front door.
pub struct Gateway {
    /// The nodes now (a fleet's nodes come and go: [`Gateway::set_backends`]).
    nodes: std::sync::RwLock<Vec<Arc<Node>>>,
    /// Nodes no new call goes to, by name (kept across backend changes).
    drained: Mutex<HashSet<String>>,
    users: Vec<User>,
    settings: Settings,
    http: reqwest::Client,
    /// The highest height each user has been shown.
    shown: Mutex<HashMap<String, u64>>,
    /// Each user's calls per second.
    limiter: governor::DefaultKeyedRateLimiter<String>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway").finish_non_exhaustive()
    }
}

/// Bitcoin Core's JSON-RPC error codes the front door answers with.
mod code {
    pub const PARSE_ERROR: i64 = -32700;
    pub const INVALID_REQUEST: i64 = -32600;
    pub const METHOD_NOT_FOUND: i64 = -32601;
    pub const INTERNAL_ERROR: i64 = -32603;
    /// RPC_INVALID_ADDRESS_OR_KEY: no such block or transaction.
    pub const NOT_FOUND: i64 = -5;
    /// RPC_IN_WARMUP: no node can answer yet.
    pub const IN_WARMUP: i64 = -28;
    /// Over a user's rate: JSON-RPC 2.0's first implementation-defined
    /// server error (Bitcoin Core has no rate limit of its own).
    pub const RATE_LIMITED: i64 = -32000;
}

impl Gateway {
    pub fn new(backends: Vec<Backend>, users: Vec<User>, settings: Settings) -> Arc<Self> {
        let rate = std::num::NonZeroU32::new(settings.max_calls_per_second)
            .unwrap_or(std::num::NonZeroU32::MIN);
        let g = Arc::new(Self {
            limiter: governor::RateLimiter::keyed(governor::Quota::per_second(rate)),
            nodes: std::sync::RwLock::default(),
            drained: Mutex::default(),
            users,
            http: reqwest::Client::new(),
            settings,
            shown: Mutex::default(),
        });
        g.set_backends(backends);
        g
    }

    /// The nodes behind the front door from now on: a node of the same
    /// name and URL keeps what the front door knows of it.
    pub fn set_backends(&self, backends: Vec<Backend>) {
        let mut nodes = self.nodes.write().unwrap_or_else(|e| e.into_inner());
        let next = backends
            .into_iter()
            .map(|backend| {
                let kept = nodes
                    .iter()
                    .find(|n| {
                        n.backend.name == backend.name
                            && n.backend.url == backend.url
                            && n.backend.address == backend.address
                    })
                    .cloned();
                if let Some(n) = &kept {
                    *n.hold.lock().unwrap_or_else(|e| e.into_inner()) = backend.hold.clone();
                }
                kept.unwrap_or_else(|| {
                    Arc::new(Node {
                        hold: Mutex::new(backend.hold.clone()),
                        backend,
                        seen: Mutex::default(),
                        in_flight: AtomicUsize::new(0),
                        served: AtomicU64::new(0),
                    })
                })
            })
            .collect();
        *nodes = next;
    }

    fn snapshot(&self) -> Vec<Arc<Node>> {
        self.nodes.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn is_drained(&self, name: &str) -> bool {
        self.drained
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(name)
    }

    /// Looks at every node now (in parallel).
    pub async fn look(&self) {
        let nodes = self.snapshot();
        let looks = nodes.iter().map(|n| async move {
            let info = self
                .call_node(&n.backend, "getblockchaininfo", json!([]))
                .await;
            let mut seen = n.seen.lock().unwrap_or_else(|e| e.into_inner());
            match info {
                Ok(Ok(info)) => {
                    seen.answers = true;
                    seen.height = info["blocks"].as_u64();
                    seen.ibd = format::in_initial_block_download(n.backend.dialect, &info);
                }
                _ => seen.answers = false,
            }
        });
        futures_util::future::join_all(looks).await;
    }

    /// Looks at the nodes every `look_every`, until the gateway is dropped.
    pub fn spawn_looks(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(self);
        let every = self.settings.look_every;
        tokio::spawn(async move {
            while let Some(g) = weak.upgrade() {
                g.look().await;
                drop(g);
                tokio::time::sleep(every).await;
            }
        })
    }

    /// What the front door knows of each node.
    pub fn nodes(&self) -> Vec<DoorNode> {
        self.views(&self.snapshot())
    }

    fn views(&self, nodes: &[Arc<Node>]) -> Vec<DoorNode> {
        let seen: Vec<Seen> = nodes
            .iter()
            .map(|n| n.seen.lock().unwrap_or_else(|e| e.into_inner()).clone())
            .collect();
        let best = seen
            .iter()
            .filter(|s| s.answers)
            .filter_map(|s| s.height)
            .max();
        nodes
            .iter()
            .zip(seen)
            .map(|(n, s)| {
                let hold = n.hold.lock().unwrap_or_else(|e| e.into_inner()).clone();
                let drained = self.is_drained(&n.backend.name) || hold.is_some();
                let lag = s.height.zip(best).map(|(h, b)| b.saturating_sub(h));
                let excluded = if !s.answers {
                    Some("does not answer".to_string())
                } else if let Some(why) = hold {
                    Some(why)
                } else if drained {
                    Some("drained".to_string())
                } else if s.ibd {
                    Some("in initial block download".to_string())
                } else if lag.is_some_and(|l| l > self.settings.max_lag) {
                    Some(format!(
                        "{} blocks behind (max_lag {})",
                        lag.unwrap_or(0),
                        self.settings.max_lag
                    ))
                } else {
                    None
                };
                DoorNode {
                    name: n.backend.name.clone(),
                    answers: s.answers,
                    height: s.height,
                    initial_block_download: s.ibd,
                    lag,
                    in_flight: n.in_flight.load(Ordering::SeqCst),
                    served: n.served.load(Ordering::SeqCst),
                    drained,
                    excluded,
                }
            })
            .collect()
    }

    /// Stops sending new calls to node `name` and waits until the calls in
    /// flight there have finished (at most `wait`): false if they had not.
    pub async fn drain(&self, name: &str, wait: Duration) -> bool {
        self.drained
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_string());
        let busy = || {
            self.snapshot()
                .iter()
                .filter(|n| n.backend.name == name)
                .map(|n| n.in_flight.load(Ordering::SeqCst))
                .sum::<usize>()
        };
        let deadline = tokio::time::Instant::now() + wait;
        while busy() > 0 {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        true
    }

    /// Lets node `name` take calls again (once its looks say it may).
    pub fn undrain(&self, name: &str) {
        self.drained
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
    }

    /// The nodes a call of `user` may go to, best first.
    fn candidates(&self, nodes: &[Arc<Node>], user: &str, at_least: Option<u64>) -> Vec<usize> {
        let views = self.views(nodes);
        let shown = self
            .shown
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(user)
            .copied()
            .unwrap_or(0);
        let floor = shown.max(at_least.unwrap_or(0));
        let mut ok: Vec<(usize, &DoorNode)> = views
            .iter()
            .enumerate()
            .filter(|(_, v)| v.excluded.is_none() && v.height.unwrap_or(0) >= floor)
            .collect();
        ok.sort_by_key(|(_, v)| (v.lag.unwrap_or(u64::MAX), v.in_flight));
        ok.into_iter().map(|(i, _)| i).collect()
    }

    /// One JSON-RPC call to a node: Ok(Ok(result)), Ok(Err(error object))
    /// when the node answered with an error, Err when it did not answer.
    async fn call_node(
        &self,
        b: &Backend,
        method: &str,
        params: Value,
    ) -> Result<Result<Value, Value>, String> {
        let body = json!({"jsonrpc": "1.0", "id": "hab", "method": method, "params": params});
        let resp = b
            .http
            .as_ref()
            .unwrap_or(&self.http)
            .post(&b.url)
            .timeout(self.settings.call_timeout)
            .basic_auth(&b.user, Some(&b.password))
            .json(&body)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = resp.status();
        let answer: Value = resp
            .json()
            .await
            .map_err(|e| format!("HTTP {status}, not JSON-RPC: {e}"))?;
        if answer.get("result").is_none() && answer.get("error").is_none() {
            return Err(format!("HTTP {status}, not JSON-RPC"));
        }
        match &answer["error"] {
            Value::Null => Ok(Ok(answer["result"].clone())),
            e => Ok(Err(e.clone())),
        }
    }

    /// A GET of `path` on a node's RPC port (bcoin's REST), as JSON.
    async fn get_node(&self, b: &Backend, path: &str) -> Result<Value, String> {
        let base = b.url.trim_end_matches('/');
        let resp = b
            .http
            .as_ref()
            .unwrap_or(&self.http)
            .get(format!("{base}{path}"))
            .timeout(self.settings.call_timeout)
            .basic_auth(&b.user, Some(&b.password))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = resp.status();
        if !status.is_success() {
            return Err(format!("HTTP {status}"));
        }
        resp.json().await.map_err(|e| format!("not JSON: {e}"))
    }

    /// Forwards one known, allowed call: the node's result in Bitcoin
    /// Core's format, or an error object.
    async fn forward(&self, user: &str, method: &str, params: Value) -> Result<Value, Value> {
        let at_least = format::height_named(method, &params);
        let nodes = self.snapshot();
        let mut order = self.candidates(&nodes, user, at_least);
        if order.is_empty() && at_least.is_some() {
            // A height above every node's tip: the best node answers it as
            // Bitcoin Core does (-8, out of range).
            order = self.candidates(&nodes, user, None);
        }
        if order.is_empty() {
            return Err(error(
                code::IN_WARMUP,
                "no node can answer now (none is in service, synced and within max_lag)",
            ));
        }
        let mut last = None;
        let mut not_found = None;
        for i in order {
            let n = &nodes[i];
            // In flight first, then drained? A drain marks the node first
            // and then waits for its calls in flight: either it waits for
            // this one, or this one sees the mark and goes to the next.
            n.in_flight.fetch_add(1, Ordering::SeqCst);
            if self.is_drained(&n.backend.name)
                || n.hold.lock().unwrap_or_else(|e| e.into_inner()).is_some()
            {
                n.in_flight.fetch_sub(1, Ordering::SeqCst);
                continue;
            }
            n.served.fetch_add(1, Ordering::SeqCst);
            let imp = n.backend.dialect;
            let answer = match format::rest_instead(imp, method) {
                Some(path) => self.get_node(&n.backend, path).await.map(Ok),
                None => {
                    let asked = format::method_for(imp, method);
                    self.call_node(&n.backend, asked, format::params_for(imp, method, &params))
                        .await
                }
            };
            let answer = answer.map(|a| format::answer_for(imp, method, &params, a));
            // What one answer lacks, a second call completes (bcoin, btcd).
            let answer = match answer {
                Ok(Ok(first)) => {
                    let result = format::result_for(imp, method, first.clone());
                    match format::follow_up(imp, method, &first) {
                        Some(f) => {
                            tokio::time::sleep(f.settle).await;
                            match self.call_node(&n.backend, f.method, f.params).await {
                                Ok(second) => Ok(format::complete(imp, method, result, second)),
                                Err(_) => Ok(Ok(result)),
                            }
                        }
                        None => Ok(Ok(result)),
                    }
                }
                other => other,
            };
            n.in_flight.fetch_sub(1, Ordering::SeqCst);
            match answer {
                Ok(Ok(result)) => {
                    // A tip's hash shows the client at least the height the
                    // node had at its last look.
                    let height = format::height_shown(method, &result).or_else(|| {
                        (method == "getbestblockhash")
                            .then(|| n.seen.lock().unwrap_or_else(|e| e.into_inner()).height)
                            .flatten()
                    });
                    if let Some(h) = height {
                        let mut shown = self.shown.lock().unwrap_or_else(|e| e.into_inner());
                        let s = shown.entry(user.to_string()).or_default();
                        *s = (*s).max(h);
                    }
                    return Ok(result);
                }
                Ok(Err(e)) => {
                    let e = format::error_for(imp, method, e);
                    // A block or transaction this node lacks may be one a
                    // node ahead of it has (a block found since the last
                    // look): the next nodes are asked before "not found".
                    if e["code"] == code::NOT_FOUND && format::names_block_or_tx(method) {
                        not_found = Some(e);
                        continue;
                    }
                    return Err(e);
                }
                Err(why) => {
                    tracing::info!(node = %n.backend.name, method, error = %why, "a node failed a call; trying the next");
                    last = Some(why);
                    if !access::reads(method) {
                        break;
                    }
                }
            }
        }
        if let Some(e) = not_found {
            return Err(e);
        }
        Err(error(
            code::INTERNAL_ERROR,
            &format!(
                "no node answered: {}",
                last.unwrap_or_else(|| "every node was drained".into())
            ),
        ))
    }

    /// The front door's HTTP face: POST / (and any path, as bitcoind's
    /// /wallet/… paths are refused by method).
    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/", post(http::serve))
            .route("/hab/nodes", axum::routing::get(http::view))
            // A body over the limit is refused unread (see `serve`).
            .layer(axum::extract::DefaultBodyLimit::max(self.settings.max_body))
            .with_state(self.clone())
    }
}

fn error(code: i64, message: &str) -> Value {
    json!({"code": code, "message": message})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tls_node(address: &str) -> Backend {
        Backend {
            name: "hab-btcd-0".into(),
            url: "https://hab-btcd-0.hab-btcd.default.svc:8334/".into(),
            user: "hab".into(),
            password: "pw".into(),
            dialect: Dialect::Btcd,
            hold: None,
            http: None,
            address: Some(address.parse().unwrap()),
        }
    }

    /// A TLS node keeps its URL (its certificate's name) when its pod is
    /// recreated at a new address: the front door must take it as a new
    /// node, called at the new address, not keep the old one's client.
    #[tokio::test]
    async fn a_tls_node_at_a_new_address_is_a_new_node() {
        let g = Gateway::new(
            vec![tls_node("10.0.0.5:8334")],
            Vec::new(),
            Settings::default(),
        );
        let first = g.snapshot()[0].clone();
        g.set_backends(vec![tls_node("10.0.0.5:8334")]);
        assert!(Arc::ptr_eq(&first, &g.snapshot()[0]), "same address: kept");
        g.set_backends(vec![tls_node("10.0.0.9:8334")]);
        let now = g.snapshot()[0].clone();
        assert!(!Arc::ptr_eq(&first, &now), "new address: a new node");
        assert_eq!(now.backend.address, Some("10.0.0.9:8334".parse().unwrap()));
    }
}
