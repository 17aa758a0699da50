//! Configuration: the daemon file `hab.toml` and one file per pipeline.
//!
//! Files are TOML, read into raw structs with `deny_unknown_fields`, then
//! validated into domain types (a socket address, a glob set, a cron schedule,
//! a platform, a loaded keyring). Every problem becomes a [`Diagnostic`] that
//! names the file, line, column and field, and all of them are reported at
//! once, so an operator fixes a config in one pass.

use std::{
    collections::BTreeMap,
    fmt,
    net::SocketAddr,
    ops::Range,
    path::{Path, PathBuf},
    str::FromStr,
    sync::Arc,
};

use croner::{
    parser::{CronParser, Seconds},
    Cron,
};
use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};
use serde::{Deserialize, Serialize};
use toml::Spanned;
use url::Url;

use crate::verify::Keyring;

mod fleets;

pub use fleets::{parse_duration, FleetConfig, Gates, MAX_DURATION};

/// The address habd listens on when nothing else is said. 8470 is unassigned
/// by IANA and clear of bitcoind's 8332/8333 and btcd's 8334.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8470";
/// The state folder when nothing else is said (relative to the working folder).
pub const DEFAULT_STATE_DIR: &str = ".hab/state";
/// The pipelines folder when nothing else is said (relative to the working folder).
pub const DEFAULT_PIPELINES_DIR: &str = "pipelines";
/// Where build recipes live by default (one folder per recipe).
pub const DEFAULT_RECIPES_DIR: &str = "dockerfiles";
/// The platforms hab builds for.
pub const PLATFORMS: &[&str] = &["linux/amd64", "linux/arm64"];

/// One configuration problem, located in its file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// The file the problem is in.
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub col: usize,
    /// Dotted path of the field (`refs.track`, `builder[0].platforms`).
    pub field: String,
    /// What is wrong, and where it helps, how to fix it.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}: {}",
            self.file.display(),
            self.line,
            self.col,
            self.field,
            self.message
        )
    }
}

/// Every problem found in a configuration.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}", self.diagnostics.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
pub struct ConfigError {
    /// The problems, in file order.
    pub diagnostics: Vec<Diagnostic>,
}

/// A source file being validated: its text, for turning byte offsets into
/// lines and columns, and the problems found so far.
struct Source<'a> {
    path: &'a Path,
    text: &'a str,
    diagnostics: Vec<Diagnostic>,
}

impl<'a> Source<'a> {
    fn new(path: &'a Path, text: &'a str) -> Self {
        Source {
            path,
            text,
            diagnostics: Vec::new(),
        }
    }

    fn position(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let col = before.rfind('\n').map_or(offset, |nl| offset - nl - 1) + 1;
        (line, col)
    }

    fn error(&mut self, span: Range<usize>, field: impl Into<String>, message: impl Into<String>) {
        let (line, col) = self.position(span.start);
        self.diagnostics.push(Diagnostic {
            file: self.path.to_path_buf(),
            line,
            col,
            field: field.into(),
            message: message.into(),
        });
    }

    /// The dotted path of the table that encloses `offset`: the last `[header]`
    /// or `[[header]]` line before it.
    fn table_at(&self, offset: usize) -> String {
        let before = &self.text[..offset.min(self.text.len())];
        before
            .lines()
            .rev()
            .map(str::trim)
            .find(|l| l.starts_with('['))
            .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_string())
            .unwrap_or_default()
    }

    /// Turns a TOML/serde error into a diagnostic with the best field path we can give.
    fn parse_error(&mut self, err: &toml::de::Error) {
        let span = err.span().unwrap_or(0..0);
        let message = err.message().trim().to_string();
        let named = ["unknown field `", "missing field `", "unknown variant `"]
            .iter()
            .find_map(|p| message.split_once(p))
            .and_then(|(_, rest)| rest.split_once('`'))
            .map(|(name, _)| name.to_string());
        let table = self.table_at(span.start);
        let key_on_line = {
            let line_start = self.text[..span.start.min(self.text.len())]
                .rfind('\n')
                .map_or(0, |i| i + 1);
            let line = self.text[line_start..].lines().next().unwrap_or("");
            line.split_once('=')
                .map(|(k, _)| k.trim().trim_matches('"').to_string())
        };
        let leaf = if message.starts_with("unknown variant") {
            key_on_line
        } else {
            named.or(key_on_line)
        };
        let field = match (table.is_empty(), leaf) {
            (_, None) if table.is_empty() => "(file)".to_string(),
            (_, None) => table,
            (true, Some(leaf)) => leaf,
            (false, Some(leaf)) => format!("{table}.{leaf}"),
        };
        self.error(span, field, message);
    }
}

