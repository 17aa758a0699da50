//! habctl: the operator's command line. Talks only to habd's API.

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand, ValueEnum};
use hab::{
    api::{
        AckRequest, BuildView, BuildsQuery, Chain, ChannelsView, FleetView, LogQuery, PipelineView,
        PromoteRequest, PruneRequest, QueueQuery, QueueView, RefView, StartBuildRequest,
        Verification, VerifyRequest,
    },
    client::{Client, ClientError},
    sync::SyncReport,
};
use serde_json::json;

/// habctl shows where each upstream release of your Bitcoin nodes stands, and
/// drives habd.
///
/// Examples:
///   habctl pipelines                   what habd follows, and how each last synced
///   habctl sync bitcoind               fetch upstream now and verify new tags
///   habctl refs bitcoind               every tracked ref: commit, verdict, signer
///   habctl ack bitcoind v27.0          accept a tag that upstream moved
///   habctl build bitcoind --ref v28.1 --wait
///                                      build both platforms, publish, verify
///   habctl builds --pipeline bitcoind  builds, newest first
///   habctl show 12                     one build: keys, digests, verification
///   habctl logs 12 --follow            a build's output as it runs
///   habctl verify 12                   read back and smoke-run a build again
///   habctl promote bitcoind v28.1 --channel stable --reason "two weeks on edge"
///                                      point a channel at a VERIFIED build
///   habctl channels bitcoind           where each channel points, and its moves
///   habctl rollout status              each fleet's nodes: image, health, last rollout
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
    /// List pipelines: upstream, policy, refs by verdict, last sync, when
    /// the schedules next run, and what triggers them.
    Pipelines,
    /// Sync a pipeline now: fetch upstream, verify new and moved tags (and,
    /// for a pipeline with `build.auto`, queue builds of new verified tags).
    /// Joins a sync of it already queued or running rather than adding one.
    Sync {
        /// Pipeline name.
        pipeline: String,
    },
    /// List a pipeline's tracked refs with commit, verdict and signer.
    Refs {
        /// Pipeline name.
        pipeline: String,
    },
    /// Acknowledge a tag that moved upstream, so it may be built again once
    /// verified. The acknowledgement binds to the object the tag points at
    /// (the OBJECT column of `habctl refs`): without --oid it is refused if
    /// the tag moved again since it was flagged; with --oid, unless the tag
    /// points at that very object.
    Ack {
        /// Pipeline name.
        pipeline: String,
        /// Tag name (v27.0) or full ref (refs/tags/v27.0).
        r#ref: String,
        /// The object you reviewed (full id, or 7+ leading hex digits).
        #[arg(long)]
        oid: Option<String>,
        /// Who acknowledges (recorded).
        #[arg(long, env = "USER", default_value = "habctl")]
        by: String,
    },
    /// Build a verified ref for every platform of its pipeline, publish one
    /// image index, and verify it. A ref whose images were built and
    /// verified before is not built again: the existing build is returned.
    /// A build of the ref already queued or running (by a sync, a rebuild)
    /// is joined, not doubled.
    Build {
        /// Pipeline name.
        pipeline: String,
        /// Tag or branch (v28.1) or full ref (refs/tags/v28.1).
        #[arg(long = "ref")]
        r#ref: String,
        /// Wait for the build, showing each platform's progress; exit non-zero
        /// unless it ends VERIFIED.
        #[arg(long)]
        wait: bool,
    },
    /// Queue a rebuild of what the pipeline's channels point at, as its
    /// rebuild schedule does: picks up a new base image. Nothing is built
    /// when no build key changed.
    Rebuild {
        /// Pipeline name.
        pipeline: String,
    },
    /// List builds, newest first.
    Builds {
        /// Only this pipeline's.
        #[arg(long)]
        pipeline: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// Show the whole chain of a build, or of the build a fleet runs: the
    /// tag, its verdict and signer, what triggered the sync that found it
    /// (webhook deliveries, a schedule), commit, build keys, digests, every
    /// verification, the channel moves to it, and every rollout step.
    Show {
        /// A build id (12, build-12) or a fleet name.
        target: String,
    },
    /// Delete from the registry the manifests of builds older than the
    /// newest KEEP verified ones of each pipeline, never one a channel
    /// points at, a node runs, or a build still running. The registry's
    /// garbage collector then reclaims their blobs (the chart's CronJob
    /// runs both).
    Prune {
        /// Verified builds to keep per pipeline.
        #[arg(long, default_value_t = 5)]
        keep: usize,
        /// Show what would go, delete nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Make the node recipes' Debian bookworm base image for linux/amd64
    /// and linux/arm64 from Debian's packages (debootstrap, then one image
    /// index pushed to the registry), on this machine: needs root,
    /// debootstrap, qemu-user-static for arm64, and a Docker engine. Run it
    /// again for Debian's security updates; the next rebuild picks the new
    /// base up (its digest is in every build key). Talks to no habd.
    BaseImage {
        /// Registry to push to (host:port).
        #[arg(long, default_value = "127.0.0.1:5000")]
        registry: String,
        /// Repository and tag of the index.
        #[arg(long, default_value = "hab/base:bookworm")]
        name: String,
    },
    /// The trigger queue, newest first: each unit of work (sync, rebuild,
    /// build), how many triggers asked for it, and how it ended.
    Queue {
        /// Only this pipeline's.
        #[arg(long)]
        pipeline: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// Print a build's output (BuildKit steps, hab's own steps).
    Logs {
        /// Build id.
        id: i64,
        /// Keep printing until the build ends.
        #[arg(long, short)]
        follow: bool,
    },
    /// Verify again: read back the index, every manifest and blob, recompute
    /// their sha256, check the platforms, smoke-run each image. Exits
    /// non-zero when a check fails.
    Verify {
        /// A build id, or repository@sha256:… (with or without the registry host).
        target: String,
    },
    /// Cancel a running build.
    Cancel {
        /// Build id.
        id: i64,
    },
    /// Point a channel at a VERIFIED build. Refused, with the reason, for a
    /// build that is not VERIFIED or an image hab did not build. The move is
    /// recorded with who, when and why.
    Promote {
        /// Pipeline name.
        pipeline: String,
        /// A tag (its newest VERIFIED build), a build id (12, build-12), or
        /// an index digest (sha256:…, repository@sha256:…).
        target: String,
        /// The channel to move (declared in the pipeline file).
        #[arg(long)]
        channel: String,
        /// Why (recorded).
        #[arg(long)]
        reason: Option<String>,
        /// Who (recorded).
        #[arg(long, env = "USER", default_value = "habctl")]
        by: String,
        /// Promote a known-bad build (one whose rollout failed its gates)
        /// anyway; needs --reason.
        #[arg(long, requires = "reason")]
        force: bool,
        /// Wait for the rollouts the move starts, showing each node's
        /// progress; exit non-zero unless every one succeeds.
        #[arg(long)]
        wait: bool,
    },
    /// Show where each channel of a pipeline points, and its moves.
    Channels {
        /// Pipeline name.
        pipeline: String,
    },
    /// Fleets and their rollouts: status, pause, resume, undo.
    Rollout {
        #[command(subcommand)]
        action: RolloutAction,
    },
    /// habd's state at a glance.
    Status,
}

fn print_channels(v: &ChannelsView) {
    if v.channels.is_empty() {
        println!("no channels declared (add [[channel]] to the pipeline file)");
        return;
    }
    let rows = v
        .channels
        .iter()
        .map(|c| match &c.current {
            Some(s) => vec![
                c.name.clone(),
                if c.auto { "auto" } else { "promote" }.into(),
                format!("build {}", s.build_id),
                s.index_digest.clone(),
                format!(
                    "{} by {}",
                    s.moved_at.format("%Y-%m-%d %H:%M:%SZ"),
                    s.moved_by
                ),
                s.reason.clone().unwrap_or_else(|| "-".into()),
            ],
            None => vec![
                c.name.clone(),
                if c.auto { "auto" } else { "promote" }.into(),
                "-".into(),
                "-".into(),
                "never moved".into(),
                "-".into(),
            ],
        })
        .collect();
    println!(
        "{}",
        table(
            &["CHANNEL", "MOVES", "BUILD", "INDEX", "MOVED", "WHY"],
            rows
        )
    );
    for c in &v.channels {
        if let (Some(s), Some(bad)) = (&c.current, &c.known_bad) {
            println!(
                "  {}: build {} is {bad} (promoted with --force)",
                c.name, s.build_id
            );
        }
    }
    if !v.moves.is_empty() {
        println!();
        for m in &v.moves {
            println!(
                "  {} {:<8} build {} -> {}  by {}{}",
                m.at.format("%Y-%m-%d %H:%M:%SZ"),
                m.channel,
                m.from_build.map_or("none".to_string(), |b| b.to_string()),
                m.to_build,
                m.by,
                m.reason
                    .as_ref()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default()
            );
        }
    }
}

fn human_bytes(n: i64) -> String {
    const UNITS: [&str; 4] = ["B", "KB", "MB", "GB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1000.0 && u < UNITS.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn print_builds(builds: &[BuildView]) {
    if builds.is_empty() {
        println!("no builds yet (habctl build <pipeline> --ref <tag>)");
        return;
    }
    let rows = builds
        .iter()
        .map(|v| {
            let b = &v.build;
            vec![
                b.id.to_string(),
                b.pipeline.clone(),
                b.version.clone(),
                short(&b.commit).to_string(),
                b.state.as_str().to_uppercase(),
                b.platforms
                    .iter()
                    .map(|p| p.platform.trim_start_matches("linux/").to_string())
                    .collect::<Vec<_>>()
                    .join(","),
                b.index_digest.as_deref().map_or("-".into(), |d| {
                    short(d.trim_start_matches("sha256:")).to_string()
                }),
                b.created_at.format("%Y-%m-%d %H:%M:%SZ").to_string(),
            ]
        })
        .collect();
    println!(
        "{}",
        table(
            &[
                "ID",
                "PIPELINE",
                "VERSION",
                "COMMIT",
                "STATE",
                "PLATFORMS",
                "INDEX",
                "CREATED"
            ],
            rows
        )
    );
}

fn print_build(v: &BuildView) {
    let b = &v.build;
    println!(
        "build {} of {}: {}",
        b.id,
        b.pipeline,
        b.state.as_str().to_uppercase()
    );
    println!("  ref       {} ({})", b.ref_name, b.version);
    println!("  commit    {}", b.commit);
    println!(
        "  signer    {}",
        b.signer.as_deref().unwrap_or("- (unsigned)")
    );
    println!("  trigger   {}", b.trigger);
    println!("  index     {}", v.reference.as_deref().unwrap_or("-"));
    if let Some(r) = &b.reason {
        println!("  reason    {r}");
    }
    if let Some(bad) = &b.known_bad {
        println!(
            "  KNOWN-BAD its rollout {}to fleet {} failed its gates at {}: {}",
            bad.rollout_id.map(|r| format!("{r} ")).unwrap_or_default(),
            bad.fleet,
            bad.at.format("%Y-%m-%d %H:%M:%SZ"),
            bad.reason
        );
    }
    println!(
        "  times     created {}{}",
        b.created_at.format("%Y-%m-%d %H:%M:%SZ"),
        b.finished_at
            .map(|t| format!(", finished {}", t.format("%Y-%m-%d %H:%M:%SZ")))
            .unwrap_or_default()
    );
    let rows = b
        .platforms
        .iter()
        .map(|p| {
            vec![
                p.platform.clone(),
                p.builder.clone(),
                p.stage.clone(),
                p.manifest_digest.clone().unwrap_or_else(|| "-".into()),
                if p.reused {
                    "reused".into()
                } else {
                    format!(
                        "{} / {}",
                        human_bytes(p.bytes_pushed),
                        human_bytes(p.bytes_total)
                    )
                },
                p.build_key.clone(),
            ]
        })
        .collect();
    println!();
    println!(
        "{}",
        table(
            &[
                "PLATFORM",
                "BUILDER",
                "STAGE",
                "MANIFEST",
                "UPLOADED",
                "BUILD KEY"
            ],
            rows
        )
    );
    if !v.verifications.is_empty() {
        println!();
        print_verifications(&v.verifications);
    }
}

fn print_verifications(runs: &[hab::store::VerificationRecord]) {
    for r in runs {
        println!(
            "  verification {} at {}: {}{}",
            r.id,
            r.at.format("%Y-%m-%d %H:%M:%SZ"),
            if r.ok { "ok" } else { "FAILED" },
            r.reason
                .as_ref()
                .map(|x| format!(": {x}"))
                .unwrap_or_default()
        );
    }
}

fn print_chain(c: &Chain) {
    let time = |t: &chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%d %H:%M:%SZ").to_string();
    println!("upstream");
    match &c.stored_ref {
        Some(r) => {
            println!("  tag       {} -> commit {}", r.name, r.commit);
            println!(
                "  verdict   {}{}",
                r.verdict.kind(),
                r.verdict
                    .signer()
                    .map(|s| format!(", signed by {s}"))
                    .unwrap_or_default()
            );
        }
        None => println!(
            "  ref       {} (no longer recorded)",
            c.build.build.ref_name
        ),
    }
    for e in &c.ref_events {
        println!(
            "  {}  {}{}{}",
            time(&e.at),
            e.event,
            e.sync_id
                .map(|s| format!(" by sync {s}"))
                .unwrap_or_default(),
            e.actor
                .as_ref()
                .map(|a| format!(" by {a}"))
                .unwrap_or_default()
        );
    }
    if let Some(s) = &c.sync {
        println!(
            "  sync {}   {} at {}, triggered by {}",
            s.id,
            s.status,
            time(&s.started_at),
            s.trigger
        );
    }
    for t in c.sync_triggers.iter().take(10) {
        println!(
            "    {}  {}{}",
            time(&t.at),
            t.source,
            t.detail
                .as_ref()
                .map(|d| format!(": {d}"))
                .unwrap_or_default()
        );
    }
    if c.sync_triggers.len() > 10 {
        println!("    ... {} more triggers", c.sync_triggers.len() - 10);
    }
    println!();
    print_build(&c.build);
    for t in &c.build_triggers {
        println!(
            "  asked     {} by {}{}",
            time(&t.at),
            t.source,
            t.detail
                .as_ref()
                .map(|d| format!(": {d}"))
                .unwrap_or_default()
        );
    }
    if c.build.verifications.is_empty() {
        print_verifications(&c.verifications);
    }
    println!();
    println!("channels");
    if c.channel_moves.is_empty() {
        println!("  no channel points at this build");
    }
    for m in &c.channel_moves {
        println!(
            "  {}  {} -> build {}{} by {}{}",
            time(&m.at),
            m.channel,
            m.to_build,
            m.from_build
                .map(|f| format!(" (from build {f})"))
                .unwrap_or_default(),
            m.by,
            m.reason
                .as_ref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default()
        );
    }
    println!();
    println!("rollouts");
    if c.rollouts.is_empty() {
        println!("  none");
    }
    for r in &c.rollouts {
        println!(
            "  rollout {} of fleet {}: {}{}",
            r.rollout.id,
            r.rollout.fleet,
            r.rollout.state.as_str().to_uppercase(),
            r.rollout
                .reason
                .as_ref()
                .map(|x| format!(" ({x})"))
                .unwrap_or_default()
        );
        for s in &r.steps {
            println!(
                "    {}  {:<8} {:<12} {}",
                time(&s.at),
                s.ordinal.map_or("-".into(), |o| format!("node {o}")),
                s.kind,
                s.detail
            );
        }
    }
}

fn print_queue(items: &[QueueView]) {
    if items.is_empty() {
        println!("the queue is empty: nothing has been triggered yet");
        return;
    }
    let rows = items
        .iter()
        .map(|q| {
            let i = &q.item;
            vec![
                i.id.to_string(),
                i.pipeline.clone(),
                i.kind.as_str().to_string(),
                i.ref_name
                    .strip_prefix("refs/tags/")
                    .unwrap_or(&i.ref_name)
                    .to_string(),
                format!("{:?}", i.state).to_lowercase(),
                format!("{} x{}", i.source, i.triggers),
                i.created_at.format("%Y-%m-%d %H:%M:%SZ").to_string(),
                match (&i.error, &i.result) {
                    (Some(e), _) => e.clone(),
                    (None, Some(r)) => r.to_string(),
                    (None, None) => "-".into(),
                },
            ]
        })
        .collect();
    println!(
        "{}",
        table(
            &["ID", "PIPELINE", "KIND", "REF", "STATE", "ASKED BY", "CREATED", "RESULT"],
            rows
        )
    );
}

fn print_verification(v: &Verification) {
    let rb = &v.read_back;
    println!(
        "{} {}: read back {} blobs ({} bytes), sha256 recomputed",
        if v.ok { "VERIFIED" } else { "FAILED" },
        rb.reference,
        rb.blobs_checked,
        rb.bytes_read
    );
    for (p, d) in &rb.platforms {
        println!(
            "  {p:<12} {d}  smoke: {}",
            match v.smoke.get(p) {
                None => "not run".to_string(),
                Some(s) => format!(
                    "`{}` exited {}",
                    s.command.join(" "),
                    // As JSON shows a missing exit code.
                    s.exit_code.map_or("null".into(), |c| c.to_string())
                ),
            }
        );
    }
    for p in &rb.problems {
        println!("  problem: {p}");
    }
    if let Some(reason) = v.reason.as_deref().filter(|_| !v.ok) {
        println!("  reason: {reason}");
    }
}

/// Polls a build until it ends, printing each platform's stage and upload
/// progress as it changes.
async fn wait_for(client: &Client, id: i64) -> Result<BuildView, ClientError> {
    let mut seen: std::collections::BTreeMap<String, String> = Default::default();
    let mut last_state = String::new();
    loop {
        let v = client.build(id).await?;
        for p in &v.build.platforms {
            let line = match p.stage.as_str() {
                "pushing" | "pushed" => format!(
                    "{} {} / {}",
                    p.stage,
                    human_bytes(p.bytes_pushed),
                    human_bytes(p.bytes_total)
                ),
                s => s.to_string(),
            };
            if seen.get(&p.platform) != Some(&line) {
                eprintln!("  {:<12} {line}", p.platform);
                seen.insert(p.platform.clone(), line);
            }
        }
        let state = v.build.state.as_str().to_string();
        if state != last_state {
            eprintln!("build {id}: {}", state.to_uppercase());
            last_state = state;
        }
        if v.build.state.is_final() {
            return Ok(v);
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

#[derive(Subcommand)]
enum RolloutAction {
    /// Every fleet (or one): each node's image, RPC and health now, and its
    /// last rollout (its steps: GET /api/v1/rollouts/ID or promote --wait).
    Status {
        /// Fleet name.
        fleet: Option<String>,
        /// Wait until the fleets' rollouts queued or running now have ended,
        /// showing each step as it happens (useful after a webhook or a
        /// build moved an automatic channel); exit non-zero unless every
        /// one succeeded.
        #[arg(long)]
        wait: bool,
    },
    /// Pause a fleet's rollout between steps.
    Pause {
        /// Fleet name.
        fleet: String,
    },
    /// Resume a paused rollout the way it was going.
    Resume {
        /// Fleet name.
        fleet: String,
    },
    /// Stop a rollout and put every node back on what it ran before.
    Undo {
        /// Fleet name.
        fleet: String,
    },
}

fn print_fleets(fleets: &[FleetView]) {
    if fleets.is_empty() {
        println!("no fleets configured (add [[fleet]] to hab.toml)");
        return;
    }
    for f in fleets {
        println!(
            "fleet {} ({} {} on {}){}",
            f.name,
            f.pipeline,
            f.channel,
            f.target,
            f.rollout.as_ref().map_or(String::new(), |r| format!(
                ": rollout {} {} to build {}{}",
                r.id,
                r.state.as_str().to_uppercase(),
                r.build_id,
                r.reason
                    .as_ref()
                    .map(|x| format!(" ({x})"))
                    .unwrap_or_default()
            ))
        );
        let rows = f
            .nodes
            .iter()
            .map(|n| {
                vec![
                    n.ordinal.to_string(),
                    n.image.clone().unwrap_or_else(|| "-".into()),
                    n.rpc.clone().unwrap_or_else(|| "-".into()),
                    match &n.health {
                        Ok(h) => format!("healthy at {h}"),
                        Err(e) => e.clone(),
                    },
                ]
            })
            .collect();
        println!("{}", table(&["NODE", "IMAGE", "RPC", "HEALTH"], rows));
        println!();
    }
}

/// Polls rollouts until each ends, printing steps as they are recorded.
async fn wait_rollouts(client: &Client, ids: &[i64]) -> Result<bool, ClientError> {
    let mut ok = true;
    for id in ids {
        let mut seen = 0;
        loop {
            let v = client.rollout(*id).await?;
            for s in v.steps.iter().skip(seen) {
                eprintln!(
                    "  rollout {id} {}{} {}: {}",
                    v.rollout.fleet,
                    s.ordinal.map(|o| format!(" node {o}")).unwrap_or_default(),
                    s.kind,
                    s.detail
                );
            }
            seen = v.steps.len();
            if v.rollout.state.is_final() {
                eprintln!(
                    "rollout {id} of {}: {}{}",
                    v.rollout.fleet,
                    v.rollout.state.as_str().to_uppercase(),
                    v.rollout
                        .reason
                        .as_ref()
                        .map(|r| format!(" ({r})"))
                        .unwrap_or_default()
                );
                ok &= v.rollout.state == hab::store::RolloutState::Succeeded;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        }
    }
    Ok(ok)
}

async fn control(
    client: &Client,
    fleet: &str,
    verb: &str,
    json_out: bool,
) -> Result<(), ClientError> {
    let r = client.control(fleet, verb).await?;
    if json_out {
        print_json(&r);
    } else {
        println!(
            "rollout {} of {fleet}: {}",
            r.id,
            r.state.as_str().to_uppercase()
        );
    }
    Ok(())
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
            let next = |t: &Option<chrono::DateTime<chrono::Utc>>| {
                t.map_or("-".into(), |t| t.format("%Y-%m-%d %H:%MZ").to_string())
            };
            let mut triggers = Vec::new();
            if let Some(s) = &p.sync_schedule {
                triggers.push(format!("cron {s}"));
            }
            if p.webhook {
                triggers.push("webhook".into());
            }
            if p.auto_build {
                triggers.push("auto-build".into());
            }
            vec![
                p.name.clone(),
                p.upstream.clone(),
                p.policy.clone(),
                refs,
                last,
                next(&p.next_sync),
                next(&p.next_rebuild),
                if triggers.is_empty() {
                    "habctl only".into()
                } else {
                    triggers.join(", ")
                },
            ]
        })
        .collect();
    println!(
        "{}",
        table(
            &[
                "PIPELINE",
                "UPSTREAM",
                "POLICY",
                "REFS",
                "LAST SYNC",
                "NEXT SYNC",
                "NEXT REBUILD",
                "TRIGGERS"
            ],
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
                short(&s.oid).to_string(),
                if s.commit.is_empty() {
                    "-".into()
                } else {
                    short(&s.commit).to_string()
                },
                s.state.as_str().to_string(),
                s.verdict.kind().to_string(),
                s.verdict.signer().unwrap_or("-").to_string(),
                if r.buildable {
                    "yes".into()
                } else {
                    "no".into()
                },
                r.build.as_ref().map_or("-".into(), |b| {
                    format!(
                        "#{} {}{}",
                        b.id,
                        b.state.as_str().to_uppercase(),
                        if b.known_bad.is_some() {
                            " KNOWN-BAD"
                        } else {
                            ""
                        }
                    )
                }),
            ]
        })
        .collect();
    println!(
        "{}",
        table(
            &[
                "REF",
                "OBJECT",
                "COMMIT",
                "STATE",
                "VERDICT",
                "SIGNER",
                "BUILDABLE",
                "BUILD"
            ],
            rows
        )
    );
    for r in refs.iter().filter(|r| !r.buildable) {
        if let Some(why) = &r.refusal {
            println!("  {}: {why}", r.stored.name);
        }
    }
    for r in refs {
        if let Some((b, bad)) = r
            .build
            .as_ref()
            .and_then(|b| Some((b, b.known_bad.as_ref()?)))
        {
            println!("  {}: build {} is {bad}", r.stored.name, b.id);
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
        // habd's token files hold one token a line, `#` comments: the
        // first token is habctl's.
        (None, Some(f)) => Some(
            std::fs::read_to_string(f)
                .map_err(|e| {
                    ClientError::Decode(format!("cannot read token file {}: {e}", f.display()))
                })?
                .lines()
                .map(str::trim)
                .find(|l| !l.is_empty() && !l.starts_with('#'))
                .unwrap_or_default()
                .to_string(),
        ),
        (None, None) => None,
    };
    let client = Client::new(&cli.server, token);
    let json_out = cli.output == Output::Json;
    match cli.command {
        Command::Pipelines => {
            let v = client.pipelines().await?;
            if json_out {
                print_json(&v);
            } else {
                print_pipelines(&v);
            }
        }
        Command::Sync { pipeline } => {
            eprintln!("syncing {pipeline} (fetching upstream; a first fetch of a large repository takes minutes)...");
            let r = client.sync(&pipeline).await?;
            if json_out {
                print_json(&r);
            } else {
                print_sync(&r);
            }
        }
        Command::Refs { pipeline } => {
            let v = client.refs(&pipeline).await?;
            if json_out {
                print_json(&v);
            } else {
                print_refs(&v);
            }
        }
        Command::Ack {
            pipeline,
            r#ref,
            oid,
            by,
        } => {
            let req = AckRequest {
                ref_name: r#ref,
                oid,
                by: Some(by),
            };
            let r = client.acknowledge(&pipeline, &req).await?;
            if json_out {
                print_json(&r);
            } else {
                println!(
                    "acknowledged {} of {pipeline} at {}: now {} ({})",
                    r.name,
                    r.oid,
                    r.state.as_str(),
                    r.verdict.kind()
                );
            }
        }
        Command::Build {
            pipeline,
            r#ref,
            wait,
        } => {
            let req = StartBuildRequest {
                ref_name: r#ref,
                trigger: Some("habctl".into()),
            };
            let v = client.start_build(&pipeline, &req).await?;
            let id = v.build.id;
            if v.reused {
                eprintln!(
                    "{} of {pipeline} was built and verified before (build {id}): nothing to build",
                    v.build.version
                );
            } else if v.joined {
                eprintln!(
                    "build {id} of {pipeline} {} was already asked for ({}): following it (habctl logs {id} --follow for its output)",
                    v.build.version, v.build.trigger
                );
            } else {
                eprintln!(
                    "build {id} of {pipeline} {} started (habctl logs {id} --follow to watch its output)",
                    v.build.version
                );
            }
            let v = if wait && !v.build.state.is_final() {
                wait_for(&client, id).await?
            } else {
                v
            };
            if json_out {
                print_json(&v);
            } else {
                print_build(&v);
            }
            if wait && !v.verified {
                return Err(ClientError::Failed(format!(
                    "build {id} ended {}: {}",
                    v.build.state.as_str().to_uppercase(),
                    v.build.reason.as_deref().unwrap_or("no reason recorded")
                )));
            }
        }
        Command::Builds { pipeline, limit } => {
            let q = BuildsQuery {
                pipeline,
                limit: Some(limit),
            };
            let v = client.builds(&q).await?;
            if json_out {
                print_json(&v);
            } else {
                print_builds(&v);
            }
        }
        Command::Show { target } => {
            let id = target
                .strip_prefix("build-")
                .unwrap_or(&target)
                .parse::<i64>()
                .ok();
            match id {
                Some(id) => {
                    let v = client.chain(id).await?;
                    if json_out {
                        print_json(&v);
                    } else {
                        print_chain(&v);
                    }
                }
                None => {
                    let v = client.fleet(&target).await?;
                    if json_out {
                        print_json(&v);
                    } else {
                        print_fleets(std::slice::from_ref(&v.fleet));
                        match &v.chain {
                            Some(c) => {
                                println!();
                                print_chain(c);
                            }
                            None => println!("\nno rollout of {target} has succeeded yet"),
                        }
                    }
                }
            }
        }
        Command::Rebuild { pipeline } => {
            let v = client.rebuild(&pipeline).await?;
            if json_out {
                print_json(&v);
            } else {
                println!(
                    "rebuild of {pipeline} queued (queue item {}); habctl queue --pipeline {pipeline} shows the builds it asks for",
                    v.item.id
                );
            }
        }
        Command::Prune { keep, dry_run } => {
            let v = client.prune(&PruneRequest { keep, dry_run }).await?;
            if json_out {
                print_json(&v);
            } else {
                let kept: Vec<String> = v.plan.kept.iter().map(i64::to_string).collect();
                println!("kept builds: {}", kept.join(", "));
                for d in &v.plan.delete {
                    println!(
                        "{} build {} {}: {}@{}",
                        if dry_run { "would delete" } else { "deleted" },
                        d.build,
                        d.what,
                        d.repository,
                        d.digest
                    );
                }
                for e in &v.errors {
                    eprintln!("failed: {e}");
                }
            }
            if !v.errors.is_empty() {
                return Err(ClientError::Failed(
                    "some manifests could not be deleted".into(),
                ));
            }
        }
        Command::BaseImage { .. } => unreachable!("handled before connecting"),
        Command::Queue { pipeline, limit } => {
            let q = QueueQuery {
                pipeline,
                limit: Some(limit),
            };
            let v = client.queue(&q).await?;
            if json_out {
                print_json(&v);
            } else {
                print_queue(&v);
            }
        }
        Command::Logs { id, follow } => {
            let mut after = 0;
            loop {
                let q = LogQuery {
                    after: Some(after),
                    limit: None,
                };
                let page = client.logs(id, &q).await?;
                for l in &page.lines {
                    if json_out {
                        println!("{}", serde_json::to_string(l).unwrap_or_default());
                    } else {
                        match &l.platform {
                            Some(p) => println!("[{p}] {}", l.line),
                            None => println!("{}", l.line),
                        }
                    }
                    after = l.seq;
                }
                if !follow || (page.done && page.lines.is_empty()) {
                    break;
                }
                if page.lines.is_empty() {
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                }
            }
        }
        Command::Verify { target } => {
            let req = match target.parse::<i64>() {
                Ok(id) => VerifyRequest {
                    build: Some(id),
                    reference: None,
                },
                Err(_) => VerifyRequest {
                    build: None,
                    reference: Some(target.clone()),
                },
            };
            eprintln!("verifying {target}: reading back every blob and running each image once...");
            let v = client.verify(&req).await?;
            if json_out {
                print_json(&v);
            } else {
                print_verification(&v);
            }
            if !v.ok {
                return Err(ClientError::Failed(format!(
                    "verification of {target} failed: {}",
                    v.reason.as_deref().unwrap_or("unknown")
                )));
            }
        }
        Command::Promote {
            pipeline,
            target,
            channel,
            reason,
            by,
            force,
            wait,
        } => {
            let req = PromoteRequest {
                target,
                channel: channel.clone(),
                reason,
                by: Some(by),
                force,
            };
            let p = client.promote(&pipeline, &req).await?;
            if json_out {
                print_json(&p);
            } else {
                match &p.promoted.channel_move {
                    None => println!(
                        "{channel} of {pipeline} already at build {}: nothing moved",
                        p.promoted.build_id
                    ),
                    Some(m) => {
                        println!(
                            "{channel} of {pipeline}: build {} -> build {} ({}), by {}",
                            m.from_build.map_or("none".to_string(), |b| b.to_string()),
                            m.to_build,
                            m.index_digest,
                            m.by
                        );
                        for r in &p.rollouts {
                            println!("  rollout {} of fleet {} queued", r.id, r.fleet);
                        }
                    }
                }
            }
            if wait {
                let ids: Vec<i64> = p.rollouts.iter().map(|r| r.id).collect();
                if !wait_rollouts(&client, &ids).await? {
                    return Err(ClientError::Failed(
                        "a rollout did not succeed; the fleet was rolled back (habctl rollout status)"
                            .into(),
                    ));
                }
            }
        }
        Command::Rollout { action } => match action {
            RolloutAction::Status { fleet, wait } => {
                let mut v = client.fleets().await?;
                if let Some(f) = &fleet {
                    v.retain(|x| &x.name == f);
                    if v.is_empty() {
                        return Err(ClientError::Failed(format!("no fleet named {f:?}")));
                    }
                }
                if wait {
                    let ids: Vec<i64> = v
                        .iter()
                        .filter_map(|f| f.rollout.as_ref())
                        .filter(|r| !r.state.is_final())
                        .map(|r| r.id)
                        .collect();
                    if !ids.is_empty() && !wait_rollouts(&client, &ids).await? {
                        return Err(ClientError::Failed("a rollout did not succeed".into()));
                    }
                    v = client.fleets().await?;
                    if let Some(f) = &fleet {
                        v.retain(|x| &x.name == f);
                    }
                }
                if json_out {
                    print_json(&v);
                } else {
                    print_fleets(&v);
                }
            }
            RolloutAction::Pause { fleet } => control(&client, &fleet, "pause", json_out).await?,
            RolloutAction::Resume { fleet } => control(&client, &fleet, "resume", json_out).await?,
            RolloutAction::Undo { fleet } => control(&client, &fleet, "undo", json_out).await?,
        },
        Command::Channels { pipeline } => {
            let v = client.channels(&pipeline).await?;
            if json_out {
                print_json(&v);
            } else {
                print_channels(&v);
            }
        }
        Command::Cancel { id } => {
            client.cancel(id).await?;
            println!("build {id}: cancelling");
        }
        Command::Status => {
            let v = client.status().await?;
            if json_out {
                print_json(&v);
            } else {
                println!(
                    "habd {} up {}s, state in {}",
                    v.version,
                    v.uptime_seconds,
                    v.state_dir.display()
                );
                print_pipelines(&v.pipelines);
            }
        }
    }
    Ok(())
}

/// `-o json`: the API's answer, pretty-printed.
fn print_json(v: &impl serde::Serialize) {
    println!(
        "{}",
        serde_json::to_string_pretty(&json!(v)).unwrap_or_default()
    );
}

/// `habctl show 12 | head` closes stdout early: end quietly, as a program
/// killed by SIGPIPE would (exit 141), instead of a panic's backtrace.
/// Rust ignores SIGPIPE, and restoring it needs unsafe code, which this
/// crate forbids.
fn quiet_on_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if msg.contains("failed printing to stdout") && msg.contains("Broken pipe") {
            std::process::exit(141);
        }
        default(info);
    }));
}

/// scripts/base-image.sh, carried inside habctl so the command works where
/// only the binary is installed.
const BASE_IMAGE_SCRIPT: &str = include_str!("../../scripts/base-image.sh");

fn base_image(registry: &str, name: &str) -> ExitCode {
    let dir = std::env::temp_dir().join(format!("habctl-base-image-{}", std::process::id()));
    let script = dir.join("base-image.sh");
    let run = std::fs::create_dir_all(&dir)
        .and_then(|()| std::fs::write(&script, BASE_IMAGE_SCRIPT))
        .and_then(|()| {
            std::process::Command::new("bash")
                .arg(&script)
                .args([registry, name])
                .current_dir(&dir)
                .status()
        });
    let _ = std::fs::remove_dir_all(&dir);
    match run {
        Ok(s) if s.success() => ExitCode::SUCCESS,
        Ok(s) => {
            eprintln!("habctl: making the base image failed ({s})");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("habctl: cannot run bash: {e}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    quiet_on_broken_pipe();
    let cli = Cli::parse();
    if let Command::BaseImage { registry, name } = &cli.command {
        return base_image(registry, name);
    }
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
