//! habd: the hab daemon. Argument parsing and wiring only; the work is in the library.

use std::{net::SocketAddr, path::PathBuf, process::ExitCode, sync::Arc};

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use hab::{
    config::{Config, ConfigError, Overrides},
    server::{self, AppState},
    store::{Enqueue, QueueKind, Store},
};

/// habd mirrors upstream Bitcoin node repositories, verifies their release
/// tags against pinned OpenPGP keys, builds verified releases for amd64 and
/// arm64, publishes and verifies them in your registry, and rolls your node
/// fleets to them one node at a time. Syncs run on each pipeline's cron
/// schedule, on signed webhooks (POST /hooks/github, /hooks/gitea,
/// /hooks/generic/<pipeline>) and on `habctl sync`; all go through one queue.
/// The API is under /api/v1, the mirrors under /git/<pipeline>.
///
/// Without --config, habd runs on its embedded defaults: listen on
/// 127.0.0.1:8470, state under .hab/state, pipelines from ./pipelines.
#[derive(Parser)]
#[command(name = "habd", version, propagate_version = true)]
struct Cli {
    /// Log format.
    #[arg(long, global = true, env = "HAB_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

#[derive(clap::Args)]
struct ConfigArgs {
    /// The daemon file (hab.toml). Omit it to use the embedded defaults.
    #[arg(long, short, env = "HAB_CONFIG")]
    config: Option<PathBuf>,
    /// Where the mirrors and the SQLite store live (overrides the file).
    #[arg(long, env = "HAB_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// Folder of pipeline files, one *.toml per pipeline (overrides the file).
    #[arg(long, env = "HAB_PIPELINES_DIR")]
    pipelines_dir: Option<PathBuf>,
    /// Folder of build recipes, one sub-folder with a Dockerfile per recipe
    /// (overrides the file; default: dockerfiles).
    #[arg(long, env = "HAB_RECIPES_DIR")]
    recipes_dir: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon until SIGTERM or Ctrl-C.
    Serve {
        #[command(flatten)]
        config: ConfigArgs,
        /// Address to listen on (overrides the file).
        #[arg(long, env = "HAB_LISTEN")]
        listen: Option<SocketAddr>,
        /// Queue a sync of every pipeline at start (schedules missed while
        /// habd was down also run once at start, whatever this says).
        #[arg(long, env = "HAB_SYNC_ON_START", default_value_t = true, action = clap::ArgAction::Set)]
        sync_on_start: bool,
    },
    /// Run the RPC front door as a process of its own (`[gateway]` with
    /// `run = "apart"` in hab.toml): one JSON-RPC endpoint, in Bitcoin
    /// Core's format, before the nodes of the Kubernetes fleets it fronts.
    /// It finds them by watching their pods, looks at each itself, and
    /// sends no call to a pod habd has marked for draining, a terminating
    /// or a not-Ready one. Run as many as you like (the chart runs two):
    /// they share nothing.
    ///
    /// Example: habd gateway --config /etc/hab/hab.toml
    Gateway {
        #[command(flatten)]
        config: ConfigArgs,
        /// Address to listen on (overrides gateway.listen).
        #[arg(long, env = "HAB_GATEWAY_LISTEN")]
        listen: Option<SocketAddr>,
    },
    /// Validate hab.toml and every pipeline file, printing each problem as
    /// file:line:col: field: message. Exits 2 when there is any.
    Check {
        #[command(flatten)]
        config: ConfigArgs,
    },
}

fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("HAB_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,pgp=error"));
    // Colour only for a person at a terminal: a log file, journald or a
    // pod's log gets plain text (and NO_COLOR turns it off anywhere).
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour && matches!(format, LogFormat::Text))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

fn load(args: &ConfigArgs, listen: Option<SocketAddr>) -> Result<Config, ConfigError> {
    Config::load(
        args.config.as_deref(),
        &Overrides {
            listen,
            state_dir: args.state_dir.clone(),
            pipelines_dir: args.pipelines_dir.clone(),
            recipes_dir: args.recipes_dir.clone(),
        },
    )
}

fn source(c: &Config) -> String {
    c.source
        .as_ref()
        .map_or("the embedded defaults".into(), |p| p.display().to_string())
}

fn report(e: &ConfigError) -> ExitCode {
    for d in &e.diagnostics {
        eprintln!("{d}");
    }
    eprintln!(
        "{} problem{} found",
        e.diagnostics.len(),
        if e.diagnostics.len() == 1 { "" } else { "s" }
    );
    ExitCode::from(2)
}

/// Random bytes in a generated API token (hex: 48 characters).
const API_TOKEN_BYTES: usize = 24;

