//! Rollouts on the Docker target against real containers of the fixture
//! node (dockerd, a registry per test, builds by hab): two fleets of two
//! nodes, a prober calling every node's RPC throughout.

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleets_roll_one_node_at_a_time_and_roll_back_on_failed_gates() {
    let fx = Fleets::new();
    let names = fx.names.clone();
    let habd = Habd::start_config(fx.bw.load()).await;
    for p in ["node", "node2"] {
        let (s, b) = call(habd.api(reqwest::Method::POST, &format!("/pipelines/{p}/sync"))).await;
        assert_eq!(s, 200, "{b}");
    }
    let mut a = Vec::new();
    let mut b = Vec::new();
    for p in ["node", "node2"] {
        a.push(build(&habd, p, "v1.0.0").await);
        b.push(build(&habd, p, "v1.1.0").await);
    }

    // First deployment: both fleets created on A.
    let mut ids = Vec::new();
    for (p, id) in ["node", "node2"].iter().zip(&a) {
        ids.extend(promote(&habd, p, *id).await);
    }
    assert_eq!(ids.len(), 2);
    for id in &ids {
        let r = wait_rollout(&habd, *id).await;
        assert_eq!(r["state"], "succeeded", "{r}");
    }
    for (f, p) in names.iter().zip(["node", "node2"]) {
        assert!(images(f)
            .iter()
            .all(|i| i.contains(&format!("/hab/{p}@sha256:"))));
        for o in 0..2 {
            docker(&[
                "exec",
                &format!("hab-{f}-{o}"),
                "sh",
                "-c",
                "echo kept > /data/marker",
            ]);
        }
    }
    let on_a: Vec<Vec<String>> = names.iter().map(|f| images(f)).collect();

    // A to B, both fleets, with every node probed throughout.
    let prober = Prober::start(&names).await;
    let mut ids = Vec::new();
    for (p, id) in ["node", "node2"].iter().zip(&b) {
        ids.extend(promote(&habd, p, *id).await);
    }
    for id in &ids {
        let r = wait_rollout(&habd, *id).await;
        assert_eq!(r["state"], "succeeded", "{r}");
        // One node at a time: each update is followed by its gate passing
        // before the next update.
        let kinds: Vec<&str> = r["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["kind"].as_str().unwrap())
            .filter(|k| ["update", "gate_passed"].contains(k))
            .collect();
        assert_eq!(
            kinds,
            ["update", "gate_passed", "update", "gate_passed"],
            "{r}"
        );
    }
    let fewest = prober.finish().await;
    assert!(
        fewest >= 3,
        "at some instant only {fewest} of 4 nodes were healthy"
    );
    for (i, f) in names.iter().enumerate() {
        let now = images(f);
        assert!(
            now.iter().all(|img| !on_a[i].contains(img)),
            "{f} still on A"
        );
        for o in 0..2 {
            let marker = docker(&["exec", &format!("hab-{f}-{o}"), "cat", "/data/marker"]);
            assert_eq!(marker.trim(), "kept", "the volume survived the update");
        }
    }
    let on_b = images(&names[0]);

    // A release whose node never becomes healthy, then one that lags: each
    // stops at the first node, rolls it back, and the fleet ends on B.
    for (tag, words) in [("v1.2.0", "-28"), ("v1.3.0", "blocks behind")] {
        let bad = build(&habd, "node", tag).await;
        let prober = Prober::start(&names).await;
        let ids = promote(&habd, "node", bad).await;
        let r = wait_rollout(&habd, ids[0]).await;
        assert_eq!(r["state"], "failed", "{r}");
        let reason = r["reason"].as_str().unwrap();
        assert!(
            reason.contains(words) && reason.contains("node 1"),
            "{tag}: {reason}"
        );
        let updates: Vec<&Value> = r["steps"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["kind"] == "update")
            .collect();
        assert_eq!(updates.len(), 2, "node 1 forward, node 1 back: {r}");
        assert!(updates.iter().all(|s| s["ordinal"] == 1));
        assert_eq!(images(&names[0]), on_b, "{tag}: the fleet is back on B");
        let fewest = prober.finish().await;
        assert!(
            fewest >= 3,
            "{tag}: at some instant only {fewest} of 4 nodes were healthy"
        );
    }

    // habctl shows the fleets.
    let out = run(habctl(&habd).args(["rollout", "status", &names[0]]));
    assert!(
        out.contains("healthy at 850000") && out.contains("FAILED"),
        "{out}"
    );
    habd.stop().await;
    cleanup(&names);
}

/// habd killed with SIGKILL mid-rollout (after an image change, during a
/// soak, during a rollback) and started again: the rollout resumes or rolls
/// back, and at every instant all nodes but one are healthy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_survives_habd_killed_at_every_step_kind() {
    let fx = Fleets::with_gates("soak = \"2s\"\nready_timeout = \"8s\"");
    let names = fx.names.clone();
    let config = fx.bw.world.path("hab.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!("[api]\ntokens = [\"{TOKEN}\"]\n"));
    std::fs::write(&config, text).unwrap();
    let port = free_port();
    let mut process = HabdProcess::start(&config, port);
    let store = hab::store::Store::open(&fx.bw.world.path("state/hab.sqlite3")).unwrap();
    let habd = Habd::external(format!("http://127.0.0.1:{port}"), store);
    for p in ["node", "node2"] {
        let (s, b) = call(habd.api(reqwest::Method::POST, &format!("/pipelines/{p}/sync"))).await;
        assert_eq!(s, 200, "{b}");
    }
    let a = build(&habd, "node", "v1.0.0").await;
    let b = build(&habd, "node", "v1.1.0").await;
    let bad = build(&habd, "node", "v1.2.0").await;
    let a2 = build(&habd, "node2", "v1.0.0").await;
    for (p, id) in [("node", a), ("node2", a2)] {
        for r in promote(&habd, p, id).await {
            assert_eq!(wait_rollout(&habd, r).await["state"], "succeeded");
        }
    }

    let prober = Prober::start(&names).await;
    for (target, kill_at, ends) in [
        (b, "update", "succeeded"),
        (a, "soaking", "succeeded"),
        (bad, "rollback", "failed"),
    ] {
        let before = images(&names[0]);
        let ids = promote(&habd, "node", target).await;
        until_step(&habd, ids[0], kill_at).await;
        process.kill9_and_restart();
        let r = wait_rollout(&habd, ids[0]).await;
        assert_eq!(r["state"], ends, "killed at {kill_at}: {r}");
        let now = images(&names[0]);
        if ends == "failed" {
            assert_eq!(now, before, "rolled back after the restart");
        } else {
            assert!(now.iter().all(|i| !before.contains(i)), "{now:?}");
        }
    }
    let fewest = prober.finish().await;
    assert!(
        fewest >= 3,
        "at some instant only {fewest} of 4 nodes were healthy"
    );
    drop(process);
    cleanup(&names);
}

