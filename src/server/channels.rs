//! The channel API: where each channel of a pipeline points, its history,
//! and `promote`.

use axum::{
    extract::{Path, State},
    http::StatusCode,
    Json,
};

use super::{ApiError, ApiResult, AppState};
use crate::{
    api::{ChannelView, ChannelsView, PromoteRequest, PromoteView},
    channel::{PromoteError, PromoteTarget},
    promotion::Promotion,
};

impl From<PromoteError> for ApiError {
    fn from(e: PromoteError) -> Self {
        match e {
            PromoteError::UnknownChannel { .. } | PromoteError::NotFound(_) => {
                ApiError::new(StatusCode::NOT_FOUND, e.to_string())
            }
            PromoteError::Refused(_) => ApiError::new(StatusCode::CONFLICT, e.to_string()),
            PromoteError::Store(e) => ApiError::internal(e),
            PromoteError::Internal(e) => ApiError::internal(e),
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
    axum::Extension(super::rollouts::Caller(caller)): axum::Extension<super::rollouts::Caller>,
    Path(name): Path<String>,
    body: Result<Json<PromoteRequest>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<PromoteView> {
    let Json(req) = body.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text()))?;
    let p = state.pipeline(&name)?;
    // Recorded as the operator says (`by`), with the token that said it.
    let who = match &req.by {
        Some(by) => format!("{by} ({caller})"),
        None => caller,
    };
    let target = format!("{name} {} to {}", req.target, req.channel);
    let outcome = state
        .promotions
        .promote(
            &p,
            Promotion {
                target: PromoteTarget::parse(&req.target),
                channel: req.channel,
                by: req.by.unwrap_or_else(|| "api".into()),
                reason: req.reason,
                force: req.force,
                automatic: false,
            },
        )
        .await;
    let result = match &outcome {
        Ok(_) => "ok".to_string(),
        Err(e) => e.to_string(),
    };
    let store = state.store();
    super::blocking(move || store.record_action(&who, "promote", &target, &result)).await?;
    let outcome = outcome?;
    Ok(Json(PromoteView {
        promoted: outcome.promoted,
        rollouts: outcome.rollouts,
    }))
}
