//! Fault injection on the build pipeline, against the real parts: a dockerd
//! of the test's own killed and restarted mid-build, the registry killed
//! mid-publish and answering 500s for a while, the state folder on a full
//! filesystem, and habd itself killed with SIGKILL during a sync, a build, a
//! publish and a verification.
//!
//! Each test shows what the operator sees (the state and reason over the
//! API or habctl), that nothing half-done is VERIFIED, has its keys recorded
//! as built, is tagged with its version or is moved onto a channel, and that
//! the next trigger (a build of the same ref, the next sync, the queue after
//! a restart) recovers and ends VERIFIED.
//!
//! Faults are timed from the API (a build's state, a platform's stage, its
//! output) and made to last by freezing the part they hit (SIGSTOP of the
//! registry or of the builder, a proxy holding requests, a relay holding
//! the fetch), or, to hit a step BuildKit runs, by a step that runs 15 s
//! the first time; no outcome depends on how long anything takes.

mod common;

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::Command,
    sync::{
        atomic::{AtomicBool, AtomicU32, Ordering},
        Arc, Mutex, OnceLock,
    },
    time::{Duration, Instant},
};

use common::*;
use serde_json::Value;

const ARM64: &str = r#"["linux/arm64"]"#;
/// The fixture node's smoke command.
const FIXTURE_SMOKE: &str = r#"["fixture-node", "--version"]"#;
/// The smoke command of the busybox recipes.
const BUSYBOX_SMOKE: &str = r#"["/bin/busybox", "true"]"#;
/// An `edge` channel that advances by itself when a build verifies: a
/// half-done build must never move it.
const EDGE: &str = "[[channel]]\nname = \"edge\"\nauto = true\n";
const LOCAL_DOCKER: &str = "unix:///var/run/docker.sock";

// ---------------------------------------------------------------------------
// The world: hab.toml, recipes, waiting on the API, what must not happen.

/// A `[[builder]]` table.
fn builder(name: &str, endpoint: &str, platforms: &str) -> String {
    let emulated = if platforms.contains("arm64") {
        "emulated = [\"linux/arm64\"]\n"
    } else {
        ""
    };
    format!(
        "[[builder]]\nname = \"{name}\"\nendpoint = \"{endpoint}\"\nplatforms = {platforms}\n{emulated}"
    )
}

/// hab.toml: state and pipelines in the world, the registry at `registry`
/// (a URL), these builders, and the test's API token (for habd processes).
fn write_hab(bw: &BuildWorld, registry: &str, builders: &str) -> PathBuf {
    let path = bw.world.path("hab.toml");
    std::fs::write(
        &path,
        format!(
            "state_dir = \"state\"\npipelines_dir = \"pipelines\"\n\
             [api]\ntokens = [\"{TOKEN}\"]\n\
             [registry]\nurl = \"{registry}\"\n{builders}"
        ),
    )
    .unwrap();
    path
}

/// A recipe whose one step, for `slow_version` only, runs for 15 s the
/// first time a builder runs it and briefly after: it leaves a mark in a
/// BuildKit cache mount (which outlives a cancelled step), so a fault can
/// hit the step while it runs and the build that recovers is quick. A
/// builder killed with SIGKILL loses the mark: the build that recovers is
/// only slower.
fn slow_first_recipe(bw: &BuildWorld, slow_version: &str) -> PathBuf {
    let script = format!(
        "if [ \"$VERSION\" = {slow_version} ] && [ ! -e /cache/seen ]; then \
         /bin/busybox touch /cache/seen; echo started a long step; /bin/busybox sleep 15; \
         else echo nothing to wait for; fi"
    );
    bw.recipe(
        "slow-first",
        &format!(
            "FROM scratch\nARG TARGETARCH\nARG VERSION\n\
             COPY base/busybox-${{TARGETARCH}} /bin/busybox\n\
             RUN --mount=type=cache,id=hab-faults-{:x},target=/cache [\"/bin/busybox\", \"sh\", \"-c\", {}]\n",
            rand::random::<u64>(),
            Value::String(script)
        ),
    )
}

/// `GET /builds/{id}`.
async fn build(habd: &Habd, id: i64) -> Value {
    let (s, b) = call(habd.api(reqwest::Method::GET, &format!("/builds/{id}"))).await;
    assert_eq!(s, 200, "{b}");
    b
}

/// A platform's stage in a build.
fn stage<'a>(b: &'a Value, platform: &str) -> &'a str {
    b["platforms"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["platform"] == platform))
        .and_then(|p| p["stage"].as_str())
        .unwrap_or("")
}

