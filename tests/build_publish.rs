//! Build and publish against the real things: dockerd with BuildKit (arm64
//! by qemu), a real registry per test on 127.0.0.1, habd in process, the
//! fixture recipe from dockerfiles/fixture, and tools we did not write
//! (skopeo, the docker CLI) to check what landed in the registry.

mod common;

use std::{
    process::Command,
    time::{Duration, Instant},
};

use common::*;
use hab::store::BuildState;
use serde_json::Value;

/// The whole path: both platforms built (arm64 by emulation), published as
/// one index, verified; checked by skopeo and the docker CLI; then asked
/// again, nothing is built or uploaded and the same index comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixture_builds_publishes_and_verifies_both_platforms() {
    let bw = BuildWorld::new();
    let registry = TestRegistry::start(&bw.world.path("registry"), None, None);
    let habd = bw.habd(&registry.url(), &fixture_recipe(), BOTH).await;

    // habctl build --wait: progress per platform, exit 0, the build's JSON.
    let h = habd.url.clone();
    let out = tokio::task::spawn_blocking(move || {
        let mut c = Command::new(env!("CARGO_BIN_EXE_habctl"));
        c.env("HAB_SERVER", h)
            .env("HAB_TOKEN", TOKEN)
            .args(["build", "node", "--ref", "v1.0.0", "--wait", "-o", "json"]);
        c.output().unwrap()
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "habctl build failed:\n{stderr}");
    assert!(stderr.contains("linux/arm64  pushed"), "{stderr}");
    let build: Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = build["id"].as_i64().unwrap();
    assert_eq!(build["state"], "verified", "{build}");
    assert_eq!(build["verified"], true);
    assert_eq!(build["commit"], bw.commit.as_str());
    assert_eq!(build["ref"], "refs/tags/v1.0.0");
    assert_eq!(build["signer"], bw.fpr.as_str());
    let index = build["index_digest"].as_str().unwrap().to_string();
    for p in ["linux/amd64", "linux/arm64"] {
        assert!(build["build_keys"][p]
            .as_str()
            .unwrap()
            .starts_with("sha256:"));
        assert!(build["digests"][p].as_str().unwrap().starts_with("sha256:"));
    }

    // skopeo (not ours) reads the index: both platforms, our annotations.
    let pinned = format!("{}/hab/node@{index}", registry.host());
    let raw = run(Command::new("skopeo").args([
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{pinned}"),
    ]));
    let idx: Value = serde_json::from_str(&raw).unwrap();
    let platforms: Vec<String> = idx["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            format!(
                "{}/{}",
                m["platform"]["os"].as_str().unwrap(),
                m["platform"]["architecture"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(platforms, ["linux/amd64", "linux/arm64"]);
    let ann = &idx["annotations"];
    assert_eq!(ann["org.opencontainers.image.revision"], bw.commit.as_str());
    assert_eq!(ann["org.opencontainers.image.version"], "v1.0.0");
    assert_eq!(ann["io.hab.signer.fingerprint"], bw.fpr.as_str());
    assert!(ann["org.opencontainers.image.source"]
        .as_str()
        .unwrap()
        .contains("node.git"));
    assert!(ann["org.opencontainers.image.created"].is_string());
    // Tagged with the version and the build id, both the same index.
    for tag in ["v1.0.0", &format!("build-{id}")] {
        let digest = run(Command::new("skopeo").args([
            "inspect",
            "--tls-verify=false",
            "--format",
            "{{.Digest}}",
            &format!("docker://{}/hab/node:{tag}", registry.host()),
        ]));
        assert!(!digest.is_empty());
        let raw_tag = run(Command::new("skopeo").args([
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{}/hab/node:{tag}", registry.host()),
        ]));
        assert_eq!(raw_tag, raw, "tag {tag} holds the same index");
    }

    // docker pulls each platform by the index digest and runs it.
    for (platform, machine) in [("linux/arm64", "aarch64"), ("linux/amd64", "x86_64")] {
        docker(&["pull", "-q", "--platform", platform, &pinned]);
        let out = docker(&[
            "run",
            "--rm",
            "--platform",
            platform,
            "--network",
            "none",
            "--entrypoint",
            "uname",
            &pinned,
            "-m",
        ]);
        assert_eq!(out.trim(), machine);
        // dockerd 20.10 keeps one image per digest reference: drop it before
        // pulling the other platform.
        docker(&["rmi", "-f", &pinned]);
    }

    // The output was kept: BuildKit steps and hab's own, with the smoke runs.
    let log = logs(&habd, id).await;
    assert!(log.contains("COPY base/busybox-"), "{log}");
    assert!(
        log.contains("exited 0: fixture-node v1.0.0 aarch64"),
        "{log}"
    );
    assert!(
        log.contains("exited 0: fixture-node v1.0.0 x86_64"),
        "{log}"
    );

    // The same ref again: no build, no upload, the same index.
    let uploads = registry.blob_uploads();
    assert!(uploads > 0);
    let (s, again) = start_build(&habd, "v1.0.0").await;
    assert_eq!(s, 200, "{again}");
    assert_eq!(again["reused"], true);
    assert_eq!(again["id"].as_i64(), Some(id));
    assert_eq!(again["index_digest"].as_str(), Some(index.as_str()));
    assert_eq!(habd.store.builds(Some("node"), 10).unwrap().len(), 1);
    assert_eq!(registry.blob_uploads(), uploads, "no blob uploaded again");

    // habctl verify re-runs the checks, and show lists them.
    let out = run(habctl(&habd).args(["verify", &id.to_string()]));
    assert!(out.starts_with("VERIFIED"), "{out}");
    let out = run(habctl(&habd).args(["verify", &format!("hab/node@{index}")]));
    assert!(out.starts_with("VERIFIED"), "{out}");
    let out = run(habctl(&habd).args(["show", &id.to_string()]));
    assert!(
        out.contains("VERIFIED") && out.contains("linux/arm64"),
        "{out}"
    );
    assert!(out.contains("verification"), "{out}");
    let metrics = habd.metrics().await;
    assert!(
        metrics.contains(r#"hab_builds{pipeline="node",state="verified"} 1"#),
        "{metrics}"
    );
    let out = run(habctl(&habd).args(["logs", &id.to_string(), "--follow"]));
    assert!(
        out.contains("[linux/arm64] #") && out.contains("hab: VERIFIED"),
        "{out}"
    );
    let out = run(habctl(&habd).args(["refs", "node"]));
    assert!(out.contains(&format!("#{id} VERIFIED")), "{out}");
    let out = run(habctl(&habd).args(["builds"]));
    assert!(out.contains("v1.0.0") && out.contains("VERIFIED"), "{out}");
    habd.stop().await;
}

/// A recipe step that fails: FAILED with the step's output kept, nothing
/// tagged with the version, no key recorded as built.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_recipe_fails_with_its_output_and_tags_nothing() {
    let bw = BuildWorld::new();
    let registry = TestRegistry::start(&bw.world.path("registry"), None, None);
    let recipe = bw.shell_recipe(
        "broken",
        "echo compiling the node; echo 'error: the answer is 41' >&2; exit 3",
    );
    let habd = bw.habd(&registry.url(), &recipe, AMD64).await;

    let out = tokio::task::spawn_blocking({
        let mut c = habctl(&habd);
        c.args(["build", "node", "--ref", "v1.0.0", "--wait"]);
        move || c.output().unwrap()
    })
    .await
    .unwrap();
    assert!(!out.status.success(), "habctl build --wait must fail");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("FAILED"), "{stderr}");

    let builds = habd.store.builds(Some("node"), 10).unwrap();
    let b = &builds[0];
    assert_eq!(b.state, BuildState::Failed);
    let reason = b.reason.clone().unwrap();
    assert!(reason.contains("exit code: 3"), "{reason}");
    let log = logs(&habd, b.id).await;
    assert!(log.contains("error: the answer is 41"), "{log}");
    assert!(log.contains("compiling the node"), "{log}");
    assert!(habd
        .store
        .verified_key(&b.platforms[0].build_key, "hab/node")
        .unwrap()
        .is_none());
    let (s, _) =
        call(client().get(format!("{}/v2/hab/node/manifests/v1.0.0", registry.url()))).await;
    assert_eq!(s, 404, "nothing is tagged with the version");
    habd.stop().await;
}

/// The registry hands back a corrupted blob: verification fails naming the
/// blob; the build is not VERIFIED and the version tag is not set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupted_blob_fails_verification_naming_the_blob() {
    let bw = BuildWorld::new();
    let proxy_port = free_port();
    let registry = TestRegistry::start(&bw.world.path("registry"), None, Some(proxy_port));
    let proxy = CorruptingProxy::start(proxy_port, registry.host()).await;
    proxy
        .corrupt
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let habd = bw
        .habd(
            &format!("http://127.0.0.1:{proxy_port}"),
            &fixture_recipe(),
            AMD64,
        )
        .await;
    let (s, b) = start_build(&habd, "v1.0.0").await;
    assert_eq!(s, 202, "{b}");
    let b = wait_build(&habd, b["id"].as_i64().unwrap()).await;
    assert_eq!(b["state"], "failed", "{b}");
    assert_eq!(b["verified"], false);
    let reason = b["reason"].as_str().unwrap();
    assert!(
        reason.contains("verification failed: blob sha256:") && reason.contains("corrupt"),
        "{reason}"
    );
    assert!(habd
        .store
        .verified_key(b["build_keys"]["linux/amd64"].as_str().unwrap(), "hab/node")
        .unwrap()
        .is_none());
    let (s, _) =
        call(client().get(format!("{}/v2/hab/node/manifests/v1.0.0", registry.url()))).await;
    assert_eq!(s, 404, "nothing is tagged with the version");
    // The registry's own copy is fine: the same check without the proxy's
    // damage passes, so the failure was the read-back's doing.
    proxy
        .corrupt
        .store(false, std::sync::atomic::Ordering::SeqCst);
    let (s, v) = call(
        habd.api(reqwest::Method::POST, "/verify")
            .json(&serde_json::json!({ "build": b["id"] })),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(v["ok"], true, "{v}");
    habd.stop().await;
}

/// A ref the signature policy refuses: 409 with the verdict, nothing recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_ref_cannot_be_built() {
    let bw = BuildWorld::new();
    let registry = TestRegistry::start(&bw.world.path("registry"), None, None);
    let habd = bw.habd(&registry.url(), &fixture_recipe(), BOTH).await;
    let (s, b) = start_build(&habd, "v2.0.0-unsigned").await;
    assert_eq!(s, 409, "{b}");
    assert_eq!(b["detail"]["verdict"]["verdict"], "unsigned", "{b}");
    assert!(b["error"]
        .as_str()
        .unwrap()
        .contains("signature policy refuses it"));
    let (s, b) = start_build(&habd, "v9.9.9").await;
    assert_eq!(s, 404, "{b}");
    assert!(habd.store.builds(None, 10).unwrap().is_empty());
    assert_eq!(registry.blob_uploads(), 0);
    habd.stop().await;
}

