//! The Helm chart, checked by tools we did not write: `helm lint --strict`,
//! `helm template` of the defaults and every variant in charts/hab/ci,
//! `kubernetes-validate --strict` against a current Kubernetes, golden files
//! of what renders, the values schema, and `habd check` of the configuration
//! the chart gives habd.

mod common;

use std::process::Command;

use common::*;
use serde_json::Value;

/// The Kubernetes version manifests are validated against.
const KUBERNETES: &str = "1.37.0";

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

fn kubernetes_validate(name: &str, rendered: &str) {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), &format!("{name}.yaml"), rendered.as_bytes());
    let out = Command::new("kubernetes-validate")
        .args(["--strict", "--no-warn", "-k", KUBERNETES])
        .arg(&file)
        .output()
        .expect("kubernetes-validate is missing: run `bash scripts/setup.sh` (pip install kubernetes-validate)");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && !text.contains("ERROR"),
        "{name}: kubernetes-validate --strict -k {KUBERNETES} refused it:\n{text}"
    );
    let passed = text.matches(" passed ").count();
    let kinds = documents(rendered).len();
    assert_eq!(passed, kinds, "{name}: every manifest validated:\n{text}");
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
            "bitcoind.replicas=-1",
            "bitcoind.replicas: Must be greater than or equal to 0",
        ),
        (
            "bitcoind.replica=2",
            "Additional property replica is not allowed",
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
    ] {
        let err = render(None, &[set]).expect_err(set);
        assert!(err.contains(says), "--set {set}: {err}");
    }
    // What the schema cannot say, the templates do.
    let err = render(None, &["network=signet"]).unwrap_err();
    assert!(
        err.contains("bcoin does not run network \"signet\": disable it (bcoin.enabled=false)"),
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
    ] {
        let s = find(docs, "Secret", secret);
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
        let want = if values == Some("regtest-single-values.yaml") {
            "1 pipeline: bitcoind"
        } else {
            "3 pipelines: bcoin, bitcoind, btcd"
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
        let env = node["env"].as_array().unwrap();
        let pw = env.iter().find(|e| e["name"] == "RPC_PASSWORD").unwrap();
        let secret = pw["valueFrom"]["secretKeyRef"]["name"].as_str().unwrap();
        let s = find(&docs, "Secret", secret);
        assert_eq!(
            secret_value(s, "rpc-password"),
            std::fs::read_to_string(fleet.rpc_password_file.as_ref().unwrap()).unwrap(),
            "habd's gates use the password the nodes run with"
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
        assert_eq!(
            spec["volumeClaimTemplates"][0]["spec"]["storageClassName"],
            "longhorn"
        );
    }
    // One Service across every implementation, by the port's name.
    let all = find(&docs, "Service", "hab-nodes");
    assert_eq!(all["spec"]["ports"][0]["targetPort"], "rpc");
    assert!(all["spec"]["selector"].get("hab/implementation").is_none());
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
    let readme = std::fs::read_to_string(chart_dir().join("README.md")).unwrap();
    fn leaves(v: &Value, path: String, out: &mut Vec<String>) {
        let whole = [
            "resources",
            "nodeSelector",
            "podAnnotations",
            "annotations",
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
}
