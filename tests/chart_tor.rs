//! Tor for the node sets (charts/hab/templates/_tor.tpl), proved two ways:
//!
//! - rendered by the real `helm` through a test-only chart (a copy of
//!   charts/hab with only its `_*.tpl` defines, and one template that calls
//!   the tor defines for each implementation as nodes.yaml does): each
//!   implementation's node flags, onlynet, and that the pieces fit one pod
//!   (mounts on volumes that exist, the cookie and hostname where the node
//!   reads them, the container locked down);
//! - each rendered torrc run by a REAL tor (Debian's package, installed by
//!   scripts/setup.sh), paths moved into a temp dir laid out as the kubelet
//!   lays the volumes (fsGroup 1000), as uid 1000 when the test runs as
//!   root, with `DisableNetwork 1` (no network here): tor accepts the
//!   config, writes the onion service's v3 hostname and the control cookie,
//!   and answers on its control port with cookie authentication; bitcoind's
//!   ADD_ONION works there, and btcd's wrapper advertises the address tor
//!   wrote.

mod common;

use std::{
    io::{BufRead, BufReader, Write},
    net::TcpStream,
    os::unix::fs::{MetadataExt, PermissionsExt},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use common::*;
use serde_json::{json, Value};

/// The template the test chart renders: per case, a StatefulSet assembled
/// from the tor defines where nodes.yaml puts them, and the torrc ConfigMap.
/// `$net` holds floats, as `fromYaml` gives hab.net's ports.
const CASES_TEMPLATE: &str = r#"{{- $root := . }}
{{- range $case := .Values.torTest }}
{{- $ctx := dict "root" $root "name" $case.name "set" $case.set "impl" $case.impl "net" (dict "p2p" $case.p2p "rpc" $case.rpc) }}
{{- with $case.command }}{{ $_ := set $ctx "command" . }}{{ end }}
{{- if hasKey $case "storageClass" }}{{ $_ := set $ctx "storageClass" $case.storageClass }}{{ end }}
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: {{ $case.name }}
  namespace: {{ $root.Release.Namespace }}
spec:
  serviceName: {{ $case.name }}-headless
  selector:
    matchLabels:
      set: {{ $case.name }}
  template:
    metadata:
      labels:
        set: {{ $case.name }}
    spec:
      securityContext:
        runAsNonRoot: true
        runAsUser: 1000
        runAsGroup: 1000
        fsGroup: 1000
      containers:
        - name: node
          image: node
          command:
            {{- include "hab.tor.nodeCommand" $ctx | nindent 12 }}
          args:
            - --the-chart-s-own-flag
            {{- include "hab.tor.nodeArgs" $ctx | nindent 12 }}
          volumeMounts:
            - name: data
              mountPath: /data
            {{- include "hab.tor.nodeMounts" $ctx | nindent 12 }}
        {{- include "hab.tor.container" $ctx | nindent 8 }}
      volumes:
        {{- include "hab.tor.volumes" $ctx | nindent 8 }}
  volumeClaimTemplates:
    - metadata:
        name: data
      spec:
        accessModes: ["ReadWriteOnce"]
        resources:
          requests:
            storage: 1Gi
    {{- include "hab.tor.volumeClaimTemplate" $ctx | nindent 4 }}
{{ include "hab.tor.configMap" $ctx }}
{{- end }}
"#;

/// A wrapper of the caller's own that ends as hab.peerFilter does (exec
/// "$0" "$@"): btcd's Tor wrapper must run in front of it.
const CALLERS_WRAPPER: &str = r#"echo "hab: the caller's wrapper ran" >&2; exec "$0" "$@""#;

/// One node set to render: the StatefulSet name, implementation, ports, the
/// set's values, and what nodes.yaml may pass besides: the command without
/// Tor and the set's effective storage class.
struct Case {
    name: &'static str,
    implementation: &'static str,
    p2p: u16,
    rpc: u16,
    set: Value,
    command: Option<Vec<&'static str>>,
    storage_class: Option<&'static str>,
}

fn case(implementation: &'static str, p2p: u16, rpc: u16, set: Value) -> Case {
    let name = match implementation {
        "bitcoind" => "hab-bitcoind",
        "btcd" => "hab-btcd",
        _ => "hab-bcoin",
    };
    Case {
        name,
        implementation,
        p2p,
        rpc,
        set,
        command: None,
        storage_class: None,
    }
}

/// The three implementations, on networks of their own (bitcoind regtest,
/// btcd mainnet, bcoin regtest: hab.netTable's ports); bitcoind's set
/// names a storage class of its own, bcoin's is given by the caller.
fn three_sets() -> Vec<Case> {
    vec![
        case(
            "bitcoind",
            18444,
            18443,
            json!({"name": "bitcoind", "implementation": "bitcoind",
                   "storage": {"storageClassName": "fast"}}),
        ),
        case(
            "btcd",
            8333,
            8334,
            json!({"name": "btcd", "implementation": "btcd"}),
        ),
        Case {
            storage_class: Some("hab-bcoin"),
            ..case(
                "bcoin",
                48444,
                48332,
                json!({"name": "bcoin", "implementation": "bcoin", "storage": {}}),
            )
        },
    ]
}

/// The three, and a btcd set (testnet3) whose command is already a wrapper
/// of the caller's.
fn four_sets() -> Vec<Case> {
    let mut sets = three_sets();
    sets.push(Case {
        name: "hab-btcd-peers",
        command: Some(vec!["/bin/sh", "-c", CALLERS_WRAPPER, "btcd"]),
        ..case(
            "btcd",
            18333,
            18334,
            json!({"name": "btcd-peers", "implementation": "btcd"}),
        )
    });
    sets
}

/// A copy of charts/hab that renders only the tor defines: the lead's
/// templates (being rewritten) and values schema (which may not know
/// `nodes.tor.onlynet` yet) are left out; the `_*.tpl` helpers stay.
struct TestChart {
    dir: tempfile::TempDir,
}

impl TestChart {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(&chart_dir(), &dir.path().join("hab"));
        let chart = dir.path().join("hab");
        let _ = std::fs::remove_file(chart.join("values.schema.json"));
        let _ = std::fs::remove_dir_all(chart.join("ci"));
        for entry in std::fs::read_dir(chart.join("templates")).unwrap() {
            let path = entry.unwrap().path();
            let file = path.file_name().unwrap().to_string_lossy().into_owned();
            if !file.starts_with('_') {
                std::fs::remove_file(&path).unwrap();
            }
        }
        assert!(
            chart.join("templates/_tor.tpl").is_file(),
            "charts/hab/templates/_tor.tpl is missing"
        );
        write(
            &chart,
            "templates/tor-cases.yaml",
            CASES_TEMPLATE.as_bytes(),
        );
        TestChart { dir }
    }

    /// `helm template` of the cases with `--set` pairs: the YAML, or helm's
    /// error.
    fn render(&self, cases: &[Case], sets: &[&str]) -> Result<String, String> {
        let cases: Vec<Value> = cases
            .iter()
            .map(|c| {
                let mut v = json!({"name": c.name, "impl": c.implementation, "p2p": c.p2p,
                                   "rpc": c.rpc, "set": c.set, "command": c.command});
                if let Some(class) = c.storage_class {
                    v["storageClass"] = json!(class);
                }
                v
            })
            .collect();
        let values = write(
            self.dir.path(),
            "cases.yaml",
            serde_json::to_string(&json!({ "torTest": cases }))
                .unwrap()
                .as_bytes(),
        );
        let mut cmd = helm();
        cmd.args(["template", "hab"])
            .arg(self.dir.path().join("hab"))
            .args(["--namespace", "bitcoin", "-f"])
            .arg(values);
        for s in sets {
            cmd.args(["--set", s]);
        }
        let out = cmd.output().unwrap();
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// The rendered pieces of one set.
struct Pod {
    node: Value,
    tor: Value,
    volumes: Vec<Value>,
    claims: Vec<Value>,
    torrc: String,
}

fn pod(docs: &[Value], name: &str) -> Pod {
    let sts = find(docs, "StatefulSet", name);
    let spec = &sts["spec"]["template"]["spec"];
    let containers = spec["containers"].as_array().unwrap();
    let by_name = |n: &str| {
        let found: Vec<&Value> = containers.iter().filter(|c| c["name"] == n).collect();
        assert_eq!(found.len(), 1, "{name}: one container {n}: {containers:?}");
        found[0].clone()
    };
    let torrc = find(docs, "ConfigMap", &format!("{name}-tor"))["data"]["torrc"]
        .as_str()
        .unwrap_or_else(|| panic!("{name}-tor has no torrc"))
        .to_string();
    Pod {
        node: by_name("node"),
        tor: by_name("tor"),
        volumes: spec["volumes"].as_array().unwrap().clone(),
        claims: sts["spec"]["volumeClaimTemplates"]
            .as_array()
            .unwrap()
            .clone(),
        torrc,
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|s| {
            s.as_str()
                .unwrap_or_else(|| panic!("not a string: {s}"))
                .to_string()
        })
        .collect()
}

/// The arguments tor added to the node's (after the chart's own flag).
fn tor_args(pod: &Pod) -> Vec<String> {
    let args = strings(&pod.node["args"]);
    assert_eq!(args[0], "--the-chart-s-own-flag", "{args:?}");
    args[1..].to_vec()
}

/// Values of a torrc option (one per line that sets it).
fn torrc_option(torrc: &str, key: &str) -> Vec<String> {
    torrc
        .lines()
        .filter_map(|l| l.trim().strip_prefix(&format!("{key} ")))
        .map(|v| v.trim().to_string())
        .collect()
}

/// The mount path of volume `volume` in a container.
fn mount_path(container: &Value, volume: &str) -> Option<(String, bool)> {
    container["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == volume)
        .map(|m| {
            (
                m["mountPath"].as_str().unwrap().to_string(),
                m["readOnly"].as_bool().unwrap_or(false),
            )
        })
}

#[test]
fn each_implementation_gets_its_tor_flags_and_the_pieces_fit_one_pod() {
    let chart = TestChart::new();
    let rendered = chart
        .render(&four_sets(), &["nodes.storage.storageClassName="])
        .unwrap();
    let docs = documents(&rendered);

    for c in four_sets() {
        let pod = pod(&docs, c.name);
        let name = c.name;

        // Every mount is on a volume of the pod (or a claim), and the tor
        // container is locked down.
        let mut volumes: Vec<String> = pod
            .volumes
            .iter()
            .map(|v| v["name"].as_str().unwrap().to_string())
            .collect();
        volumes.extend(
            pod.claims
                .iter()
                .map(|c| c["metadata"]["name"].as_str().unwrap().to_string()),
        );
        for container in [&pod.node, &pod.tor] {
            for m in container["volumeMounts"].as_array().unwrap() {
                let v = m["name"].as_str().unwrap();
                assert!(volumes.iter().any(|n| n == v), "{name}: no volume {v}");
            }
        }
        let sc = &pod.tor["securityContext"];
        assert_eq!(sc["runAsNonRoot"], true, "{name}: {sc}");
        assert_eq!(sc["runAsUser"], 1000, "{name}: {sc}");
        assert_eq!(sc["runAsGroup"], 1000, "{name}: {sc}");
        assert_eq!(sc["readOnlyRootFilesystem"], true, "{name}: {sc}");
        assert_eq!(sc["allowPrivilegeEscalation"], false, "{name}: {sc}");
        assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]), "{name}: {sc}");
        assert!(
            pod.tor["image"].as_str().unwrap().contains("hab/tor:"),
            "{name}: {}",
            pod.tor["image"]
        );
        assert!(pod.tor["resources"]["limits"]["memory"].is_string());
        for probe in ["startupProbe", "readinessProbe", "livenessProbe"] {
            assert_eq!(
                pod.tor[probe]["tcpSocket"]["port"], "tor-probe",
                "{name}: {probe}"
            );
        }
        let probe_port = pod.tor["ports"][0]["containerPort"].as_u64().unwrap();
        let torrc = &pod.torrc;
        assert!(
            torrc_option(torrc, "SocksPort")
                .contains(&format!("0.0.0.0:{probe_port} OnionTrafficOnly")),
            "{name}: the probe port is tor's:\n{torrc}"
        );
        assert!(torrc_option(torrc, "SocksPort").contains(&"127.0.0.1:9050".to_string()));
        assert_eq!(
            torrc_option(torrc, "SocksPolicy"),
            ["accept 127.0.0.0/8", "reject *"],
            "{name}: SOCKS for the pod's loopback only"
        );
        assert_eq!(torrc_option(torrc, "ControlPort"), ["127.0.0.1:9051"]);
        assert_eq!(torrc_option(torrc, "CookieAuthentication"), ["1"]);
        assert_eq!(torrc_option(torrc, "CookieAuthFileGroupReadable"), ["1"]);

        // The tor volume, in tor's container; its claim's class.
        let (state, ro) = mount_path(&pod.tor, "tor").unwrap();
        assert!(!ro);
        assert!(torrc_option(torrc, "DataDirectory")[0].starts_with(&format!("{state}/")));
        let claim = pod
            .claims
            .iter()
            .find(|c| c["metadata"]["name"] == "tor")
            .unwrap();
        assert_eq!(claim["spec"]["resources"]["requests"]["storage"], "64Mi");
        match c.implementation {
            // The set's own class; the caller's (its effective one).
            "bitcoind" => assert_eq!(claim["spec"]["storageClassName"], "fast"),
            "bcoin" => assert_eq!(claim["spec"]["storageClassName"], "hab-bcoin"),
            // No class anywhere: none rendered (the cluster's default), not "".
            _ => assert!(
                claim["spec"].get("storageClassName").is_none(),
                "{name}: {claim}"
            ),
        }
        // The torrc ConfigMap is the pod's.
        let torrc_volume = pod.volumes.iter().find(|v| v["name"] == "torrc").unwrap();
        assert_eq!(torrc_volume["configMap"]["name"], format!("{name}-tor"));
        let (config, _) = mount_path(&pod.tor, "torrc").unwrap();
        let targs = strings(&pod.tor["args"]);
        assert!(targs.contains(&format!("{config}/torrc")), "{targs:?}");

        let args = tor_args(&pod);
        let command = strings(&pod.node["command"]);
        let hidden = torrc_option(torrc, "HiddenServiceDir");
        match c.implementation {
            "bitcoind" => {
                // Onion peers through tor's SOCKS; its own onion service
                // through the control port, on the cookie; inbound onion
                // peers on p2p+1 (tagged =onion).
                assert_eq!(
                    args,
                    [
                        "-onion=127.0.0.1:9050".to_string(),
                        "-listen=1".into(),
                        format!("-bind=0.0.0.0:{}", c.p2p),
                        format!("-bind=127.0.0.1:{}=onion", c.p2p + 1),
                        "-listenonion=1".into(),
                        "-torcontrol=127.0.0.1:9051".into(),
                    ],
                    "{name}"
                );
                assert_eq!(command, ["bitcoind"]);
                assert!(hidden.is_empty(), "bitcoind makes its own: {torrc}");
                // The cookie is where the node reads it: tor reports its
                // CookieAuthFile path, and the node mounts that folder,
                // read-only, at the same path as tor.
                let cookie = torrc_option(torrc, "CookieAuthFile")[0].clone();
                let (node_run, ro) = mount_path(&pod.node, "tor-run").unwrap();
                assert!(ro, "{name}: the node reads the cookie only");
                assert_eq!(
                    Some((node_run.clone(), false)),
                    mount_path(&pod.tor, "tor-run")
                );
                assert!(cookie.starts_with(&format!("{node_run}/")), "{cookie}");
                assert!(
                    mount_path(&pod.node, "tor").is_none(),
                    "bitcoind needs no onion key"
                );
            }
            "btcd" => {
                assert_eq!(args, ["--onion=127.0.0.1:9050", "--torisolation"]);
                // The wrapper: sh -c <script> <the command without Tor>,
                // which it runs as "$0" "$@" (the node's args follow).
                assert_eq!(command[..2], ["/bin/sh", "-c"]);
                let without_tor: Vec<String> = match &c.command {
                    Some(cmd) => cmd.iter().map(|s| s.to_string()).collect(),
                    None => vec!["btcd".into()],
                };
                assert_eq!(command[3..], without_tor, "{name}");
                let script = &command[2];
                assert_eq!(hidden.len(), 1, "{torrc}");
                assert!(
                    script.contains(&format!("hostname={}/hostname", hidden[0])),
                    "{script}"
                );
                assert!(
                    script.contains(&format!(
                        "exec \"$0\" \"$@\" \"--externalip=$onion:{}\"",
                        c.p2p
                    )),
                    "{script}"
                );
            }
            _ => {
                assert!(args.is_empty(), "bcoin: {args:?}");
                assert_eq!(command, ["bcoin"]);
                assert_eq!(hidden.len(), 1, "bcoin still gets its onion service");
            }
        }
        if !hidden.is_empty() {
            // The P2P port published, to the node on the pod's loopback;
            // the hostname readable by the node, read-only.
            assert_eq!(
                torrc_option(torrc, "HiddenServicePort"),
                [format!("{} 127.0.0.1:{}", c.p2p, c.p2p)]
            );
            assert_eq!(torrc_option(torrc, "HiddenServiceDirGroupReadable"), ["1"]);
            let (node_state, ro) = mount_path(&pod.node, "tor").unwrap();
            assert!(ro, "{name}: read-only");
            assert_eq!(node_state, state);
            assert!(hidden[0].starts_with(&format!("{state}/")));
        }
    }
}

