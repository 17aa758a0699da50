//! Rollouts: fleets follow channels; when a channel moves, every fleet that
//! follows it is rolled to the new image, one node at a time, behind the
//! health gates. See [`plan`] for the decisions and [`docker`] for the
//! Docker target.
//!
//! The engine, [`Rollouts`], is one worker over the store's rollouts, in
//! parts: `follow` queues the rollouts of the fleets that follow a channel,
//! `walk` walks one rollout node by node, `gates` holds a node to its gates
//! and the others to the budget of one node out of service, `observe` looks
//! at nodes, and `rollback` fails a rollout or turns it back and returns
//! the channels from a known-bad build. [`target`] puts the Docker and
//! Kubernetes targets behind one face, and [`node`] holds the words they
//! and the engine share.

pub mod conf;
pub mod docker;
pub mod door;
pub mod kube;
pub mod node;
pub mod plan;
pub mod target;

mod follow;
mod gates;
mod observe;
mod rollback;
mod walk;

use std::{path::PathBuf, sync::Arc, time::Duration};

use tokio::sync::Notify;

use crate::{
    api::{FleetView, NodeView},
    config::{Config, FleetConfig, TargetKind},
    health,
    registry::Registry,
    store::blocking,
    store::{RolloutState, Store, StoreError},
};
use docker::DockerTarget;
use target::Target;

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

/// The rollout engine: one rollout at a time across every fleet (so never
/// two implementations roll at once and at most one node of all fleets is
/// out of service), driven by a worker task.
pub struct Rollouts {
    config: Arc<Config>,
    store: Store,
    registry: Registry,
    /// Checks each target digest's signed provenance before a rollout
    /// touches a node.
    provenance: crate::provenance::Provenance,
    wake: Notify,
    http: reqwest::Client,
    /// The RPC front door (`[gateway]`), when configured: a node is
    /// drained there before a rollout takes it down.
    gateway: Option<Arc<crate::gateway::Gateway>>,
    /// One client per Kubernetes target, made once and reused (its
    /// connection pool; a new client per look invites 429s).
    kube_targets: tokio::sync::Mutex<std::collections::HashMap<String, kube::KubeTarget>>,
    /// RPC clients of TLS fleets, by fleet and the address a pod's name is
    /// reached at: each trusts its fleet's CA only.
    tls_clients: std::sync::Mutex<std::collections::HashMap<TlsClientKey, reqwest::Client>>,
}

type TlsClientKey = (String, Option<(String, std::net::SocketAddr)>);

impl std::fmt::Debug for Rollouts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rollouts").finish_non_exhaustive()
    }
}

impl Rollouts {
    /// The engine over `config`'s fleets.
    pub fn new(
        config: Arc<Config>,
        store: Store,
        registry: Registry,
        provenance: crate::provenance::Provenance,
    ) -> Arc<Self> {
        // Run apart, the front door is `habd gateway`'s, not this one's.
        let gateway =
            config.gateway.as_ref().filter(|g| !g.apart).map(|g| {
                crate::gateway::Gateway::new(Vec::new(), g.users.clone(), g.settings.clone())
            });
        Arc::new(Rollouts {
            gateway,
            config,
            store,
            registry,
            provenance,
            wake: Notify::new(),
            http: reqwest::Client::new(),
            kube_targets: Default::default(),
            tls_clients: Default::default(),
        })
    }

