//! Golden files of what habctl prints: the real binary against a real habd
//! whose store holds a fixed fixture (refs of every verdict, builds in
//! several states, channels and their moves, queue items, rollouts that
//! succeeded and failed, a fleet whose target cannot be reached), every
//! printer in table form and a few in JSON.
//!
//! Only what varies by itself between runs is normalized (times, the temp
//! folder, habd's and git daemon's ports, uptime, received pack bytes): any
//! other change to the output fails the test. After a deliberate change,
//! regenerate the files with `HAB_BLESS=1 cargo test --test habctl_golden`
//! and review the diff. Needs git (for one sync), no Docker.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use hab::{
    config::{Config, Overrides},
    refplan::{Change, ChangeKind, Observed, RefKind, RefTarget},
    signature::Verdict,
    store::{
        BuildState, Enqueue, NewBuild, NewPlatform, PlatformUpdate, QueueKind, RolloutState, Store,
        SyncResult,
    },
};

const GOLDEN_DIR: &str = "tests/golden/habctl";
/// The registry habd is told about: a closed port, so a verification
/// fails the same way everywhere.
const REGISTRY: &str = "http://127.0.0.1:9";
/// A Docker endpoint that does not exist, for builders and the target.
const NO_DOCKER: &str = "unix:///nonexistent/hab-golden/docker.sock";
const FPR: &str = "E777299FC265DD04793070EB944D35F9AC3DB76A";
const OTHER_FPR: &str = "0123456789ABCDEF0123456789ABCDEF01234567";

fn oid(c: char) -> String {
    c.to_string().repeat(40)
}

fn digest(c: char) -> String {
    format!("sha256:{}", c.to_string().repeat(64))
}

fn signed_at() -> chrono::DateTime<chrono::Utc> {
    "2024-03-01T12:00:00Z".parse().unwrap()
}

fn verified() -> Verdict {
    Verdict::Verified {
        fingerprint: FPR.into(),
        primary_fingerprint: FPR.into(),
        signed_at: signed_at(),
    }
}

/// A ref change as a sync records it.
fn observed(name: &str, kind: ChangeKind, old: Option<char>, new: char, v: Verdict) -> Observed {
    Observed {
        change: Change {
            name: format!("refs/tags/{name}"),
            kind,
            old_oid: old.map(oid),
            new_oid: Some(oid(new)),
        },
        target: Some(RefTarget {
            kind: if v == Verdict::Unsigned {
                RefKind::LightweightTag
            } else {
                RefKind::AnnotatedTag
            },
            oid: oid(new),
            commit: format!("c{}", new.to_string().repeat(39)),
        }),
        verdict: Some(v),
    }
}

