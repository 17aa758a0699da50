//! Sealed builders: a builder's engine API over the network answers only
//! to a client certificate its CA signed. hab builds through such a
//! builder; nothing without the certificate gets in: not plain HTTP, not
//! TLS without a client certificate, not hab's own client configured
//! without one, and not a recipe's `RUN` step, even one on the engine's
//! own network (host networking, the most a recipe could be given).

mod common;

use std::path::{Path, PathBuf};

use common::*;
use hab::tls::Authority;

/// A private dockerd with a mutual-TLS listener on 127.0.0.1, its CA and a
/// client certificate (the files hab's `[[builder]]` takes, and the docker
/// CLI's `DOCKER_CERT_PATH` layout: ca.pem, cert.pem, key.pem).
struct TlsBuilder {
    dockerd: PrivateDockerd,
    port: u16,
    client_dir: PathBuf,
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

impl TlsBuilder {
    fn start(dir: &Path) -> Self {
        let ca = Authority::new("hab builder CA").unwrap();
        let server = ca
            .server(&["127.0.0.1".into(), "localhost".into()])
            .unwrap();
        let client = ca.client("habd").unwrap();
        let server_dir = dir.join("server-tls");
        let client_dir = dir.join("client-tls");
        for d in [&server_dir, &client_dir] {
            std::fs::create_dir_all(d).unwrap();
            write(&d.join("ca.pem"), &ca.cert_pem);
        }
        write(&server_dir.join("cert.pem"), &server.cert_pem);
        write(&server_dir.join("key.pem"), &server.key_pem);
        write(&client_dir.join("cert.pem"), &client.cert_pem);
        write(&client_dir.join("key.pem"), &client.key_pem);
        let port = free_port();
        let s = |f: &str| server_dir.join(f).to_string_lossy().into_owned();
        let dockerd = PrivateDockerd::start_with(
            &dir.join("d"),
            vec![
                "--host".into(),
                format!("tcp://127.0.0.1:{port}"),
                "--tlsverify".into(),
                format!("--tlscacert={}", s("ca.pem")),
                format!("--tlscert={}", s("cert.pem")),
                format!("--tlskey={}", s("key.pem")),
            ],
        );
        TlsBuilder {
            dockerd,
            port,
            client_dir,
        }
    }

    fn endpoint(&self) -> String {
        format!("tcp://127.0.0.1:{}", self.port)
    }

    /// The `[[builder]]` table for hab.
    fn builder_toml(&self, platforms: &str) -> String {
        let c = |f: &str| self.client_dir.join(f).display().to_string();
        format!(
            "[[builder]]\nname = \"sealed\"\nendpoint = \"{}\"\nplatforms = {platforms}\n\
             emulated = [\"linux/arm64\"]\n\
             tls_ca = \"{}\"\ntls_cert = \"{}\"\ntls_key = \"{}\"\n",
            self.endpoint(),
            c("ca.pem"),
            c("cert.pem"),
            c("key.pem")
        )
    }

