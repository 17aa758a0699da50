//! The original chart's fourteen examples (its examples.md), each written
//! as hab values in tests/fixtures/original-examples/NN-*.yaml, whose
//! opening comment says what the example wants and how hab puts it. Each
//! renders with `helm template`, passes `kubernetes-validate --strict` and
//! checkov, gives habd a configuration `habd check` accepts, and does what
//! the example wanted, read from the rendered objects: node sets and
//! replicas, volumes, peering flags, placement on hosts and failover hosts,
//! isolation, ports, Ingress, images, channels, probes.
//! And the chart README's table "Moving from the original chart" names
//! every value of the original chart (tests/fixtures/original-chart-values.txt).

mod common;

use std::{
    collections::{BTreeMap, BTreeSet},
    path::PathBuf,
};

use common::*;
use serde_json::{json, Value};

const NAMESPACE: &str = "bitcoin";

fn fixtures() -> PathBuf {
    repo_root().join("tests/fixtures/original-examples")
}

/// The fixture of example `nn` (its file name starts with `NN-`).
fn fixture(nn: u32) -> PathBuf {
    let prefix = format!("{nn:02}-");
    let found: Vec<PathBuf> = std::fs::read_dir(fixtures())
        .unwrap()
        .filter_map(|e| {
            let p = e.ok()?.path();
            let n = p.file_name()?.to_str()?.to_string();
            (n.starts_with(&prefix) && n.ends_with(".yaml")).then_some(p)
        })
        .collect();
    assert_eq!(found.len(), 1, "example {nn}: {found:?}");
    found[0].clone()
}

/// One example, rendered.
struct Example {
    name: String,
    file: PathBuf,
    docs: Vec<Value>,
}

/// Renders example `nn` as `helm template hab charts/hab --namespace
/// bitcoin -f <fixture>` and checks it with kubernetes-validate --strict and
/// checkov.
fn example(nn: u32) -> Example {
    let file = fixture(nn);
    let name = file.file_stem().unwrap().to_string_lossy().into_owned();
    let out = helm()
        .args(["template", "hab"])
        .arg(chart_dir())
        .args(["--namespace", NAMESPACE, "-f"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{name}: helm template refused it:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rendered = String::from_utf8_lossy(&out.stdout).into_owned();
    kubernetes_validate(&name, &rendered);
    checkov_passes(&name, &rendered);
    let ex = Example {
        name,
        file,
        docs: documents(&rendered),
    };
    habd_accepts(&ex);
    ex
}

/// habd takes the configuration the example gives it: its files laid out
/// under a temporary root as the habd container mounts them (each
/// ConfigMap or Secret by its items, or every key; a Secret the operator
/// brings, which the chart does not render, as a placeholder), the paths
/// in them moved there; `habd check` passes and every file hab.toml names
/// is there.
fn habd_accepts(ex: &Example) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let moved = root.display().to_string();
    let relocate = |bytes: Vec<u8>| -> Vec<u8> {
        match String::from_utf8(bytes) {
            Ok(mut text) => {
                for p in [
                    "/run/secrets/",
                    "/etc/hab/",
                    "/var/lib/hab",
                    "/usr/share/hab/",
                ] {
                    text = text.replace(p, &format!("{moved}{p}"));
                }
                text.into_bytes()
            }
            Err(e) => e.into_bytes(),
        }
    };
    let habd = find(&ex.docs, "Deployment", "hab-habd");
    let pod = &habd["spec"]["template"]["spec"];
    let container = pod["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "habd")
        .unwrap();
    for m in container["volumeMounts"].as_array().into_iter().flatten() {
        let v = pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == m["name"])
            .unwrap();
        let at = root.join(m["mountPath"].as_str().unwrap().trim_start_matches('/'));
        for (kind, name, items) in volume_items(v) {
            let files: Vec<(String, String)> = match items.as_array() {
                Some(items) => items
                    .iter()
                    .map(|i| {
                        (
                            i["key"].as_str().unwrap().to_string(),
                            i["path"].as_str().unwrap().to_string(),
                        )
                    })
                    .collect(),
                None => ex
                    .keys_of(kind, &name)
                    .into_iter()
                    .map(|k| (k.clone(), k))
                    .collect(),
            };
            for (key, path) in files {
                let bytes = ex
                    .bytes_of(kind, &name, &key)
                    .unwrap_or_else(|| b"operator-provided\n".to_vec());
                write(&at, &path, &relocate(bytes));
            }
        }
    }
    let config = root.join("etc/hab/hab.toml");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_habd"))
        .args(["check", "--config"])
        .arg(&config)
        .env_remove("HAB_CONFIG")
        .env_remove("HAB_PIPELINES_DIR")
        .env_remove("HAB_STATE_DIR")
        .env_remove("HAB_RECIPES_DIR")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}: habd check refused the chart's configuration:\n{}\n{}",
        ex.name,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&config).unwrap();
    let table: toml::Table = toml::from_str(&text).unwrap();
    fn strings(v: &toml::Value, out: &mut Vec<String>) {
        match v {
            toml::Value::String(s) => out.push(s.clone()),
            toml::Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
            toml::Value::Table(t) => t.values().for_each(|x| strings(x, out)),
            _ => {}
        }
    }
    let mut named = Vec::new();
    strings(&toml::Value::Table(table), &mut named);
    for p in named {
        for under in ["/run/secrets/", "/etc/hab/"] {
            if p.starts_with(&format!("{moved}{under}")) {
                assert!(
                    std::path::Path::new(&p).exists(),
                    "{}: hab.toml names {}, which habd's pod does not mount",
                    ex.name,
                    p.trim_start_matches(&moved)
                );
            }
        }
    }
}

impl Example {
    fn set<'a>(&'a self, name: &'a str) -> Set<'a> {
        Set {
            ex: self,
            name,
            sts: find(&self.docs, "StatefulSet", &format!("hab-{name}")),
        }
    }

    fn has(&self, kind: &str, name: &str) -> bool {
        self.docs
            .iter()
            .any(|d| d["kind"] == kind && d["metadata"]["name"] == name)
    }

    fn of_kind(&self, kind: &str) -> Vec<&Value> {
        self.docs.iter().filter(|d| d["kind"] == kind).collect()
    }

    /// The node sets rendered (StatefulSets whose pods carry `hab/set`).
    fn node_sets(&self) -> BTreeSet<String> {
        self.of_kind("StatefulSet")
            .into_iter()
            .filter_map(|d| {
                d["spec"]["template"]["metadata"]["labels"]["hab/set"]
                    .as_str()
                    .map(str::to_string)
            })
            .collect()
    }

    /// The values file itself, as written.
    fn values(&self) -> Value {
        serde_yaml_ng::from_str(&std::fs::read_to_string(&self.file).unwrap()).unwrap()
    }