    /// Starts the worker (inside a tokio runtime). It picks up a rollout a
    /// previous habd left running, and every one queued since.
    pub fn spawn(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        if let Some(g) = &self.gateway {
            g.spawn_looks();
            let this = Arc::downgrade(self);
            tokio::spawn(async move {
                while let Some(r) = this.upgrade() {
                    r.find_gateway_nodes().await;
                    drop(r);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            });
        }
        let this = self.clone();
        tokio::spawn(async move { this.worker().await })
    }

    /// The RPC front door, when `[gateway]` configures one.
    pub fn gateway(&self) -> Option<Arc<crate::gateway::Gateway>> {
        self.gateway.clone()
    }

    /// Whether the front door fronts `fleet`.
    fn fronts(&self, fleet: &FleetConfig) -> bool {
        door::fronts(&self.config, fleet)
    }

    /// Tells the front door where the nodes of the fleets it fronts are
    /// now (a node's address changes when it is recreated).
    async fn find_gateway_nodes(&self) {
        let Some(g) = &self.gateway else { return };
        let mut backends = Vec::new();
        for f in self.config.fleets.iter().filter(|f| self.fronts(f)) {
            let Some(implementation) = door::dialect(&self.config, f) else {
                continue;
            };
            let (Ok(target), Ok(password)) = (self.target(f).await, self.rpc_password(f)) else {
                continue;
            };
            for o in 0..f.nodes {
                let Ok(Some(status)) = target.status(f, o).await else {
                    continue;
                };
                let Some(url) = status.rpc_url.clone() else {
                    continue;
                };
                // Over TLS, a client that trusts the fleet's CA only.
                let http = if f.rpc_tls {
                    match self.rpc_http(f, status.rpc_resolve.as_ref()) {
                        Ok(c) => Some(c),
                        Err(e) => {
                            tracing::warn!(fleet = %f.name, error = %e, "the front door cannot call this TLS fleet");
                            continue;
                        }
                    }
                } else {
                    None
                };
                backends.push(crate::gateway::Backend {
                    name: format!("{}-{o}", f.name),
                    url,
                    user: f.rpc_user.clone(),
                    password: password.clone(),
                    dialect: implementation,
                    hold: None,
                    http,
                    address: status.rpc_resolve.as_ref().map(|(_, a)| *a),
                });
            }
        }
        g.set_backends(backends);
    }

    /// Drains node `ordinal` of `fleet` at the front door (its calls in
    /// flight finish, no new one goes there) before it is taken down. Run
    /// apart, the front doors learn it from the pod's drain mark, and
    /// habd gives them `gateway.drain_wait` to act on it.
    async fn drain_node(&self, fleet: &FleetConfig, ordinal: u32) {
        let Some(config) = self.config.gateway.as_ref().filter(|_| self.fronts(fleet)) else {
            return;
        };
        let name = format!("{}-{ordinal}", fleet.name);
        if config.apart {
            if let Ok(Target::Kubernetes(k)) = self.target(fleet).await {
                let why = format!("rollout since {}", chrono::Utc::now().to_rfc3339());
                match k.mark_drain(&name, Some(&why)).await {
                    Ok(()) => tokio::time::sleep(config.drain_wait).await,
                    Err(e) => {
                        tracing::warn!(node = %name, error = %e, "cannot mark the pod for draining; taking the node down anyway")
                    }
                }
            }
            return;
        }
        let Some(g) = &self.gateway else { return };
        if !g.drain(&name, Duration::from_secs(30)).await {
            tracing::warn!(node = %name, "calls still in flight at the front door after 30s; taking the node down anyway");
        }
    }

    /// Holds node `ordinal` to its gates, then lets the front door send it
    /// calls again (its own looks decide whether it is fit for them).
    async fn gate_and_undrain(
        &self,
        target: &Target,
        fleet: &FleetConfig,
        ordinal: u32,
        r: &crate::store::RolloutRecord,
    ) -> Result<u64, gates::GateStop> {
        let verdict = self.gate(target, fleet, ordinal, r).await;
        self.undrain_node(target, fleet, ordinal).await;
        verdict
    }

    /// Lets the front door send node `ordinal` calls again: after its
    /// gates, or when the rollout is held before touching it.
    async fn undrain_node(&self, target: &Target, fleet: &FleetConfig, ordinal: u32) {
        let name = format!("{}-{ordinal}", fleet.name);
        if let Some(g) = &self.gateway {
            g.undrain(&name);
        }
        let apart = self.config.gateway.as_ref().is_some_and(|g| g.apart);
        if let (true, true, Target::Kubernetes(k)) = (apart, self.fronts(fleet), target) {
            // A recreated pod carries no mark; one that was not (a failed
            // update) must lose it.
            if let Err(e) = k.mark_drain(&name, None).await {
                tracing::warn!(node = %name, error = %e, "cannot take the drain mark off the pod");
            }
        }
    }

    /// Wakes the worker (a rollout was queued, resumed or undone).
    pub fn wake(&self) {
        self.wake.notify_one();
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

    /// The HTTP client that asks a node of `fleet` at `resolve`: the
    /// shared one, or for a TLS fleet one that trusts its CA only.
    fn rpc_http(
        &self,
        fleet: &FleetConfig,
        resolve: Option<&(String, std::net::SocketAddr)>,
    ) -> Result<reqwest::Client, String> {
        if !fleet.rpc_tls {
            return Ok(self.http.clone());
        }
        let key = (fleet.name.clone(), resolve.cloned());
        let mut clients = self
            .tls_clients
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(c) = clients.get(&key) {
            return Ok(c.clone());
        }
        let ca = conf::pinned_ca(&self.config.state_dir, fleet);
        let client = conf::tls_client(&ca, resolve.map(|(h, a)| (h.as_str(), *a)))?;
        // Pods come and go with new addresses: forget the old ones.
        if clients.len() > 256 {
            clients.clear();
        }
        clients.insert(key, client.clone());
        Ok(client)
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
                match (&t.tls_key, &t.tls_cert, &t.tls_ca) {
                    (Some(k), Some(c), Some(a)) => Some((k.as_path(), c.as_path(), a.as_path())),
                    _ => None,
                },
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

    async fn step(&self, id: i64, ordinal: Option<u32>, kind: &str, detail: String) {
        tracing::info!(rollout = id, node = ordinal, kind, "{detail}");
        let store = self.store.clone();
        let kind = kind.to_string();
        if let Err(e) = blocking(move || store.rollout_step(id, ordinal, &kind, &detail)).await {
            tracing::warn!(rollout = id, error = %e, "cannot record a rollout step");
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
                                .and_then(|()| obs.rpc.clone().map(|i| i.blocks)),
                            chain: obs.rpc.ok(),
                        });
                    }
                }
                Err(e) => nodes.extend((0..f.nodes).map(|o| NodeView {
                    ordinal: o,
                    image: None,
                    rpc: None,
                    health: Err(e.clone()),
                    chain: None,
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

    /// Looks at every fleet's nodes and keeps the look in the store (what
    /// the dashboard and `/metrics` show).
    ///
    /// # Errors
    /// The store fails.
    pub async fn look(&self) -> Result<(), RolloutError> {
        let at = chrono::Utc::now();
        for f in self.fleets().await? {
            let nodes: Vec<crate::store::NodeLook> = f
                .nodes
                .into_iter()
                .map(|n| crate::store::NodeLook {
                    fleet: f.name.clone(),
                    ordinal: n.ordinal,
                    image: n.image,
                    rpc: n.rpc,
                    chain: n.chain.as_ref().map(|c| c.chain.clone()),
                    height: n.chain.as_ref().map(|c| c.blocks),
                    headers: n.chain.as_ref().map(|c| c.headers),
                    ibd: n.chain.as_ref().map(|c| c.initialblockdownload),
                    healthy: n.health.is_ok(),
                    reason: n.health.err(),
                    observed_at: at,
                })
                .collect();
            let store = self.store.clone();
            let name = f.name.clone();
            blocking(move || store.record_node_status(&name, &nodes)).await?;
        }
        Ok(())
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