/// A registry with htpasswd auth: the configured credentials work (pushes,
/// read-back and the builder's smoke pull); a wrong password is refused at
/// once with a clear reason and nothing recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_with_htpasswd_auth() {
    let bw = BuildWorld::new();
    let registry = TestRegistry::start(
        &bw.world.path("registry"),
        Some(("hab", "s3cret-pass")),
        None,
    );
    let recipe = fixture_recipe();

    let wrong = bw.config(&registry.url(), Some(("hab", "wrong")), &recipe, AMD64);
    let habd = Habd::start_config(wrong).await;
    habd.sync_node().await;
    let (s, b) = start_build(&habd, "v1.0.0").await;
    assert_eq!(s, 502, "{b}");
    let reason = b["error"].as_str().unwrap();
    assert!(
        reason.contains("refused access") && reason.contains("\"hab\""),
        "{reason}"
    );
    assert!(habd.store.builds(None, 10).unwrap().is_empty());
    habd.stop().await;

    let right = bw.config(
        &registry.url(),
        Some(("hab", "s3cret-pass")),
        &recipe,
        AMD64,
    );
    let habd = Habd::start_config(right).await;
    let (s, b) = start_build(&habd, "v1.0.0").await;
    assert_eq!(s, 202, "{b}");
    let b = wait_build(&habd, b["id"].as_i64().unwrap()).await;
    assert_eq!(b["state"], "verified", "{b}");
    habd.stop().await;
}

