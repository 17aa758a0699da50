//! A Kubernetes world for tests: the fixture releases built, a registry,
//! the Kubernetes API double, and hab.toml with a Kubernetes target and two
//! fleets on it.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use serde_json::{json, Value};

use super::*;

/// The fleets' RPC password.
pub const KUBE_PASSWORD: &str = "kube-test-pw";

/// A world with releases A (v1.0.0), B (v1.1.0), a never-Ready one
/// (v1.2.0) and a lagging one (v1.3.0); a registry; the API double; and
/// hab.toml with a Kubernetes target and two fleets of two nodes on it
/// (pipelines `node` and `node2`, two "implementations").
pub struct KubeWorld {
    pub bw: BuildWorld,
    pub registry: TestRegistry,
    pub double: KubeDouble,
    pub fleet: String,
    pub fleet2: String,
    pub ip_base: u8,
    /// Nodes of the first fleet (the second has two).
    pub nodes: u32,
}

impl KubeWorld {
    /// Two fleets of two nodes, soak 1 s, ready_timeout 8 s.
    pub async fn new(ip_base: u8) -> Self {
        Self::with(ip_base, 2, "soak = \"1s\"\nready_timeout = \"8s\"\n").await
    }

    /// The first fleet of `nodes` nodes with the `[fleet.gates]` lines
    /// `gates`; the second of two, soak 1 s, ready_timeout 8 s.
    pub async fn with(ip_base: u8, nodes: u32, gates: &str) -> Self {
        let bw = BuildWorld::with_node_releases();
        let registry = TestRegistry::start(&bw.world.path("registry"), None, None);
        let fleet = format!("kn{}", free_port());
        let fleet2 = format!("{fleet}b");
        let double = KubeDouble::start(&format!("kd{fleet}"), ip_base).await;
        bw.write_hab(&registry.url(), None);
        std::fs::write(bw.world.path("rpc-password"), KUBE_PASSWORD).unwrap();
        let mut hab = std::fs::read_to_string(bw.world.path("hab.toml")).unwrap();
        hab.push_str(&format!(
            "[[target]]\nname = \"cluster\"\nkind = \"kubernetes\"\nendpoint = \"{}\"\nnamespace = \"default\"\n\
             {}{}",
            double.url,
            fleet_toml(&fleet, "node", nodes, gates),
            fleet_toml(&fleet2, "node2", 2, "soak = \"1s\"\nready_timeout = \"8s\"\n"),
        ));
        std::fs::write(bw.world.path("hab.toml"), hab).unwrap();
        for p in ["node", "node2"] {
            bw.write_pipeline(
                p,
                &fixture_recipe(),
                AMD64,
                r#"["fixture-node", "--version"]"#,
                "[[channel]]\nname = \"stable\"\n",
            );
        }
        KubeWorld {
            bw,
            registry,
            nodes,
            double,
            fleet,
            fleet2,
            ip_base,
        }
    }

    /// The StatefulSet of `fleet` as the chart installs it, on `image`, two
    /// replicas (the first fleet: its `nodes`).
    pub fn install(&self, fleet: &str, image: &str) {
        let replicas = if fleet == self.fleet { self.nodes } else { 2 };
        self.install_with(fleet, image, replicas, 30);
    }

    /// The StatefulSet of `fleet` on `image`, `replicas` pods, each given
    /// `grace` seconds to terminate.
    pub fn install_with(&self, fleet: &str, image: &str, replicas: u32, grace: u64) {
        self.double.create_statefulset(json!({
            "apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": fleet},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app.kubernetes.io/instance": fleet}},
                "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}},
                "template": {"metadata": {"labels": {"app.kubernetes.io/instance": fleet}},
                    "spec": {"terminationGracePeriodSeconds": grace,
                        "containers": [{"name": "node", "image": image,
                        "env": [{"name": "RPC_USER", "value": "hab"}, {"name": "RPC_PASSWORD", "value": KUBE_PASSWORD},
                                {"name": "NETWORK", "value": "regtest"}],
                        "ports": [{"containerPort": 18443}]}]}},
            },
        }));
    }

    /// Waits until every pod of both fleets is Ready (after `install`).
    pub async fn wait_ready(&self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        for (fleet, n) in [(&self.fleet, self.nodes), (&self.fleet2, 2)] {
            while self.double.statefulset(fleet)["status"]["readyReplicas"] != json!(n) {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the pods of {fleet} never got Ready"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    /// The first fleet's pod `o`'s image, as its spec names it.
    pub async fn pod_image(&self, o: u32) -> String {
        self.pod_image_of(&self.fleet, o).await
    }

    /// Pod `o` of `fleet`: its spec's image.
    pub async fn pod_image_of(&self, fleet: &str, o: u32) -> String {
        let url = format!(
            "{}/api/v1/namespaces/default/pods/{fleet}-{o}",
            self.double.url
        );
        let (_, p) = call(client().get(url)).await;
        p["spec"]["containers"][0]["image"]
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    /// Probes the pods of the first `sets` StatefulSets until stopped;
    /// returns the fewest healthy seen.
    pub fn prober(&self, sets: u8) -> (Arc<AtomicBool>, tokio::task::JoinHandle<usize>) {
        let first = self.nodes as u8;
        let stop = Arc::new(AtomicBool::new(false));
        let (s, base) = (stop.clone(), self.ip_base);
        let task = tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut fewest = usize::MAX;
            while !s.load(Ordering::SeqCst) {
                let mut healthy = 0;
                for o in (0..sets).flat_map(|k| {
                    let n = if k == 0 { first } else { 2 };
                    (0..n).map(move |o| 10 * k + o)
                }) {
                    let url = format!("http://127.0.0.{}:18443/", base + o);
                    if hab::health::blockchain_info(&http, &url, "hab", KUBE_PASSWORD)
                        .await
                        .is_ok()
                    {
                        healthy += 1;
                    }
                }
                fewest = fewest.min(healthy);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            fewest
        });
        (stop, task)
    }
}

fn fleet_toml(name: &str, pipeline: &str, nodes: u32, gates: &str) -> String {
    format!(
        "[[fleet]]\nname = \"{name}\"\npipeline = \"{pipeline}\"\nchannel = \"stable\"\ntarget = \"cluster\"\nnodes = {nodes}\n\
         rpc_user = \"hab\"\nrpc_password_file = \"rpc-password\"\n\
         [fleet.gates]\n{gates}"
    )
}

/// A build's pinned image reference.
pub fn image(b: &Value) -> String {
    b["reference"].as_str().unwrap().to_string()
}