/// Reads the configured tokens; with none configured, makes one in the state
/// folder (mode 0600, once) so the embedded defaults are usable and never
/// open.
fn api_tokens(config: &Config) -> anyhow::Result<Vec<String>> {
    let tokens = config.read_tokens().context("reading api.token_file")?;
    if !tokens.is_empty() {
        return Ok(tokens);
    }
    let file = config.state_dir.join("api-token");
    let (token, generated) = hab::secrets::read_or_create(&file, API_TOKEN_BYTES)
        .context("no API token is configured, and none could be generated")?;
    if generated {
        tracing::warn!(file = %file.display(), "no API token configured: generated one (habctl --token-file {})", file.display());
    } else {
        tracing::info!(file = %file.display(), "no API token configured: using the generated one");
    }
    Ok(vec![token])
}

async fn serve(config: Config, sync_on_start: bool) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.state_dir)
        .with_context(|| format!("cannot create state folder {}", config.state_dir.display()))?;
    let store = Store::open(&config.state_dir.join("hab.sqlite3"))?;
    let interrupted = store.mark_interrupted()?;
    if interrupted > 0 {
        tracing::warn!(count = interrupted, "syncs interrupted by the last stop were recorded as such; none of their changes were applied");
    }
    let tokens = api_tokens(&config)?;
    tracing::info!(
        pipelines = config.pipelines.len(),
        state_dir = %config.state_dir.display(),
        config = %config.source.as_ref().map_or("embedded defaults".into(), |p| p.display().to_string()),
        "habd starting"
    );
    let listen = config.listen;
    let config = Arc::new(config);
    let builds_interrupted = store.mark_builds_interrupted()?;
    if builds_interrupted > 0 {
        tracing::warn!(count = builds_interrupted, "builds interrupted by the last stop were recorded as such; nothing of them was tagged or verified");
    }
    let state = AppState::new(config.clone(), store, tokens)?;
    // In the background: a builder that does not answer must not hold the
    // start. Builds that start meanwhile are running, so they are spared.
    let builds = state.builds().clone();
    tokio::spawn(async move { builds.sweep_leftovers().await });
    if sync_on_start {
        for p in &config.pipelines {
            let e = Enqueue::new(&p.name, QueueKind::Sync, "start");
            match state.queue().request(e).await {
                Ok(q) => {
                    tracing::info!(pipeline = %p.name, queue = q.item.id, "sync at start queued")
                }
                Err(e) => {
                    tracing::warn!(pipeline = %p.name, error = %e, "cannot queue the sync at start")
                }
            }
        }
    }
    server::serve(state, listen, server::shutdown_signal()).await?;
    tracing::info!("habd stopped");
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logs(cli.log_format);
    match cli.command {
        Command::Check { config } => match load(&config, None) {
            Ok(c) => {
                println!(
                    "{}: ok ({} pipeline{}: {})",
                    c.source
                        .as_ref()
                        .map_or("embedded defaults".into(), |p| p.display().to_string()),
                    c.pipelines.len(),
                    if c.pipelines.len() == 1 { "" } else { "s" },
                    c.pipelines
                        .iter()
                        .map(|p| p.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                ExitCode::SUCCESS
            }
            Err(e) => report(&e),
        },
        Command::Gateway { config, listen } => {
            let config = match load(&config, None) {
                Ok(c) => c,
                Err(e) => return report(&e),
            };
            match config.gateway.as_ref().map(|g| g.apart) {
                None => {
                    eprintln!(
                        "habd gateway: no [gateway] in {}: nothing to run",
                        source(&config)
                    );
                    return ExitCode::from(2);
                }
                Some(false) => {
                    eprintln!(
                        "habd gateway: gateway.run is \"habd\" in {}: habd serve runs this front door (set run = \"apart\" to run it alone)",
                        source(&config)
                    );
                    return ExitCode::from(2);
                }
                Some(true) => {}
            }
            let rt = match tokio::runtime::Runtime::new() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("habd: cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let run =
                hab::rollout::door::run_apart(Arc::new(config), listen, server::shutdown_signal());
            match rt.block_on(run) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("habd gateway: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Serve {
            config,
            listen,
            sync_on_start,
        } => {
            let config = match load(&config, listen) {
                Ok(c) => c,
                Err(e) => return report(&e),
            };
            // Before any thread exists: libgit2's socket timeouts are
            // process-wide. The longest pipeline timeout, so that no fetch
            // is cut short of its own; each sync watches its own timeout.
            let socket_timeout = config
                .pipelines
                .iter()
                .map(|p| p.upstream_timeout)
                .max()
                .unwrap_or(hab::config::DEFAULT_UPSTREAM_TIMEOUT);
            if let Err(e) = hab::mirror::set_socket_timeouts(socket_timeout) {
                eprintln!("habd: cannot set libgit2's socket timeouts: {e}");
                return ExitCode::FAILURE;
            }
            let rt = match tokio::runtime::Runtime::new() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("habd: cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match rt.block_on(serve(config, sync_on_start)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("habd: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
