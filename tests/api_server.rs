//! The HTTP API, the git mirror over HTTP, and habctl, against a real habd on
//! 127.0.0.1 and an upstream served by `git daemon`.

mod common;

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    path::Path,
    process::Command,
    time::Duration,
};

use common::*;
use hab::{api::RefView, sync::SyncReport};
use serde_json::Value;

/// A JSON answer as the API type it should be.
fn typed<T: serde::de::DeserializeOwned>(v: &Value) -> T {
    serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("{e}: {v}"))
}

/// A world with a pinned key, one signed tag on master, the `node` pipeline.
fn world_with_release() -> (World, String, String) {
    let (world, fpr, commit) = World::with_release();
    world.write_pipeline(&world.daemon.url("node.git"));
    (world, fpr, commit)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_is_required_on_the_api_only() {
    let (world, _, _) = world_with_release();
    let habd = Habd::start(&world).await;
    let c = client();
    let (s, body) = call(c.get(format!("{}/api/v1/pipelines", habd.url))).await;
    assert_eq!(s, 401);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("missing bearer token"),
        "{body}"
    );
    let (s, body) = call(
        c.get(format!("{}/api/v1/pipelines", habd.url))
            .bearer_auth("nope"),
    )
    .await;
    assert_eq!(s, 401);
    assert_eq!(body["error"], "wrong bearer token");
    let (s, _) = call(
        c.post(format!("{}/api/v1/pipelines/node/sync", habd.url))
            .bearer_auth("nope"),
    )
    .await;
    assert_eq!(s, 401);
    assert!(
        habd.store.syncs("node", 10).unwrap().is_empty(),
        "a refused request syncs nothing"
    );
    let (s, body) = call(habd.api(reqwest::Method::GET, "/pipelines")).await;
    assert_eq!(s, 200);
    assert_eq!(body[0]["name"], "node");
    let (s, body) = call(c.get(format!("{}/healthz", habd.url))).await;
    assert_eq!((s, &body["status"]), (200, &Value::from("ok")));
    let metrics = c.get(format!("{}/metrics", habd.url)).send().await.unwrap();
    assert_eq!(metrics.status(), 200);
    let text = metrics.text().await.unwrap();
    assert!(text.contains("hab_http_unauthorized_total 3"), "{text}");
    habd.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_pipeline_is_404_with_a_reason() {
    let (world, _, _) = world_with_release();
    let habd = Habd::start(&world).await;
    for (method, path) in [
        ("GET", "/pipelines/nope"),
        ("GET", "/pipelines/nope/refs"),
        ("POST", "/pipelines/nope/sync"),
    ] {
        let (s, body) = call(habd.api(method.parse().unwrap(), path)).await;
        assert_eq!(s, 404, "{path}");
        assert_eq!(
            body["error"], "no pipeline named \"nope\"; known: node",
            "{path}"
        );
    }
    let (s, body) = call(habd.api(reqwest::Method::GET, "/nothing")).await;
    assert_eq!(s, 404);
    assert!(body["error"].is_string());
    habd.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_then_refs_shows_verdicts_and_signers() {
    let (world, fpr, commit) = world_with_release();
    let habd = Habd::start(&world).await;
    let (s, body) = habd.sync_node().await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(typed::<SyncReport>(&body).sync.status, "ok");
    let (s, refs) = call(habd.api(reqwest::Method::GET, "/pipelines/node/refs")).await;
    assert_eq!(s, 200);
    let refs: Vec<RefView> = typed(&refs);
    let tag = refs
        .iter()
        .find(|r| r.stored.name == "refs/tags/v1.0.0")
        .unwrap();
    assert_eq!(tag.stored.commit, commit);
    assert_eq!(tag.stored.verdict.kind(), "verified");
    assert_eq!(tag.stored.verdict.signer(), Some(fpr.as_str()));
    assert!(tag.buildable);
    // The wire names the verdict and its key as before.
    let wire = &serde_json::to_value(tag).unwrap()["verdict"];
    assert_eq!(
        (&wire["verdict"], &wire["fingerprint"]),
        (&Value::from("verified"), &Value::from(fpr.as_str()))
    );
    habd.stop().await;
}

/// A TCP relay to `target` that holds each connection for `delay` before
/// relaying: makes a fetch slow enough that two syncs overlap for sure.
fn slow_relay(target: u16, delay: Duration) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(client) = conn else { break };
            std::thread::spawn(move || {
                std::thread::sleep(delay);
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                    return;
                };
                let pipe = |mut from: TcpStream, mut to: TcpStream| {
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 16384];
                        while let Ok(n) = from.read(&mut buf) {
                            if n == 0 || to.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                        let _ = to.shutdown(std::net::Shutdown::Write);
                    })
                };
                pipe(client.try_clone().unwrap(), server.try_clone().unwrap());
                pipe(server, client);
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_syncs_of_one_pipeline_share_one_fetch() {
    let (world, _, _) = world_with_release();
    let port = slow_relay(world.daemon.port, Duration::from_millis(1500));
    world.write_pipeline(&format!("git://127.0.0.1:{port}/node.git"));
    let habd = Habd::start(&world).await;
    let sync = || habd.sync_node();
    let (a, b) = tokio::join!(sync(), async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        sync().await
    });
    assert_eq!((a.0, b.0), (200, 200), "{a:?} {b:?}");
    let (a, b): (SyncReport, SyncReport) = (typed(&a.1), typed(&b.1));
    assert_eq!(a.sync.id, b.sync.id, "both report the same sync");
    assert!(!a.joined);
    assert!(b.joined, "the second waited for the first");
    assert_eq!(
        habd.store.syncs("node", 10).unwrap().len(),
        1,
        "one fetch, one sync recorded"
    );
    habd.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_sync_answers_502_with_the_reason() {
    let (world, _, _) = world_with_release();
    world.write_pipeline(&format!("git://127.0.0.1:{}/node.git", free_port()));
    let habd = Habd::start(&world).await;
    let (s, body) = habd.sync_node().await;
    assert_eq!(s, 502);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("fetch from git://127.0.0.1"),
        "{body}"
    );
    assert!(body["detail"]["sync_id"].as_i64().unwrap() > 0);
    habd.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirror_is_clonable_over_http() {
    let (world, _, commit) = world_with_release();
    let habd = Habd::start(&world).await;
    let (s, _) = habd.sync_node().await;
    assert_eq!(s, 200);
    let dest = world.path("clone");
    run(Command::new("git")
        .args(["clone", "-q", &format!("{}/git/node", habd.url)])
        .arg(&dest));
    let tagged = run(Command::new("git")
        .current_dir(&dest)
        .args(["rev-parse", "v1.0.0^{commit}"]));
    assert_eq!(tagged.trim(), commit);
    let log = run(Command::new("git")
        .current_dir(&dest)
        .args(["log", "--oneline"]));
    assert_eq!(log.lines().count(), 2, "{log}");
    // Writes are not served.
    let (s, _) = call(client().post(format!("{}/git/node/git-receive-pack", habd.url))).await;
    assert!(s == 404 || s == 405, "{s}");
    let (s, _) =
        call(client().get(format!("{}/git/node/objects/../../hab.sqlite3", habd.url))).await;
    assert_eq!(s, 404);
    habd.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn habctl_talks_to_the_api() {
    let (world, fpr, commit) = world_with_release();
    let habd = Habd::start(&world).await;
    let url = habd.url.clone();
    let out = tokio::task::spawn_blocking(move || {
        let sync = habctl_at(&url, &["sync", "node"]);
        let refs = habctl_at(&url, &["refs", "node"]);
        let json = habctl_at(&url, &["refs", "node", "-o", "json"]);
        let pipelines = habctl_at(&url, &["pipelines"]);
        let status = habctl_at(&url, &["status"]);
        let missing = habctl_at(&url, &["refs", "nope"]);
        let bad = Command::new(env!("CARGO_BIN_EXE_habctl"))
            .args(["--token", "wrong", "pipelines"])
            .env("HAB_SERVER", &url)
            .output()
            .unwrap();
        // A token file as habd reads them: comments, one token a line.
        let file = std::env::temp_dir().join(format!("hab-tokens-{}", std::process::id()));
        std::fs::write(
            &file,
            format!("# operators\n{TOKEN}\nanother-token-for-ci\n"),
        )
        .unwrap();
        let from_file = Command::new(env!("CARGO_BIN_EXE_habctl"))
            .arg("--token-file")
            .arg(&file)
            .arg("pipelines")
            .env("HAB_SERVER", &url)
            .env_remove("HAB_TOKEN")
            .output()
            .unwrap();
        let _ = std::fs::remove_file(&file);
        assert!(
            from_file.status.success(),
            "{}",
            String::from_utf8_lossy(&from_file.stderr)
        );
        (sync, refs, json, pipelines, status, missing, bad)
    })
    .await
    .unwrap();
    let (sync, refs, json, pipelines, status, missing, bad) = out;
    let text = |o: &std::process::Output| String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        sync.status.success(),
        "{}",
        String::from_utf8_lossy(&sync.stderr)
    );
    assert!(text(&sync).contains("2 added"), "{}", text(&sync));
    let table = text(&refs);
    let line = table
        .lines()
        .find(|l| l.starts_with("v1.0.0"))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(
        line.contains(&commit[..12]) && line.contains("verified") && line.contains(&fpr),
        "{line}"
    );
    let parsed: Value = serde_json::from_slice(&json.stdout).unwrap();
    assert!(parsed
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["verdict"]["fingerprint"] == fpr.as_str()));
    let header: Vec<String> = text(&pipelines)
        .lines()
        .next()
        .unwrap_or("")
        .split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(String::from)
        .collect();
    assert_eq!(
        header,
        [
            "PIPELINE",
            "UPSTREAM",
            "POLICY",
            "REFS",
            "LAST SYNC",
            "NEXT SYNC",
            "NEXT REBUILD",
            "TRIGGERS"
        ]
    );
    assert!(
        text(&pipelines).contains("habctl only"),
        "no schedule, no webhook: {}",
        text(&pipelines)
    );
    assert!(
        text(&pipelines).contains("node") && text(&pipelines).contains("1 verified"),
        "{}",
        text(&pipelines)
    );
    assert!(text(&status).contains("habd "), "{}", text(&status));
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no pipeline named \"nope\""));
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("wrong bearer token"));
    habd.stop().await;
}

