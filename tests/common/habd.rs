//! habd in this process, on a free port of 127.0.0.1, and JSON helpers.

use std::{sync::Arc, time::Duration};

use hab::{
    config::{Config, Overrides},
    server::{serve_on, AppState},
    store::Store,
};
use serde_json::Value;

use super::World;

pub const TOKEN: &str = "test-token-0123456789";

pub struct Habd {
    pub url: String,
    pub store: Store,
    /// habd's services, when it runs in this process.
    pub state: Option<AppState>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Habd {
    /// habd on the embedded defaults, over the world's state and pipelines.
    pub async fn start(world: &World) -> Self {
        let config = Config::load(
            None,
            &Overrides {
                listen: None,
                state_dir: Some(world.path("state")),
                pipelines_dir: Some(world.path("pipelines")),
                recipes_dir: None,
            },
        )
        .unwrap();
        Self::start_config(config).await
    }

    /// habd on a loaded configuration.
    pub async fn start_config(config: Config) -> Self {
        std::fs::create_dir_all(&config.state_dir).unwrap();
        let store = Store::open(&config.state_dir.join("hab.sqlite3")).unwrap();
        let state = AppState::new(Arc::new(config), store.clone(), vec![TOKEN.into()]).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(serve_on(state.clone(), listener, async {
            let _ = rx.await;
        }));
        Habd {
            url,
            store,
            state: Some(state),
            stop: Some(tx),
            task: Some(task),
        }
    }

    /// An authorized API request (`path` under /api/v1).
    pub fn api(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        client()
            .request(method, format!("{}/api/v1{path}", self.url))
            .bearer_auth(TOKEN)
    }

    /// `GET /metrics`, as text.
    pub async fn metrics(&self) -> String {
        client()
            .get(format!("{}/metrics", self.url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// `POST /api/v1/pipelines/node/sync`.
    pub async fn sync_node(&self) -> (u16, Value) {
        call(self.api(reqwest::Method::POST, "/pipelines/node/sync")).await
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            stop.send(()).unwrap();
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }

    /// The API of a habd running elsewhere (a child process) that accepts
    /// [`TOKEN`], and its store opened alongside.
    pub fn external(url: String, store: Store) -> Self {
        Habd {
            url,
            store,
            state: None,
            stop: None,
            task: None,
        }
    }
}

/// Runs the `habctl` binary against the habd at `url` with [`TOKEN`].
pub fn habctl_at(url: &str, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_habctl"))
        .args(args)
        .env("HAB_SERVER", url)
        .env("HAB_TOKEN", TOKEN)
        .env_remove("HAB_TOKEN_FILE")
        .output()
        .unwrap()
}

pub fn client() -> reqwest::Client {
    reqwest::Client::new()
}

pub async fn call(req: reqwest::RequestBuilder) -> (u16, Value) {
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let body = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&body).unwrap_or(Value::String(body)),
    )
}

/// `habd serve` as a child process, to be killed with SIGKILL.
pub struct HabdProcess {
    child: std::process::Child,
    port: u16,
    config: std::path::PathBuf,
    sync_on_start: bool,
}

impl HabdProcess {
    pub fn start(config: &std::path::Path, port: u16) -> Self {
        Self::start_with(config, port, true)
    }

    /// Without the sync of every pipeline at start, so what runs after a
    /// restart is only what the queue kept.
    pub fn start_quiet(config: &std::path::Path, port: u16) -> Self {
        Self::start_with(config, port, false)
    }

    fn start_with(config: &std::path::Path, port: u16, sync_on_start: bool) -> Self {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(config.with_file_name("habd.log"))
            .unwrap();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_habd"))
            .args(["serve", "--config"])
            .arg(config)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args([
                "--sync-on-start",
                if sync_on_start { "true" } else { "false" },
            ])
            .env_remove("HAB_STATE_DIR")
            .env_remove("HAB_PIPELINES_DIR")
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        super::wait_for_port(port);
        HabdProcess {
            child,
            port,
            config: config.to_path_buf(),
            sync_on_start,
        }
    }

    pub fn kill9_and_restart(&mut self) {
        self.child.kill().unwrap(); // SIGKILL
        self.child.wait().unwrap();
        *self = HabdProcess::start_with(&self.config.clone(), self.port, self.sync_on_start);
    }
}

impl Drop for HabdProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until the rollout has recorded a step of `kind`.
pub async fn until_step(habd: &Habd, id: i64, kind: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let (_, r) = call(habd.api(reqwest::Method::GET, &format!("/rollouts/{id}"))).await;
        if r["steps"]
            .as_array()
            .is_some_and(|s| s.iter().any(|s| s["kind"] == kind))
        {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "no {kind} step: {r}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
