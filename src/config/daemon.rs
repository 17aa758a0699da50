//! The daemon file, `hab.toml`: where habd listens and keeps its state,
//! the registry, the builders, the rollout targets and the fleets. Absent,
//! the embedded defaults stand in for it.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
};

use serde::{Deserialize, Serialize};
use toml::Spanned;
use url::Url;

pub use super::registry::{RegistryConfig, DEFAULT_REGISTRY_TIMEOUT};

use super::{
    gateway::parse_gateway, load_pipelines, parse_duration, parse_platforms, parse_timeout,
    read_source, resolve, ConfigError, FleetConfig, Pipeline, Platform, Source,
};

/// The address habd listens on when nothing else is said. 8470 is unassigned
/// by IANA and clear of bitcoind's 8332/8333 and btcd's 8334.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8470";
/// The state folder when nothing else is said (relative to the working folder).
pub const DEFAULT_STATE_DIR: &str = ".hab/state";
/// The pipelines folder when nothing else is said (relative to the working folder).
pub const DEFAULT_PIPELINES_DIR: &str = "pipelines";
/// Where build recipes live by default (one folder per recipe).
pub const DEFAULT_RECIPES_DIR: &str = "dockerfiles";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDaemon {
    listen: Option<Spanned<String>>,
    state_dir: Option<PathBuf>,
    pipelines_dir: Option<PathBuf>,
    recipes_dir: Option<PathBuf>,
    api: Option<RawApi>,
    registry: Option<RawRegistry>,
    #[serde(default)]
    builder: Vec<RawBuilder>,
    #[serde(default)]
    target: Vec<RawTarget>,
    #[serde(default)]
    fleet: Vec<super::fleets::RawFleet>,
    webhooks: Option<RawWebhooks>,
    gateway: Option<super::gateway::RawGateway>,
    signing_key_file: Option<Spanned<PathBuf>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebhooks {
    max_body_bytes: Option<Spanned<u64>>,
    settle: Option<Spanned<String>>,
}

/// How habd takes webhooks (`[webhooks]` in hab.toml).
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// Bodies larger than this are refused with 413 before anything is read
    /// into a signature check. GitHub caps its payloads at 25 MB, but a push
    /// of a release tag is a few kB; 1 MiB leaves room for pushes of many
    /// commits without letting strangers make habd buffer large bodies.
    pub max_body_bytes: u64,
    /// A sync asked for by a webhook waits this long for more of a burst
    /// (a push sends `push` and `create` at once; a release adds `release`):
    /// every delivery within it is one sync.
    pub settle: std::time::Duration,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            max_body_bytes: 1024 * 1024,
            settle: std::time::Duration::from_secs(2),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApi {
    #[serde(default)]
    tokens: Vec<String>,
    token_file: Option<Spanned<PathBuf>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRegistry {
    url: Spanned<String>,
    username: Option<String>,
    password_file: Option<PathBuf>,
    pull_host: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBuilder {
    name: String,
    endpoint: Spanned<String>,
    platforms: Vec<Spanned<String>>,
    #[serde(default)]
    emulated: Vec<Spanned<String>>,
    tls_ca: Option<PathBuf>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    name: String,
    kind: TargetKind,
    endpoint: Option<Spanned<String>>,
    namespace: Option<String>,
    tls_ca: Option<PathBuf>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
}

/// Where a fleet's nodes run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetKind {
    /// Containers on one Docker host (the embedded default).
    Docker,
    /// Pods of StatefulSets in a Kubernetes namespace.
    Kubernetes,
}

/// API access.
#[derive(Debug, Clone, Default)]
pub struct ApiConfig {
    /// Bearer tokens accepted on `/api/v1`.
    pub tokens: Vec<String>,
    /// A file of tokens, one a line (`#` comments), read at start.
    pub token_file: Option<PathBuf>,
}

/// A Docker Engine endpoint that builds images.
#[derive(Debug, Clone, Serialize)]
pub struct BuilderConfig {
    /// Name, for logs and `habctl`.
    pub name: String,
    /// `unix:///var/run/docker.sock` or `tcp://host:2376`.
    pub endpoint: String,
    /// Platforms it builds.
    pub platforms: Vec<Platform>,
    /// Of those, the ones it builds by emulation (slower: preferred last).
    pub emulated: Vec<Platform>,
    /// TLS material for tcp endpoints.
    pub tls_ca: Option<PathBuf>,
    /// Client certificate.
    pub tls_cert: Option<PathBuf>,
    /// Client key.
    pub tls_key: Option<PathBuf>,
}

/// Where fleets run.
#[derive(Debug, Clone, Serialize)]
pub struct TargetConfig {
    /// Name fleets refer to.
    pub name: String,
    /// Docker host or Kubernetes namespace.
    pub kind: TargetKind,
    /// Docker endpoint (docker kind).
    pub endpoint: Option<String>,
    /// Namespace (kubernetes kind).
    pub namespace: Option<String>,
    /// TLS material of a `tcp://` Docker endpoint: the CA that signed the
    /// engine's certificate.
    pub tls_ca: Option<PathBuf>,
    /// Client certificate.
    pub tls_cert: Option<PathBuf>,
    /// Client key.
    pub tls_key: Option<PathBuf>,
}

/// A validated `hab.toml`, with its pipelines.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from; None for the embedded defaults.
    pub source: Option<PathBuf>,
    /// HTTP listen address.
    pub listen: SocketAddr,
    /// Where the mirrors and the SQLite store live.
    pub state_dir: PathBuf,
    /// Where the pipeline files are.
    pub pipelines_dir: PathBuf,
    /// Where build recipes are (`<recipes_dir>/<recipe>/Dockerfile`).
    pub recipes_dir: PathBuf,
    /// API tokens.
    pub api: ApiConfig,
    /// The registry images are pushed to.
    pub registry: RegistryConfig,
    /// Builders.
    pub builders: Vec<BuilderConfig>,
    /// Rollout targets.
    pub targets: Vec<TargetConfig>,
    /// Fleets of nodes.
    pub fleets: Vec<FleetConfig>,
    /// Webhook intake.
    pub webhooks: WebhookConfig,
    /// The RPC front door, if configured.
    pub gateway: Option<super::gateway::GatewayConfig>,
    /// The pipelines, by name order.
    pub pipelines: Vec<Arc<Pipeline>>,
    /// habd's ed25519 signing key, when supplied; None: habd makes one in
    /// its state folder at first start ([`Config::signing_key_path`]).
    pub signing_key_file: Option<PathBuf>,
}

/// Overrides from the command line or environment, applied over the file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--listen`.
    pub listen: Option<SocketAddr>,
    /// `--state-dir`.
    pub state_dir: Option<PathBuf>,
    /// `--pipelines-dir`.
    pub pipelines_dir: Option<PathBuf>,
    /// `--recipes-dir`.
    pub recipes_dir: Option<PathBuf>,
}

