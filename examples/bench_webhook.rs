//! Benchmark: webhook intake under `wrk` from 127.0.0.1.
//!
//! habd (the library's server, in this process, on 127.0.0.1) takes a GitHub
//! `push` delivery of a realistic size, validly signed, over and over with
//! the same delivery id: after the first, every one is a replay that must
//! be recognised and answered `duplicate` (signature check, JSON parse,
//! repository match, a store lookup). The baseline, measured in the same
//! run against the same server, is `GET /healthz` (one store read, no
//! signature). Prints requests/s and latency percentiles of each and the
//! ratio; the target is at least 5,000 requests/s with p99 under 10 ms on
//! a 2-core machine.
//!
//!     cargo run --release --example bench_webhook [-- SECONDS [CONNECTIONS]]
//!
//! Needs `wrk` (Debian: apt-get install wrk; scripts/setup.sh installs it).

use std::{sync::Arc, time::Duration};

use hab::{
    config::{Config, Overrides},
    hooks::sign,
    server::{serve_on, AppState},
    store::Store,
};

const SECRET: &str = "bench-webhook-secret-0123456789abcdef";

#[path = "shared/wrk.rs"]
mod wrk;
use wrk::wrk;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let secs: u32 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(10);
    let conns: u32 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(32);
    let dir = tempfile_dir();
    let upstream = "https://github.com/bitcoin/bitcoin.git";
    std::fs::create_dir_all(dir.join("pipelines")).unwrap();
    std::fs::write(dir.join("hook-secret"), SECRET).unwrap();
    std::fs::write(
        dir.join("pipelines/bitcoind.toml"),
        format!(
            "implementation = \"bitcoind\"\n[upstream]\nurl = \"{upstream}\"\n\
             [signature]\npolicy = \"none\"\n[webhook]\nsecret_file = \"../hook-secret\"\n"
        ),
    )
    .unwrap();
    // The one accepted delivery waits 10 minutes before its sync: the bench
    // measures intake, not fetching GitHub (unreachable here anyway).
    std::fs::write(
        dir.join("hab.toml"),
        "state_dir = \"state\"\npipelines_dir = \"pipelines\"\n[webhooks]\nsettle = \"10m\"\n",
    )
    .unwrap();
    let config = Config::load(Some(&dir.join("hab.toml")), &Overrides::default()).unwrap();
    std::fs::create_dir_all(&config.state_dir).unwrap();
    let store = Store::open(&config.state_dir.join("hab.sqlite3")).unwrap();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let state = rt
        .block_on(async { AppState::new(Arc::new(config), store.clone(), vec!["t".into()]) })
        .unwrap();
    rt.spawn(serve_on(state, listener, std::future::pending()));

    // A push of a release tag with a few commits, as GitHub sends it (~2.6 kB).
    let commits: Vec<serde_json::Value> = (0..8)
        .map(|i| {
            serde_json::json!({
                "id": format!("{:040x}", i), "message": "Merge bitcoin/bitcoin#31234: doc: release notes for v28.1 and a long description",
                "author": {"name": "Release Manager", "email": "rm@example.org"},
                "added": [], "removed": [], "modified": ["doc/release-notes.md", "src/clientversion.h"]
            })
        })
        .collect();
    let body = serde_json::to_string(&serde_json::json!({
        "ref": "refs/tags/v28.1", "before": "0".repeat(40), "after": "1".repeat(40),
        "repository": {"full_name": "bitcoin/bitcoin", "clone_url": upstream,
                       "html_url": "https://github.com/bitcoin/bitcoin"},
        "pusher": {"name": "release-manager"}, "commits": commits,
    }))
    .unwrap();
    let signature = format!("sha256={}", sign(SECRET.as_bytes(), body.as_bytes()));
    let script = dir.join("hook.lua");
    std::fs::write(
        &script,
        format!(
            "wrk.method = \"POST\"\nwrk.body = [==[{body}]==]\n\
             wrk.headers[\"Content-Type\"] = \"application/json\"\n\
             wrk.headers[\"X-GitHub-Event\"] = \"push\"\n\
             wrk.headers[\"X-GitHub-Delivery\"] = \"bench-delivery-1\"\n\
             wrk.headers[\"X-Hub-Signature-256\"] = \"{signature}\"\n"
        ),
    )
    .unwrap();
    // The first delivery is accepted; every request after it is a replay.
    let first = rt.block_on(async {
        reqwest::Client::new()
            .post(format!("{base}/hooks/github"))
            .header("X-GitHub-Event", "push")
            .header("X-GitHub-Delivery", "bench-delivery-1")
            .header("X-Hub-Signature-256", &signature)
            .body(body.clone())
            .send()
            .await
            .unwrap()
            .status()
    });
    assert_eq!(first.as_u16(), 202, "the first delivery must be accepted");
    std::thread::sleep(Duration::from_millis(200));

    println!(
        "webhook intake: {} byte push payload, valid signature, replayed delivery id; wrk -t2 -c{conns} -d{secs}s from 127.0.0.1",
        body.len()
    );
    let base_fig = wrk(&format!("{base}/healthz"), None, secs, conns);
    let hook = wrk(&format!("{base}/hooks/github"), Some(&script), secs, conns);
    let items = store.queue_items(None, 100).unwrap();
    let triggers: i64 = items.iter().map(|i| i.triggers).sum();
    let syncs = store.syncs("bitcoind", 10).unwrap().len();
    for (name, f) in [
        ("GET /healthz (baseline)", &base_fig),
        ("POST /hooks/github", &hook),
    ] {
        println!(
            "  {name:<26} {:>9.0} req/s   p50 {:>6.2} ms   p99 {:>6.2} ms   {} requests, {} not 2xx",
            f.rps, f.p50_ms, f.p99_ms, f.requests, f.non_2xx
        );
    }
    println!(
        "  ratio webhook/baseline: throughput {:.2}, p99 {:.2}",
        hook.rps / base_fig.rps,
        hook.p99_ms / base_fig.p99_ms
    );
    println!(
        "  store after the run: {} queue item(s), {} trigger(s), {} sync(s): replays triggered nothing",
        items.len(),
        triggers,
        syncs
    );
    let ok = hook.rps >= 5000.0 && hook.p99_ms < 10.0 && hook.non_2xx == 0 && triggers == 1;
    println!(
        "  target (>= 5000 req/s, p99 < 10 ms, every replay answered 200, no new trigger): {}",
        if ok { "met" } else { "NOT met" }
    );
    let _ = std::fs::remove_dir_all(&dir);
    rt.shutdown_timeout(Duration::from_secs(1));
}

fn tempfile_dir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("hab-bench-webhook-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}
