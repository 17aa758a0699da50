//! The RPC front door run apart (`[gateway] run = "apart"`): two
//! `habd gateway` processes before a fleet of three pods on Kubernetes
//! (the API double of tests/common/kube_double.rs, its pods real
//! fixture-node containers), while `habd serve` rolls that fleet from
//! release A to B. Each front door finds the pods by watching them through
//! the API; habd marks each pod for draining before the partition moves
//! and gives the front doors `drain_wait` to act on it. A client calling
//! each front door every 10 ms sees no error and never a lower height.

mod common;

use std::{
    process::{Child, Command, Stdio},
    time::Duration,
};

use common::*;
use hab::gateway::access::User;
use serde_json::{json, Value};

struct Door(Child);

impl Drop for Door {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn door(config: &std::path::Path, listen: &str) -> Door {
    Door(
        Command::new(env!("CARGO_BIN_EXE_habd"))
            .args(["gateway", "--config"])
            .arg(config)
            .args(["--listen", listen])
            .env("HAB_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    )
}

async fn blocks(url: &str) -> Option<u64> {
    let r = reqwest::Client::new()
        .post(url)
        .basic_auth("reader", Some("rpass"))
        .json(&json!({"jsonrpc": "1.0", "id": 1, "method": "getblockchaininfo", "params": []}))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .ok()?;
    r.json::<Value>().await.ok()?["result"]["blocks"].as_u64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_front_doors_apart_see_no_error_during_a_kube_rollout() {
    let kw = KubeWorld::with(200, 3, "soak = \"1s\"\nready_timeout = \"20s\"\n").await;
    let (ports, fleet) = ([free_port(), free_port()], kw.fleet.clone());
    let config = kw.bw.world.path("hab.toml");
    let mut hab = std::fs::read_to_string(&config).unwrap();
    hab.push_str(&format!(
        "[gateway]\nlisten = \"127.0.0.1:{}\"\nrun = \"apart\"\nfleets = [\"{fleet}\"]\ndrain_wait = \"1s\"\n\
         [[gateway.user]]\nrpcauth = \"{}\"\n",
        ports[0],
        User::rpcauth("reader", "f00d", "rpass")
    ));
    std::fs::write(&config, hab).unwrap();
    // habd serve does not run the front door when it is run apart.
    let habd = Habd::start_config(kw.bw.load()).await;
    for p in ["node", "node2"] {
        let (s, b) = call(habd.api(reqwest::Method::POST, &format!("/pipelines/{p}/sync"))).await;
        assert_eq!(s, 200, "{b}");
    }
    let a = build_of(&habd, "node", "v1.0.0").await;
    let b = build_of(&habd, "node", "v1.1.0").await;
    kw.install(&fleet, &image(&a));
    kw.install(&kw.fleet2, &image(&a));
    kw.wait_ready().await;
    assert_eq!(promote_and_wait(&habd, &a).await["state"], "succeeded");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", ports[0])).is_err(),
        "habd serve listens on gateway.listen although run = \"apart\""
    );

    let doors: Vec<Door> = ports
        .iter()
        .map(|p| door(&config, &format!("127.0.0.1:{p}")))
        .collect();
    let urls: Vec<String> = ports
        .iter()
        .map(|p| format!("http://127.0.0.1:{p}/"))
        .collect();
    for url in &urls {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while blocks(url).await.is_none() {
            assert!(
                std::time::Instant::now() < deadline,
                "the front door at {url} never answered"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let watches = kw
        .double
        .state
        .lock()
        .unwrap()
        .requests
        .iter()
        .filter(|(_, path, q)| {
            path.ends_with("/pods") && q.contains("watch=true") && q.contains("labelSelector=")
        })
        .count();
    assert!(
        watches >= 2,
        "each front door watches the pods: {watches} watches"
    );

    // habctl rpc --door: the front door's view, each pod in service.
    let out = habctl(&habd)
        .args(["rpc", "--door", &urls[1], "--user", "reader"])
        .env("HAB_RPC_PASSWORD", "rpass")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.starts_with("NODE"), "{text}");
    for o in 0..3 {
        assert!(
            text.lines()
                .any(|l| l.starts_with(&format!("{fleet}-{o} ")) && l.ends_with("in service")),
            "{text}"
        );
    }
    // habd itself runs none, and says where to look.
    let out = habctl(&habd).arg("rpc").output().unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("runs apart"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let before = kw.double.state.lock().unwrap().pod_patches.len();
    let callers: Vec<Caller> = urls
        .iter()
        .map(|u| Caller::start(u, "reader", "rpass"))
        .collect();
    let r = promote_and_wait(&habd, &b).await;
    let mut seen = Vec::new();
    for c in callers {
        seen.push(c.finish().await);
    }
    assert_eq!(r["state"], "succeeded", "{r}");
    for o in 0..3 {
        assert_eq!(kw.pod_image(o).await, image(&b), "pod {o}");
    }
    // habd marked each pod before moving it, and took the mark off after.
    let patches = kw.double.state.lock().unwrap().pod_patches[before..].to_vec();
    for o in 0..3 {
        let pod = format!("{fleet}-{o}");
        let marks: Vec<&Value> = patches
            .iter()
            .filter(|(p, _)| *p == pod)
            .map(|(_, patch)| &patch["metadata"]["annotations"]["hab.dev/drain"])
            .collect();
        assert!(
            marks.first().is_some_and(|m| m.is_string()) && marks.last() == Some(&&Value::Null),
            "{pod}: drain marks {marks:?}"
        );
    }
    for ((calls, errors), url) in seen.iter().zip(&urls) {
        assert!(*calls > 50, "{url}: {calls} calls");
        assert!(
            errors.is_empty(),
            "{url}: {} of {calls} calls failed: {errors:?}",
            errors.len()
        );
        eprintln!("gateway_kube: {calls} calls through {url} during the rollout, 0 errors");
    }
    drop(doors);
    habd.stop().await;
}
