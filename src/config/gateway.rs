//! `[gateway]` in hab.toml: the RPC front door `habd serve` runs (see
//! `crate::gateway`), checked with file, line and field.

use std::net::SocketAddr;

use serde::Deserialize;
use toml::Spanned;

use super::FleetConfig;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGateway {
    listen: Spanned<String>,
    #[serde(default)]
    fleets: Vec<Spanned<String>>,
    max_lag: Option<u64>,
    max_body_bytes: Option<Spanned<u64>>,
    max_batch: Option<Spanned<u64>>,
    max_calls_per_second: Option<Spanned<u64>>,
    run: Option<Spanned<String>>,
    drain_wait: Option<Spanned<String>>,
    #[serde(default)]
    user: Vec<RawGatewayUser>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGatewayUser {
    rpcauth: Spanned<String>,
    #[serde(default)]
    allow: Vec<Spanned<String>>,
}

/// The RPC front door (`[gateway]` in hab.toml), served by `habd serve`
/// beside the API: one JSON-RPC endpoint before the nodes of `fleets`.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Where it listens (its own port: clients are not API users).
    pub listen: SocketAddr,
    /// The fleets it fronts; empty: every fleet.
    pub fleets: Vec<String>,
    /// Routing and limits.
    pub settings: crate::gateway::Settings,
    /// Its users (`rpcauth` hashes, each with the writes it may call).
    pub users: Vec<crate::gateway::access::User>,
    /// Who runs it: `habd serve` (the default, for one host), or
    /// `habd gateway` processes of their own (`run = "apart"`: a
    /// Deployment of several replicas before Kubernetes fleets).
    pub apart: bool,
    /// Run apart: how long habd waits, once it has marked a pod for
    /// draining (the `hab.dev/drain` annotation), before it takes the node
    /// down: time for every front door to see the mark through its watch
    /// and for the calls in flight to finish.
    pub drain_wait: std::time::Duration,
}

/// The annotation habd sets on a node's pod before a rollout takes it
/// down: front doors run apart send it no new call from then on.
pub const DRAIN_ANNOTATION: &str = "hab.dev/drain";

/// `[gateway]`, checked: its address, fleets that exist, limits, users.
pub(super) fn parse_gateway(
    src: &mut super::diagnostics::Source<'_>,
    g: RawGateway,
    fleets: &[FleetConfig],
    targets: &[super::TargetConfig],
) -> Option<GatewayConfig> {
    let listen = match g.listen.get_ref().parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(e) => {
            src.error(
                g.listen.span(),
                "gateway.listen",
                format!("not host:port: {e}"),
            );
            None
        }
    };
    for f in &g.fleets {
        if !fleets.iter().any(|x| &x.name == f.get_ref()) {
            src.error(
                f.span(),
                "gateway.fleets",
                format!("no fleet {:?} in this file", f.get_ref()),
            );
        }
    }
    let mut settings = crate::gateway::Settings::default();
    if let Some(l) = g.max_lag {
        settings.max_lag = l;
    }
    if let Some(b) = &g.max_body_bytes {
        if *b.get_ref() < 1024 {
            src.error(b.span(), "gateway.max_body_bytes", "at least 1024");
        }
        settings.max_body = usize::try_from(*b.get_ref()).unwrap_or(usize::MAX);
    }
    if let Some(b) = &g.max_batch {
        if *b.get_ref() == 0 {
            src.error(b.span(), "gateway.max_batch", "at least 1");
        }
        settings.max_batch = usize::try_from(*b.get_ref()).unwrap_or(usize::MAX);
    }
    if let Some(r) = &g.max_calls_per_second {
        if *r.get_ref() == 0 {
            src.error(r.span(), "gateway.max_calls_per_second", "at least 1");
        }
        settings.max_calls_per_second = u32::try_from(*r.get_ref()).unwrap_or(u32::MAX).max(1);
    }
    let apart = match g.run.as_ref().map(|r| r.get_ref().as_str()) {
        None | Some("habd") => false,
        Some("apart") => true,
        Some(other) => {
            let span = g.run.as_ref().map(Spanned::span).unwrap_or_default();
            src.error(
                span,
                "gateway.run",
                format!("{other:?}: \"habd\" (habd serve runs it) or \"apart\" (habd gateway processes do)"),
            );
            false
        }
    };
    if apart {
        // Apart, a front door learns of drains through the pods' annotations:
        // a fleet on Docker has none.
        for f in fleets
            .iter()
            .filter(|f| g.fleets.is_empty() || g.fleets.iter().any(|x| x.get_ref() == &f.name))
        {
            let on_kube = targets
                .iter()
                .any(|t| t.name == f.target && t.kind == super::TargetKind::Kubernetes);
            if !on_kube {
                let span = g.run.as_ref().map(Spanned::span).unwrap_or_default();
                src.error(
                    span,
                    "gateway.run",
                    format!(
                        "\"apart\" fronts fleets on Kubernetes targets only; fleet {:?} is on target {:?} (list the Kubernetes fleets in gateway.fleets, or run it in habd)",
                        f.name, f.target
                    ),
                );
            }
        }
    }
    let mut drain_wait = std::time::Duration::from_secs(2);
    if let Some(w) = &g.drain_wait {
        match super::fleets::parse_duration(w.get_ref()) {
            Ok(d) if d <= std::time::Duration::from_secs(300) => drain_wait = d,
            Ok(_) => src.error(w.span(), "gateway.drain_wait", "at most 5m"),
            Err(msg) => src.error(w.span(), "gateway.drain_wait", msg),
        }
    }
    let mut users = Vec::new();
    for (i, u) in g.user.into_iter().enumerate() {
        for a in &u.allow {
            if !crate::gateway::access::WRITES.contains(&a.get_ref().as_str()) {
                src.error(
                    a.span(),
                    format!("gateway.user[{i}].allow"),
                    format!(
                        "{:?} is not a call the front door forwards on request (it may allow: {})",
                        a.get_ref(),
                        crate::gateway::access::WRITES.join(", ")
                    ),
                );
            }
        }
        let allow = u.allow.iter().map(|a| a.get_ref().clone()).collect();
        match crate::gateway::access::User::from_rpcauth(u.rpcauth.get_ref(), allow) {
            Ok(user) => users.push(user),
            Err(e) => src.error(
                u.rpcauth.span(),
                format!("gateway.user[{i}].rpcauth"),
                e.to_string(),
            ),
        }
    }
    if users.is_empty() {
        src.error(
            g.listen.span(),
            "gateway.user",
            "at least one [[gateway.user]] (rpcauth = \"user:salt$hash\", as bitcoind's rpcauth.py prints)",
        );
    }
    Some(GatewayConfig {
        listen: listen?,
        fleets: g.fleets.into_iter().map(|f| f.into_inner()).collect(),
        settings,
        users,
        apart,
        drain_wait,
    })
}
