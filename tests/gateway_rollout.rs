//! The RPC front door served by `habd serve` (`[gateway]` in hab.toml)
//! before a fleet of three fixture nodes on the Docker target, while habd
//! rolls that fleet from release A to B: a client calling
//! `getblockchaininfo` through it every 10 ms sees no error and never a
//! lower height, because habd drains each node at the front door before
//! taking it down and the front door finds each recreated node again.

mod common;

use std::time::Duration;

use common::*;
use hab::gateway::access::User;
use serde_json::{json, Value};

async fn front_call(url: &str) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(url)
        .basic_auth("reader", Some("rpass"))
        .json(&json!({"jsonrpc": "1.0", "id": 1, "method": "getblockchaininfo", "params": []}))
        .timeout(Duration::from_secs(15))
        .send()
        .await;
    match r {
        Ok(r) => {
            let s = r.status().as_u16();
            (s, r.json().await.unwrap_or(Value::Null))
        }
        Err(e) => (0, Value::String(e.to_string())),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_of_the_front_door_sees_no_error_during_a_rollout() {
    let bw = BuildWorld::with_node_releases();
    let registry = TestRegistry::start(&bw.world.path("registry"), None, None);
    bw.write_hab(&registry.url(), None);
    std::fs::write(bw.world.path("rpc-password"), PASSWORD).unwrap();
    let fleet = format!("gw{}", free_port());
    let port = free_port();
    let mut hab = std::fs::read_to_string(bw.world.path("hab.toml")).unwrap();
    hab.push_str(&format!(
        "[[fleet]]\nname = \"{fleet}\"\npipeline = \"node\"\nchannel = \"stable\"\nnodes = 3\n\
         rpc_user = \"hab\"\nrpc_password_file = \"rpc-password\"\n\
         [fleet.gates]\nmax_lag = 2\nsoak = \"1s\"\nready_timeout = \"20s\"\n\
         [gateway]\nlisten = \"127.0.0.1:{port}\"\nfleets = [\"{fleet}\"]\n\
         [[gateway.user]]\nrpcauth = \"{}\"\n",
        User::rpcauth("reader", "f00d", "rpass")
    ));
    std::fs::write(bw.world.path("hab.toml"), hab).unwrap();
    bw.write_pipeline(
        "node",
        &fixture_recipe(),
        AMD64,
        r#"["fixture-node", "--version"]"#,
        "[[channel]]\nname = \"stable\"\n",
    );
    let habd = Habd::start_config(bw.load()).await;
    let (s, r) = call(habd.api(reqwest::Method::POST, "/pipelines/node/sync")).await;
    assert_eq!(s, 200, "{r}");
    let a = build(&habd, "node", "v1.0.0").await;
    let b = build(&habd, "node", "v1.1.0").await;
    for id in promote(&habd, "node", a).await {
        assert_eq!(wait_rollout(&habd, id).await["state"], "succeeded");
    }

    // The front door finds the three nodes and answers.
    let url = format!("http://127.0.0.1:{port}/");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (s, r) = front_call(&url).await;
        if s == 200 && r["result"]["blocks"].is_u64() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the front door never answered: {s} {r}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // habctl rpc: the view of the front door habd runs.
    let out = habctl(&habd)
        .args(["--output", "json", "rpc"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let nodes: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(nodes.as_array().map(Vec::len), Some(3), "{nodes}");
    assert!(
        nodes
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["answers"] == true && n["excluded"].is_null()),
        "{nodes}"
    );

    // A client calling every 10 ms while habd rolls the fleet to B.
    let client = Caller::start(&url, "reader", "rpass");
    let ids = promote(&habd, "node", b).await;
    assert_eq!(ids.len(), 1);
    let r = wait_rollout(&habd, ids[0]).await;
    let (calls, errors) = client.finish().await;
    assert_eq!(r["state"], "succeeded", "{r}");
    let replaced = r["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["kind"] == "update")
        .count();
    assert_eq!(replaced, 3, "every node replaced: {r}");
    assert!(calls > 50, "{calls} calls");
    assert!(
        errors.is_empty(),
        "{} of {calls} calls failed: {errors:?}",
        errors.len()
    );
    eprintln!("gateway_rollout: {calls} calls through the front door during the rollout, 0 errors");
    habd.stop().await;
    cleanup_nodes(&fleet, 3);
}
