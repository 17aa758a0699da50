//! Fleets on the Docker target for rollout tests: two pipelines over the
//! fixture upstream, a fleet of two nodes each, builds and promotes over the
//! API, and a prober that calls every node's RPC throughout.

use std::{
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use hab::{health, rollout::docker::DockerTarget};
use serde_json::{json, Value};

use super::*;

pub const PASSWORD: &str = "rollout-test-pw";

/// Two pipelines over the same upstream (two "implementations" of the
/// fixture), each with a `stable` channel and a fleet of two nodes.
pub struct Fleets {
    pub bw: BuildWorld,
    /// Kept running for the test's length.
    _registry: TestRegistry,
    pub names: [String; 2],
}

impl Fleets {
    pub fn new() -> Self {
        Self::with_gates("soak = \"1s\"\nready_timeout = \"6s\"")
    }

    pub fn with_gates(gates: &str) -> Self {
        let bw = BuildWorld::with_node_releases();
        let registry = TestRegistry::start(&bw.world.path("registry"), None, None);
        bw.write_hab(&registry.url(), None);
        std::fs::write(bw.world.path("rpc-password"), PASSWORD).unwrap();
        let suffix = free_port();
        let names = [format!("core{suffix}"), format!("knots{suffix}")];
        let mut hab = std::fs::read_to_string(bw.world.path("hab.toml")).unwrap();
        for (name, pipeline) in names.iter().zip(["node", "node2"]) {
            hab.push_str(&format!(
                "[[fleet]]\nname = \"{name}\"\npipeline = \"{pipeline}\"\nchannel = \"stable\"\nnodes = 2\n\
                 rpc_user = \"hab\"\nrpc_password_file = \"rpc-password\"\n\
                 [fleet.gates]\nmax_lag = 2\n{gates}\n"
            ));
        }
        std::fs::write(bw.world.path("hab.toml"), hab).unwrap();
        let recipe = fixture_recipe();
        for p in ["node", "node2"] {
            bw.write_pipeline(
                p,
                &recipe,
                AMD64,
                r#"["fixture-node", "--version"]"#,
                "[[channel]]\nname = \"stable\"\n",
            );
        }
        Fleets {
            bw,
            _registry: registry,
            names,
        }
    }
}

pub async fn build(habd: &Habd, pipeline: &str, tag: &str) -> i64 {
    let (s, b) = call(
        habd.api(
            reqwest::Method::POST,
            &format!("/pipelines/{pipeline}/builds"),
        )
        .json(&json!({ "ref": tag })),
    )
    .await;
    assert!(s == 202 || s == 200, "{b}");
    let b = wait_build(habd, b["id"].as_i64().unwrap()).await;
    assert_eq!(b["state"], "verified", "{b}");
    b["id"].as_i64().unwrap()
}

pub async fn promote(habd: &Habd, pipeline: &str, build: i64) -> Vec<i64> {
    let (s, p) = call(
        habd.api(
            reqwest::Method::POST,
            &format!("/pipelines/{pipeline}/promote"),
        )
        .json(&json!({ "target": build.to_string(), "channel": "stable", "by": "test" })),
    )
    .await;
    assert_eq!(s, 200, "{p}");
    p["rollouts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect()
}

pub async fn wait_rollout(habd: &Habd, id: i64) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    loop {
        let (s, r) = call(habd.api(reqwest::Method::GET, &format!("/rollouts/{id}"))).await;
        assert_eq!(s, 200, "{r}");
        if ["succeeded", "failed", "superseded"].contains(&r["state"].as_str().unwrap()) {
            return r;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "rollout {id} stuck: {r}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Calls every node's RPC in a loop and keeps the fewest healthy seen.
pub struct Prober {
    fewest: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Prober {
    pub async fn start(fleets: &[String]) -> Self {
        let target = DockerTarget::connect("unix:///var/run/docker.sock", None)
            .await
            .unwrap();
        let fewest = Arc::new(AtomicUsize::new(usize::MAX));
        let stop = Arc::new(AtomicBool::new(false));
        let (f, s, names) = (fewest.clone(), stop.clone(), fleets.to_vec());
        let task = tokio::spawn(async move {
            let http = reqwest::Client::new();
            while !s.load(Ordering::SeqCst) {
                let mut healthy = 0;
                for name in &names {
                    for o in 0..2 {
                        let Ok(Some(st)) = target.status(name, o).await else {
                            continue;
                        };
                        let Some(port) = st.host_port else { continue };
                        let url = format!("http://127.0.0.1:{port}/");
                        if let Ok(i) = health::blockchain_info(&http, &url, "hab", PASSWORD).await {
                            if !i.initialblockdownload {
                                healthy += 1;
                            }
                        }
                    }
                }
                f.fetch_min(healthy, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        Prober { fewest, stop, task }
    }

    pub async fn finish(self) -> usize {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.unwrap();
        self.fewest.load(Ordering::SeqCst)
    }
}

pub fn images(fleet: &str) -> Vec<String> {
    (0..2)
        .map(|o| {
            docker(&[
                "inspect",
                "--format",
                "{{index .Config.Labels \"io.hab.image\"}}",
                &format!("hab-{fleet}-{o}"),
            ])
            .trim()
            .to_string()
        })
        .collect()
}

pub fn cleanup(fleets: &[String]) {
    for f in fleets {
        cleanup_nodes(f, 2);
    }
}

/// Removes the first `nodes` containers of `fleet` and their volumes.
pub fn cleanup_nodes(f: &str, nodes: u32) {
    for o in 0..nodes {
        let _ = std::process::Command::new("/usr/bin/docker")
            .args(["rm", "-f", &format!("hab-{f}-{o}")])
            .output();
        let _ = std::process::Command::new("/usr/bin/docker")
            .args([
                "volume",
                "rm",
                "-f",
                &format!("hab-{f}-{o}-data"),
                &format!("hab-{f}-{o}-files"),
            ])
            .output();
    }
}
