//! The chart's node sets (`nodeSets`), as `helm template` renders them:
//! peering within groups in each implementation's own flag syntax, the
//! wrapper that keeps btcd and bcoin from dying on a peer not up yet (run
//! by a real shell), placement and failover hosts, config files in each
//! implementation's format, and P2P exposure apart from RPC.

mod common;

use std::{collections::BTreeSet, process::Command};

use common::*;
use serde_json::Value;

/// The `node` container of StatefulSet `name`.
fn node<'a>(docs: &'a [Value], name: &str) -> &'a Value {
    &find(docs, "StatefulSet", name)["spec"]["template"]["spec"]["containers"][0]
}

fn args(node: &Value) -> Vec<String> {
    node["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect()
}

/// The peers a node is given, whatever its implementation's syntax.
fn peers(node: &Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for a in args(node) {
        if let Some(p) = a
            .strip_prefix("-addnode=")
            .or_else(|| a.strip_prefix("--addpeer="))
        {
            out.insert(p.to_string());
        } else if let Some(list) = a.strip_prefix("--nodes=") {
            out.extend(list.split(',').map(str::to_string));
        }
    }
    out
}

const GROUPS: &str = r#"json:nodeSets=[
  {"name": "core", "implementation": "bitcoind", "replicas": 2, "group": "cluster"},
  {"name": "btcd", "implementation": "btcd", "replicas": 2, "group": "cluster"},
  {"name": "bcoin", "implementation": "bcoin", "replicas": 2, "group": "cluster"},
  {"name": "alone", "implementation": "bitcoind"},
  {"name": "test", "implementation": "btcd", "network": "testnet3", "replicas": 2}
]"#;

#[test]
fn every_node_of_a_group_peers_with_every_other_in_its_own_syntax() {
    let docs = documents(
        &render(
            None,
            &[
                GROUPS,
                r#"json:nodes={"peers": [{"address": "203.0.113.7:8333", "group": "cluster"}, {"address": "[2001:db8::1]:8333", "group": "cluster"}]}"#,
            ],
        )
        .unwrap(),
    );
    let name = |set: &str, i: u32, port: u32| {
        format!("hab-{set}-{i}.hab-{set}-headless.bitcoin.svc.cluster.local:{port}")
    };
    let mut cluster: BTreeSet<String> = ["core", "btcd", "bcoin"]
        .iter()
        .flat_map(|s| (0..2).map(move |i| name(s, i, 8333)))
        .collect();
    cluster.insert("203.0.113.7:8333".into());
    cluster.insert("[2001:db8::1]:8333".into());
    for set in ["core", "btcd", "bcoin"] {
        let n = node(&docs, &format!("hab-{set}"));
        assert_eq!(
            peers(n),
            cluster,
            "{set}: every node of the group and its external peers"
        );
        let a = args(n);
        match set {
            // One flag per peer.
            "core" => assert_eq!(a.iter().filter(|a| a.starts_with("-addnode=")).count(), 8),
            "btcd" => assert_eq!(a.iter().filter(|a| a.starts_with("--addpeer=")).count(), 8),
            // One comma-separated list (a second --nodes would replace it).
            _ => assert_eq!(a.iter().filter(|a| a.starts_with("--nodes=")).count(), 1),
        }
    }
    // A group of its own: the set's nodes only; another network's group
    // on its own ports.
    assert_eq!(
        peers(node(&docs, "hab-alone")),
        BTreeSet::from([name("alone", 0, 8333)])
    );
    assert_eq!(
        peers(node(&docs, "hab-test")),
        (0..2).map(|i| name("test", i, 18333)).collect()
    );
    // Nothing waits for a peer: no init container anywhere.
    for set in ["core", "btcd", "bcoin", "alone", "test"] {
        let spec = &find(&docs, "StatefulSet", &format!("hab-{set}"))["spec"]["template"]["spec"];
        assert!(spec.get("initContainers").is_none(), "{set}: {spec}");
    }
    // The governing Services publish a pod's name before it is ready.
    assert_eq!(
        find(&docs, "Service", "hab-btcd-headless")["spec"]["publishNotReadyAddresses"],
        true
    );
}

