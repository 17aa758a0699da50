//! The rollout API: fleets and their nodes now, rollouts and their steps,
//! and pause, resume, undo.

use super::{blocking, ApiError, ApiResult, AppState};
use crate::{
    api::{FleetView, RolloutView, RolloutsQuery},
    store::RolloutRecord,
};
use axum::{
    extract::{Path, Query, State},
    http::StatusCode,
    Json,
};

pub(super) async fn list_fleets(State(state): State<AppState>) -> ApiResult<Vec<FleetView>> {
    Ok(Json(
        state.rollouts.fleets().await.map_err(ApiError::internal)?,
    ))
}

pub(super) async fn list_rollouts(
    State(state): State<AppState>,
    Query(q): Query<RolloutsQuery>,
) -> ApiResult<Vec<RolloutRecord>> {
    let store = state.store();
    let limit = q.limit.unwrap_or(20).min(1000);
    Ok(Json(
        blocking(move || store.rollouts(q.fleet.as_deref(), limit)).await?,
    ))
}

pub(super) async fn get_rollout(
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> ApiResult<RolloutView> {
    let store = state.store();
    let (rollout, steps) =
        blocking(move || Ok((store.rollout(id)?, store.rollout_steps(id)?))).await?;
    let rollout =
        rollout.ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no rollout {id}")))?;
    Ok(Json(RolloutView { rollout, steps }))
}

async fn active(state: &AppState, fleet: &str) -> Result<RolloutRecord, ApiError> {
    if !state.config.fleets.iter().any(|f| f.name == fleet) {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no fleet named {fleet:?}"),
        ));
    }
    let store = state.store();
    let f = fleet.to_string();
    let last = blocking(move || Ok(store.rollouts(Some(&f), 1)?.into_iter().next())).await?;
    match last {
        Some(r) if !r.state.is_final() => Ok(r),
        Some(r) => Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "fleet {fleet} has no rollout in progress (the last, {}, is {}); to go back, promote the previous build",
                r.id,
                r.state.as_str()
            ),
        )),
        None => Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("fleet {fleet} has never been rolled out"),
        )),
    }
}

pub(super) async fn control(
    State(state): State<AppState>,
    Path((fleet, action)): Path<(String, String)>,
) -> ApiResult<RolloutRecord> {
    let r = active(&state, &fleet).await?;
    let store = state.store();
    let id = r.id;
    let done = match action.as_str() {
        "pause" => blocking(move || store.pause_rollout(id)).await?,
        "resume" => blocking(move || store.resume_rollout(id)).await?,
        "undo" => blocking(move || store.undo_rollout(id)).await?.is_some(),
        other => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!("no action {other:?}: pause, resume or undo"),
            ))
        }
    };
    if !done {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "rollout {id} of {fleet} is {}: cannot {action} it",
                r.state.as_str()
            ),
        ));
    }
    state.rollouts.wake();
    let store = state.store();
    let r = blocking(move || store.rollout(id))
        .await?
        .ok_or_else(|| ApiError::internal("rollout vanished"))?;
    Ok(Json(r))
}
