//! A btcd fleet on the Kubernetes target (through kube-rs against the API
//! double, tests/common/kube_double.rs): its pods get their config file and
//! RPC certificate from a Secret, mounted read-only with mode 0400, as the
//! chart gives them; they serve RPC over TLS only, as btcd does (the
//! fixture node given btcd's files). habd asks each pod by its stable name
//! under the StatefulSet's governing Service, reached at the pod's IP, and
//! trusts only the CA the config names: the gates pass over TLS, and the
//! rollout walks the fleet. Pinned to another CA, the same gates never
//! pass, and the rollout turns back.

mod common;

use std::collections::BTreeMap;

use base64::Engine as _;
use common::*;
use hab::{config::Implementation, rollout::conf::node_files, tls::Authority};
use serde_json::{json, Value};

const AMD64: &str = r#"["linux/amd64"]"#;
const PASSWORD: &str = "kube-tls-pw";

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_btcd_fleet_rolls_with_its_gates_over_tls_on_kubernetes() {
    let bw = BuildWorld::with_node_releases();
    let registry = TestRegistry::start(&bw.world.path("registry"), None, None);
    let fleet = format!("kt{}", free_port());
    let service = format!("{fleet}-headless");
    let double = KubeDouble::start(&format!("kd{fleet}"), 120).await;

    // What the chart makes at install: the fleet's RPC CA and a server
    // certificate for every pod's name under the governing Service.
    let ca = Authority::new("fleet RPC CA").unwrap();
    let server = ca
        .server(&[
            format!("*.{service}.default.svc"),
            format!("*.{service}.default.svc.cluster.local"),
        ])
        .unwrap();
    std::fs::write(bw.world.path("rpc-ca.pem"), &ca.cert_pem).unwrap();
    std::fs::write(
        bw.world.path("other-ca.pem"),
        Authority::new("someone else").unwrap().cert_pem,
    )
    .unwrap();
    std::fs::write(bw.world.path("rpc-password"), PASSWORD).unwrap();
    let tls = hab::rollout::conf::ServerTls {
        cert_pem: server.cert_pem,
        key_pem: server.key_pem,
    };
    let data: BTreeMap<String, String> =
        node_files(Implementation::Btcd, "hab", PASSWORD, Some(&tls))
            .into_iter()
            .map(|f| (f.name, b64(&f.contents)))
            .collect();
    double.create_secret(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": format!("{fleet}-rpc")}, "data": data,
    }));

    bw.write_hab(&registry.url(), None);
    let door_port = free_port();
    let written = std::fs::read_to_string(bw.world.path("hab.toml")).unwrap();
    let hab_toml = |ca: &str| {
        let mut hab = written.clone();
        hab.push_str(&format!(
            "[[target]]\nname = \"cluster\"\nkind = \"kubernetes\"\nendpoint = \"{}\"\nnamespace = \"default\"\n\
             [[fleet]]\nname = \"{fleet}\"\npipeline = \"node\"\nchannel = \"stable\"\ntarget = \"cluster\"\nnodes = 2\n\
             rpc_user = \"hab\"\nrpc_password_file = \"rpc-password\"\nrpc_tls_ca = \"{ca}\"\n\
             [fleet.gates]\nsoak = \"1s\"\nready_timeout = \"8s\"\n\
             [gateway]\nlisten = \"127.0.0.1:{door_port}\"\nrun = \"apart\"\ndrain_wait = \"500ms\"\n\
             [[gateway.user]]\nrpcauth = \"{}\"\n",
            double.url,
            hab::gateway::access::User::rpcauth("reader", "f00d", "rpass"),
        ));
        hab
    };
    std::fs::write(bw.world.path("hab.toml"), hab_toml("rpc-ca.pem")).unwrap();
    bw.write_pipeline(
        "node",
        &fixture_recipe(),
        AMD64,
        r#"["fixture-node", "--version"]"#,
        "[[channel]]\nname = \"stable\"\n",
    );
    let pipeline = bw.world.path("pipelines/node.toml");
    let text = std::fs::read_to_string(&pipeline).unwrap();
    std::fs::write(
        &pipeline,
        text.replace("implementation = \"bitcoind\"", "implementation = \"btcd\""),
    )
    .unwrap();
    let config = bw.load();
    assert!(config.fleets[0].rpc_tls);

    let habd = Habd::start_config(config).await;
    assert_eq!(habd.sync_node().await.0, 200);
    let a = build_of(&habd, "node", "v1.0.0").await;
    let b = build_of(&habd, "node", "v1.1.0").await;
    // The StatefulSet as the chart renders a btcd set: no secret in its
    // environment, the Secret mounted read-only at /run/hab, 0400.
    double.create_statefulset(json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": fleet},
        "spec": {
            "replicas": 2,
            "serviceName": service,
            "selector": {"matchLabels": {"app.kubernetes.io/instance": fleet}},
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}},
            "template": {"metadata": {"labels": {"app.kubernetes.io/instance": fleet}},
                "spec": {"terminationGracePeriodSeconds": 30,
                    "volumes": [{"name": "rpc", "secret": {"secretName": format!("{fleet}-rpc"), "defaultMode": 0o400}}],
                    "containers": [{"name": "node", "image": image(&a),
                        "env": [{"name": "RPC_USER", "value": "hab"}, {"name": "NETWORK", "value": "regtest"}],
                        "volumeMounts": [{"name": "rpc", "mountPath": "/run/hab", "readOnly": true}],
                        "ports": [{"containerPort": 18443}]}]}},
        },
    }));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while double.statefulset(&fleet)["status"]["readyReplicas"] != json!(2) {
        assert!(std::time::Instant::now() < deadline, "pods never Ready");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let r = promote_and_wait(&habd, &a).await;
    assert_eq!(r["state"], "succeeded", "{r:#}");

    // A to B: each pod replaced and held to its gates, over TLS.
    let r = promote_and_wait(&habd, &b).await;
    assert_eq!(r["state"], "succeeded", "{r:#}");
    let steps = rollout_steps(&habd, &r).await;
    assert!(
        steps.iter().filter(|s| s.contains("healthy")).count() >= 2,
        "{steps:#?}"
    );
    let out = run(habctl(&habd).args(["rollout", "status", &fleet]));
    assert!(out.contains("healthy at 850000"), "{out}");

    // The RPC front door, run apart, before the same pods over TLS: it
    // calls each pod by its certificate's name at the pod's address,
    // trusting the fleet's CA only.
    let mut door = std::process::Command::new(env!("CARGO_BIN_EXE_habd"))
        .args(["gateway", "--config"])
        .arg(bw.world.path("hab.toml"))
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{door_port}/");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let nodes = loop {
        let out = habctl(&habd)
            .args([
                "--output", "json", "rpc", "--door", &url, "--user", "reader",
            ])
            .env("HAB_RPC_PASSWORD", "rpass")
            .output()
            .unwrap();
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let up = v
            .as_array()
            .map_or(0, |n| n.iter().filter(|n| n["answers"] == true).count());
        if up == 2 {
            break v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the front door never reached both pods over TLS: {v}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    let (s, r) = call(
        reqwest::Client::new()
            .post(&url)
            .basic_auth("reader", Some("rpass"))
            .json(&json!({"jsonrpc": "1.0", "id": 1, "method": "getblockcount", "params": []})),
    )
    .await;
    assert_eq!((s, &r["result"]), (200, &json!(850000)), "{r} {nodes}");
    let _ = door.kill();
    let _ = door.wait();
    habd.stop().await;

    // The same fleet, its gates pinned to a CA that did not sign the
    // pods' certificates: back to A, which passed its gates before, now
    // passes none, and the rollout turns back.
    std::fs::write(bw.world.path("hab.toml"), hab_toml("other-ca.pem")).unwrap();
    let habd = Habd::start_config(bw.load()).await;
    let r = promote_and_wait(&habd, &a).await;
    assert_ne!(r["state"], "succeeded", "{r:#}");
    let steps = rollout_steps(&habd, &r).await.join("\n");
    assert!(steps.contains("certificate verify failed"), "{steps}");
    habd.stop().await;
}

async fn rollout_steps(habd: &Habd, r: &Value) -> Vec<String> {
    let id = r["id"].as_i64().unwrap();
    let (_, full) = call(habd.api(reqwest::Method::GET, &format!("/rollouts/{id}"))).await;
    full["steps"]
        .as_array()
        .map(|s| s.iter().map(|s| s.to_string()).collect())
        .unwrap_or_default()
}

#[test]
fn a_tls_fleet_needs_its_ca_on_kubernetes_and_none_on_docker() {
    let dir = tempfile::tempdir().unwrap();
    let p = |f: &str| dir.path().join(f);
    std::fs::create_dir_all(p("pipelines")).unwrap();
    std::fs::create_dir_all(p("keys")).unwrap();
    std::fs::write(
        p("pipelines/btcd.toml"),
        "implementation = \"btcd\"\n[upstream]\nurl = \"git://127.0.0.1/btcd.git\"\n\
         [refs]\ntrack = [\"refs/tags/v*\"]\n[signature]\npolicy = \"signed\"\nkeyring = \"../keys\"\n\
         [build]\nrecipe = \"btcd\"\nplatforms = [\"linux/amd64\"]\n[image]\nrepository = \"hab/btcd\"\n\
         [[channel]]\nname = \"stable\"\n",
    )
    .unwrap();
    // A keyring with no key is refused: any public key will do here.
    let gpg = Gpg::new(&p("gnupg"));
    let fpr = gpg.gen_key("Keyring Holder <k@example.org>", T2020_01_01);
    std::fs::write(p("keys/k.asc"), gpg.export(&fpr)).unwrap();
    let load = |fleets: &str| {
        std::fs::write(
            p("hab.toml"),
            format!(
                "pipelines_dir = \"pipelines\"\n\
                 [[target]]\nname = \"cluster\"\nkind = \"kubernetes\"\nendpoint = \"https://10.0.0.1:6443\"\n\
                 [[target]]\nname = \"local\"\nkind = \"docker\"\n{fleets}"
            ),
        )
        .unwrap();
        hab::config::Config::load(Some(&p("hab.toml")), &Default::default())
    };
    let fleet = |name: &str, target: &str, extra: &str| {
        format!(
            "[[fleet]]\nname = \"{name}\"\npipeline = \"btcd\"\nchannel = \"stable\"\n\
             target = \"{target}\"\nnodes = 1\n{extra}"
        )
    };
    let e = load(&fleet("k", "cluster", "")).unwrap_err().to_string();
    assert!(e.contains("fleet[0].rpc_tls_ca"), "{e}");
    assert!(e.contains("the chart mounts it"), "{e}");
    let e = load(&fleet("d", "local", "rpc_tls_ca = \"ca.pem\"\n"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("fleet[0].rpc_tls_ca") && e.contains("Docker target"),
        "{e}"
    );
    let ok = load(&format!(
        "{}{}",
        fleet("k", "cluster", "rpc_tls_ca = \"ca.pem\"\n"),
        fleet("d", "local", "")
    ))
    .unwrap();
    assert!(ok.fleets.iter().all(|f| f.rpc_tls));
    let plain = load(&fleet("p", "local", "rpc_tls = false\n")).unwrap();
    assert!(!plain.fleets[0].rpc_tls);
}
