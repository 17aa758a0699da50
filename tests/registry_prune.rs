//! Pruning the registry on real builds and a real registry: the manifests
//! of old builds go (checked with skopeo, a tool we did not write), those
//! of the newest verified builds and of what a channel names stay.

mod common;

use std::process::Command;

use common::*;
use serde_json::{json, Value};

fn skopeo_has(reference: &str) -> bool {
    Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{reference}"))
        .output()
        .expect("skopeo: run `bash scripts/setup.sh`")
        .status
        .success()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_builds_go_and_what_runs_or_is_promoted_stays() {
    let bw = BuildWorld::with_node_releases();
    let registry = TestRegistry::start(&bw.world.path("registry"), None, None);
    bw.write_hab(&registry.url(), None);
    bw.write_pipeline(
        "node",
        &fixture_recipe(),
        AMD64,
        r#"["fixture-node", "--version"]"#,
        "[[channel]]\nname = \"stable\"\n",
    );
    let habd = Habd::start_config(bw.load()).await;
    habd.sync_node().await;
    let mut builds: Vec<Value> = Vec::new();
    for tag in ["v1.0.0", "v1.1.0", "v1.2.0", "v1.3.0"] {
        let (s, b) = start_build(&habd, tag).await;
        assert!(s == 202 || s == 200, "{b}");
        builds.push(wait_build(&habd, b["id"].as_i64().unwrap()).await);
    }
    let (s, p) = call(
        habd.api(reqwest::Method::POST, "/pipelines/node/promote")
            .json(&json!({"target": "v1.0.0", "channel": "stable", "by": "test"})),
    )
    .await;
    assert_eq!(s, 200, "{p}");
    let reference = |b: &Value| b["reference"].as_str().unwrap().to_string();
    // The channel's name tags the index it points at (what the chart's
    // first install pulls, before habd pins the nodes by digest).
    let raw = Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{}/hab/node:stable", registry.host()))
        .output()
        .unwrap();
    assert!(
        raw.status.success(),
        "{}",
        String::from_utf8_lossy(&raw.stderr)
    );
    use sha2::Digest;
    assert_eq!(
        format!("sha256:{}", hex::encode(sha2::Sha256::digest(&raw.stdout))),
        builds[0]["index_digest"].as_str().unwrap()
    );
    let platform = |b: &Value| {
        format!(
            "{}/hab/node@{}",
            registry.host(),
            b["digests"]["linux/amd64"].as_str().unwrap()
        )
    };

    // Every build's attestation, found by its index's fallback tag.
    let fallback = |b: &Value| {
        format!(
            "{}/hab/node:{}",
            registry.host(),
            b["index_digest"].as_str().unwrap().replacen(':', "-", 1)
        )
    };
    let attestations: Vec<String> = builds
        .iter()
        .map(|b| {
            let out = Command::new("skopeo")
                .args(["inspect", "--raw", "--tls-verify=false"])
                .arg(format!("docker://{}", fallback(b)))
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let v: Value = serde_json::from_slice(&out.stdout).unwrap();
            format!(
                "{}/hab/node@{}",
                registry.host(),
                v["manifests"][0]["digest"].as_str().unwrap()
            )
        })
        .collect();

    // A dry run says what would go and deletes nothing.
    let (s, dry) = call(
        habd.api(reqwest::Method::POST, "/registry/prune")
            .json(&json!({"keep": 1, "dry_run": true})),
    )
    .await;
    assert_eq!(s, 200, "{dry}");
    let ids = |v: &Value| -> Vec<i64> {
        v["kept"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b.as_i64().unwrap())
            .collect()
    };
    let id = |b: &Value| b["id"].as_i64().unwrap();
    assert_eq!(
        ids(&dry),
        vec![id(&builds[0]), id(&builds[3])],
        "stable's and the newest"
    );
    assert_eq!(dry["delete"].as_array().unwrap().len(), 4, "{dry:#}");
    assert!(builds.iter().all(|b| skopeo_has(&reference(b))));

    // habctl prune --keep 1.
    let out = habctl(&habd)
        .args(["prune", "--keep", "1"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let attestation_lines = text.matches("attestation: ").count();
    assert_eq!(
        text.matches("deleted build").count() - attestation_lines,
        4,
        "{text}"
    );
    // Each pruned index took its attestation and fallback-tag index along.
    assert_eq!(attestation_lines, 4, "{text}");
    for (i, b) in builds.iter().enumerate() {
        let kept = i == 0 || i == 3;
        assert_eq!(skopeo_has(&reference(b)), kept, "index of {}", b["version"]);
        // A kept index keeps its attestation; a pruned one loses it.
        assert_eq!(
            skopeo_has(&attestations[i]),
            kept,
            "attestation of {}",
            b["version"]
        );
        assert_eq!(
            skopeo_has(&fallback(b)),
            kept,
            "fallback tag of {}",
            b["version"]
        );
        assert_eq!(
            skopeo_has(&platform(b)),
            kept,
            "amd64 manifest of {}",
            b["version"]
        );
    }
    // A pruned build cannot be promoted: nothing would run.
    let (s, refused) = call(
        habd.api(reqwest::Method::POST, "/pipelines/node/promote")
            .json(&json!({"target": "v1.1.0", "channel": "stable", "by": "test"})),
    )
    .await;
    assert_eq!(s, 409, "{refused}");
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .contains("no longer in the registry"),
        "{refused}"
    );
    // Pruning again finds nothing more to delete.
    let (_, again) = call(
        habd.api(reqwest::Method::POST, "/registry/prune")
            .json(&json!({"keep": 1})),
    )
    .await;
    assert_eq!(again["deleted"], 0, "{again:#}");
    let (s, bad) = call(
        habd.api(reqwest::Method::POST, "/registry/prune")
            .json(&json!({"keep": 0})),
    )
    .await;
    assert_eq!(s, 400, "{bad}");
    habd.stop().await;
}
