//! Benchmark: rollout overhead on the Docker target.
//!
//!     cargo run --release --example bench_rollout
//!
//! A fleet of 4 fixture nodes is rolled from image A to image B with the
//! soak set to 0. A prober calls every node's RPC every 10 ms and records,
//! per node, how long it was out of service (from its last answer before the
//! restart to its first healthy answer after). Overhead = total rollout time
//! minus the sum of those windows: what hab adds per node (pulling, the
//! pre-check of the other nodes, noticing health). Target ≤ 1 s per node.
//!
//! Needs what `scripts/setup.sh` starts (dockerd, the registry on
//! 127.0.0.1:5000, the fixture base in dockerfiles/fixture/base).

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use hab::{
    builder::{
        context::{context_tar, load_recipe},
        engine::{BuildRequest, Engine},
    },
    config::{BuilderConfig, Config, Overrides},
    health,
    mirror::{TreeFile, TreeFiles},
    provenance::{BuildFacts, Provenance, SigningKey},
    registry::{IndexEntry, Registry},
    rollout::{docker::DockerTarget, Rollouts},
    store::{NewBuild, NewPlatform, RolloutState, Store},
};

const NODES: u32 = 4;
const PASSWORD: &str = "bench";

async fn image(
    engine: &Engine,
    registry: &Registry,
    provenance: &Provenance,
    version: &str,
    tmp: &std::path::Path,
) -> String {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let recipe = load_recipe(&root.join("dockerfiles/fixture")).expect("run scripts/setup.sh");
    let tree = TreeFiles {
        commit_time: 1_700_000_000,
        files: vec![TreeFile {
            path: "node.conf".into(),
            mode: 0o100644,
            content: b"behaviour=healthy\n".to_vec(),
        }],
        skipped: vec![],
    };
    let args = BTreeMap::from([("VERSION".to_string(), version.to_string())]);
    let tag = format!("hab-bench/rollout:{version}");
    engine
        .build(
            BuildRequest {
                context: context_tar(&recipe, &tree).unwrap(),
                platform: "linux/amd64",
                args: &args,
                tag: &tag,
                registry_auth: None,
            },
            &mut |_| {},
        )
        .await
        .unwrap();
    let saved = tmp.join("saved.tar");
    engine.export(&tag, &saved).await.unwrap();
    let p = registry
        .publish_saved(&saved, "bench/rollout", Arc::new(|_, _| {}))
        .await
        .unwrap();
    let (index, index_bytes) = registry
        .push_index(
            "bench/rollout",
            &[IndexEntry {
                platform: "linux/amd64".into(),
                digest: p.digest,
                size: p.size,
                media_type: p.media_type,
            }],
            &BTreeMap::new(),
            &[version.to_string()],
        )
        .await
        .unwrap();
    engine.remove_image(&tag).await;
    // A rollout runs only what habd's signed provenance vouches for.
    let facts = BuildFacts {
        repository: "bench/rollout".into(),
        index_digest: index.clone(),
        platforms: vec![],
        pipeline: "bench".into(),
        upstream: "git://127.0.0.1/bench.git".into(),
        ref_name: format!("refs/tags/{version}"),
        commit: "0".repeat(40),
        version: version.into(),
        recipe: "fixture".into(),
        recipe_digest: hab::builder::plan::recipe_digest(&recipe),
        ref_oid: "0".repeat(40),
        tag_object: None,
        verdict: "unsigned".into(),
        verdict_text: "unsigned".into(),
        signer: None,
        builder_id: provenance.builder_id(),
        build_id: 0,
        started: chrono::Utc::now(),
        finished: chrono::Utc::now(),
        verification: serde_json::json!({}),
    };
    provenance
        .attest(&facts, index_bytes.len() as i64)
        .await
        .unwrap();
    registry.pinned("bench/rollout", &index)
}

fn verified_build(store: &Store, version: &str) -> i64 {
    let b = store
        .create_build(&NewBuild {
            pipeline: "bench".into(),
            ref_name: format!("refs/tags/{version}"),
            commit: "0".repeat(40),
            version: version.into(),
            signer: None,
            trigger: "bench".into(),
            repository: "bench/rollout".into(),
            platforms: vec![NewPlatform {
                platform: "linux/amd64".into(),
                builder: "local".into(),
                build_key: format!("bench-{version}-{}", std::process::id()),
                reuse: None,
            }],
        })
        .unwrap();
    store
        .finish_verified(b.id, &format!("sha256:{version}"))
        .unwrap();
    b.id
}

