//! Fleet safety under faults, on real containers (dockerd, a registry per
//! test, builds by hab): a second Docker target made unreachable, a peer
//! taken down by hand, a container removed by hand, pause and undo while
//! the engine waits, and a release that never becomes healthy (known-bad).
//! A prober calls every node's RPC throughout and keeps the fewest healthy.

mod common;

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use common::*;
use serde_json::{json, Value};
use tokio::net::{UnixListener, UnixStream};

/// A Docker endpoint (a unix socket of the test's own) that forwards to the
/// local engine and can be made unreachable (connections refused and cut)
/// and back. A unix socket: hab speaks to an engine over tcp only with
/// mutual TLS.
struct DockerProxy {
    dir: tempfile::TempDir,
    up: Arc<AtomicBool>,
    tasks: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl DockerProxy {
    async fn start() -> Self {
        let proxy = DockerProxy {
            dir: tempfile::Builder::new()
                .prefix("hdp")
                .tempdir_in("/tmp")
                .unwrap(),
            up: Arc::new(AtomicBool::new(false)),
            tasks: Arc::new(Mutex::new(Vec::new())),
        };
        proxy.up().await;
        proxy
    }

    fn socket(&self) -> std::path::PathBuf {
        self.dir.path().join("docker.sock")
    }

    fn endpoint(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    async fn up(&self) {
        let _ = std::fs::remove_file(self.socket());
        let listener = UnixListener::bind(self.socket()).unwrap();
        self.up.store(true, Ordering::SeqCst);
        let tasks = self.tasks.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let conn = tokio::spawn(async move {
                    if let Ok(mut unix) = UnixStream::connect("/var/run/docker.sock").await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut unix).await;
                    }
                });
                tasks.lock().unwrap().push(conn);
            }
        });
        self.tasks.lock().unwrap().push(accept);
    }

    /// Refuses new connections and cuts the open ones.
    fn down(&self) {
        self.up.store(false, Ordering::SeqCst);
        for t in self.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
        let _ = std::fs::remove_file(self.socket());
    }
}

async fn state(habd: &Habd, id: i64) -> Value {
    call(habd.api(reqwest::Method::GET, &format!("/rollouts/{id}")))
        .await
        .1
}

fn steps<'a>(r: &'a Value, kind: &str) -> Vec<&'a Value> {
    r["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["kind"] == kind)
        .collect()
}

async fn until_step_on(habd: &Habd, id: i64, kind: &str, ordinal: u32) {
    for _ in 0..1500 {
        if steps(&state(habd, id).await, kind)
            .iter()
            .any(|s| s["ordinal"] == ordinal)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("rollout {id} never reached {kind} on node {ordinal}");
}

/// Fleet 2 on a second Docker target (through a proxy), so it can be made
/// unreachable while fleet 1's nodes stay where they are.
fn second_target(fx: &Fleets, endpoint: &str) {
    let config = fx.bw.world.path("hab.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    let marker = format!("name = \"{}\"\n", fx.names[1]);
    let text = text.replace(&marker, &format!("{marker}target = \"far\"\n"));
    std::fs::write(
        &config,
        format!(
            "{text}[[target]]\nname = \"local\"\nkind = \"docker\"\nendpoint = \"unix:///var/run/docker.sock\"\n\
             [[target]]\nname = \"far\"\nkind = \"docker\"\nendpoint = \"{endpoint}\"\n"
        ),
    )
    .unwrap();
}

/// Both fleets on A: returns the builds (A of node, B of node, A of node2).
async fn deploy(habd: &Habd) -> (i64, i64, i64) {
    for p in ["node", "node2"] {
        let (s, b) = call(habd.api(reqwest::Method::POST, &format!("/pipelines/{p}/sync"))).await;
        assert_eq!(s, 200, "{b}");
    }
    let a = build(habd, "node", "v1.0.0").await;
    let b = build(habd, "node", "v1.1.0").await;
    let a2 = build(habd, "node2", "v1.0.0").await;
    for (p, id) in [("node", a), ("node2", a2)] {
        for r in promote(habd, p, id).await {
            let r = wait_rollout(habd, r).await;
            assert_eq!(r["state"], "succeeded", "{r}");
        }
    }
    (a, b, a2)
}

/// The second target unreachable during the first fleet's rollout: the
/// rollout waits, then fails with the reason, touching no node of either
/// fleet; with the target back, the next promote rolls it through. Then a
/// peer's container removed by hand counts as out of service the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_target_or_a_missing_peer_stops_a_rollout_before_any_node() {
    let fx = Fleets::with_gates("soak = \"1s\"\nready_timeout = \"5s\"");
    let proxy = DockerProxy::start().await;
    second_target(&fx, &proxy.endpoint());
    let names = fx.names.clone();
    let habd = Habd::start_config(fx.bw.load()).await;
    let (a, b, _) = deploy(&habd).await;
    let (on_a, far) = (images(&names[0]), images(&names[1]));

    let prober = Prober::start(&names).await;
    proxy.down();
    let id = promote(&habd, "node", b).await[0];
    let r = wait_rollout(&habd, id).await;
    assert_eq!(r["state"], "failed", "{r}");
    let reason = r["reason"].as_str().unwrap();
    assert!(
        reason.contains(&format!("fleet {}", names[1]))
            && reason.contains("target far cannot be reached")
            && reason.contains("no node was touched"),
        "{reason}"
    );
    assert!(steps(&r, "update").is_empty(), "{r}");
    assert!(!steps(&r, "wait").is_empty(), "the wait is recorded: {r}");
    assert_eq!(images(&names[0]), on_a, "fleet 1 untouched");
    assert_eq!(images(&names[1]), far, "fleet 2 untouched");
    // habctl says where it stands.
    let out = run(habctl(&habd).args(["rollout", "status", &names[0]]));
    assert!(
        out.contains("FAILED") && out.contains("cannot be reached"),
        "{out}"
    );

    // The target back: the next trigger rolls fleet 1 through.
    proxy.up().await;
    promote(&habd, "node", a).await;
    let id = promote(&habd, "node", b).await[0];
    assert_eq!(wait_rollout(&habd, id).await["state"], "succeeded");
    let on_b = images(&names[0]);

    // A peer's container removed by hand is out of service too.
    docker(&["rm", "-f", &format!("hab-{}-1", names[1])]);
    let id = promote(&habd, "node", a).await[0];
    let r = wait_rollout(&habd, id).await;
    assert_eq!(r["state"], "failed", "{r}");
    let reason = r["reason"].as_str().unwrap();
    assert!(
        reason.contains(&format!("node 1 of fleet {}", names[1]))
            && reason.contains("missing")
            && reason.contains("no node was touched"),
        "{reason}"
    );
    assert_eq!(images(&names[0]), on_b, "fleet 1 untouched");
    let fewest = prober.finish().await;
    assert!(
        fewest >= 3,
        "at some instant only {fewest} of 4 nodes were healthy (one was removed by hand)"
    );
    habd.stop().await;
    cleanup(&names);
}