/// The configuration: two pipelines (`node`, signed, with a build, two
/// channels, schedules and a webhook; `plain`, unsigned, over the git
/// daemon), and a fleet of two nodes on a Docker target nobody runs.
fn write_config(world: &World) -> PathBuf {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let pipelines = world.path("pipelines");
    std::fs::create_dir_all(&pipelines).unwrap();
    std::fs::write(world.path("webhook-secret"), "golden-webhook-secret\n").unwrap();
    std::fs::write(world.path("rpc-password"), "golden-rpc-password\n").unwrap();
    std::fs::write(
        pipelines.join("node.toml"),
        format!(
            "implementation = \"bcoin\"\n\
             [upstream]\nurl = \"https://git.example.org/bcoin/bcoin.git\"\n\
             [refs]\ntrack = [\"refs/tags/v*\"]\nignore = [\"refs/tags/v0.1*\"]\n\
             [signature]\npolicy = \"signed\"\nkeyring = \"{keys}\"\n\
             [build]\nrecipe = \"bcoin\"\nplatforms = [\"linux/amd64\", \"linux/arm64\"]\n\
             smoke = [\"bcoin\", \"--version\"]\nauto = false\n\
             [image]\nrepository = \"hab/node\"\n\
             [webhook]\nsecret_file = \"{secret}\"\n\
             [schedule]\nsync = \"0 0 1 1 *\"\nrebuild = \"30 4 1 1 *\"\n\
             [[channel]]\nname = \"edge\"\nauto = true\n\
             [[channel]]\nname = \"stable\"\n",
            keys = repo.join("keys/bcoin").display(),
            secret = world.path("webhook-secret").display(),
        ),
    )
    .unwrap();
    std::fs::write(
        pipelines.join("plain.toml"),
        format!(
            "implementation = \"btcd\"\n\
             [upstream]\nurl = \"{url}\"\n\
             [refs]\ntrack = [\"refs/tags/v*\"]\n\
             [signature]\npolicy = \"none\"\n",
            url = world.daemon.url("node.git"),
        ),
    )
    .unwrap();
    let hab = world.path("hab.toml");
    std::fs::write(
        &hab,
        format!(
            "state_dir = \"state\"\npipelines_dir = \"pipelines\"\nrecipes_dir = \"{recipes}\"\n\
             [api]\ntokens = [\"{TOKEN}\"]\n\
             [registry]\nurl = \"{REGISTRY}\"\n\
             [[builder]]\nname = \"local\"\nendpoint = \"{NO_DOCKER}\"\n\
             platforms = [\"linux/amd64\", \"linux/arm64\"]\nemulated = [\"linux/arm64\"]\n\
             [[target]]\nname = \"local\"\nkind = \"docker\"\nendpoint = \"{NO_DOCKER}\"\n\
             [[fleet]]\nname = \"core\"\npipeline = \"node\"\nchannel = \"stable\"\ntarget = \"local\"\n\
             nodes = 2\nrpc_user = \"hab\"\nrpc_password_file = \"rpc-password\"\n",
            recipes = repo.join("dockerfiles").display(),
        ),
    )
    .unwrap();
    hab
}

/// A build of `tag` in the store, with both platforms.
fn new_build(store: &Store, tag: &str, commit: char, trigger: &str) -> i64 {
    store
        .create_build(&NewBuild {
            pipeline: "node".into(),
            ref_name: format!("refs/tags/{tag}"),
            commit: oid(commit),
            version: tag.into(),
            signer: Some(FPR.into()),
            trigger: trigger.into(),
            repository: "hab/node".into(),
            platforms: ["linux/amd64", "linux/arm64"]
                .iter()
                .map(|p| NewPlatform {
                    platform: (*p).into(),
                    builder: "local".into(),
                    build_key: format!("{}-{tag}-{}", "k".repeat(8), &p[6..]),
                    reuse: None,
                })
                .collect(),
        })
        .unwrap()
        .id
}

/// Both platforms pushed: digests, sizes, bytes.
fn pushed(store: &Store, id: i64, amd64: char, arm64: char) {
    for (p, d, total) in [
        ("linux/amd64", amd64, 48_213_377),
        ("linux/arm64", arm64, 951),
    ] {
        store
            .update_platform(
                id,
                p,
                &PlatformUpdate {
                    stage: Some("verified".into()),
                    manifest: Some((
                        digest(d),
                        1_234,
                        "application/vnd.oci.image.manifest.v1+json".into(),
                    )),
                    bytes_total: Some(total),
                    bytes_pushed: Some(total / 2),
                    ..Default::default()
                },
            )
            .unwrap();
    }
}

/// A queue item that ran and ended.
fn ran(store: &Store, kind: QueueKind, tag: &str, source: &str, result: serde_json::Value) {
    let mut e = Enqueue::new("node", kind, source);
    if !tag.is_empty() {
        e.ref_name = format!("refs/tags/{tag}");
    }
    e.detail = Some(format!("{source} asked"));
    let first = store.enqueue(&e).unwrap();
    let id = first.item.id;
    e.source = "habctl".into();
    e.detail = None;
    store.enqueue(&e).unwrap();
    store.start_item(id).unwrap();
    match result {
        serde_json::Value::String(error) => store.finish_item(id, None, Some(&error)).unwrap(),
        result => store.finish_item(id, Some(&result), None).unwrap(),
    }
}

