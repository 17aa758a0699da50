//! habctl: the operator's command line. Talks only to habd's API.

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand, ValueEnum};
use hab::{
    client::{Client, ClientError},
    server::{PipelineView, RefView},
    sync::SyncReport,
};
use serde_json::{json, Value};

/// habctl shows where each upstream release of your Bitcoin nodes stands, and
/// drives habd.
///
/// Examples:
///   habctl pipelines                   what habd follows, and how each last synced
///   habctl sync bitcoind               fetch upstream now and verify new tags
///   habctl refs bitcoind               every tracked ref: commit, verdict, signer
///   habctl ack bitcoind v27.0          accept a tag that upstream moved
///   habctl status -o json              everything, for scripts
#[derive(Parser)]
#[command(name = "habctl", version, verbatim_doc_comment)]
struct Cli {
    /// habd's address.
    #[arg(
        long,
        global = true,
        env = "HAB_SERVER",
        default_value = "http://127.0.0.1:8470"
    )]
    server: String,
    /// API token.
    #[arg(long, global = true, env = "HAB_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// File holding the API token (habd writes .hab/state/api-token when none is configured).
    #[arg(long, global = true, env = "HAB_TOKEN_FILE", conflicts_with = "token")]
    token_file: Option<PathBuf>,
    /// Output format.
    #[arg(long, short, global = true, env = "HAB_OUTPUT", value_enum, default_value_t = Output::Table)]
    output: Output,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    /// Aligned columns for people.
    Table,
    /// The API's JSON, for scripts.
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// List pipelines: upstream, policy, refs by verdict, last sync.
    Pipelines,
    /// Sync a pipeline now: fetch upstream, verify new and moved tags.
    /// Joins a sync of it already running rather than starting another.
    Sync {
        /// Pipeline name.
        pipeline: String,
    },
    /// List a pipeline's tracked refs with commit, verdict and signer.
    Refs {
        /// Pipeline name.
        pipeline: String,
    },
    /// Acknowledge a tag that moved upstream, so it may be built again once verified.
    Ack {
        /// Pipeline name.
        pipeline: String,
        /// Tag name (v27.0) or full ref (refs/tags/v27.0).
        r#ref: String,
        /// Who acknowledges (recorded).
        #[arg(long, env = "USER", default_value = "habctl")]
        by: String,
    },
    /// habd's state at a glance.
    Status,
}

fn short(oid: &str) -> &str {
    oid.get(..12).unwrap_or(oid)
}

fn table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = vec![line(headers.iter().map(|h| h.to_string()).collect())];
    out.extend(rows.into_iter().map(line));
    out.join("\n")
}