#[test]
fn onlynet_is_onion_only_for_bitcoind_and_a_render_error_where_it_cannot_be_kept() {
    let chart = TestChart::new();
    let sets = three_sets();
    let [bitcoind, btcd, bcoin] = [&sets[0], &sets[1], &sets[2]];
    let args_of = |rendered: &str, name: &str| tor_args(&pod(&documents(rendered), name));

    // Off: no -onlynet.
    let off = chart.render(&sets, &[]).unwrap();
    assert!(!args_of(&off, bitcoind.name)
        .iter()
        .any(|a| a.starts_with("-onlynet")));

    // On: bitcoind's automatic outbound peers are onion only.
    let bitcoind_only = [case("bitcoind", 18444, 18443, bitcoind.set.clone())];
    let on = chart
        .render(&bitcoind_only, &["nodes.tor.onlynet=true"])
        .unwrap();
    let args = args_of(&on, bitcoind.name);
    assert_eq!(args.last().unwrap(), "-onlynet=onion", "{args:?}");
    assert!(args.contains(&"-onion=127.0.0.1:9050".to_string()));

    // btcd and bcoin cannot keep it: helm fails, naming the set and why.
    for (c, why) in [
        (btcd, "btcd: it has no -onlynet"),
        (bcoin, "no BIP155 addrv2"),
    ] {
        let only = [case(c.implementation, c.p2p, c.rpc, c.set.clone())];
        let err = chart
            .render(&only, &["nodes.tor.onlynet=true"])
            .expect_err("onlynet must not render for btcd or bcoin");
        assert!(err.contains(c.name) && err.contains(why), "{err}");
        assert!(err.contains("tor.onlynet: false"), "{err}");
    }

    // A set's own tor.onlynet wins over nodes.tor.onlynet, either way.
    let mut sets = three_sets();
    sets[0].set["tor"] = json!({"onlynet": false});
    sets[1].set["tor"] = json!({"onlynet": false});
    sets[2].set["tor"] = json!({"onlynet": false});
    let mixed = chart.render(&sets, &["nodes.tor.onlynet=true"]).unwrap();
    assert!(!args_of(&mixed, bitcoind.name)
        .iter()
        .any(|a| a.starts_with("-onlynet")));
    let mut sets = three_sets();
    sets[0].set["tor"] = json!({"onlynet": true});
    let one = chart.render(&sets, &[]).unwrap();
    assert_eq!(
        args_of(&one, bitcoind.name).last().unwrap(),
        "-onlynet=onion"
    );
}

