//! habctl: the operator's command line. Talks only to habd's API.

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand, ValueEnum};
use hab::{
    api::{
        AckRequest, BuildsQuery, LogQuery, PromoteRequest, PruneRequest, QueueQuery,
        StartBuildRequest, VerifyRequest,
    },
    client::{print, Client, ClientError},
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
///   habctl completion bash             tab completion for bash (or zsh, fish)
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
    ///
    /// With --offline, no habd and no store: checks that the index's signed
    /// provenance (its attestation in the registry, or in an OCI layout)
    /// is habd's (--key), names the index and each platform image, and
    /// carries the maintainer's tag object, signed by a key of --keyring
    /// under the ref's name and naming the commit that was built.
    ///
    /// Example: habctl key > habd.pub; habctl verify --offline --key habd.pub
    ///   --keyring keys/ 127.0.0.1:5000/hab/bitcoind@sha256:…
    #[command(verbatim_doc_comment)]
    Verify {
        /// A build id, or repository@sha256:… (with or without the registry host).
        target: String,
        /// Check the signed provenance, with no habd (needs --key and --keyring).
        #[arg(long, requires_all = ["key", "keyring"])]
        offline: bool,
        /// habd's public key, PEM or OpenSSH (`habctl key > habd.pub`).
        #[arg(long, requires = "offline")]
        key: Option<PathBuf>,
        /// The maintainers' OpenPGP keys: a file, or a folder of *.asc.
        #[arg(long, requires = "offline")]
        keyring: Option<PathBuf>,
        /// Read an OCI image layout directory (`skopeo copy … oci:DIR`)
        /// instead of the registry.
        #[arg(long, requires = "offline")]
        layout: Option<PathBuf>,
    },
    /// habd's public signing key, which signs every verified build's
    /// provenance: PEM (for verify --offline --key, OpenSSL,
    /// securesystemslib), then the OpenSSH line.
    Key,
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
    /// Prints a completion script for your shell.
    ///
    /// bash: habctl completion bash > /etc/bash_completion.d/habctl
    /// zsh:  habctl completion zsh > "${fpath[1]}/_habctl"
    /// fish: habctl completion fish > ~/.config/fish/completions/habctl.fish
    #[command(verbatim_doc_comment)]
    Completion {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// The RPC front door's view of the nodes: height, lag, initial block
    /// download, calls in flight and served, drained, and why a node gets
    /// no calls. Asks habd (the front door `habd serve` runs), or with
    /// --door one front door run apart (`habd gateway`), as one of its
    /// users.
    ///
    /// Example: habctl rpc --door http://hab-gateway:8332 --user ops
    Rpc {
        /// A front door's URL (its JSON-RPC address).
        #[arg(long, requires = "user")]
        door: Option<String>,
        /// One of the front door's users ([[gateway.user]]).
        #[arg(long)]
        user: Option<String>,
        /// That user's password.
        #[arg(long, env = "HAB_RPC_PASSWORD", hide_env_values = true)]
        password: Option<String>,
    },
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

async fn run(cli: Cli) -> Result<(), ClientError> {
    let token = match (&cli.token, &cli.token_file) {
        (Some(t), _) => Some(t.clone()),
        (None, Some(f)) => Some(hab::client::token_from_file(f)?),
        (None, None) => None,
    };
    let client = Client::new(&cli.server, token);
    let json_out = cli.output == Output::Json;
    match cli.command {
        Command::Pipelines => {
            let v = client.pipelines().await?;
            show(json_out, v.as_slice(), print::pipelines);
        }
        Command::Sync { pipeline } => {
            eprintln!("syncing {pipeline} (fetching upstream; a first fetch of a large repository takes minutes)...");
            let r = client.sync(&pipeline).await?;
            show(json_out, &r, print::sync);
        }
        Command::Refs { pipeline } => {
            let v = client.refs(&pipeline).await?;
            show(json_out, v.as_slice(), print::refs);
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
            show(json_out, &r, |r| print::acknowledged(&pipeline, r));
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
                client.wait_build(id, |l| eprintln!("{l}")).await?
            } else {
                v
            };
            show(json_out, &v, print::build);
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
            show(json_out, v.as_slice(), print::builds);
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
                    show(json_out, &v, print::chain);
                }
                None => {
                    let v = client.fleet(&target).await?;
                    show(json_out, &v, print::fleet_chain);
                }
            }
        }
        Command::Rebuild { pipeline } => {
            let v = client.rebuild(&pipeline).await?;
            show(json_out, &v, |v| {
                format!("rebuild of {pipeline} queued (queue item {}); habctl queue --pipeline {pipeline} shows the builds it asks for\n", v.item.id)
            });
        }
        Command::Prune { keep, dry_run } => {
            let v = client.prune(&PruneRequest { keep, dry_run }).await?;
            if json_out {
                print_json(&v);
            } else {
                print!("{}", print::pruned(&v));
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
        Command::BaseImage { .. } | Command::Completion { .. } => {
            unreachable!("handled before connecting")
        }
        Command::Queue { pipeline, limit } => {
            let q = QueueQuery {
                pipeline,
                limit: Some(limit),
            };
            let v = client.queue(&q).await?;
            show(json_out, v.as_slice(), print::queue);
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
                        print!("{}", print::log_line(l));
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
        Command::Key => {
            let k = client.signing_key().await?;
            show(json_out, &k, |k| format!("{}{}\n", k.pem, k.openssh));
        }
        Command::Verify { target, .. } => {
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
            show(json_out, &v, print::verification);
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
            show(json_out, &p, |p| print::promoted(&pipeline, &channel, p));
            if wait {
                let ids: Vec<i64> = p.rollouts.iter().map(|r| r.id).collect();
                if !client.wait_rollouts(&ids, |l| eprintln!("{l}")).await? {
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
                    if !ids.is_empty() && !client.wait_rollouts(&ids, |l| eprintln!("{l}")).await? {
                        return Err(ClientError::Failed("a rollout did not succeed".into()));
                    }
                    v = client.fleets().await?;
                    if let Some(f) = &fleet {
                        v.retain(|x| &x.name == f);
                    }
                }
                show(json_out, v.as_slice(), print::fleets);
            }
            RolloutAction::Pause { fleet } => control(&client, &fleet, "pause", json_out).await?,
            RolloutAction::Resume { fleet } => control(&client, &fleet, "resume", json_out).await?,
            RolloutAction::Undo { fleet } => control(&client, &fleet, "undo", json_out).await?,
        },
        Command::Channels { pipeline } => {
            let v = client.channels(&pipeline).await?;
            show(json_out, &v, print::channels);
        }
        Command::Cancel { id } => {
            client.cancel(id).await?;
            println!("build {id}: cancelling");
        }
        Command::Status => {
            let v = client.status().await?;
            show(json_out, &v, print::status);
        }
        Command::Rpc {
            door,
            user,
            password,
        } => {
            let v = match (door, user) {
                (Some(url), Some(user)) => {
                    let password = password.ok_or_else(|| {
                        ClientError::Failed(
                            "no password: set HAB_RPC_PASSWORD (or --password)".into(),
                        )
                    })?;
                    client.door(&url, &user, &password).await?
                }
                _ => client.gateway().await?,
            };
            show(json_out, v.as_slice(), print::door);
        }
    }
    Ok(())
}

/// `-o json`: the API's answer, pretty-printed.
fn print_json(v: &(impl serde::Serialize + ?Sized)) {
    println!(
        "{}",
        serde_json::to_string_pretty(&json!(v)).unwrap_or_default()
    );
}

/// The API's answer as JSON (`-o json`), or as `text` renders it.
fn show<T: serde::Serialize + ?Sized>(json_out: bool, v: &T, text: impl FnOnce(&T) -> String) {
    if json_out {
        print_json(v);
    } else {
        print!("{}", text(v));
    }
}

fn main() -> ExitCode {
    hab::client::local::quiet_on_broken_pipe();
    let cli = Cli::parse();
    if let Command::BaseImage { registry, name } = &cli.command {
        return hab::client::local::base_image(registry, name);
    }
    if let Command::Verify {
        target,
        offline: true,
        key: Some(key),
        keyring: Some(keyring),
        layout,
    } = &cli.command
    {
        let json_out = cli.output == Output::Json;
        let run = hab::client::local::verify_offline(target, key, keyring, layout.as_deref());
        return match tokio::runtime::Runtime::new().map(|rt| rt.block_on(run)) {
            Ok(Ok(r)) => {
                show(json_out, &r, hab::client::local::offline_report);
                ExitCode::SUCCESS
            }
            Ok(Err(e)) => {
                eprintln!("habctl: {e}");
                ExitCode::FAILURE
            }
            Err(e) => {
                eprintln!("habctl: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if let Command::Completion { shell } = cli.command {
        use clap::CommandFactory;
        clap_complete::generate(shell, &mut Cli::command(), "habctl", &mut std::io::stdout());
        return ExitCode::SUCCESS;
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