fn print_pipelines(views: &[PipelineView]) {
    let rows = views
        .iter()
        .map(|p| {
            let refs = if p.refs.is_empty() {
                "-".into()
            } else {
                p.refs
                    .iter()
                    .map(|(k, v)| format!("{v} {k}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let last = p.last_sync.as_ref().map_or("never".into(), |s| {
                format!(
                    "{} {}",
                    s.status,
                    s.finished_at
                        .unwrap_or(s.started_at)
                        .format("%Y-%m-%d %H:%M:%SZ")
                )
            });
            vec![
                p.name.clone(),
                p.upstream.clone(),
                p.policy.clone(),
                refs,
                last,
            ]
        })
        .collect();
    println!(
        "{}",
        table(
            &["PIPELINE", "UPSTREAM", "POLICY", "REFS", "LAST SYNC",],
            rows
        )
    );
}

fn print_refs(refs: &[RefView]) {
    if refs.is_empty() {
        println!("no tracked refs yet (run habctl sync)");
        return;
    }
    let rows = refs
        .iter()
        .map(|r| {
            let s = &r.stored;
            let name = s
                .name
                .strip_prefix("refs/tags/")
                .unwrap_or(&s.name)
                .to_string();
            vec![
                name,
                short(&s.commit).to_string(),
                s.state.as_str().to_string(),
                s.verdict.kind().to_string(),
                s.verdict.signer().unwrap_or("-").to_string(),
                if r.buildable {
                    "yes".into()
                } else {
                    "no".into()
                },
            ]
        })
        .collect();
    println!(
        "{}",
        table(
            &["REF", "COMMIT", "STATE", "VERDICT", "SIGNER", "BUILDABLE"],
            rows
        )
    );
    for r in refs.iter().filter(|r| !r.buildable) {
        if let Some(why) = &r.refusal {
            println!("  {}: {why}", r.stored.name);
        }
    }
}

fn print_sync(r: &SyncReport) {
    let s = &r.sync;
    println!(
        "sync {} of {}: {}{} — {} added, {} moved, {} deleted; {} objects ({} bytes) received",
        s.id,
        s.pipeline,
        s.status,
        if r.joined {
            " (joined a sync already running)"
        } else {
            ""
        },
        s.added,
        s.moved,
        s.deleted,
        s.objects_received,
        s.bytes_received
    );
    for c in &r.changes {
        println!(
            "  {:<9} {}  {}{}",
            format!("{:?}", c.change).to_lowercase(),
            c.name,
            c.verdict.as_deref().unwrap_or("-"),
            c.signer
                .as_ref()
                .map(|s| format!(" by {s}"))
                .unwrap_or_default()
        );
    }
}

async fn run(cli: Cli) -> Result<(), ClientError> {
    let token = match (&cli.token, &cli.token_file) {
        (Some(t), _) => Some(t.clone()),
        (None, Some(f)) => Some(
            std::fs::read_to_string(f)
                .map_err(|e| {
                    ClientError::Decode(format!("cannot read token file {}: {e}", f.display()))
                })?
                .trim()
                .to_string(),
        ),
        (None, None) => None,
    };
    let client = Client::new(&cli.server, token);
    let json_out = cli.output == Output::Json;
    let print_json =
        |v: &Value| println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
    match cli.command {
        Command::Pipelines => {
            let v: Vec<PipelineView> = client.get("/pipelines").await?;
            if json_out {
                print_json(&json!(v));
            } else {
                print_pipelines(&v);
            }
        }
        Command::Sync { pipeline } => {
            eprintln!("syncing {pipeline} (fetching upstream; a first fetch of a large repository takes minutes)...");
            let r: SyncReport = client
                .post(&format!("/pipelines/{pipeline}/sync"), &json!({}))
                .await?;
            if json_out {
                print_json(&json!(r));
            } else {
                print_sync(&r);
            }
        }
        Command::Refs { pipeline } => {
            let v: Vec<RefView> = client.get(&format!("/pipelines/{pipeline}/refs")).await?;
            if json_out {
                print_json(&json!(v));
            } else {
                print_refs(&v);
            }
        }
        Command::Ack {
            pipeline,
            r#ref,
            by,
        } => {
            let v: Value = client
                .post(
                    &format!("/pipelines/{pipeline}/acknowledge"),
                    &json!({ "ref": r#ref, "by": by }),
                )
                .await?;
            if json_out {
                print_json(&v);
            } else {
                println!(
                    "acknowledged {} of {pipeline}: now {} ({})",
                    v["name"].as_str().unwrap_or(""),
                    v["state"].as_str().unwrap_or(""),
                    v["verdict"]["verdict"].as_str().unwrap_or("")
                );
            }
        }
        Command::Status => {
            let v: Value = client.get("/status").await?;
            if json_out {
                print_json(&v);
            } else {
                println!(
                    "habd {} up {}s, state in {}",
                    v["version"].as_str().unwrap_or("?"),
                    v["uptime_seconds"],
                    v["state_dir"].as_str().unwrap_or("?")
                );
                let views: Vec<PipelineView> = serde_json::from_value(v["pipelines"].clone())
                    .map_err(|e| ClientError::Decode(e.to_string()))?;
                print_pipelines(&views);
            }
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("habctl: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("habctl: {e}");
            ExitCode::FAILURE
        }
    }
}