async fn wait(store: &Store, id: i64) -> RolloutState {
    loop {
        let r = store.rollout(id).unwrap().unwrap();
        if r.state.is_final() {
            return r.state;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::main]
async fn main() {
    let tmp = tempfile::tempdir().unwrap();
    let fleet = format!("bench{}", std::process::id());
    std::fs::create_dir_all(tmp.path().join("pipelines")).unwrap();
    std::fs::write(
        tmp.path().join("pipelines/bench.toml"),
        "implementation = \"bitcoind\"\n[upstream]\nurl = \"git://127.0.0.1:1/none\"\n\
         [signature]\npolicy = \"none\"\n[[channel]]\nname = \"stable\"\n",
    )
    .unwrap();
    std::fs::write(tmp.path().join("rpc-password"), PASSWORD).unwrap();
    std::fs::write(
        tmp.path().join("hab.toml"),
        format!(
            "state_dir = \"state\"\npipelines_dir = \"pipelines\"\n\
             [[fleet]]\nname = \"{fleet}\"\npipeline = \"bench\"\nchannel = \"stable\"\nnodes = {NODES}\n\
             rpc_password_file = \"rpc-password\"\n\
             [fleet.gates]\nsoak = \"0s\"\nready_timeout = \"60s\"\n"
        ),
    )
    .unwrap();
    let config =
        Arc::new(Config::load(Some(&tmp.path().join("hab.toml")), &Overrides::default()).unwrap());
    std::fs::create_dir_all(&config.state_dir).unwrap();
    let store = Store::open(&config.state_dir.join("hab.sqlite3")).unwrap();
    let registry = Registry::new(&config.registry).unwrap();
    registry
        .check()
        .await
        .expect("the registry on 127.0.0.1:5000 (run scripts/setup.sh)");
    let engine = Engine::connect(&BuilderConfig {
        name: "local".into(),
        endpoint: "unix:///var/run/docker.sock".into(),
        platforms: vec!["linux/amd64".parse().unwrap()],
        emulated: vec![],
        tls_ca: None,
        tls_cert: None,
        tls_key: None,
    })
    .await
    .expect("dockerd (run scripts/setup.sh)");
    let (key, _) = SigningKey::load_or_create(&config.signing_key_path()).unwrap();
    let provenance = Provenance::new(Arc::new(key), registry.clone());
    let a = image(&engine, &registry, &provenance, "bench-a", tmp.path()).await;
    let b = image(&engine, &registry, &provenance, "bench-b", tmp.path()).await;
    let (ba, bb) = (
        verified_build(&store, "bench-a"),
        verified_build(&store, "bench-b"),
    );

    let rollouts = Rollouts::new(config.clone(), store.clone(), registry.clone(), provenance);
    rollouts.spawn();
    let first = store
        .queue_rollout(&fleet, "bench", "stable", ba, &a, "bench")
        .unwrap();
    rollouts.wake();
    assert_eq!(wait(&store, first.id).await, RolloutState::Succeeded);
    println!("fleet of {NODES} fixture nodes on image A; rolling to B with soak 0");

    // The prober: per node, out-of-service windows.
    let target = DockerTarget::connect("unix:///var/run/docker.sock", None)
        .await
        .unwrap();
    let windows: Arc<Mutex<BTreeMap<u32, Duration>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let prober = {
        let (windows, stop, fleet, target) =
            (windows.clone(), stop.clone(), fleet.clone(), target.clone());
        tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut last_ok: BTreeMap<u32, Instant> = BTreeMap::new();
            let mut down: BTreeMap<u32, bool> = BTreeMap::new();
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                for o in 0..NODES {
                    let port = target
                        .status(&fleet, o)
                        .await
                        .ok()
                        .flatten()
                        .and_then(|s| s.host_port);
                    let ok = match port {
                        Some(p) => health::blockchain_info(
                            &http,
                            &format!("http://127.0.0.1:{p}/"),
                            "hab",
                            PASSWORD,
                        )
                        .await
                        .is_ok(),
                        None => false,
                    };
                    let now = Instant::now();
                    if ok {
                        if down.insert(o, false) == Some(true) {
                            let since = last_ok.get(&o).copied().unwrap_or(now);
                            *windows.lock().unwrap().entry(o).or_default() +=
                                now.duration_since(since);
                        }
                        last_ok.insert(o, now);
                    } else {
                        down.insert(o, true);
                    }
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let t0 = Instant::now();
    let second = store
        .queue_rollout(&fleet, "bench", "stable", bb, &b, "bench")
        .unwrap();
    rollouts.wake();
    assert_eq!(wait(&store, second.id).await, RolloutState::Succeeded);
    let total = t0.elapsed();
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    prober.await.unwrap();

    let windows = windows.lock().unwrap().clone();
    let out_of_service: Duration = windows.values().sum();
    println!("total rollout: {:.2} s", total.as_secs_f64());
    // Each node's share of the rollout: from the step before its update to
    // its gate passing; its overhead is that share minus its window.
    let steps = store.rollout_steps(second.id).unwrap();
    let mut from = steps.first().map(|s| s.at);
    for s in steps.iter().filter(|s| s.kind == "gate_passed") {
        let (Some(o), Some(start)) = (s.ordinal, from) else {
            continue;
        };
        let share = (s.at - start).to_std().unwrap_or_default();
        let window = windows.get(&o).copied().unwrap_or_default();
        println!(
            "  node {o}: share {:.2} s, restart -> healthy {:.2} s, overhead {:.2} s",
            share.as_secs_f64(),
            window.as_secs_f64(),
            share.saturating_sub(window).as_secs_f64()
        );
        from = Some(s.at);
    }
    let overhead = total.saturating_sub(out_of_service);
    println!(
        "overhead: {:.2} s in all, {:.2} s per node (target <= 1 s per node)",
        overhead.as_secs_f64(),
        overhead.as_secs_f64() / f64::from(NODES)
    );
    for o in 0..NODES {
        let _ = target.remove(&fleet, o).await;
        let _ = std::process::Command::new("/usr/bin/docker")
            .args(["volume", "rm", "-f", &format!("hab-{fleet}-{o}-data")])
            .output();
    }
}