impl Config {
    /// The folder of a pipeline's recipe: `recipe` names a folder under
    /// `recipes_dir`, or, when it holds a `/`, a path relative to the
    /// pipeline file.
    pub fn recipe_dir(&self, pipeline: &Pipeline) -> Option<PathBuf> {
        let recipe = &pipeline.build.as_ref()?.recipe;
        Some(if recipe.contains('/') {
            resolve(
                pipeline.source.parent().unwrap_or(Path::new(".")),
                Path::new(recipe),
            )
        } else {
            self.recipes_dir.join(recipe)
        })
    }

    /// The file of habd's signing key: the one supplied, or
    /// `<state_dir>/habd-signing.key` (made at first start).
    pub fn signing_key_path(&self) -> PathBuf {
        self.signing_key_file
            .clone()
            .unwrap_or_else(|| self.state_dir.join("habd-signing.key"))
    }

    /// The builder for a platform: one that builds it natively when there is
    /// one, else one that emulates it.
    pub fn builder_for(&self, platform: &Platform) -> Option<&BuilderConfig> {
        let builds = |b: &&BuilderConfig| b.platforms.contains(platform);
        self.builders
            .iter()
            .filter(builds)
            .find(|b| !b.emulated.contains(platform))
            .or_else(|| self.builders.iter().find(builds))
    }

