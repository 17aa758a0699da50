//! `[[fleet]]` in hab.toml: a named group of nodes of one pipeline on one
//! target, following one channel, with the health gates a rollout passes
//! before it moves on from each node.

use std::{path::PathBuf, time::Duration};

use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::{resolve, Config, ConfigError, Diagnostic, Implementation, Source};

/// A fleet, validated.
#[derive(Debug, Clone, Serialize)]
pub struct FleetConfig {
    /// Unique name; nodes are `hab-<fleet>-<ordinal>` on a Docker target.
    pub name: String,
    /// The pipeline whose images it runs.
    pub pipeline: String,
    /// The target it runs on.
    pub target: String,
    /// The channel it follows.
    pub channel: String,
    /// How many nodes.
    pub nodes: u32,
    /// Network, passed to the node (`NETWORK`): mainnet, testnet4, signet, regtest…
    pub network: String,
    /// RPC user the gates use.
    pub rpc_user: String,
    /// File with the RPC password; None: generated under the state folder.
    pub rpc_password_file: Option<PathBuf>,
    /// The node's RPC port inside its container or pod.
    pub rpc_port: u16,
    /// Docker target: node N publishes RPC on 127.0.0.1:(base + N); None:
    /// a free port picked by Docker.
    pub host_port_base: Option<u16>,
    /// The nodes serve RPC over TLS (`rpc_tls`; on by default for btcd,
    /// which serves RPC over TLS only) and the gates check their
    /// certificate against one CA.
    pub rpc_tls: bool,
    /// That CA (`rpc_tls_ca`, PEM). None on a Docker target: hab makes the
    /// fleet's own CA and server certificate under the state folder. A
    /// Kubernetes target needs it (the chart makes and mounts it).
    pub rpc_tls_ca: Option<PathBuf>,
    /// Health gates.
    pub gates: Gates,
    #[serde(skip)]
    at: Option<(PathBuf, usize, usize)>,
    /// `rpc_tls` as written; None: the implementation's default.
    #[serde(skip)]
    rpc_tls_set: Option<bool>,
}

/// What a node must show before a rollout moves on from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Gates {
    /// At most this many blocks behind the best tip of the other healthy nodes.
    pub max_lag: u64,
    /// How long every gate must hold continuously.
    #[serde(with = "secs")]
    pub soak: Duration,
    /// How long a node may take to become healthy before the rollout fails.
    #[serde(with = "secs")]
    pub ready_timeout: Duration,
}

/// Durations serialized as seconds (a float).
pub(super) mod secs {
    pub fn serialize<S: serde::Serializer>(
        d: &std::time::Duration,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }
}

impl Default for Gates {
    fn default() -> Self {
        Gates {
            max_lag: 2,
            soak: Duration::from_secs(30),
            ready_timeout: Duration::from_secs(300),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFleet {
    name: Spanned<String>,
    pipeline: Spanned<String>,
    target: Option<Spanned<String>>,
    channel: Spanned<String>,
    nodes: Spanned<i64>,
    network: Option<String>,
    rpc_user: Option<String>,
    rpc_password_file: Option<PathBuf>,
    rpc_port: Option<u16>,
    host_port_base: Option<u16>,
    rpc_tls: Option<bool>,
    rpc_tls_ca: Option<PathBuf>,
    #[serde(default)]
    gates: RawGates,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGates {
    max_lag: Option<u64>,
    soak: Option<Spanned<String>>,
    ready_timeout: Option<Spanned<String>>,
}

/// The longest duration [`parse_duration`] takes: a year. Nothing hab
/// waits for takes longer, and a wait that long still fits any clock
/// arithmetic (a deadline of now plus a duration).
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// `30s`, `5m`, `1h`, `1500ms`; at most [`MAX_DURATION`].
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like \"30s\", \"5m\" or \"1h\""))?;
    let secs_per = match unit {
        "ms" => None,
        "s" | "" => Some(1),
        "m" => Some(60),
        "h" => Some(3600),
        _ => return Err(format!("{s:?}: unknown unit {unit:?}; use ms, s, m or h")),
    };
    let d = match secs_per {
        None => Some(Duration::from_millis(n)),
        Some(k) => n.checked_mul(k).map(Duration::from_secs),
    };
    match d {
        Some(d) if d <= MAX_DURATION => Ok(d),
        _ => Err(format!(
            "{s:?} is longer than a year (8760h), the most hab waits for anything"
        )),
    }
}

pub(super) fn parse_fleets(
    src: &mut Source<'_>,
    base: &std::path::Path,
    raw: Vec<RawFleet>,
) -> Vec<FleetConfig> {
    let mut out: Vec<FleetConfig> = Vec::new();
    for (i, f) in raw.into_iter().enumerate() {
        let field = |name: &str| format!("fleet[{i}].{name}");
        let name = f.name.get_ref().clone();
        let name_ok = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !name_ok {
            src.error(
                f.name.span(),
                field("name"),
                format!("{name:?}: use lower-case letters, digits and '-' (it names containers)"),
            );
        } else if out.iter().any(|o| o.name == name) {
            src.error(
                f.name.span(),
                field("name"),
                format!("a fleet named {name:?} is already declared"),
            );
        }
        let nodes = *f.nodes.get_ref();
        if !(1..=1000).contains(&nodes) {
            src.error(
                f.nodes.span(),
                field("nodes"),
                format!("{nodes}: a fleet has 1 to 1000 nodes"),
            );
        }
        let mut gates = Gates::default();
        if let Some(l) = f.gates.max_lag {
            gates.max_lag = l;
        }
        for (raw, slot, key) in [
            (&f.gates.soak, &mut gates.soak, "gates.soak"),
            (
                &f.gates.ready_timeout,
                &mut gates.ready_timeout,
                "gates.ready_timeout",
            ),
        ] {
            if let Some(r) = raw {
                match parse_duration(r.get_ref()) {
                    Ok(d) => *slot = d,
                    Err(m) => src.error(r.span(), field(key), m),
                }
            }
        }
        let (line, col) = src.position(f.pipeline.span().start);
        out.push(FleetConfig {
            name,
            pipeline: f.pipeline.into_inner(),
            target: f
                .target
                .map_or_else(|| "local".to_string(), Spanned::into_inner),
            channel: f.channel.into_inner(),
            nodes: u32::try_from(nodes).unwrap_or(1),
            network: f.network.unwrap_or_else(|| "regtest".into()),
            rpc_user: f.rpc_user.unwrap_or_else(|| "hab".into()),
            rpc_password_file: f.rpc_password_file.map(|p| resolve(base, &p)),
            rpc_port: f.rpc_port.unwrap_or(18443),
            host_port_base: f.host_port_base,
            rpc_tls: f.rpc_tls.unwrap_or(false),
            rpc_tls_ca: f.rpc_tls_ca.map(|p| resolve(base, &p)),
            gates,
            at: Some((src.path.to_path_buf(), line, col)),
            rpc_tls_set: f.rpc_tls,
        });
    }
    out
}

impl Config {
    /// Settles what a fleet's defaults take from its pipeline (after the
    /// pipelines are loaded): RPC over TLS for btcd.
    pub(super) fn settle_fleets(&mut self) {
        let implementations: Vec<Option<Implementation>> = self
            .fleets
            .iter()
            .map(|f| self.pipeline(&f.pipeline).map(|p| p.implementation))
            .collect();
        for (f, i) in self.fleets.iter_mut().zip(implementations) {
            f.rpc_tls = f
                .rpc_tls_set
                .unwrap_or(i == Some(Implementation::Btcd) || f.rpc_tls_ca.is_some());
        }
    }

