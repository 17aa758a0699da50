//! The channel API: where each channel of a pipeline points, its history,
//! and `promote`.

use super::{ApiError, ApiResult, AppState};
use crate::{
    api::{ChannelView, ChannelsView, PromoteRequest, PromoteView},
    channel::{promote, PromoteError},
};
use axum::{
    extract::{Path, State},
    http::StatusCode,
    Json,
};

impl From<PromoteError> for ApiError {
    fn from(e: PromoteError) -> Self {
        match e {
            PromoteError::UnknownChannel { .. } | PromoteError::NotFound(_) => {
                ApiError::new(StatusCode::NOT_FOUND, e.to_string())
            }
            PromoteError::Refused(_) => ApiError::new(StatusCode::CONFLICT, e.to_string()),
            PromoteError::Store(e) => ApiError::internal(e),
        }
    }
}

pub(super) async fn list_channels(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<ChannelsView> {
    let p = state.pipeline(&name)?;
    let store = state.store();
    let pn = p.name.clone();
    let (current, moves, bad) = super::blocking(move || {
        let current = store.channels(&pn)?;
        let bad = current
            .iter()
            .map(|c| Ok((c.name.clone(), store.known_bad(c.build_id)?)))
            .collect::<Result<std::collections::HashMap<_, _>, crate::store::StoreError>>()?;
        Ok((current, store.channel_moves(&pn, None, 100)?, bad))
    })
    .await?;
    Ok(Json(ChannelsView {
        channels: p
            .channels
            .iter()
            .map(|c| ChannelView {
                name: c.name.clone(),
                auto: c.auto,
                current: current.iter().find(|s| s.name == c.name).cloned(),
                known_bad: bad.get(&c.name).cloned().flatten(),
            })
            .collect(),
        moves,
    }))
}

pub(super) async fn promote_build(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: Result<Json<PromoteRequest>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<PromoteView> {
    let Json(req) = body.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text()))?;
    let p = state.pipeline(&name)?;
    // A build pruned from the registry since it verified cannot run: say
    // so before anything moves.
    let store = state.store();
    let (pp, target, channel) = (p.clone(), req.target.clone(), req.channel.clone());
    let build = tokio::task::spawn_blocking(move || {
        let id = crate::channel::resolve(&store, &pp, &target, &channel)?;
        Ok::<_, crate::channel::PromoteError>(store.build(id)?)
    })
    .await
    .map_err(ApiError::internal)??;
    if let Some(b) = build.filter(|b| b.verified()) {
        let index = b.index_digest.clone().unwrap_or_default();
        if !state
            .builds
            .registry()
            .has_manifest(&b.repository, &index)
            .await
        {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!(
                    "build {} ({}) is no longer in the registry (pruned?): build it again with habctl build {} --ref {}",
                    b.id, b.version, b.pipeline, b.version
                ),
            ));
        }
    }
    let store = state.store();
    let promoted = tokio::task::spawn_blocking(move || {
        promote(
            &store,
            &p,
            &req.target,
            &req.channel,
            req.by.as_deref().unwrap_or("api"),
            req.reason.as_deref(),
            req.force,
        )
    })
    .await
    .map_err(ApiError::internal)??;
    let mut rollouts = Vec::new();
    if let Some(m) = &promoted.channel_move {
        let store = state.store();
        let b = m.to_build;
        let build = super::blocking(move || store.build(b))
            .await?
            .ok_or_else(|| ApiError::internal(format!("build {b} vanished")))?;
        rollouts = state
            .rollouts
            .channel_moved(
                &m.pipeline,
                &m.channel,
                m.to_build,
                &build.repository,
                &m.index_digest,
                &format!("promote by {}", m.by),
            )
            .await
            .map_err(ApiError::internal)?;
    }
    Ok(Json(PromoteView { promoted, rollouts }))
}
