//! The build API: start a build of a ref, list and show builds, follow their
//! output, cancel them, and verify an index again on demand.

use axum::{
    extract::{Path, Query, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    Json,
};
use serde_json::json;

use super::{blocking, ApiError, ApiResult, AppState};
use crate::{
    api::{
        BuildView, BuildsQuery, CancelView, LogPage, LogQuery, StartBuildRequest, Verification,
        VerifyRequest,
    },
    builder::BuildError,
    store::BuildRecord,
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

/// The API's view of `build`: its index pinned in the registry habd pushes to.
pub(super) fn build_view(state: &AppState, build: BuildRecord) -> BuildView {
    let reference = build
        .index_digest
        .as_ref()
        .map(|d| state.builds.registry().pinned(&build.repository, d));
    BuildView::new(build, reference)
}

pub(super) async fn start_build(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: Result<Json<StartBuildRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(req) = body.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text()))?;
    let p = state.pipeline(&name)?;
    let trigger = req.trigger.unwrap_or_else(|| "api".into());
    let (started, joined) = state
        .queue
        .build_now(&p.name, &req.ref_name, &trigger)
        .await
        .map_err(|e| ApiError::from(e.as_ref()))?;
    let mut view = build_view(&state, started.build);
    view.reused = started.reused;
    view.joined = joined;
    let status = if started.reused {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    Ok((status, Json(view)).into_response())
}

pub(super) async fn list_builds(
    State(state): State<AppState>,
    Query(q): Query<BuildsQuery>,
) -> ApiResult<Vec<BuildView>> {
    if let Some(p) = &q.pipeline {
        state.pipeline(p)?;
    }
    let store = state.store();
    let limit = q.limit.unwrap_or(50).min(1000);
    let builds = blocking(move || store.builds(q.pipeline.as_deref(), limit)).await?;
    Ok(Json(
        builds.into_iter().map(|b| build_view(&state, b)).collect(),
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
    let mut view = build_view(&state, build);
    view.verifications = verifications;
    Ok(Json(view))
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
            Json(CancelView {
                id,
                cancelling: true,
            }),
        )
            .into_response())
    } else {
        Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("build {id} is not running ({})", build.state.as_str()),
        ))
    }
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
