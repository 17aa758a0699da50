//! No secret in sight, and btcd over TLS, on the Docker target: a fleet of
//! bitcoind-like nodes and a fleet of btcd-like nodes (the fixture node
//! given btcd's files: it serves RPC over TLS only, as btcd does) are
//! rolled out behind their gates. Their RPC passwords are in no process's
//! arguments or environment on the host, only in config files mounted
//! read-only, mode 0400; the btcd fleet's gates pass over TLS against the
//! CA hab made for that fleet, and nothing else is trusted.

mod common;

use common::*;
use serde_json::json;

const AMD64: &str = r#"["linux/amd64"]"#;

struct Cleanup(Vec<String>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        cleanup(&self.0);
    }
}

/// Every process's arguments (`ps -eo args`) and every environment under
/// /proc that holds `needle`.
fn processes_showing(needle: &str) -> Vec<String> {
    let mut seen = Vec::new();
    let ps = run(std::process::Command::new("ps").args(["-eo", "pid,args"]));
    seen.extend(
        ps.lines()
            .filter(|l| l.contains(needle))
            .map(|l| format!("args: {l}")),
    );
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.chars().all(|c| c.is_ascii_digit()) {
            continue;
        }
        if let Ok(env) = std::fs::read(e.path().join("environ")) {
            if env.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                seen.push(format!("environ of pid {name}"));
            }
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwords_live_in_read_only_files_and_a_btcd_fleet_passes_its_gates_over_tls() {
    let bw = BuildWorld::new();
    let registry = TestRegistry::start(&bw.world.path("registry"), None, None);
    bw.write_hab(&registry.url(), None);
    let suffix = free_port();
    let (core, btcd) = (format!("core{suffix}"), format!("btcd{suffix}"));
    let _cleanup = Cleanup(vec![core.clone(), btcd.clone()]);
    let mut hab = std::fs::read_to_string(bw.world.path("hab.toml")).unwrap();
    for (name, pipeline) in [(&core, "node"), (&btcd, "btcd")] {
        // No rpc_password_file: hab generates each fleet's password.
        hab.push_str(&format!(
            "[[fleet]]\nname = \"{name}\"\npipeline = \"{pipeline}\"\nchannel = \"stable\"\n\
             nodes = 2\n[fleet.gates]\nmax_lag = 2\nsoak = \"1s\"\nready_timeout = \"30s\"\n"
        ));
    }
    std::fs::write(bw.world.path("hab.toml"), hab).unwrap();
    for p in ["node", "btcd"] {
        bw.write_pipeline(
            p,
            &fixture_recipe(),
            AMD64,
            r#"["fixture-node", "--version"]"#,
            "[[channel]]\nname = \"stable\"\n",
        );
    }
    let btcd_pipeline = bw.world.path("pipelines/btcd.toml");
    let text = std::fs::read_to_string(&btcd_pipeline).unwrap();
    std::fs::write(
        &btcd_pipeline,
        text.replace("implementation = \"bitcoind\"", "implementation = \"btcd\""),
    )
    .unwrap();
    let config = bw.load();
    let tls_of = |n: &str| config.fleets.iter().find(|f| f.name == n).unwrap().rpc_tls;
    assert!(tls_of(&btcd), "btcd fleets serve RPC over TLS by default");
    assert!(!tls_of(&core));

    let habd = Habd::start_config(config).await;
    for p in ["node", "btcd"] {
        let (s, b) = call(habd.api(reqwest::Method::POST, &format!("/pipelines/{p}/sync"))).await;
        assert_eq!(s, 200, "{b}");
        let build = build_of(&habd, p, "v1.0.0").await;
        let (s, out) = call(
            habd.api(reqwest::Method::POST, &format!("/pipelines/{p}/promote"))
                .json(&json!({ "target": build["id"].to_string(), "channel": "stable", "by": "test" })),
        )
        .await;
        assert_eq!(s, 200, "{out}");
        for r in out["rollouts"].as_array().unwrap() {
            let r = wait_rollout(&habd, r["id"].as_i64().unwrap()).await;
            assert_eq!(r["state"], "succeeded", "{r:#}");
        }
    }

    let password = |fleet: &str| {
        std::fs::read_to_string(bw.world.path(&format!("state/fleets/{fleet}.rpc-password")))
            .unwrap()
            .trim()
            .to_string()
    };
    for (fleet, file, line) in [
        (&core, "bitcoin.conf", "rpcpassword="),
        (&btcd, "btcd.conf", "rpcpass="),
    ] {
        let pw = password(fleet);
        for o in 0..2 {
            let node = format!("hab-{fleet}-{o}");
            // The node's own config file: read-only, 0400, its user's.
            let conf = docker(&["exec", &node, "cat", &format!("/run/hab/{file}")]);
            assert!(conf.contains(&format!("{line}{pw}\n")), "{conf}");
            let ls = docker(&["exec", &node, "/bin/busybox", "ls", "-ln", "/run/hab"]);
            assert!(
                ls.lines()
                    .skip(1)
                    .all(|l| l.starts_with("-r-------- ") && l.contains(" 0 ")),
                "{ls}"
            );
            let mounts = docker(&["inspect", "--format", "{{json .Mounts}}", &node]);
            assert!(
                mounts.contains(
                    r#""Destination":"/run/hab","Driver":"local","Mode":"ro","RW":false"#
                ),
                "{mounts}"
            );
            let env = docker(&["inspect", "--format", "{{json .Config}}", &node]);
            assert!(!env.contains(&pw), "the container's config shows it: {env}");
        }
        let shown = processes_showing(&pw);
        assert!(
            shown.is_empty(),
            "fleet {fleet}'s password is in sight: {shown:#?}"
        );
    }

    // btcd: RPC over TLS only, under the CA hab made for the fleet.
    let ca_path = bw
        .world
        .path(&format!("state/fleets/{btcd}/rpc-tls/ca.pem"));
    let ca = reqwest::Certificate::from_pem(&std::fs::read(&ca_path).unwrap()).unwrap();
    let port = docker(&["port", &format!("hab-{btcd}-0"), "18443/tcp"]);
    let port = port.trim().rsplit(':').next().unwrap().to_string();
    let pinned = reqwest::Client::builder()
        .tls_certs_only([ca])
        .build()
        .unwrap();
    let info = hab::health::blockchain_info(
        &pinned,
        &format!("https://127.0.0.1:{port}/"),
        "hab",
        &password(&btcd),
    )
    .await
    .unwrap();
    assert_eq!(info.blocks, 850_000);
    let plain = hab::health::blockchain_info(
        &reqwest::Client::new(),
        &format!("http://127.0.0.1:{port}/"),
        "hab",
        &password(&btcd),
    )
    .await;
    assert!(plain.is_err(), "plain HTTP answered: {plain:?}");
    let system_roots = hab::health::blockchain_info(
        &reqwest::Client::new(),
        &format!("https://127.0.0.1:{port}/"),
        "hab",
        &password(&btcd),
    )
    .await;
    assert!(
        system_roots.is_err(),
        "a certificate trusted without the fleet's CA: {system_roots:?}"
    );
    let out = run(habctl(&habd).args(["rollout", "status", &btcd]));
    assert!(out.contains("healthy at 850000"), "{out}");
    habd.stop().await;
}
