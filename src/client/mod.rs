//! The API client habctl uses: JSON over HTTP with a bearer token, one
//! typed method per endpoint (the bodies are [`crate::api`]'s types), and
//! [`print`](mod@print), which renders them for people.

use serde::{de::DeserializeOwned, Serialize};

use crate::{
    api::{
        AckRequest, BuildView, BuildsQuery, CancelView, Chain, ChannelsView, ErrorBody, FleetChain,
        FleetView, LogPage, LogQuery, PipelineView, PromoteRequest, PromoteView, PruneReport,
        PruneRequest, QueueQuery, QueueView, RefView, RolloutView, StartBuildRequest, StatusView,
        Verification, VerifyRequest,
    },
    store::{Enqueued, RolloutRecord, RolloutState, StoredRef},
    sync::SyncReport,
};

pub mod local;
pub mod print;

/// Client errors, each saying what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// habd did not answer.
    #[error(
        "cannot reach habd at {server}: {reason} (is habd running? set --server or HAB_SERVER)"
    )]
    Unreachable {
        /// The server URL.
        server: String,
        /// Why.
        reason: String,
    },
    /// habd answered with an error.
    #[error("habd refused ({status}): {reason}")]
    Api {
        /// HTTP status.
        status: u16,
        /// The server's reason.
        reason: String,
    },
    /// habd answered something that is not the expected JSON.
    #[error("unexpected answer from habd: {0}")]
    Decode(String),
    /// What was asked for ran and failed (a build, a verification).
    #[error("{0}")]
    Failed(String),
}

/// An API client.
pub struct Client {
    http: reqwest::Client,
    server: String,
    token: Option<String>,
}

impl Client {
    /// A client for `server` (`http://127.0.0.1:8470`).
    pub fn new(server: &str, token: Option<String>) -> Self {
        Client {
            http: reqwest::Client::new(),
            server: server.trim_end_matches('/').to_string(),
            token,
        }
    }

    async fn send<T: DeserializeOwned>(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<T, ClientError> {
        let req = match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        };
        answer(req, &self.server).await
    }

    /// GET an API path (under `/api/v1`).
    ///
    /// # Errors
    /// See [`ClientError`].
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.send(self.http.get(format!("{}/api/v1{path}", self.server)))
            .await
    }

    /// POST JSON to an API path (under `/api/v1`).
    ///
    /// # Errors
    /// See [`ClientError`].
    pub async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl Serialize,
    ) -> Result<T, ClientError> {
        self.send(
            self.http
                .post(format!("{}/api/v1{path}", self.server))
                .json(body),
        )
        .await
    }
}

/// Sends `req` to `server`: the JSON answer, or the error its body gives.
async fn answer<T: DeserializeOwned>(
    req: reqwest::RequestBuilder,
    server: &str,
) -> Result<T, ClientError> {
    let resp = req.send().await.map_err(|e| ClientError::Unreachable {
        server: server.to_string(),
        reason: e.to_string(),
    })?;
    let status = resp.status();
    let body = resp
        .bytes()
        .await
        .map_err(|e| ClientError::Decode(e.to_string()))?;
    if !status.is_success() {
        let reason = serde_json::from_slice::<ErrorBody>(&body)
            .map(|e| e.error)
            .unwrap_or_else(|_| String::from_utf8_lossy(&body).into_owned());
        return Err(ClientError::Api {
            status: status.as_u16(),
            reason,
        });
    }
    serde_json::from_slice(&body).map_err(|e| ClientError::Decode(e.to_string()))
}

/// The API token in a token file as habd writes them (one token a line,
/// `#` comments): the first one.
///
/// # Errors
/// The file cannot be read.
pub fn token_from_file(path: &std::path::Path) -> Result<String, ClientError> {
    Ok(std::fs::read_to_string(path)
        .map_err(|e| {
            ClientError::Decode(format!("cannot read token file {}: {e}", path.display()))
        })?
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .unwrap_or_default()
        .to_string())
}

/// `?key=value&…` of the pairs that have a value (empty when none has).
fn query(pairs: &[(&str, Option<String>)]) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        if let Some(v) = v {
            q.append_pair(k, v);
        }
    }
    let q = q.finish();
    if q.is_empty() {
        q
    } else {
        format!("?{q}")
    }
}

/// One method per endpoint habctl calls. Each fails with a
/// [`ClientError`]: habd unreachable, a refusal with its reason, or an
/// answer that is not the expected type.
impl Client {
    /// `GET /status`: habd at a glance.
    pub async fn status(&self) -> Result<StatusView, ClientError> {
        self.get("/status").await
    }

