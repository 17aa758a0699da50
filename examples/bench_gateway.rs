//! Benchmark: `getblockcount` through the RPC front door against the same
//! node directly, in one run under `wrk` from 127.0.0.1.
//!
//! The node is a real bcoin 1.0.2 in regtest (scripts/setup.sh installs it
//! from npm), or, with `NODE=stub`, a minimal JSON-RPC responder in this
//! process answering as Bitcoin Core does (so the front door's own cost is
//! not hidden behind a slow node). The front door (the library's
//! `Gateway`, in this process) looks at the node as it does in service
//! and forwards each call with its user check, routing and Core framing.
//! Prints requests/s and p50/p99 latency of each, the added p99 and the
//! throughput ratio; the targets are an added p99 under 1 ms and at least
//! 80% of the direct throughput.
//!
//!     cargo run --release --example bench_gateway [-- SECONDS [CONNECTIONS]]
//!
//! Needs `wrk` (scripts/setup.sh installs it).

use std::{process::Command, sync::Arc, time::Duration};

use hab::gateway::{access::User, Backend, Dialect, Gateway, Settings};

#[path = "shared/wrk.rs"]
mod wrk;
use wrk::wrk;

const BCOIN: &str = "/opt/hab-bcoin/node_modules/.bin/bcoin";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A JSON-RPC node answering `getblockcount` and `getblockchaininfo` as
/// Bitcoin Core does, on its own runtime thread.
fn stub_node(port: u16) {
    use axum::{routing::post, Json, Router};
    use serde_json::{json, Value};
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let app = Router::new().route(
                "/",
                post(|Json(v): Json<Value>| async move {
                    let result = match v["method"].as_str() {
                        Some("getblockchaininfo") => {
                            json!({"chain": "regtest", "blocks": 110, "initialblockdownload": false})
                        }
                        _ => json!(110),
                    };
                    Json(json!({"result": result, "error": null, "id": v["id"]}))
                }),
            );
            let l = tokio::net::TcpListener::bind(("127.0.0.1", port))
                .await
                .unwrap();
            axum::serve(l, app).await.unwrap();
        });
    });
}

struct Node {
    child: Option<std::process::Child>,
    url: String,
    password: String,
    dialect: Dialect,
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn start_node(stub: bool) -> Node {
    let port = free_port();
    if stub {
        stub_node(port);
        return Node {
            child: None,
            url: format!("http://127.0.0.1:{port}/"),
            password: "stub".into(),
            dialect: Dialect::Core,
        };
    }
    let prefix = std::env::temp_dir().join(format!("hab-bench-gateway-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&prefix);
    std::fs::create_dir_all(&prefix).unwrap();
    let key = "bench-api-key-0123456789";
    let child = Command::new(BCOIN)
        .args([
            "--network=regtest",
            "--no-wallet",
            "--listen=false",
            &format!("--api-key={key}"),
            "--http-host=127.0.0.1",
            &format!("--http-port={port}"),
            &format!("--prefix={}", prefix.display()),
            "--log-level=error",
        ])
        .env("NODE_BACKEND", "js")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("bcoin: run `bash scripts/setup.sh` (it installs bcoin from npm), or NODE=stub");
    Node {
        child: Some(child),
        url: format!("http://127.0.0.1:{port}/"),
        password: key.into(),
        dialect: Dialect::Bcoin,
    }
}

fn script(dir: &std::path::Path, name: &str, user: &str, password: &str) -> std::path::PathBuf {
    use base64::Engine as _;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let path = dir.join(name);
    std::fs::write(
        &path,
        format!(
            "wrk.method = \"POST\"\nwrk.body = '{{\"jsonrpc\":\"1.0\",\"id\":1,\"method\":\"getblockcount\",\"params\":[]}}'\n\
             wrk.headers[\"Content-Type\"] = \"application/json\"\n\
             wrk.headers[\"Authorization\"] = \"Basic {auth}\"\n"
        ),
    )
    .unwrap();
    path
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let secs: u32 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(10);
    let conns: u32 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(16);
    let stub = std::env::var("NODE").as_deref() == Ok("stub");
    let node = start_node(stub);
    let dir = std::env::temp_dir().join(format!("hab-bench-gateway-wrk-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let http = reqwest::Client::new();
    // The node answers before anything is measured.
    rt.block_on(async {
        for _ in 0..300 {
            let ok = http
                .post(&node.url)
                .basic_auth("x", Some(&node.password))
                .header("content-type", "application/json")
                .body(r#"{"method":"getblockcount","id":1}"#)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ok {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the node at {} never answered", node.url);
    });
    // A fresh regtest chain is in initial block download, which the front
    // door routes around: a few blocks first (bcoin mines without a wallet
    // to an address it decodes itself).
    if !stub {
        rt.block_on(async {
            let rpc = |method: &str, params: serde_json::Value| {
                http.post(&node.url)
                    .basic_auth("x", Some(&node.password))
                    .json(&serde_json::json!({"method": method, "params": params, "id": 1}))
                    .send()
            };
            let decoded: serde_json::Value = rpc("decodescript", serde_json::json!(["51"]))
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let address = decoded["result"]["p2sh"].as_str().unwrap().to_string();
            rpc("generatetoaddress", serde_json::json!([5, address]))
                .await
                .unwrap();
        });
    }
    let users = vec![User::from_rpcauth(&User::rpcauth("bench", "5a17", "pw"), vec![]).unwrap()];
    let g = Gateway::new(
        vec![Backend {
            name: "node".into(),
            url: node.url.clone(),
            user: "x".into(),
            password: node.password.clone(),
            dialect: node.dialect,
            hold: None,
            http: None,
            address: None,
        }],
        users,
        // No rate limit in the way: what is measured is forwarding.
        Settings {
            max_calls_per_second: u32::MAX,
            ..Settings::default()
        },
    );
    let front = rt.block_on(async {
        g.look().await;
        g.spawn_looks();
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", l.local_addr().unwrap());
        let app = g.router();
        tokio::spawn(async move { axum::serve(l, app).await });
        url
    });
    let _g: Arc<Gateway> = g;

    let direct = wrk(
        &node.url,
        Some(&script(&dir, "direct.lua", "x", &node.password)),
        secs,
        conns,
    );
    let through = wrk(
        &front,
        Some(&script(&dir, "front.lua", "bench", "pw")),
        secs,
        conns,
    );
    let _ = std::fs::remove_dir_all(&dir);
    let what = if stub {
        "stub node"
    } else {
        "bcoin 1.0.2 regtest"
    };
    println!("node: {what}; wrk -t2 -c{conns} -d{secs}s, getblockcount");
    for (name, f) in [("direct", &direct), ("front door", &through)] {
        println!(
            "  {name:<10} {:>9.0} req/s  p50 {:.3} ms  p99 {:.3} ms  ({} requests, {} non-2xx)",
            f.rps, f.p50_ms, f.p99_ms, f.requests, f.non_2xx
        );
    }
    assert!(
        direct.non_2xx == 0 && through.non_2xx == 0,
        "calls failed: direct {}, front door {} (the figures would be meaningless)",
        direct.non_2xx,
        through.non_2xx
    );
    let added = through.p99_ms - direct.p99_ms;
    let ratio = through.rps / direct.rps;
    println!(
        "added p99 {added:.3} ms (target < 1 ms): {}; throughput ratio {ratio:.2} (target >= 0.80): {}",
        if added < 1.0 { "met" } else { "NOT met" },
        if ratio >= 0.8 { "met" } else { "NOT met" }
    );
}