#[test]
fn habd_binary_serves_json_logs_and_stops_on_sigterm() {
    let (world, _, _) = world_with_release();
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_habd"))
        .args([
            "--log-format",
            "json",
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .arg("--state-dir")
        .arg(world.path("state"))
        .arg("--pipelines-dir")
        .arg(world.path("pipelines"))
        .env_remove("HAB_CONFIG")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_port(port);
    // With no token configured, habd generated one into the state folder.
    let token_file = world.path("state/api-token");
    assert!(Path::new(&token_file).exists());
    let out = Command::new(env!("CARGO_BIN_EXE_habctl"))
        .args([
            "--server",
            &format!("http://127.0.0.1:{port}"),
            "--token-file",
        ])
        .arg(&token_file)
        .arg("pipelines")
        .env_remove("HAB_TOKEN")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    run(Command::new("kill").args(["-TERM", &child.id().to_string()]));
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "habd did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
    let mut logs = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut logs)
        .unwrap();
    for line in logs.lines() {
        let v: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v["level"].is_string(), "{line}");
    }
    assert!(logs.contains("habd stopped"), "{logs}");
}

/// Text logs into a file (what the quickstart's `>.hab/habd.log` does):
/// plain lines, not one terminal colour code.
#[test]
fn habd_text_logs_into_a_file_carry_no_escape_codes() {
    let (world, _, _) = world_with_release();
    let port = free_port();
    let log_path = world.path("habd.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_habd"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--state-dir")
        .arg(world.path("state"))
        .arg("--pipelines-dir")
        .arg(world.path("pipelines"))
        .env_remove("HAB_CONFIG")
        .env_remove("HAB_LOG_FORMAT")
        .env_remove("NO_COLOR")
        .stderr(log)
        .spawn()
        .unwrap();
    wait_for_port(port);
    run(Command::new("kill").args(["-TERM", &child.id().to_string()]));
    assert!(child.wait().unwrap().success());
    let logs = std::fs::read_to_string(&log_path).unwrap();
    assert!(logs.contains("habd stopped"), "{logs}");
    assert!(logs.lines().count() >= 2, "{logs}");
    assert!(
        !logs.contains('\x1b'),
        "escape codes in a log file: {logs:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refs_no_longer_tracked_are_kept_but_not_listed() {
    let (world, _, _) = world_with_release();
    let habd = Habd::start(&world).await;
    assert_eq!(habd.sync_node().await.0, 200);
    habd.stop().await;
    // Stop tracking master: the recorded ref stays in the store, the API lists tags only.
    let pipeline = world.path("pipelines/node.toml");
    let text = std::fs::read_to_string(&pipeline)
        .unwrap()
        .replace(", \"refs/heads/master\"", "");
    std::fs::write(&pipeline, text).unwrap();
    let habd = Habd::start(&world).await;
    let (_, refs) = call(habd.api(reqwest::Method::GET, "/pipelines/node/refs")).await;
    let refs: Vec<RefView> = typed(&refs);
    let names: Vec<&str> = refs.iter().map(|r| r.stored.name.as_str()).collect();
    assert_eq!(names, ["refs/tags/v1.0.0"]);
    assert!(habd
        .store
        .get_ref("node", "refs/heads/master")
        .unwrap()
        .is_some());
    habd.stop().await;
}
