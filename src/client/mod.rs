//! The API client habctl uses: JSON over HTTP with a bearer token, one
//! typed method per endpoint (the bodies are [`crate::api`]'s types).

use serde::{de::DeserializeOwned, Serialize};

use crate::{
    api::{
        AckRequest, BuildView, BuildsQuery, CancelView, Chain, ChannelsView, FleetChain, FleetView,
        LogPage, LogQuery, PipelineView, PromoteRequest, PromoteView, PruneReport, PruneRequest,
        QueueQuery, QueueView, RefView, RolloutView, StartBuildRequest, StatusView, Verification,
        VerifyRequest,
    },
    store::{Enqueued, RolloutRecord, StoredRef},
    sync::SyncReport,
};

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
        let resp = req.send().await.map_err(|e| ClientError::Unreachable {
            server: self.server.clone(),
            reason: e.to_string(),
        })?;
        let status = resp.status();
        let body = resp
            .bytes()
            .await
            .map_err(|e| ClientError::Decode(e.to_string()))?;
        if !status.is_success() {
            let reason = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(String::from))
                .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
            return Err(ClientError::Api {
                status: status.as_u16(),
                reason,
            });
        }
        serde_json::from_slice(&body).map_err(|e| ClientError::Decode(e.to_string()))
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
}