/// The store's fixture, written before habd starts.
fn seed(store: &Store) {
    // Two syncs of `node`: the first finds five tags, the second sees one
    // of them moved.
    let sync1 = store
        .begin_sync("node", "webhook:github (2 triggers), queue 1")
        .unwrap();
    ran(
        store,
        QueueKind::Sync,
        "",
        "webhook:github",
        serde_json::json!({ "sync_id": sync1 }),
    );
    store
        .finish_sync(
            sync1,
            "node",
            &SyncResult {
                objects_received: 1_234,
                bytes_received: 5_678_901,
                changes: vec![
                    observed("v0.9.0", ChangeKind::Added, None, 'a', Verdict::Unsigned),
                    observed("v1.0.0", ChangeKind::Added, None, 'b', verified()),
                    observed("v1.1.0", ChangeKind::Added, None, 'd', verified()),
                    observed("v1.2.0", ChangeKind::Added, None, 'e', verified()),
                    observed(
                        "v2.0.0rc1",
                        ChangeKind::Added,
                        None,
                        'f',
                        Verdict::UnknownKey {
                            issuer: OTHER_FPR.into(),
                        },
                    ),
                ],
            },
        )
        .unwrap();
    let sync2 = store.begin_sync("node", "schedule: 0 0 1 1 *").unwrap();
    store
        .finish_sync(
            sync2,
            "node",
            &SyncResult {
                objects_received: 3,
                bytes_received: 700,
                changes: vec![observed(
                    "v0.9.0",
                    ChangeKind::Moved,
                    Some('a'),
                    '9',
                    Verdict::Unsigned,
                )],
            },
        )
        .unwrap();
    let failed = store.begin_sync("plain", "habctl").unwrap();
    store
        .fail_sync(failed, "fetch from upstream: connection refused")
        .unwrap();

    // Build 1: v1.0.0, VERIFIED, verified twice, on both channels.
    let b1 = new_build(store, "v1.0.0", 'b', "sync 1");
    ran(
        store,
        QueueKind::Build,
        "v1.0.0",
        "sync",
        serde_json::json!({ "build_id": b1, "state": "verified" }),
    );
    pushed(store, b1, '1', '2');
    store.finish_verified(b1, &digest('a')).unwrap();
    let reference = format!("127.0.0.1:9/hab/node@{}", digest('a'));
    store
        .record_verification(Some(b1), &reference, true, None, &serde_json::json!({}))
        .unwrap();
    store
        .record_verification(
            Some(b1),
            &reference,
            false,
            Some("blob sha256:0000 read back with another digest"),
            &serde_json::json!({}),
        )
        .unwrap();
    store
        .append_log(b1, None, &["hab: building v1.0.0 for 2 platforms".into()])
        .unwrap();
    store
        .append_log(
            b1,
            Some("linux/amd64"),
            &[
                "#1 [internal] load build definition".into(),
                "#1 DONE 0.1s".into(),
            ],
        )
        .unwrap();
    store
        .append_log(b1, None, &["hab: verified".into()])
        .unwrap();
    store
        .move_channel("node", "edge", b1, "habd", Some("build verified"))
        .unwrap()
        .unwrap();
    store
        .move_channel("node", "stable", b1, "alice", Some("two weeks on edge"))
        .unwrap()
        .unwrap();
    let r1 = store
        .queue_rollout("core", "node", "stable", b1, &reference, "promote by alice")
        .unwrap()
        .id;
    store.begin_rollout(r1, &[(0, None), (1, None)]).unwrap();
    for (node, kind, detail) in [
        (Some(0), "update", "to 127.0.0.1:9/hab/node@sha256:aaaa"),
        (Some(0), "gates", "healthy at 812 blocks"),
        (Some(1), "update", "to 127.0.0.1:9/hab/node@sha256:aaaa"),
        (Some(1), "gates", "healthy at 812 blocks"),
        (None, "succeeded", "every node runs build 1"),
    ] {
        store.rollout_step(r1, node, kind, detail).unwrap();
    }
    store
        .set_rollout_state(r1, &[RolloutState::Running], RolloutState::Succeeded, None)
        .unwrap();

    // Build 2: v1.1.0, VERIFIED, on edge, then known-bad: its rollout to
    // the fleet failed its gates.
    let b2 = new_build(store, "v1.1.0", 'd', "habctl");
    pushed(store, b2, '3', '4');
    store.finish_verified(b2, &digest('b')).unwrap();
    store
        .move_channel("node", "edge", b2, "habd", None)
        .unwrap()
        .unwrap();
    let r2 = store
        .queue_rollout(
            "core",
            "node",
            "stable",
            b2,
            &format!("127.0.0.1:9/hab/node@{}", digest('b')),
            "promote by bob",
        )
        .unwrap()
        .id;
    store.begin_rollout(r2, &[(0, None), (1, None)]).unwrap();
    store
        .rollout_step(r2, Some(0), "gates", "lag 9 blocks > max 2")
        .unwrap();
    store
        .set_rollout_state(
            r2,
            &[RolloutState::Running],
            RolloutState::Failed,
            Some("node 0 failed its gates: lag 9 blocks > max 2"),
        )
        .unwrap();
    store
        .mark_known_bad(
            b2,
            "core",
            Some(r2),
            "node 0 failed its gates: lag 9 blocks > max 2",
        )
        .unwrap();

    // Build 3: v1.2.0 failed; build 4: v1.2.0 building.
    let b3 = new_build(store, "v1.2.0", 'e', "rebuild");
    store
        .end_build(b3, BuildState::Failed, "builder local: exit code 2")
        .unwrap();
    ran(
        store,
        QueueKind::Rebuild,
        "",
        "schedule",
        serde_json::Value::String("builder local unreachable".into()),
    );
    let b4 = new_build(store, "v1.2.0", 'e', "habctl");
    store.set_build_state(b4, BuildState::Building).unwrap();
}

