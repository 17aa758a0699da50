//! Benchmark: the dashboard's overview, rendered server-side.
//!
//!     cargo run --release --example bench_dashboard      # ROUNDS (500)
//!
//! A store as a busy habd's: 10 pipelines of 200 signed tags each (every
//! tag seen by a sync, with its verdict), 3 verified builds per pipeline
//! (two platforms each) on edge and stable, 20 fleets of 5 nodes with a
//! rollout of 12 steps each and a look at every node. The overview (what
//! `GET /` answers: the store read and the HTML made) is rendered ROUNDS
//! times; p50, p99 and its size are printed, with their ratio to the
//! targets (p99 under 20 ms, under 100 KB), and the share of the time
//! spent reading the store, measured alone in the same run.

use std::time::{Duration, Instant};

use chrono::Utc;
use hab::{
    config::{Config, Overrides},
    dashboard::{who, Session},
    refplan::{Change, ChangeKind, Observed, RefKind, RefTarget},
    signature::Verdict,
    store::{NewBuild, NewPlatform, NodeLook, PlatformUpdate, Store, SyncResult},
};

const PIPELINES: usize = 10;
const REFS: usize = 200;
const FLEETS: usize = 20;
const NODES: u32 = 5;

fn hex(seed: usize, len: usize) -> String {
    format!("{seed:0>len$x}")
}

