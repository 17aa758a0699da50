//! What a build leaves behind (issue 13, item 5): each platform's image is
//! exported to `state_dir/tmp/build-<id>-<arch>.tar` and tagged locally on
//! the builder until it is pushed. A cancelled build removes both; a habd
//! killed mid-build has its next start sweep them. Real dockerd, a registry
//! per test behind a proxy that can hold blob uploads (so a build stays
//! mid-push), a FIFO as the archive (so a build stays mid-export), the habd
//! binary killed with SIGKILL.

mod common;

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use common::*;
use serde_json::{json, Value};

/// An HTTP proxy in front of a registry that, while `hold` is set, keeps
/// every blob upload waiting (and counts them in `held`).
struct HoldingProxy {
    hold: Arc<AtomicBool>,
    held: Arc<AtomicUsize>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl HoldingProxy {
    async fn start(port: u16, upstream: String) -> Self {
        use axum::{body::Body, extract::Request, response::Response};
        let hold = Arc::new(AtomicBool::new(false));
        let held = Arc::new(AtomicUsize::new(0));
        let (h, n) = (hold.clone(), held.clone());
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let app = axum::Router::new().fallback(move |req: Request| {
            let (http, upstream, hold, held) =
                (http.clone(), upstream.clone(), h.clone(), n.clone());
            async move {
                let (parts, body) = req.into_parts();
                let path = parts
                    .uri
                    .path_and_query()
                    .map(|p| p.as_str().to_string())
                    .unwrap_or_default();
                let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
                let upload = parts.method != "GET"
                    && parts.method != "HEAD"
                    && path.contains("/blobs/uploads");
                if upload && hold.load(Ordering::SeqCst) {
                    held.fetch_add(1, Ordering::SeqCst);
                    while hold.load(Ordering::SeqCst) {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
                let mut out =
                    http.request(parts.method.clone(), format!("http://{upstream}{path}"));
                for (k, v) in parts.headers.iter() {
                    if k != "host" {
                        out = out.header(k, v);
                    }
                }
                let resp = out.body(body).send().await.unwrap();
                let mut r = Response::builder().status(resp.status());
                for (k, v) in resp.headers().iter() {
                    if k != "transfer-encoding" {
                        r = r.header(k, v);
                    }
                }
                r.body(Body::from(resp.bytes().await.unwrap())).unwrap()
            }
        });
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        HoldingProxy {
            hold,
            held,
            _stop: serve_in_background(listener, app),
        }
    }
}

/// The local tags on dockerd of builds of `pipeline`.
fn local_tags(pipeline: &str) -> Vec<String> {
    docker(&["images", "--format", "{{.Repository}}:{{.Tag}}"])
        .lines()
        .filter(|l| l.starts_with(&format!("hab-build/{pipeline}:")))
        .map(str::to_string)
        .collect()
}

fn archives(state: &Path) -> Vec<String> {
    match std::fs::read_dir(state.join("tmp")) {
        Ok(d) => d
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("build-"))
            .collect(),
        Err(_) => Vec::new(),
    }
}

async fn get_build(habd: &Habd, id: i64) -> Value {
    let (s, b) = call(habd.api(reqwest::Method::GET, &format!("/builds/{id}"))).await;
    assert_eq!(s, 200, "{b}");
    b
}

async fn start(habd: &Habd, pipeline: &str, r: &str) -> i64 {
    let (s, b) = call(
        habd.api(
            reqwest::Method::POST,
            &format!("/pipelines/{pipeline}/builds"),
        )
        .json(&json!({ "ref": r })),
    )
    .await;
    assert_eq!(s, 202, "{b}");
    b["id"].as_i64().unwrap()
}

/// Waits until build `id`'s amd64 platform is at `stage` and `also` holds.
async fn until_stage(habd: &Habd, id: i64, stage: &str, also: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let b = get_build(habd, id).await;
        if b["platforms"][0]["stage"] == stage && also() {
            return;
        }
        assert!(Instant::now() < deadline, "build {id} never {stage}: {b}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Holds the export of a build mid-way: `archive` is a FIFO whose reader
/// takes the first bytes and then stops reading, so the export blocks once
/// the pipe is full. `started` fires when the first bytes arrived; dropping
/// the returned sender lets the reader go (the export then fails).
fn hold_export(archive: &Path) -> (std::sync::mpsc::Receiver<()>, std::sync::mpsc::Sender<()>) {
    std::fs::create_dir_all(archive.parent().unwrap()).unwrap();
    run(Command::new("mkfifo").arg(archive));
    let (started_tx, started) = std::sync::mpsc::channel();
    let (release, released) = std::sync::mpsc::channel::<()>();
    let fifo = archive.to_path_buf();
    std::thread::spawn(move || {
        let mut f = std::fs::File::open(&fifo).unwrap();
        let mut first = [0u8; 512];
        let n = std::io::Read::read(&mut f, &mut first).unwrap();
        assert!(n > 0);
        let _ = started_tx.send(());
        let _ = released.recv();
    });
    (started, release)
}

/// A build cancelled mid-export and one cancelled mid-push: each ends
/// CANCELLED with no archive under state_dir/tmp and no local tag on the
/// builder; the same ref then builds and verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_build_leaves_no_archive_and_no_local_tag() {
    let bw = BuildWorld::new();
    let proxy_port = free_port();
    let registry = TestRegistry::start(&bw.world.path("registry"), None, Some(proxy_port));
    let proxy = HoldingProxy::start(proxy_port, registry.host()).await;
    let pipeline = format!("cancel{}", free_port());
    bw.write_hab(&format!("http://127.0.0.1:{proxy_port}"), None);
    bw.write_pipeline(
        &pipeline,
        &fixture_recipe(),
        AMD64,
        r#"["fixture-node", "--version"]"#,
        "",
    );
    let habd = Habd::start_config(bw.load()).await;
    let (s, b) = call(habd.api(
        reqwest::Method::POST,
        &format!("/pipelines/{pipeline}/sync"),
    ))
    .await;
    assert_eq!(s, 200, "{b}");
    let state = bw.world.path("state");

    // Mid-export: the archive (a FIFO here) is being written.
    let (export_started, release) = hold_export(&state.join("tmp/build-1-amd64.tar"));
    let id = start(&habd, &pipeline, "v1.0.0").await;
    assert_eq!(id, 1);
    export_started
        .recv_timeout(Duration::from_secs(300))
        .expect("the export never began");
    let b = get_build(&habd, id).await;
    assert_eq!(b["platforms"][0]["stage"], "exporting", "{b}");
    assert_eq!(local_tags(&pipeline).len(), 1, "the build tagged its image");
    let out = run(habctl(&habd).args(["cancel", &id.to_string()]));
    assert!(out.contains("cancelling"), "{out}");
    let b = wait_build(&habd, id).await;
    assert_eq!(b["state"], "cancelled", "{b}");
    assert_eq!(archives(&state), Vec::<String>::new());
    assert_eq!(local_tags(&pipeline), Vec::<String>::new());
    drop(release);

    // Mid-push: the registry holds the blob uploads.
    proxy.hold.store(true, Ordering::SeqCst);
    let id = start(&habd, &pipeline, "v1.0.0").await;
    until_stage(&habd, id, "pushing", || {
        proxy.held.load(Ordering::SeqCst) > 0
    })
    .await;
    assert_eq!(archives(&state), [format!("build-{id}-amd64.tar")]);
    assert_eq!(local_tags(&pipeline).len(), 1, "the build tagged its image");
    let (s, c) = call(habd.api(reqwest::Method::POST, &format!("/builds/{id}/cancel"))).await;
    assert_eq!(s, 202, "{c}");
    let b = wait_build(&habd, id).await;
    assert_eq!(b["state"], "cancelled", "{b}");
    assert_eq!(archives(&state), Vec::<String>::new());
    assert_eq!(local_tags(&pipeline), Vec::<String>::new());

    // Nothing stands in the way of the next build of the same ref.
    proxy.hold.store(false, Ordering::SeqCst);
    let b = build_of(&habd, &pipeline, "v1.0.0").await;
    assert_eq!(b["verified"], true, "{b}");
    assert_eq!(archives(&state), Vec::<String>::new());
    assert_eq!(local_tags(&pipeline), Vec::<String>::new());
    habd.stop().await;
}

fn log_count(log: &Path, needle: &str) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .matches(needle)
        .count()
}

/// habd killed with SIGKILL while a build pushes: its next start sweeps the
/// build's archive and local tag (and says so), leaves another habd's tag
/// alone, records the build INTERRUPTED with a reason, and the same ref
/// then builds and verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn habd_killed_mid_build_is_swept_at_restart_and_the_ref_builds_again() {
    let bw = BuildWorld::with_node_releases();
    let proxy_port = free_port();
    let registry = TestRegistry::start(&bw.world.path("registry"), None, Some(proxy_port));
    let proxy = HoldingProxy::start(proxy_port, registry.host()).await;
    let pipeline = format!("sweep{}", free_port());
    bw.write_hab(&format!("http://127.0.0.1:{proxy_port}"), None);
    bw.write_pipeline(
        &pipeline,
        &fixture_recipe(),
        AMD64,
        r#"["fixture-node", "--version"]"#,
        "",
    );
    let config = bw.world.path("hab.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!("[api]\ntokens = [\"{TOKEN}\"]\n"));
    std::fs::write(&config, text).unwrap();
    let log: PathBuf = bw.world.path("habd.log");
    let swept = "swept what interrupted builds left behind";
    let port = free_port();
    let mut process = HabdProcess::start_quiet(&config, port);
    let store = hab::store::Store::open(&bw.world.path("state/hab.sqlite3")).unwrap();
    let habd = Habd::external(format!("http://127.0.0.1:{port}"), store);
    let (s, b) = call(habd.api(
        reqwest::Method::POST,
        &format!("/pipelines/{pipeline}/sync"),
    ))
    .await;
    assert_eq!(s, 200, "{b}");
    let state = bw.world.path("state");

    // Another habd's build on the same builder, tagged by its own pattern.
    let first = build_of(&habd, &pipeline, "v1.1.0").await;
    let image = format!(
        "{}/hab/{pipeline}@{}",
        registry.host(),
        first["index_digest"].as_str().unwrap()
    );
    docker(&["pull", "-q", &image]);
    let foreign = format!("hab-build/{pipeline}:7-amd64-0123456789ab-0");
    docker(&["tag", &image, &foreign]);

    // Killed while the build pushes.
    proxy.hold.store(true, Ordering::SeqCst);
    let id = start(&habd, &pipeline, "v1.0.0").await;
    until_stage(&habd, id, "pushing", || {
        proxy.held.load(Ordering::SeqCst) > 0
    })
    .await;
    assert_eq!(archives(&state), [format!("build-{id}-amd64.tar")]);
    let ours: Vec<String> = local_tags(&pipeline)
        .into_iter()
        .filter(|t| t != &foreign)
        .collect();
    assert_eq!(ours.len(), 1, "{ours:?}");
    process.kill9_and_restart();

    // The start sweeps, and says what it swept.
    let deadline = Instant::now() + Duration::from_secs(120);
    while log_count(&log, swept) < 2 {
        assert!(Instant::now() < deadline, "no sweep logged at the restart");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(archives(&state), Vec::<String>::new());
    assert_eq!(
        local_tags(&pipeline),
        vec![foreign.clone()],
        "only ours swept"
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains(&format!("build-{id}-amd64.tar")) && text.contains(&ours[0]),
        "the log names what was swept:\n{text}"
    );
    assert!(text.contains("1 archives, 1 local tags"), "{text}");

    // The build is not VERIFIED: interrupted, with the reason.
    let b = get_build(&habd, id).await;
    assert_eq!(b["state"], "interrupted", "{b}");
    assert_eq!(b["verified"], false, "{b}");
    assert!(
        b["reason"]
            .as_str()
            .unwrap()
            .contains("habd stopped during the build"),
        "{b}"
    );

    // The next trigger of the same ref builds and verifies.
    proxy.hold.store(false, Ordering::SeqCst);
    let again = build_of(&habd, &pipeline, "v1.0.0").await;
    assert_ne!(again["id"].as_i64(), Some(id));
    assert_eq!(archives(&state), Vec::<String>::new());
    assert_eq!(local_tags(&pipeline), vec![foreign.clone()]);

    drop(process);
    let _ = Command::new("/usr/bin/docker")
        .args(["rmi", "-f", &foreign, &image])
        .output();
}
