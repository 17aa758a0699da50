//! Secret files hab writes (issue 13, item 4): the generated API token and
//! a fleet's generated RPC password are created mode 0600, made once and
//! reused; a password that cannot be stored is an error that stops the
//! node's update, never a new password. The real habd binary, a real
//! rollout on dockerd (a registry per test, the fixture node built by hab).

mod common;

use std::{
    os::unix::fs::PermissionsExt,
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use common::*;
use serde_json::json;

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o777
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.chars().all(|c| c.is_ascii_hexdigit())
}

/// habd with no API token configured generates one, mode 0600, and keeps
/// it across restarts; an emptied token file stops habd with how to fix it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_generated_api_token_is_0600_and_made_once() {
    let (world, _, _) = World::with_release();
    world.write_pipeline(&world.daemon.url("node.git"));
    let config = world.path("hab.toml");
    std::fs::write(
        &config,
        "state_dir = \"state\"\npipelines_dir = \"pipelines\"\n",
    )
    .unwrap();
    let port = free_port();
    let mut habd = HabdProcess::start_quiet(&config, port);
    let file = world.path("state/api-token");
    assert_eq!(mode(&file), 0o600, "{}", file.display());
    let token = std::fs::read_to_string(&file).unwrap().trim().to_string();
    assert!(is_hex(&token, 48), "{token:?}");
    let url = format!("http://127.0.0.1:{port}/api/v1/status");
    let (s, b) = call(client().get(&url).bearer_auth(&token)).await;
    assert_eq!(s, 200, "{b}");

    // Made once: the same token after a restart.
    habd.kill9_and_restart();
    assert_eq!(std::fs::read_to_string(&file).unwrap().trim(), token);
    assert_eq!(mode(&file), 0o600);
    let (s, b) = call(client().get(&url).bearer_auth(&token)).await;
    assert_eq!(s, 200, "{b}");
    drop(habd);

    // An emptied file is not silently replaced: habd says what to do.
    std::fs::write(&file, "").unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_habd"))
        .args(["serve", "--config"])
        .arg(&config)
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .env_remove("HAB_STATE_DIR")
        .env_remove("HAB_PIPELINES_DIR")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Generous: a loaded CI machine starts habd slowly; it must exit, not serve.
    let deadline = Instant::now() + Duration::from_secs(240);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("habd started with an empty token file");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("api-token is empty") && stderr.contains("delete it"),
        "{stderr}"
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "", "nothing lost");
}

/// A tmpfs of one page, filled up: a file can still be created in it, but
/// not written. Unmounted when dropped.
struct FullTmpfs {
    dir: std::path::PathBuf,
}

impl FullTmpfs {
    fn mount(dir: &Path) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        run(Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=4k", "tmpfs"])
            .arg(dir));
        let full = FullTmpfs {
            dir: dir.to_path_buf(),
        };
        let mut f = std::fs::File::create(dir.join("filler")).unwrap();
        let err = loop {
            if let Err(e) = std::io::Write::write_all(&mut f, &[0u8; 1024]) {
                break e;
            }
        };
        assert_eq!(err.raw_os_error(), Some(28), "ENOSPC: {err}");
        full
    }
}

impl Drop for FullTmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.dir).status();
    }
}