fn setup(dir: &std::path::Path) -> (Config, Store) {
    std::fs::create_dir_all(dir.join("pipelines")).unwrap();
    for p in 0..PIPELINES {
        std::fs::write(
            dir.join(format!("pipelines/p{p}.toml")),
            "implementation = \"bitcoind\"\n[upstream]\nurl = \"git://127.0.0.1:1/none\"\n\
             [signature]\npolicy = \"none\"\n\
             [[channel]]\nname = \"edge\"\nauto = true\n[[channel]]\nname = \"stable\"\n",
        )
        .unwrap();
    }
    std::fs::write(dir.join("rpc-password"), "bench").unwrap();
    let mut hab = String::from("state_dir = \"state\"\npipelines_dir = \"pipelines\"\n");
    for f in 0..FLEETS {
        hab.push_str(&format!(
            "[[fleet]]\nname = \"fleet{f}\"\npipeline = \"p{}\"\nchannel = \"stable\"\nnodes = {NODES}\n\
             rpc_password_file = \"rpc-password\"\n",
            f % PIPELINES
        ));
    }
    std::fs::write(dir.join("hab.toml"), hab).unwrap();
    let config = Config::load(Some(&dir.join("hab.toml")), &Overrides::default()).unwrap();
    std::fs::create_dir_all(&config.state_dir).unwrap();
    let store = Store::open(&config.state_dir.join("hab.sqlite3")).unwrap();
    let signed = Verdict::Verified {
        fingerprint: "E777299FC265DD04793070EB944D35F9AC3DB76A".into(),
        primary_fingerprint: "E777299FC265DD04793070EB944D35F9AC3DB76A".into(),
        signed_at: Utc::now(),
    };
    let mut index = Vec::new();
    for p in 0..PIPELINES {
        let name = format!("p{p}");
        let sync = store.begin_sync(&name, "bench").unwrap();
        let changes = (0..REFS)
            .map(|r| Observed {
                change: Change {
                    name: format!("refs/tags/v{}.{}.0", r / 10, r % 10),
                    kind: ChangeKind::Added,
                    old_oid: None,
                    new_oid: Some(hex(p * 1000 + r, 40)),
                },
                target: Some(RefTarget {
                    kind: RefKind::AnnotatedTag,
                    oid: hex(p * 1000 + r, 40),
                    commit: hex(p * 1000 + r + 500, 40),
                }),
                verdict: Some(signed.clone()),
            })
            .collect();
        store
            .finish_sync(
                sync,
                &name,
                &SyncResult {
                    objects_received: 0,
                    bytes_received: 0,
                    changes,
                },
            )
            .unwrap();
        let mut ids = Vec::new();
        for b in 0..3usize {
            let version = format!("v19.{b}.0");
            let build = store
                .create_build(&NewBuild {
                    pipeline: name.clone(),
                    ref_name: format!("refs/tags/{version}"),
                    commit: hex(p * 1000 + 190 + b, 40),
                    version,
                    signer: Some("E777299FC265DD04793070EB944D35F9AC3DB76A".into()),
                    trigger: "bench".into(),
                    repository: format!("hab/p{p}"),
                    platforms: ["linux/amd64", "linux/arm64"]
                        .iter()
                        .map(|pl| NewPlatform {
                            platform: (*pl).into(),
                            builder: "local".into(),
                            build_key: format!("sha256:{}", hex(p * 100 + b, 64)),
                            reuse: None,
                        })
                        .collect(),
                })
                .unwrap();
            for (i, pl) in ["linux/amd64", "linux/arm64"].iter().enumerate() {
                store
                    .update_platform(
                        build.id,
                        pl,
                        &PlatformUpdate {
                            manifest: Some((
                                format!("sha256:{}", hex(p * 100 + b * 10 + i, 64)),
                                1000,
                                "application/vnd.oci.image.manifest.v1+json".into(),
                            )),
                            ..PlatformUpdate::default()
                        },
                    )
                    .unwrap();
            }
            let digest = format!("sha256:{}", hex(p * 100 + b + 7, 64));
            store.finish_verified(build.id, &digest).unwrap();
            ids.push((build.id, digest));
        }
        store
            .move_channel(&name, "edge", ids[2].0, "bench", None)
            .unwrap()
            .unwrap();
        store
            .move_channel(&name, "stable", ids[1].0, "bench", None)
            .unwrap()
            .unwrap();
        index.push(ids);
    }
    for f in 0..FLEETS {
        let p = f % PIPELINES;
        let (id, digest) = &index[p][1];
        let image = format!("127.0.0.1:5000/hab/p{p}@{digest}");
        let r = store
            .queue_rollout(
                &format!("fleet{f}"),
                &format!("p{p}"),
                "stable",
                *id,
                &image,
                "bench",
            )
            .unwrap();
        for s in 0..12u32 {
            store
                .rollout_step(
                    r.id,
                    Some(s % NODES),
                    "gate_passed",
                    "healthy at height 871000 for 2m",
                )
                .unwrap();
        }
        let nodes: Vec<NodeLook> = (0..NODES)
            .map(|o| NodeLook {
                fleet: format!("fleet{f}"),
                ordinal: o,
                image: Some(image.clone()),
                rpc: Some(format!("http://fleet{f}-{o}:8332/")),
                chain: Some("main".into()),
                height: Some(871_000 - u64::from(o % 2)),
                headers: Some(871_000),
                ibd: Some(false),
                healthy: o != 4,
                reason: (o == 4).then(|| "RPC did not answer: connection refused".into()),
                observed_at: Utc::now(),
            })
            .collect();
        store
            .record_node_status(&format!("fleet{f}"), &nodes)
            .unwrap();
    }
    (config, store)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("ROUNDS is a number"))
        .unwrap_or(500);
    let tmp = tempfile::tempdir().unwrap();
    let (config, store) = setup(tmp.path());
    let session = Session {
        who: who("bench", "token"),
        csrf: "0".repeat(64),
    };
    let html = hab::server::overview_html(&store, &config, &session).unwrap();
    let mut times = Vec::with_capacity(rounds);
    let mut reads = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let t = Instant::now();
        let page = hab::server::overview_html(&store, &config, &session).unwrap();
        times.push(t.elapsed());
        std::hint::black_box(page);
        let t = Instant::now();
        std::hint::black_box(hab::server::gather_facts(&store, &config).unwrap());
        reads.push(t.elapsed());
    }
    times.sort();
    reads.sort();
    let (p50, p99) = (percentile(&times, 0.5), percentile(&times, 0.99));
    let read99 = percentile(&reads, 0.99);
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "store: {PIPELINES} pipelines × {REFS} refs, 3 builds each; {FLEETS} fleets × {NODES} nodes, a rollout of 12 steps each"
    );
    println!("overview, {rounds} renders: p50 {:.2} ms, p99 {:.2} ms (of which the store read p99 {:.2} ms)", ms(p50), ms(p99), ms(read99));
    println!(
        "p99 ratio to the 20 ms target: {:.3} ({})",
        ms(p99) / 20.0,
        if ms(p99) < 20.0 { "met" } else { "NOT met" }
    );
    println!(
        "size: {} bytes; ratio to the 100 KB target: {:.3} ({})",
        html.len(),
        html.len() as f64 / 102_400.0,
        if html.len() < 102_400 {
            "met"
        } else {
            "NOT met"
        }
    );
}
