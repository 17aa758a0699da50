//! The Helm chart, checked by tools we did not write: `helm lint --strict`,
//! `helm template` of the defaults and every variant in charts/hab/ci,
//! `kubernetes-validate --strict` against a current Kubernetes, golden files
//! of what renders, the values schema, and `habd check` of the configuration
//! the chart gives habd.

mod common;

use std::process::Command;

use common::*;
use serde_json::Value;

/// Secret values are generated at install (random, or bcrypt with a random
/// salt): golden files show where they go, not what they are.
fn mask_secrets(rendered: &str) -> String {
    rendered
        .split("\n---\n")
        .map(|doc| {
            if !doc.contains("\nkind: Secret\n") {
                return doc.to_string();
            }
            let mut in_data = false;
            doc.lines()
                .map(|l| {
                    if l == "data:" {
                        in_data = true;
                        return l.to_string();
                    }
                    if in_data && l.starts_with("  ") {
                        let key = l.trim_start().split(':').next().unwrap_or("");
                        return format!("  {key}: <generated at install>");
                    }
                    in_data = false;
                    l.to_string()
                })
                .collect::<Vec<_>>()
                .join("\n")
        })
        .collect::<Vec<_>>()
        .join("\n---\n")
}

fn golden(name: &str, rendered: &str) {
    let file = repo_root().join(format!("tests/golden/chart/{name}.yaml"));
    let masked = mask_secrets(rendered);
    if std::env::var_os("HAB_UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, &masked).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&file).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (write it with HAB_UPDATE_GOLDEN=1 cargo test --test chart_render)",
            file.display()
        )
    });
    if want != masked {
        let diff: Vec<String> = want
            .lines()
            .zip(masked.lines())
            .enumerate()
            .filter(|(_, (a, b))| a != b)
            .take(10)
            .map(|(i, (a, b))| format!("line {}:\n  golden:   {a}\n  rendered: {b}", i + 1))
            .collect();
        panic!(
            "{name} renders differently from {} ({} vs {} lines):\n{}\n(if the change is meant, HAB_UPDATE_GOLDEN=1 cargo test --test chart_render, and review the diff)",
            file.display(),
            want.lines().count(),
            masked.lines().count(),
            diff.join("\n")
        );
    }
}

#[test]
fn the_chart_lints_strict_clean_with_every_variant() {
    let mut runs = vec![None];
    runs.extend(variants().into_iter().map(Some));
    for v in runs {
        let mut cmd = helm();
        cmd.args(["lint", "--strict"]).arg(chart_dir());
        if let Some(v) = &v {
            cmd.arg("-f").arg(chart_dir().join("ci").join(v));
        }
        let out = cmd.output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && text.contains("0 chart(s) failed"),
            "helm lint --strict {v:?}:\n{text}"
        );
        assert!(!text.contains("[WARNING]"), "{v:?}:\n{text}");
    }
}

#[test]
fn every_variant_renders_as_its_golden_file_and_validates_strictly() {
    assert!(variants().len() >= 5, "{:?}", variants());
    let mut runs = vec![("defaults".to_string(), None)];
    runs.extend(
        variants()
            .into_iter()
            .map(|v| (v.trim_end_matches("-values.yaml").to_string(), Some(v))),
    );
    for (name, values) in runs {
        let rendered = render(values.as_deref(), &[]).unwrap_or_else(|e| panic!("{name}: {e}"));
        golden(&name, &rendered);
        kubernetes_validate(&name, &rendered);
    }
}