    /// The values of one set in the fixture.
    fn set_values(&self, name: &str) -> Value {
        self.values()["nodeSets"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .unwrap_or_else(|| panic!("{}: no set {name} in the values", self.name))
            .clone()
    }

    /// The text of a ConfigMap's or a Secret's key, if rendered.
    fn file_of(&self, kind: &str, name: &str, key: &str) -> Option<String> {
        self.bytes_of(kind, name, key)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
    }

    /// The bytes of a ConfigMap's or a Secret's key, if rendered.
    fn bytes_of(&self, kind: &str, name: &str, key: &str) -> Option<Vec<u8>> {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD;
        let d = self
            .docs
            .iter()
            .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)?;
        if let Some(v) = d["binaryData"][key].as_str() {
            return Some(b64.decode(v).unwrap());
        }
        if let Some(v) = d["data"][key].as_str() {
            return Some(if kind == "Secret" {
                b64.decode(v).unwrap()
            } else {
                v.as_bytes().to_vec()
            });
        }
        d["stringData"][key].as_str().map(|v| v.as_bytes().to_vec())
    }

    /// Every key of a ConfigMap or Secret, if rendered.
    fn keys_of(&self, kind: &str, name: &str) -> Vec<String> {
        self.docs
            .iter()
            .filter(|d| d["kind"] == kind && d["metadata"]["name"] == name)
            .flat_map(|d| {
                ["data", "stringData", "binaryData"]
                    .iter()
                    .filter_map(|k| d[k].as_object())
                    .flat_map(|m| m.keys().cloned())
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// habd's configuration (the ConfigMap key hab.toml).
    fn habd_config(&self) -> (&Value, toml::Table) {
        let cm = self
            .of_kind("ConfigMap")
            .into_iter()
            .find(|d| d["data"].get("hab.toml").is_some())
            .unwrap_or_else(|| panic!("{}: no ConfigMap holds habd's hab.toml", self.name));
        let table = toml::from_str(cm["data"]["hab.toml"].as_str().unwrap())
            .unwrap_or_else(|e| panic!("{}: hab.toml: {e}", self.name));
        (cm, table)
    }

    /// habd's fleets, by name.
    fn fleets(&self) -> BTreeMap<String, toml::Table> {
        let (_, config) = self.habd_config();
        config
            .get("fleet")
            .and_then(|f| f.as_array())
            .into_iter()
            .flatten()
            .map(|f| {
                let t = f.as_table().unwrap().clone();
                (t["name"].as_str().unwrap().to_string(), t)
            })
            .collect()
    }

    /// The pipeline file habd is given for a pipeline name.
    fn pipeline(&self, name: &str) -> toml::Table {
        let (cm, _) = self.habd_config();
        let key = format!("pipeline-{name}.toml");
        let text = cm["data"][&key]
            .as_str()
            .unwrap_or_else(|| panic!("{}: habd's ConfigMap has no {key}", self.name));
        toml::from_str(text).unwrap()
    }

    /// Whether a NetworkPolicy lets `from` (a NetworkPolicyPeer, exactly as
    /// written in the values) reach `port` of the set's pods.
    fn admits(&self, s: &Set, port: u64, from: &Value) -> bool {
        let names: Vec<String> = s.container()["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["containerPort"] == port)
            .filter_map(|p| p["name"].as_str().map(str::to_string))
            .collect();
        self.of_kind("NetworkPolicy").into_iter().any(|np| {
            selector_matches(&np["spec"]["podSelector"], s.labels())
                && np["spec"]["ingress"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|rule| {
                        let ports = rule["ports"].as_array().cloned().unwrap_or_default();
                        let port_ok = ports.is_empty()
                            || ports.iter().any(|p| {
                                p["port"] == port
                                    || p["port"]
                                        .as_str()
                                        .is_some_and(|n| names.iter().any(|m| m == n))
                            });
                        let peers = rule["from"].as_array().cloned().unwrap_or_default();
                        port_ok && (peers.is_empty() || peers.contains(from))
                    })
        })
    }
}

/// One node set's StatefulSet.
struct Set<'a> {
    ex: &'a Example,
    name: &'a str,
    sts: &'a Value,
}

impl Set<'_> {
    fn replicas(&self) -> u64 {
        self.sts["spec"]["replicas"].as_u64().unwrap()
    }

    fn pod(&self) -> &Value {
        &self.sts["spec"]["template"]["spec"]
    }

    fn labels(&self) -> &Value {
        &self.sts["spec"]["template"]["metadata"]["labels"]
    }

    fn label(&self, key: &str) -> Option<&str> {
        self.labels()[key].as_str()
    }

    fn implementation(&self) -> &str {
        self.label("hab/implementation")
            .unwrap_or_else(|| panic!("{}: no hab/implementation label", self.name))
    }

    /// The node's container.
    fn container(&self) -> &Value {
        self.pod()["containers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "node")
            .unwrap_or_else(|| panic!("{}: no container named node", self.name))
    }

    fn args(&self) -> Vec<String> {
        self.container()["args"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|a| a.as_str().unwrap().to_string())
            .collect()
    }

    fn has_arg(&self, arg: &str) -> bool {
        self.args().iter().any(|a| a == arg)
    }

    fn port(&self, name: &str) -> u64 {
        self.container()["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["name"] == name)
            .and_then(|p| p["containerPort"].as_u64())
            .unwrap_or_else(|| panic!("{}: the node has no port {name}", self.name))
    }

    fn image(&self) -> &str {
        self.container()["image"].as_str().unwrap()
    }

    /// The claim template mounted at /data: the chain volume.
    fn chain_claim(&self) -> &Value {
        let mount = self.container()["volumeMounts"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|m| m["mountPath"] == "/data")
            .unwrap_or_else(|| panic!("{}: nothing is mounted at /data", self.name));
        self.sts["spec"]["volumeClaimTemplates"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["metadata"]["name"] == mount["name"])
            .unwrap_or_else(|| panic!("{}: /data is not a claim template", self.name))
    }

    fn storage(&self) -> &str {
        self.chain_claim()["spec"]["resources"]["requests"]["storage"]
            .as_str()
            .unwrap()
    }

    /// The DNS name and P2P port of pod `i`.
    fn address(&self, i: u64) -> String {
        format!(
            "hab-{n}-{i}.hab-{n}-headless.{NAMESPACE}.svc.cluster.local:{p}",
            n = self.name,
            p = self.port("p2p")
        )
    }

    fn addresses(&self) -> BTreeSet<String> {
        (0..self.replicas()).map(|i| self.address(i)).collect()
    }

    /// The peers the node is told to connect to, from its peering flags.
    fn peers(&self) -> BTreeSet<String> {
        let args = self.args();
        let flag = match self.implementation() {
            "bitcoind" => "-addnode=",
            "btcd" => "--addpeer=",
            _ => "--nodes=",
        };
        let values: Vec<&str> = args.iter().filter_map(|a| a.strip_prefix(flag)).collect();
        if self.implementation() == "bcoin" {
            assert!(
                values.len() <= 1,
                "{}: bcoin takes one --nodes list",
                self.name
            );
            return values
                .iter()
                .flat_map(|v| v.split(','))
                .filter(|p| !p.is_empty())
                .map(str::to_string)
                .collect();
        }
        values.into_iter().map(str::to_string).collect()
    }

    /// What the node is configured with: its args and every ConfigMap or
    /// Secret file its pod mounts.
    fn settings(&self) -> String {
        let mut text = self.args().join("\n");
        for v in self.pod()["volumes"].as_array().into_iter().flatten() {
            for (kind, name) in volume_sources(v) {
                for key in self.ex.keys_of(kind, &name) {
                    if let Some(t) = self.ex.file_of(kind, &name, &key) {
                        text.push('\n');
                        text.push_str(&t);
                    }
                }
            }
        }
        text
    }

    /// Whether the node runs with `key` set to `value`: an argument
    /// (`-key=value`, `--key=value`) or a config file line (`key=value`,
    /// `key = value`, `key: value`).
    fn has_setting(&self, key: &str, value: &str) -> bool {
        self.settings().lines().map(str::trim).any(|l| {
            let l = l.trim_start_matches('-');
            [
                format!("{key}={value}"),
                format!("{key} = {value}"),
                format!("{key}: {value}"),
                format!("{key} = \"{value}\""),
            ]
            .iter()
            .any(|w| l == w)
        })
    }

    /// Whether the node has a file at `path` from a mounted ConfigMap or Secret.
    fn mounted_file(&self, path: &str) -> bool {
        let (dir, file) = path.rsplit_once('/').unwrap();
        let Some(mount) = self.container()["volumeMounts"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|m| m["mountPath"].as_str().map(|p| p.trim_end_matches('/')) == Some(dir))
        else {
            return false;
        };
        let Some(volume) = self.pod()["volumes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|v| v["name"] == mount["name"])
        else {
            return false;
        };
        volume_files(self.ex, volume).iter().any(|f| f == file)
    }

    /// The Secret or ConfigMap (name, key) the node's file at `path` comes from.
    fn file_source(&self, path: &str) -> Option<(String, String)> {
        pod_file_source(self.pod(), "node", path)
    }

    /// Whether the pod may be scheduled on a host of that name and arch.
    fn may_run_on(&self, host: &str, arch: &str) -> bool {
        pod_may_run_on(self.pod(), host, arch)
    }

    /// The weight the scheduler's preferred node affinity gives a host.
    fn preference(&self, host: &str) -> i64 {
        let labels = host_labels(host, "amd64");
        self.pod()["affinity"]["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| node_term_holds(&p["preference"], &labels))
            .map(|p| p["weight"].as_i64().unwrap())
            .sum()
    }

    /// Whether a host takes this set's pods only when no other will.
    fn prefers(&self, host: &str, over: &str) -> bool {
        self.preference(host) > self.preference(over)
    }

    /// A topology spread of at most one pod of skew over hosts, over the
    /// set's own pods, `how` when it cannot be met.
    fn spreads_evenly(&self, how: &str) -> bool {
        self.pod()["topologySpreadConstraints"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| {
                c["topologyKey"] == "kubernetes.io/hostname"
                    && c["maxSkew"] == 1
                    && c["whenUnsatisfiable"] == how
                    && selector_matches(&c["labelSelector"], self.labels())
            })
    }
}

/// The Secret or ConfigMap (name, key) a container's file at `path` is
/// mounted from, through a volume with items.
fn pod_file_source(pod: &Value, container: &str, path: &str) -> Option<(String, String)> {
    let c = pod["containers"]
        .as_array()?
        .iter()
        .find(|c| c["name"] == container)?;
    let (dir, file) = path.rsplit_once('/')?;
    let mount = c["volumeMounts"]
        .as_array()?
        .iter()
        .find(|m| m["mountPath"].as_str().map(|p| p.trim_end_matches('/')) == Some(dir))?;
    let v = pod["volumes"]
        .as_array()?
        .iter()
        .find(|v| v["name"] == mount["name"])?;
    let mut sources: Vec<(&Value, &Value)> = Vec::new();
    for k in ["secret", "configMap"] {
        if v.get(k).is_some() {
            let name = if k == "secret" {
                &v[k]["secretName"]
            } else {
                &v[k]["name"]
            };
            sources.push((name, &v[k]["items"]));
        }
    }
    for s in v["projected"]["sources"].as_array().into_iter().flatten() {
        for k in ["secret", "configMap"] {
            if s.get(k).is_some() {
                sources.push((&s[k]["name"], &s[k]["items"]));
            }
        }
    }
    sources.into_iter().find_map(|(name, items)| {
        let item = items.as_array()?.iter().find(|i| i["path"] == file)?;
        Some((
            name.as_str()?.to_string(),
            item["key"].as_str()?.to_string(),
        ))
    })
}

/// The ConfigMaps and Secrets a volume reads: (kind, name).
fn volume_sources(v: &Value) -> Vec<(&'static str, String)> {
    volume_items(v)
        .into_iter()
        .map(|(kind, name, _)| (kind, name))
        .collect()
}

/// What a volume reads: (kind, name, its items).
fn volume_items(v: &Value) -> Vec<(&'static str, String, &Value)> {
    let mut sources: Vec<(&str, String, &Value)> = Vec::new();
    if let Some(n) = v["configMap"]["name"].as_str() {
        sources.push(("ConfigMap", n.to_string(), &v["configMap"]["items"]));
    }
    if let Some(n) = v["secret"]["secretName"].as_str() {
        sources.push(("Secret", n.to_string(), &v["secret"]["items"]));
    }
    for s in v["projected"]["sources"].as_array().into_iter().flatten() {
        if let Some(n) = s["configMap"]["name"].as_str() {
            sources.push(("ConfigMap", n.to_string(), &s["configMap"]["items"]));
        }
        if let Some(n) = s["secret"]["name"].as_str() {
            sources.push(("Secret", n.to_string(), &s["secret"]["items"]));
        }
    }
    sources
}

/// The file names a volume shows: its items' paths, or every key of what
/// it reads.
fn volume_files(ex: &Example, v: &Value) -> Vec<String> {
    let mut files = Vec::new();
    for (kind, name, items) in volume_items(v) {
        match items.as_array() {
            Some(items) => files.extend(
                items
                    .iter()
                    .filter_map(|i| i["path"].as_str().map(str::to_string)),
            ),
            None => files.extend(ex.keys_of(kind, &name)),
        }
    }
    files
}

/// Whether a pod spec may be scheduled on a host of that name and arch
/// (its nodeSelector and required node affinity).
fn pod_may_run_on(pod: &Value, host: &str, arch: &str) -> bool {
    let labels = host_labels(host, arch);
    let selector_ok = pod["nodeSelector"]
        .as_object()
        .into_iter()
        .flatten()
        .all(|(k, v)| labels.get(k.as_str()).map(String::as_str) == v.as_str());
    let required = &pod["affinity"]["nodeAffinity"]
        ["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"];
    let affinity_ok = match required.as_array() {
        None => true,
        Some(terms) => terms.iter().any(|t| node_term_holds(t, &labels)),
    };
    selector_ok && affinity_ok
}

fn host_labels(host: &str, arch: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("kubernetes.io/hostname".to_string(), host.to_string()),
        ("kubernetes.io/arch".to_string(), arch.to_string()),
        ("kubernetes.io/os".to_string(), "linux".to_string()),
    ])
}

/// A label selector requirement (In, NotIn, Exists, DoesNotExist) against labels.
fn requirement_holds(e: &Value, get: impl Fn(&str) -> Option<String>) -> bool {
    let key = e["key"].as_str().unwrap();
    let values: Vec<&str> = e["values"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| v.as_str().unwrap())
        .collect();
    let v = get(key);
    match e["operator"].as_str().unwrap() {
        "In" => v.is_some_and(|v| values.contains(&v.as_str())),
        "NotIn" => v.is_none_or(|v| !values.contains(&v.as_str())),
        "Exists" => v.is_some(),
        "DoesNotExist" => v.is_none(),
        op => panic!("operator {op} in {e}"),
    }
}

/// A nodeSelectorTerm (its matchExpressions, all of them) against a host's labels.
fn node_term_holds(term: &Value, labels: &BTreeMap<String, String>) -> bool {
    assert!(term.get("matchFields").is_none(), "matchFields: {term}");
    term["matchExpressions"]
        .as_array()
        .into_iter()
        .flatten()
        .all(|e| requirement_holds(e, |k| labels.get(k).cloned()))
}

/// A LabelSelector against a pod's labels.
fn selector_matches(sel: &Value, labels: &Value) -> bool {
    let get = |k: &str| labels[k].as_str().map(str::to_string);
    sel["matchLabels"]
        .as_object()
        .into_iter()
        .flatten()
        .all(|(k, v)| get(k).as_deref() == v.as_str())
        && sel["matchExpressions"]
            .as_array()
            .into_iter()
            .flatten()
            .all(|e| requirement_holds(e, get))
}

/// Whether the scheduler keeps a pod of `a` and a pod of `b` off one host:
/// a required pod anti-affinity over kubernetes.io/hostname of either
/// selects the other (the scheduler honours both sides).
fn never_share_a_host(a: &Set, b: &Set) -> bool {
    let keeps = |x: &Set, y: &Set| {
        x.pod()["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|t| {
                t["topologyKey"] == "kubernetes.io/hostname"
                    && selector_matches(&t["labelSelector"], y.labels())
            })
    };
    keeps(a, b) || keeps(b, a)
}

/// The set's peers are every node of `with` (the other sets of its group),
/// its own nodes when it has more than one, and `external`; nothing else
/// but possibly itself.
fn assert_peers(ex: &Example, set: &str, with: &[&str], external: &[&str]) {
    let s = ex.set(set);
    let own = s.addresses();
    let mut want: BTreeSet<String> = with.iter().flat_map(|o| ex.set(o).addresses()).collect();
    if s.replicas() > 1 {
        want.extend(own.iter().cloned());
    }
    want.extend(external.iter().map(|e| e.to_string()));
    let got = s.peers();
    let missing: Vec<&String> = want.difference(&got).collect();
    let unexpected: Vec<&String> = got
        .iter()
        .filter(|p| !want.contains(*p) && !own.contains(*p))
        .collect();
    assert!(
        missing.is_empty() && unexpected.is_empty(),
        "{}: {set} peers with {got:?}: missing {missing:?}, unexpected {unexpected:?}",
        ex.name
    );
}

/// No argument or variable of any container carries RPC credentials.
fn assert_no_credentials_in_args_or_env(ex: &Example) {
    for sts in ex.of_kind("StatefulSet") {
        for c in sts["spec"]["template"]["spec"]["containers"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let mut said = Vec::new();
            said.extend(c["args"].as_array().into_iter().flatten().cloned());
            said.extend(c["command"].as_array().into_iter().flatten().cloned());
            for e in c["env"].as_array().into_iter().flatten() {
                said.push(e["name"].clone());
                said.push(e["value"].clone());
            }
            let text = serde_json::to_string(&said).unwrap().to_lowercase();
            for word in ["rpcuser", "rpcpass", "rpcauth", "password", "api-key"] {
                assert!(
                    !text.contains(word),
                    "{}: {} {} is given {word}: {text}",
                    ex.name,
                    sts["metadata"]["name"],
                    c["name"]
                );
            }
        }
    }
}

/// The Service port of `service` named or numbered `port`.
fn service_port<'a>(ex: &'a Example, service: &str, port: &Value) -> &'a Value {
    find(&ex.docs, "Service", service)["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == *port || p["port"] == *port)
        .unwrap_or_else(|| panic!("{}: Service {service} has no port {port}", ex.name))
}

/// The Longhorn RecurringJobs of `task` that apply to the set's volumes
/// (through its StorageClass's recurringJobSelector).
fn recurring_jobs(ex: &Example, s: &Set, task: &str) -> Vec<String> {
    let class = s.chain_claim()["spec"]["storageClassName"]
        .as_str()
        .unwrap_or_default();
    let Some(sc) = ex
        .docs
        .iter()
        .find(|d| d["kind"] == "StorageClass" && d["metadata"]["name"] == class)
    else {
        return Vec::new();
    };
    let selector: Vec<Value> = sc["parameters"]["recurringJobSelector"]
        .as_str()
        .map(|s| serde_json::from_str(s).unwrap())
        .unwrap_or_default();
    ex.of_kind("RecurringJob")
        .into_iter()
        .filter(|j| j["spec"]["task"] == task && j["metadata"]["namespace"] == "longhorn-system")
        .filter(|j| {
            selector.iter().any(|sel| {
                if sel["isGroup"] == true {
                    j["spec"]["groups"]
                        .as_array()
                        .is_some_and(|g| g.contains(&sel["name"]))
                } else {
                    j["metadata"]["name"] == sel["name"]
                }
            })
        })
        .map(|j| j["metadata"]["name"].as_str().unwrap().to_string())
        .collect()
}

fn names(v: &[&str]) -> BTreeSet<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn every_example_has_a_fixture_that_says_what_it_wants() {
    let files: Vec<String> = std::fs::read_dir(fixtures())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(files.len(), 14, "{files:?}");
    for nn in 1..=14 {
        let text = std::fs::read_to_string(fixture(nn)).unwrap();
        let comment: Vec<&str> = text.lines().take_while(|l| l.starts_with('#')).collect();
        assert!(
            comment
                .first()
                .is_some_and(|l| l.starts_with(&format!("# Original example {nn} "))),
            "example {nn}: {comment:?}"
        );
        assert!(
            comment.len() >= 5 && comment.iter().any(|l| l.contains("hab")),
            "example {nn}: the opening comment says what the example wants and how hab does it"
        );
    }
}

#[test]
fn a_single_bitcoind_node_runs_on_a_raspberry_pi() {
    let ex = example(1);
    assert_eq!(ex.node_sets(), names(&["bitcoind-livenet"]));
    let s = ex.set("bitcoind-livenet");
    assert_eq!(s.implementation(), "bitcoind");
    assert_eq!(s.replicas(), 1);
    assert_eq!(s.storage(), "1000Gi");
    assert!(s.may_run_on("pi", "arm64"));
    assert!(!s.may_run_on("pc", "amd64"), "arm64 hosts only");
    // Everything the release runs fits the one Pi: no pod wants an amd64 host.
    for d in ex
        .of_kind("Deployment")
        .into_iter()
        .chain(ex.of_kind("StatefulSet"))
    {
        assert!(
            pod_may_run_on(&d["spec"]["template"]["spec"], "pi", "arm64"),
            "{} cannot run on an arm64 host",
            d["metadata"]["name"]
        );
    }
    assert!(
        !s.args()
            .iter()
            .any(|a| ["-testnet", "-testnet4", "-signet", "-regtest"].contains(&a.as_str())),
        "mainnet: {:?}",
        s.args()
    );
    assert_peers(&ex, "bitcoind-livenet", &[], &[]);
    let fleets = ex.fleets();
    assert_eq!(fleets.keys().collect::<Vec<_>>(), ["hab-bitcoind-livenet"]);
    assert_eq!(
        fleets["hab-bitcoind-livenet"]["network"].as_str(),
        Some("mainnet")
    );
    assert_no_credentials_in_args_or_env(&ex);
}

#[test]
fn five_bcoin_nodes_peer_and_spread_over_one_to_five_hosts() {
    let ex = example(2);
    assert_eq!(ex.node_sets(), names(&["bcoin-livenet"]));
    let s = ex.set("bcoin-livenet");
    assert_eq!(s.implementation(), "bcoin");
    assert_eq!(s.replicas(), 5);
    assert_eq!(s.storage(), "1500Gi");
    // All five in one bcoin --nodes list.
    assert_peers(&ex, "bcoin-livenet", &[], &[]);
    assert_eq!(s.peers().len(), 5);
    // One host may hold them all; more hosts share them evenly.
    assert!(!never_share_a_host(&s, &s));
    assert!(s.spreads_evenly("DoNotSchedule"));
}

#[test]
fn three_implementations_peer_as_one_group_and_with_an_outside_node() {
    let ex = example(3);
    let sets = ["bitcoind-livenet", "bcoin-livenet", "btcd-livenet"];
    assert_eq!(ex.node_sets(), names(&sets));
    let chicago = "47.185.51.150:8333";
    for (set, size) in sets.iter().zip(["1000Gi", "1500Gi", "3000Gi"]) {
        let s = ex.set(set);
        assert_eq!(s.replicas(), 1);
        assert_eq!(s.storage(), size);
        assert_eq!(s.label("hab/group"), Some("cluster"));
        let others: Vec<&str> = sets.iter().copied().filter(|o| o != set).collect();
        assert_peers(&ex, set, &others, &[chicago]);
        for o in &others {
            assert!(
                never_share_a_host(&s, &ex.set(o)),
                "{set} and {o}: three hosts"
            );
        }
    }
    assert_eq!(ex.set("bitcoind-livenet").implementation(), "bitcoind");
    assert_eq!(ex.set("bcoin-livenet").implementation(), "bcoin");
    assert_eq!(ex.set("btcd-livenet").implementation(), "btcd");
    assert!(ex
        .set("bitcoind-livenet")
        .has_arg(&format!("-addnode={chicago}")));
    assert!(ex
        .set("btcd-livenet")
        .has_arg(&format!("--addpeer={chicago}")));
}

#[test]
fn a_failover_host_takes_nodes_only_when_their_hosts_are_gone() {
    let ex = example(4);
    assert_eq!(
        ex.node_sets(),
        names(&["bitcoind-livenet", "bcoin-livenet"])
    );
    let bitcoind = ex.set("bitcoind-livenet");
    let bcoin = ex.set("bcoin-livenet");
    assert_eq!(bitcoind.replicas(), 2);
    assert_eq!(bcoin.replicas(), 1);
    assert_eq!((bitcoind.storage(), bcoin.storage()), ("1000Gi", "1500Gi"));
    for s in [&bitcoind, &bcoin] {
        for host in ["host1", "host2", "host3", "host4"] {
            assert!(s.may_run_on(host, "amd64"), "{}: {host}", s.name);
        }
        for host in ["host1", "host2", "host3"] {
            assert!(
                s.prefers(host, "host4"),
                "{}: {host} before the spare",
                s.name
            );
        }
        // Fewer hosts than nodes is fine; spread when there are more.
        assert!(!never_share_a_host(s, &bitcoind) && !never_share_a_host(s, &bcoin));
        assert!(s.spreads_evenly("ScheduleAnyway"), "{}", s.name);
    }
    assert_peers(&ex, "bitcoind-livenet", &["bcoin-livenet"], &[]);
    assert_peers(&ex, "bcoin-livenet", &["bitcoind-livenet"], &[]);
}

#[test]
fn each_implementation_runs_on_the_host_whose_disk_fits_it() {
    let ex = example(5);
    let spare = "host4-mid-hd";
    for (set, size, home) in [
        ("bitcoind-livenet", "600Gi", "host1-small-hd"),
        ("bcoin-livenet", "1500Gi", "host2-mid-hd"),
        ("btcd-livenet", "4000Gi", "host3-large-hd"),
    ] {
        let s = ex.set(set);
        assert_eq!(s.storage(), size);
        assert!(s.may_run_on(home, "amd64"), "{set} on {home}");
        for other in [
            "host1-small-hd",
            "host2-mid-hd",
            "host3-large-hd",
            "elsewhere",
        ] {
            if other != home {
                assert!(!s.may_run_on(other, "amd64"), "{set} never on {other}");
            }
        }
        if set == "btcd-livenet" {
            assert!(
                !s.may_run_on(spare, "amd64"),
                "btcd's chain does not fit the spare"
            );
        } else {
            assert!(s.may_run_on(spare, "amd64"), "{set} may use the spare");
            assert!(s.prefers(home, spare), "{set}: its own host first");
        }
    }
    assert_peers(
        &ex,
        "bitcoind-livenet",
        &["bcoin-livenet", "btcd-livenet"],
        &[],
    );
    assert_peers(
        &ex,
        "btcd-livenet",
        &["bitcoind-livenet", "bcoin-livenet"],
        &[],
    );
    assert_peers(
        &ex,
        "bcoin-livenet",
        &["bitcoind-livenet", "btcd-livenet"],
        &[],
    );
}

#[test]
fn a_btcd_simnet_takes_its_rpc_credentials_from_the_operators_secret_as_files() {
    let ex = example(6);
    assert_eq!(ex.node_sets(), names(&["btcd-simnet"]));
    let s = ex.set("btcd-simnet");
    assert_eq!(s.implementation(), "btcd");
    assert_eq!((s.replicas(), s.storage()), (3, "20Gi"));
    assert!(s.has_arg("--simnet"), "{:?}", s.args());
    assert!(s.has_arg("--miningaddr=sb1qjwgq9pa4df4qv2dqdlkaf6mvzhel7lus4yhl80"));
    let fleet = &ex.fleets()["hab-btcd-simnet"];
    assert_eq!(fleet["network"].as_str(), Some("simnet"));
    // The operator's Secret: the node's config file (with the RPC user and
    // password) and habd's copy of the password, read as files.
    assert_eq!(
        s.file_source("/run/hab/btcd.conf"),
        Some((
            "simnet-rpc-secret".to_string(),
            "btcd-simnet.conf".to_string()
        ))
    );
    assert_eq!(fleet["rpc_user"].as_str(), Some("simnet"));
    let habd = find(&ex.docs, "Deployment", "hab-habd");
    let password = fleet["rpc_password_file"].as_str().unwrap();
    assert_eq!(
        pod_file_source(&habd["spec"]["template"]["spec"], "habd", password),
        Some(("simnet-rpc-secret".to_string(), "rpc-password".to_string()))
    );
    assert!(!ex.has("Secret", "hab-rpc"), "no generated credentials");
    assert_no_credentials_in_args_or_env(&ex);
    assert_peers(&ex, "btcd-simnet", &[], &[]);
    assert!(!never_share_a_host(&s, &s), "one to three hosts");
    assert!(s.spreads_evenly("DoNotSchedule"));
}

#[test]
fn indexed_bitcoind_nodes_publish_zmq_on_their_service_one_per_host() {
    let ex = example(7);
    let s = ex.set("bitcoind-livenet");
    assert_eq!((s.replicas(), s.storage()), (3, "1200Gi"));
    assert!(never_share_a_host(&s, &s), "one node per host");
    assert_eq!(s.label("hab/isolated"), Some("true"));
    for (k, v) in [
        ("txindex", "1"),
        ("maxconnections", "40"),
        ("zmqpubrawblock", "tcp://0.0.0.0:28333"),
        ("zmqpubrawtx", "tcp://0.0.0.0:28332"),
    ] {
        assert!(s.has_setting(k, v), "{k}={v}:\n{}", s.settings());
    }
    for a in ["-disablewallet", "-rest=1", "-assumevalid=0", "-reindex"] {
        assert!(s.has_arg(a), "{a}: {:?}", s.args());
    }
    assert_no_credentials_in_args_or_env(&ex);
    // The ZMQ ports: on the container and the set's Service, and open to
    // the RPC clients.
    let clients = json!({"podSelector": {"matchLabels": {"hab-rpc-client": "true"}}});
    for (name, port) in [("zmq-rawblock", 28333), ("zmq-rawtx", 28332)] {
        assert_eq!(s.port(name), port);
        assert_eq!(
            service_port(&ex, "hab-bitcoind-livenet", &json!(name))["port"],
            port
        );
        assert!(
            ex.admits(&s, port, &clients),
            "ZMQ subscribers reach {name}"
        );
    }
    assert!(
        ex.admits(&s, s.port("rpc"), &clients),
        "RPC clients reach RPC"
    );
}

#[test]
fn bitcoind_has_two_hosts_of_its_own_and_every_set_a_shared_spare() {
    let ex = example(8);
    let spare = "host5-failover-all";
    let sets = ["bitcoind-livenet", "bcoin-livenet", "btcd-livenet"];
    assert_eq!(ex.node_sets(), names(&sets));
    let bitcoind = ex.set("bitcoind-livenet");
    assert_eq!(bitcoind.replicas(), 1);
    for host in ["host1", "host2", spare] {
        assert!(bitcoind.may_run_on(host, "amd64"), "bitcoind on {host}");
    }
    assert!(!bitcoind.may_run_on("host3", "amd64"));
    assert!(bitcoind.prefers("host1", spare) && bitcoind.prefers("host2", spare));
    for set in ["bcoin-livenet", "btcd-livenet"] {
        let s = ex.set(set);
        for host in ["host1", "host2", "host3", "host4", spare] {
            assert!(s.may_run_on(host, "amd64"), "{set} on {host}");
        }
        assert!(s.prefers("host3", spare), "{set}: the spare last");
    }
    for a in &sets {
        let others: Vec<&str> = sets.iter().copied().filter(|o| o != a).collect();
        assert_peers(&ex, a, &others, &[]);
        for b in &others {
            assert!(never_share_a_host(&ex.set(a), &ex.set(b)), "{a} and {b}");
        }
    }
}

#[test]
fn a_testnet_cluster_shares_the_hosts_of_a_mainnet_cluster_without_peering() {
    let ex = example(9);
    let live = ex.set("btcd-livenet");
    let test = ex.set("btcd-testnet");
    assert_eq!((live.replicas(), live.storage()), (3, "3000Gi"));
    assert_eq!((test.replicas(), test.storage()), (3, "10Gi"));
    assert!(test.has_arg("--testnet") && !live.has_arg("--testnet"));
    let fleets = ex.fleets();
    assert_eq!(
        fleets["hab-btcd-livenet"]["network"].as_str(),
        Some("mainnet")
    );
    assert_eq!(
        fleets["hab-btcd-testnet"]["network"].as_str(),
        Some("testnet3")
    );
    assert!(
        never_share_a_host(&live, &live),
        "one mainnet node per host"
    );
    assert!(
        !never_share_a_host(&test, &live),
        "the test nodes sit on top"
    );
    for host in ["host1", "host2", "host3"] {
        assert!(test.may_run_on(host, "amd64"));
    }
    assert!(!test.may_run_on("host4", "amd64"));
    assert!(
        test.spreads_evenly("DoNotSchedule"),
        "one test node per host"
    );
    assert_eq!(live.label("hab/group"), Some("live-cluster"));
    assert_eq!(test.label("hab/group"), Some("test-cluster"));
    assert_peers(&ex, "btcd-livenet", &[], &[]);
    assert_peers(&ex, "btcd-testnet", &[], &[]);
}

#[test]
fn a_btcd_simnet_is_reached_through_a_tls_ingress_and_a_load_balancer() {
    let ex = example(10);
    let s = ex.set("btcd-simnet");
    assert_eq!((s.replicas(), s.storage()), (5, "10Gi"));
    assert!(s.has_arg("--simnet"));
    assert!(s.has_arg("--miningaddr=sb1qjwgq9pa4df4qv2dqdlkaf6mvzhel7lus4yhl80"));
    assert_no_credentials_in_args_or_env(&ex);
    assert!(!never_share_a_host(&s, &s) && s.spreads_evenly("DoNotSchedule"));
    // P2P through a load balancer.
    let p2p = find(&ex.docs, "Service", "hab-btcd-simnet-p2p");
    assert_eq!(p2p["spec"]["type"], "LoadBalancer");
    assert!(p2p["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["port"] == s.port("p2p")));
    // RPC (btcd's simnet port) through the TLS Ingress.
    let rpc = s.port("rpc");
    assert_eq!(rpc, 18556);
    let ingresses = ex.of_kind("Ingress");
    assert_eq!(ingresses.len(), 1, "one Ingress");
    let ing = &ingresses[0]["spec"];
    assert_eq!(ing["ingressClassName"], "nginx");
    let annotations = &ingresses[0]["metadata"]["annotations"];
    assert_eq!(
        annotations["cert-manager.io/cluster-issuer"],
        "selfsigned-issuer"
    );
    assert_eq!(
        ing["tls"],
        json!([{"secretName": "bitcoin-tls", "hosts": ["btc.gilded.lan"]}])
    );
    let rule = &ing["rules"][0];
    assert_eq!(rule["host"], "btc.gilded.lan");
    let path = &rule["http"]["paths"][0];
    assert_eq!(
        (&path["path"], &path["pathType"]),
        (&json!("/rpc"), &json!("Prefix"))
    );
    let backend = &path["backend"]["service"];
    assert_eq!(backend["name"], "hab-btcd-simnet");
    let port = &backend["port"];
    let target = if port["name"].is_string() {
        port["name"].clone()
    } else {
        port["number"].clone()
    };
    assert_eq!(service_port(&ex, "hab-btcd-simnet", &target)["port"], rpc);
    let controller = json!({"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}});
    assert!(
        ex.admits(&s, rpc, &controller),
        "the ingress controller reaches RPC"
    );
}

#[test]
fn an_even_race_keeps_bitcoind_apart_from_the_bcoin_btcd_group() {
    let ex = example(11);
    let sets = ["bitcoind-livenet", "bcoin-livenet", "btcd-livenet"];
    assert_eq!(ex.node_sets(), names(&sets));
    for a in &sets {
        assert_eq!(ex.set(a).storage(), "3000Gi");
        for b in &sets {
            if a != b {
                assert!(never_share_a_host(&ex.set(a), &ex.set(b)), "{a} and {b}");
            }
        }
    }
    let bitcoind = ex.set("bitcoind-livenet");
    assert!(
        bitcoind.has_setting("txindex", "1"),
        "{}",
        bitcoind.settings()
    );
    assert_peers(&ex, "bitcoind-livenet", &[], &[]);
    assert_peers(&ex, "bcoin-livenet", &["btcd-livenet"], &[]);
    assert_peers(&ex, "btcd-livenet", &["bcoin-livenet"], &[]);
}

#[test]
fn two_bitcoind_sets_in_different_groups_never_peer() {
    let ex = example(12);
    let one = ex.set("bitcoind-livenet1");
    let two = ex.set("bitcoind-livenet2");
    assert_eq!((one.storage(), two.storage()), ("3000Gi", "3000Gi"));
    assert_eq!(one.label("hab/group"), Some("cluster1"));
    assert_eq!(two.label("hab/group"), Some("cluster2"));
    assert_peers(&ex, "bitcoind-livenet1", &[], &[]);
    assert_peers(&ex, "bitcoind-livenet2", &[], &[]);
    assert!(never_share_a_host(&one, &two), "two hosts");
}

#[test]
fn three_bitcoind_sets_run_three_releases_two_of_them_pinned() {
    let ex = example(13);
    let sets = [
        "bitcoind-livenet1",
        "bitcoind-livenet2",
        "bitcoind-livenet3",
    ];
    assert_eq!(ex.node_sets(), names(&sets));
    let fleets = ex.fleets();
    assert_eq!(
        fleets["hab-bitcoind-livenet1"]["channel"].as_str(),
        Some("edge")
    );
    let mut images = BTreeSet::new();
    for set in &sets {
        let s = ex.set(set);
        assert_eq!(s.storage(), "3000Gi");
        images.insert(s.image().to_string());
        assert_peers(&ex, set, &[], &[]);
    }
    assert_eq!(images.len(), 3, "three releases: {images:?}");
    let pipeline = ex.pipeline("bitcoind");
    let channels = pipeline["channel"].as_array().unwrap();
    for set in &sets[1..] {
        let values = ex.set_values(set);
        let digest = values["image"]["digest"].as_str().unwrap();
        let channel = values["channel"].as_str().unwrap();
        let s = ex.set(set);
        assert!(
            s.image().ends_with(&format!("/hab/bitcoind@{digest}")),
            "{set}: {}",
            s.image()
        );
        let fleet = &fleets[&format!("hab-{set}")];
        assert_eq!(fleet["channel"].as_str(), Some(channel));
        // The set's own channel: declared, and never moved by itself.
        let declared = channels
            .iter()
            .find(|c| c["name"].as_str() == Some(channel))
            .unwrap_or_else(|| panic!("{set}: the bitcoind pipeline declares no {channel}"));
        assert_ne!(declared.get("auto").and_then(|a| a.as_bool()), Some(true));
        let users = fleets
            .values()
            .filter(|f| f["channel"].as_str() == Some(channel))
            .count();
        assert_eq!(users, 1, "{channel} is {set}'s own");
    }
}

#[test]
fn the_proof_of_concept_fleet_places_backs_up_and_probes_each_set() {
    let ex = example(14);
    let sets = [
        "bitcoind-ctl",
        "bitcoind-ref",
        "btcd-test",
        "bcoin-test",
        "bitcoind-ha",
    ];
    assert_eq!(ex.node_sets(), names(&sets), "btcd-simnet is switched off");
    assert!(
        ex.of_kind("Ingress").is_empty(),
        "only the disabled set had one"
    );
    assert!(!ex.has("Service", "hab-btcd-simnet"));
    assert_eq!(
        ex.fleets().keys().cloned().collect::<BTreeSet<_>>(),
        sets.iter().map(|s| format!("hab-{s}")).collect(),
        "one fleet per enabled set"
    );
    // One production group.
    for a in &sets {
        assert_eq!(ex.set(a).label("hab/group"), Some("prod"));
        let others: Vec<&str> = sets.iter().copied().filter(|o| o != a).collect();
        assert_peers(&ex, a, &others, &[]);
    }
    // Hosts, and the spare (pi5) for the sets that may fail over.
    for (set, homes, failover) in [
        ("bitcoind-ctl", &["nuc2"][..], true),
        ("bitcoind-ref", &["nuc1"][..], true),
        ("btcd-test", &["nuc1"][..], false),
        ("bcoin-test", &["pi1"][..], true),
        ("bitcoind-ha", &["pi2", "pi3", "pi4"][..], false),
    ] {
        let s = ex.set(set);
        for host in ["nuc1", "nuc2", "pi1", "pi2", "pi3", "pi4"] {
            assert_eq!(
                s.may_run_on(host, "arm64"),
                homes.contains(&host),
                "{set} on {host}"
            );
        }
        assert_eq!(s.may_run_on("pi5", "arm64"), failover, "{set} on the spare");
        if failover {
            assert!(s.prefers(homes[0], "pi5"));
        }
    }
    assert_eq!(ex.set("bitcoind-ha").replicas(), 3);
    // Ready only once synced: the three start together.
    assert_eq!(
        ex.set("bitcoind-ha").sts["spec"]["podManagementPolicy"],
        "Parallel"
    );
    // btcd shares nuc1 with the reference node; the others keep apart.
    assert!(!never_share_a_host(
        &ex.set("btcd-test"),
        &ex.set("bitcoind-ref")
    ));
    assert_ne!(ex.set("btcd-test").label("hab/isolated"), Some("true"));
    for a in ["bitcoind-ctl", "bitcoind-ref", "bcoin-test", "bitcoind-ha"] {
        for b in ["bitcoind-ctl", "bitcoind-ref", "bcoin-test", "bitcoind-ha"] {
            assert!(never_share_a_host(&ex.set(a), &ex.set(b)), "{a} and {b}");
        }
    }
    // Volumes: the two reference nodes are backed up by Longhorn.
    for (set, size, backed_up) in [
        ("bitcoind-ctl", "1700Gi", true),
        ("bitcoind-ref", "1700Gi", true),
        ("btcd-test", "4000Gi", false),
        ("bcoin-test", "1700Gi", false),
        ("bitcoind-ha", "1700Gi", false),
    ] {
        let s = ex.set(set);
        assert_eq!(s.storage(), size, "{set}");
        let class = s.chain_claim()["spec"]["storageClassName"]
            .as_str()
            .unwrap_or("");
        let sc = find(&ex.docs, "StorageClass", class);
        assert_eq!(sc["provisioner"], "driver.longhorn.io", "{set}");
        let backups = recurring_jobs(&ex, &s, "backup");
        assert_eq!(!backups.is_empty(), backed_up, "{set}: backups {backups:?}");
    }
    // Settings.
    let ctl = ex.set("bitcoind-ctl");
    for (k, v) in [("dbcache", "30000"), ("maxconnections", "40")] {
        assert!(ctl.has_setting(k, v), "ctl {k}={v}:\n{}", ctl.settings());
    }
    for a in [
        "-disablewallet",
        "-maxuploadtarget=5000",
        "-assumevalid=0",
        "-reindex",
    ] {
        assert!(ctl.has_arg(a) && ex.set("bitcoind-ref").has_arg(a), "{a}");
    }
    let ha = ex.set("bitcoind-ha");
    for (k, v) in [
        ("txindex", "1"),
        ("dbcache", "4000"),
        ("maxconnections", "40"),
        ("zmqpubrawblock", "tcp://0.0.0.0:28333"),
        ("zmqpubrawtx", "tcp://0.0.0.0:28332"),
        ("rpcallowip", "10.0.0.0/8"),
    ] {
        assert!(ha.has_setting(k, v), "ha {k}={v}:\n{}", ha.settings());
    }
    for a in ["-disablewallet", "-maxuploadtarget=5000", "-rest=1"] {
        assert!(ha.has_arg(a), "{a}");
    }
    let bcoin = ex.set("bcoin-test");
    assert!(
        bcoin.has_setting("cache-size", "4096"),
        "{}",
        bcoin.settings()
    );
    let btcd = ex.set("btcd-test");
    assert_eq!(
        btcd.container()["resources"],
        json!({"requests": {"cpu": "1000m", "memory": "1000Mi"}, "limits": {"cpu": "1000m", "memory": "1000Mi"}})
    );
    assert_no_credentials_in_args_or_env(&ex);
    let lan = json!({"ipBlock": {"cidr": "10.0.0.0/8"}});
    assert!(ex.admits(&ha, ha.port("rpc"), &lan), "RPC from 10.0.0.0/8");
    // Ready once synced: the probes given, asking the node over RPC with
    // the config file the chart mounts.
    for (set, conf) in [
        ("bitcoind-ctl", "/run/hab/bitcoin.conf"),
        ("bitcoind-ref", "/run/hab/bitcoin.conf"),
        ("bitcoind-ha", "/run/hab/bitcoin.conf"),
        ("btcd-test", "/run/hab/btcd.conf"),
        ("bcoin-test", "/run/hab/bcoin.conf"),
    ] {
        let s = ex.set(set);
        let want = &ex.set_values(set)["probes"]["readiness"];
        assert_eq!(&s.container()["readinessProbe"], want, "{set}");
        let script = want["exec"]["command"][2].as_str().unwrap();
        assert!(script.contains(conf), "{set}: {script}");
        assert!(s.mounted_file(conf), "{set}: the chart mounts no {conf}");
    }
    assert!(ex.set("btcd-test").mounted_file("/run/hab/rpc.cert"));
}

#[test]
fn the_migration_table_covers_every_original_value() {
    let list =
        std::fs::read_to_string(repo_root().join("tests/fixtures/original-chart-values.txt"))
            .unwrap();
    let values: Vec<&str> = list
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    assert!(values.len() >= 50, "{values:?}");
    let unique: BTreeSet<&&str> = values.iter().collect();
    assert_eq!(unique.len(), values.len(), "a value listed twice");
    let readme = std::fs::read_to_string(chart_dir().join("README.md")).unwrap();
    let section = readme
        .split("## Moving from the original chart")
        .nth(1)
        .expect("charts/hab/README.md has no \"## Moving from the original chart\" section");
    let section = section.split("\n## ").next().unwrap();
    let first_cells: BTreeSet<String> = section
        .lines()
        .filter(|l| l.starts_with('|'))
        .filter_map(|l| l.split('|').nth(1).map(|c| c.trim().to_string()))
        .collect();
    let missing: Vec<&&str> = values
        .iter()
        .filter(|v| !first_cells.contains(&format!("`{v}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "the README's migration table lacks {missing:?}"
    );
}
