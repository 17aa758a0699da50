//! The whole chain of a release, for `habctl show`: the tag, its verdict and
//! signer, what triggered the sync that found it (webhook deliveries, a
//! schedule), the build and its keys and digests, every verification, the
//! channel moves to it, and the rollouts of it with every step. Also the
//! queue, and one fleet with the chain of the build it runs.

use super::{blocking, builds::build_view, ApiError, ApiResult, AppState};
use crate::{
    api::{Chain, FleetChain, QueueQuery, QueueView, RolloutView},
    store::{ChannelMove, QueueKind},
};
use axum::{
    extract::{Path, Query, State},
    http::StatusCode,
    Json,
};

pub(super) async fn chain_of(state: &AppState, id: i64) -> Result<Chain, ApiError> {
    let store = state.store();
    let build = blocking(move || store.build(id))
        .await?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no build {id}")))?;
    let view = build_view(state, build);
    let store = state.store();
    blocking(move || {
        let b = &view.build;
        let stored_ref = store.get_ref(&b.pipeline, &b.ref_name)?;
        let ref_events = store.ref_events(&b.pipeline, &b.ref_name)?;
        // The sync that saw the ref's current object, else the first that saw it.
        let found_by = ref_events
            .iter()
            .find(|e| {
                e.sync_id.is_some()
                    && e.new_oid.as_deref() == stored_ref.as_ref().map(|r| r.oid.as_str())
            })
            .or_else(|| ref_events.iter().find(|e| e.sync_id.is_some()))
            .and_then(|e| e.sync_id);
        let sync = found_by.map(|s| store.sync(s)).transpose()?;
        let triggers_of_item = |kind, field, value| -> Result<_, crate::store::StoreError> {
            Ok(match store.item_with_result(kind, field, value)? {
                Some(item) => store.triggers_of(item.id)?,
                None => Vec::new(),
            })
        };
        let sync_triggers = match found_by {
            Some(s) => triggers_of_item(QueueKind::Sync, "sync_id", s)?,
            None => Vec::new(),
        };
        let build_triggers = triggers_of_item(QueueKind::Build, "build_id", id)?;
        let channel_moves: Vec<ChannelMove> = store
            .channel_moves(&b.pipeline, None, 1000)?
            .into_iter()
            .filter(|m| m.to_build == id)
            .collect();
        let mut rollouts = Vec::new();
        for r in store
            .rollouts(None, 1000)?
            .into_iter()
            .filter(|r| r.build_id == id)
        {
            let steps = store.rollout_steps(r.id)?;
            rollouts.push(RolloutView { rollout: r, steps });
        }
        rollouts.reverse();
        Ok(Chain {
            verifications: store.verifications(id)?,
            stored_ref,
            ref_events,
            sync,
            sync_triggers,
            build_triggers,
            channel_moves,
            rollouts,
            build: view,
        })
    })
    .await
}

pub(super) async fn build_chain(
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> ApiResult<Chain> {
    Ok(Json(chain_of(&state, id).await?))
}

pub(super) async fn fleet(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<FleetChain> {
    let fleets = state.rollouts.fleets().await.map_err(ApiError::internal)?;
    let fleet = fleets.into_iter().find(|f| f.name == name).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!(
                "no fleet named {name:?}; known: {}",
                state
                    .config
                    .fleets
                    .iter()
                    .map(|f| f.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
    })?;
    let store = state.store();
    let n = name.clone();
    let running = blocking(move || {
        Ok(store
            .rollouts(Some(&n), 1000)?
            .into_iter()
            .find(|r| r.state == crate::store::RolloutState::Succeeded)
            .map(|r| r.build_id))
    })
    .await?;
    let chain = match running {
        Some(id) => Some(chain_of(&state, id).await?),
        None => None,
    };
    Ok(Json(FleetChain { fleet, chain }))
}

pub(super) async fn list_queue(
    State(state): State<AppState>,
    Query(q): Query<QueueQuery>,
) -> ApiResult<Vec<QueueView>> {
    let store = state.store();
    let limit = q.limit.unwrap_or(30).min(1000);
    Ok(Json(
        blocking(move || {
            let mut out = Vec::new();
            for item in store.queue_items(q.pipeline.as_deref(), limit)? {
                let mut t = store.triggers_of(item.id)?;
                t.truncate(20);
                out.push(QueueView {
                    item,
                    trigger_list: t,
                });
            }
            Ok(out)
        })
        .await?,
    ))
}
