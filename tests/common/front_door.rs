//! The RPC front door (src/gateway) for the tests: served on a free port
//! of 127.0.0.1 before some nodes, with two users of its own.

use std::sync::Arc;

use hab::gateway::{access::User, Backend, Gateway, Settings};

/// The front door on a free port before `backends`, with a read-only
/// user `reader`/`rpass` and `sender`/`spass` allowed sendrawtransaction.
pub async fn front_door(backends: Vec<Backend>, settings: Settings) -> (Arc<Gateway>, String) {
    let users = vec![
        User::from_rpcauth(&User::rpcauth("reader", "c0ffee", "rpass"), vec![]).unwrap(),
        User::from_rpcauth(
            &User::rpcauth("sender", "5a17", "spass"),
            vec!["sendrawtransaction".into()],
        )
        .unwrap(),
    ];
    let g = Gateway::new(backends, users, settings);
    g.look().await;
    g.spawn_looks();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let app = g.router();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (g, url)
}

/// A client calling `getblockchaininfo` through a front door every 10 ms
/// until stopped, as `user`: what it counts as an error is any answer
/// that is not HTTP 200 with a height, or a height lower than before.
pub struct Caller {
    stop: Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<(u32, Vec<String>)>,
}

impl Caller {
    pub fn start(url: &str, user: &str, password: &str) -> Self {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (url, user, password, s) = (
            url.to_string(),
            user.to_string(),
            password.to_string(),
            stop.clone(),
        );
        let task = tokio::spawn(async move {
            let http = reqwest::Client::new();
            let (mut errors, mut calls, mut last) = (Vec::new(), 0u32, 0u64);
            while !s.load(std::sync::atomic::Ordering::SeqCst) {
                let r = http
                    .post(&url)
                    .basic_auth(&user, Some(&password))
                    .json(&serde_json::json!({"jsonrpc": "1.0", "id": 1, "method": "getblockchaininfo", "params": []}))
                    .timeout(std::time::Duration::from_secs(15))
                    .send()
                    .await;
                calls += 1;
                let (status, body) = match r {
                    Ok(r) => (
                        r.status().as_u16(),
                        r.json::<serde_json::Value>().await.unwrap_or_default(),
                    ),
                    Err(e) => (0, serde_json::Value::String(e.to_string())),
                };
                match body["result"]["blocks"].as_u64() {
                    Some(h) if status == 200 => {
                        if h < last {
                            errors.push(format!("height went back from {last} to {h}"));
                        }
                        last = h;
                    }
                    _ => errors.push(format!("HTTP {status}: {body}")),
                }
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            (calls, errors)
        });
        Self { stop, task }
    }

    /// Stops it: (calls made, errors seen).
    pub async fn finish(self) -> (u32, Vec<String>) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        self.task.await.unwrap()
    }
}
