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

/// Who called the API, as recorded with an action: `api (token 3f2a9c1b)`.
#[derive(Debug, Clone)]
pub(super) struct Caller(pub(super) String);

pub(super) async fn control(
    State(state): State<AppState>,
    axum::Extension(Caller(who)): axum::Extension<Caller>,
    Path((fleet, action)): Path<(String, String)>,
) -> ApiResult<RolloutRecord> {
    Ok(Json(act(&state, &fleet, &action, &who).await?))
}

/// Pauses, resumes or undoes a fleet's rollout in progress, for the API and
/// the dashboard alike; the action, who took it and what came of it are
/// recorded (and, when it happened, as a step of the rollout).
pub(super) async fn act(
    state: &AppState,
    fleet: &str,
    action: &str,
    who: &str,
) -> Result<RolloutRecord, ApiError> {
    let result = act_unrecorded(state, fleet, action).await;
    let outcome = match &result {
        Ok(_) => "ok".to_string(),
        Err(e) => e.reason.clone(),
    };
    let store = state.store();
    let (w, a, target) = (
        who.to_string(),
        action.to_string(),
        format!("fleet {fleet}"),
    );
    let rollout = result.as_ref().ok().map(|r| r.id);
    blocking(move || {
        store.record_action(&w, &a, &target, &outcome)?;
        if let Some(id) = rollout {
            store.rollout_step(id, None, "operator", &format!("{a} by {w}"))?;
        }
        Ok(())
    })
    .await?;
    result
}

async fn act_unrecorded(
    state: &AppState,
    fleet: &str,
    action: &str,
) -> Result<RolloutRecord, ApiError> {
    let r = active(state, fleet).await?;
    let store = state.store();
    let id = r.id;
    let done = match action {
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
    blocking(move || store.rollout(id))
        .await?
        .ok_or_else(|| ApiError::internal("rollout vanished"))
}
