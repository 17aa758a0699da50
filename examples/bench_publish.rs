//! Benchmark: publishing a new two-platform image (hab) against `docker push`
//! of the same two images plus the index pushed with skopeo, in one run.
//!
//!     cargo run --release --example bench_publish
//!
//! Needs what `scripts/setup.sh` starts (dockerd, binfmt, docker-registry,
//! skopeo). The images hold real compiled code (files from /usr/lib and
//! /usr/bin, different for each platform) so compression behaves as it does
//! on node images. Every round gets a fresh registry, so neither side finds
//! blobs the other uploaded; the order alternates between rounds. Prints the
//! median times, their ratio (target ≤ 0.8), the bytes a re-publish of an
//! existing image uploads (target 0), and what signing and attaching the
//! build's provenance adds to hab's publish (target < 5%).

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use hab::{
    builder::engine::{BuildRequest, Engine},
    config::{BuilderConfig, RegistryConfig},
    provenance::{BuildFacts, PlatformFacts, Provenance, SigningKey},
    registry::{IndexEntry, Registry},
};

const ROUNDS: usize = 3;
/// Uncompressed payload per platform: two platforms of 64 MB each, about
/// 70 MB of layers once compressed.
const PAYLOAD: usize = 64 * 1024 * 1024;
const DOCKER: &str = "/usr/bin/docker";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Real compiled code: regular files under `dirs`, skipping the first
/// `skip` bytes' worth, until `size` bytes.
fn payload(dirs: &[&str], skip: usize, size: usize) -> Vec<u8> {
    let mut files = Vec::new();
    let mut stack: Vec<PathBuf> = dirs.iter().map(PathBuf::from).collect();
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let Ok(m) = std::fs::symlink_metadata(e.path()) else {
                continue;
            };
            if m.is_dir() {
                stack.push(e.path());
            } else if m.is_file() && m.len() > 4096 {
                files.push(e.path());
            }
        }
    }
    files.sort();
    let mut out = Vec::with_capacity(size);
    let mut skipped = 0;
    for f in files {
        let Ok(bytes) = std::fs::read(&f) else {
            continue;
        };
        if skipped < skip {
            skipped += bytes.len();
            continue;
        }
        out.extend_from_slice(&bytes);
        if out.len() >= size {
            out.truncate(size);
            return out;
        }
    }
    assert!(out.len() >= size / 2, "not enough files for the payload");
    out
}

fn context(dir: &Path) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    tar.append_dir_all(".", dir).unwrap();
    tar.into_inner().unwrap()
}

struct TestRegistry {
    child: Child,
    port: u16,
}