/// A running build is cancelled: it ends CANCELLED, its output so far kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_build_can_be_cancelled() {
    let bw = BuildWorld::new();
    let registry = TestRegistry::start(&bw.world.path("registry"), None, None);
    let recipe = bw.shell_recipe("slow", "echo started a long step; /bin/busybox sleep 300");
    let habd = bw.habd(&registry.url(), &recipe, AMD64).await;
    let (s, b) = start_build(&habd, "v1.0.0").await;
    assert_eq!(s, 202, "{b}");
    let id = b["id"].as_i64().unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !logs(&habd, id).await.contains("started a long step") {
        assert!(Instant::now() < deadline, "{}", logs(&habd, id).await);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let out = run(habctl(&habd).args(["cancel", &id.to_string()]));
    assert!(out.contains("cancelling"), "{out}");
    let b = wait_build(&habd, id).await;
    assert_eq!(b["state"], "cancelled", "{b}");
    assert!(logs(&habd, id).await.contains("started a long step"));
    let (s, _) = call(habd.api(reqwest::Method::POST, &format!("/builds/{id}/cancel"))).await;
    assert_eq!(s, 409, "a build that ended cannot be cancelled");
    habd.stop().await;
}

/// A recipe built FROM a base image in the registry: the base is resolved
/// per platform to its manifest digest, passed pinned as BASE_IMAGE, and
/// pulled by BuildKit from the registry (nothing from a public one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn base_image_is_pinned_by_digest_and_pulled_from_the_registry() {
    let bw = BuildWorld::new();
    let registry = TestRegistry::start(&bw.world.path("registry"), None, None);
    bw.write_hab(&registry.url(), None);
    let base = bw.recipe(
        "base",
        "FROM scratch\nARG TARGETARCH\nCOPY base/busybox-${TARGETARCH} /bin/busybox\n",
    );
    bw.write_pipeline("base", &base, BOTH, r#"["busybox", "true"]"#, "");
    let app = bw.recipe(
        "app",
        "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n\
         RUN [\"/bin/busybox\", \"sh\", \"-c\", \"/bin/busybox uname -m > /machine\"]\n",
    );
    bw.write_pipeline(
        "app",
        &app,
        BOTH,
        r#"["busybox", "cat", "/machine"]"#,
        &format!("base_image = \"{}/hab/base:v1.0.0\"\n", registry.host()),
    );
    let habd = Habd::start_config(bw.load()).await;
    for p in ["base", "app"] {
        let (s, b) = call(habd.api(reqwest::Method::POST, &format!("/pipelines/{p}/sync"))).await;
        assert_eq!(s, 200, "{b}");
    }
    let build = |p: &'static str| {
        let habd = &habd;
        async move {
            let (s, b) = call(
                habd.api(reqwest::Method::POST, &format!("/pipelines/{p}/builds"))
                    .json(&serde_json::json!({ "ref": "v1.0.0" })),
            )
            .await;
            assert_eq!(s, 202, "{b}");
            wait_build(habd, b["id"].as_i64().unwrap()).await
        }
    };
    let base_build = build("base").await;
    assert_eq!(base_build["state"], "verified", "{base_build}");
    let app_build = build("app").await;
    assert_eq!(app_build["state"], "verified", "{app_build}");
    let log = logs(&habd, app_build["id"].as_i64().unwrap()).await;
    for p in ["linux/amd64", "linux/arm64"] {
        let pinned = format!(
            "{}/hab/base@{}",
            registry.host(),
            base_build["digests"][p].as_str().unwrap()
        );
        assert!(log.contains(&format!("pinned as {pinned}")), "{log}");
    }
    assert!(log.contains("exited 0: aarch64"), "{log}");
    assert!(log.contains("exited 0: x86_64"), "{log}");
    habd.stop().await;
}

