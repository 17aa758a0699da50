//! The RPC front door (src/gateway) before real bcoin nodes in regtest
//! (npm's bcoin 1.0.2, tests/common/bcoin.rs), each behind a counting
//! proxy of this test so that what a node saw is the node's own count,
//! not the front door's word: routing away from a lagging node, Bitcoin
//! Core's error shapes for bad input that no node ever sees, Core's
//! format from bcoin, and a client calling every 10 ms while nodes are
//! drained and killed that sees no error and no height going back.

mod common;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{body::Bytes, extract::State, http::HeaderMap, routing, Router};
use common::*;
use hab::gateway::{Backend, Dialect, Settings};
use serde_json::{json, Value};

/// Calls a node received, by method (the front door's looks included).
type Seen = Arc<Mutex<HashMap<String, u64>>>;

/// A bcoin node behind a proxy that counts every call it forwards.
struct Counted {
    node: Option<Bcoin>,
    url: String,
    seen: Seen,
}

impl Counted {
    async fn start() -> Self {
        let node = Bcoin::start().await;
        let seen: Seen = Arc::default();
        let target = node.url();
        let app = Router::new().route("/", routing::post(relay)).with_state((
            target,
            seen.clone(),
            reqwest::Client::new(),
        ));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            node: Some(node),
            url,
            seen,
        }
    }

    fn bcoin(&self) -> &Bcoin {
        self.node.as_ref().unwrap()
    }

    /// Calls of `method` this node saw.
    fn saw(&self, method: &str) -> u64 {
        self.seen.lock().unwrap().get(method).copied().unwrap_or(0)
    }

    /// Calls other than the front door's looks (getblockchaininfo).
    fn served(&self) -> u64 {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(m, _)| *m != "getblockchaininfo")
            .map(|(_, n)| n)
            .sum()
    }

    fn backend(&self, name: &str) -> Backend {
        Backend {
            name: name.into(),
            url: self.url.clone(),
            user: "x".into(),
            password: self.bcoin().api_key().to_string(),
            dialect: Dialect::Bcoin,
            hold: None,
            http: None,
            address: None,
        }
    }

    /// Kills the node (its proxy then fails every call).
    fn kill(&mut self) {
        self.node = None;
    }
}

async fn relay(
    State((target, seen, http)): State<(String, Seen, reqwest::Client)>,
    headers: HeaderMap,
    body: Bytes,
) -> (axum::http::StatusCode, String) {
    let method = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v["method"].as_str().map(str::to_string))
        .unwrap_or_default();
    *seen.lock().unwrap().entry(method).or_default() += 1;
    let mut req = http.post(&target).body(body.to_vec());
    if let Some(a) = headers.get("authorization") {
        req = req.header("authorization", a.clone());
    }
    match req.send().await {
        Ok(r) => (
            axum::http::StatusCode::from_u16(r.status().as_u16()).unwrap(),
            r.text().await.unwrap_or_default(),
        ),
        Err(e) => (axum::http::StatusCode::BAD_GATEWAY, e.to_string()),
    }
}

fn settings() -> Settings {
    Settings {
        look_every: Duration::from_millis(100),
        ..Settings::default()
    }
}