    /// `GET /key`: habd's public signing key.
    pub async fn signing_key(&self) -> Result<crate::api::SigningKeyView, ClientError> {
        self.get("/key").await
    }

    /// `GET /pipelines`.
    pub async fn pipelines(&self) -> Result<Vec<PipelineView>, ClientError> {
        self.get("/pipelines").await
    }

    /// `POST /pipelines/{pipeline}/sync`: sync now (or join the sync in
    /// flight) and wait for its report.
    pub async fn sync(&self, pipeline: &str) -> Result<SyncReport, ClientError> {
        self.post(
            &format!("/pipelines/{pipeline}/sync"),
            &serde_json::json!({}),
        )
        .await
    }

    /// `GET /pipelines/{pipeline}/refs`.
    pub async fn refs(&self, pipeline: &str) -> Result<Vec<RefView>, ClientError> {
        self.get(&format!("/pipelines/{pipeline}/refs")).await
    }

    /// `POST /pipelines/{pipeline}/acknowledge`: accept a tag that moved.
    pub async fn acknowledge(
        &self,
        pipeline: &str,
        req: &AckRequest,
    ) -> Result<StoredRef, ClientError> {
        self.post(&format!("/pipelines/{pipeline}/acknowledge"), req)
            .await
    }

    /// `POST /pipelines/{pipeline}/builds`: build a ref (or join or reuse
    /// the build of it).
    pub async fn start_build(
        &self,
        pipeline: &str,
        req: &StartBuildRequest,
    ) -> Result<BuildView, ClientError> {
        self.post(&format!("/pipelines/{pipeline}/builds"), req)
            .await
    }

    /// `POST /pipelines/{pipeline}/rebuild`: queue a rebuild of what its
    /// channels point at.
    pub async fn rebuild(&self, pipeline: &str) -> Result<Enqueued, ClientError> {
        self.post(
            &format!("/pipelines/{pipeline}/rebuild"),
            &serde_json::json!({}),
        )
        .await
    }

    /// `GET /builds`, newest first.
    pub async fn builds(&self, q: &BuildsQuery) -> Result<Vec<BuildView>, ClientError> {
        self.get(&format!(
            "/builds{}",
            query(&[
                ("pipeline", q.pipeline.clone()),
                ("limit", q.limit.map(|l| l.to_string())),
            ])
        ))
        .await
    }

    /// `GET /builds/{id}`, with its verification runs.
    pub async fn build(&self, id: i64) -> Result<BuildView, ClientError> {
        self.get(&format!("/builds/{id}")).await
    }

    /// `GET /builds/{id}/chain`: everything that happened to a build.
    pub async fn chain(&self, id: i64) -> Result<Chain, ClientError> {
        self.get(&format!("/builds/{id}/chain")).await
    }

    /// `GET /builds/{id}/logs`: a page of its output.
    pub async fn logs(&self, id: i64, q: &LogQuery) -> Result<LogPage, ClientError> {
        self.get(&format!(
            "/builds/{id}/logs{}",
            query(&[
                ("after", q.after.map(|a| a.to_string())),
                ("limit", q.limit.map(|l| l.to_string())),
            ])
        ))
        .await
    }

    /// `POST /builds/{id}/cancel`.
    pub async fn cancel(&self, id: i64) -> Result<CancelView, ClientError> {
        self.post(&format!("/builds/{id}/cancel"), &serde_json::json!({}))
            .await
    }

    /// `POST /verify`: read back and smoke-run a build or an index again.
    pub async fn verify(&self, req: &VerifyRequest) -> Result<Verification, ClientError> {
        self.post("/verify", req).await
    }

    /// `POST /registry/prune`.
    pub async fn prune(&self, req: &PruneRequest) -> Result<PruneReport, ClientError> {
        self.post("/registry/prune", req).await
    }

    /// `GET /queue`, newest first.
    pub async fn queue(&self, q: &QueueQuery) -> Result<Vec<QueueView>, ClientError> {
        self.get(&format!(
            "/queue{}",
            query(&[
                ("limit", q.limit.map(|l| l.to_string())),
                ("pipeline", q.pipeline.clone()),
            ])
        ))
        .await
    }

    /// `GET /pipelines/{pipeline}/channels`.
    pub async fn channels(&self, pipeline: &str) -> Result<ChannelsView, ClientError> {
        self.get(&format!("/pipelines/{pipeline}/channels")).await
    }