    /// The docker CLI, over the mutual-TLS listener.
    fn docker_tls(&self) -> std::process::Command {
        let mut c = std::process::Command::new("/usr/bin/docker");
        c.arg("--host")
            .arg(self.endpoint())
            .env("DOCKER_TLS_VERIFY", "1")
            .env("DOCKER_CERT_PATH", &self.client_dir)
            .env("DOCKER_BUILDKIT", "1");
        c
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_engine_answers_only_to_a_client_certificate_and_no_recipe_step_gets_in() {
    let dir = tempfile::Builder::new()
        .prefix("htls")
        .tempdir_in("/tmp")
        .unwrap();
    let b = TlsBuilder::start(dir.path());
    let url = format!("127.0.0.1:{}", b.port);

    // Plain HTTP: the listener is TLS only.
    let plain = reqwest::get(format!("http://{url}/version")).await.unwrap();
    assert_eq!(plain.status(), 400);
    assert!(plain.text().await.unwrap().contains("HTTPS server"));
    // TLS that trusts the engine but shows no client certificate.
    let ca = reqwest::Certificate::from_pem(&std::fs::read(b.client_dir.join("ca.pem")).unwrap())
        .unwrap();
    let anonymous = reqwest::Client::builder()
        .add_root_certificate(ca)
        .build()
        .unwrap();
    let refused = anonymous.get(format!("https://{url}/version")).send().await;
    assert!(
        refused.is_err(),
        "answered without a client certificate: {refused:?}"
    );
    // hab's own client, configured without TLS material: refused before
    // any byte is sent.
    let e = hab::builder::engine::connect_docker(&b.endpoint(), None)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("mutual TLS"), "{e}");
    // With the client certificate, it answers.
    let c = |f: &str| b.client_dir.join(f);
    let docker = hab::builder::engine::connect_docker(
        &b.endpoint(),
        Some((&c("key.pem"), &c("cert.pem"), &c("ca.pem"))),
    )
    .await
    .unwrap();
    assert!(docker.version().await.unwrap().api_version.is_some());

    // A recipe whose RUN step calls the engine's API at the address the
    // builder listens on, from the host's own network. It must reach the
    // port (the engine's "HTTPS server" refusal proves it) and get nothing
    // else; against an engine in the clear it would read /version and the
    // step fails the build.
    let ctx = dir.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::copy(
        repo_root().join("dockerfiles/fixture/base/busybox-amd64"),
        ctx.join("busybox"),
    )
    .unwrap();
    write(
        &ctx.join("Dockerfile"),
        &format!(
            "FROM scratch\nCOPY busybox /bin/busybox\n\
             RUN [\"/bin/busybox\", \"sh\", \"-c\", \"\
             out=$(/bin/busybox wget -q -O- http://{url}/version 2>&1) && \
             {{ printf 'ENGINE %s: %s\\n' ANSWERED \\\"$out\\\"; exit 1; }}; \
             echo engine said: $out; \
             case $out in *400*) printf 'RECIPE %s\\n' REFUSED;; \
             *) printf 'ENGINE NOT %s\\n' REACHED; exit 2;; esac\"]\n"
        ),
    );
    let out = b
        .docker_tls()
        .args([
            "build",
            "--no-cache",
            "--progress=plain",
            "--network=host",
            "-t",
            "recipe-probe",
        ])
        .arg(&ctx)
        .output()
        .unwrap();
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{log}");
    assert!(log.contains("RECIPE REFUSED"), "{log}");
    assert!(!log.contains("ENGINE ANSWERED"), "{log}");
    drop(b.dockerd);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn habd_builds_and_verifies_through_a_mutual_tls_builder() {
    let bw = BuildWorld::new();
    let registry = TestRegistry::start(&bw.world.path("registry"), None, None);
    let dir = tempfile::Builder::new()
        .prefix("htls")
        .tempdir_in("/tmp")
        .unwrap();
    let b = TlsBuilder::start(dir.path());
    let platforms = r#"["linux/amd64", "linux/arm64"]"#;
    std::fs::write(
        bw.world.path("hab.toml"),
        format!(
            "state_dir = \"state\"\npipelines_dir = \"pipelines\"\n\
             [registry]\nurl = \"{}\"\n{}",
            registry.url(),
            b.builder_toml(platforms)
        ),
    )
    .unwrap();
    bw.write_pipeline(
        "node",
        &fixture_recipe(),
        platforms,
        r#"["fixture-node", "--version"]"#,
        "",
    );
    let habd = Habd::start_config(bw.load()).await;
    assert_eq!(habd.sync_node().await.0, 200);
    let (s, started) = start_build(&habd, "v1.0.0").await;
    assert!(s == 202 || s == 200, "{started}");
    let id = started["id"].as_i64().unwrap();
    let build = wait_build(&habd, id).await;
    let log = logs(&habd, id).await;
    assert_eq!(build["state"], "verified", "{build:#}\n{log}");
    assert!(log.contains("sealed"), "the build names its builder: {log}");
    habd.stop().await;
}

#[test]
fn a_builder_or_target_on_tcp_without_tls_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hab.toml");
    std::fs::write(
        &path,
        "[[builder]]\nname = \"b\"\nendpoint = \"tcp://10.0.0.5:2375\"\n\
         platforms = [\"linux/amd64\"]\n\
         [[target]]\nname = \"t\"\nkind = \"docker\"\nendpoint = \"tcp://10.0.0.6:2376\"\n\
         tls_ca = \"ca.pem\"\n",
    )
    .unwrap();
    let e = hab::config::Config::load(Some(&path), &Default::default()).unwrap_err();
    let text = e.to_string();
    assert!(text.contains("hab.toml:3:"), "{text}");
    assert!(text.contains("builder[0].endpoint"), "{text}");
    assert!(text.contains("tls_ca, tls_cert, tls_key"), "{text}");
    assert!(text.contains("target[0].endpoint"), "{text}");
    assert!(text.contains("tls_cert, tls_key"), "{text}");
}