/// Two fleets rolled to the same build: one with a generated RPC password
/// (stored 0600 in the state folder, given to the node, and the same one
/// used by the health gates afterwards), one whose password file cannot be
/// written (its folder is a full filesystem): its rollout fails with the
/// reason and no node is left running with a password nobody kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_rpc_password_is_0600_made_once_and_a_failed_write_is_an_error() {
    let bw = BuildWorld::new();
    let registry = TestRegistry::start(&bw.world.path("registry"), None, None);
    bw.write_hab(&registry.url(), None);
    let full = FullTmpfs::mount(&bw.world.path("full"));
    let suffix = free_port();
    let (good, bad) = (format!("pwok{suffix}"), format!("pwbad{suffix}"));
    let mut hab = std::fs::read_to_string(bw.world.path("hab.toml")).unwrap();
    for (name, extra) in [
        (&good, ""),
        (&bad, "rpc_password_file = \"full/rpc-password\"\n"),
    ] {
        hab.push_str(&format!(
            "[[fleet]]\nname = \"{name}\"\npipeline = \"node\"\nchannel = \"stable\"\nnodes = 1\n\
             rpc_user = \"hab\"\n{extra}\
             [fleet.gates]\nmax_lag = 2\nsoak = \"1s\"\nready_timeout = \"20s\"\n"
        ));
    }
    std::fs::write(bw.world.path("hab.toml"), hab).unwrap();
    bw.write_pipeline(
        "node",
        &fixture_recipe(),
        AMD64,
        r#"["fixture-node", "--version"]"#,
        "[[channel]]\nname = \"stable\"\n",
    );
    let habd = Habd::start_config(bw.load()).await;
    habd.sync_node().await;
    let build = build_of(&habd, "node", "v1.0.0").await;
    let (s, p) = call(
        habd.api(reqwest::Method::POST, "/pipelines/node/promote")
            .json(&json!({ "target": build["id"].to_string(), "channel": "stable", "by": "test" })),
    )
    .await;
    assert_eq!(s, 200, "{p}");
    let mut outcomes = std::collections::HashMap::new();
    for r in p["rollouts"].as_array().unwrap() {
        let r = wait_rollout(&habd, r["id"].as_i64().unwrap()).await;
        outcomes.insert(r["fleet"].as_str().unwrap().to_string(), r);
    }

    // The generated password: 0600, given to the node, reused by the gates.
    let r = &outcomes[&good];
    assert_eq!(r["state"], "succeeded", "{r}");
    let file = bw.world.path(&format!("state/fleets/{good}.rpc-password"));
    assert_eq!(mode(&file), 0o600, "{}", file.display());
    let password = std::fs::read_to_string(&file).unwrap().trim().to_string();
    assert!(is_hex(&password, 36), "{password:?}");
    let node = format!("hab-{good}-0");
    let env = docker(&["inspect", "--format", "{{json .Config.Env}}", &node]);
    assert!(
        !env.contains(&password),
        "a password in the environment: {env}"
    );
    let conf = docker(&["exec", &node, "cat", "/run/hab/bitcoin.conf"]);
    assert!(
        conf.contains(&format!("rpcpassword={password}\n")),
        "the node runs with the stored password, in its config file: {conf}"
    );
    let out = run(habctl(&habd).args(["rollout", "status", &good]));
    assert!(out.contains("healthy at 850000"), "{out}");
    assert_eq!(
        std::fs::read_to_string(&file).unwrap().trim(),
        password,
        "made once"
    );

    // The password that cannot be stored: the update fails with the reason.
    let r = &outcomes[&bad];
    assert_eq!(r["state"], "failed", "{r}");
    let reason = r["reason"].as_str().unwrap();
    assert!(
        reason.contains(&format!("no RPC password for fleet {bad}"))
            && reason.contains("full/rpc-password")
            && reason.contains("No space left on device")
            && reason.contains("node 0"),
        "{reason}"
    );
    let st = Command::new("/usr/bin/docker")
        .args(["inspect", &format!("hab-{bad}-0")])
        .output()
        .unwrap();
    assert!(!st.status.success(), "no node was started for {bad}");
    let left: Vec<_> = std::fs::read_dir(&full.dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["filler"], "no half-written password left behind");

    habd.stop().await;
    drop(full);
    for f in [&good, &bad] {
        let _ = Command::new("/usr/bin/docker")
            .args(["rm", "-f", &format!("hab-{f}-0")])
            .output();
        let _ = Command::new("/usr/bin/docker")
            .args([
                "volume",
                "rm",
                "-f",
                &format!("hab-{f}-0-data"),
                &format!("hab-{f}-0-files"),
            ])
            .output();
    }
}
