//! Checks of a rendered chart by tools we did not write, shared by the
//! chart tests: `kubernetes-validate --strict` against a current
//! Kubernetes, and checkov's report (PyPI; both installed by
//! scripts/setup.sh).

use std::process::Command;

use serde_json::Value;

use crate::common::{documents, write};

/// The Kubernetes version manifests are validated against.
pub const KUBERNETES: &str = "1.37.0";

/// Whether a rendered object is of a kind Kubernetes itself serves (core,
/// apps, `*.k8s.io`…), which kubernetes-validate has a schema for; a custom
/// resource (e.g. Longhorn's `longhorn.io` RecurringJob) is not.
pub fn is_builtin_kind(doc: &Value) -> bool {
    let api = doc["apiVersion"].as_str().unwrap_or("");
    match api.split_once('/') {
        None => true,
        Some((group, _)) => !group.contains('.') || group.ends_with(".k8s.io"),
    }
}

/// `kubernetes-validate --strict` of a rendered chart: every object of a
/// built-in kind must pass (custom resources have no schema there: the
/// tests check those themselves).
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
    let builtin = documents(rendered)
        .iter()
        .filter(|d| is_builtin_kind(d))
        .count();
    assert_eq!(passed, builtin, "{name}: every manifest validated:\n{text}");
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

/// checkov on a rendered chart must fail no check and parse every file.
pub fn checkov_passes(name: &str, rendered: &str) {
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
}
