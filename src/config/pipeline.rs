//! A pipeline file (one per pipeline, in the pipelines folder): the
//! upstream and the refs it follows, the signature policy, the build
//! recipe, the image repository, schedules, channels and the webhook secret.

use std::{
    collections::BTreeMap,
    fmt,
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

use super::{
    parse_platforms, parse_timeout, read_source, resolve, BuilderConfig, ConfigError, Diagnostic,
    Platform, Source,
};
use crate::signature::Keyring;

/// A pipeline's default `[upstream] timeout`: how long a fetch may go
/// without receiving anything. A first fetch of Bitcoin Core takes minutes,
/// but never minutes of silence; five leave room for a slow forge.
pub const DEFAULT_UPSTREAM_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

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
    /// hab itself (`pipelines/hab.toml`): built and published like a
    /// node's images, but no fleet runs it.
    Hab,
}

impl Implementation {
    /// Whether fleets of Bitcoin nodes can run it.
    pub fn is_node(self) -> bool {
        !matches!(self, Implementation::Hab)
    }

    /// Its name as configured: `bitcoind`, `btcd`, `bcoin`, `hab`.
    pub fn as_str(self) -> &'static str {
        match self {
            Implementation::Bitcoind => "bitcoind",
            Implementation::Btcd => "btcd",
            Implementation::Bcoin => "bcoin",
            Implementation::Hab => "hab",
        }
    }
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
                // An unknown platform is already reported by parse_platforms.
                let Ok(platform) = p.get_ref().parse::<Platform>() else {
                    continue;
                };
                if !builders.iter().any(|bl| bl.platforms.contains(&platform)) {
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
    fn an_implementation_is_named_as_configured() {
        use Implementation::*;
        for i in [Bitcoind, Btcd, Bcoin, Hab] {
            assert_eq!(serde_json::to_value(i).unwrap(), i.as_str());
        }
    }

    #[test]
    fn schedules_take_five_fields() {
        assert!("*/15 * * * *".parse::<Schedule>().is_ok());
        assert!("0 */15 * * * *".parse::<Schedule>().is_err());
        assert!("61 * * * *".parse::<Schedule>().is_err());
    }
}
