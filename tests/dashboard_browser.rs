//! The dashboard in a real browser: Debian's chromium, headless, driven by
//! puppeteer-core (tests/browser/dashboard.cjs), every page checked by
//! axe-core. habd runs a fleet of three pods on Kubernetes (the API double
//! of tests/common/kube_double.rs, its pods real fixture-node containers).
//! The browser signs in, reads the overview, finds a hostile tag message
//! shown as text, has a forged action refused, promotes a build through
//! the confirmation page, and watches the rollout advance on the fleets
//! page without a reload. Screenshots at 375 and 1440 px are kept under
//! target/dashboard-screenshots/.

mod common;

use std::{path::PathBuf, process::Command};

use common::*;
use hab::hooks::sign;
use serde_json::{json, Value};

/// An upstream tag message that would run script if a page pasted it in.
const HOSTILE: &str = "Release v9.0.0 <script>window.__hab_xss = 1</script>\n\n<img src=x onerror=\"window.__hab_xss = 2\"> & \"quotes\"";
/// A webhook delivery id that would do the same.
const HOSTILE_DELIVERY: &str = "<img src=x onerror=window.__hab_xss=3>";
const HOOK_SECRET: &str = "dashboard-hook-secret-0123456789";

fn screenshots() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/dashboard-screenshots")
}