    /// The embedded defaults: listen on 127.0.0.1:8470, state under `.hab/state`,
    /// pipelines from `pipelines/`, a local registry on 127.0.0.1:5000 and the
    /// local Docker engine as builder (arm64 by emulation) and as rollout target.
    pub fn embedded_defaults() -> Self {
        let local = "unix:///var/run/docker.sock".to_string();
        Config {
            source: None,
            listen: DEFAULT_LISTEN.parse().expect("valid default"),
            state_dir: DEFAULT_STATE_DIR.into(),
            pipelines_dir: DEFAULT_PIPELINES_DIR.into(),
            recipes_dir: DEFAULT_RECIPES_DIR.into(),
            api: ApiConfig::default(),
            registry: RegistryConfig {
                url: Url::parse("http://127.0.0.1:5000").expect("valid default"),
                username: None,
                password_file: None,
                pull_host: None,
                timeout: DEFAULT_REGISTRY_TIMEOUT,
            },
            builders: vec![BuilderConfig {
                name: "local".into(),
                endpoint: local.clone(),
                platforms: Platform::ALL.to_vec(),
                emulated: vec![Platform::LinuxArm64],
                tls_ca: None,
                tls_cert: None,
                tls_key: None,
            }],
            targets: vec![TargetConfig {
                name: "local".into(),
                kind: TargetKind::Docker,
                endpoint: Some(local),
                namespace: None,
                tls_ca: None,
                tls_cert: None,
                tls_key: None,
            }],
            pipelines: Vec::new(),
            signing_key_file: None,
            fleets: Vec::new(),
            webhooks: WebhookConfig::default(),
            gateway: None,
        }
    }

    /// Loads `hab.toml` (or the embedded defaults when `path` is None), applies
    /// the overrides, then loads and validates every pipeline.
    ///
    /// # Errors
    /// Every problem found, each with file, line, column and field.
    pub fn load(path: Option<&Path>, overrides: &Overrides) -> Result<Self, ConfigError> {
        let mut config = match path {
            Some(path) => Self::parse_daemon(path, &read_source(path)?)?,
            None => Self::embedded_defaults(),
        };
        if let Some(l) = overrides.listen {
            config.listen = l;
        }
        if let Some(s) = &overrides.state_dir {
            config.state_dir = s.clone();
        }
        if let Some(p) = &overrides.pipelines_dir {
            config.pipelines_dir = p.clone();
        }
        if let Some(r) = &overrides.recipes_dir {
            config.recipes_dir = r.clone();
        }
        config.pipelines = load_pipelines(&config.pipelines_dir, &config.builders)?;
        config.settle_fleets();
        config.check_fleets()?;
        Ok(config)
    }