fn read_source(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|e| ConfigError {
        diagnostics: vec![Diagnostic {
            file: path.to_path_buf(),
            line: 1,
            col: 1,
            field: "(file)".into(),
            message: format!("cannot read: {e}"),
        }],
    })
}

fn resolve(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

// ----------------------------------------------------------------------------
// Daemon file

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
    fleet: Vec<fleets::RawFleet>,
    webhooks: Option<RawWebhooks>,
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

/// The cluster's own OCI registry.
#[derive(Debug, Clone, Serialize)]
pub struct RegistryConfig {
    /// Base URL (`http://127.0.0.1:5000`).
    pub url: Url,
    /// User for basic auth, if the registry wants it.
    pub username: Option<String>,
    /// File holding the password.
    pub password_file: Option<PathBuf>,
    /// `host[:port]` nodes pull images from, when not the URL's (in a
    /// cluster: the address kubelets reach the registry at).
    pub pull_host: Option<String>,
    /// The longest any registry request may wait for the registry to
    /// answer or to send more (connect, and each read). Not a bound on a
    /// whole transfer: a large layer that keeps arriving is never cut.
    #[serde(with = "fleets::secs")]
    pub timeout: std::time::Duration,
}

/// The registry's default `timeout`: a registry in the cluster answers in
/// milliseconds; one that says nothing for a minute is not coming back, and
/// a minute still covers a garbage-collecting registry's pauses.
pub const DEFAULT_REGISTRY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// A pipeline's default `[upstream] timeout`: how long a fetch may go
/// without receiving anything. A first fetch of Bitcoin Core takes minutes,
/// but never minutes of silence; five leave room for a slow forge.
pub const DEFAULT_UPSTREAM_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

impl RegistryConfig {
    /// The registry's `host:port`, as image references name it.
    pub fn host(&self) -> String {
        match self.url.port() {
            Some(port) => format!("{}:{port}", self.url.host_str().unwrap_or("localhost")),
            None => self.url.host_str().unwrap_or("localhost").to_string(),
        }
    }

    /// User and password for basic auth, when a user is configured.
    ///
    /// # Errors
    /// The password file cannot be read.
    pub fn credentials(&self) -> std::io::Result<Option<(String, String)>> {
        let Some(user) = &self.username else {
            return Ok(None);
        };
        let password = match &self.password_file {
            Some(f) => std::fs::read_to_string(f)
                .map_err(|e| {
                    std::io::Error::new(
                        e.kind(),
                        format!("registry password file {}: {e}", f.display()),
                    )
                })?
                .trim_end_matches(['\r', '\n'])
                .to_string(),
            None => String::new(),
        };
        Ok(Some((user.clone(), password)))
    }
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
    /// The pipelines, by name order.
    pub pipelines: Vec<Arc<Pipeline>>,
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

/// A build platform (`linux/amd64`, `linux/arm64`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Platform(String);

impl Platform {
    /// The platform string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Platform {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if PLATFORMS.contains(&s) {
            Ok(Platform(s.to_string()))
        } else {
            Err(format!(
                "unknown platform {s:?}; hab builds {}",
                PLATFORMS.join(", ")
            ))
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
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
                platforms: PLATFORMS.iter().map(|p| Platform(p.to_string())).collect(),
                emulated: vec![Platform("linux/arm64".into())],
                tls_ca: None,
                tls_cert: None,
                tls_key: None,
            }],
            targets: vec![TargetConfig {
                name: "local".into(),
                kind: TargetKind::Docker,
                endpoint: Some(local),
                namespace: None,
            }],
            pipelines: Vec::new(),
            fleets: Vec::new(),
            webhooks: WebhookConfig::default(),
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
        config.fleets = fleets::parse_fleets(&mut src, base, raw.fleet);
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
                match fleets::parse_duration(settle.get_ref()) {
                    Ok(d) if d <= std::time::Duration::from_secs(600) => config.webhooks.settle = d,
                    Ok(_) => src.error(settle.span(), "webhooks.settle", "at most 10m"),
                    Err(msg) => src.error(settle.span(), "webhooks.settle", msg),
                }
            }
        }
        for (i, t) in raw.target.into_iter().enumerate() {
            if let Some(e) = &t.endpoint {
                check_endpoint(&mut src, e, &format!("target[{i}].endpoint"));
            }
            config.targets.push(TargetConfig {
                name: t.name,
                kind: t.kind,
                endpoint: t.endpoint.map(Spanned::into_inner),
                namespace: t.namespace,
            });
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
    let ok = Url::parse(e.get_ref())
        .is_ok_and(|u| matches!(u.scheme(), "unix" | "tcp" | "http" | "https"));
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

fn parse_platforms(src: &mut Source<'_>, list: &[Spanned<String>], field: &str) -> Vec<Platform> {
    list.iter()
        .filter_map(|p| match p.get_ref().parse::<Platform>() {
            Ok(p) => Some(p),
            Err(msg) => {
                src.error(p.span(), field, msg);
                None
            }
        })
        .collect()
}

// ----------------------------------------------------------------------------
// Pipelines

/// The Bitcoin implementation a pipeline builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Implementation {
    /// Bitcoin Core.
    Bitcoind,
    /// btcd (Go).
    Btcd,
    /// bcoin (Node.js).
    Bcoin,
}

