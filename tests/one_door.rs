//! The one door from "verified" to "rolled out" (issue 15): an automatic
//! channel advancing after a build verified and an operator's promote go
//! through the same function, `Promotions::promote`, with the same guards.
//! Proven on its sharpest guard: a build whose index the registry no longer
//! holds moves no channel on either path. Real dockerd, a real registry.

mod common;

use std::{process::Command, sync::Arc};

use common::*;
use hab::config::{Channel, Pipeline};
use serde_json::json;

/// The `node` pipeline as habd loaded it, plus an automatic channel `name`.
fn with_auto_channel(bw: &BuildWorld, name: &str) -> Arc<Pipeline> {
    let mut p = (**bw.load().pipeline("node").unwrap()).clone();
    p.channels.push(Channel {
        name: name.into(),
        auto: true,
    });
    Arc::new(p)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_paths_refuse_a_build_the_registry_no_longer_holds() {
    let bw = BuildWorld::new();
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
    let built = build_of(&habd, "node", "v1.0.0").await;
    let id = built["id"].as_i64().unwrap();
    let record = habd.store.build(id).unwrap().unwrap();
    let door = habd.state.as_ref().unwrap().promotions().clone();

    // While the registry holds the index, the automatic path moves.
    let lines = door
        .build_verified(&record, &with_auto_channel(&bw, "edge"))
        .await;
    assert_eq!(
        lines,
        vec![format!("hab: channel edge of node advanced to build {id}")]
    );

    // The index goes (pruned, or deleted by hand).
    let pinned = format!(
        "docker://{}/hab/node@{}",
        registry.host(),
        built["index_digest"].as_str().unwrap()
    );
    let out = Command::new("skopeo")
        .args(["delete", "--tls-verify=false", &pinned])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let gone = format!(
        "build {id} (v1.0.0) is no longer in the registry (pruned?): build it again with habctl build node --ref v1.0.0"
    );

    // An operator's promote is refused, by build id and by tag.
    for target in [id.to_string(), "v1.0.0".to_string()] {
        let (s, refused) = call(
            habd.api(reqwest::Method::POST, "/pipelines/node/promote")
                .json(&json!({"target": target, "channel": "stable", "by": "test"})),
        )
        .await;
        assert_eq!(s, 409, "{refused}");
        assert_eq!(refused["error"], gone.as_str(), "{refused}");
    }
    // So is the automatic path, through the same function and guard.
    let lines = door
        .build_verified(&record, &with_auto_channel(&bw, "beta"))
        .await;
    assert_eq!(
        lines,
        vec![format!("hab: automatic channels not advanced: {gone}")]
    );
    // Nothing moved, nothing was queued.
    let channels = habd.store.channels("node").unwrap();
    assert_eq!(
        channels.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
        vec!["edge"],
        "only the move made while the index was there"
    );
    assert_eq!(habd.store.channel_moves("node", None, 10).unwrap().len(), 1);
    habd.stop().await;
}
