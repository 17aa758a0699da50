//! A real registry per test (Debian's `docker-registry`, CNCF distribution)
//! on a free port of 127.0.0.1 with its own storage and JSON request log, and
//! a proxy that can corrupt the blobs it serves.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
};

use super::{free_port, wait_for_port};

/// A running registry.
pub struct TestRegistry {
    child: Child,
    pub port: u16,
    pub log: PathBuf,
    dir: PathBuf,
}

impl TestRegistry {
    /// Starts one under `dir`; with `htpasswd`, basic auth for that user.
    /// `public_port` is the port clients reach it on (a proxy's), for the
    /// upload URLs it hands out.
    pub fn start(dir: &Path, htpasswd: Option<(&str, &str)>, public_port: Option<u16>) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let port = free_port();
        let mut config = format!(
            "version: 0.1\n\
             log:\n  level: info\n  formatter: json\n\
             storage:\n  filesystem:\n    rootdirectory: {data}\n  delete:\n    enabled: true\n\
             http:\n  addr: 127.0.0.1:{port}\n",
            data = dir.join("data").display()
        );
        if let Some(p) = public_port {
            config.push_str(&format!("  host: http://127.0.0.1:{p}\n"));
        }
        if let Some((user, pass)) = htpasswd {
            let line = format!("{user}:{}\n", bcrypt::hash(pass, 5).unwrap());
            std::fs::write(dir.join("htpasswd"), line).unwrap();
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: hab-test\n    path: {}\n",
                dir.join("htpasswd").display()
            ));
        }
        std::fs::write(dir.join("config.yml"), config).unwrap();
        let log = dir.join("registry.log");
        std::fs::File::create(&log).unwrap();
        let child = Self::spawn(dir, &log);
        wait_for_port(port);
        TestRegistry {
            child,
            port,
            log,
            dir: dir.to_path_buf(),
        }
    }

    fn spawn(dir: &Path, log: &Path) -> Child {
        let append = || std::fs::OpenOptions::new().append(true).open(log).unwrap();
        Command::new("docker-registry")
            .args(["serve", &dir.join("config.yml").to_string_lossy()])
            .stdout(append())
            .stderr(Stdio::from(append()))
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start docker-registry: {e} (run `bash scripts/setup.sh` first)")
            })
    }

    /// Kills it with SIGKILL (a frozen one too): connections in flight are
    /// cut, and nothing listens on its port until [`TestRegistry::start_again`].
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts it again on the same port, configuration and storage (after
    /// [`TestRegistry::kill9`]); its request log goes on.
    pub fn start_again(&mut self) {
        assert!(
            self.child.try_wait().is_ok_and(|s| s.is_some()),
            "the registry still runs"
        );
        self.child = Self::spawn(&self.dir, &self.log);
        wait_for_port(self.port);
    }

    /// Freezes it with SIGSTOP: the kernel still accepts connections on its
    /// port, but nothing answers them until [`TestRegistry::thaw`] (or a
    /// kill), so a client's request is in flight for as long as a test needs.
    pub fn freeze(&self) {
        signal(&self.child, "-STOP");
    }

    /// Lets a frozen registry run again (SIGCONT).
    pub fn thaw(&self) {
        signal(&self.child, "-CONT");
    }

    /// `http://127.0.0.1:port`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `127.0.0.1:port`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Requests the registry logged, as (method, uri).
    pub fn requests(&self) -> Vec<(String, String)> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["msg"] == "response completed")
            .map(|v| {
                (
                    v["http.request.method"].as_str().unwrap_or("").to_string(),
                    v["http.request.uri"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    }

    /// Blob uploads the registry logged (POST/PUT/PATCH on blobs/uploads).
    pub fn blob_uploads(&self) -> usize {
        self.requests()
            .iter()
            .filter(|(m, u)| m != "GET" && m != "HEAD" && u.contains("/blobs/uploads"))
            .count()
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Registry data is large; remove it with the rest of the test's folder.
        let _ = std::fs::remove_dir_all(self.dir.join("data"));
    }
}

fn signal(child: &Child, signal: &str) {
    let ok = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "kill {signal} {} failed", child.id());
}

/// An HTTP proxy in front of a registry that, when `corrupt` is set, flips
/// one byte in the middle of every blob it serves (same length, wrong bytes).
pub struct CorruptingProxy {
    pub port: u16,
    pub corrupt: Arc<AtomicBool>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl CorruptingProxy {
    /// Listens on `port`, forwarding to `upstream` (`127.0.0.1:5000`).
    pub async fn start(port: u16, upstream: String) -> Self {
        use axum::{body::Body, extract::Request, response::Response};
        let corrupt = Arc::new(AtomicBool::new(false));
        let flag = corrupt.clone();
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let app = axum::Router::new().fallback(move |req: Request| {
            let http = http.clone();
            let upstream = upstream.clone();
            let flag = flag.clone();
            async move {
                let (parts, body) = req.into_parts();
                let path = parts
                    .uri
                    .path_and_query()
                    .map(|p| p.as_str().to_string())
                    .unwrap_or_default();
                let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
                let mut out =
                    http.request(parts.method.clone(), format!("http://{upstream}{path}"));
                for (k, v) in parts.headers.iter() {
                    if k != "host" {
                        out = out.header(k, v);
                    }
                }
                let resp = out.body(body).send().await.unwrap();
                let status = resp.status();
                let headers = resp.headers().clone();
                let mut bytes = resp.bytes().await.unwrap().to_vec();
                let is_blob = parts.method == "GET" && path.contains("/blobs/sha256:");
                if is_blob && flag.load(Ordering::SeqCst) && !bytes.is_empty() {
                    let mid = bytes.len() / 2;
                    bytes[mid] ^= 0xff;
                }
                let mut r = Response::builder().status(status);
                for (k, v) in headers.iter() {
                    if k != "transfer-encoding" {
                        r = r.header(k, v);
                    }
                }
                r.body(Body::from(bytes)).unwrap()
            }
        });
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        let tx = super::serve_in_background(listener, app);
        CorruptingProxy {
            port,
            corrupt,
            stop: Some(tx),
        }
    }
}

impl Drop for CorruptingProxy {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// Fails, with how to fix it, unless dockerd answers.
pub fn require_docker() {
    let ok = Command::new("/usr/bin/docker")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "dockerd does not answer on /var/run/docker.sock: run `bash scripts/setup.sh` (it starts dockerd, binfmt and the registry)"
    );
}