/// One habctl run, as its golden file holds it.
fn render(args: &[&str], out: &std::process::Output) -> String {
    format!(
        "$ habctl {}\nexit: {}\n--- stdout\n{}--- stderr\n{}",
        args.join(" "),
        out.status.code().map_or("signal".into(), |c| c.to_string()),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    )
}

/// Replaces what varies between runs by itself.
fn normalize(text: &str, replace: &[(String, &str)]) -> String {
    let mut text = text.to_string();
    for (from, to) in replace {
        text = text.replace(from.as_str(), to);
    }
    // Times keep their format and width (so columns stay aligned), with
    // every digit 0 and no fraction of a second (JSON has nanoseconds).
    let time = regex::Regex::new(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2})?(\.\d+)?").unwrap();
    text = time
        .replace_all(&text, |c: &regex::Captures<'_>| {
            let t = &c[0];
            t[..t.find('.').unwrap_or(t.len())].replace(|d: char| d.is_ascii_digit(), "0")
        })
        .into_owned();
    let rules = [
        (r"up \d+s", "up <N>s"),
        (r#""uptime_seconds": \d+"#, r#""uptime_seconds": <N>"#),
        // A fresh fetch's pack size depends on git's compression.
        (r"objects \(\d+ bytes\)", "objects (<N> bytes)"),
        (r#""bytes_received": \d+"#, r#""bytes_received": <N>"#),
        // How long a verification took.
        (r#""seconds": [\d.e-]+"#, r#""seconds": <N>"#),
    ];
    for (re, to) in rules {
        text = regex::Regex::new(re)
            .unwrap()
            .replace_all(&text, to)
            .into_owned();
    }
    text
}

/// What the test runs, in order (later runs see what earlier ones did).
const RUNS: &[(&str, &[&str])] = &[
    ("pipelines", &["pipelines"]),
    ("pipelines-json", &["pipelines", "-o", "json"]),
    ("status", &["status"]),
    ("status-json", &["status", "-o", "json"]),
    ("refs", &["refs", "node"]),
    ("refs-json", &["refs", "node", "-o", "json"]),
    ("refs-empty", &["refs", "plain"]),
    ("refs-unknown-pipeline", &["refs", "nope"]),
    ("builds", &["builds"]),
    ("builds-json", &["builds", "-o", "json"]),
    (
        "builds-limit",
        &["builds", "--pipeline", "node", "--limit", "2"],
    ),
    ("builds-empty", &["builds", "--pipeline", "plain"]),
    ("show-verified", &["show", "1"]),
    ("show-verified-json", &["show", "build-1", "-o", "json"]),
    ("show-known-bad", &["show", "2"]),
    ("show-failed", &["show", "3"]),
    ("show-building", &["show", "4"]),
    ("show-fleet", &["show", "core"]),
    ("show-fleet-json", &["show", "core", "-o", "json"]),
    ("show-missing", &["show", "99"]),
    ("queue", &["queue"]),
    ("queue-json", &["queue", "-o", "json"]),
    (
        "queue-pipeline",
        &["queue", "--pipeline", "node", "--limit", "1"],
    ),
    ("channels", &["channels", "node"]),
    ("channels-json", &["channels", "node", "-o", "json"]),
    ("channels-none", &["channels", "plain"]),
    ("rollout-status", &["rollout", "status"]),
    (
        "rollout-status-json",
        &["rollout", "status", "core", "-o", "json"],
    ),
    ("rollout-status-unknown", &["rollout", "status", "nope"]),
    ("rollout-pause-idle", &["rollout", "pause", "core"]),
    ("logs", &["logs", "1"]),
    ("logs-json", &["logs", "1", "-o", "json"]),
    (
        "ack-wrong-oid",
        &["ack", "node", "v0.9.0", "--oid", "aaaaaaa", "--by", "carol"],
    ),
    ("ack", &["ack", "node", "v0.9.0", "--by", "carol"]),
    (
        "promote-not-verified",
        &[
            "promote",
            "node",
            "3",
            "--channel",
            "stable",
            "--by",
            "carol",
        ],
    ),
    ("verify-no-index", &["verify", "3"]),
    ("verify-unreachable", &["verify", "1"]),
    ("verify-unreachable-json", &["verify", "1", "-o", "json"]),
    ("prune-dry-run", &["prune", "--keep", "1", "--dry-run"]),
    (
        "prune-dry-run-json",
        &["prune", "--keep", "1", "--dry-run", "-o", "json"],
    ),
    ("cancel-not-running", &["cancel", "4"]),
    ("sync", &["sync", "plain"]),
    ("sync-json", &["sync", "plain", "-o", "json"]),
    ("refs-synced", &["refs", "plain"]),
    ("queue-after", &["queue", "--pipeline", "plain"]),
    // Last: the queue runs what it asks for in the background.
    ("rebuild", &["rebuild", "node"]),
];

#[tokio::test(flavor = "multi_thread")]
async fn habctl_prints_what_the_golden_files_hold() {
    let world = World::new();
    let commit = world.upstream.commit("release 3");
    world.upstream.unsigned_tag("v3.0.0", &commit);
    world.upstream.git(&["tag", "v3.0.1", &commit]);
    let hab = write_config(&world);
    let config = Config::load(Some(&hab), &Overrides::default()).unwrap();
    std::fs::create_dir_all(&config.state_dir).unwrap();
    seed(&Store::open(&config.state_dir.join("hab.sqlite3")).unwrap());
    let habd = Habd::start_config(config).await;

    let url = habd.url.clone();
    let habd_url = url.clone();
    let outputs = tokio::task::spawn_blocking(move || {
        RUNS.iter()
            .map(|(name, args)| (*name, render(args, &habctl_at(&url, args))))
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    habd.stop().await;

    let replace = [
        (world.path("").display().to_string(), "<TMP>/"),
        (
            Path::new(env!("CARGO_MANIFEST_DIR")).display().to_string(),
            "<REPO>",
        ),
        (habd_url, "<HABD>"),
        (
            format!("127.0.0.1:{}", world.daemon.port),
            "127.0.0.1:<GIT>",
        ),
    ];
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(GOLDEN_DIR);
    let bless = std::env::var_os("HAB_BLESS").is_some_and(|v| v == "1");
    let mut differ = Vec::new();
    for (name, text) in outputs {
        let text = normalize(&text, &replace);
        let file = dir.join(format!("{name}.txt"));
        if bless {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&file, &text).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&file).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (HAB_BLESS=1 cargo test --test habctl_golden writes it)",
                file.display()
            )
        });
        if want != text {
            differ.push(format!("--- {}\n{want}\n+++ now\n{text}", file.display()));
        }
    }
    assert!(
        differ.is_empty(),
        "{} of {} outputs differ from their golden files (HAB_BLESS=1 regenerates them after a deliberate change):\n{}",
        differ.len(),
        RUNS.len(),
        differ.join("\n")
    );
}
