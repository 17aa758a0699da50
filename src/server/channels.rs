//! The channel API: where each channel of a pipeline points, its history,
//! and `promote`.

use axum::{
    extract::{Path, State},
    http::StatusCode,
    Json,
};
use serde::{Deserialize, Serialize};

use super::{ApiError, ApiResult, AppState};
use crate::{
    channel::{PromoteError, PromoteTarget, Promoted},
    promotion::Promotion,
    store::{ChannelMove, ChannelState},
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

/// A pipeline's channels: each declared one, where it points, and the moves.
#[derive(Debug, Serialize, Deserialize)]
pub struct ChannelsView {
    /// Declared channels, with where each points (None: never moved).
    pub channels: Vec<ChannelView>,
    /// Moves, newest first.
    pub moves: Vec<ChannelMove>,
}

/// One channel.
#[derive(Debug, Serialize, Deserialize)]
pub struct ChannelView {
    /// Name.
    pub name: String,
    /// Advances by itself when a build verifies.
    pub auto: bool,
    /// Where it points.
    pub current: Option<ChannelState>,
    /// Set when the build it points at is known-bad (only an operator's
    /// `promote --force` leaves a channel there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub known_bad: Option<crate::store::KnownBad>,
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

/// `POST /api/v1/pipelines/{name}/promote`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromoteRequest {
    /// A tag, a build id (`12`, `build-12`) or an index digest.
    pub target: String,
    /// The channel to move.
    pub channel: String,
    /// Why (recorded).
    pub reason: Option<String>,
    /// Who (recorded).
    pub by: Option<String>,
    /// Promote a known-bad build anyway (needs a reason).
    #[serde(default)]
    pub force: bool,
}

/// What a promote did: the move, and the rollouts it queued.
#[derive(Debug, Serialize, Deserialize)]
pub struct PromoteView {
    /// The build and the move.
    #[serde(flatten)]
    pub promoted: Promoted,
    /// Rollouts queued, one per fleet following the channel.
    pub rollouts: Vec<crate::store::RolloutRecord>,
}

pub(super) async fn promote_build(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: Result<Json<PromoteRequest>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<PromoteView> {
    let Json(req) = body.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text()))?;
    let p = state.pipeline(&name)?;
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
        .await?;
    Ok(Json(PromoteView {
        promoted: outcome.promoted,
        rollouts: outcome.rollouts,
    }))
}
