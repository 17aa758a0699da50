//! The mirrors over git's *dumb* HTTP protocol under `/git/<pipeline>`:
//! static files plus a generated `info/refs`. Read-only by construction,
//! and no `git` binary needed in habd's image.

use axum::{
    body::Body,
    extract::{Path, State},
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};

use super::{ApiError, AppState};
use crate::{mirror::Mirror, sync::mirror_path};

fn mirror_of(state: &AppState, name: &str) -> Result<Mirror, ApiError> {
    let p = state.pipeline(name)?;
    let path = mirror_path(&state.config.state_dir, &p.name);
    if !path.join("HEAD").exists() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("pipeline {name} has not been mirrored yet: run habctl sync {name}"),
        ));
    }
    Mirror::open_or_init(&path).map_err(ApiError::internal)
}

fn text(body: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

pub(super) async fn git_info_refs(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let m = mirror_of(&state, &name)?;
    let refs = tokio::task::spawn_blocking(move || m.info_refs())
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    Ok(text(refs))
}

pub(super) async fn git_head(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let m = mirror_of(&state, &name)?;
    Ok(text(m.head().map_err(ApiError::internal)?))
}

pub(super) async fn git_info_packs(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let m = mirror_of(&state, &name)?;
    Ok(text(m.info_packs().map_err(ApiError::internal)?))
}

pub(super) async fn git_object(
    State(state): State<AppState>,
    Path((name, path)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let m = mirror_of(&state, &name)?;
    let file = m
        .object_file(&path)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "not an object path"))?;
    let f = tokio::fs::File::open(&file)
        .await
        .map_err(|_| ApiError::new(StatusCode::NOT_FOUND, "no such object"))?;
    let len = f.metadata().await.map(|m| m.len()).unwrap_or(0);
    let stream = tokio_util::io::ReaderStream::new(f);
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            ),
            (header::CONTENT_LENGTH, HeaderValue::from(len)),
            // Objects and packs are immutable by name.
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=31536000, immutable"),
            ),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}
