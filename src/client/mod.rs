//! The API client habctl uses: JSON over HTTP with a bearer token.

use serde::{de::DeserializeOwned, Serialize};

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
