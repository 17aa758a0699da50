//! Checks of a rendered chart by tools we did not write, shared by the
//! chart tests: `kubernetes-validate --strict` against a current
//! Kubernetes, and checkov's report (PyPI; both installed by
//! scripts/setup.sh).

use std::process::Command;

use serde_json::Value;

use crate::common::{documents, write};

/// The Kubernetes version manifests are validated against.
pub const KUBERNETES: &str = "1.37.0";

/// The spec fields a custom resource the chart renders may have, from its
/// CRD: Longhorn's RecurringJob (longhorn.io/v1beta2, Longhorn 1.5 to 1.7)
/// and the Prometheus Operator's ServiceMonitor (monitoring.coreos.com/v1).
/// None: a kind Kubernetes itself serves (core, apps, `*.k8s.io`…), which
/// kubernetes-validate has a schema for.
pub fn custom_fields(doc: &Value) -> Option<&'static [&'static str]> {
    let api = doc["apiVersion"].as_str().unwrap_or("");
    match (api, doc["kind"].as_str().unwrap_or("")) {
        ("longhorn.io/v1beta2", "RecurringJob") => Some(&[
            "name",
            "groups",
            "task",
            "cron",
            "retain",
            "concurrency",
            "labels",
            "parameters",
        ]),
        ("monitoring.coreos.com/v1", "ServiceMonitor") => Some(&[
            "endpoints",
            "selector",
            "namespaceSelector",
            "jobLabel",
            "podTargetLabels",
            "targetLabels",
            "sampleLimit",
        ]),
        (api, kind) => {
            let builtin = match api.split_once('/') {
                None => true,
                Some((group, _)) => !group.contains('.') || group.ends_with(".k8s.io"),
            };
            assert!(
                builtin,
                "{api} {kind}: a custom resource the tests know no CRD of"
            );
            None
        }
    }
}

/// `kubernetes-validate --strict` of a rendered chart: every object of a
/// built-in kind must pass. kubernetes-validate has no schema of a custom
/// resource: their spec fields are checked against their CRDs' here.
pub fn kubernetes_validate(name: &str, rendered: &str) {
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
    let docs = documents(rendered);
    let custom: Vec<&Value> = docs.iter().filter(|d| custom_fields(d).is_some()).collect();
    assert_eq!(
        passed,
        docs.len() - custom.len(),
        "{name}: every manifest validated:\n{text}"
    );
    for d in custom {
        let allowed = custom_fields(d).unwrap();
        for key in d["spec"].as_object().unwrap().keys() {
            assert!(
                allowed.contains(&key.as_str()),
                "{name}: {} {} has spec.{key}, which its CRD does not",
                d["kind"],
                d["metadata"]["name"]
            );
        }
    }
}

/// checkov, from PATH or as `python3 -m checkov.main`; a clear failure
/// saying how to get it otherwise.
pub fn checkov() -> Command {
    let works = |mut c: Command| {
        c.arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if works(Command::new("checkov")) {
        return Command::new("checkov");
    }
    let module = || {
        let mut c = Command::new("python3");
        c.args(["-m", "checkov.main"]);
        c
    };
    assert!(
        works(module()),
        "checkov is missing (neither `checkov` on PATH nor `python3 -m checkov.main` runs): \
         run `bash scripts/setup.sh` (it installs checkov from PyPI)"
    );
    module()
}

/// checkov's JSON report of one rendered file, checked offline (it asks
/// the vendor's platform for nothing: --skip-download).
pub fn checkov_scan(name: &str, rendered: &str) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), &format!("{name}.yaml"), rendered.as_bytes());
    let out = checkov()
        .arg("-f")
        .arg(&file)
        .args(["--framework", "kubernetes", "--skip-download", "-o", "json"])
        .env("BC_SKIP_MAPPING", "TRUE")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "{name}: checkov printed no JSON report ({e}):\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    // One framework: one report (a list when checkov ran several).
    match report {
        Value::Array(mut v) => {
            assert_eq!(v.len(), 1, "{name}: {v:?}");
            v.remove(0)
        }
        r => r,
    }
}

/// checkov on a rendered chart must fail no check and parse every file:
/// its report.
pub fn checkov_passes(name: &str, rendered: &str) -> Value {
    let report = checkov_scan(name, rendered);
    let summary = &report["summary"];
    let failed: Vec<String> = report["results"]["failed_checks"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| format!("{} {} ({})", c["check_id"], c["check_name"], c["resource"]))
        .collect();
    assert!(
        summary["failed"] == 0 && failed.is_empty(),
        "{name}: checkov failed {} check(s):\n{}",
        summary["failed"],
        failed.join("\n")
    );
    assert_eq!(summary["parsing_errors"], 0, "{name}: {summary}");
    assert!(
        summary["passed"].as_u64().unwrap_or(0) > 100,
        "{name}: checkov checked next to nothing: {summary}"
    );
    report
}