/// Peers go through a shell wrapper that drops the node itself and, for
/// btcd and bcoin, the names that do not resolve yet (btcd exits on one;
/// bcoin drops it for good), then execs the node: run here by a real `sh`,
/// exec'ing a script that prints what it was given.
#[test]
fn nodes_start_alone_when_their_peers_are_not_up_yet_and_never_dial_themselves() {
    let docs = documents(&render(None, &[GROUPS]).unwrap());
    let dir = tempfile::tempdir().unwrap();
    let show = write(
        dir.path(),
        "show",
        b"#!/bin/sh\nfor a in \"$@\"; do echo \"$a\"; done\n",
    );
    Command::new("chmod").arg("+x").arg(&show).status().unwrap();
    for (set, flag) in [("btcd", "--addpeer="), ("bcoin", "--nodes=")] {
        let n = node(&docs, &format!("hab-{set}"));
        let command: Vec<&str> = n["command"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        assert_eq!(command[..2], ["/bin/sh", "-c"], "{set}: {command:?}");
        assert_eq!(command[3], set, "{set}: execs the node");
        // localhost resolves; the cluster's names do not, here.
        let given = if set == "btcd" {
            vec![
                "--listen=0.0.0.0:8333".to_string(),
                format!("{flag}hab-btcd-1.nowhere.invalid:8333"),
                format!("{flag}localhost:8333"),
                format!("{flag}[::1]:8333"),
                "--txindex".to_string(),
            ]
        } else {
            vec![
                "--port=8333".to_string(),
                format!("{flag}hab-bcoin-1.nowhere.invalid:8333,localhost:8333,[::1]:8333"),
            ]
        };
        let out = Command::new("sh")
            .args(["-c", command[2]])
            .arg(&show)
            .args(&given)
            .output()
            .unwrap();
        assert!(out.status.success(), "{set}: {out:?}");
        let kept: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect();
        let want: Vec<String> = if set == "btcd" {
            vec![
                "--listen=0.0.0.0:8333".into(),
                format!("{flag}localhost:8333"),
                format!("{flag}[::1]:8333"),
                "--txindex".into(),
            ]
        } else {
            vec![
                "--port=8333".into(),
                format!("{flag}localhost:8333,[::1]:8333"),
            ]
        };
        assert_eq!(kept, want, "{set}");
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(
            said.contains("peer hab-") && said.contains("does not resolve yet"),
            "{set}: {said}"
        );
    }
    // Every node leaves itself out (its hostname is the first label of
    // its peer name); bitcoind, which retries a name by itself, keeps the
    // ones that do not resolve yet.
    let me = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let me = me.trim();
    let run = |set: &str, args: &[String]| {
        let n = node(&docs, &format!("hab-{set}"));
        let out = Command::new("sh")
            .args(["-c", n["command"][2].as_str().unwrap()])
            .arg(&show)
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{set}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let itself = format!("{me}.hab-core-headless.bitcoin.svc.cluster.local:8333");
    let out = run(
        "core",
        &[
            "-port=8333".to_string(),
            format!("-addnode={itself}"),
            "-addnode=hab-core-1.nowhere.invalid:8333".to_string(),
        ],
    );
    assert_eq!(
        out,
        "-port=8333\n-addnode=hab-core-1.nowhere.invalid:8333\n"
    );
    let out = run(
        "btcd",
        &[
            format!("--addpeer={itself}"),
            "--addpeer=localhost:8333".into(),
        ],
    );
    assert_eq!(out, "--addpeer=localhost:8333\n");
    let out = run("bcoin", &[format!("--nodes={itself},localhost:8333")]);
    assert_eq!(out, "--nodes=localhost:8333\n");
    assert_eq!(
        node(&docs, "hab-core")["command"][3],
        "bitcoind",
        "bitcoind goes through the same wrapper"
    );

    // No peer resolves: the node starts alone, without the flag.
    let n = node(&docs, "hab-bcoin");
    let out = Command::new("sh")
        .args(["-c", n["command"][2].as_str().unwrap()])
        .arg(&show)
        .args(["--port=8333", "--nodes=a.invalid:1,b.invalid:2"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "--port=8333\n");
}

#[test]
fn failover_hosts_stay_free_unless_a_sets_own_hosts_fail() {
    let docs = documents(
        &render(
            None,
            &[
                "nodes.failoverHosts={spare}",
                r#"json:nodeSets=[
                  {"name": "pinned", "implementation": "bitcoind", "hosts": ["h1", "h2"]},
                  {"name": "pinnedfo", "implementation": "bitcoind", "hosts": ["h3"], "failover": true},
                  {"name": "anywhere", "implementation": "btcd"},
                  {"name": "anywherefo", "implementation": "bcoin", "failover": true, "isolate": false}
                ]"#,
            ],
        )
        .unwrap(),
    );
    let affinity = |set: &str| {
        find(&docs, "StatefulSet", &format!("hab-{set}"))["spec"]["template"]["spec"]["affinity"]
            .clone()
    };
    let required = |a: &Value| {
        a["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0]
            ["matchExpressions"][0]
            .clone()
    };
    let preferred = |a: &Value| {
        a["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]["preference"]
            ["matchExpressions"][0]
            .clone()
    };
    let expr = |op: &str, hosts: &[&str]| serde_json::json!({"key": "kubernetes.io/hostname", "operator": op, "values": hosts});
    // Its hosts only.
    let a = affinity("pinned");
    assert_eq!(required(&a), expr("In", &["h1", "h2"]));
    // Its host first, the failover host only when it cannot.
    let a = affinity("pinnedfo");
    assert_eq!(required(&a), expr("In", &["h3", "spare"]));
    assert_eq!(preferred(&a), expr("In", &["h3"]));
    assert_eq!(
        a["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]["weight"],
        100
    );
    // Anywhere but the failover hosts.
    assert_eq!(required(&affinity("anywhere")), expr("NotIn", &["spare"]));
    // Anywhere, a failover host last; not isolated: no anti-affinity.
    let a = affinity("anywherefo");
    assert!(a["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"].is_null());
    assert_eq!(preferred(&a), expr("NotIn", &["spare"]));
    assert!(a["podAntiAffinity"].is_null(), "{a}");
    // Isolated sets keep off each other's hosts, across sets.
    let anti = &affinity("anywhere")["podAntiAffinity"]
        ["requiredDuringSchedulingIgnoredDuringExecution"][0];
    assert_eq!(anti["labelSelector"]["matchLabels"]["hab/isolated"], "true");
    assert!(anti["labelSelector"]["matchLabels"]
        .get("hab/set")
        .is_none());
}

#[test]
fn each_set_has_its_config_file_in_its_implementations_format() {
    let docs = documents(
        &render(
            None,
            &[r#"json:nodeSets=[
              {"name": "core", "implementation": "bitcoind", "config": {"txindex": true, "blockfilterindex": true, "dbcache": 4000, "maxconnections": 40, "maxmempool": 500, "zmq": {"rawblock": 28332, "rawtx": 28333}, "extra": "maxuploadtarget=5000\n"}},
              {"name": "pruned", "implementation": "bitcoind", "config": {"prune": 550}},
              {"name": "btcd", "implementation": "btcd", "config": {"prune": 2000, "dbcache": 500, "maxconnections": 50}},
              {"name": "bcoin", "implementation": "bcoin", "config": {"txindex": true, "dbcache": 1024, "maxmempool": 300}}
            ]"#],
        )
        .unwrap(),
    );
    let secret = find(&docs, "Secret", "hab-rpc");
    let password = secret_value(secret, "rpc-password");
    let conf = |set: &str| secret_value(secret, &format!("{set}.conf"));
    let lines = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| !l.starts_with('#') && !l.starts_with(';'))
            .map(str::to_string)
            .collect()
    };
    assert_eq!(
        lines(&conf("core")),
        [
            "rpcuser=hab".to_string(),
            format!("rpcpassword={password}"),
            "txindex=1".into(),
            "blockfilterindex=1".into(),
            "dbcache=4000".into(),
            "maxconnections=40".into(),
            "maxmempool=500".into(),
            "zmqpubrawblock=tcp://0.0.0.0:28332".into(),
            "zmqpubrawtx=tcp://0.0.0.0:28333".into(),
            "maxuploadtarget=5000".into(),
        ]
    );
    assert!(lines(&conf("pruned")).contains(&"prune=550".to_string()));
    assert_eq!(
        lines(&conf("btcd")),
        [
            "[Application Options]".to_string(),
            "rpcuser=hab".into(),
            format!("rpcpass={password}"),
            "prune=2000".into(),
            "utxocachemaxsize=500".into(),
            "maxpeers=50".into(),
        ]
    );
    assert_eq!(
        lines(&conf("bcoin")),
        [
            format!("api-key: {password}"),
            "index-tx: true".into(),
            "cache-size: 1024".into(),
            "mempool-size: 300".into(),
        ]
    );
    // Mounted as the implementation's own file; ZMQ on the set's RPC
    // Service; a pruned volume sized to its target, not the chain.
    let core = find(&docs, "StatefulSet", "hab-core");
    let items = &core["spec"]["template"]["spec"]["volumes"][0]["projected"]["sources"][0]
        ["secret"]["items"][0];
    assert_eq!(items["key"], "core.conf");
    assert_eq!(items["path"], "bitcoin.conf");
    let ports: Vec<&str> = find(&docs, "Service", "hab-core")["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(ports, ["rpc", "zmq-rawblock", "zmq-rawtx"]);
    let size = |set: &str| {
        find(&docs, "StatefulSet", &format!("hab-{set}"))["spec"]["volumeClaimTemplates"][0]["spec"]
            ["resources"]["requests"]["storage"]
            .clone()
    };
    assert_eq!(size("core"), "1Ti");
    assert_eq!(size("pruned"), "17Gi");
    assert_eq!(size("btcd"), "18Gi");
}

#[test]
fn p2p_is_published_apart_from_rpc() {
    let docs = documents(
        &render(
            None,
            &[r#"json:nodeSets=[
              {"name": "lb", "implementation": "bitcoind", "p2p": {"service": {"type": "LoadBalancer", "loadBalancerSourceRanges": ["198.51.100.0/24"]}}},
              {"name": "np", "implementation": "btcd", "replicas": 2, "p2p": {"service": {"perReplica": true, "nodePorts": [30333, 30334]}}},
              {"name": "web", "implementation": "bcoin", "ingress": {"enabled": true, "className": "nginx", "hosts": [{"host": "node.example.org", "paths": [{"path": "/"}]}]}}
            ]"#],
        )
        .unwrap(),
    );
    let service = |name: &str| find(&docs, "Service", name).clone();
    let lb = service("hab-lb-p2p");
    assert_eq!(lb["spec"]["type"], "LoadBalancer");
    assert_eq!(
        lb["spec"]["loadBalancerSourceRanges"],
        serde_json::json!(["198.51.100.0/24"])
    );
    let names = |s: &Value| -> Vec<String> {
        s["spec"]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names(&lb), ["p2p"], "no RPC on the public Service");
    // RPC stays inside the cluster.
    for set in ["lb", "np", "web"] {
        let rpc = service(&format!("hab-{set}"));
        assert_eq!(rpc["spec"]["type"], "ClusterIP", "{set}");
    }
    // One NodePort per node, each selecting that pod.
    for i in 0..2 {
        let s = service(&format!("hab-np-p2p-{i}"));
        assert_eq!(s["spec"]["type"], "NodePort");
        assert_eq!(s["spec"]["ports"][0]["nodePort"], 30333 + i);
        assert_eq!(
            s["spec"]["selector"]["statefulset.kubernetes.io/pod-name"],
            format!("hab-np-{i}")
        );
    }
    // The Ingress goes to RPC (HTTP) only.
    let ingress = find(&docs, "Ingress", "hab-web");
    let backend = &ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"];
    assert_eq!(backend["name"], "hab-web");
    assert_eq!(backend["port"]["name"], "rpc");
}

#[test]
fn exporters_storage_and_disruption_budget_render_as_asked() {
    let docs = documents(&render(Some("sets-values.yaml"), &[]).unwrap());
    // An exporter beside every node, given the node's RPC on loopback and
    // its config file (read-only), scraped through a ServiceMonitor.
    let sts = find(&docs, "StatefulSet", "hab-core-pruned");
    let containers = sts["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap();
    let exporter = containers.iter().find(|c| c["name"] == "metrics").unwrap();
    let env: std::collections::BTreeMap<&str, &str> = exporter["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["name"].as_str().unwrap(), e["value"].as_str().unwrap()))
        .collect();
    assert_eq!(env["BITCOIN_RPC_HOST"], "127.0.0.1");
    assert_eq!(env["BITCOIN_RPC_PORT"], "8332");
    assert_eq!(env["BITCOIN_CONF_PATH"], "/run/hab/bitcoin.conf");
    assert_eq!(exporter["volumeMounts"][0]["readOnly"], true);
    let service = find(&docs, "Service", "hab-nodes-metrics");
    let monitor = find(&docs, "ServiceMonitor", "hab-nodes");
    for (k, v) in monitor["spec"]["selector"]["matchLabels"]
        .as_object()
        .unwrap()
    {
        assert_eq!(&service["metadata"]["labels"][k], v, "{k}");
    }
    assert_eq!(monitor["metadata"]["labels"]["release"], "prometheus");
    let policy = find(&docs, "NetworkPolicy", "hab-nodes");
    assert!(policy["spec"]["ingress"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["ports"][0]["port"] == "metrics"));
    // ZMQ and the extra ports only from habd and the allowed clients.
    let rpc_rule = policy["spec"]["ingress"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["ports"][0]["port"] == "rpc")
        .unwrap();
    let ports: Vec<&Value> = rpc_rule["ports"].as_array().unwrap().iter().collect();
    assert!(ports.iter().any(|p| p["port"] == 28332), "{ports:?}");
    assert!(!ports.iter().any(|p| p["port"] == "p2p"));
    // One budget over every set.
    let pdb = find(&docs, "PodDisruptionBudget", "hab-nodes");
    assert_eq!(pdb["spec"]["maxUnavailable"], 2);
    assert!(pdb["spec"]["selector"]["matchLabels"]
        .get("hab/set")
        .is_none());

    // Longhorn per set, snapshots, a bootstrap snapshot, minAvailable.
    let docs = documents(
        &render(
            None,
            &[
                r#"json:nodes={"podDisruptionBudget": {"minAvailable": 2}}"#,
                r#"json:nodeSets=[
                  {"name": "core", "implementation": "bitcoind", "replicas": 3, "storage": {"longhorn": {"enabled": true, "numberOfReplicas": 2, "dataLocality": "strict-local"}, "snapshots": true, "fromSnapshot": "core-synced"}},
                  {"name": "plain", "implementation": "btcd", "storage": {"storageClassName": "local-path", "size": "2Ti"}}
                ]"#,
            ],
        )
        .unwrap(),
    );
    let sc = find(&docs, "StorageClass", "hab-core");
    assert_eq!(sc["parameters"]["numberOfReplicas"], "2");
    assert_eq!(sc["parameters"]["dataLocality"], "strict-local");
    assert_eq!(
        sc["parameters"]["recurringJobSelector"],
        r#"[{"isGroup":false,"name":"hab-snapshot"}]"#
    );
    assert_eq!(
        find(&docs, "RecurringJob", "hab-snapshot")["spec"]["task"],
        "snapshot"
    );
    assert!(docs
        .iter()
        .all(|d| d["kind"] != "RecurringJob" || d["metadata"]["name"] != "hab-backup"));
    let claim = |set: &str| {
        find(&docs, "StatefulSet", &format!("hab-{set}"))["spec"]["volumeClaimTemplates"][0]["spec"]
            .clone()
    };
    assert_eq!(claim("core")["storageClassName"], "hab-core");
    assert_eq!(claim("core")["dataSource"]["kind"], "VolumeSnapshot");
    assert_eq!(claim("core")["dataSource"]["name"], "core-synced");
    assert_eq!(claim("plain")["storageClassName"], "local-path");
    assert_eq!(claim("plain")["resources"]["requests"]["storage"], "2Ti");
    assert!(docs
        .iter()
        .all(|d| d["kind"] != "StorageClass" || d["metadata"]["name"] != "hab-plain"));
    let pdb = find(&docs, "PodDisruptionBudget", "hab-nodes");
    assert_eq!(pdb["spec"]["minAvailable"], 2);
    // A set opts out of Longhorn turned on for all.
    let docs = documents(
        &render(
            None,
            &[
                "nodes.storage.longhorn.enabled=true",
                r#"json:nodeSets=[{"name": "a", "implementation": "bitcoind"}, {"name": "b", "implementation": "btcd", "storage": {"longhorn": {"enabled": false}}}]"#,
            ],
        )
        .unwrap(),
    );
    let classes: Vec<&str> = docs
        .iter()
        .filter(|d| d["kind"] == "StorageClass")
        .map(|d| d["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(classes, ["hab-a"]);
    assert!(pdb["spec"].get("maxUnavailable").is_none());
}
