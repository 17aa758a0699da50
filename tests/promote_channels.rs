//! Channels and promote over the API and habctl, on real builds (dockerd,
//! a registry per test): a channel points only at a VERIFIED build, every
//! move is recorded with who, when and why, and `edge` advances by itself.

mod common;

use common::*;
use hab::api::{ChannelsView, ErrorBody, PromoteRequest, PromoteView};

const CHANNELS: &str = "[[channel]]\nname = \"edge\"\nauto = true\n\
                        [[channel]]\nname = \"stable\"\n";

/// A promote by alice, and what habd answered: the promote, or why not.
async fn promote(
    habd: &Habd,
    target: &str,
    channel: &str,
) -> (u16, Result<PromoteView, ErrorBody>) {
    let (s, v) = call(
        habd.api(reqwest::Method::POST, "/pipelines/node/promote")
            .json(&PromoteRequest {
                target: target.into(),
                channel: channel.into(),
                reason: Some("soaked on edge".into()),
                by: Some("alice".into()),
                force: false,
            }),
    )
    .await;
    let answer = if s == 200 {
        Ok(serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("{e}: {v}")))
    } else {
        Err(serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("{e}: {v}")))
    };
    (s, answer)
}

async fn channels(habd: &Habd) -> ChannelsView {
    let (s, v) = call(habd.api(reqwest::Method::GET, "/pipelines/node/channels")).await;
    assert_eq!(s, 200, "{v}");
    serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("{e}: {v}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channels_point_only_at_verified_builds_and_record_every_move() {
    let bw = BuildWorld::new();
    // v1.1.0 cannot build: the recipe refuses a tree marked broken.
    let up = &bw.world.upstream;
    let broken = up.commit("broken");
    up.signed_tag(&bw.world.gpg, &bw.fpr, "v1.1.0", &broken, T2020_02_01);
    let registry = TestRegistry::start(&bw.world.path("registry"), None, None);
    bw.write_hab(&registry.url(), None);
    let recipe = bw.recipe(
        "picky",
        "FROM scratch\nCOPY base/busybox-amd64 /bin/busybox\nCOPY source/ /src/\n\
         RUN [\"/bin/busybox\", \"sh\", \"-c\", \"! /bin/busybox grep -q broken /src/file.txt\"]\n",
    );
    bw.write_pipeline("node", &recipe, AMD64, r#"["busybox", "true"]"#, CHANNELS);
    let habd = Habd::start_config(bw.load()).await;
    habd.sync_node().await;

    // A build that verifies moves edge by itself, recorded as habd's move.
    let (_, a) = start_build(&habd, "v1.0.0").await;
    let a = wait_build(&habd, a["id"].as_i64().unwrap()).await;
    assert_eq!(a["state"], "verified", "{a}");
    let a_id = a["id"].as_i64().unwrap();
    let v = channels(&habd).await;
    assert_eq!(v.channels[0].name, "edge");
    let edge = v.channels[0].current.as_ref().expect("edge moved");
    assert_eq!((edge.build_id, edge.moved_by.as_str()), (a_id, "habd"));
    assert!(v.channels[1].current.is_none(), "stable waits for promote");

    // A failed build is refused with its state and reason; nothing moves.
    let (_, f) = start_build(&habd, "v1.1.0").await;
    let f = wait_build(&habd, f["id"].as_i64().unwrap()).await;
    assert_eq!(f["state"], "failed", "{f}");
    let f_id = f["id"].as_i64().unwrap();
    let (s, e) = promote(&habd, &f_id.to_string(), "stable").await;
    assert_eq!(s, 409, "{e:?}");
    let reason = e.unwrap_err().error;
    assert!(
        reason.contains("is FAILED") && reason.contains("only a VERIFIED build"),
        "{reason}"
    );
    // Unknown digest, unknown build, a ref with no verified build, an
    // undeclared channel: refused with the reason, nothing moves.
    for (target, channel, status, words) in [
        (
            "sha256:0000000000000000000000000000000000000000000000000000000000000000",
            "stable",
            404,
            "hab promotes only images it built",
        ),
        ("999", "stable", 404, "no build 999"),
        ("v1.1.0", "stable", 404, "has no VERIFIED build"),
        ("v1.0.0", "prod", 404, "its channels: edge, stable"),
    ] {
        let (s, e) = promote(&habd, target, channel).await;
        assert_eq!(s, status, "{target}: {e:?}");
        let e = e.unwrap_err();
        assert!(e.error.contains(words), "{target}: {e:?}");
    }
    let v = channels(&habd).await;
    assert!(v.channels[1].current.is_none());
    assert_eq!(v.moves.len(), 1, "only edge's move");

    // Promote by tag, by digest, by build id: recorded with who and why.
    let (s, p) = promote(&habd, "v1.0.0", "stable").await;
    assert_eq!(s, 200, "{p:?}");
    let p = p.unwrap().promoted;
    assert_eq!(p.build_id, a_id);
    let m = p.channel_move.expect("a move");
    assert_eq!(
        (m.by.as_str(), m.reason.as_deref(), m.from_build),
        ("alice", Some("soaked on edge"), None)
    );
    let digest = a["index_digest"].as_str().unwrap();
    let (s, p) = promote(&habd, &format!("hab/node@{digest}"), "stable").await;
    assert_eq!(s, 200, "{p:?}");
    assert!(
        p.unwrap().promoted.channel_move.is_none(),
        "already there: nothing recorded"
    );
    let v = channels(&habd).await;
    let stable = v.channels[1].current.as_ref().expect("stable moved");
    assert_eq!(
        (stable.build_id, stable.index_digest.as_str()),
        (a_id, digest)
    );
    assert_eq!(v.moves.len(), 2);

    // habctl says the same.
    let out = run(habctl(&habd).args(["channels", "node"]));
    assert!(
        out.contains("stable") && out.contains("alice") && out.contains("soaked on edge"),
        "{out}"
    );
    let out = habctl(&habd)
        .args(["promote", "node", &f_id.to_string(), "--channel", "stable"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is FAILED"));
    let out = run(habctl(&habd).args([
        "promote",
        "node",
        &format!("build-{a_id}"),
        "--channel",
        "stable",
    ]));
    assert!(out.contains("already at build"), "{out}");
    habd.stop().await;
}
