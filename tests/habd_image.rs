//! habd's own image (`dockerfiles/habd`), built by hab like a node's: from a
//! signed tag of a commit whose tree is this repository's own source (its
//! files as git knows them), through the shipped `pipelines/hab.toml`, for
//! linux/amd64 and linux/arm64 (arm64 cross-compiled with Debian's Rust),
//! published, read back and smoke-run. Then each platform's image is run as
//! a user would, arm64 under qemu: `habd --version` names hab's version, the
//! binaries are the platform's machine code, the user is not root, and
//! habd serves on a read-only root filesystem with its state in the volume.
//!
//! It compiles hab twice inside BuildKit. The recipe's `CARGO_PROFILE` is
//! `dev` here (no optimisation: about half a release build's time; see
//! dockerfiles/habd/Dockerfile); `HAB_TEST_HABD_PROFILE=release` builds
//! what the pipeline ships. Each platform's build time is printed
//! (`cargo test --test habd_image -- --nocapture`).

mod common;

use std::{
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use common::*;
use hab::config::{Config, Overrides};
use serde_json::Value;

const BASE: &str = "127.0.0.1:5000/hab/base:bookworm";

/// The build arguments' `CARGO_PROFILE`.
fn profile() -> String {
    std::env::var("HAB_TEST_HABD_PROFILE").unwrap_or_else(|_| "dev".into())
}

/// The base image must be in the shared registry: scripts/setup.sh makes it.
fn require_base() {
    let out = Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{BASE}"))
        .output()
        .expect("skopeo: run `bash scripts/setup.sh`");
    assert!(
        out.status.success(),
        "{BASE} is missing: run `bash scripts/setup.sh` (it runs scripts/base-image.sh)"
    );
}

/// Copies this checkout's files as git knows them (tracked, and new ones
/// not ignored, so uncommitted work is built too) into `to`; never
/// `target/` or what .gitignore leaves out.
fn copy_own_source(to: &Path) -> usize {
    let root = repo_root();
    let list = run(Command::new("git").current_dir(&root).args([
        "ls-files",
        "-z",
        "--cached",
        "--others",
        "--exclude-standard",
    ]));
    let mut copied = 0;
    for rel in list.split('\0').filter(|p| !p.is_empty()) {
        let from = root.join(rel);
        // Deleted but not yet committed, or a submodule: nothing to copy.
        if rel.starts_with("target/") || !from.is_file() {
            continue;
        }
        let dest = to.join(rel);
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::copy(&from, &dest).unwrap(); // keeps the mode, so the executable bit
        copied += 1;
    }
    copied
}

/// This machine's own CA certificates (`/usr/local/share/ca-certificates`,
/// PEM), for the recipe's `EXTRA_CA_CERTS`: where a TLS-inspecting egress
/// proxy stands between the builder and crates.io (as on these machines),
/// it signs with one of them. Empty where crates.io is reached directly.
fn local_ca_certs() -> String {
    let mut pem = String::new();
    let Ok(dir) = std::fs::read_dir("/usr/local/share/ca-certificates") else {
        return pem;
    };
    let mut files: Vec<_> = dir
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "crt"))
        .collect();
    files.sort();
    for f in files {
        pem.push_str(&std::fs::read_to_string(f).unwrap());
        pem.push('\n');
    }
    pem
}

/// The shipped pipeline, with what only this test knows: the fixture
/// upstream, the test's keyring and the build arguments.
fn hab_pipeline(upstream: &str, profile: &str) -> String {
    let mut args = format!("CARGO_PROFILE = \"{profile}\"");
    let ca = local_ca_certs();
    if !ca.is_empty() {
        // A JSON string is a TOML basic string.
        args.push_str(&format!(", EXTRA_CA_CERTS = {}", Value::String(ca)));
    }
    let shipped = std::fs::read_to_string(repo_root().join("pipelines/hab.toml")).unwrap();
    let mut text = shipped.clone();
    for (from, to) in [
        (
            "url = \"https://git.example.invalid/hab/hab.git\"".to_string(),
            format!("url = \"{upstream}\""),
        ),
        (
            "keyring = \"../keys/hab\"".into(),
            "keyring = \"../keys\"".into(),
        ),
        (
            "recipe = \"habd\"".into(),
            format!("recipe = \"habd\"\nargs = {{ {args} }}"),
        ),
    ] {
        assert!(text.contains(&from), "pipelines/hab.toml has no {from}");
        text = text.replace(&from, &to);
    }
    text
}