    /// `POST /pipelines/{pipeline}/promote`: move a channel.
    pub async fn promote(
        &self,
        pipeline: &str,
        req: &PromoteRequest,
    ) -> Result<PromoteView, ClientError> {
        self.post(&format!("/pipelines/{pipeline}/promote"), req)
            .await
    }

    /// `GET /fleets`: every fleet's nodes now.
    /// What the RPC front door habd runs sees of the nodes.
    ///
    /// # Errors
    /// See [`ClientError`].
    pub async fn gateway(&self) -> Result<Vec<crate::gateway::DoorNode>, ClientError> {
        self.get("/gateway").await
    }

    /// What a front door (`url`, e.g. one of `habd gateway`'s) sees of the
    /// nodes, asked as one of its users.
    ///
    /// # Errors
    /// See [`ClientError`].
    pub async fn door(
        &self,
        url: &str,
        user: &str,
        password: &str,
    ) -> Result<Vec<crate::gateway::DoorNode>, ClientError> {
        let url = format!("{}/hab/nodes", url.trim_end_matches('/'));
        answer(self.http.get(&url).basic_auth(user, Some(password)), &url).await
    }

    pub async fn fleets(&self) -> Result<Vec<FleetView>, ClientError> {
        self.get("/fleets").await
    }

    /// `GET /fleets/{name}`: one fleet and the chain of the build it runs.
    pub async fn fleet(&self, name: &str) -> Result<FleetChain, ClientError> {
        self.get(&format!("/fleets/{name}")).await
    }

    /// `GET /rollouts/{id}`, with its steps.
    pub async fn rollout(&self, id: i64) -> Result<RolloutView, ClientError> {
        self.get(&format!("/rollouts/{id}")).await
    }

    /// `POST /fleets/{fleet}/{action}`: `pause`, `resume` or `undo` its
    /// rollout in progress.
    pub async fn control(&self, fleet: &str, action: &str) -> Result<RolloutRecord, ClientError> {
        self.post(&format!("/fleets/{fleet}/{action}"), &serde_json::json!({}))
            .await
    }

    /// Polls build `id` every half second until it ends, telling `progress`
    /// each platform's stage and upload progress, and the build's state,
    /// whenever they change.
    pub async fn wait_build(
        &self,
        id: i64,
        mut progress: impl FnMut(&str),
    ) -> Result<BuildView, ClientError> {
        let mut seen: std::collections::BTreeMap<String, String> = Default::default();
        let mut last_state = String::new();
        loop {
            let v = self.build(id).await?;
            for p in &v.build.platforms {
                let line = match p.stage.as_str() {
                    "pushing" | "pushed" => format!(
                        "{} {} / {}",
                        p.stage,
                        print::human_bytes(p.bytes_pushed),
                        print::human_bytes(p.bytes_total)
                    ),
                    s => s.to_string(),
                };
                if seen.get(&p.platform) != Some(&line) {
                    progress(&format!("  {:<12} {line}", p.platform));
                    seen.insert(p.platform.clone(), line);
                }
            }
            let state = v.build.state.as_str().to_string();
            if state != last_state {
                progress(&format!("build {id}: {}", state.to_uppercase()));
                last_state = state;
            }
            if v.build.state.is_final() {
                return Ok(v);
            }
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
    }

    /// Polls each rollout in turn until it ends, telling `progress` every
    /// step as it is recorded and how the rollout ended. True when every
    /// one succeeded.
    pub async fn wait_rollouts(
        &self,
        ids: &[i64],
        mut progress: impl FnMut(&str),
    ) -> Result<bool, ClientError> {
        let mut ok = true;
        for id in ids {
            let mut seen = 0;
            loop {
                let v = self.rollout(*id).await?;
                for s in v.steps.iter().skip(seen) {
                    progress(&format!(
                        "  rollout {id} {}{} {}: {}",
                        v.rollout.fleet,
                        s.ordinal.map(|o| format!(" node {o}")).unwrap_or_default(),
                        s.kind,
                        s.detail
                    ));
                }
                seen = v.steps.len();
                if v.rollout.state.is_final() {
                    progress(&format!(
                        "rollout {id} of {}: {}{}",
                        v.rollout.fleet,
                        v.rollout.state.as_str().to_uppercase(),
                        v.rollout
                            .reason
                            .as_ref()
                            .map(|r| format!(" ({r})"))
                            .unwrap_or_default()
                    ));
                    ok &= v.rollout.state == RolloutState::Succeeded;
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            }
        }
        Ok(ok)
    }
}