/// `tor`, or a clear failure saying how to get it.
fn tor() -> Command {
    let found = Command::new("tor").arg("--version").output();
    assert!(
        found.is_ok_and(|o| o.status.success()),
        "tor is missing: run `bash scripts/setup.sh` (it installs Debian's package tor)"
    );
    Command::new("tor")
}

/// Whether this test runs as root (then tor runs as uid 1000, as in the pod).
fn is_root() -> bool {
    let out = Command::new("id").arg("-u").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

/// A rendered torrc made runnable here: the pod's paths moved under `root`
/// (folders laid out as the kubelet lays the volumes), the ports moved to
/// free ones, and no network.
struct Sandbox {
    root: PathBuf,
    torrc: PathBuf,
    control: u16,
    /// Maps a path in the pod to its place here.
    moves: Vec<(String, String)>,
}

impl Sandbox {
    fn new(dir: &Path, pod: &Pod) -> Self {
        let root = dir.to_path_buf();
        let (state, _) = mount_path(&pod.tor, "tor").unwrap();
        let (run_dir, _) = mount_path(&pod.tor, "tor-run").unwrap();
        let (config, _) = mount_path(&pod.tor, "torrc").unwrap();
        let here = |p: &str| format!("{}{p}", root.display());
        let moves = vec![
            (state.clone(), here(&state)),
            (run_dir.clone(), here(&run_dir)),
            (config.clone(), here(&config)),
        ];
        // The claim's root and the memory emptyDir as the kubelet leaves them
        // with fsGroup 1000: group 1000, group-writable, setgid; the
        // ConfigMap read-only.
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
        for (dir, mode) in [(&state, 0o2775), (&run_dir, 0o2777), (&config, 0o755)] {
            let d = PathBuf::from(here(dir));
            std::fs::create_dir_all(&d).unwrap();
            let mut p = d.clone();
            while p != root {
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
                p.pop();
            }
            if is_root() && dir != &config {
                run(Command::new("chgrp").arg("1000").arg(&d));
            }
            std::fs::set_permissions(&d, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        let control = free_port();
        let mut torrc = pod.torrc.clone();
        for (from, to) in &moves {
            torrc = torrc.replace(from.as_str(), to);
        }
        let socks = free_port();
        let probe = free_port();
        torrc = torrc
            .replace("127.0.0.1:9050", &format!("127.0.0.1:{socks}"))
            .replace("127.0.0.1:9051", &format!("127.0.0.1:{control}"))
            .replace("0.0.0.0:9052", &format!("127.0.0.1:{probe}"));
        torrc.push_str("# the test: no network here\nDisableNetwork 1\n");
        let path = write(&PathBuf::from(here(&config)), "torrc", torrc.as_bytes());
        Sandbox {
            root,
            torrc: path,
            control,
            moves,
        }
    }

    /// A path of the pod, here.
    fn here(&self, pod_path: &str) -> PathBuf {
        for (from, to) in &self.moves {
            if let Some(rest) = pod_path.strip_prefix(from.as_str()) {
                return PathBuf::from(format!("{to}{rest}"));
            }
        }
        panic!("{pod_path} is on no volume of the pod")
    }

    /// tor with the container's arguments (its torrc moved here), as uid
    /// 1000 (group 1000, fsGroup 1000) when the test runs as root.
    fn tor(&self, container_args: &[String], extra: &[&str]) -> Command {
        let _ = tor();
        let mut args: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        args.extend(container_args.iter().map(|a| {
            if a.ends_with("/torrc") {
                self.torrc.display().to_string()
            } else {
                a.clone()
            }
        }));
        let mut cmd = if is_root() {
            let mut c = Command::new("setpriv");
            c.args([
                "--reuid", "1000", "--regid", "1000", "--groups", "1000", "tor",
            ]);
            c
        } else {
            Command::new("tor")
        };
        cmd.args(args).current_dir(&self.root);
        cmd
    }
}

/// A running tor, stopped when dropped.
struct Tor(Child);

impl Drop for Tor {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits for a file with content; panics with tor's log otherwise.
fn wait_for_file(path: &Path, log: &Path) -> Vec<u8> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(b) = std::fs::read(path) {
            if !b.is_empty() {
                return b;
            }
        }
        assert!(
            Instant::now() < deadline,
            "tor wrote no {} in 60s; its log:\n{}",
            path.display(),
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One control-port connection (torspec control-spec: CRLF lines, a reply
/// ends with a line whose fourth character is a space).
struct Control {
    out: TcpStream,
    input: BufReader<TcpStream>,
}

impl Control {
    fn connect(port: u16) -> Self {
        wait_for_port(port);
        let out = TcpStream::connect(("127.0.0.1", port)).unwrap();
        out.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let input = BufReader::new(out.try_clone().unwrap());
        Control { out, input }
    }

    fn command(&mut self, line: &str) -> Vec<String> {
        self.out
            .write_all(format!("{line}\r\n").as_bytes())
            .unwrap();
        let mut reply = Vec::new();
        loop {
            let mut l = String::new();
            let n = self.input.read_line(&mut l).unwrap();
            assert!(
                n > 0,
                "tor closed the control connection after {line:?}: {reply:?}"
            );
            let l = l.trim_end().to_string();
            let last = l.len() >= 4 && l.as_bytes()[3] == b' ';
            reply.push(l);
            if last {
                return reply;
            }
        }
    }
}

#[test]
fn a_real_tor_runs_each_rendered_torrc_and_serves_the_node_as_it_expects() {
    let _ = tor();
    let onion = regex::Regex::new(r"^[a-z2-7]{56}\.onion$").unwrap();
    let chart = TestChart::new();
    let rendered = chart.render(&four_sets(), &[]).unwrap();
    let docs = documents(&rendered);

    for c in four_sets() {
        let name = c.name;
        let pod = pod(&docs, name);
        let dir = tempfile::tempdir().unwrap();
        let sandbox = Sandbox::new(dir.path(), &pod);
        let container_args = strings(&pod.tor["args"]);

        // tor accepts the configuration as rendered (paths and ports moved).
        let out = sandbox
            .tor(&container_args, &["--verify-config"])
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        // tor only warns of what it ignores (an unknown port flag, say): a
        // warning fails the test too.
        assert!(
            out.status.success()
                && said.contains("Configuration was valid")
                && !said.contains("[warn]")
                && !said.contains("[err]"),
            "{name}: tor --verify-config refused the torrc or warned:\n{}\n{said}",
            std::fs::read_to_string(&sandbox.torrc).unwrap(),
        );

        // tor starts, as the pod's user, on the volumes as laid out.
        let log = dir.path().join("tor.log");
        let child = sandbox
            .tor(&container_args, &[])
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::from(
                std::fs::File::create(dir.path().join("tor.err")).unwrap(),
            ))
            .spawn()
            .unwrap();
        let _tor = Tor(child);

        // The control cookie: 32 bytes, group-readable, where the torrc
        // says (the node mounts that folder).
        let cookie_path = sandbox.here(&torrc_option(&pod.torrc, "CookieAuthFile")[0]);
        let cookie = wait_for_file(&cookie_path, &log);
        assert_eq!(cookie.len(), 32, "{name}");
        if is_root() {
            // tor ran as the pod's user and made its folders itself.
            let data = sandbox.here(&torrc_option(&pod.torrc, "DataDirectory")[0]);
            let meta = std::fs::metadata(&data).unwrap();
            assert_eq!((meta.uid(), meta.gid()), (1000, 1000), "{name}: {data:?}");
            assert_eq!(std::fs::metadata(&cookie_path).unwrap().uid(), 1000);
        }
        let mode = std::fs::metadata(&cookie_path)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o040, 0o040, "{name}: cookie mode {mode:o}");

        // The onion service (btcd, bcoin): a v3 hostname, readable through
        // the group.
        let hidden = torrc_option(&pod.torrc, "HiddenServiceDir");
        let mut address = None;
        if let Some(hs) = hidden.first() {
            let hostname = sandbox.here(&format!("{hs}/hostname"));
            let text = String::from_utf8(wait_for_file(&hostname, &log)).unwrap();
            let host = text.trim_end();
            assert!(onion.is_match(host), "{name}: hostname {text:?}");
            let mode = std::fs::metadata(&hostname).unwrap().permissions().mode();
            assert_eq!(mode & 0o040, 0o040, "{name}: hostname mode {mode:o}");
            let dir_mode = std::fs::metadata(sandbox.here(hs))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(dir_mode & 0o050, 0o050, "{name}: {hs} mode {dir_mode:o}");
            address = Some(host.to_string());
        }

        // The control port: tor offers the cookie (SAFECOOKIE, what bitcoind
        // uses) at the path the node reads, takes the cookie, and answers.
        let mut control = Control::connect(sandbox.control);
        let info = control.command("PROTOCOLINFO 1");
        let auth = info
            .iter()
            .find(|l| l.starts_with("250-AUTH "))
            .unwrap_or_else(|| panic!("{name}: {info:?}"));
        assert!(auth.contains("SAFECOOKIE"), "{name}: {auth}");
        assert!(
            auth.contains(&format!("COOKIEFILE=\"{}\"", cookie_path.display())),
            "{name}: {auth}"
        );
        assert_eq!(
            control.command(&format!("AUTHENTICATE {}", hex::encode(&cookie))),
            ["250 OK"],
            "{name}"
        );
        let version = control.command("GETINFO version");
        assert!(
            version[0].starts_with("250-version="),
            "{name}: {version:?}"
        );
        assert_eq!(version.last().unwrap(), "250 OK", "{name}: {version:?}");

        let args = tor_args(&pod);
        match c.implementation {
            "bitcoind" => {
                // What bitcoind asks once authenticated (src/torcontrol.cpp
                // auth_cb): an onion service for its P2P port to its
                // -bind=...=onion target.
                let target = args
                    .iter()
                    .find_map(|a| {
                        a.strip_prefix("-bind=")
                            .and_then(|b| b.strip_suffix("=onion"))
                    })
                    .unwrap();
                let reply =
                    control.command(&format!("ADD_ONION NEW:ED25519-V3 Port={},{target}", c.p2p));
                let id = reply
                    .iter()
                    .find_map(|l| l.strip_prefix("250-ServiceID="))
                    .unwrap_or_else(|| panic!("{name}: ADD_ONION: {reply:?}"));
                assert!(onion.is_match(&format!("{id}.onion")), "{name}: {id}");
                assert_eq!(reply.last().unwrap(), "250 OK");
            }
            "btcd" => {
                // The node's command as rendered (behind the caller's own
                // wrapper, for hab-btcd-peers), run with a btcd that prints
                // its argv: it gets the node's arguments and the address
                // tor wrote.
                let command = strings(&pod.node["command"]);
                let hs = &hidden[0];
                let moved = |to: &Path| {
                    let mut c = command.clone();
                    c[2] = c[2].replace(&format!("{hs}/hostname"), &to.display().to_string());
                    c
                };
                let bin = dir.path().join("bin");
                let fake = write(&bin, "btcd", b"#!/bin/sh\nprintf '%s\\n' \"$@\"\n");
                std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
                let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
                let run_node = |command: &[String], args: &[String]| {
                    Command::new(&command[0])
                        .args(&command[1..])
                        .args(args)
                        .env("PATH", &path)
                        .output()
                        .unwrap()
                };
                let mut node_args = vec!["--the-chart-s-own-flag".to_string()];
                node_args.extend(args.iter().cloned());
                let out = run_node(&moved(&sandbox.here(&format!("{hs}/hostname"))), &node_args);
                let stdout = String::from_utf8_lossy(&out.stdout);
                let stderr = String::from_utf8_lossy(&out.stderr);
                assert!(out.status.success(), "{name}: {stdout}\n{stderr}");
                let address = address.clone().unwrap();
                let mut want = node_args.clone();
                want.push(format!("--externalip={address}:{}", c.p2p));
                let got: Vec<&str> = stdout.lines().filter(|l| !l.starts_with("hab: ")).collect();
                assert_eq!(got, want, "{name}: btcd's argv");
                assert!(stdout.contains(&format!("hab: btcd advertises {address}:{}", c.p2p)));
                assert_eq!(
                    stderr.contains("the caller's wrapper ran"),
                    c.command.is_some(),
                    "{name}: {stderr}"
                );

                // A hostname file that holds no onion: btcd does not start.
                let bogus = dir.path().join("bogus");
                std::fs::write(&bogus, "not-an-onion\n").unwrap();
                let out = run_node(&moved(&bogus), &node_args);
                assert!(!out.status.success(), "{name}: {out:?}");
                assert!(
                    String::from_utf8_lossy(&out.stderr).contains("holds no onion address"),
                    "{out:?}"
                );
            }
            _ => {}
        }
        drop(control);
        let said = std::fs::read_to_string(&log).unwrap();
        assert!(
            !said.contains("[warn]") && !said.contains("[err]"),
            "{name}: tor warned:\n{said}"
        );
    }
}