/// Pause holds a rollout between steps, resume carries on, undo turns it
/// back; each answered over the API and habctl.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollouts_pause_resume_and_undo() {
    let fx = Fleets::with_gates("soak = \"2s\"\nready_timeout = \"10s\"");
    let names = fx.names.clone();
    let habd = Habd::start_config(fx.bw.load()).await;
    habd.sync_node().await;
    let a = build(&habd, "node", "v1.0.0").await;
    let b = build(&habd, "node", "v1.1.0").await;
    for r in promote(&habd, "node", a).await {
        assert_eq!(wait_rollout(&habd, r).await["state"], "succeeded");
    }
    let on_a = images(&names[0]);

    // Pause while node 1 soaks: the rollout stops there.
    let id = promote(&habd, "node", b).await[0];
    until_step(&habd, id, "soaking").await;
    let out = run(habctl(&habd).args(["rollout", "pause", &names[0]]));
    assert!(out.contains("PAUSED"), "{out}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (_, r) = call(habd.api(reqwest::Method::GET, &format!("/rollouts/{id}"))).await;
    assert_eq!(r["state"], "paused", "{r}");
    assert_eq!(
        images(&names[0])[0],
        on_a[0],
        "node 0 untouched while paused"
    );
    // Resume: it carries on and ends with both nodes on B.
    let out = run(habctl(&habd).args(["rollout", "resume", &names[0]]));
    assert!(out.contains("RUNNING"), "{out}");
    assert_eq!(wait_rollout(&habd, id).await["state"], "succeeded");
    let on_b = images(&names[0]);
    assert!(on_b.iter().all(|i| !on_a.contains(i)));

    // Undo in the middle of going back to A: every node returns to B.
    let id = promote(&habd, "node", a).await[0];
    until_step(&habd, id, "gate_passed").await;
    let out = run(habctl(&habd).args(["rollout", "undo", &names[0]]));
    assert!(out.contains("ROLLING_BACK"), "{out}");
    let r = wait_rollout(&habd, id).await;
    assert_eq!(r["state"], "failed", "{r}");
    assert!(
        r["reason"]
            .as_str()
            .unwrap()
            .contains("undone by an operator"),
        "{r}"
    );
    assert_eq!(images(&names[0]), on_b);
    // Nothing in progress: pause is refused with the reason.
    let out = habctl(&habd)
        .args(["rollout", "pause", &names[0]])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no rollout in progress"));
    habd.stop().await;
    cleanup(&names);
}
