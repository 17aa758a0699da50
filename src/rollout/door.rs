//! The RPC front door and the fleets it fronts: which fleets, in whose
//! dialect, and `habd gateway`, the front door as a process of its own
//! (`[gateway] run = "apart"`), several replicas of which may run before
//! the same Kubernetes fleets. Each finds the nodes by watching their pods
//! through the API and looks at them itself, independently of habd; habd
//! marks a pod for draining before a rollout takes it down
//! ([`crate::config::DRAIN_ANNOTATION`]) and waits `gateway.drain_wait`.

use std::{collections::BTreeMap, net::SocketAddr, sync::Arc, time::Duration};

use crate::{
    config::{Config, FleetConfig, Implementation, TargetKind},
    gateway::{Backend, Dialect, Gateway},
};

use super::kube::KubeTarget;

/// Whether the front door of `config` fronts `fleet`.
pub fn fronts(config: &Config, fleet: &FleetConfig) -> bool {
    config
        .gateway
        .as_ref()
        .is_some_and(|g| g.fleets.is_empty() || g.fleets.contains(&fleet.name))
}

/// The dialect the nodes of `fleet` speak (their pipeline's
/// implementation).
pub fn dialect(config: &Config, fleet: &FleetConfig) -> Option<Dialect> {
    let p = config.pipelines.iter().find(|p| p.name == fleet.pipeline)?;
    Some(match p.implementation {
        Implementation::Btcd => Dialect::Btcd,
        Implementation::Bcoin => Dialect::Bcoin,
        _ => Dialect::Core,
    })
}

/// Runs the front door apart until `shutdown`: on `listen` (or
/// `gateway.listen`), before the pods of every fleet it fronts.
///
/// # Errors
/// No `[gateway]`, a fleet's password cannot be read, a target cannot be
/// reached, or the address cannot be bound.
pub async fn run_apart(
    config: Arc<Config>,
    listen: Option<SocketAddr>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    let g = config.gateway.as_ref().ok_or_else(|| {
        "no [gateway] in the configuration: nothing to run (see the README, \"The RPC front door\")"
            .to_string()
    })?;
    let door = Gateway::new(Vec::new(), g.users.clone(), g.settings.clone());
    door.spawn_looks();
    // Every fleet's nodes as last seen, merged into the front door's.
    let found: Arc<std::sync::Mutex<BTreeMap<String, Vec<Backend>>>> = Arc::default();
    let mut targets: BTreeMap<String, KubeTarget> = BTreeMap::new();
    for f in config.fleets.iter().filter(|f| fronts(&config, f)) {
        let t = config
            .targets
            .iter()
            .find(|t| t.name == f.target && t.kind == TargetKind::Kubernetes)
            .ok_or_else(|| format!("fleet {} is not on a Kubernetes target", f.name))?;
        let target = match targets.get(&t.name) {
            Some(k) => k.clone(),
            None => {
                let k = KubeTarget::connect(
                    t.endpoint.as_deref(),
                    t.namespace.as_deref().unwrap_or("default"),
                )
                .await?;
                targets.insert(t.name.clone(), k.clone());
                k
            }
        };
        let file = f.rpc_password_file.clone().ok_or_else(|| {
            format!(
                "fleet {}: no rpc_password_file (the front door reads the nodes' password from it)",
                f.name
            )
        })?;
        let password = std::fs::read_to_string(&file)
            .map_err(|e| format!("fleet {}: {}: {e}", f.name, file.display()))?
            .trim()
            .to_string();
        let dialect = dialect(&config, f).unwrap_or(Dialect::Core);
        // Over TLS (btcd), the CA the nodes' certificates must come from.
        let ca = f
            .rpc_tls
            .then(|| super::conf::pinned_ca(&config.state_dir, f));
        if let Some(ca) = &ca {
            super::conf::tls_client(ca, None).map_err(|e| format!("fleet {}: {e}", f.name))?;
        }
        let (fleet, door, found) = (f.clone(), door.clone(), found.clone());
        tokio::spawn(async move {
            // One TLS client per pod name and address, made when first seen.
            let mut clients: BTreeMap<(String, SocketAddr), reqwest::Client> = BTreeMap::new();
            loop {
                let watched = target
                    .watch_nodes(&fleet, |pods| {
                        let backends = pods
                            .into_iter()
                            .filter_map(|p| {
                                let address = p.resolve.as_ref().map(|(_, a)| *a);
                                let http = match (&ca, p.resolve) {
                                    (None, _) => None,
                                    (Some(ca), Some(at)) => {
                                        if clients.len() > 256 {
                                            clients.clear();
                                        }
                                        let made = match clients.get(&at) {
                                            Some(c) => c.clone(),
                                            None => {
                                                let c = super::conf::tls_client(
                                                    ca,
                                                    Some((&at.0, at.1)),
                                                )
                                                .ok()?;
                                                clients.insert(at, c.clone());
                                                c
                                            }
                                        };
                                        Some(made)
                                    }
                                    (Some(_), None) => return None,
                                };
                                Some(Backend {
                                    url: p.url?,
                                    name: p.name,
                                    user: fleet.rpc_user.clone(),
                                    password: password.clone(),
                                    dialect,
                                    hold: p.hold,
                                    http,
                                    address,
                                })
                            })
                            .collect();
                        let mut all = found.lock().unwrap_or_else(|e| e.into_inner());
                        all.insert(fleet.name.clone(), backends);
                        door.set_backends(all.values().flatten().cloned().collect());
                        true
                    })
                    .await;
                if let Err(e) = watched {
                    tracing::warn!(fleet = %fleet.name, error = %e, "cannot watch the fleet's pods; trying again in 5s");
                }
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        });
    }
    let listen = listen.unwrap_or(g.listen);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("cannot listen on {listen} (gateway.listen): {e}"))?;
    tracing::info!(addr = %listen, fleets = ?config.fleets.iter().filter(|f| fronts(&config, f)).map(|f| &f.name).collect::<Vec<_>>(), "RPC front door listening");
    axum::serve(listener, door.router())
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| e.to_string())
}