#[test]
fn the_schema_rejects_bad_values_with_helms_error() {
    for (set, says) in [
        ("network=moonnet", "network must be one of the following"),
        (
            r#"json:nodeSets=[{"name":"a","implementation":"bitcoind","replicas":-1}]"#,
            "nodeSets.0.replicas: Must be greater than or equal to 0",
        ),
        (
            r#"json:nodeSets=[{"name":"a","implementation":"bitcoind","replica":2}]"#,
            "nodeSets.0: Additional property replica is not allowed",
        ),
        (
            r#"json:nodeSets=[{"name":"Core_1","implementation":"bitcoind"}]"#,
            "nodeSets.0.name: Does not match pattern",
        ),
        // A network the implementation does not run.
        (
            r#"json:nodeSets=[{"name":"b","implementation":"bcoin","network":"signet"}]"#,
            r#"nodeSets.0.network must be one of the following: "mainnet", "testnet3", "regtest", "simnet""#,
        ),
        (
            r#"json:nodeSets=[{"name":"b","implementation":"bitcoind","network":"simnet"}]"#,
            r#"nodeSets.0.network must be one of the following: "mainnet", "testnet3", "testnet4", "signet", "regtest""#,
        ),
        // A prune target below the implementation's minimum (bitcoind 550
        // MiB, btcd 1536 MiB).
        (
            r#"json:nodeSets=[{"name":"b","implementation":"bitcoind","config":{"prune":549}}]"#,
            "nodeSets.0.config.prune: Must validate at least one schema",
        ),
        (
            r#"json:nodeSets=[{"name":"b","implementation":"btcd","config":{"prune":1000}}]"#,
            "nodeSets.0.config.prune: Must validate at least one schema",
        ),
        (
            "registry.pullHost=http://registry/",
            "registry.pullHost: Does not match pattern",
        ),
        (
            "habd.gates.soak=soon",
            "habd.gates.soak: Does not match pattern",
        ),
        ("nodes.architectures={s390x}", "nodes.architectures.0"),
        // No value turns the builders' TLS off.
        (
            "builders.tls.enabled=false",
            "Additional property enabled is not allowed",
        ),
        (
            "habd.image.tag=latest",
            "Additional property tag is not allowed",
        ),
        (
            "nodes.logLevel=loud",
            "nodes.logLevel must be one of the following",
        ),
    ] {
        let err = render(None, &[set]).expect_err(set);
        assert!(err.contains(says), "--set {set}: {err}");
    }
    // The minimums are the implementations' own: at them, a set renders.
    for ok in [
        r#"json:nodeSets=[{"name":"b","implementation":"bitcoind","config":{"prune":550}}]"#,
        r#"json:nodeSets=[{"name":"b","implementation":"btcd","config":{"prune":1536}}]"#,
    ] {
        render(None, &[ok]).unwrap_or_else(|e| panic!("{ok}: {e}"));
    }
    // What the schema cannot say, the templates do: two sets of one name
    // (JSON Schema has no uniqueness of a member), the release network a
    // set inherits, peers of two networks in one group.
    let err = render(
        None,
        &[r#"json:nodeSets=[{"name":"main","implementation":"bitcoind"},{"name":"main","implementation":"btcd","network":"testnet3"}]"#],
    )
    .unwrap_err();
    assert!(
        err.contains("nodeSets: two sets are named \"main\" (items 0 and 1): each set needs a name of its own"),
        "{err}"
    );
    let err = render(None, &["network=signet"]).unwrap_err();
    assert!(
        err.contains("node set \"bcoin\": bcoin does not run network \"signet\": pick another network for it (bcoin runs mainnet, testnet3, regtest, simnet) or disable the set"),
        "{err}"
    );
    let err = render(
        None,
        &[r#"json:nodeSets=[{"name":"a","implementation":"bitcoind","group":"g"},{"name":"b","implementation":"btcd","network":"testnet3","group":"g"}]"#],
    )
    .unwrap_err();
    assert!(
        err.contains("node set \"b\": peer group \"g\" already holds mainnet nodes, and this set runs testnet3"),
        "{err}"
    );
    for (set, says) in [
        (
            r#"json:nodeSets=[{"name":"a","implementation":"btcd","config":{"zmq":{"rawblock":28332}}}]"#,
            "config.zmq is Bitcoin Core's; btcd publishes no ZMQ",
        ),
        (
            r#"json:nodeSets=[{"name":"a","implementation":"bitcoind","config":{"prune":600,"txindex":true}}]"#,
            "config.prune and config.txindex exclude each other",
        ),
        (
            r#"json:nodeSets=[{"name":"a","implementation":"bitcoind","storage":{"backups":true}}]"#,
            "storage.snapshots and storage.backups are Longhorn RecurringJobs",
        ),
        (
            r#"json:nodeSets=[{"name":"a","implementation":"bitcoind","ingress":{"enabled":true,"hosts":[{"host":"h","paths":[{"path":"/","port":"zmq-rawblock"}]}]}}]"#,
            "goes to port \"zmq-rawblock\", which is not HTTP",
        ),
    ] {
        let err = render(None, &[set]).expect_err(set);
        assert!(err.contains(says), "{set}: {err}");
    }
    let err = render(
        None,
        &[
            "nodes.failoverHosts={spare}",
            r#"json:nodeSets=[{"name":"a","implementation":"bitcoind","hosts":["h1","spare"]}]"#,
        ],
    )
    .unwrap_err();
    assert!(
        err.contains("host \"spare\" is one of nodes.failoverHosts"),
        "{err}"
    );
    let err = render(None, &["registry.enabled=false"]).unwrap_err();
    assert!(err.contains("registry.url is required"), "{err}");
}

/// The files the chart gives habd (ConfigMaps and Secrets), laid out as
/// the pod sees them under `root`, with /run/secrets and /etc/hab moved there.
fn materialize(docs: &[Value], root: &std::path::Path) -> std::path::PathBuf {
    let at = |p: &str| root.join(p.trim_start_matches('/'));
    let relocate = |text: &str| {
        text.replace(
            "/run/secrets/",
            &format!("{}/", at("run/secrets").display()),
        )
    };
    let config = find(docs, "ConfigMap", "hab-habd-config");
    let etc = at("etc/hab");
    for (k, v) in config["data"].as_object().unwrap() {
        let path = match k.strip_prefix("pipeline-") {
            Some(p) => format!("pipelines/{p}"),
            None => k.clone(),
        };
        write(&etc, &path, relocate(v.as_str().unwrap()).as_bytes());
    }
    use base64::Engine;
    let keys = find(docs, "ConfigMap", "hab-habd-keys");
    for (k, v) in keys["binaryData"].as_object().unwrap() {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap())
            .unwrap();
        write(&etc, &format!("keys/{}", k.replace("--", "/")), &bytes);
    }
    for (secret, dir) in [
        ("hab-habd", "run/secrets/hab"),
        ("hab-registry-auth", "run/secrets/hab-registry"),
        ("hab-rpc", "run/secrets/hab-rpc"),
        ("hab-builder-tls", "run/secrets/hab-builder-tls"),
        ("hab-btcd-rpc-tls", "run/secrets/hab-btcd-rpc-tls"),
    ] {
        let Some(s) = docs
            .iter()
            .find(|d| d["kind"] == "Secret" && d["metadata"]["name"] == secret)
        else {
            continue;
        };
        for k in s["data"].as_object().unwrap().keys() {
            write(&at(dir), k, secret_value(s, k).as_bytes());
        }
    }
    etc.join("hab.toml")
}

#[test]
fn habd_accepts_the_configuration_the_chart_gives_it() {
    for values in [
        None,
        Some("mainnet-all-values.yaml"),
        Some("regtest-single-values.yaml"),
        Some("sets-values.yaml"),
    ] {
        let docs = documents(&render(values, &[]).unwrap());
        let dir = tempfile::tempdir().unwrap();
        let config = materialize(&docs, dir.path());
        let out = Command::new(env!("CARGO_BIN_EXE_habd"))
            .args(["check", "--config"])
            .arg(&config)
            .env_remove("HAB_PIPELINES_DIR")
            .env_remove("HAB_STATE_DIR")
            .env_remove("HAB_RECIPES_DIR")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{values:?}: habd check refused the chart's configuration:\n{}\n{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&config).unwrap()
        );
        let want = match values {
            Some("regtest-single-values.yaml") => "1 pipeline: bitcoind",
            // Four sets of two implementations: a pipeline each.
            Some("sets-values.yaml") => "2 pipelines: bitcoind, btcd",
            _ => "3 pipelines: bcoin, bitcoind, btcd",
        };
        assert!(stdout.contains(want), "{values:?}: {stdout}");
    }
}