    fn parse_daemon(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let mut src = Source::new(path, text);
        let raw: RawDaemon = match toml::from_str(text) {
            Ok(raw) => raw,
            Err(e) => {
                src.parse_error(&e);
                return Err(ConfigError {
                    diagnostics: src.diagnostics,
                });
            }
        };
        let base = path.parent().unwrap_or(Path::new("."));
        let mut config = Self::embedded_defaults();
        config.source = Some(path.to_path_buf());
        if let Some(listen) = &raw.listen {
            match listen.get_ref().parse() {
                Ok(addr) => config.listen = addr,
                Err(_) => src.error(
                    listen.span(),
                    "listen",
                    format!(
                        "{:?} is not an address and port, like \"127.0.0.1:8470\"",
                        listen.get_ref()
                    ),
                ),
            }
        }
        if let Some(dir) = &raw.state_dir {
            config.state_dir = resolve(base, dir);
        }
        if let Some(dir) = &raw.pipelines_dir {
            config.pipelines_dir = resolve(base, dir);
        }
        if let Some(dir) = &raw.recipes_dir {
            config.recipes_dir = resolve(base, dir);
        }
        if let Some(api) = raw.api {
            if let Some(file) = &api.token_file {
                let p = resolve(base, file.get_ref());
                if !p.is_file() {
                    src.error(
                        file.span(),
                        "api.token_file",
                        format!("token file {} does not exist", p.display()),
                    );
                }
                config.api.token_file = Some(p);
            }
            config.api.tokens = api.tokens;
        }
        if let Some(file) = &raw.signing_key_file {
            let p = resolve(base, file.get_ref());
            if !p.is_file() {
                src.error(
                    file.span(),
                    "signing_key_file",
                    format!("signing key {} does not exist (leave signing_key_file out and habd makes one at first start)", p.display()),
                );
            }
            config.signing_key_file = Some(p);
        }
        if let Some(reg) = raw.registry {
            match parse_http_url(reg.url.get_ref()) {
                Ok(url) => config.registry.url = url,
                Err(msg) => src.error(reg.url.span(), "registry.url", msg),
            }
            config.registry.username = reg.username;
            config.registry.password_file = reg.password_file.map(|p| resolve(base, &p));
            if let Some(h) = &reg.pull_host {
                let ok = !h.get_ref().is_empty()
                    && !h.get_ref().contains("://")
                    && !h.get_ref().contains('/');
                if ok {
                    config.registry.pull_host = Some(h.get_ref().clone());
                } else {
                    src.error(
                        h.span(),
                        "registry.pull_host",
                        format!(
                            "{:?} is not a host[:port] (like \"registry.internal:5000\")",
                            h.get_ref()
                        ),
                    );
                }
            }
            if let Some(t) = &reg.timeout {
                match parse_timeout(t.get_ref()) {
                    Ok(d) => config.registry.timeout = d,
                    Err(msg) => src.error(t.span(), "registry.timeout", msg),
                }
            }
        }
        if !raw.builder.is_empty() {
            config.builders.clear();
        }
        for (i, b) in raw.builder.into_iter().enumerate() {
            let field = |f: &str| format!("builder[{i}].{f}");
            check_endpoint(&mut src, &b.endpoint, &field("endpoint"));
            check_engine_tls(
                &mut src,
                &b.endpoint,
                [&b.tls_ca, &b.tls_cert, &b.tls_key],
                &field("endpoint"),
            );
            let platforms = parse_platforms(&mut src, &b.platforms, &field("platforms"));
            let emulated = parse_platforms(&mut src, &b.emulated, &field("emulated"));
            config.builders.push(BuilderConfig {
                name: b.name,
                endpoint: b.endpoint.into_inner(),
                platforms,
                emulated,
                tls_ca: b.tls_ca.map(|p| resolve(base, &p)),
                tls_cert: b.tls_cert.map(|p| resolve(base, &p)),
                tls_key: b.tls_key.map(|p| resolve(base, &p)),
            });
        }
        if !raw.target.is_empty() {
            config.targets.clear();
        }
        config.fleets = super::fleets::parse_fleets(&mut src, base, raw.fleet);
        if let Some(w) = raw.webhooks {
            if let Some(max) = &w.max_body_bytes {
                if *max.get_ref() < 1024 {
                    src.error(
                        max.span(),
                        "webhooks.max_body_bytes",
                        "at least 1024: a push of one tag is already a few kB",
                    );
                }
                config.webhooks.max_body_bytes = *max.get_ref();
            }
            if let Some(settle) = &w.settle {
                match parse_duration(settle.get_ref()) {
                    Ok(d) if d <= std::time::Duration::from_secs(600) => config.webhooks.settle = d,
                    Ok(_) => src.error(settle.span(), "webhooks.settle", "at most 10m"),
                    Err(msg) => src.error(settle.span(), "webhooks.settle", msg),
                }
            }
        }
        for (i, t) in raw.target.into_iter().enumerate() {
            if let Some(e) = &t.endpoint {
                let field = format!("target[{i}].endpoint");
                if t.kind == TargetKind::Docker {
                    check_endpoint(&mut src, e, &field);
                    check_engine_tls(&mut src, e, [&t.tls_ca, &t.tls_cert, &t.tls_key], &field);
                } else if !Url::parse(e.get_ref())
                    .is_ok_and(|u| matches!(u.scheme(), "http" | "https"))
                {
                    src.error(
                        e.span(),
                        &field,
                        format!(
                            "{:?} is not a Kubernetes API server URL (https://host:6443)",
                            e.get_ref()
                        ),
                    );
                }
            }
            config.targets.push(TargetConfig {
                name: t.name,
                kind: t.kind,
                endpoint: t.endpoint.map(Spanned::into_inner),
                namespace: t.namespace,
                tls_ca: t.tls_ca.map(|p| resolve(base, &p)),
                tls_cert: t.tls_cert.map(|p| resolve(base, &p)),
                tls_key: t.tls_key.map(|p| resolve(base, &p)),
            });
        }
        if let Some(g) = raw.gateway {
            config.gateway = parse_gateway(&mut src, g, &config.fleets, &config.targets);
        }
        if src.diagnostics.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError {
                diagnostics: src.diagnostics,
            })
        }
    }

    /// The pipeline of that name.
    pub fn pipeline(&self, name: &str) -> Option<&Arc<Pipeline>> {
        self.pipelines.iter().find(|p| p.name == name)
    }

    /// Reads the API tokens: those in the file and those in the token file.
    ///
    /// # Errors
    /// The token file cannot be read.
    pub fn read_tokens(&self) -> std::io::Result<Vec<String>> {
        let mut tokens = self.api.tokens.clone();
        if let Some(file) = &self.api.token_file {
            let text = std::fs::read_to_string(file)?;
            tokens.extend(
                text.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    .map(String::from),
            );
        }
        Ok(tokens)
    }
}

fn parse_http_url(s: &str) -> Result<Url, String> {
    let url = Url::parse(s).map_err(|e| {
        format!("{s:?} is not a URL ({e}); write it like \"http://127.0.0.1:5000\"")
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "{s:?}: a registry URL starts with http:// or https://"
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("{s:?} names no host"));
    }
    if url.path() != "/" && !url.path().is_empty() {
        return Err(format!(
            "{s:?}: give the registry's base URL, without a path (repositories go in each pipeline's image.repository)"
        ));
    }
    Ok(url)
}