    /// Checks every fleet against the pipelines and targets (after both
    /// are loaded): each names a pipeline, a target and a declared channel.
    pub(super) fn check_fleets(&self) -> Result<(), ConfigError> {
        let mut diagnostics = Vec::new();
        for (i, f) in self.fleets.iter().enumerate() {
            let (file, line, col) =
                f.at.clone()
                    .unwrap_or_else(|| (PathBuf::from("hab.toml"), 1, 1));
            let mut problem = |field: &str, message: String| {
                diagnostics.push(Diagnostic {
                    file: file.clone(),
                    line,
                    col,
                    field: format!("fleet[{i}].{field}"),
                    message,
                })
            };
            match self.pipeline(&f.pipeline) {
                None => problem(
                    "pipeline",
                    format!(
                        "no pipeline named {:?} in {}",
                        f.pipeline,
                        self.pipelines_dir.display()
                    ),
                ),
                Some(p) if !p.implementation.is_node() => problem(
                    "pipeline",
                    format!(
                        "pipeline {} builds hab itself, not a Bitcoin node: a fleet cannot run it",
                        p.name
                    ),
                ),
                Some(p) if !p.channels.iter().any(|c| c.name == f.channel) => problem(
                    "channel",
                    format!("pipeline {} declares no channel {:?}", p.name, f.channel),
                ),
                Some(_) => {}
            }
            let target = self.targets.iter().find(|t| t.name == f.target);
            if target.is_none() {
                problem("target", format!("no [[target]] named {:?}", f.target));
            }
            if !f.rpc_tls && f.rpc_tls_ca.is_some() {
                problem(
                    "rpc_tls_ca",
                    "a CA for RPC over TLS, but rpc_tls = false: drop one of them".into(),
                );
            }
            let kube = target.is_some_and(|t| t.kind == super::TargetKind::Kubernetes);
            if !kube && f.rpc_tls_ca.is_some() {
                problem(
                    "rpc_tls_ca",
                    "on a Docker target hab makes a TLS fleet's CA and server certificate \
                     itself (under the state folder) and gives them to the nodes: drop rpc_tls_ca"
                        .into(),
                );
            }
            if kube && f.rpc_tls && f.rpc_tls_ca.is_none() {
                problem(
                    "rpc_tls_ca",
                    "the nodes serve RPC over TLS on a Kubernetes target: name the CA that \
                     signed their certificates (the chart mounts it), so the gates can pin it"
                        .into(),
                );
            }
        }
        if diagnostics.is_empty() {
            Ok(())
        } else {
            Err(ConfigError { diagnostics })
        }
    }

    /// The fleets that follow `channel` of `pipeline`.
    pub fn fleets_following(&self, pipeline: &str, channel: &str) -> Vec<&FleetConfig> {
        self.fleets
            .iter()
            .filter(|f| f.pipeline == pipeline && f.channel == channel)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert!(parse_duration("5 minutes").is_err());
        assert!(parse_duration("m").is_err());
        assert_eq!(parse_duration("8760h").unwrap(), MAX_DURATION);
        assert!(parse_duration("8761h")
            .unwrap_err()
            .contains("longer than a year"));
        // Once an overflow: n * 3600 past u64::MAX.
        assert!(parse_duration("5402640031841945913h").is_err());
    }
}
