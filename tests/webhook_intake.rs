//! Webhook intake over real HTTP, against a real upstream served by `git
//! daemon` and a real SQLite store: signatures, replays, limits, bursts,
//! and a queue that survives SIGKILL.

mod common;

use std::time::Duration;

use common::*;
use hab::{
    config::{Config, Overrides},
    hooks::sign,
    store::{ItemState, Store},
};
use serde_json::{json, Value};

const SECRET: &str = "a-webhook-secret-of-the-node-pipeline";

/// A world whose `node` pipeline takes webhooks signed with [`SECRET`].
fn hooked_world(settle: &str) -> World {
    let (world, _, _) = World::with_release();
    world.write_pipeline(&world.daemon.url("node.git"));
    std::fs::write(world.path("hook-secret"), format!("{SECRET}\n")).unwrap();
    let file = world.path("pipelines/node.toml");
    let mut p = std::fs::read_to_string(&file).unwrap();
    p.push_str("[webhook]\nsecret_file = \"../hook-secret\"\n");
    std::fs::write(&file, p).unwrap();
    std::fs::write(
        world.path("hab.toml"),
        format!(
            "state_dir = \"state\"\npipelines_dir = \"pipelines\"\n\
             [webhooks]\nmax_body_bytes = 4096\nsettle = \"{settle}\"\n"
        ),
    )
    .unwrap();
    world
}

fn load(world: &World) -> Config {
    Config::load(Some(&world.path("hab.toml")), &Overrides::default()).unwrap()
}

/// A push event as GitHub sends it (trimmed to what matters).
fn push_payload(repo_url: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "ref": "refs/tags/v9.9.9",
        "after": "0000000000000000000000000000000000000000",
        "repository": { "full_name": "fixture/node", "clone_url": repo_url },
    }))
    .unwrap()
}

async fn post(url: &str, path: &str, headers: &[(&str, String)], body: Vec<u8>) -> (u16, Value) {
    let mut req = client().post(format!("{url}{path}")).body(body);
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    call(req).await
}

fn github(delivery: &str, event: &str, body: &[u8], secret: &str) -> Vec<(&'static str, String)> {
    vec![
        ("X-GitHub-Event", event.to_string()),
        ("X-GitHub-Delivery", delivery.to_string()),
        (
            "X-Hub-Signature-256",
            format!("sha256={}", sign(secret.as_bytes(), body)),
        ),
        ("Content-Type", "application/json".into()),
    ]
}

