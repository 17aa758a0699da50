//! The fixture node speaking Bitcoin Core's JSON-RPC (the CGI of
//! dockerfiles/fixture, the one the fixture images run), served here by the
//! host's busybox httpd on 127.0.0.1 so that a test can start several in
//! a second, give each its own node.conf, and read what each was asked
//! from the node's own request log.

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use tempfile::TempDir;

use super::{free_port, repo_root};

/// Its RPC user and password.
pub const CORE_FIXTURE_USER: &str = "hab";
pub const CORE_FIXTURE_PASSWORD: &str = "fixture-pass";

/// One fixture node, stopped when dropped.
pub struct CoreFixture {
    child: Child,
    dir: TempDir,
    port: u16,
}

impl CoreFixture {
    /// A node behaving as `node_conf` says (e.g. "height=120\n",
    /// "behaviour=ibd\nheight=120\n", "behaviour=lagging\nheight=120\nlag=7\n").
    pub fn start(node_conf: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("source");
        let state = dir.path().join("state");
        std::fs::create_dir_all(&source).unwrap();
        std::fs::create_dir_all(&state).unwrap();
        std::fs::write(source.join("node.conf"), node_conf).unwrap();
        let started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        std::fs::write(state.join("started"), format!("{started}\n")).unwrap();
        let conf = dir.path().join("httpd.conf");
        std::fs::write(
            &conf,
            format!("/:{CORE_FIXTURE_USER}:{CORE_FIXTURE_PASSWORD}\n"),
        )
        .unwrap();
        let rootfs = repo_root().join("dockerfiles/fixture/rootfs");
        let port = free_port();
        let child = Command::new("busybox")
            .args(["httpd", "-f", "-p", &format!("127.0.0.1:{port}"), "-h"])
            .arg(rootfs.join("srv/rpc"))
            .arg("-c")
            .arg(&conf)
            .env("FIXTURE_LIB", rootfs.join("usr/lib/fixture-node"))
            .env("FIXTURE_SOURCE", &source)
            .env("FIXTURE_STATE", &state)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("busybox httpd (Debian's busybox-static: bash scripts/setup.sh)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "the fixture node did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { child, dir, port }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("state/requests")
    }

    /// Requests for `method` the node received (its own log).
    pub fn saw(&self, method: &str) -> usize {
        std::fs::read_to_string(self.log())
            .unwrap_or_default()
            .lines()
            .filter(|l| *l == method)
            .count()
    }

    /// Every request the node received.
    pub fn requests(&self) -> usize {
        std::fs::read_to_string(self.log())
            .unwrap_or_default()
            .lines()
            .count()
    }

    /// Forgets what it was asked so far.
    pub fn reset_log(&self) {
        let _ = std::fs::remove_file(self.log());
    }

    /// A call to the node itself: the whole JSON-RPC answer.
    pub async fn call(&self, method: &str, params: serde_json::Value) -> serde_json::Value {
        reqwest::Client::new()
            .post(self.url())
            .basic_auth(CORE_FIXTURE_USER, Some(CORE_FIXTURE_PASSWORD))
            .json(&serde_json::json!({"jsonrpc": "1.0", "id": "t", "method": method, "params": params}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// The front door's backend for this node.
    pub fn backend(&self, name: &str) -> hab::gateway::Backend {
        hab::gateway::Backend {
            name: name.into(),
            url: self.url(),
            user: CORE_FIXTURE_USER.into(),
            password: CORE_FIXTURE_PASSWORD.into(),
            dialect: hab::gateway::Dialect::Core,
            hold: None,
            http: None,
            address: None,
        }
    }
}

impl Drop for CoreFixture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