impl TestRegistry {
    fn start(dir: &Path) -> Self {
        let port = free_port();
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(
            dir.join("config.yml"),
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
                 http:\n  addr: 127.0.0.1:{port}\n",
                dir.join("data").display()
            ),
        )
        .unwrap();
        let child = Command::new("docker-registry")
            .args(["serve", &dir.join("config.yml").to_string_lossy()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry (run scripts/setup.sh)");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "registry did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        TestRegistry { child, port }
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// hab: export each platform's image from the engine, publish it, push the
/// index; then sign its provenance and attach it. Returns the publish's time
/// (without the attestation), the bytes uploaded, and the attestation's time.
async fn publish_hab(
    engine: &Engine,
    registry: &Registry,
    provenance: &Provenance,
    images: &[(&str, String)],
    tmp: &Path,
) -> (Duration, i64, Duration) {
    let t = Instant::now();
    let mut entries = Vec::new();
    let mut uploaded = 0;
    for (platform, tag) in images {
        let saved = tmp.join("saved.tar");
        engine.export(tag, &saved).await.unwrap();
        let p = registry
            .publish_saved(&saved, "bench/hab", Arc::new(|_, _| {}))
            .await
            .unwrap();
        uploaded += p.bytes_pushed;
        entries.push(IndexEntry {
            platform: platform.to_string(),
            digest: p.digest,
            size: p.size,
            media_type: p.media_type,
        });
    }
    let (index, index_bytes) = registry
        .push_index("bench/hab", &entries, &BTreeMap::new(), &["latest".into()])
        .await
        .unwrap();
    let published = t.elapsed();

    // What habd signs when a build verifies: a statement with both
    // platforms, the maintainer's signed tag object (a real one is about a
    // kilobyte) and the verification report.
    let t = Instant::now();
    let signature = format!(
        "-----BEGIN PGP SIGNATURE-----\n\n{}\n-----END PGP SIGNATURE-----\n",
        "iQIzBAABCgAdFiEE".repeat(50)
    );
    let facts = BuildFacts {
        repository: "bench/hab".into(),
        index_digest: index,
        platforms: entries
            .iter()
            .map(|e| PlatformFacts {
                platform: e.platform.clone(),
                digest: e.digest.clone(),
                build_key: format!("sha256:{}", "1".repeat(64)),
                args: BTreeMap::from([("VERSION".to_string(), "v28.1".to_string())]),
                base_image: Some(format!("bench/base@sha256:{}", "2".repeat(64))),
            })
            .collect(),
        pipeline: "bitcoind".into(),
        upstream: "https://github.com/bitcoin/bitcoin".into(),
        ref_name: "refs/tags/v28.1".into(),
        commit: "3".repeat(40),
        version: "v28.1".into(),
        recipe: "bitcoind".into(),
        recipe_digest: format!("sha256:{}", "4".repeat(64)),
        ref_oid: "5".repeat(40),
        tag_object: Some(
            format!(
                "object {}\ntype commit\ntag v28.1\ntagger A Maintainer <m@example.org> 1700000000 +0000\n\nBitcoin Core v28.1\n{signature}",
                "3".repeat(40)
            )
            .into_bytes(),
        ),
        verdict: "verified".into(),
        verdict_text: "verified".into(),
        signer: Some("6".repeat(40)),
        builder_id: provenance.builder_id(),
        build_id: 1,
        started: chrono::Utc::now(),
        finished: chrono::Utc::now(),
        verification: serde_json::json!({"ok": true, "read_back": {"blobs_checked": 6}}),
    };
    provenance
        .attest(&facts, index_bytes.len() as i64)
        .await
        .unwrap();
    (published, uploaded, t.elapsed())
}

/// The baseline: `docker push` of each image, then skopeo pushes the index.
fn publish_docker(host: &str, images: &[(&str, String)], tmp: &Path) -> Duration {
    let t = Instant::now();
    let mut manifests = Vec::new();
    for (platform, tag) in images {
        let arch = platform.trim_start_matches("linux/");
        let target = format!("{host}/bench/docker:{arch}");
        run(Command::new(DOCKER).args(["tag", tag, &target]));
        let out = run(Command::new(DOCKER).args(["push", &target]));
        // "<tag>: digest: sha256:… size: N"
        let line = out.lines().find(|l| l.contains("digest: ")).unwrap();
        let digest = line
            .split("digest: ")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap();
        let size: i64 = line.split("size: ").nth(1).unwrap().trim().parse().unwrap();
        manifests.push(serde_json::json!({
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "digest": digest, "size": size,
            "platform": {"os": "linux", "architecture": arch},
        }));
    }
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": manifests,
    }))
    .unwrap();
    // An OCI layout holding just the index; skopeo copies the index only.
    let layout = tmp.join("layout");
    let _ = std::fs::remove_dir_all(&layout);
    std::fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
    let hex = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&index))
    };
    std::fs::write(layout.join("blobs/sha256").join(&hex), &index).unwrap();
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    std::fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "manifests": [{
                "mediaType": "application/vnd.oci.image.index.v1+json",
                "digest": format!("sha256:{hex}"), "size": index.len(),
                "annotations": {"org.opencontainers.image.ref.name": "latest"},
            }],
        }))
        .unwrap(),
    )
    .unwrap();
    run(Command::new("skopeo").args([
        "copy",
        "-q",
        "--multi-arch",
        "index-only",
        "--dest-tls-verify=false",
        &format!("oci:{}:latest", layout.display()),
        &format!("docker://{host}/bench/docker:latest"),
    ]));
    t.elapsed()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    let tmp = tempfile::tempdir().unwrap();
    let ctx = tmp.path().join("context");
    std::fs::create_dir_all(&ctx).unwrap();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    for arch in ["amd64", "arm64"] {
        std::fs::copy(
            root.join(format!("dockerfiles/fixture/base/busybox-{arch}")),
            ctx.join(format!("busybox-{arch}")),
        )
        .expect("dockerfiles/fixture/base/busybox-* (run scripts/setup.sh)");
    }
    let dirs = ["/usr/lib", "/usr/bin", "/usr/libexec"];
    std::fs::write(ctx.join("payload-amd64.bin"), payload(&dirs, 0, PAYLOAD)).unwrap();
    std::fs::write(
        ctx.join("payload-arm64.bin"),
        payload(&dirs, 2 * PAYLOAD, PAYLOAD),
    )
    .unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM scratch\nARG TARGETARCH\nCOPY busybox-${TARGETARCH} /bin/busybox\n\
         COPY payload-${TARGETARCH}.bin /payload.bin\n",
    )
    .unwrap();

    let builder = BuilderConfig {
        name: "local".into(),
        endpoint: "unix:///var/run/docker.sock".into(),
        platforms: vec![
            "linux/amd64".parse().unwrap(),
            "linux/arm64".parse().unwrap(),
        ],
        emulated: vec![],
        tls_ca: None,
        tls_cert: None,
        tls_key: None,
    };
    let engine = Engine::connect(&builder)
        .await
        .expect("dockerd (run scripts/setup.sh)");
    let mut images = Vec::new();
    let body = context(&ctx);
    for platform in ["linux/amd64", "linux/arm64"] {
        let tag = format!(
            "hab-bench/payload:{}",
            platform.trim_start_matches("linux/")
        );
        let args = BTreeMap::new();
        engine
            .build(
                BuildRequest {
                    context: body.clone(),
                    platform,
                    args: &args,
                    tag: &tag,
                    registry_auth: None,
                },
                &mut |_| {},
            )
            .await
            .unwrap();
        images.push((platform, tag));
    }
    println!(
        "images: linux/amd64 + linux/arm64, {} MB of uncompressed layers in all; {ROUNDS} rounds, a fresh registry each",
        2 * PAYLOAD / (1024 * 1024)
    );

    let (key, _) = SigningKey::load_or_create(&tmp.path().join("habd-signing.key")).unwrap();
    let key = Arc::new(key);
    let (mut hab_times, mut docker_times, mut attest_times) = (Vec::new(), Vec::new(), Vec::new());
    let mut republished = None;
    for round in 0..ROUNDS {
        let reg = TestRegistry::start(&tmp.path().join(format!("registry-{round}")));
        let host = format!("127.0.0.1:{}", reg.port);
        let registry = Registry::new(&RegistryConfig {
            url: format!("http://{host}").parse().unwrap(),
            username: None,
            password_file: None,
            pull_host: None,
            timeout: hab::config::DEFAULT_REGISTRY_TIMEOUT,
        })
        .unwrap();
        let provenance = Provenance::new(key.clone(), registry.clone());
        let order = if round % 2 == 0 {
            [true, false]
        } else {
            [false, true]
        };
        for hab_first in order {
            if hab_first {
                let (t, up, a) =
                    publish_hab(&engine, &registry, &provenance, &images, tmp.path()).await;
                println!(
                    "  round {round}: hab    {:>7.2} s ({:.1} MB uploaded) + attestation {:.1} ms",
                    t.as_secs_f64(),
                    up as f64 / 1e6,
                    a.as_secs_f64() * 1e3
                );
                hab_times.push(t);
                attest_times.push(a);
                if republished.is_none() {
                    let (_, again, _) =
                        publish_hab(&engine, &registry, &provenance, &images, tmp.path()).await;
                    republished = Some(again);
                }
            } else {
                let t = publish_docker(&host, &images, tmp.path());
                println!("  round {round}: docker {:>7.2} s", t.as_secs_f64());
                docker_times.push(t);
                for (platform, _) in &images {
                    let arch = platform.trim_start_matches("linux/");
                    let _ = Command::new(DOCKER)
                        .args(["rmi", &format!("{host}/bench/docker:{arch}")])
                        .output();
                }
            }
        }
    }
    for (_, tag) in &images {
        let _ = Command::new(DOCKER).args(["rmi", tag]).output();
    }
    let (h, d) = (median(hab_times), median(docker_times));
    println!(
        "hab publish (export, compress, push, index):   {:.2} s (median)",
        h.as_secs_f64()
    );
    println!(
        "docker push x2 + skopeo index push:            {:.2} s (median)",
        d.as_secs_f64()
    );
    println!(
        "ratio hab/docker: {:.2} (target <= 0.8)",
        h.as_secs_f64() / d.as_secs_f64()
    );
    println!(
        "re-publishing the same images uploaded {} blob bytes (target 0)",
        republished.unwrap_or(-1)
    );
    let a = median(attest_times);
    println!(
        "attestation (sign, upload, fallback tag):      {:.1} ms (median)",
        a.as_secs_f64() * 1e3
    );
    println!(
        "ratio attestation/publish: {:.4} = {:.2}% added to a publish (target < 5%)",
        a.as_secs_f64() / h.as_secs_f64(),
        100.0 * a.as_secs_f64() / h.as_secs_f64()
    );
}