/// What a ref must carry before anything is built from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SignaturePolicy {
    /// An annotated tag (or, for a branch, its head commit) signed by a key
    /// of the keyring, valid when it signed.
    Signed,
    /// Nothing is checked (development only: the verdicts are still shown).
    None,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPipeline {
    name: Option<Spanned<String>>,
    implementation: Implementation,
    upstream: RawUpstream,
    #[serde(default)]
    refs: RawRefs,
    signature: RawSignature,
    build: Option<RawBuild>,
    image: Option<RawImage>,
    #[serde(default)]
    schedule: RawSchedule,
    #[serde(default)]
    channel: Vec<RawChannel>,
    webhook: Option<RawWebhook>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebhook {
    secret_file: Spanned<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUpstream {
    url: Spanned<String>,
    timeout: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRefs {
    track: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    ignore: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSignature {
    policy: SignaturePolicy,
    keyring: Option<Spanned<PathBuf>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBuild {
    recipe: String,
    platforms: Vec<Spanned<String>>,
    #[serde(default)]
    args: BTreeMap<String, String>,
    #[serde(default)]
    smoke: Vec<String>,
    base_image: Option<String>,
    #[serde(default)]
    auto: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawImage {
    repository: Spanned<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSchedule {
    sync: Option<Spanned<String>>,
    rebuild: Option<Spanned<String>>,
    timezone: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawChannel {
    name: String,
    #[serde(default)]
    auto: bool,
}

/// Which refs of the upstream a pipeline follows.
#[derive(Debug, Clone)]
pub struct RefFilter {
    /// Globs over full ref names (`refs/tags/v*`), as written.
    pub track: Vec<String>,
    /// Globs of refs to leave alone even if tracked (`refs/tags/*rc*`).
    pub ignore: Vec<String>,
    track_set: GlobSet,
    ignore_set: GlobSet,
}

impl RefFilter {
    /// Builds a filter. `*` does not cross `/`.
    ///
    /// # Errors
    /// The first glob that does not parse, with its index and the reason.
    pub fn new(track: &[String], ignore: &[String]) -> Result<Self, (bool, usize, String)> {
        fn set(globs: &[String], is_track: bool) -> Result<GlobSet, (bool, usize, String)> {
            let mut b = GlobSetBuilder::new();
            for (i, g) in globs.iter().enumerate() {
                b.add(compile_glob(g).map_err(|e| (is_track, i, e))?);
            }
            b.build().map_err(|e| (is_track, 0, e.to_string()))
        }
        Ok(RefFilter {
            track_set: set(track, true)?,
            ignore_set: set(ignore, false)?,
            track: track.to_vec(),
            ignore: ignore.to_vec(),
        })
    }

    /// True when the ref is tracked and not ignored.
    pub fn tracks(&self, refname: &str) -> bool {
        self.track_set.is_match(refname) && !self.ignore_set.is_match(refname)
    }
}

fn compile_glob(g: &str) -> Result<Glob, String> {
    if !g.starts_with("refs/") {
        return Err(format!(
            "{g:?} must match full ref names, like \"refs/tags/v*\""
        ));
    }
    GlobBuilder::new(g)
        .literal_separator(true)
        .build()
        .map_err(|e| format!("bad glob {g:?}: {}", e.kind()))
}

/// A validated cron schedule (5 fields, minute granularity).
#[derive(Clone)]
pub struct Schedule {
    /// As written.
    pub expression: String,
    /// Parsed.
    pub cron: Cron,
}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Schedule({:?})", self.expression)
    }
}

impl FromStr for Schedule {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.split_whitespace().count() != 5 && !s.trim_start().starts_with('@') {
            return Err(format!(
                "{s:?} is not a 5-field cron expression (minute hour day-of-month month day-of-week, as in a Kubernetes CronJob)"
            ));
        }
        let parser = CronParser::builder().seconds(Seconds::Disallowed).build();
        let cron = parser
            .parse(s)
            .map_err(|e| format!("bad cron expression {s:?}: {e}"))?;
        Ok(Schedule {
            expression: s.to_string(),
            cron,
        })
    }
}

/// The build recipe of a pipeline (used by the build stage).
#[derive(Debug, Clone, Serialize)]
pub struct BuildRecipe {
    /// Folder under `dockerfiles/`.
    pub recipe: String,
    /// Platforms to build.
    pub platforms: Vec<Platform>,
    /// Extra build arguments.
    pub args: BTreeMap<String, String>,
    /// Smoke command run once per platform.
    pub smoke: Vec<String>,
    /// A base image in a registry (`host/repo:tag` or `@sha256:…`), resolved
    /// per platform to a digest that enters the build key and is passed as
    /// the `BASE_IMAGE` build argument. None: the recipe makes its own base.
    pub base_image: Option<String>,
    /// Build each new verified ref a sync finds (on a pipeline's first sync,
    /// only the newest). Off by default: a Bitcoin Core build is an hour of
    /// CPU per platform, so building by itself is something you opt into.
    pub auto: bool,
}

/// A release channel of a pipeline.
#[derive(Debug, Clone, Serialize)]
pub struct Channel {
    /// Name (`edge`, `stable`).
    pub name: String,
    /// Advances by itself when a build verifies.
    pub auto: bool,
}

/// A validated pipeline.
#[derive(Debug, Clone)]
pub struct Pipeline {
    /// Unique name (the file stem unless `name` says otherwise).
    pub name: String,
    /// The file it came from.
    pub source: PathBuf,
    /// Which implementation it builds.
    pub implementation: Implementation,
    /// Upstream git URL.
    pub upstream: String,
    /// How long a fetch from upstream may go without receiving anything
    /// (`[upstream] timeout`) before the sync gives up on it.
    pub upstream_timeout: std::time::Duration,
    /// Tracked refs.
    pub refs: RefFilter,
    /// Signature policy.
    pub policy: SignaturePolicy,
    /// Path of the pinned keyring (file or folder).
    pub keyring_path: Option<PathBuf>,
    /// The loaded keyring.
    pub keyring: Option<Arc<Keyring>>,
    /// Build recipe.
    pub build: Option<BuildRecipe>,
    /// Image repository in the registry.
    pub image_repository: Option<String>,
    /// When to sync.
    pub sync_schedule: Option<Schedule>,
    /// When to rebuild.
    pub rebuild_schedule: Option<Schedule>,
    /// Time zone of the schedules.
    pub timezone: chrono_tz::Tz,
    /// Channels.
    pub channels: Vec<Channel>,
    /// The secret webhooks for this pipeline are signed with (HMAC-SHA256).
    /// None: webhooks cannot trigger it.
    pub webhook_secret: Option<Secret>,
}

/// A secret read from a file; never printed.
#[derive(Clone)]
pub struct Secret(Arc<Vec<u8>>);

impl Secret {
    /// A secret of these bytes.
    pub fn new(bytes: Vec<u8>) -> Self {
        Secret(Arc::new(bytes))
    }

    /// The bytes.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// Loads every `*.toml` in the pipelines folder.
///
/// # Errors
/// Every problem in every file, and duplicate names across files.
pub fn load_pipelines(
    dir: &Path,
    builders: &[BuilderConfig],
) -> Result<Vec<Arc<Pipeline>>, ConfigError> {
    let entries = std::fs::read_dir(dir).map_err(|e| ConfigError {
        diagnostics: vec![Diagnostic {
            file: dir.to_path_buf(),
            line: 1,
            col: 1,
            field: "pipelines_dir".into(),
            message: format!("cannot read the pipelines folder: {e}"),
        }],
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    let mut diagnostics = Vec::new();
    let mut pipelines: Vec<(Pipeline, Diagnostic)> = Vec::new();
    for file in files {
        let text = match read_source(&file) {
            Ok(t) => t,
            Err(e) => {
                diagnostics.extend(e.diagnostics);
                continue;
            }
        };
        match parse_pipeline(&file, &text, builders) {
            Ok((p, name_at)) => {
                if let Some((first, _)) = pipelines.iter().find(|(q, _)| q.name == p.name) {
                    diagnostics.push(Diagnostic {
                        message: format!(
                            "duplicate pipeline name {:?}: {} already uses it",
                            p.name,
                            first.source.display()
                        ),
                        ..name_at.clone()
                    });
                }
                pipelines.push((p, name_at));
            }
            Err(e) => diagnostics.extend(e.diagnostics),
        }
    }
    if !diagnostics.is_empty() {
        return Err(ConfigError { diagnostics });
    }
    let mut out: Vec<Arc<Pipeline>> = pipelines.into_iter().map(|(p, _)| Arc::new(p)).collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
}

/// Parses one pipeline file. Returns the pipeline and where its name is.
///
/// # Errors
/// Every problem found in the file.
pub fn parse_pipeline(
    path: &Path,
    text: &str,
    builders: &[BuilderConfig],
) -> Result<(Pipeline, Diagnostic), ConfigError> {
    let mut src = Source::new(path, text);
    let raw: RawPipeline = match toml::from_str(text) {
        Ok(raw) => raw,
        Err(e) => {
            src.parse_error(&e);
            return Err(ConfigError {
                diagnostics: src.diagnostics,
            });
        }
    };
    let base = path.parent().unwrap_or(Path::new("."));
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("")
        .to_string();
    let (name, name_span) = match &raw.name {
        Some(n) => (n.get_ref().clone(), n.span()),
        None => (stem, 0..0),
    };
    if !valid_name(&name) {
        src.error(
            name_span.clone(),
            "name",
            format!("{name:?} is not a valid pipeline name (lower-case letters, digits and '-', at most 63)"),
        );
    }
    let (line, col) = src.position(name_span.start);
    let name_at = Diagnostic {
        file: path.to_path_buf(),
        line,
        col,
        field: "name".into(),
        message: String::new(),
    };

    let url = raw.upstream.url.get_ref();
    let url_ok = Url::parse(url)
        .is_ok_and(|u| matches!(u.scheme(), "https" | "http" | "git" | "ssh" | "file"));
    if !url_ok {
        src.error(
            raw.upstream.url.span(),
            "upstream.url",
            format!("{url:?} is not a git URL (https://, http://, git://, ssh:// or file://)"),
        );
    }

    let upstream_timeout = match &raw.upstream.timeout {
        None => DEFAULT_UPSTREAM_TIMEOUT,
        Some(t) => parse_timeout(t.get_ref()).unwrap_or_else(|msg| {
            src.error(t.span(), "upstream.timeout", msg);
            DEFAULT_UPSTREAM_TIMEOUT
        }),
    };

    let track: Vec<Spanned<String>> = raw
        .refs
        .track
        .unwrap_or_else(|| vec![Spanned::new(0..0, "refs/tags/v*".to_string())]);
    let mut globs_ok = true;
    for (field, list) in [("refs.track", &track), ("refs.ignore", &raw.refs.ignore)] {
        for g in list {
            if let Err(msg) = compile_glob(g.get_ref()) {
                src.error(g.span(), field, msg);
                globs_ok = false;
            }
        }
    }
    let strings = |l: &[Spanned<String>]| l.iter().map(|s| s.get_ref().clone()).collect::<Vec<_>>();
    let refs = if globs_ok {
        RefFilter::new(&strings(&track), &strings(&raw.refs.ignore)).ok()
    } else {
        None
    };

    let mut keyring = None;
    let mut keyring_path = None;
    match (&raw.signature.keyring, raw.signature.policy) {
        (None, SignaturePolicy::Signed) => src.error(
            0..0,
            "signature.keyring",
            "policy \"signed\" needs a keyring: the file or folder of the public keys you pin",
        ),
        (Some(k), _) => {
            let p = resolve(base, k.get_ref());
            if !p.exists() {
                src.error(
                    k.span(),
                    "signature.keyring",
                    format!("keyring {} does not exist", p.display()),
                );
            } else {
                match Keyring::load(&p) {
                    Ok(ring) => keyring = Some(Arc::new(ring)),
                    Err(e) => src.error(k.span(), "signature.keyring", e.to_string()),
                }
            }
            keyring_path = Some(p);
        }
        (None, SignaturePolicy::None) => {}
    }

    let build = raw.build.map(|b| {
        let platforms = parse_platforms(&mut src, &b.platforms, "build.platforms");
        if !builders.is_empty() {
            for p in b.platforms.iter() {
                let covered = builders
                    .iter()
                    .any(|bl| bl.platforms.iter().any(|q| q.as_str() == p.get_ref()));
                if PLATFORMS.contains(&p.get_ref().as_str()) && !covered {
                    src.error(
                        p.span(),
                        "build.platforms",
                        format!("no [[builder]] in hab.toml builds {}", p.get_ref()),
                    );
                }
            }
        }
        BuildRecipe {
            recipe: b.recipe,
            platforms,
            args: b.args,
            smoke: b.smoke,
            base_image: b.base_image,
            auto: b.auto,
        }
    });

    let image_repository = raw.image.map(|i| {
        let r = i.repository.get_ref();
        let ok = !r.is_empty()
            && r.split('/').all(|c| {
                !c.is_empty()
                    && c.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b)
                    })
            });
        if !ok {
            src.error(
                i.repository.span(),
                "image.repository",
                format!("{r:?} is not a repository name (lower-case path like \"hab/bitcoind\")"),
            );
        }
        r.clone()
    });

    let mut schedule = |s: &Option<Spanned<String>>, field: &str| -> Option<Schedule> {
        let s = s.as_ref()?;
        match s.get_ref().parse::<Schedule>() {
            Ok(sch) => Some(sch),
            Err(msg) => {
                src.error(s.span(), field, msg);
                None
            }
        }
    };
    let sync_schedule = schedule(&raw.schedule.sync, "schedule.sync");
    let rebuild_schedule = schedule(&raw.schedule.rebuild, "schedule.rebuild");
    let timezone = match &raw.schedule.timezone {
        None => chrono_tz::UTC,
        Some(tz) => match tz.get_ref().parse::<chrono_tz::Tz>() {
            Ok(tz) => tz,
            Err(_) => {
                src.error(
                    tz.span(),
                    "schedule.timezone",
                    format!(
                        "{:?} is not an IANA time zone (like \"UTC\" or \"Europe/Zurich\")",
                        tz.get_ref()
                    ),
                );
                chrono_tz::UTC
            }
        },
    };

    let webhook_secret = raw.webhook.as_ref().and_then(|w| {
        let p = resolve(base, w.secret_file.get_ref());
        match std::fs::read(&p) {
            Ok(bytes) => {
                // Files written with `echo` end in a newline the sender's
                // configuration does not have.
                let trimmed = bytes.trim_ascii_end().to_vec();
                if trimmed.len() < 16 {
                    src.error(
                        w.secret_file.span(),
                        "webhook.secret_file",
                        format!(
                            "{} holds {} bytes; a webhook secret needs at least 16 (try: openssl rand -hex 32)",
                            p.display(),
                            trimmed.len()
                        ),
                    );
                    None
                } else {
                    Some(Secret::new(trimmed))
                }
            }
            Err(e) => {
                src.error(
                    w.secret_file.span(),
                    "webhook.secret_file",
                    format!("cannot read {}: {e}", p.display()),
                );
                None
            }
        }
    });

    let mut channels: Vec<Channel> = Vec::new();
    for (i, c) in raw.channel.into_iter().enumerate() {
        if !valid_name(&c.name) || channels.iter().any(|d| d.name == c.name) {
            src.error(
                0..0,
                format!("channel[{i}].name"),
                format!("{:?} is not a valid, unique channel name", c.name),
            );
        }
        channels.push(Channel {
            name: c.name,
            auto: c.auto,
        });
    }

    if !src.diagnostics.is_empty() {
        return Err(ConfigError {
            diagnostics: src.diagnostics,
        });
    }
    let pipeline = Pipeline {
        name,
        source: path.to_path_buf(),
        implementation: raw.implementation,
        upstream: url.clone(),
        upstream_timeout,
        refs: refs.expect("globs validated above"),
        policy: raw.signature.policy,
        keyring_path,
        keyring,
        build,
        image_repository,
        sync_schedule,
        rebuild_schedule,
        timezone,
        channels,
        webhook_secret,
    };
    Ok((pipeline, name_at))
}

/// A timeout for talking to an outside system: a duration from 1s to 1h.
/// Shorter would cut off healthy peers on a busy link; longer is no bound.
fn parse_timeout(s: &str) -> Result<std::time::Duration, String> {
    let d = fleets::parse_duration(s)?;
    if d < std::time::Duration::from_secs(1) || d > std::time::Duration::from_secs(3600) {
        return Err(format!("{s:?}: between 1s and 1h"));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ref_filter_tracks_and_ignores() {
        let f = RefFilter::new(
            &["refs/tags/v*".into(), "refs/heads/master".into()],
            &["refs/tags/*rc*".into()],
        )
        .unwrap();
        assert!(f.tracks("refs/tags/v27.0"));
        assert!(!f.tracks("refs/tags/v27.0rc1"));
        assert!(f.tracks("refs/heads/master"));
        assert!(!f.tracks("refs/heads/feature"));
        assert!(!f.tracks("refs/tags/v1/nested"), "* must not cross /");
    }

    #[test]
    fn schedules_take_five_fields() {
        assert!("*/15 * * * *".parse::<Schedule>().is_ok());
        assert!("0 */15 * * * *".parse::<Schedule>().is_err());
        assert!("61 * * * *".parse::<Schedule>().is_err());
    }

    #[test]
    fn positions_are_one_based() {
        let src = Source::new(Path::new("x"), "a = 1\nbb = 2\n");
        assert_eq!(src.position(0), (1, 1));
        assert_eq!(src.position(6), (2, 1));
        assert_eq!(src.position(9), (2, 4));
    }

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