/// A page of the dashboard, read with the API token (no browser).
async fn page_text(habd: &Habd, path: &str) -> (u16, String) {
    let r = client()
        .get(format!("{}{path}", habd.url))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_signs_in_shows_the_fleet_and_follows_a_rollout_live() {
    let kw = KubeWorld::with(140, 3, "soak = \"2s\"\nready_timeout = \"30s\"\n").await;
    let fleet = kw.fleet.clone();
    // The newest tag upstream is signed, and its message is hostile HTML.
    let (up, bw) = (&kw.bw.world.upstream, &kw.bw);
    let commit = up.commit("nine");
    let payload = up.tag_payload("v9.0.0", &commit, HOSTILE);
    let sig = bw.world.gpg.sign(&bw.fpr, payload.as_bytes(), T2020_02_01);
    up.write_tag("v9.0.0", &format!("{payload}{sig}"));
    // Webhooks on, to send a hostile delivery.
    std::fs::write(bw.world.path("hook-secret"), HOOK_SECRET).unwrap();
    bw.write_pipeline(
        "node",
        &fixture_recipe(),
        AMD64,
        r#"["fixture-node", "--version"]"#,
        "[[channel]]\nname = \"edge\"\nauto = true\n[[channel]]\nname = \"stable\"\n\
         [webhook]\nsecret_file = \"../hook-secret\"\n",
    );
    let habd = Habd::start_config(kw.bw.load()).await;
    for p in ["node", "node2"] {
        let (s, b) = call(habd.api(reqwest::Method::POST, &format!("/pipelines/{p}/sync"))).await;
        assert_eq!(s, 200, "{b}");
    }
    let a = build_of(&habd, "node", "v1.0.0").await;
    let b = build_of(&habd, "node", "v1.1.0").await;
    kw.install(&fleet, &image(&a));
    kw.install(&kw.fleet2, &image(&a));
    kw.wait_ready().await;
    assert_eq!(promote_and_wait(&habd, &a).await["state"], "succeeded");
    let body = serde_json::to_vec(&json!({
        "ref": "refs/tags/v9.0.0",
        "repository": {"full_name": "fixture/node", "clone_url": kw.bw.world.daemon.url("node.git")},
    }))
    .unwrap();
    let (s, v) = call(
        client()
            .post(format!("{}/hooks/github", habd.url))
            .header("X-GitHub-Event", "push")
            .header("X-GitHub-Delivery", HOSTILE_DELIVERY)
            .header(
                "X-Hub-Signature-256",
                format!("sha256={}", sign(HOOK_SECRET.as_bytes(), &body)),
            )
            .body(body),
    )
    .await;
    assert_eq!(s, 202, "{v}");

    // Server-side, before any browser: the hostile text is escaped.
    let (s, fresh) = page_text(&habd, "/freshness").await;
    assert_eq!(s, 200, "{fresh}");
    assert!(fresh.contains("&lt;script&gt;window.__hab_xss"), "{fresh}");
    assert!(!fresh.contains("<script>window"), "{fresh}");
    assert!(!fresh.contains("<img src=x"), "{fresh}");
    let (s, queue) = page_text(&habd, "/queue").await;
    assert_eq!(s, 200, "{queue}");
    assert!(
        queue.contains("&lt;img src=x onerror=window.__hab_xss=3&gt;"),
        "{queue}"
    );
    assert!(!queue.contains("<img src=x"), "{queue}");
    // A sign-in form posted from another site is refused, token or not.
    let r = client()
        .post(format!("{}/signin", habd.url))
        .header("Origin", "http://evil.example")
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(format!("token={TOKEN}&name=mallory"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    assert!(r.headers().get("set-cookie").is_none());
    // The API's promote is recorded with who said it, and the token.
    let by_api = habd.store.actions(10).unwrap();
    assert!(
        by_api.iter().any(|a| a.action == "promote"
            && a.who.starts_with("test (api (token ")
            && a.outcome == "ok"),
        "{by_api:?}"
    );
    // An image hab did not build has no chain of custody, and says so.
    let (s, stranger) = page_text(
        &habd,
        &format!("/custody?image=elsewhere/x@sha256:{}", "0".repeat(64)),
    )
    .await;
    assert_eq!(s, 404, "{stranger}");
    assert!(stranger.contains("Not built by hab"), "{stranger}");
    // Unauthenticated: the sign-in page, nothing of the fleet.
    let r = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("{}/fleets", habd.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 303);
    assert_eq!(r.headers()["location"], "/signin?next=%2Ffleets");
    // Edge points at B, stable at A: the overview offers B to stable.
    let (_, overview) = page_text(&habd, "/").await;
    let promote = format!(
        "/promote?pipeline=node&amp;build={}&amp;channel=stable",
        b["id"]
    );
    assert!(overview.contains(&promote), "{overview}");
    // A look at the nodes has been recorded.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while habd.store.node_statuses().unwrap().len() < 5 {
        assert!(std::time::Instant::now() < deadline, "no look at the nodes");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }

    // The browser.
    let out = Command::new("node")
        .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser/dashboard.cjs"))
        .env("HAB_URL", &habd.url)
        .env("HAB_TOKEN", TOKEN)
        .env("HAB_FLEET", &fleet)
        .env("HAB_OUT", screenshots())
        .output()
        .expect("node runs (scripts/setup.sh installs it)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the browser run failed:\n{stderr}\n{stdout}"
    );
    let found: Value = serde_json::from_str(stdout.trim()).unwrap();
    println!("{:#}", found["rollout_seen"]);
    assert_eq!(found["forged_status"], 403);
    for page in ["outcome", "problem"] {
        assert!(found["axe"][page].is_array(), "axe ran on {page}");
    }
    for page in [
        "signin",
        "overview",
        "freshness",
        "queue",
        "confirm",
        "fleets",
        "custody",
        "overview-dark",
        "fleets-dark",
    ] {
        let v = found["axe"][page].as_array().unwrap();
        assert!(
            v.iter()
                .all(|v| !["serious", "critical"].contains(&v["impact"].as_str().unwrap_or(""))),
            "{page}: {v:?}"
        );
        for width in [375, 1440] {
            let shot = screenshots().join(format!("{page}-{width}.png"));
            assert!(
                std::fs::metadata(&shot).unwrap().len() > 1000,
                "{}",
                shot.display()
            );
        }
    }

    // The store agrees: the promote recorded with who, B rolled out.
    let actions = habd.store.actions(10).unwrap();
    let promote = actions.iter().find(|a| a.action == "promote").unwrap();
    assert!(
        promote.who.starts_with("Ann Operator (token "),
        "{promote:?}"
    );
    assert_eq!(promote.outcome, "ok");
    assert_eq!(kw.pod_image_of(&fleet, 2).await, image(&b));
    let rollouts = habd.store.rollouts(Some(&fleet), 1).unwrap();
    assert_eq!(rollouts[0].image, image(&b));
    assert_eq!(rollouts[0].state.as_str(), "succeeded");

    // The same facts for machines. The newest tag is built too (edge
    // follows it), so its release reaches verified, built and edge.
    let nine = build_of(&habd, "node", "v9.0.0").await;
    assert_eq!(nine["state"], "verified", "{nine}");
    // /metrics shows habd's last look at each node, taken every 10 s: wait
    // for one taken since every node runs B.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let looks = habd.store.node_statuses().unwrap();
        let on_b = looks
            .iter()
            .filter(|l| l.fleet == fleet && l.image.as_deref() == Some(image(&b).as_str()))
            .count();
        if on_b == 3 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{looks:?}");
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    let families = scrape(&habd).await;
    let samples = |family: &str| -> Vec<Value> {
        families[family]["samples"]
            .as_array()
            .unwrap_or_else(|| panic!("no family {family} in {families:#}"))
            .clone()
    };
    let node = |family: &str, o: u32| -> f64 {
        samples(family)
            .iter()
            .find(|s| {
                s[1]["fleet"] == fleet.as_str()
                    && s[1]["node"].as_str() == Some(o.to_string().as_str())
            })
            .unwrap_or_else(|| panic!("no {family} for {fleet}/{o}: {:#}", families[family]))[2]
            .as_f64()
            .unwrap()
    };
    for o in 0..3 {
        assert_eq!(node("hab_node_height_blocks", o), 850_000.0);
        assert_eq!(node("hab_node_lag_blocks", o), 0.0);
        assert_eq!(node("hab_node_initial_block_download", o), 0.0);
        assert!(node("hab_node_observed_timestamp_seconds", o) > 1.7e9);
    }
    let images: Vec<Value> = samples("hab_node_image_info")
        .into_iter()
        .filter(|s| s[1]["fleet"] == fleet.as_str())
        .map(|s| s[1]["image"].clone())
        .collect();
    assert!(
        !images.is_empty() && images.iter().all(|i| *i == image(&b).as_str()),
        "{images:?}"
    );
    assert!(samples("hab_node_healthy")
        .iter()
        .any(|s| s[1]["fleet"] == fleet.as_str()));
    let state = samples("hab_rollout_state");
    assert!(
        state.iter().any(|s| s[1]["fleet"] == fleet.as_str()
            && s[1]["state"] == "succeeded"
            && s[2] == 1.0),
        "{state:?}"
    );
    assert!(samples("hab_rollout_step")
        .iter()
        .any(|s| s[1]["fleet"] == fleet.as_str() && s[2] == 3.0));
    assert!(samples("hab_rollout_nodes")
        .iter()
        .any(|s| s[1]["fleet"] == fleet.as_str() && s[2] == 3.0));
    assert_eq!(families["hab_build_duration_seconds"]["type"], "histogram");
    let count = |family: &str| {
        samples(family)
            .iter()
            .find(|s| s[0] == format!("{family}_count") && s[1]["pipeline"] == "node")
            .map(|s| s[2].as_f64().unwrap())
    };
    assert!(
        count("hab_build_duration_seconds") >= Some(3.0),
        "{families:#}"
    );
    assert!(
        count("hab_verification_duration_seconds") >= Some(3.0),
        "{families:#}"
    );
    let stages: Vec<String> = samples("hab_release_stage_seconds")
        .iter()
        .filter(|s| s[1]["pipeline"] == "node" && s[1]["ref"] == "v9.0.0")
        .map(|s| s[1]["stage"].as_str().unwrap().to_string())
        .collect();
    let mut stages = stages;
    stages.sort();
    assert_eq!(stages, ["built", "edge", "verified"]);
    // Every metric the chart's Grafana dashboard may query is exported,
    // with no label the dashboard does not know.
    for &(name, kind, labels) in HABD_METRICS {
        let family = name.trim_end_matches("_total");
        let f = families
            .get(family)
            .unwrap_or_else(|| panic!("habd does not export {name}"));
        let want = match kind {
            Kind::Gauge => "gauge",
            Kind::Counter => "counter",
            Kind::Histogram => "histogram",
        };
        assert_eq!(f["type"], want, "{name}");
        for s in f["samples"].as_array().unwrap() {
            for k in s[1].as_object().unwrap().keys() {
                assert!(
                    labels.contains(&k.as_str()) || k == "le",
                    "{name} has label {k}"
                );
            }
        }
    }
    assert!(samples("hab_release_tag_seen_timestamp_seconds")
        .iter()
        .any(|s| s[1]["pipeline"] == "node" && s[1]["ref"] == "v9.0.0"));
}

/// `/metrics`, parsed by Prometheus' own parsers (tests/browser/parse_metrics.py).
async fn scrape(habd: &Habd) -> Value {
    let text = habd.metrics().await;
    let out = piped(
        Command::new("python3")
            .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser/parse_metrics.py")),
        text.as_bytes(),
    );
    assert!(
        out.status.success(),
        "Prometheus' parser refused /metrics: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}