fn check_endpoint(src: &mut Source<'_>, e: &Spanned<String>, field: &str) {
    let ok = Url::parse(e.get_ref()).is_ok_and(|u| matches!(u.scheme(), "unix" | "tcp"));
    if !ok {
        src.error(
            e.span(),
            field,
            format!(
                "{:?} is not a Docker endpoint (unix:///var/run/docker.sock or tcp://host:2376)",
                e.get_ref()
            ),
        );
    }
}

/// A Docker engine's API is root on its host and the power to change every
/// image built there: over the network hab speaks to it only with mutual
/// TLS (its CA, a client certificate and key), never in the clear. A unix
/// socket is local to the host (or the pod) and needs none.
fn check_engine_tls(
    src: &mut Source<'_>,
    e: &Spanned<String>,
    tls: [&Option<PathBuf>; 3],
    field: &str,
) {
    if !e.get_ref().starts_with("tcp://") {
        return;
    }
    let missing: Vec<&str> = ["tls_ca", "tls_cert", "tls_key"]
        .into_iter()
        .zip(tls)
        .filter(|(_, v)| v.is_none())
        .map(|(k, _)| k)
        .collect();
    if !missing.is_empty() {
        src.error(
            e.span(),
            field,
            format!(
                "{:?} is an engine API over the network, which hab speaks to only with mutual \
                 TLS: set {} (the engine's CA, hab's client certificate and key), or use a \
                 unix:// socket on the engine's own host",
                e.get_ref(),
                missing.join(", ")
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_pipeline;

    fn builder(name: &str, platforms: &[&str], emulated: &[&str]) -> BuilderConfig {
        BuilderConfig {
            name: name.into(),
            endpoint: "unix:///var/run/docker.sock".into(),
            platforms: platforms.iter().map(|p| p.parse().unwrap()).collect(),
            emulated: emulated.iter().map(|p| p.parse().unwrap()).collect(),
            tls_ca: None,
            tls_cert: None,
            tls_key: None,
        }
    }

    #[test]
    fn a_native_builder_is_preferred_to_an_emulating_one() {
        let mut c = Config::embedded_defaults();
        let arm: Platform = "linux/arm64".parse().unwrap();
        let amd: Platform = "linux/amd64".parse().unwrap();
        assert_eq!(c.builder_for(&arm).unwrap().name, "local");
        c.builders.push(builder("pi", &["linux/arm64"], &[]));
        assert_eq!(c.builder_for(&arm).unwrap().name, "pi");
        assert_eq!(c.builder_for(&amd).unwrap().name, "local");
        c.builders.remove(0);
        assert!(c.builder_for(&amd).is_none());
    }

    #[test]
    fn recipe_names_a_folder_of_recipes_dir_or_a_path() {
        let text = "implementation = \"bitcoind\"\n[upstream]\nurl = \"git://x/y\"\n\
                    [signature]\npolicy = \"none\"\n\
                    [build]\nrecipe = \"fixture\"\nplatforms = [\"linux/amd64\"]\n\
                    base_image = \"127.0.0.1:5000/hab/base:1\"\n";
        let (p, _) = parse_pipeline(Path::new("/etc/hab/pipelines/x.toml"), text, &[]).unwrap();
        let mut c = Config::embedded_defaults();
        c.recipes_dir = "/srv/recipes".into();
        assert_eq!(c.recipe_dir(&p).unwrap(), Path::new("/srv/recipes/fixture"));
        assert_eq!(
            p.build.as_ref().unwrap().base_image.as_deref(),
            Some("127.0.0.1:5000/hab/base:1")
        );
        let text = text.replace("\"fixture\"", "\"../recipes/mine\"");
        let (p, _) = parse_pipeline(Path::new("/etc/hab/pipelines/x.toml"), &text, &[]).unwrap();
        assert!(c
            .recipe_dir(&p)
            .unwrap()
            .ends_with("pipelines/../recipes/mine"));
    }

    #[test]
    fn registry_url_must_be_http_base() {
        assert!(parse_http_url("http://127.0.0.1:5000").is_ok());
        assert!(parse_http_url("127.0.0.1:5000").is_err());
        assert!(parse_http_url("ftp://x").is_err());
        assert!(parse_http_url("http://x/v2/foo").is_err());
    }
}