/// Waits until no queue item is pending or running.
async fn queue_idle(store: &Store) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let items = store.queue_items(None, 1000).unwrap();
        if !items.is_empty()
            && items
                .iter()
                .all(|i| matches!(i.state, ItemState::Done | ItemState::Failed))
        {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "queue never went idle: {items:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn bad_deliveries_are_refused_and_trigger_nothing() {
    let world = hooked_world("200ms");
    let habd = Habd::start_config(load(&world)).await;
    let url = habd.url.clone();
    let upstream = world.daemon.url("node.git");
    let body = push_payload(&upstream);

    // Missing signature.
    let mut h = github("d-0", "push", &body, SECRET);
    h.retain(|(k, _)| *k != "X-Hub-Signature-256");
    let (s, v) = post(&url, "/hooks/github", &h, body.clone()).await;
    assert_eq!(s, 401, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("X-Hub-Signature-256")
            || v["error"].as_str().unwrap().contains("x-hub-signature-256"),
        "{v}"
    );

    // Wrong signature: signed with another secret.
    let (s, v) = post(
        &url,
        "/hooks/github",
        &github("d-0", "push", &body, "not-the-secret-at-all"),
        body.clone(),
    )
    .await;
    assert_eq!(s, 401, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("does not match"),
        "{v}"
    );

    // The right secret over another body.
    let mut h = github("d-0", "push", b"something else", SECRET);
    h.retain(|(k, _)| *k != "Content-Type");
    let (s, _) = post(&url, "/hooks/github", &h, body.clone()).await;
    assert_eq!(s, 401);

    // Over the body limit (4096 bytes here), signed.
    let big = serde_json::to_vec(&json!({
        "repository": { "clone_url": upstream }, "padding": "x".repeat(5000)
    }))
    .unwrap();
    let (s, v) = post(
        &url,
        "/hooks/github",
        &github("d-big", "push", &big, SECRET),
        big.clone(),
    )
    .await;
    assert_eq!(s, 413, "{v}");
    assert!(v["error"].as_str().unwrap().contains("4096"), "{v}");

    // A repository no pipeline follows, validly signed.
    let other = push_payload("git://127.0.0.1:1/someone-else.git");
    let (s, v) = post(
        &url,
        "/hooks/github",
        &github("d-other", "push", &other, SECRET),
        other.clone(),
    )
    .await;
    assert_eq!(s, 404, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("unknown repository"),
        "{v}"
    );

    // Malformed JSON, validly signed.
    let junk = b"{\"repository\": ".to_vec();
    let (s, v) = post(
        &url,
        "/hooks/github",
        &github("d-junk", "push", &junk, SECRET),
        junk.clone(),
    )
    .await;
    assert_eq!(s, 400, "{v}");
    assert!(v["error"].as_str().unwrap().contains("not JSON"), "{v}");

    // No delivery id: replays could not be told apart.
    let mut h = github("d-1", "push", &body, SECRET);
    h.retain(|(k, _)| *k != "X-GitHub-Delivery");
    let (s, v) = post(&url, "/hooks/github", &h, body.clone()).await;
    assert_eq!(s, 400, "{v}");

    // A ping is answered, and is not a sync.
    let ping =
        serde_json::to_vec(&json!({"zen": "Keep it logically awesome.", "hook_id": 1})).unwrap();
    let (s, v) = post(
        &url,
        "/hooks/github",
        &github("d-ping", "ping", &ping, SECRET),
        ping.clone(),
    )
    .await;
    assert_eq!((s, v["status"].as_str()), (200, Some("pong")), "{v}");

    // An event hab does not act on.
    let (s, v) = post(
        &url,
        "/hooks/github",
        &github("d-star", "star", &body, SECRET),
        body.clone(),
    )
    .await;
    assert_eq!((s, v["status"].as_str()), (200, Some("ignored")), "{v}");

    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        habd.store.syncs("node", 10).unwrap().is_empty(),
        "no refused delivery may sync"
    );
    assert!(habd.store.queue_items(None, 10).unwrap().is_empty());

    // Metrics count every outcome.
    let metrics = client()
        .get(format!("{url}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("hab_webhooks_total{provider=\"github\",outcome=\"401\"} 3"),
        "{metrics}"
    );
    habd.stop().await;
}

#[tokio::test]
async fn a_delivery_syncs_once_and_its_replay_does_nothing() {
    let world = hooked_world("200ms");
    let habd = Habd::start_config(load(&world)).await;
    let url = habd.url.clone();
    let body = push_payload(&world.daemon.url("node.git"));
    let h = github("d-1", "push", &body, SECRET);

    let (s, v) = post(&url, "/hooks/github", &h, body.clone()).await;
    assert_eq!((s, v["status"].as_str()), (202, Some("queued")), "{v}");
    queue_idle(&habd.store).await;
    let syncs = habd.store.syncs("node", 10).unwrap();
    assert_eq!(syncs.len(), 1);
    assert_eq!(syncs[0].status, "ok");
    assert!(
        syncs[0].trigger.contains("webhook:github"),
        "{:?}",
        syncs[0]
    );
    assert_eq!(syncs[0].added, 2, "v1.0.0 and master found");

    // The same delivery again: a replay.
    let (s, v) = post(&url, "/hooks/github", &h, body.clone()).await;
    assert_eq!((s, v["status"].as_str()), (200, Some("duplicate")), "{v}");
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(habd.store.syncs("node", 10).unwrap().len(), 1);
    assert_eq!(habd.store.queue_items(None, 10).unwrap().len(), 1);

    // Gitea signs with the bare hex MAC.
    let (s, v) = post(
        &url,
        "/hooks/gitea",
        &[
            ("X-Gitea-Event", "push".into()),
            ("X-Gitea-Delivery", "g-1".into()),
            ("X-Gitea-Signature", sign(SECRET.as_bytes(), &body)),
        ],
        body.clone(),
    )
    .await;
    assert_eq!((s, v["status"].as_str()), (202, Some("queued")), "{v}");
    let gitea_item = v["queue_id"].as_i64().unwrap();

    // A generic hook names its pipeline; any body, signed.
    let generic = |d: &str, secret: &str| {
        vec![
            ("X-Hab-Delivery", d.to_string()),
            (
                "X-Hab-Signature-256",
                format!("sha256={}", sign(secret.as_bytes(), b"release!")),
            ),
        ]
    };
    let (s, v) = post(
        &url,
        "/hooks/generic/node",
        &generic("x-1", SECRET),
        b"release!".to_vec(),
    )
    .await;
    assert_eq!((s, v["status"].as_str()), (202, Some("queued")), "{v}");
    let generic_item = v["queue_id"].as_i64().unwrap();
    let (s, _) = post(
        &url,
        "/hooks/generic/node",
        &generic("x-2", "wrong-secret-wrong"),
        b"release!".to_vec(),
    )
    .await;
    assert_eq!(s, 401);
    let (s, _) = post(
        &url,
        "/hooks/generic/nope",
        &generic("x-3", SECRET),
        b"release!".to_vec(),
    )
    .await;
    assert_eq!(s, 404);
    queue_idle(&habd.store).await;
    // One more sync per queue item: the two joined one unless the first
    // had already started.
    let items = if gitea_item == generic_item { 1 } else { 2 };
    assert_eq!(habd.store.syncs("node", 10).unwrap().len(), 1 + items);
    habd.stop().await;
}