/// A peer down (stopped by hand) while fleet 1 is half-way: the engine
/// waits; a pause issued during the wait holds (no node is touched after
/// it, even once the peer is back); undo brings every node back; and every
/// instant all nodes but one answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_during_a_wait_for_a_peer_holds_and_undo_brings_every_node_back() {
    let fx = Fleets::with_gates("soak = \"3s\"\nready_timeout = \"60s\"");
    let names = fx.names.clone();
    let habd = Habd::start_config(fx.bw.load()).await;
    let (_, b, _) = deploy(&habd).await;
    let on_a = images(&names[0]);
    let peer = format!("hab-{}-0", names[1]);

    let prober = Prober::start(&names).await;
    let id = promote(&habd, "node", b).await[0];
    // While node 1 soaks, a node of the other fleet goes down.
    until_step_on(&habd, id, "soaking", 1).await;
    docker(&["stop", "-t", "1", &peer]);
    until_step_on(&habd, id, "wait", 0).await;
    let out = run(habctl(&habd).args(["rollout", "pause", &names[0]]));
    assert!(out.contains("PAUSED"), "{out}");
    // The peer comes back; the rollout stays paused and node 0 untouched.
    docker(&["start", &peer]);
    tokio::time::sleep(Duration::from_secs(4)).await;
    let r = state(&habd, id).await;
    assert_eq!(r["state"], "paused", "{r}");
    assert_eq!(steps(&r, "update").len(), 1, "only node 1 moved: {r}");
    assert_eq!(images(&names[0])[0], on_a[0], "node 0 untouched");
    assert_ne!(images(&names[0])[1], on_a[1], "node 1 moved before");

    // Undo: every node back to A, each held to its gates.
    let out = run(habctl(&habd).args(["rollout", "undo", &names[0]]));
    assert!(out.contains("ROLLING_BACK"), "{out}");
    let r = wait_rollout(&habd, id).await;
    assert_eq!(r["state"], "failed", "{r}");
    assert!(
        r["reason"]
            .as_str()
            .unwrap()
            .contains("undone by an operator"),
        "{r}"
    );
    let updates = steps(&r, "update");
    assert_eq!(updates.len(), 2, "node 1 forward, node 1 back: {r}");
    assert!(updates.iter().all(|s| s["ordinal"] == 1), "{r}");
    assert_eq!(images(&names[0]), on_a);
    let fewest = prober.finish().await;
    assert!(
        fewest >= 3,
        "at some instant only {fewest} of 4 nodes were healthy"
    );
    habd.stop().await;
    cleanup(&names);
}

/// A node's container removed by hand mid-rollout (the next node to move):
/// the rollout re-creates it on its volume and carries on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_removed_by_hand_mid_rollout_is_recreated() {
    let fx = Fleets::with_gates("soak = \"3s\"\nready_timeout = \"30s\"");
    let names = fx.names.clone();
    let habd = Habd::start_config(fx.bw.load()).await;
    let (_, b, _) = deploy(&habd).await;
    let on_a = images(&names[0]);
    let prober = Prober::start(&names).await;
    let id = promote(&habd, "node", b).await[0];
    until_step_on(&habd, id, "soaking", 1).await;
    docker(&["rm", "-f", &format!("hab-{}-0", names[0])]);
    let r = wait_rollout(&habd, id).await;
    assert_eq!(r["state"], "succeeded", "{r}");
    assert!(images(&names[0]).iter().all(|i| !on_a.contains(i)));
    let fewest = prober.finish().await;
    assert!(
        fewest >= 3,
        "at some instant only {fewest} of 4 nodes were healthy (one was removed by hand)"
    );
    habd.stop().await;
    cleanup(&names);
}

