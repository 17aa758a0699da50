//! The main job, end to end, on real parts: a new signed tag on the fixture
//! upstream (git daemon) plus a GitHub webhook → sync → verified tag → build
//! for linux/amd64 and linux/arm64 (dockerd/BuildKit, arm64 under qemu) →
//! publish to a real registry → verify → `edge` advances → the fleet
//! following `edge` rolls, one node at a time, to the new index digest
//! (real containers) → `habctl show` tells the whole chain.

mod common;

use std::time::Duration;

use common::*;
use hab::hooks::sign;
use serde_json::{json, Value};

const SECRET: &str = "e2e-webhook-secret-0123456789";

struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for o in 0..2 {
            let _ = std::process::Command::new("/usr/bin/docker")
                .args(["rm", "-f", &format!("hab-{}-{o}", self.0)])
                .output();
            let _ = std::process::Command::new("/usr/bin/docker")
                .args([
                    "volume",
                    "rm",
                    "-f",
                    &format!("hab-{}-{o}-data", self.0),
                    &format!("hab-{}-{o}-files", self.0),
                ])
                .output();
        }
    }
}

/// Waits until every node of `fleet` runs `image` and its newest rollout
/// succeeded; returns the fleet.
async fn fleet_runs(habd: &Habd, fleet: &str, image: &str) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(600);
    loop {
        let (s, v) = call(habd.api(reqwest::Method::GET, &format!("/fleets/{fleet}"))).await;
        assert_eq!(s, 200, "{v}");
        let f = &v["fleet"];
        let on_image = f["nodes"]
            .as_array()
            .is_some_and(|n| n.len() == 2 && n.iter().all(|n| n["image"] == image));
        let rollout = f["rollout"]["state"].as_str().unwrap_or("");
        if on_image && rollout == "succeeded" {
            return v;
        }
        assert_ne!(rollout, "failed", "{v:#}");
        assert!(
            std::time::Instant::now() < deadline,
            "fleet {fleet} never ran {image}: {v:#}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Waits for the verified build of `tag`; returns it.
async fn verified_build_of(habd: &Habd, tag: &str) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(600);
    loop {
        let (_, builds) = call(habd.api(reqwest::Method::GET, "/builds?pipeline=node")).await;
        if let Some(b) = builds
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["ref"] == format!("refs/tags/{tag}"))
        {
            match b["state"].as_str().unwrap() {
                "verified" => return b.clone(),
                "failed" | "cancelled" | "interrupted" => {
                    panic!(
                        "{tag}: {b:#}\n{}",
                        logs(habd, b["id"].as_i64().unwrap()).await
                    )
                }
                _ => {}
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no verified build of {tag}: {builds:#}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_tag_and_a_webhook_reach_the_edge_fleet() {
    let bw = BuildWorld::new();
    let registry = TestRegistry::start(&bw.world.path("registry"), None, None);
    let fleet = format!("edge{}", free_port());
    let _cleanup = Cleanup(fleet.clone());
    bw.write_hab(&registry.url(), None);
    std::fs::write(bw.world.path("rpc-password"), "e2e-rpc-password").unwrap();
    std::fs::write(bw.world.path("hook-secret"), SECRET).unwrap();
    let mut hab = std::fs::read_to_string(bw.world.path("hab.toml")).unwrap();
    hab.push_str(&format!(
        "[webhooks]\nsettle = \"300ms\"\n\
         [[fleet]]\nname = \"{fleet}\"\npipeline = \"node\"\nchannel = \"edge\"\nnodes = 2\n\
         rpc_user = \"hab\"\nrpc_password_file = \"rpc-password\"\n\
         [fleet.gates]\nmax_lag = 2\nsoak = \"1s\"\nready_timeout = \"60s\"\n"
    ));
    std::fs::write(bw.world.path("hab.toml"), hab).unwrap();
    bw.write_pipeline(
        "node",
        &fixture_recipe(),
        BOTH,
        r#"["fixture-node", "--version"]"#,
        "auto = true\n\
         [[channel]]\nname = \"edge\"\nauto = true\n\
         [[channel]]\nname = \"stable\"\n\
         [webhook]\nsecret_file = \"../hook-secret\"\n",
    );
    let habd = Habd::start_config(bw.load()).await;

    // The first sync builds the newest verified tag (v1.0.0; the unsigned
    // v2.0.0-unsigned is refused) and edge's first build deploys the fleet.
    let (s, r) = call(habd.api(reqwest::Method::POST, "/pipelines/node/sync")).await;
    assert_eq!(s, 200, "{r}");
    let first = verified_build_of(&habd, "v1.0.0").await;
    fleet_runs(&habd, &fleet, first["reference"].as_str().unwrap()).await;

    // Upstream publishes a signed release; its forge sends a push webhook.
    let up = &bw.world.upstream;
    up.write("node.conf", "behaviour=healthy\n");
    let commit = up.commit("release 1.1.0");
    up.signed_tag(&bw.world.gpg, &bw.fpr, "v1.1.0", &commit, T2020_02_01);
    let body = serde_json::to_vec(&json!({
        "ref": "refs/tags/v1.1.0",
        "repository": {"full_name": "fixture/node", "clone_url": bw.world.daemon.url("node.git")},
    }))
    .unwrap();
    let (s, v) = call(
        client()
            .post(format!("{}/hooks/github", habd.url))
            .header("X-GitHub-Event", "push")
            .header("X-GitHub-Delivery", "e2e-delivery-1")
            .header(
                "X-Hub-Signature-256",
                format!("sha256={}", sign(SECRET.as_bytes(), &body)),
            )
            .body(body),
    )
    .await;
    assert_eq!((s, v["status"].as_str()), (202, Some("queued")), "{v}");

    let second = verified_build_of(&habd, "v1.1.0").await;
    let image = second["reference"].as_str().unwrap().to_string();
    assert!(image.contains("@sha256:"), "{image}");
    let view = fleet_runs(&habd, &fleet, &image).await;

    // The nodes' containers themselves say so (a tool we did not write).
    for o in 0..2 {
        let label = docker(&[
            "inspect",
            "--format",
            "{{index .Config.Labels \"io.hab.image\"}}",
            &format!("hab-{fleet}-{o}"),
        ]);
        assert_eq!(label.trim(), image);
    }

    // The whole chain, through the API and habctl.
    let chain = &view["chain"];
    assert_eq!(chain["ref"]["name"], "refs/tags/v1.1.0");
    assert_eq!(chain["ref"]["verdict"]["verdict"], "verified", "{chain:#}");
    assert!(chain["sync_triggers"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["source"] == "webhook:github"
            && t["detail"].as_str().unwrap().contains("e2e-delivery-1")));
    assert!(chain["channel_moves"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["channel"] == "edge"));
    let id = second["id"].as_i64().unwrap();
    let out = habctl(&habd)
        .args(["show", &id.to_string()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    for want in [
        "refs/tags/v1.1.0",
        &commit,
        &bw.fpr,
        "webhook:github",
        "e2e-delivery-1",
        second["build_keys"]["linux/amd64"].as_str().unwrap(),
        second["build_keys"]["linux/arm64"].as_str().unwrap(),
        second["digests"]["linux/arm64"].as_str().unwrap(),
        &image,
        "verification",
        &format!("edge -> build {id}"),
        &format!("of fleet {fleet}: SUCCEEDED"),
        "gate",
    ] {
        assert!(text.contains(want), "habctl show lacks {want:?}:\n{text}");
    }
    // A rebuild of what edge runs: no build key changed, so nothing is
    // built; the verified build is reused.
    let (s, q) = call(habd.api(reqwest::Method::POST, "/pipelines/node/rebuild")).await;
    assert_eq!(s, 202, "{q}");
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let rebuilt = loop {
        let items = habd.store.queue_items(Some("node"), 100).unwrap();
        let b = items
            .iter()
            .find(|i| i.source == "rebuild" && i.finished_at.is_some())
            .cloned();
        if let Some(b) = b {
            break b;
        }
        assert!(std::time::Instant::now() < deadline, "{items:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let result = rebuilt.result.unwrap();
    assert_eq!(result["reused"], true, "{result}");
    assert_eq!(result["build_id"].as_i64(), Some(id));
    assert_eq!(habd.store.builds(Some("node"), 100).unwrap().len(), 2);

    let out = habctl(&habd).args(["show", &fleet]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success() && text.contains(&image) && text.contains("e2e-delivery-1"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    habd.stop().await;
}
