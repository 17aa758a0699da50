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
}

/// `[gateway]`, checked: its address, fleets that exist, limits, users.
pub(super) fn parse_gateway(
    src: &mut super::diagnostics::Source<'_>,
    g: RawGateway,
    fleets: &[FleetConfig],
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
    })
}