/// Polls a build until it ends, printing when each BuildKit step starts
/// and ends and when each platform leaves the building stage: the figures
/// a CI budget needs. A hab build takes long: the deadline is an hour.
async fn wait_build_timed(habd: &Habd, id: i64) -> Value {
    let start = Instant::now();
    let deadline = start + Duration::from_secs(3600);
    let mut built: Vec<String> = Vec::new();
    let mut after = 0;
    loop {
        let (_, page) = call(habd.api(
            reqwest::Method::GET,
            &format!("/builds/{id}/logs?after={after}"),
        ))
        .await;
        for l in page["lines"].as_array().into_iter().flatten() {
            after = after.max(l["seq"].as_i64().unwrap_or(after));
            let line = l["line"].as_str().unwrap_or("");
            let step = line.starts_with('#')
                && (line.contains(" [") || line.ends_with(" DONE") || line.ends_with(" CACHED"));
            if step || line.contains("habd recipe:") {
                let cut: String = line.chars().take(110).collect();
                eprintln!(
                    "habd_image: {:>5.0} s  {cut}",
                    start.elapsed().as_secs_f64()
                );
            }
        }
        let (s, b) = call(habd.api(reqwest::Method::GET, &format!("/builds/{id}"))).await;
        assert_eq!(s, 200, "{b}");
        for p in b["platforms"].as_array().into_iter().flatten() {
            let platform = p["platform"].as_str().unwrap().to_string();
            let stage = p["stage"].as_str().unwrap_or("");
            if !["queued", "building"].contains(&stage) && !built.contains(&platform) {
                eprintln!(
                    "habd_image: {platform} built (stage {stage}) {:.0} s after the build started",
                    start.elapsed().as_secs_f64()
                );
                built.push(platform);
            }
        }
        let state = b["state"].as_str().unwrap_or("");
        if ["verified", "failed", "cancelled", "interrupted"].contains(&state) {
            eprintln!(
                "habd_image: build {id} {state} after {:.0} s",
                start.elapsed().as_secs_f64()
            );
            return b;
        }
        assert!(Instant::now() < deadline, "build {id} still {state}: {b}");
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// `docker run --rm --platform <platform> <reference> <args…>`: its output.
fn docker_run(platform: &str, reference: &str, args: &[&str]) -> String {
    let mut argv = vec!["run", "--rm", "--platform", platform, reference];
    argv.extend_from_slice(args);
    docker(&argv)
}

/// The ELF machine of `path` in the image: 0x3e x86-64, 0xb7 AArch64.
fn elf_machine(platform: &str, reference: &str, path: &str) -> String {
    let out = docker(&[
        "run",
        "--rm",
        "--platform",
        platform,
        "--entrypoint",
        "od",
        reference,
        "-An",
        "-tx2",
        "-j18",
        "-N2",
        path,
    ]);
    out.trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn habd_image_is_built_by_hab_from_its_own_signed_source_for_both_platforms() {
    require_docker();
    require_base();
    let version = env!("CARGO_PKG_VERSION");
    let tag = format!("v{version}");

    // Upstream: this repository's own source, one commit, a signed tag.
    let world = World::new();
    let fpr = world.gpg.gen_key("hab-release", T2020_01_01);
    world.pin(&[&fpr]);
    let up = &world.upstream;
    up.git(&["rm", "-q", "file.txt"]);
    let files = copy_own_source(&up.dir);
    assert!(
        files > 100,
        "only {files} files copied from {}",
        repo_root().display()
    );
    up.git(&["add", "-A"]);
    up.git(&["commit", "-q", "-m", &format!("hab {tag}")]);
    let commit = up.git(&["rev-parse", "HEAD"]);
    up.signed_tag(&world.gpg, &fpr, &tag, &commit, T2020_02_01);

    // habd with the shipped pipeline, its recipes where the chart's hab.toml
    // says they are in the image (recipes_dir), publishing to a registry of
    // the test's own.
    let registry = TestRegistry::start(&world.path("registry"), None, None);
    std::fs::create_dir_all(world.path("pipelines")).unwrap();
    std::fs::write(
        world.path("pipelines/hab.toml"),
        hab_pipeline(&world.daemon.url("node.git"), &profile()),
    )
    .unwrap();
    std::fs::write(
        world.path("hab.toml"),
        format!(
            "state_dir = \"state\"\npipelines_dir = \"pipelines\"\nrecipes_dir = \"{recipes}\"\n\
             [registry]\nurl = \"{registry}\"\n\
             [[builder]]\nname = \"local\"\nendpoint = \"unix:///var/run/docker.sock\"\n\
             platforms = [\"linux/amd64\", \"linux/arm64\"]\nemulated = [\"linux/arm64\"]\n",
            recipes = repo_root().join("dockerfiles").display(),
            registry = registry.url(),
        ),
    )
    .unwrap();
    let config = Config::load(Some(&world.path("hab.toml")), &Overrides::default()).unwrap();
    let habd = Habd::start_config(config).await;

    let (s, sync) = call(habd.api(reqwest::Method::POST, "/pipelines/hab/sync")).await;
    assert_eq!(s, 200, "{sync}");
    // build.auto: the sync queued the build; this joins it.
    let (s, b) = call(
        habd.api(reqwest::Method::POST, "/pipelines/hab/builds")
            .json(&serde_json::json!({ "ref": tag })),
    )
    .await;
    assert!(s == 202 || s == 200, "{b}");
    let id = b["id"].as_i64().unwrap();
    let b = wait_build_timed(&habd, id).await;
    let (_, full) = call(habd.api(reqwest::Method::GET, &format!("/builds/{id}"))).await;
    if b["state"] != "verified" {
        let (_, page) = call(habd.api(
            reqwest::Method::GET,
            &format!("/builds/{id}/logs?limit=10000"),
        ))
        .await;
        let lines: Vec<&str> = page["lines"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|l| l["line"].as_str())
            .collect();
        let tail = &lines[lines.len().saturating_sub(150)..];
        panic!("{full:#}\n{}", tail.join("\n"));
    }
    assert_eq!(full["commit"], commit.as_str());
    assert_eq!(full["signer"], fpr.as_str());
    let reference = full["reference"].as_str().unwrap().to_string();
    let index = full["index_digest"].as_str().unwrap().to_string();
    eprintln!("habd_image: {reference} (profile {})", profile());
    for platform in ["linux/amd64", "linux/arm64"] {
        let smoke = full["verifications"][0]["report"]["smoke"][platform]["output"]
            .as_str()
            .unwrap_or_else(|| panic!("no smoke output for {platform}: {full:#}"));
        assert!(
            smoke.contains(&format!("habd {version}")),
            "{platform}: {smoke}"
        );
    }
    // edge follows verified builds by itself.
    let (_, channels) = call(habd.api(reqwest::Method::GET, "/pipelines/hab/channels")).await;
    assert!(channels.to_string().contains(&index), "{channels:#}");
    habd.stop().await;

    // Each platform's image, as a user runs it.
    for (platform, machine) in [("linux/amd64", "003e"), ("linux/arm64", "00b7")] {
        let out = docker_run(platform, &reference, &["habd", "--version"]);
        assert!(
            out.contains(&format!("habd {version}")),
            "{platform}: {out}"
        );
        let out = docker_run(platform, &reference, &["habctl", "--version"]);
        assert!(
            out.contains(&format!("habctl {version}")),
            "{platform}: {out}"
        );
        for bin in ["/usr/local/bin/habd", "/usr/local/bin/habctl"] {
            assert_eq!(
                elf_machine(platform, &reference, bin),
                machine,
                "{platform} {bin}"
            );
        }
        let arch = platform.trim_start_matches("linux/");
        let inspect = run(Command::new("skopeo").args([
            "inspect",
            "--tls-verify=false",
            "--config",
            "--override-os",
            "linux",
            "--override-arch",
            arch,
            &format!("docker://{reference}"),
        ]));
        let config: Value = serde_json::from_str(&inspect).unwrap();
        assert_eq!(config["architecture"], arch, "{config:#}");
        let user = config["config"]["User"].as_str().unwrap_or("");
        let uid = user.split(':').next().unwrap();
        assert!(
            !uid.is_empty() && uid != "0" && uid != "root",
            "{platform}: the image runs as {user:?}"
        );
        assert_eq!(uid, "10001", "the chart's runAsUser");
        assert!(
            config["config"]["Volumes"]
                .as_object()
                .is_some_and(|v| v.contains_key("/var/lib/hab")),
            "{config:#}"
        );
        assert_eq!(
            config["config"]["Labels"]["org.opencontainers.image.revision"],
            commit.as_str()
        );
        // Pulled by `docker run`: removed, so the next platform's pull
        // leaves nothing behind.
        docker(&["image", "rm", "-f", &reference]);
    }

    // habd serves on a read-only root filesystem, its state in the volume,
    // /tmp a tmpfs, the configuration mounted read-only, as the chart runs
    // it; habctl in the same image talks to it.
    serves_on_a_read_only_root(&world, &reference);
    docker(&["image", "rm", "-f", &reference]);
    drop(registry);
}

fn serves_on_a_read_only_root(world: &World, reference: &str) {
    use std::os::unix::fs::PermissionsExt;
    let etc = world.path("etc-hab");
    std::fs::create_dir_all(etc.join("pipelines")).unwrap();
    std::fs::write(
        etc.join("hab.toml"),
        "listen = \"127.0.0.1:8470\"\nstate_dir = \"/var/lib/hab\"\npipelines_dir = \"pipelines\"\n\
         recipes_dir = \"/usr/share/hab/dockerfiles\"\n",
    )
    .unwrap();
    for d in [etc.clone(), etc.join("pipelines")] {
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::fs::set_permissions(etc.join("hab.toml"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let name = format!("hab-habd-image-{}", std::process::id());
    let container = docker(&[
        "run",
        "-d",
        "--name",
        &name,
        "--platform",
        "linux/amd64",
        "--read-only",
        "--tmpfs",
        "/tmp",
        "--network",
        "none",
        "-v",
        &format!("{}:/etc/hab:ro", etc.display()),
        reference,
    ]);
    struct Remove(String);
    impl Drop for Remove {
        fn drop(&mut self) {
            let _ = Command::new("/usr/bin/docker")
                .args(["rm", "-f", "-v", &self.0])
                .output();
        }
    }
    let _remove = Remove(container.trim().to_string());
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        let out = Command::new("/usr/bin/docker")
            .args([
                "exec",
                &name,
                "habctl",
                "--server",
                "http://127.0.0.1:8470",
                "--token-file",
                "/var/lib/hab/api-token",
                "status",
            ])
            .output()
            .unwrap();
        if out.status.success() {
            break String::from_utf8_lossy(&out.stdout).into_owned();
        }
        assert!(
            Instant::now() < deadline,
            "habd does not answer on a read-only root: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            docker(&["logs", &name])
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(status.contains(env!("CARGO_PKG_VERSION")), "{status}");
    let state = docker(&["exec", &name, "ls", "-n", "/var/lib/hab"]);
    assert!(state.contains("hab.sqlite3"), "{state}");
    assert!(state.contains(" 10001 "), "{state}");
    let id = docker(&["exec", &name, "id", "-u"]);
    assert_eq!(id.trim(), "10001");
}

#[test]
fn the_shipped_pipeline_passes_habd_check_and_builds_habd() {
    let root = repo_root();
    let out = Command::new(env!("CARGO_BIN_EXE_habd"))
        .args([
            "check",
            "--config",
            &format!("{}/examples/hab.toml", root.display()),
        ])
        .env_remove("HAB_PIPELINES_DIR")
        .env_remove("HAB_STATE_DIR")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(", hab"), "{stdout}");
    let config =
        Config::load(Some(&root.join("examples/hab.toml")), &Overrides::default()).unwrap();
    let hab = config.pipelines.iter().find(|p| p.name == "hab").unwrap();
    assert!(!hab.implementation.is_node());
    assert_eq!(hab.policy, hab::config::SignaturePolicy::Signed);
    let build = hab.build.as_ref().unwrap();
    assert_eq!(build.recipe, "habd");
    assert_eq!(build.smoke, ["habd", "--version"]);
    assert_eq!(build.platforms.len(), 2);
    assert_eq!(hab.image_repository.as_deref(), Some("hab/habd"));
    assert!(config.recipe_dir(hab).unwrap().join("Dockerfile").is_file());
}
