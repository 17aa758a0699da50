//! The Kubernetes target through kube-rs against the API double
//! (tests/common/kube_double.rs: real API semantics, the StatefulSet
//! controller's rolling-update order, pods as real fixture-node containers).

mod common;

use std::{sync::atomic::Ordering, time::Duration};

use common::*;
use serde_json::{json, Value};

async fn build(habd: &Habd, tag: &str) -> Value {
    build_of(habd, "node", tag).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statefulset_partition_walk_and_rollback_unsticks_the_pod() {
    let mut kw = KubeWorld::new(30).await;
    let (bw, fleet, fleet2) = (&kw.bw, kw.fleet.clone(), kw.fleet2.clone());
    let habd = Habd::start_config(bw.load()).await;
    for p in ["node", "node2"] {
        let (s, b) = call(habd.api(reqwest::Method::POST, &format!("/pipelines/{p}/sync"))).await;
        assert_eq!(s, 200, "{b}");
    }
    let a = build(&habd, "v1.0.0").await;
    let b = build(&habd, "v1.1.0").await;
    let bad = build(&habd, "v1.2.0").await;
    let lagging = build(&habd, "v1.3.0").await;
    let a2 = build_of(&habd, "node2", "v1.0.0").await;
    let b2 = build_of(&habd, "node2", "v1.1.0").await;
    kw.install(&fleet, &image(&a));
    kw.install(&fleet2, &image(&a2));
    // A on the channels: the nodes already run it; they are only checked.
    for build in [&a, &a2] {
        let r = promote_and_wait(&habd, build).await;
        assert_eq!(r["state"], "succeeded", "{r}");
    }

    // Every pod's RPC, probed throughout: never two of four down.
    let (stop, prober) = kw.prober(2);

    // A to B on both fleets (rolled one after the other), with one 409
    // Conflict on the way; and a promote of an image hab did not build is
    // refused without a patch.
    let patches = kw.double.state.lock().unwrap().patches.len();
    let (s, e) = call(
        habd.api(reqwest::Method::POST, "/pipelines/node/promote")
            .json(&json!({ "target": format!("sha256:{}", "0".repeat(64)), "channel": "stable" })),
    )
    .await;
    assert_eq!(s, 404, "{e}");
    assert_eq!(kw.double.state.lock().unwrap().patches.len(), patches);
    kw.double.state.lock().unwrap().conflicts = 1;
    for (build, f) in [(&b, &fleet), (&b2, &fleet2)] {
        let r = promote_and_wait(&habd, build).await;
        assert_eq!(r["state"], "succeeded", "{r}");
        assert_eq!(kw.pod_image_of(f, 0).await, image(build));
        assert_eq!(kw.pod_image_of(f, 1).await, image(build));
    }
    {
        let s = kw.double.state.lock().unwrap();
        assert_eq!(
            s.conflicts_served, 1,
            "the conflict was answered and the patch retried"
        );
        let kinds: Vec<&str> = s.patches.iter().map(|(c, _)| c.as_str()).collect();
        assert!(
            kinds
                .iter()
                .any(|c| c.starts_with("application/strategic-merge-patch+json")),
            "{kinds:?}"
        );
        assert!(
            kinds
                .iter()
                .any(|c| c.starts_with("application/merge-patch+json")),
            "{kinds:?}"
        );
        let partitions: Vec<i64> = s
            .patches
            .iter()
            .filter_map(|(_, p)| p["spec"]["updateStrategy"]["rollingUpdate"]["partition"].as_i64())
            .collect();
        assert!(
            partitions.ends_with(&[2, 1, 2, 0, 2]),
            "freeze, then one ordinal at a time, frozen again after each: {partitions:?}"
        );
        let reasons = s.event_reasons();
        for want in [
            "ImageSet",
            "PartitionMoved",
            "GatePassed",
            "RolloutSucceeded",
        ] {
            assert!(reasons.contains(&want), "event {want} in {reasons:?}");
        }
        assert!(s.deleted.is_empty(), "going forward hab deletes no pod");
        assert!(s.watches >= 2, "each recreated pod was followed by a watch");
    }

    assert_eq!(kw.pod_image(0).await, image(&b));
    assert_eq!(kw.pod_image(1).await, image(&b));

    // A release that never becomes Ready: pod 1 sticks on it, the gate
    // fails, hab sets the template back and deletes the stuck pod (the
    // controller alone would wait forever), keeping its PVC.
    let r = promote_and_wait(&habd, &bad).await;
    assert_eq!(r["state"], "failed", "{r}");
    assert!(r["reason"].as_str().unwrap().contains("not healthy"), "{r}");
    {
        let s = kw.double.state.lock().unwrap();
        assert_eq!(
            s.deleted,
            [format!("{fleet}-1")],
            "only the stuck pod was deleted"
        );
    }
    assert_eq!(kw.pod_image(1).await, image(&b), "back on B");
    assert_eq!(kw.pod_image(0).await, image(&b), "never touched");
    let pvc = kw.double.pvc(&fleet, 1);
    docker(&["volume", "inspect", &pvc]);

    // A release that lags 5 blocks (max 2): Ready, but the gate fails.
    let r = promote_and_wait(&habd, &lagging).await;
    assert_eq!(r["state"], "failed", "{r}");
    assert!(
        r["reason"].as_str().unwrap().contains("blocks behind"),
        "{r}"
    );
    assert_eq!(kw.pod_image(1).await, image(&b), "back on B");
    assert_eq!(kw.pod_image(0).await, image(&b), "never touched");

    stop.store(true, Ordering::SeqCst);
    let fewest = prober.await.unwrap();
    assert!(
        fewest >= 3,
        "at some instant only {fewest} of 4 nodes were healthy"
    );
    habd.stop().await;
    kw.double.cleanup();
}

/// habd killed with SIGKILL mid-rollout on the Kubernetes target (after
/// the image change, during a soak, during a rollback) and started again:
/// the rollout resumes or rolls back; a node answers throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kube_rollout_survives_habd_killed_at_every_step_kind() {
    let mut kw = KubeWorld::new(60).await;
    let config = kw.bw.world.path("hab.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!("[api]\ntokens = [\"{TOKEN}\"]\n"));
    std::fs::write(&config, text).unwrap();
    let port = free_port();
    let mut process = HabdProcess::start(&config, port);
    let store = hab::store::Store::open(&kw.bw.world.path("state/hab.sqlite3")).unwrap();
    let habd = Habd::external(format!("http://127.0.0.1:{port}"), store);
    habd.sync_node().await;
    let a = build(&habd, "v1.0.0").await;
    let b = build(&habd, "v1.1.0").await;
    let bad = build(&habd, "v1.2.0").await;
    let fleet = kw.fleet.clone();
    kw.install(&fleet, &image(&a));
    assert_eq!(promote_and_wait(&habd, &a).await["state"], "succeeded");

    let (stop, prober) = kw.prober(1);
    for (target, kill_at, ends, on) in [
        (&b, "update", "succeeded", image(&b)),
        (&a, "soaking", "succeeded", image(&a)),
        (&bad, "rollback", "failed", image(&a)),
    ] {
        let (s, p) = call(
            habd.api(reqwest::Method::POST, "/pipelines/node/promote")
                .json(&json!({ "target": target["id"].to_string(), "channel": "stable" })),
        )
        .await;
        assert_eq!(s, 200, "{p}");
        let id = p["rollouts"][0]["id"].as_i64().unwrap();
        until_step(&habd, id, kill_at).await;
        process.kill9_and_restart();
        let deadline = std::time::Instant::now() + Duration::from_secs(240);
        let r = loop {
            let (_, r) = call(habd.api(reqwest::Method::GET, &format!("/rollouts/{id}"))).await;
            if ["succeeded", "failed"].contains(&r["state"].as_str().unwrap_or("")) {
                break r;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "stuck after a kill at {kill_at}: {r}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        assert_eq!(r["state"], ends, "killed at {kill_at}: {r}");
        assert_eq!(kw.pod_image(0).await, on, "killed at {kill_at}");
        assert_eq!(kw.pod_image(1).await, on, "killed at {kill_at}");
    }
    stop.store(true, Ordering::SeqCst);
    let fewest = prober.await.unwrap();
    assert!(fewest >= 1, "at some instant no node of 2 was healthy");
    drop(process);
    kw.double.cleanup();
}