/// POSTs `body` as `user`: (HTTP status, answer as JSON or as text).
async fn post(url: &str, user: (&str, &str), body: &str) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(url)
        .basic_auth(user.0, Some(user.1))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn call(url: &str, method: &str, params: Value) -> (u16, Value) {
    post(
        url,
        ("reader", "rpass"),
        &json!({"jsonrpc": "1.0", "id": 7, "method": method, "params": params}).to_string(),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_node_gets_no_calls_and_answers_are_cores() {
    let (a, b, c) = tokio::join!(Counted::start(), Counted::start(), Counted::start());
    // Three unconnected chains: a and b at 10, c at 3 (7 behind).
    tokio::join!(a.bcoin().mine(10), b.bcoin().mine(10), c.bcoin().mine(3));
    let (g, url) = front_door(
        vec![a.backend("a"), b.backend("b"), c.backend("c")],
        settings(),
    )
    .await;
    for _ in 0..30 {
        let (s, r) = call(&url, "getblockcount", json!([])).await;
        assert_eq!((s, &r["result"]), (200, &json!(10)), "{r}");
        assert_eq!(r["error"], Value::Null);
        assert_eq!(r["id"], 7);
    }
    assert_eq!(c.saw("getblockcount"), 0, "the lagging node saw none");
    assert_eq!(a.saw("getblockcount") + b.saw("getblockcount"), 30);
    let c_view = g.nodes().into_iter().find(|n| n.name == "c").unwrap();
    assert_eq!(c_view.lag, Some(7));
    assert!(
        c_view
            .excluded
            .as_deref()
            .unwrap_or("")
            .contains("7 blocks behind"),
        "{c_view:?}"
    );

    // Core's getblockchaininfo from bcoin: its fields, not bcoin's extras.
    let (_, r) = call(&url, "getblockchaininfo", json!([])).await;
    let info = &r["result"];
    assert_eq!(info["blocks"], 10);
    assert_eq!(info["initialblockdownload"], false);
    for k in [
        "chain",
        "bestblockhash",
        "mediantime",
        "time",
        "chainwork",
        "warnings",
    ] {
        assert!(info.get(k).is_some(), "{k}: {info}");
    }
    for k in ["softforks", "bip9_softforks", "pruneheight"] {
        assert!(info.get(k).is_none(), "{k}: {info}");
    }

    // A batch in both JSON-RPC versions, an unknown method answered in place.
    let (s, r) = post(
        &url,
        ("reader", "rpass"),
        r#"[{"id":1,"method":"getblockcount"},{"jsonrpc":"2.0","id":2,"method":"getbestblockhash"},{"id":3,"method":"getwalletinfo"}]"#,
    )
    .await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r[0], json!({"result": 10, "error": null, "id": 1}));
    assert_eq!(r[1]["jsonrpc"], "2.0");
    assert!(
        r[1].get("error").is_none() && r[1]["result"].is_string(),
        "{r}"
    );
    assert_eq!(r[2]["error"]["code"], -32601);
    // A height only the lagging node lacks goes where it is.
    let (_, r) = call(&url, "getblockhash", json!([9])).await;
    assert!(r["result"].is_string(), "{r}");
}

/// Fixture nodes speaking Core's format (tests/common/core_fixture.rs):
/// one synced, one at the same height but in initial block download, one
/// 7 blocks behind. Every call goes to the synced one, by the nodes' own
/// request logs; the front door's looks (getblockchaininfo) are all the
/// other two see.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_in_ibd_and_a_lagging_node_get_no_calls() {
    let synced = CoreFixture::start("height=120\n");
    let ibd = CoreFixture::start("behaviour=ibd\nheight=120\n");
    let behind = CoreFixture::start("behaviour=lagging\nheight=120\nlag=7\n");
    let (g, url) = front_door(
        vec![
            synced.backend("synced"),
            ibd.backend("ibd"),
            behind.backend("behind"),
        ],
        settings(),
    )
    .await;
    let calls: Vec<(&str, Value)> = vec![
        ("getblockcount", json!([])),
        ("getblockchaininfo", json!([])),
        ("getbestblockhash", json!([])),
        ("getblockhash", json!([100])),
        ("getmempoolinfo", json!([])),
    ];
    for round in 0..10 {
        for (method, params) in &calls {
            let (s, r) = call(&url, method, params.clone()).await;
            assert_eq!(s, 200, "round {round}, {method}: {r}");
        }
    }
    let (_, r) = call(&url, "getblockcount", json!([])).await;
    assert_eq!(r["result"], 120);
    let (_, r) = call(&url, "getblockchaininfo", json!([])).await;
    assert_eq!(r["result"]["initialblockdownload"], false, "{r}");
    // getblockchaininfo: each node also gets the front door's looks, the
    // same number for all three (give or take the one under way).
    let looks_only =
        |n: &CoreFixture| n.saw("getblockchaininfo") + 11 <= synced.saw("getblockchaininfo") + 1;
    assert!(
        looks_only(&ibd),
        "the node in IBD got calls: {}",
        ibd.saw("getblockchaininfo")
    );
    assert!(
        looks_only(&behind),
        "the lagging node got calls: {}",
        behind.saw("getblockchaininfo")
    );
    for (method, _) in calls.iter().filter(|(m, _)| *m != "getblockchaininfo") {
        assert_eq!(ibd.saw(method), 0, "the node in IBD saw {method}");
        assert_eq!(behind.saw(method), 0, "the lagging node saw {method}");
    }
    assert_eq!(synced.saw("getblockcount"), 11);
    assert_eq!(synced.saw("getblockhash"), 10);
    let views = g.nodes();
    let why = |name: &str| {
        views
            .iter()
            .find(|n| n.name == name)
            .and_then(|n| n.excluded.clone())
            .unwrap_or_default()
    };
    assert_eq!(why("ibd"), "in initial block download");
    assert!(why("behind").contains("7 blocks behind"), "{views:?}");
    assert_eq!(why("synced"), "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_cores_error_shape_and_no_node_sees_it() {
    let a = Counted::start().await;
    a.bcoin().mine(2).await;
    let (_g, url) = front_door(
        vec![a.backend("a")],
        Settings {
            max_body: 4096,
            max_batch: 5,
            ..settings()
        },
    )
    .await;
    let reader = ("reader", "rpass");
    // Malformed JSON: -32700, HTTP 500 as Bitcoin Core.
    let (s, r) = post(&url, reader, "{\"method\": ").await;
    assert_eq!(s, 500);
    assert_eq!(
        r,
        json!({"result": null, "error": {"code": -32700, "message": "Parse error"}, "id": null})
    );
    // An oversize body: refused unread.
    let big = format!(
        r#"{{"method":"getblockcount","params":[],"id":"{}"}}"#,
        "x".repeat(5000)
    );
    let (s, r) = post(&url, reader, &big).await;
    assert_eq!(s, 413);
    assert_eq!(r["error"]["code"], -32600, "{r}");
    // Past any default limit too (axum's is 2 MB): the same JSON answer.
    let huge = format!(
        r#"{{"method":"getblockcount","params":[],"id":"{}"}}"#,
        "x".repeat(3 << 20)
    );
    let (s, r) = post(&url, reader, &huge).await;
    assert_eq!(s, 413);
    assert_eq!(r["error"]["code"], -32600, "{r}");
    // A batch over the limit.
    let batch =
        serde_json::to_string(&vec![json!({"method": "getblockcount", "id": 1}); 6]).unwrap();
    let (s, r) = post(&url, reader, &batch).await;
    assert_eq!(s, 400);
    assert_eq!(r["error"]["code"], -32600, "{r}");
    assert!(r["error"]["message"]
        .as_str()
        .unwrap()
        .contains("over the limit of 5"));
    // A method outside the subset (a control call): not found.
    let (s, r) = call(&url, "stop", json!([])).await;
    assert_eq!(s, 404);
    assert_eq!(
        r["error"],
        json!({"code": -32601, "message": "Method not found"})
    );
    assert_eq!(r["id"], 7);
    // A write the user is not allowed: forbidden, alone or in a batch.
    let (s, r) = call(&url, "sendrawtransaction", json!(["00"])).await;
    assert_eq!(s, 403);
    assert_eq!(r["error"]["code"], -32601, "{r}");
    let (s, _) = post(
        &url,
        reader,
        r#"[{"method":"getblockcount","id":1},{"method":"sendrawtransaction","params":["00"],"id":2}]"#,
    )
    .await;
    assert_eq!(s, 403, "a batch holding a forbidden call is refused whole");
    // Wrong credentials, an unknown user, none.
    for (user, pass) in [("reader", "wrong"), ("nobody", "rpass"), ("", "")] {
        let (s, r) = post(&url, (user, pass), r#"{"method":"getblockcount","id":1}"#).await;
        assert_eq!(s, 401, "{user}");
        assert_eq!(r["error"]["code"], -32600, "{r}");
    }
    let r = reqwest::Client::new()
        .post(&url)
        .body(r#"{"method":"getblockcount"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Basic realm=\"jsonrpc\"");
    assert_eq!(a.served(), 0, "no bad call reached the node: {:?}", a.seen);
    // The allowed user's write does reach it.
    let (_, r) = post(
        &url,
        ("sender", "spass"),
        r#"{"method":"sendrawtransaction","params":["00"],"id":1}"#,
    )
    .await;
    assert!(r.get("error").is_some(), "{r}");
    assert_eq!(a.saw("sendrawtransaction"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_sees_no_error_while_nodes_are_drained_and_killed() {
    let (mut a, mut b, c) = tokio::join!(Counted::start(), Counted::start(), Counted::start());
    tokio::join!(a.bcoin().mine(5), b.bcoin().mine(5), c.bcoin().mine(5));
    let (g, url) = front_door(
        vec![a.backend("a"), b.backend("b"), c.backend("c")],
        settings(),
    )
    .await;
    // A client calling every 10 ms, recording errors and heights.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let client = {
        let (url, stop) = (url.clone(), stop.clone());
        tokio::spawn(async move {
            let (mut errors, mut calls, mut last) = (Vec::new(), 0u32, 0u64);
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let (s, r) = call(&url, "getblockchaininfo", json!([])).await;
                calls += 1;
                match r["result"]["blocks"].as_u64() {
                    Some(h) if s == 200 => {
                        if h < last {
                            errors.push(format!("height went back from {last} to {h}"));
                        }
                        last = h;
                    }
                    _ => errors.push(format!("HTTP {s}: {r}")),
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            (calls, errors)
        })
    };
    tokio::time::sleep(Duration::from_millis(600)).await;
    // A node taken down as a rollout does: drained first, then stopped.
    assert!(
        g.drain("a", Duration::from_secs(5)).await,
        "in-flight calls finished"
    );
    let served = a.served();
    a.kill();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(a.served(), served, "a drained node gets no new call");
    // A node that dies without warning: its calls are retried elsewhere.
    b.kill();
    tokio::time::sleep(Duration::from_millis(800)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (calls, errors) = client.await.unwrap();
    // bcoin takes some 60 ms to answer getblockchaininfo here.
    assert!(calls >= 5, "{calls} calls");
    assert!(
        errors.is_empty(),
        "{} errors in {calls} calls: {errors:?}",
        errors.len()
    );
    let views = g.nodes();
    assert!(
        views.iter().any(|v| v.name == "c" && v.served > 0),
        "the last node took the calls: {views:?}"
    );
    assert!(
        views.iter().any(|v| v.name == "b" && !v.answers),
        "{views:?}"
    );
}

/// A user over its rate gets HTTP 429 with a JSON-RPC error and
/// Retry-After, and the node never sees those calls; another user is not
/// held back by it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_over_its_rate_is_refused_before_any_node() {
    let node = CoreFixture::start("height=120\n");
    let (_g, url) = front_door(
        vec![node.backend("a")],
        Settings {
            max_calls_per_second: 3,
            ..settings()
        },
    )
    .await;
    node.reset_log();
    let one = r#"{"id":1,"method":"getblockcount"}"#;
    // Calls in a row until one is refused (a slow machine may refill a
    // call now and then, never 30 within these few).
    let http = reqwest::Client::new();
    let (mut passed, mut refused) = (0, None);
    for _ in 0..30 {
        let r = http
            .post(&url)
            .basic_auth("reader", Some("rpass"))
            .body(one)
            .send()
            .await
            .unwrap();
        if r.status().as_u16() == 200 {
            passed += 1;
            continue;
        }
        refused = Some(r);
        break;
    }
    let r = refused.expect("30 calls in a row at 3 a second, none refused");
    assert!(passed >= 3, "{passed} passed before the first refusal");
    assert_eq!(r.status().as_u16(), 429);
    assert!(r.headers().get("retry-after").is_some());
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["result"], Value::Null);
    assert_eq!(v["error"]["code"], -32000, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("Rate limit: user reader may make 3 calls a second"),
        "{v}"
    );
    // A batch over a second's worth is refused whole.
    let batch = format!("[{one},{one},{one},{one}]");
    let (s, _) = post(&url, ("sender", "spass"), &batch).await;
    assert_eq!(s, 429);
    // The other user has its own rate.
    let (s, r) = post(&url, ("sender", "spass"), one).await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(
        node.saw("getblockcount"),
        passed + 1,
        "the refused calls never reached it"
    );
}

/// A block one node found since the front door last looked: a call naming
/// it goes on from the node that lacks it (first in line) to the one that
/// has it, instead of answering "Block not found"; a hash no node has is
/// still Core's -5.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_only_one_node_has_yet_is_found_there() {
    let (a, b) = tokio::join!(Counted::start(), Counted::start());
    tokio::join!(a.bcoin().mine(5), b.bcoin().mine(5));
    // b first: with equal lag and nothing in flight, it is asked first.
    let (_g, url) = front_door(
        vec![b.backend("b"), a.backend("a")],
        Settings {
            look_every: Duration::from_secs(3600),
            ..settings()
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let new = a.bcoin().mine(1).await.pop().unwrap();
    for method in ["getblock", "getblockheader"] {
        for _ in 0..3 {
            let (s, r) = call(&url, method, json!([new])).await;
            assert_eq!(s, 200, "{method}: {r}");
            assert_eq!(r["result"]["hash"], json!(new), "{r}");
        }
        // (bcoin's getblock is completed with a getblockheader.)
        assert!(a.saw(method) >= 3, "{method}: a answered each");
        assert_eq!(b.saw(method), 3, "{method}: b was asked first each time");
    }
    let (s, r) = call(&url, "getblock", json!(["00".repeat(32)])).await;
    assert_eq!(s, 500);
    assert_eq!(
        r["error"],
        json!({"code": -5, "message": "Block not found"}),
        "{r}"
    );
}