/// Polls a build until `ready` holds; returns it then.
async fn until_build(habd: &Habd, id: i64, what: &str, ready: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let b = build(habd, id).await;
        if ready(&b) {
            return b;
        }
        assert!(
            Instant::now() < deadline,
            "build {id} never got {what}: {b}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls a build's output until it holds `needle`.
async fn until_log(habd: &Habd, id: i64, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(300);
    while !logs(habd, id).await.contains(needle) {
        let ended = build(habd, id).await["finished_at"].is_string();
        assert!(
            Instant::now() < deadline && !ended,
            "build {id} never said {needle:?}:\n{}",
            logs(habd, id).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls `cond` (a blocking check) until it holds.
async fn until(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(300);
    while !cond() {
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls the queue until nothing of it runs.
async fn until_queue_idle(habd: &Habd) {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let (s, q) = call(habd.api(reqwest::Method::GET, "/queue?pipeline=node")).await;
        assert_eq!(s, 200, "{q}");
        let items = q.as_array().unwrap();
        if items
            .iter()
            .all(|i| i["state"] != "running" && i["state"] != "pending")
        {
            return;
        }
        assert!(Instant::now() < deadline, "the queue never ends: {q}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Starts a build of `tag` (202) and returns its id.
async fn build_started(habd: &Habd, tag: &str) -> i64 {
    let (s, b) = start_build(habd, tag).await;
    assert_eq!(s, 202, "{b}");
    b["id"].as_i64().unwrap()
}

/// The build of `tag` newer than `after` (the one the queue ran again
/// after a restart), once it exists.
async fn build_after(habd: &Habd, tag: &str, after: i64) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let (s, list) = call(habd.api(reqwest::Method::GET, "/builds?pipeline=node")).await;
        assert_eq!(s, 200, "{list}");
        let found = list
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["version"] == tag && b["id"].as_i64().is_some_and(|id| id > after));
        if let Some(b) = found {
            return b["id"].as_i64().unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "no build of {tag} after {after}: {list}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What a build that did not finish must never have: VERIFIED, its keys
/// recorded as built, the version tag on its index, a channel moved to it.
async fn assert_not_verified_anywhere(habd: &Habd, registry: &TestRegistry, b: &Value) {
    let id = b["id"].as_i64().unwrap();
    assert_ne!(b["state"], "verified", "{b}");
    assert_eq!(b["verified"], false, "{b}");
    for key in b["build_keys"].as_object().unwrap().values() {
        assert!(
            habd.store
                .verified_key(key.as_str().unwrap(), "hab/node")
                .unwrap()
                .is_none_or(|k| k.build_id != id),
            "build {id}'s key {key} is recorded as built"
        );
    }
    let version = b["version"].as_str().unwrap();
    let (s, _) = call(
        client()
            .head(format!(
                "{}/v2/hab/node/manifests/{version}",
                registry.url()
            ))
            .header("Accept", "application/vnd.oci.image.index.v1+json"),
    )
    .await;
    if s == 200 {
        // Only a verified build of the same version may hold the tag.
        let digest = tag_digest(registry, version).await;
        assert_ne!(
            b["index_digest"].as_str(),
            Some(digest.as_str()),
            "{version} is tagged on build {id}'s index"
        );
    }
    let (s, ch) = call(habd.api(reqwest::Method::GET, "/pipelines/node/channels")).await;
    assert_eq!(s, 200, "{ch}");
    assert!(
        ch["moves"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["build_id"].as_i64() != Some(id)),
        "a channel moved to build {id}: {ch}"
    );
}

/// The digest the registry holds under `repository:tag`.
async fn tag_digest(registry: &TestRegistry, tag: &str) -> String {
    let res = client()
        .head(format!("{}/v2/hab/node/manifests/{tag}", registry.url()))
        .header("Accept", "application/vnd.oci.image.index.v1+json")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "no tag {tag}");
    res.headers()["docker-content-digest"]
        .to_str()
        .unwrap()
        .to_string()
}

/// Where `edge` points: its build id.
async fn edge(habd: &Habd) -> Option<i64> {
    let (s, ch) = call(habd.api(reqwest::Method::GET, "/pipelines/node/channels")).await;
    assert_eq!(s, 200, "{ch}");
    ch["channels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "edge")
        .and_then(|c| c["current"]["build_id"].as_i64())
}

/// Waits for a build to end VERIFIED, with `edge` on it and its version tag
/// on its index.
async fn assert_recovers(habd: &Habd, registry: &TestRegistry, id: i64) -> Value {
    let b = wait_build(habd, id).await;
    assert_eq!(b["state"], "verified", "{b}");
    assert_eq!(
        edge(habd).await,
        Some(id),
        "edge follows the verified build"
    );
    let version = b["version"].as_str().unwrap();
    assert_eq!(
        tag_digest(registry, version).await,
        b["index_digest"].as_str().unwrap()
    );
    b
}

/// habctl's table of builds.
async fn habctl_builds(habd: &Habd) -> String {
    let mut c = habctl(habd);
    c.args(["builds", "--pipeline", "node"]);
    tokio::task::spawn_blocking(move || run(&mut c))
        .await
        .unwrap()
}

/// A TCP relay in front of `git daemon` that holds new connections (accepted,
/// nothing relayed) while `hold` is set: a sync is then surely in flight,
/// its fetch waiting for upstream, for as long as a test needs.
struct GitRelay {
    port: u16,
    hold: Arc<AtomicBool>,
    /// Connections held now.
    held: Arc<AtomicU32>,
    task: tokio::task::JoinHandle<()>,
}

impl GitRelay {
    async fn start(daemon_port: u16) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let hold = Arc::new(AtomicBool::new(false));
        let held = Arc::new(AtomicU32::new(0));
        let (h, n) = (hold.clone(), held.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let (h, n) = (h.clone(), n.clone());
                tokio::spawn(async move {
                    if h.load(Ordering::SeqCst) {
                        n.fetch_add(1, Ordering::SeqCst);
                        while h.load(Ordering::SeqCst) {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                        n.fetch_sub(1, Ordering::SeqCst);
                    }
                    if let Ok(mut out) =
                        tokio::net::TcpStream::connect(("127.0.0.1", daemon_port)).await
                    {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                    }
                });
            }
        });
        GitRelay {
            port,
            hold,
            held,
            task,
        }
    }

    /// The upstream's URL through the relay.
    fn url(&self) -> String {
        format!("git://127.0.0.1:{}/node.git", self.port)
    }
}

impl Drop for GitRelay {
    fn drop(&mut self) {
        self.hold.store(false, Ordering::SeqCst);
        self.task.abort();
    }
}

/// Points the `node` pipeline's upstream at `url`.
fn set_upstream(bw: &BuildWorld, url: &str) {
    let path = bw.world.path("pipelines/node.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replace(&bw.world.daemon.url("node.git"), url)).unwrap();
}

// ---------------------------------------------------------------------------
// 1. The builder's dockerd killed mid-build.

/// The builder's dockerd is killed with SIGKILL while BuildKit runs a step
/// of the build, and started again: the build ends FAILED with a reason
/// naming the builder; nothing is verified, tagged or moved; the next build
/// of the ref verifies on the restarted builder.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builder_dockerd_killed_mid_build() {
    let bw = BuildWorld::new();
    let registry = TestRegistry::start(&bw.world.path("registry"), None, None);
    let mut dockerd = PrivateDockerd::start(&bw.world.path("dockerd"));
    write_hab(
        &bw,
        &registry.url(),
        &builder("private", &dockerd.endpoint(), AMD64),
    );
    let recipe = slow_first_recipe(&bw, "v1.0.0");
    bw.write_pipeline("node", &recipe, AMD64, BUSYBOX_SMOKE, EDGE);
    let habd = Habd::start_config(bw.load()).await;
    assert_eq!(habd.sync_node().await.0, 200);

    let id = build_started(&habd, "v1.0.0").await;
    until_log(&habd, id, "started a long step").await;
    assert_eq!(stage(&build(&habd, id).await, "linux/amd64"), "building");
    tokio::task::block_in_place(|| dockerd.kill9_and_restart());

    let b = wait_build(&habd, id).await;
    assert_eq!(b["state"], "failed", "{b}");
    let reason = b["reason"].as_str().unwrap();
    assert!(reason.contains("builder private"), "{reason}");
    assert_not_verified_anywhere(&habd, &registry, &b).await;
    assert_eq!(edge(&habd).await, None);
    let table = habctl_builds(&habd).await;
    assert!(table.contains("FAILED"), "{table}");

    // The next build of the ref, on the builder that came back.
    let again = build_started(&habd, "v1.0.0").await;
    assert_ne!(again, id);
    assert_recovers(&habd, &registry, again).await;
    habd.stop().await;
}

// ---------------------------------------------------------------------------
// 2. The registry killed mid-publish.

/// The registry is killed with SIGKILL while a platform is pushing, after
/// the other platform's image went in: the build ends FAILED with a reason
/// naming the registry; nothing is verified, tagged or moved, and the
/// half-published release (one platform's image, no index) is never
/// listed; started again on the same port and storage, the next build of
/// the ref verifies (the image already there is not uploaded again).
///
/// amd64 builds on the shared dockerd, arm64 on a private one held frozen
/// until amd64 is pushed; the registry is frozen (SIGSTOP) before arm64
/// publishes, so its push is surely in flight when the registry dies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_killed_mid_publish() {
    let bw = BuildWorld::new();
    let mut registry = TestRegistry::start(&bw.world.path("registry"), None, None);
    let arm = PrivateDockerd::start(&bw.world.path("dockerd"));
    write_hab(
        &bw,
        &registry.url(),
        &format!(
            "{}{}",
            builder("amd", LOCAL_DOCKER, AMD64),
            builder("arm", &arm.endpoint(), ARM64)
        ),
    );
    bw.write_pipeline("node", &fixture_recipe(), BOTH, FIXTURE_SMOKE, EDGE);
    let habd = Habd::start_config(bw.load()).await;
    assert_eq!(habd.sync_node().await.0, 200);

    arm.freeze();
    let id = build_started(&habd, "v1.0.0").await;
    let b = until_build(&habd, id, "amd64 pushed", |b| {
        stage(b, "linux/amd64") == "pushed"
    })
    .await;
    let amd64_image = b["digests"]["linux/amd64"].as_str().unwrap().to_string();
    registry.freeze();
    arm.thaw();
    until_build(&habd, id, "arm64 pushing", |b| {
        stage(b, "linux/arm64") == "pushing"
    })
    .await;
    registry.kill9();

    let b = wait_build(&habd, id).await;
    assert_eq!(b["state"], "failed", "{b}");
    let reason = b["reason"].as_str().unwrap();
    assert!(
        reason.contains(&format!("registry at {}", registry.url()))
            && reason.contains("not reachable")
            && reason.contains("gave up after 5 attempts"),
        "{reason}"
    );
    assert!(b["index_digest"].is_null(), "{b}");
    registry.start_again();
    assert_not_verified_anywhere(&habd, &registry, &b).await;
    assert_eq!(edge(&habd).await, None);
    // What did go in stays as it was: amd64's image, no index of the build.
    let manifest = |reference: &str| {
        client()
            .head(format!(
                "{}/v2/hab/node/manifests/{reference}",
                registry.url()
            ))
            .header(
                "Accept",
                "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json",
            )
    };
    let (s, _) = call(manifest(&amd64_image)).await;
    assert_eq!(s, 200, "amd64's image went in before the registry died");
    let (s, _) = call(manifest(&format!("build-{id}"))).await;
    assert_eq!(s, 404, "the half-published build has no index");

    let again = build_started(&habd, "v1.0.0").await;
    let b = assert_recovers(&habd, &registry, again).await;
    assert!(
        b["platforms"][0]["blobs_skipped"].as_i64().unwrap() > 0,
        "{b}"
    );
    habd.stop().await;
}

// ---------------------------------------------------------------------------
// 3. The registry answering 500 for a while.

/// An HTTP proxy in front of a registry that injects faults: 500 to every
/// request while `failing` is set or to the next `fail_next` requests, and
/// holds blob uploads or blob reads (without answering) while asked to.
struct FaultProxy {
    port: u16,
    faults: Arc<Faults>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

#[derive(Default)]
struct Faults {
    /// Answer 500 to every request while set.
    failing: AtomicBool,
    /// Answer 500 to this many requests of the repository API, then
    /// forward again (not to `GET /v2/`: oci-client asks it before every
    /// request for a token, and takes a 500 as "none needed").
    fail_next: AtomicU32,
    /// Requests answered 500 so far.
    failed: AtomicU32,
    /// Hold blob uploads (under `/blobs/uploads/`) while set.
    hold_uploads: AtomicBool,
    /// Hold blob reads (`GET …/blobs/sha256:…`) while set.
    hold_reads: AtomicBool,
    /// Requests held now.
    held: AtomicU32,
}

impl FaultProxy {
    /// Listens on `port`, forwarding to `upstream` (`127.0.0.1:5000`).
    async fn start(port: u16, upstream: String) -> Self {
        use axum::{body::Body, extract::Request, response::Response};
        let faults = Arc::new(Faults::default());
        let f = faults.clone();
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let app = axum::Router::new().fallback(move |req: Request| {
            let (http, upstream, f) = (http.clone(), upstream.clone(), f.clone());
            async move {
                let (parts, body) = req.into_parts();
                let path = parts
                    .uri
                    .path_and_query()
                    .map(|p| p.as_str().to_string())
                    .unwrap_or_default();
                let hold = if path.contains("/blobs/uploads/") {
                    Some(&f.hold_uploads)
                } else if parts.method == "GET" && path.contains("/blobs/sha256:") {
                    Some(&f.hold_reads)
                } else {
                    None
                };
                if let Some(hold) = hold.filter(|h| h.load(Ordering::SeqCst)) {
                    f.held.fetch_add(1, Ordering::SeqCst);
                    while hold.load(Ordering::SeqCst) {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    f.held.fetch_sub(1, Ordering::SeqCst);
                }
                let fail = f.failing.load(Ordering::SeqCst)
                    || (path != "/v2/"
                        && f.fail_next
                            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                            .is_ok());
                if fail {
                    f.failed.fetch_add(1, Ordering::SeqCst);
                    return Response::builder()
                        .status(500)
                        .body(Body::from("injected fault: the registry is unavailable"))
                        .unwrap();
                }
                let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
                let mut out =
                    http.request(parts.method.clone(), format!("http://{upstream}{path}"));
                for (k, v) in parts.headers.iter() {
                    if k != "host" {
                        out = out.header(k, v);
                    }
                }
                let Ok(resp) = out.body(body).send().await else {
                    return Response::builder()
                        .status(502)
                        .body(Body::from("the registry behind the proxy is down"))
                        .unwrap();
                };
                let mut r = Response::builder().status(resp.status());
                for (k, v) in resp.headers().iter() {
                    if k != "transfer-encoding" {
                        r = r.header(k, v);
                    }
                }
                r.body(Body::from(resp.bytes().await.unwrap_or_default()))
                    .unwrap()
            }
        });
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        let tx = serve_in_background(listener, app);
        FaultProxy {
            port,
            faults,
            stop: Some(tx),
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        // Let held requests go, so the server can stop.
        self.faults.hold_uploads.store(false, Ordering::SeqCst);
        self.faults.hold_reads.store(false, Ordering::SeqCst);
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// habd's log lines (the `tracing` output of this test binary, every test's).
fn captured_logs() -> &'static Mutex<Vec<u8>> {
    static LOGS: OnceLock<&'static Mutex<Vec<u8>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs: &'static Mutex<Vec<u8>> = Box::leak(Box::new(Mutex::new(Vec::new())));
        struct Sink(&'static Mutex<Vec<u8>>);
        impl Write for Sink {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let _ = tracing_subscriber::fmt()
            .with_env_filter("hab=info")
            .with_ansi(false)
            .with_writer(move || Sink(logs))
            .try_init();
        logs
    })
}

/// The captured log lines that hold `needle`.
fn log_lines(needle: &str) -> Vec<String> {
    let logs = captured_logs().lock().unwrap_or_else(|e| e.into_inner());
    String::from_utf8_lossy(&logs)
        .lines()
        .filter(|l| l.contains(needle))
        .map(str::to_string)
        .collect()
}

/// The registry answers 500 to everything for a while. A short outage (the
/// publish's first two requests) is ridden out by retries, each one a line
/// in habd's log, and the build verifies; a long one (every request until
/// the build gives up) ends the build FAILED with the status and the URL
/// in its reason, nothing verified, tagged or moved; once the registry is
/// back the next build of the ref verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_answering_500s() {
    captured_logs();
    let bw = BuildWorld::with_node_releases();
    let proxy_port = free_port();
    let registry = TestRegistry::start(&bw.world.path("registry"), None, Some(proxy_port));
    let proxy = FaultProxy::start(proxy_port, registry.host()).await;
    write_hab(&bw, &proxy.url(), &builder("local", LOCAL_DOCKER, AMD64));
    bw.write_pipeline("node", &fixture_recipe(), AMD64, FIXTURE_SMOKE, EDGE);
    let habd = Habd::start_config(bw.load()).await;
    assert_eq!(habd.sync_node().await.0, 200);

    // A short outage, starting as the build runs (after its start checked
    // the registry): the publish's first three requests for blobs answer
    // 500 (three of the four blobs, asked for at once).
    let short = build_started(&habd, "v1.0.0").await;
    proxy.faults.fail_next.store(3, Ordering::SeqCst);
    let b = assert_recovers(&habd, &registry, short).await;
    assert_eq!(proxy.faults.failed.load(Ordering::SeqCst), 3, "{b}");
    let retries = log_lines(&format!("registry={}", proxy.url()));
    assert!(
        retries.len() == 3
            && retries.iter().all(|l| l.contains("WARN")
                && l.contains("HTTP 500")
                && l.contains("trying again in")),
        "one log line per retry: {retries:#?}"
    );

    // A long outage: every request answers 500 until the build gives up.
    let id = build_started(&habd, "v1.1.0").await;
    proxy.faults.failing.store(true, Ordering::SeqCst);
    let b = wait_build(&habd, id).await;
    proxy.faults.failing.store(false, Ordering::SeqCst);
    assert_eq!(b["state"], "failed", "{b}");
    let reason = b["reason"].as_str().unwrap();
    assert!(
        reason.contains("500")
            && reason.contains(&format!("{}/v2/hab/node/", proxy.url()))
            && reason.contains("gave up after 5 attempts"),
        "{reason}"
    );
    assert_not_verified_anywhere(&habd, &registry, &b).await;
    assert_eq!(edge(&habd).await, Some(short), "edge stays where it was");
    let out = run(habctl(&habd).args(["show", &id.to_string()]));
    assert!(out.contains("FAILED") && out.contains("500"), "{out}");

    // The registry is back: the next build of the ref verifies.
    let again = build_started(&habd, "v1.1.0").await;
    assert_recovers(&habd, &registry, again).await;
    habd.stop().await;
}

// ---------------------------------------------------------------------------
// 4. The state folder on a full filesystem.

/// A tmpfs of `size` mounted on a folder for one test, unmounted on drop
/// (also when the test panics).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        run(Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir));
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fills the filesystem of `dir` to the last byte; returns the filler.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .unwrap();
    for chunk in [1 << 20, 4096, 1] {
        let buf = vec![0u8; chunk];
        while f.write_all(&buf).is_ok() {}
    }
    let _ = f.sync_all();
    path
}

/// SQLite's own check of the store file: "ok" when nothing is corrupt.
fn integrity(db: &Path) -> String {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap()
}

/// The stored refs: name → verdict.
async fn refs(habd: &Habd) -> Vec<(String, String)> {
    let (s, refs) = call(habd.api(reqwest::Method::GET, "/pipelines/node/refs")).await;
    assert_eq!(s, 200, "{refs}");
    refs.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_string(),
                r["verdict"]["verdict"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// The state folder (mirror, store, export archives) on a 64 MB tmpfs,
/// filled to the last byte before a sync and during a build: the sync
/// fails saying there is no space and records nothing; the build ends
/// FAILED saying so once its end can be recorded; habd answers all along,
/// what was recorded before is intact, SQLite finds its file sound, and
/// once space is freed the next sync and the next build succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_folder_on_a_full_filesystem() {
    let bw = BuildWorld::with_node_releases();
    let state = bw.world.path("state");
    let _tmpfs = Tmpfs::mount(&state, "64m");
    let registry = TestRegistry::start(&bw.world.path("registry"), None, None);
    let dockerd = PrivateDockerd::start(&bw.world.path("dockerd"));
    write_hab(
        &bw,
        &registry.url(),
        &builder("private", &dockerd.endpoint(), AMD64),
    );
    bw.write_pipeline("node", &fixture_recipe(), AMD64, FIXTURE_SMOKE, EDGE);
    let relay = GitRelay::start(bw.world.daemon.port).await;
    set_upstream(&bw, &relay.url());
    captured_logs();
    let habd = Habd::start_config(bw.load()).await;
    let db = state.join("hab.sqlite3");
    assert_eq!(habd.sync_node().await.0, 200);
    let first = build_of(&habd, "node", "v1.0.0").await;
    let before = refs(&habd).await;

    // Upstream publishes a release; the disk is full when habd syncs: the
    // store cannot even queue the sync, and says why.
    let up = &bw.world.upstream;
    let c = up.commit("release 1.4");
    up.signed_tag(&bw.world.gpg, &bw.fpr, "v1.4.0", &c, T2020_02_01);
    let filler = fill(&state);
    let (s, r) = habd.sync_node().await;
    assert_eq!(s, 500, "{r}");
    let reason = r["error"].as_str().unwrap();
    assert!(
        reason.starts_with("no space left on device for the state store")
            && reason.contains("nothing of this change was recorded"),
        "{reason}"
    );
    std::fs::remove_file(&filler).unwrap();

    // The disk fills while a sync runs (its fetch held until it is full):
    // the fetch cannot write upstream's objects, the sync fails saying so.
    relay.hold.store(true, Ordering::SeqCst);
    let sync = tokio::spawn(call(
        habd.api(reqwest::Method::POST, "/pipelines/node/sync"),
    ));
    until("the sync's fetch reached upstream", || {
        relay.held.load(Ordering::SeqCst) > 0
    })
    .await;
    let filler = fill(&state);
    relay.hold.store(false, Ordering::SeqCst);
    let (s, r) = sync.await.unwrap();
    assert_eq!(s, 502, "{r}");
    let failed_sync = r["detail"]["sync_id"].as_i64().unwrap();
    let reason = r["error"].as_str().unwrap();
    assert!(
        reason.to_lowercase().contains("no space left on device"),
        "{reason}"
    );
    // habd answers, and what it had recorded is as it was.
    assert_eq!(refs(&habd).await, before);
    let b = build(&habd, first["id"].as_i64().unwrap()).await;
    assert_eq!(b["state"], "verified", "{b}");
    assert_eq!(b["index_digest"], first["index_digest"], "{b}");
    assert_eq!(integrity(&db), "ok");
    // Space again: habd records the end of what it ran, and the next sync
    // records the release.
    std::fs::remove_file(&filler).unwrap();
    until_queue_idle(&habd).await;
    let (s, r) = habd.sync_node().await;
    assert_eq!(s, 200, "{r}");
    assert!(
        refs(&habd)
            .await
            .contains(&("refs/tags/v1.4.0".into(), "verified".into())),
        "{r}"
    );
    let (_, syncs) = call(habd.api(reqwest::Method::GET, "/pipelines/node/syncs")).await;
    let syncs = syncs.as_array().unwrap();
    assert!(
        syncs.iter().all(|s| s["status"] != "running"),
        "no sync is left running: {syncs:?}"
    );
    let failed = syncs.iter().find(|s| s["id"] == failed_sync).unwrap();
    assert_eq!(failed["status"], "failed", "{failed}");
    assert!(failed["error"].is_string(), "{failed}");

    // The disk fills while a build runs (its builder held until it is
    // full): the build cannot write its image out, nor, for a while, say so.
    dockerd.freeze();
    let id = build_started(&habd, "v1.1.0").await;
    let filler = fill(&state);
    dockerd.thaw();
    // (The reason names the archive in this test's state folder.)
    let unrecorded = format!("cannot record the end of build {id} ");
    let here = state.to_string_lossy().into_owned();
    until(
        "the build ended, or habd said it cannot record that",
        || {
            habd.store
                .build(id)
                .unwrap()
                .is_some_and(|b| b.state.is_final())
                || log_lines(&unrecorded).iter().any(|l| l.contains(&here))
        },
    )
    .await;
    assert_eq!(integrity(&db), "ok");
    std::fs::remove_file(&filler).unwrap();
    let b = wait_build(&habd, id).await;
    assert_eq!(b["state"], "failed", "{b}");
    let reason = b["reason"].as_str().unwrap();
    assert!(
        reason.to_lowercase().contains("no space left on device"),
        "{reason}"
    );
    assert_not_verified_anywhere(&habd, &registry, &b).await;
    assert_eq!(edge(&habd).await, first["id"].as_i64());
    assert_eq!(integrity(&db), "ok");

    // The next build of the ref.
    let again = build_started(&habd, "v1.1.0").await;
    assert_recovers(&habd, &registry, again).await;
    habd.stop().await;
}

// ---------------------------------------------------------------------------
// 5. habd killed with SIGKILL during a sync, a build, a publish, a verification.

/// The pipeline's syncs, newest first.
async fn syncs(habd: &Habd) -> Vec<Value> {
    let (s, list) = call(habd.api(reqwest::Method::GET, "/pipelines/node/syncs")).await;
    assert_eq!(s, 200, "{list}");
    list.as_array().unwrap().clone()
}

/// After a kill at `what`: the build that was running is INTERRUPTED with
/// its reason (and nothing of it verified, tagged or moved), and the queue
/// runs it again after the restart until it is VERIFIED. Returns the build
/// that recovered.
async fn interrupted_then_recovered(
    habd: &Habd,
    registry: &TestRegistry,
    id: i64,
    tag: &str,
    what: &str,
) -> Value {
    let b = build(habd, id).await;
    assert_eq!(b["state"], "interrupted", "killed during {what}: {b}");
    let reason = b["reason"].as_str().unwrap();
    assert!(reason.contains("habd stopped during the build"), "{reason}");
    assert_not_verified_anywhere(habd, registry, &b).await;
    let again = build_after(habd, tag, id).await;
    let recovered = assert_recovers(habd, registry, again).await;
    assert!(
        recovered["trigger"].as_str().unwrap().contains("restart"),
        "the queue ran it again after the restart: {recovered}"
    );
    recovered
}

/// habd killed with SIGKILL and started again, four times: while a sync
/// fetches, while a platform builds, while a platform pushes, while the
/// index is read back. After each restart the interrupted work is on record
/// as `interrupted` with its reason, none of it applied, VERIFIED, tagged
/// with its version or moved onto a channel; the queue runs it again and it
/// ends `ok` / VERIFIED.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn habd_killed_during_sync_build_publish_and_verification() {
    let bw = BuildWorld::with_node_releases();
    let relay = GitRelay::start(bw.world.daemon.port).await;
    let proxy_port = free_port();
    let registry = TestRegistry::start(&bw.world.path("registry"), None, Some(proxy_port));
    let proxy = FaultProxy::start(proxy_port, registry.host()).await;
    let dockerd = PrivateDockerd::start(&bw.world.path("dockerd"));
    let config = write_hab(
        &bw,
        &proxy.url(),
        &builder("private", &dockerd.endpoint(), AMD64),
    );
    let recipe = slow_first_recipe(&bw, "v1.0.0");
    bw.write_pipeline("node", &recipe, AMD64, BUSYBOX_SMOKE, EDGE);
    set_upstream(&bw, &relay.url());
    let port = free_port();
    let mut process = HabdProcess::start_quiet(&config, port);
    let habd = Habd::external(
        format!("http://127.0.0.1:{port}"),
        hab::store::Store::open(&bw.world.path("state/hab.sqlite3")).unwrap(),
    );
    let mut kill9_and_restart = || tokio::task::block_in_place(|| process.kill9_and_restart());

    // During a sync: its fetch is held at upstream.
    relay.hold.store(true, Ordering::SeqCst);
    let sync = tokio::spawn(
        habd.api(reqwest::Method::POST, "/pipelines/node/sync")
            .send(),
    );
    until("the sync's fetch reached upstream", || {
        relay.held.load(Ordering::SeqCst) > 0
    })
    .await;
    assert_eq!(syncs(&habd).await[0]["status"], "running");
    kill9_and_restart();
    assert!(sync.await.unwrap().is_err(), "its request died with habd");
    let killed = syncs(&habd).await.last().cloned().unwrap();
    assert_eq!(killed["status"], "interrupted", "{killed}");
    assert!(
        killed["error"]
            .as_str()
            .unwrap()
            .contains("nothing of it was applied"),
        "{killed}"
    );
    assert!(refs(&habd).await.is_empty(), "nothing of it was applied");
    relay.hold.store(false, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(120);
    while syncs(&habd).await[0]["status"] != "ok" {
        assert!(Instant::now() < deadline, "{:?}", syncs(&habd).await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(refs(&habd)
        .await
        .contains(&("refs/tags/v1.0.0".into(), "verified".into())));

    // During a build: BuildKit runs a step.
    let id = build_started(&habd, "v1.0.0").await;
    until_log(&habd, id, "started a long step").await;
    assert_eq!(stage(&build(&habd, id).await, "linux/amd64"), "building");
    kill9_and_restart();
    interrupted_then_recovered(&habd, &registry, id, "v1.0.0", "a build").await;
    let out = run(habctl(&habd).args(["show", &id.to_string()]));
    assert!(
        out.contains("INTERRUPTED") && out.contains("habd stopped during the build"),
        "{out}"
    );

    // During a publish: a blob upload is held at the registry.
    proxy.faults.hold_uploads.store(true, Ordering::SeqCst);
    let id = build_started(&habd, "v1.1.0").await;
    until_build(&habd, id, "a held upload", |b| {
        stage(b, "linux/amd64") == "pushing" && proxy.faults.held.load(Ordering::SeqCst) > 0
    })
    .await;
    kill9_and_restart();
    proxy.faults.hold_uploads.store(false, Ordering::SeqCst);
    interrupted_then_recovered(&habd, &registry, id, "v1.1.0", "a publish").await;

    // During a verification: the read-back of a blob is held.
    proxy.faults.hold_reads.store(true, Ordering::SeqCst);
    let id = build_started(&habd, "v1.2.0").await;
    until_build(&habd, id, "a held read-back", |b| {
        b["state"] == "verifying" && proxy.faults.held.load(Ordering::SeqCst) > 0
    })
    .await;
    kill9_and_restart();
    proxy.faults.hold_reads.store(false, Ordering::SeqCst);
    let b = build(&habd, id).await;
    assert!(b["index_digest"].is_string(), "its index was pushed: {b}");
    interrupted_then_recovered(&habd, &registry, id, "v1.2.0", "a verification").await;
    drop(process);
}