/// A release whose node never becomes healthy: its rollout fails its gates
/// and rolls back; the build is marked known-bad and the channel returns to
/// the build the fleet returned to (habd's move, with the reason); a fleet
/// added afterwards rolls to that good build; promote of the bad one needs
/// --force and a reason; habctl shows it everywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_that_failed_its_gates_is_known_bad_and_the_channel_returns() {
    let fx = Fleets::with_gates("soak = \"1s\"\nready_timeout = \"6s\"");
    let names = fx.names.clone();
    let config = fx.bw.world.path("hab.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!("[api]\ntokens = [\"{TOKEN}\"]\n"));
    std::fs::write(&config, &text).unwrap();
    let port = free_port();
    let mut process = HabdProcess::start(&config, port);
    let store = hab::store::Store::open(&fx.bw.world.path("state/hab.sqlite3")).unwrap();
    let habd = Habd::external(format!("http://127.0.0.1:{port}"), store);
    let (_, b, _) = deploy(&habd).await;
    for r in promote(&habd, "node", b).await {
        assert_eq!(wait_rollout(&habd, r).await["state"], "succeeded");
    }
    let on_b = images(&names[0]);
    let bad = build(&habd, "node", "v1.2.0").await;
    let id = promote(&habd, "node", bad).await[0];
    let r = wait_rollout(&habd, id).await;
    assert_eq!(r["state"], "failed", "{r}");
    assert_eq!(images(&names[0]), on_b, "rolled back to B");
    assert_eq!(steps(&r, "known_bad").len(), 1, "{r}");

    // The channel names B again, moved by habd with the reason.
    let (_, c) = call(habd.api(reqwest::Method::GET, "/pipelines/node/channels")).await;
    let stable = &c["channels"][0];
    assert_eq!(stable["current"]["build_id"], b, "{c}");
    assert_eq!(stable["current"]["moved_by"], "habd", "{c}");
    assert!(
        stable["current"]["reason"]
            .as_str()
            .unwrap()
            .contains(&format!("build {bad} is known-bad")),
        "{c}"
    );
    // habctl says it: show, refs, channels.
    let out = run(habctl(&habd).args(["show", &bad.to_string()]));
    assert!(
        out.contains("KNOWN-BAD") && out.contains(&names[0]),
        "{out}"
    );
    let out = run(habctl(&habd).args(["refs", "node"]));
    assert!(out.contains("KNOWN-BAD"), "{out}");
    let out = run(habctl(&habd).args(["channels", "node"]));
    assert!(out.contains("known-bad"), "{out}");

    // Promote of the bad build: refused without --force and a reason.
    let (s, e) = call(
        habd.api(reqwest::Method::POST, "/pipelines/node/promote")
            .json(&json!({ "target": bad.to_string(), "channel": "stable" })),
    )
    .await;
    assert_eq!(s, 409, "{e}");
    assert!(e["error"].as_str().unwrap().contains("known-bad"), "{e}");
    let (s, e) = call(
        habd.api(reqwest::Method::POST, "/pipelines/node/promote")
            .json(&json!({ "target": bad.to_string(), "channel": "stable", "force": true })),
    )
    .await;
    assert_eq!(s, 409, "--force without a reason: {e}");
    let out = habctl(&habd)
        .args([
            "promote",
            "node",
            &bad.to_string(),
            "--channel",
            "stable",
            "--force",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success(), "clap wants --reason with --force");

    // A fleet added afterwards rolls to the good build, B.
    let third = format!("late{}", free_port());
    text.push_str(&format!(
        "[[fleet]]\nname = \"{third}\"\npipeline = \"node\"\nchannel = \"stable\"\nnodes = 2\n\
         rpc_user = \"hab\"\nrpc_password_file = \"rpc-password\"\n\
         [fleet.gates]\nmax_lag = 2\nsoak = \"1s\"\nready_timeout = \"6s\"\n"
    ));
    std::fs::write(&config, &text).unwrap();
    process.kill9_and_restart();
    let mut joined = None;
    for _ in 0..300 {
        let (_, rs) =
            call(habd.api(reqwest::Method::GET, &format!("/rollouts?fleet={third}"))).await;
        if let Some(r) = rs.as_array().and_then(|a| a.first()) {
            joined = Some(r["id"].as_i64().unwrap());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let joined = joined.expect("the new fleet's rollout was queued at start");
    let r = wait_rollout(&habd, joined).await;
    assert_eq!(r["state"], "succeeded", "{r}");
    assert_eq!(r["build_id"], b, "{r}");
    assert_eq!(images(&third), on_b);
    drop(process);
    cleanup(&[names[0].clone(), names[1].clone(), third]);
}
