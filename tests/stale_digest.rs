//! A stale digest reference on a Docker host (issue 13, item 3): Debian's
//! dockerd 20.10 keeps one image per digest reference, so once anyone on the
//! host pulled a release's index digest for the other platform, a pull of
//! the same digest for the host's own platform is refused ("Cannot
//! overwrite digest"). Neither a rollout nor a smoke run may fail on it.
//! Real dockerd, a registry per test, a two-platform image built by hab.

mod common;

use std::process::Command;

use common::*;
use serde_json::json;

fn label(container: &str) -> String {
    docker(&[
        "inspect",
        "--format",
        "{{index .Config.Labels \"io.hab.image\"}}",
        container,
    ])
    .trim()
    .to_string()
}

/// A node host where the index digest was pulled for the other platform:
/// the smoke runs pass, the rollout succeeds, and the node runs the host's
/// own platform, labelled with the index-pinned reference it was asked to
/// run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_pulled_for_the_other_platform_blocks_neither_rollout_nor_smoke() {
    let bw = BuildWorld::new();
    let registry = TestRegistry::start(&bw.world.path("registry"), None, None);
    bw.write_hab(&registry.url(), None);
    let fleet = format!("stale{}", free_port());
    let mut hab = std::fs::read_to_string(bw.world.path("hab.toml")).unwrap();
    hab.push_str(&format!(
        "[[fleet]]\nname = \"{fleet}\"\npipeline = \"node\"\nchannel = \"stable\"\nnodes = 1\n\
         rpc_user = \"hab\"\n\
         [fleet.gates]\nmax_lag = 2\nsoak = \"1s\"\nready_timeout = \"20s\"\n"
    ));
    std::fs::write(bw.world.path("hab.toml"), hab).unwrap();
    bw.write_pipeline(
        "node",
        &fixture_recipe(),
        BOTH,
        r#"["fixture-node", "--version"]"#,
        "[[channel]]\nname = \"stable\"\n",
    );
    let habd = Habd::start_config(bw.load()).await;
    habd.sync_node().await;
    let build = build_of(&habd, "node", "v1.0.0").await;
    let id = build["id"].as_i64().unwrap();
    let pinned = format!(
        "{}/hab/node@{}",
        registry.host(),
        build["index_digest"].as_str().unwrap()
    );

    // Someone on the host pulls the release for the other platform; from
    // then on the engine refuses the digest for its own platform.
    docker(&["pull", "-q", "--platform", "linux/arm64", &pinned]);
    let refused = Command::new("/usr/bin/docker")
        .args(["pull", "-q", "--platform", "linux/amd64", &pinned])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("Cannot overwrite digest"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );

    // The smoke runs of both platforms pass on that host.
    let out = run(habctl(&habd).args(["verify", &id.to_string()]));
    assert!(out.starts_with("VERIFIED"), "{out}");

    // The rollout succeeds, and the node runs amd64 under the index's name.
    let (s, p) = call(
        habd.api(reqwest::Method::POST, "/pipelines/node/promote")
            .json(&json!({ "target": id.to_string(), "channel": "stable", "by": "test" })),
    )
    .await;
    assert_eq!(s, 200, "{p}");
    let r = wait_rollout(&habd, p["rollouts"][0]["id"].as_i64().unwrap()).await;
    assert_eq!(r["state"], "succeeded", "{r}");
    let node = format!("hab-{fleet}-0");
    assert_eq!(
        label(&node),
        pinned,
        "labelled with the index it was asked to run"
    );
    let machine = docker(&["exec", &node, "uname", "-m"]);
    assert_eq!(machine.trim(), "x86_64");

    // And the smoke runs still pass with the node's image on the host.
    let out = run(habctl(&habd).args(["verify", &id.to_string()]));
    assert!(out.starts_with("VERIFIED"), "{out}");

    habd.stop().await;
    let _ = Command::new("/usr/bin/docker")
        .args(["rm", "-f", &node])
        .output();
    let _ = Command::new("/usr/bin/docker")
        .args([
            "volume",
            "rm",
            "-f",
            &format!("{node}-data"),
            &format!("{node}-files"),
        ])
        .output();
    let _ = Command::new("/usr/bin/docker")
        .args(["rmi", "-f", &pinned])
        .output();
}