/// Two builders (here two names for the same engine): the release's
/// platforms build at once, not one after the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn platforms_on_different_builders_build_at_once() {
    let bw = BuildWorld::new();
    let registry = TestRegistry::start(&bw.world.path("registry"), None, None);
    bw.write_hab(&registry.url(), None);
    let hab = std::fs::read_to_string(bw.world.path("hab.toml")).unwrap();
    let (head, _) = hab.split_once("[[builder]]").unwrap();
    std::fs::write(
        bw.world.path("hab.toml"),
        format!(
            "{head}[[builder]]\nname = \"amd\"\nendpoint = \"unix:///var/run/docker.sock\"\n\
             platforms = [\"linux/amd64\"]\n\
             [[builder]]\nname = \"arm\"\nendpoint = \"unix:///var/run/docker.sock\"\n\
             platforms = [\"linux/arm64\"]\nemulated = [\"linux/arm64\"]\n"
        ),
    )
    .unwrap();
    let recipe = bw.recipe(
        "slowish",
        "FROM scratch\nARG TARGETARCH\nCOPY base/busybox-${TARGETARCH} /bin/busybox\n\
         RUN [\"/bin/busybox\", \"sleep\", \"2\"]\n",
    );
    bw.write_pipeline("node", &recipe, BOTH, r#"["busybox", "true"]"#, "");
    let habd = Habd::start_config(bw.load()).await;
    habd.sync_node().await;
    let (s, b) = start_build(&habd, "v1.0.0").await;
    assert_eq!(s, 202, "{b}");
    let b = wait_build(&habd, b["id"].as_i64().unwrap()).await;
    assert_eq!(b["state"], "verified", "{b}");
    let builders: Vec<&str> = b["platforms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["builder"].as_str().unwrap())
        .collect();
    assert_eq!(builders, ["amd", "arm"]);
    // Each platform started before the other one finished.
    let log = logs(&habd, b["id"].as_i64().unwrap()).await;
    let at = |needle: &str| {
        log.find(needle)
            .unwrap_or_else(|| panic!("{needle:?} not in\n{log}"))
    };
    for (me, other) in [("amd64", "arm64"), ("arm64", "amd64")] {
        assert!(
            at(&format!("hab: building linux/{me}")) < at(&format!("hab: pushed linux/{other}")),
            "{log}"
        );
    }
    habd.stop().await;
}

/// The fixture node answers Bitcoin JSON-RPC with basic auth, behaving as
/// its release's node.conf says: healthy, lagging N blocks, never healthy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixture_node_behaves_as_its_release_says() {
    let bw = BuildWorld::new();
    let up = &bw.world.upstream;
    for (tag, conf) in [
        ("v1.1.0", "behaviour=lagging\nlag=5\n"),
        ("v1.2.0", "behaviour=never-healthy\n"),
    ] {
        up.write("node.conf", conf);
        let c = up.commit(tag);
        up.signed_tag(&bw.world.gpg, &bw.fpr, tag, &c, T2020_02_01);
    }
    let registry = TestRegistry::start(&bw.world.path("registry"), None, None);
    let habd = bw.habd(&registry.url(), &fixture_recipe(), AMD64).await;
    let rpc = client();
    for (tag, status, blocks) in [
        ("v1.0.0", 200, Some(850_000)),
        ("v1.1.0", 200, Some(849_995)),
        ("v1.2.0", 500, None),
    ] {
        let (s, b) = start_build(&habd, tag).await;
        assert_eq!(s, 202, "{b}");
        let b = wait_build(&habd, b["id"].as_i64().unwrap()).await;
        assert_eq!(b["state"], "verified", "{b}");
        let port = free_port();
        let image = format!("{}/hab/node:{tag}", registry.host());
        let id = docker(&[
            "run",
            "-d",
            "-p",
            &format!("127.0.0.1:{port}:18443"),
            "-e",
            "RPC_USER=alice",
            "-e",
            "RPC_PASSWORD=pw",
            &image,
        ]);
        let id = id.trim();
        let url = format!("http://127.0.0.1:{port}/");
        let call_rpc = |method: &str, password: &str| {
            rpc.post(&url)
                .basic_auth("alice", Some(password))
                .body(format!(
                    r#"{{"jsonrpc":"1.0","id":"t","method":"{method}","params":[]}}"#
                ))
                .send()
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        let info = loop {
            match call_rpc("getblockchaininfo", "pw").await {
                Ok(r) => break r,
                Err(e) => {
                    assert!(Instant::now() < deadline, "{tag}: no RPC answer: {e}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        };
        assert_eq!(info.status().as_u16(), status, "{tag}");
        let info: Value = info.json().await.unwrap();
        assert_eq!(info["id"], "t");
        match blocks {
            Some(n) => {
                assert_eq!(info["result"]["blocks"], n, "{tag}: {info}");
                assert_eq!(info["result"]["headers"], 850_000);
                assert_eq!(info["result"]["initialblockdownload"], false);
                let count: Value = call_rpc("getblockcount", "pw")
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                assert_eq!(count["result"], n);
            }
            None => assert_eq!(info["error"]["code"], -28, "{tag}: {info}"),
        }
        let wrong = call_rpc("getblockcount", "nope").await.unwrap();
        assert_eq!(wrong.status().as_u16(), 401);
        docker(&["rm", "-f", id]);
        docker(&["rmi", "-f", &image]);
    }
    habd.stop().await;
}