#[test]
fn the_node_statefulsets_are_what_habd_rolls() {
    let docs = documents(&render(Some("mainnet-all-values.yaml"), &[]).unwrap());
    let dir = tempfile::tempdir().unwrap();
    let config = hab::config::Config::load(
        Some(&materialize(&docs, dir.path())),
        &hab::config::Overrides::default(),
    )
    .unwrap();
    assert_eq!(config.fleets.len(), 3);
    let pdb = find(&docs, "PodDisruptionBudget", "hab-nodes");
    assert_eq!(pdb["spec"]["maxUnavailable"], 1);
    for fleet in &config.fleets {
        // The fleet is the StatefulSet of the same name, in the target's namespace.
        let sts = find(&docs, "StatefulSet", &fleet.name);
        let spec = &sts["spec"];
        assert_eq!(spec["replicas"].as_u64(), Some(u64::from(fleet.nodes)));
        assert_eq!(spec["podManagementPolicy"], "OrderedReady");
        assert_eq!(spec["updateStrategy"]["type"], "RollingUpdate");
        assert_eq!(
            spec["updateStrategy"]["rollingUpdate"]["partition"], spec["replicas"],
            "rendered frozen: habd owns the partition"
        );
        let node = &spec["template"]["spec"]["containers"][0];
        assert_eq!(node["name"], hab::rollout::kube::NODE_CONTAINER);
        let rpc = node["ports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "rpc")
            .unwrap();
        assert_eq!(
            rpc["containerPort"].as_u64(),
            Some(u64::from(fleet.rpc_port))
        );
        // The node reads its credentials from the config file mounted
        // under /run/hab: the password habd's gates read.
        let (conf, text) = mounted_config(&docs, sts);
        let text = text.unwrap();
        let password = std::fs::read_to_string(fleet.rpc_password_file.as_ref().unwrap()).unwrap();
        let want = match fleet.pipeline.as_str() {
            "bitcoind" => format!("rpcuser=hab\nrpcpassword={password}\n"),
            "btcd" => format!("[Application Options]\nrpcuser=hab\nrpcpass={password}\n"),
            _ => format!("api-key: {password}\n"),
        };
        assert!(
            text.contains(&want),
            "{}: {conf} holds the password habd's gates use:\n{text}",
            fleet.name
        );
        // Spread over hosts, and covered by the one PDB.
        let labels = &spec["template"]["metadata"]["labels"];
        let anti = &spec["template"]["spec"]["affinity"]["podAntiAffinity"]
            ["requiredDuringSchedulingIgnoredDuringExecution"][0];
        assert_eq!(anti["topologyKey"], "kubernetes.io/hostname");
        for sel in [
            &anti["labelSelector"]["matchLabels"],
            &pdb["spec"]["selector"]["matchLabels"],
        ] {
            for (k, v) in sel.as_object().unwrap() {
                assert_eq!(&labels[k], v, "{} selects {}", fleet.name, k);
            }
        }
        // The set's own Longhorn class: one replica, kept on release.
        let class = &spec["volumeClaimTemplates"][0]["spec"]["storageClassName"];
        assert_eq!(class.as_str(), Some(fleet.name.as_str()));
        let sc = find(&docs, "StorageClass", &fleet.name);
        assert_eq!(sc["provisioner"], "driver.longhorn.io");
        assert_eq!(sc["parameters"]["numberOfReplicas"], "1");
        assert_eq!(sc["reclaimPolicy"], "Retain");
        // Backups and snapshots where the set asks for them.
        let jobs = sc["parameters"]["recurringJobSelector"].as_str();
        if fleet.name == "hab-bitcoind" {
            assert_eq!(
                jobs,
                Some(
                    r#"[{"isGroup":false,"name":"hab-snapshot"},{"isGroup":false,"name":"hab-backup"}]"#
                )
            );
        } else {
            assert_eq!(jobs, None, "{}", fleet.name);
        }
    }
    for task in ["snapshot", "backup"] {
        let job = find(&docs, "RecurringJob", &format!("hab-{task}"));
        assert_eq!(job["metadata"]["namespace"], "longhorn-system");
        assert_eq!(job["spec"]["task"], task);
    }
    // One Service across every set, by the port's name.
    let all = find(&docs, "Service", "hab-nodes");
    assert_eq!(all["spec"]["ports"][0]["targetPort"], "rpc");
    assert!(all["spec"]["selector"].get("hab/implementation").is_none());
}

/// The config file a node StatefulSet mounts under /run/hab (its name and
/// text), from the Secret its `credentials` volume projects (no text when
/// that Secret is the operator's, not rendered).
fn mounted_config(docs: &[Value], sts: &Value) -> (String, Option<String>) {
    let spec = &sts["spec"]["template"]["spec"];
    let node = &spec["containers"][0];
    let mount = node["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["mountPath"] == "/run/hab")
        .unwrap_or_else(|| panic!("no /run/hab mount: {node}"));
    assert_eq!(mount["readOnly"], true);
    let volume = spec["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == mount["name"])
        .unwrap();
    // One Secret (a secret volume), or btcd's two (a projected one).
    let (mode, sources) = match volume.get("projected") {
        Some(p) => (
            &p["defaultMode"],
            p["sources"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| (s["secret"]["name"].clone(), &s["secret"]["items"]))
                .collect::<Vec<_>>(),
        ),
        None => (
            &volume["secret"]["defaultMode"],
            vec![(
                volume["secret"]["secretName"].clone(),
                &volume["secret"]["items"],
            )],
        ),
    };
    assert!(is_0400(mode), "{volume}");
    for (secret, items) in sources {
        for item in items.as_array().unwrap() {
            // The set's file (`<set>.conf` in the Secret) under the
            // implementation's own name.
            let key = item["key"].as_str().unwrap();
            let path = item["path"].as_str().unwrap();
            if path.ends_with(".conf") {
                let s = docs
                    .iter()
                    .find(|d| d["kind"] == "Secret" && d["metadata"]["name"] == secret);
                return (path.to_string(), s.map(|s| secret_value(s, key)));
            }
        }
    }
    panic!("no config file mounted: {volume}")
}

/// `defaultMode: 0400` as a YAML 1.1 reader (Kubernetes') takes it (256),
/// or as this YAML 1.2 reader keeps it (the string "0400").
fn is_0400(mode: &Value) -> bool {
    mode.as_u64() == Some(0o400) || mode.as_str() == Some("0400")
}

/// The defaults and every variant, rendered: (name, documents).
fn every_render() -> Vec<(String, Vec<Value>)> {
    let mut out = vec![(
        "defaults".to_string(),
        documents(&render(None, &[]).unwrap()),
    )];
    for v in variants() {
        out.push((v.clone(), documents(&render(Some(&v), &[]).unwrap())));
    }
    out
}

/// Every pod spec of a rendered chart: (object name, pod spec).
fn pod_specs(docs: &[Value]) -> Vec<(String, &Value)> {
    docs.iter()
        .filter_map(|d| {
            let spec = match d["kind"].as_str()? {
                "Deployment" | "StatefulSet" | "DaemonSet" | "Job" => {
                    &d["spec"]["template"]["spec"]
                }
                "CronJob" => &d["spec"]["jobTemplate"]["spec"]["template"]["spec"],
                "Pod" => &d["spec"],
                _ => return None,
            };
            Some((d["metadata"]["name"].as_str()?.to_string(), spec))
        })
        .collect()
}

/// Every container and init container of a pod spec.
fn containers(spec: &Value) -> Vec<&Value> {
    ["containers", "initContainers"]
        .iter()
        .filter_map(|k| spec[k].as_array())
        .flatten()
        .collect()
}

#[test]
fn no_container_is_given_a_password_or_api_key_in_its_arguments_or_environment() {
    for (name, docs) in every_render() {
        // Every secret value the chart generated (each line of each key).
        let mut secrets = Vec::new();
        for s in docs.iter().filter(|d| d["kind"] == "Secret") {
            for key in s["data"].as_object().unwrap().keys() {
                for line in secret_value(s, key).lines() {
                    let value = line.rsplit(['=', ':', ' ']).next().unwrap_or("");
                    if value.len() >= 16 {
                        secrets.push(value.to_string());
                    }
                }
            }
        }
        for (object, spec) in pod_specs(&docs) {
            for c in containers(spec) {
                let mut said = Vec::new();
                for k in ["command", "args"] {
                    said.extend(c[k].as_array().into_iter().flatten().cloned());
                }
                for probe in ["readinessProbe", "livenessProbe", "startupProbe"] {
                    said.extend(
                        c[probe]["exec"]["command"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .cloned(),
                    );
                }
                for e in c["env"].as_array().into_iter().flatten() {
                    // Only an operator's own variable (a set's `env`) may
                    // come from a Secret, and only from one of theirs: never
                    // one hab renders or mounts.
                    if let Some(from) = e["valueFrom"]["secretKeyRef"]["name"].as_str() {
                        let rendered = docs
                            .iter()
                            .any(|d| d["kind"] == "Secret" && d["metadata"]["name"] == from);
                        let mounted = pod_specs(&docs).iter().any(|(_, spec)| {
                            spec["volumes"].as_array().into_iter().flatten().any(|v| {
                                v["secret"]["secretName"] == from
                                    || v["projected"]["sources"]
                                        .as_array()
                                        .into_iter()
                                        .flatten()
                                        .any(|src| src["secret"]["name"] == from)
                            })
                        });
                        let habs = rendered || mounted;
                        assert!(
                            !habs,
                            "{name}: {object}/{}: one of hab's Secrets in the environment: {e}",
                            c["name"]
                        );
                    }
                    said.push(e["name"].clone());
                    said.push(e["value"].clone());
                }
                assert!(c.get("envFrom").is_none(), "{name}: {object}: envFrom");
                let text = serde_json::to_string(&said).unwrap().to_lowercase();
                for word in ["rpcpassword", "rpcpass", "api-key", "apikey", "password="] {
                    assert!(
                        !text.contains(word),
                        "{name}: {object}/{} is given {word} in its arguments or environment: {text}",
                        c["name"]
                    );
                }
                for secret in &secrets {
                    assert!(
                        !text.contains(&secret.to_lowercase()),
                        "{name}: {object}/{}: a generated secret in its arguments or environment",
                        c["name"]
                    );
                }
            }
        }
        // The node credentials are files, read-only, 0400.
        for sts in docs.iter().filter(|d| d["kind"] == "StatefulSet") {
            let (conf, _) = mounted_config(&docs, sts);
            let flag = match conf.as_str() {
                "bitcoin.conf" => "-conf=/run/hab/bitcoin.conf",
                "btcd.conf" => "--configfile=/run/hab/btcd.conf",
                _ => "--config=/run/hab/bcoin.conf",
            };
            let args = &sts["spec"]["template"]["spec"]["containers"][0]["args"];
            assert_eq!(args[0], flag, "{name}: {args}");
            let sc = &sts["spec"]["template"]["spec"]["securityContext"];
            assert_eq!(
                (sc["runAsUser"].as_u64(), sc["fsGroup"].as_u64()),
                (Some(1000), Some(1000))
            );
        }
    }
}

#[test]
fn every_builder_engine_speaks_mutual_tls_only() {
    for (name, docs) in every_render() {
        let yaml = serde_json::to_string(&docs).unwrap();
        assert!(!yaml.contains("2375"), "{name}: an engine port without TLS");
        let builders: Vec<&Value> = docs
            .iter()
            .filter(|d| {
                d["kind"] == "Deployment"
                    && d["metadata"]["labels"]["app.kubernetes.io/component"] == "builder"
            })
            .collect();
        assert!(!builders.is_empty(), "{name}");
        let config = find(&docs, "ConfigMap", "hab-habd-config")["data"]["hab.toml"]
            .as_str()
            .unwrap();
        let config: toml::Table = config.parse().unwrap();
        let secret = if name.starts_with("webhooks-tls") {
            "hab-operator-builder-tls"
        } else {
            "hab-builder-tls"
        };
        for b in &builders {
            let spec = &b["spec"]["template"]["spec"];
            let dockerd = &spec["containers"][0];
            let args: Vec<&str> = dockerd["args"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a.as_str().unwrap())
                .collect();
            assert_eq!(
                args[..6],
                [
                    "dockerd",
                    "--host=tcp://0.0.0.0:2376",
                    "--tlsverify",
                    "--tlscacert=/certs/ca.pem",
                    "--tlscert=/certs/cert.pem",
                    "--tlskey=/certs/key.pem",
                ],
                "{name}: dockerd first (docker:dind adds no listener of its own), one listener, client certificates required"
            );
            assert_eq!(args.iter().filter(|a| a.starts_with("--host")).count(), 1);
            let tls = spec["volumes"]
                .as_array()
                .unwrap()
                .iter()
                .find(|v| v["name"] == "tls")
                .unwrap();
            assert_eq!(tls["secret"]["secretName"], secret);
            assert!(is_0400(&tls["secret"]["defaultMode"]), "{tls}");
            let service = find(&docs, "Service", b["metadata"]["name"].as_str().unwrap());
            assert_eq!(service["spec"]["ports"][0]["port"], 2376);
            let arch = b["metadata"]["labels"]["hab/arch"].as_str().unwrap();
            let builder = config["builder"]
                .as_array()
                .unwrap()
                .iter()
                .find(|x| x["name"].as_str() == Some(arch))
                .unwrap();
            assert_eq!(
                builder["endpoint"].as_str(),
                Some(format!("tcp://hab-builder-{arch}:2376").as_str())
            );
            for (key, file) in [
                ("tls_ca", "ca.pem"),
                ("tls_cert", "client-cert.pem"),
                ("tls_key", "client-key.pem"),
            ] {
                assert_eq!(
                    builder[key].as_str(),
                    Some(format!("/run/secrets/hab-builder-tls/{file}").as_str()),
                    "{name}: {key}"
                );
            }
        }
        let habd = find(&docs, "Deployment", "hab-habd");
        let v = habd["spec"]["template"]["spec"]["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == "builder-tls")
            .unwrap();
        assert_eq!(v["secret"]["secretName"], secret, "{name}");
        let items: Vec<&str> = v["secret"]["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["path"].as_str().unwrap())
            .collect();
        assert_eq!(
            items,
            ["ca.pem", "client-cert.pem", "client-key.pem"],
            "{name}: habd gets no server key"
        );
    }
    // The chart's own certificates: the server's names are the builder
    // Services', habd's certificate is a client's, both signed by the CA.
    let docs = documents(&render(None, &[]).unwrap());
    let dir = tempfile::tempdir().unwrap();
    let s = find(&docs, "Secret", "hab-builder-tls");
    for k in ["ca.pem", "cert.pem", "client-cert.pem"] {
        write(dir.path(), k, secret_value(s, k).as_bytes());
    }
    let sans = openssl(
        &["x509", "-noout", "-ext", "subjectAltName", "-in"],
        &dir.path().join("cert.pem"),
    );
    for n in [
        "DNS:hab-builder-amd64,",
        "DNS:hab-builder-arm64.bitcoin.svc,",
        "DNS:hab-builder-amd64.bitcoin.svc.cluster.local",
    ] {
        assert!(sans.contains(n), "{n} in {sans}");
    }
    let usage = openssl(
        &["x509", "-noout", "-ext", "extendedKeyUsage", "-in"],
        &dir.path().join("client-cert.pem"),
    );
    assert!(usage.contains("TLS Web Client Authentication"), "{usage}");
    for cert in ["cert.pem", "client-cert.pem"] {
        let ca = dir.path().join("ca.pem");
        let ok = openssl(
            &["verify", "-CAfile", ca.to_str().unwrap()],
            &dir.path().join(cert),
        );
        assert!(ok.contains(": OK"), "{ok}");
    }
}

/// `openssl <args> <file>`'s output.
fn openssl(args: &[&str], file: &std::path::Path) -> String {
    let out = Command::new("openssl")
        .args(args)
        .arg(file)
        .output()
        .expect("openssl is missing: run `bash scripts/setup.sh`");
    String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr)
}

#[test]
fn btcd_runs_testnet4_on_its_own_ports() {
    let docs = documents(
        &render(
            None,
            &[
                "network=testnet4",
                r#"json:nodeSets=[{"name":"bitcoind","implementation":"bitcoind"},{"name":"btcd","implementation":"btcd"}]"#,
            ],
        )
        .unwrap(),
    );
    let sts = find(&docs, "StatefulSet", "hab-btcd");
    let node = &sts["spec"]["template"]["spec"]["containers"][0];
    let args: Vec<&str> = node["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    for a in [
        "--testnet4",
        "--rpclisten=0.0.0.0:48334",
        "--listen=0.0.0.0:48333",
    ] {
        assert!(args.contains(&a), "{a} in {args:?}");
    }
    let ports: Vec<(&str, u64)> = node["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap(),
                p["containerPort"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(ports, [("rpc", 48334), ("p2p", 48333)]);
    let config: toml::Table = find(&docs, "ConfigMap", "hab-habd-config")["data"]["hab.toml"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let fleet = config["fleet"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"].as_str() == Some("hab-btcd"))
        .unwrap();
    assert_eq!(fleet["rpc_port"].as_integer(), Some(48334));
    assert_eq!(fleet["network"].as_str(), Some("testnet4"));
    // bitcoind's testnet4 beside it.
    let bitcoind = find(&docs, "StatefulSet", "hab-bitcoind");
    assert_eq!(
        bitcoind["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"],
        48332
    );
}

#[test]
fn btcd_serves_rpc_over_tls_with_a_certificate_habd_pins() {
    for (name, docs) in every_render() {
        let Some(sts) = docs
            .iter()
            .find(|d| d["kind"] == "StatefulSet" && d["metadata"]["name"] == "hab-btcd")
        else {
            continue;
        };
        let spec = &sts["spec"]["template"]["spec"];
        let args = &spec["containers"][0]["args"];
        for a in ["--rpccert=/run/hab/rpc.cert", "--rpckey=/run/hab/rpc.key"] {
            assert!(
                args.as_array().unwrap().contains(&Value::from(a)),
                "{name}: {a} in {args}"
            );
        }
        let credentials = spec["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == "credentials")
            .unwrap();
        let tls = credentials["projected"]["sources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["secret"]["name"] == "hab-btcd-rpc-tls")
            .unwrap_or_else(|| panic!("{name}: the RPC certificate is not mounted: {credentials}"));
        assert_eq!(
            tls["secret"]["items"],
            serde_json::json!([{"key": "tls.crt", "path": "rpc.cert"}, {"key": "tls.key", "path": "rpc.key"}])
        );
        // habd pins the CA the certificate is signed by.
        let config: toml::Table = find(&docs, "ConfigMap", "hab-habd-config")["data"]["hab.toml"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        let fleet = config["fleet"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"].as_str() == Some("hab-btcd"))
            .unwrap();
        assert_eq!(
            fleet["rpc_tls_ca"].as_str(),
            Some("/run/secrets/hab-btcd-rpc-tls/ca.crt"),
            "{name}"
        );
        for f in config["fleet"].as_array().unwrap() {
            assert_eq!(
                f.get("rpc_tls_ca").is_some(),
                f["name"].as_str() == Some("hab-btcd"),
                "{name}: {f}"
            );
        }
        let habd = &find(&docs, "Deployment", "hab-habd")["spec"]["template"]["spec"];
        let mount = habd["containers"][0]["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["mountPath"] == "/run/secrets/hab-btcd-rpc-tls")
            .unwrap();
        let volume = habd["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == mount["name"])
            .unwrap();
        assert_eq!(volume["secret"]["secretName"], "hab-btcd-rpc-tls");
        assert_eq!(
            volume["secret"]["items"],
            serde_json::json!([{"key": "ca.crt", "path": "ca.crt"}]),
            "{name}: habd gets the CA only"
        );
    }
    // The certificate: every pod's name under the headless Service (what
    // habd dials), loopback (the probe), signed by the CA.
    let docs = documents(&render(None, &[]).unwrap());
    let s = find(&docs, "Secret", "hab-btcd-rpc-tls");
    assert_eq!(s["type"], "kubernetes.io/tls");
    let dir = tempfile::tempdir().unwrap();
    let ca = write(dir.path(), "ca.crt", secret_value(s, "ca.crt").as_bytes());
    let cert = write(dir.path(), "tls.crt", secret_value(s, "tls.crt").as_bytes());
    let sans = openssl(&["x509", "-noout", "-ext", "subjectAltName", "-in"], &cert);
    for n in [
        "DNS:*.hab-btcd-headless.bitcoin.svc,",
        "DNS:*.hab-btcd-headless.bitcoin.svc.cluster.local,",
        "DNS:localhost,",
        "IP Address:127.0.0.1",
    ] {
        assert!(sans.contains(n), "{n} in {sans}");
    }
    let ok = openssl(&["verify", "-CAfile", ca.to_str().unwrap()], &cert);
    assert!(ok.contains(": OK"), "{ok}");
    let sts = find(&docs, "StatefulSet", "hab-btcd");
    assert_eq!(sts["spec"]["serviceName"], "hab-btcd-headless");
}

#[test]
fn network_policies_guard_nodes_habd_registry_and_builders() {
    for (name, docs) in every_render() {
        let policy = |n: &str| {
            docs.iter()
                .find(|d| d["kind"] == "NetworkPolicy" && d["metadata"]["name"] == n)
        };
        let selects = |p: &Value, component: &str| {
            p["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == component
                && p["spec"]["policyTypes"] == serde_json::json!(["Ingress"])
        };
        let habd_peer = serde_json::json!({"podSelector": {"matchLabels": {
            "app.kubernetes.io/name": "hab", "app.kubernetes.io/instance": "hab", "app.kubernetes.io/component": "habd"}}});
        // Nodes: P2P from anywhere, RPC from habd (and the listed clients) only.
        let nodes = policy("hab-nodes").unwrap_or_else(|| panic!("{name}: no nodes policy"));
        assert!(selects(nodes, "node"), "{name}");
        let rules = nodes["spec"]["ingress"].as_array().unwrap();
        assert_eq!(
            rules[0],
            serde_json::json!({"ports": [{"port": "p2p", "protocol": "TCP"}]})
        );
        // RPC (first; then a set's ZMQ and extra ports), and with
        // exporters their port from any pod.
        let rpc = rules
            .iter()
            .find(|r| r["ports"][0]["port"] == "rpc")
            .unwrap_or_else(|| panic!("{name}: no RPC rule: {rules:?}"));
        let metrics = nodes["spec"].to_string().contains("\"port\":\"metrics\"");
        if name == "sets-values.yaml" {
            assert_eq!(
                rpc["ports"],
                serde_json::json!([{"port": "rpc", "protocol": "TCP"}, {"port": 28332, "protocol": "TCP"}, {"port": 28333, "protocol": "TCP"}])
            );
            assert!(metrics);
        } else {
            assert_eq!(
                rpc["ports"],
                serde_json::json!([{"port": "rpc", "protocol": "TCP"}])
            );
            assert!(!metrics, "{name}");
        }
        if name == "mainnet-all-values.yaml" {
            // And from the RPC front door's pods.
            let gateway_peer = serde_json::json!({"podSelector": {"matchLabels": {
                "app.kubernetes.io/name": "hab", "app.kubernetes.io/instance": "hab", "app.kubernetes.io/component": "gateway"}}});
            assert_eq!(
                rpc["from"],
                serde_json::json!([habd_peer, gateway_peer]),
                "{name}"
            );
        } else {
            assert_eq!(rpc["from"], serde_json::json!([habd_peer]), "{name}");
        }
        assert_eq!(rules.len(), if metrics { 3 } else { 2 });
        // habd: its port from where habd.networkPolicy says.
        let habd = policy("hab-habd").unwrap_or_else(|| panic!("{name}: no habd policy"));
        assert!(selects(habd, "habd"));
        assert_eq!(
            habd["spec"]["ingress"][0]["ports"],
            serde_json::json!([{"port": "http", "protocol": "TCP"}])
        );
        assert_eq!(
            habd["spec"]["ingress"][0]["from"][0],
            serde_json::json!({"podSelector": {}})
        );
        // Builders: habd only, on the engine's port.
        let builders =
            policy("hab-builders").unwrap_or_else(|| panic!("{name}: no builders policy"));
        assert!(selects(builders, "builder"));
        assert_eq!(
            builders["spec"]["ingress"],
            serde_json::json!([{"from": [habd_peer], "ports": [{"port": "docker", "protocol": "TCP"}]}])
        );
        // Registry: habd, the builders and the hosts kubelets pull on.
        if let Some(registry) = policy("hab-registry") {
            assert!(selects(registry, "registry"));
            let from = registry["spec"]["ingress"][0]["from"].as_array().unwrap();
            assert_eq!(from[0], habd_peer);
            assert_eq!(
                from[1]["podSelector"]["matchLabels"]["app.kubernetes.io/component"],
                "builder"
            );
            assert_eq!(
                from[2],
                serde_json::json!({"ipBlock": {"cidr": "0.0.0.0/0"}})
            );
        } else {
            assert!(
                name.starts_with("registry-off"),
                "{name}: no registry policy"
            );
        }
    }
    // The values narrow them.
    let docs = documents(
        &render(
            None,
            &[
                "nodes.rpc.allowedClients[0].namespaceSelector.matchLabels.team=gateway",
                "registry.networkPolicy.nodeCIDRs={10.0.0.0/24}",
            ],
        )
        .unwrap(),
    );
    let nodes = find(&docs, "NetworkPolicy", "hab-nodes");
    assert_eq!(
        nodes["spec"]["ingress"][1]["from"][1],
        serde_json::json!({"namespaceSelector": {"matchLabels": {"team": "gateway"}}})
    );
    let registry = find(&docs, "NetworkPolicy", "hab-registry");
    assert_eq!(
        registry["spec"]["ingress"][0]["from"][2],
        serde_json::json!({"ipBlock": {"cidr": "10.0.0.0/24"}})
    );
}

#[test]
fn nodes_log_to_the_console_only_at_the_level_asked_for() {
    for (level, bitcoind, btcd, bcoin) in [
        ("info", "info", "info", "info"),
        ("trace", "trace", "trace", "spam"),
        ("warn", "info", "warn", "warning"),
    ] {
        let set = format!("nodes.logLevel={level}");
        let docs = documents(&render(None, &[&set]).unwrap());
        let args = |impl_: &str| -> Vec<String> {
            find(&docs, "StatefulSet", &format!("hab-{impl_}"))["spec"]["template"]["spec"]
                ["containers"][0]["args"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a.as_str().unwrap().to_string())
                .collect()
        };
        let has = |impl_: &str, want: &[String]| {
            let a = args(impl_);
            for w in want {
                assert!(a.contains(w), "{impl_} {level}: {w} in {a:?}");
            }
        };
        has(
            "bitcoind",
            &[
                "-printtoconsole=1".into(),
                "-nodebuglogfile".into(),
                format!("-loglevel={bitcoind}"),
            ],
        );
        has(
            "btcd",
            &[
                format!("--debuglevel={btcd}"),
                "--logdir=/var/log/btcd".into(),
            ],
        );
        has(
            "bcoin",
            &[
                "--log-console=true".into(),
                "--log-file=false".into(),
                format!("--log-level={bcoin}"),
            ],
        );
    }
    // btcd's own log file lands on a small emptyDir, never the chain volume.
    let docs = documents(&render(None, &[]).unwrap());
    let spec = &find(&docs, "StatefulSet", "hab-btcd")["spec"]["template"]["spec"];
    let logs = spec["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "logs")
        .unwrap();
    assert!(logs["emptyDir"]["sizeLimit"].is_string(), "{logs}");
}

#[test]
fn habd_runs_by_digest_from_the_registry() {
    let docs = documents(&render(None, &[]).unwrap());
    let habd = find(&docs, "Deployment", "hab-habd");
    let c = &habd["spec"]["template"]["spec"]["containers"][0];
    assert!(
        regex::Regex::new(r"^127\.0\.0\.1:30500/hab/habd@sha256:[0-9a-f]{64}$")
            .unwrap()
            .is_match(c["image"].as_str().unwrap()),
        "{}",
        c["image"]
    );
    assert_eq!(c["imagePullPolicy"], "IfNotPresent");
}

#[test]
fn placement_follows_the_architectures_asked_for() {
    let docs = documents(&render(Some("testnet-arm64-values.yaml"), &[]).unwrap());
    let sts = find(&docs, "StatefulSet", "hab-bitcoind");
    let term = &sts["spec"]["template"]["spec"]["affinity"]["nodeAffinity"]
        ["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0]
        ["matchExpressions"][0];
    assert_eq!(term["key"], "kubernetes.io/arch");
    assert_eq!(term["values"], serde_json::json!(["arm64"]));
    assert!(sts["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .unwrap()
        .contains(&Value::from("-testnet")));
    let builder = find(&docs, "Deployment", "hab-builder-arm64");
    assert_eq!(
        builder["spec"]["template"]["spec"]["nodeSelector"]["kubernetes.io/arch"],
        "arm64"
    );
    assert!(docs
        .iter()
        .all(|d| d["metadata"]["name"] != "hab-builder-amd64"));
}

#[test]
fn the_chart_carries_the_pinned_keys_unchanged() {
    for implementation in ["bitcoind", "btcd", "bcoin"] {
        let dir = repo_root().join("keys").join(implementation);
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            let copy = chart_dir()
                .join("files/keys")
                .join(implementation)
                .join(&name);
            assert_eq!(
                std::fs::read(&p).unwrap(),
                std::fs::read(&copy).unwrap_or_default(),
                "{} differs from {}: cp -r keys/* charts/hab/files/keys/",
                copy.display(),
                p.display()
            );
        }
    }
}

#[test]
fn the_chart_readme_documents_every_value() {
    let values: Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(chart_dir().join("values.yaml")).unwrap())
            .unwrap();
    let whole_readme = std::fs::read_to_string(chart_dir().join("README.md")).unwrap();
    // The "Values" section only (the migration table names values too).
    let readme = whole_readme
        .split("\n## Values\n")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("charts/hab/README.md has a \"## Values\" section");
    fn leaves(v: &Value, path: String, out: &mut Vec<String>) {
        // Maps of the operator's own keys, documented as a whole.
        let whole = [
            "resources",
            "nodeSelector",
            "podAnnotations",
            "annotations",
            "labels",
            "secrets",
        ];
        match v.as_object() {
            Some(map) if !map.is_empty() && !whole.iter().any(|w| path.ends_with(w)) => {
                for (k, x) in map {
                    let p = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    leaves(x, p, out);
                }
            }
            _ => out.push(path),
        }
    }
    let mut all = Vec::new();
    leaves(&values, String::new(), &mut all);
    let missing: Vec<&String> = all
        .iter()
        .filter(|p| !readme.contains(&format!("| `{p}` |")))
        .collect();
    assert!(
        missing.is_empty(),
        "charts/hab/README.md's values table lacks {missing:?}"
    );
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(chart_dir().join("values.schema.json")).unwrap(),
    )
    .unwrap();
    for p in &all {
        let mut node = &schema;
        for k in p.split('.') {
            node = &node["properties"][k];
        }
        assert!(!node.is_null(), "values.schema.json does not describe {p}");
    }
    // Every field a node set takes, in the README's node-set table.
    fn fields(v: &Value, path: String, out: &mut Vec<String>) {
        let whole = ["ingress", "longhorn", "zmq", "resources"];
        match v["properties"].as_object() {
            Some(props) if !whole.iter().any(|w| path.ends_with(w)) => {
                for (k, x) in props {
                    let p = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    fields(x, p, out);
                }
            }
            _ => out.push(path),
        }
    }
    let mut set_fields = Vec::new();
    fields(
        &schema["properties"]["nodeSets"]["items"],
        String::new(),
        &mut set_fields,
    );
    assert!(set_fields.len() > 40, "{set_fields:?}");
    let sets_section = whole_readme
        .split("\n## Node sets\n")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("charts/hab/README.md has a \"## Node sets\" section");
    let missing: Vec<&String> = set_fields
        .iter()
        .filter(|p| !sets_section.contains(&format!("| `nodeSets[].{p}` |")))
        .collect();
    assert!(
        missing.is_empty(),
        "charts/hab/README.md's node-set table lacks {missing:?}"
    );
}
