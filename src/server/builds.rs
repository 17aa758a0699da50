//! The build API: start a build of a ref, list and show builds, follow their
//! output, cancel them, and verify an index again on demand.

use std::collections::BTreeMap;

use axum::{
    extract::{Path, Query, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    Json,
};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{blocking, ApiError, ApiResult, AppState};
use crate::{
    builder::{BuildError, Verification},
    store::{BuildRecord, LogLine, VerificationRecord},
};

impl From<BuildError> for ApiError {
    fn from(e: BuildError) -> Self {
        ApiError::from(&e)
    }
}

impl From<&BuildError> for ApiError {
    fn from(e: &BuildError) -> Self {
        match e {
            BuildError::NoSuchPipeline(_)
            | BuildError::NoSuchRef { .. }
            | BuildError::NoSuchBuild(_) => ApiError::new(StatusCode::NOT_FOUND, e.to_string()),
            BuildError::Refused {
                name,
                reason,
                verdict,
            } => {
                let mut err = ApiError::new(StatusCode::CONFLICT, e.to_string());
                err.extra = Some(json!({ "ref": name, "reason": reason, "verdict": verdict }));
                err
            }
            BuildError::NotBuildable { .. } | BuildError::Recipe(_) | BuildError::NoBuilder(_) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string())
            }
            BuildError::Registry(_) | BuildError::Engine(_) => {
                ApiError::new(StatusCode::BAD_GATEWAY, e.to_string())
            }
            e => ApiError::internal(e),
        }
    }
}

/// A build as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BuildView {
    /// The stored build.
    #[serde(flatten)]
    pub build: BuildRecord,
    /// True once every check passed.
    pub verified: bool,
    /// Build key per platform.
    pub build_keys: BTreeMap<String, String>,
    /// Image manifest digest per platform.
    pub digests: BTreeMap<String, String>,
    /// `host/repository@index digest`, once pushed.
    pub reference: Option<String>,
    /// Verification runs, when showing one build.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub verifications: Vec<VerificationRecord>,
    /// True when a request found this build already made and verified.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reused: bool,
    /// True when the request joined a build of the same ref already queued
    /// or running, instead of starting another.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub joined: bool,
}

impl BuildView {
    pub(super) fn new(state: &AppState, build: BuildRecord) -> Self {
        BuildView {
            verified: build.verified(),
            build_keys: build
                .platforms
                .iter()
                .map(|p| (p.platform.clone(), p.build_key.clone()))
                .collect(),
            digests: build
                .platforms
                .iter()
                .filter_map(|p| Some((p.platform.clone(), p.manifest_digest.clone()?)))
                .collect(),
            reference: build
                .index_digest
                .as_ref()
                .map(|d| state.builds.registry().pinned(&build.repository, d)),
            build,
            verifications: Vec::new(),
            reused: false,
            joined: false,
        }
    }
}

/// `POST /api/v1/pipelines/{name}/builds`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuildRequest {
    /// `v1.0.0` or `refs/tags/v1.0.0`.
    #[serde(rename = "ref")]
    pub ref_name: String,
    /// Who asks (`habctl`); recorded.
    pub trigger: Option<String>,
}

pub(super) async fn start_build(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: Result<Json<BuildRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(req) = body.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text()))?;
    let p = state.pipeline(&name)?;
    let trigger = req.trigger.unwrap_or_else(|| "api".into());
    let (started, joined) = state
        .queue
        .build_now(&p.name, &req.ref_name, &trigger)
        .await
        .map_err(|e| ApiError::from(e.as_ref()))?;
    let mut view = BuildView::new(&state, started.build);
    view.reused = started.reused;
    view.joined = joined;
    let status = if started.reused {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    Ok((status, Json(view)).into_response())
}

#[derive(Debug, Deserialize)]
pub(super) struct ListQuery {
    pipeline: Option<String>,
    limit: Option<u32>,
}

pub(super) async fn list_builds(
    State(state): State<AppState>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Vec<BuildView>> {
    if let Some(p) = &q.pipeline {
        state.pipeline(p)?;
    }
    let store = state.store();
    let limit = q.limit.unwrap_or(50).min(1000);
    let builds = blocking(move || store.builds(q.pipeline.as_deref(), limit)).await?;
    Ok(Json(
        builds
            .into_iter()
            .map(|b| BuildView::new(&state, b))
            .collect(),
    ))
}

async fn load(state: &AppState, id: i64) -> Result<BuildRecord, ApiError> {
    let store = state.store();
    blocking(move || store.build(id))
        .await?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no build {id}")))
}

pub(super) async fn get_build(
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> ApiResult<BuildView> {
    let build = load(&state, id).await?;
    let store = state.store();
    let verifications = blocking(move || store.verifications(id)).await?;
    let mut view = BuildView::new(&state, build);
    view.verifications = verifications;
    Ok(Json(view))
}

#[derive(Debug, Deserialize)]
pub(super) struct LogQuery {
    after: Option<i64>,
    limit: Option<u32>,
}

/// A page of a build's output.
#[derive(Debug, Serialize, Deserialize)]
pub struct LogPage {
    /// Lines after the one asked for.
    pub lines: Vec<LogLine>,
    /// The build's state now.
    pub state: crate::store::BuildState,
    /// True when the build has ended: no more lines will come.
    pub done: bool,
}

pub(super) async fn build_logs(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    Query(q): Query<LogQuery>,
) -> ApiResult<LogPage> {
    // The state is read first: lines written before a build ended are all
    // there when `done` is seen, so a follower never misses the last ones.
    let build = load(&state, id).await?;
    let store = state.store();
    let lines = blocking(move || {
        store.logs(
            id,
            q.after.unwrap_or(0),
            q.limit.unwrap_or(1000).min(10_000),
        )
    })
    .await?;
    Ok(Json(LogPage {
        lines,
        state: build.state,
        done: build.state.is_final(),
    }))
}

pub(super) async fn cancel_build(
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Response, ApiError> {
    let build = load(&state, id).await?;
    if state.builds.cancel(id) {
        Ok((
            StatusCode::ACCEPTED,
            Json(json!({ "id": id, "cancelling": true })),
        )
            .into_response())
    } else {
        Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("build {id} is not running ({})", build.state.as_str()),
        ))
    }
}

/// `POST /api/v1/verify`: a build id or `repository@digest`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyRequest {
    /// A build id.
    pub build: Option<i64>,
    /// `repository@sha256:…` (with or without the registry host).
    pub reference: Option<String>,
}

pub(super) async fn verify(
    State(state): State<AppState>,
    body: Result<Json<VerifyRequest>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<Verification> {
    let Json(req) = body.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text()))?;
    let v = match (req.build, req.reference) {
        (Some(id), None) => state.builds.verify_build(id).await?,
        (None, Some(r)) => state.builds.verify_reference(&r).await?,
        _ => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "give one of \"build\" (an id) or \"reference\" (repository@sha256:…)",
            ))
        }
    };
    Ok(Json(v))
}