#[tokio::test]
async fn a_burst_of_fifty_deliveries_is_one_sync() {
    let world = hooked_world("1s");
    let habd = Habd::start_config(load(&world)).await;
    let body = push_payload(&world.daemon.url("node.git"));
    let sends = (0..50).map(|i| {
        let (url, body) = (habd.url.clone(), body.clone());
        async move {
            let h = github(&format!("burst-{i}"), "push", &body, SECRET);
            post(&url, "/hooks/github", &h, body).await
        }
    });
    let answers = futures_util::future::join_all(sends).await;
    let mut items = std::collections::BTreeSet::new();
    for (s, v) in &answers {
        assert_eq!(*s, 202, "{v}");
        items.insert(v["queue_id"].as_i64().unwrap());
    }
    assert_eq!(items.len(), 1, "all fifty joined one queue item");
    queue_idle(&habd.store).await;
    let item = habd
        .store
        .queue_item(*items.first().unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(item.triggers, 50);
    assert_eq!(item.state, ItemState::Done);
    let syncs = habd.store.syncs("node", 10).unwrap();
    assert_eq!(syncs.len(), 1, "exactly one sync: {syncs:#?}");
    assert!(syncs[0].trigger.contains("50 triggers"), "{:?}", syncs[0]);
    habd.stop().await;
}

#[tokio::test]
async fn queued_work_survives_sigkill() {
    let world = hooked_world("3s");
    let port = free_port();
    let mut habd = HabdProcess::start_quiet(&world.path("hab.toml"), port);
    let url = format!("http://127.0.0.1:{port}");
    let body = push_payload(&world.daemon.url("node.git"));
    let (s, v) = post(
        &url,
        "/hooks/github",
        &github("k-1", "push", &body, SECRET),
        body.clone(),
    )
    .await;
    assert_eq!(s, 202, "{v}");
    // Killed within the settle time: the sync has not run.
    habd.kill9_and_restart();
    let store = Store::open(&world.path("state/hab.sqlite3")).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let syncs = loop {
        let syncs = store.syncs("node", 10).unwrap();
        if syncs.iter().any(|s| s.status == "ok") {
            break syncs;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the queued sync never ran after the restart"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(syncs.len(), 1, "{syncs:#?}");
    assert!(
        syncs[0].trigger.contains("webhook:github"),
        "{:?}",
        syncs[0]
    );
    // The replay after the restart is still a duplicate.
    let (s, v) = post(
        &url,
        "/hooks/github",
        &github("k-1", "push", &body, SECRET),
        body,
    )
    .await;
    assert_eq!((s, v["status"].as_str()), (200, Some("duplicate")), "{v}");
}
