//! Webhook intake: `POST /hooks/github`, `POST /hooks/gitea`,
//! `POST /hooks/generic/{pipeline}`.
//!
//! In order: the body is read up to the limit (413 beyond); the signature
//! must be present (401) and match the webhook secret of a pipeline (401);
//! a `ping` is answered; the payload must be JSON (400) naming the upstream
//! of a pipeline whose secret signed it (404); a delivery id seen before is
//! answered `duplicate` and does nothing. What is left queues one sync of
//! that pipeline, after a short settle time that folds a burst into one.
//! Nothing of the payload but the repository it names is used.

use axum::{
    body::{to_bytes, Body},
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use serde_json::{json, Value};

use super::{ApiError, AppState};
use crate::{
    config::Pipeline,
    hooks::{self, HookAction, Provider},
    store::{Delivery, Enqueue, QueueKind},
};

pub(super) async fn github(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    intake(state, Provider::Github, None, headers, body).await
}

pub(super) async fn gitea(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    intake(state, Provider::Gitea, None, headers, body).await
}

pub(super) async fn generic(
    State(state): State<AppState>,
    Path(pipeline): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    intake(state, Provider::Generic, Some(pipeline), headers, body).await
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

async fn intake(
    state: AppState,
    provider: Provider,
    pipeline: Option<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let outcome = handle(&state, provider, pipeline, &headers, body).await;
    let label = match &outcome {
        Ok((_, v)) => v["status"].as_str().unwrap_or("ok").to_string(),
        Err(e) => e.status.as_u16().to_string(),
    };
    state
        .metrics
        .webhooks
        .get_or_create(&vec![
            ("provider".into(), provider.as_str().into()),
            ("outcome".into(), label),
        ])
        .inc();
    match outcome {
        Ok((status, body)) => (status, Json(body)).into_response(),
        Err(e) => {
            tracing::info!(provider = provider.as_str(), status = e.status.as_u16(), reason = %e.reason, "webhook refused");
            e.into_response()
        }
    }
}

async fn handle(
    state: &AppState,
    provider: Provider,
    named: Option<String>,
    headers: &HeaderMap,
    body: Body,
) -> Result<(StatusCode, Value), ApiError> {
    let limit = state.config.webhooks.max_body_bytes;
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("webhook body over the limit of {limit} bytes (webhooks.max_body_bytes)"),
        )
    };
    if header(headers, "content-length")
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|n| n > limit)
    {
        return Err(too_large());
    }
    let body = to_bytes(body, usize::try_from(limit).unwrap_or(usize::MAX))
        .await
        .map_err(|_| too_large())?;

    let sig_header = provider.signature_header();
    let Some(sig) = header(headers, sig_header) else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            format!("missing {sig_header} header: configure the webhook with a secret"),
        ));
    };
    let Some(mac) = provider.parse_signature(sig) else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            format!("malformed {sig_header} header"),
        ));
    };
    // The pipelines whose secret signed this body. A generic hook names its
    // pipeline; GitHub and Gitea hooks are matched by secret, then by the
    // repository the payload names.
    let candidates: Vec<&std::sync::Arc<Pipeline>> = match &named {
        Some(name) => {
            let p = state.pipeline(name)?;
            state
                .config
                .pipelines
                .iter()
                .filter(|q| q.name == p.name)
                .collect()
        }
        None => state.config.pipelines.iter().collect(),
    };
    let signed_by: Vec<&std::sync::Arc<Pipeline>> = candidates
        .into_iter()
        .filter(|p| {
            p.webhook_secret
                .as_ref()
                .is_some_and(|s| hooks::signature_valid(s.expose(), &body, &mac))
        })
        .collect();
    if signed_by.is_empty() {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            match &named {
                Some(name) => {
                    format!("signature does not match the webhook secret of pipeline {name}")
                }
                None => "signature does not match the webhook secret of any pipeline".to_string(),
            },
        ));
    }
    let dh = provider.delivery_header();
    let delivery = header(headers, dh)
        .filter(|d| !d.is_empty() && d.len() <= 200)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("missing {dh} header: each delivery needs a unique id (replays are refused by it)"),
            )
        })?
        .to_string();
    let event = provider
        .event_header()
        .and_then(|h| header(headers, h))
        .map(str::to_string);
    let action = hooks::action(provider, event.as_deref());
    let event_name = event.clone().unwrap_or_else(|| "generic".into());

    let pipeline = if provider == Provider::Generic {
        signed_by[0].clone()
    } else {
        if action == HookAction::Ping {
            let first = state
                .queue
                .intake()
                .note_delivery(
                    provider.as_str(),
                    &delivery,
                    &signed_by[0].name,
                    &event_name,
                )
                .await?;
            return Ok((
                StatusCode::OK,
                json!({"status": if first { "pong" } else { "duplicate" }, "delivery": delivery}),
            ));
        }
        let payload: Value = serde_json::from_slice(&body).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("webhook body is not JSON: {e}"),
            )
        })?;
        match signed_by
            .iter()
            .find(|p| hooks::names_upstream(&payload, &p.upstream))
        {
            Some(p) => (*p).clone(),
            None => {
                return Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    format!(
                    "unknown repository {}: no pipeline with that upstream has this webhook secret",
                    hooks::repository_name(&payload)
                ),
                ))
            }
        }
    };

    if action != HookAction::Sync {
        let first = state
            .queue
            .intake()
            .note_delivery(provider.as_str(), &delivery, &pipeline.name, &event_name)
            .await?;
        return Ok((
            StatusCode::OK,
            json!({"status": if first { "ignored" } else { "duplicate" }, "event": event_name,
                   "delivery": delivery, "pipeline": pipeline.name}),
        ));
    }

    let source = format!("webhook:{}", provider.as_str());
    let mut e = Enqueue::new(&pipeline.name, QueueKind::Sync, &source);
    e.detail = Some(format!("delivery {delivery} ({event_name})"));
    e.due_at = chrono::Utc::now()
        + chrono::Duration::from_std(state.config.webhooks.settle).unwrap_or_default();
    let accepted = state
        .queue
        .intake()
        .deliver(provider.as_str(), &delivery, &event_name, e)
        .await?;
    match accepted {
        Delivery::Duplicate {
            first_seen,
            queue_id,
        } => Ok((
            StatusCode::OK,
            json!({"status": "duplicate", "delivery": delivery, "first_seen": first_seen,
                   "queue_id": queue_id, "pipeline": pipeline.name}),
        )),
        Delivery::Accepted(q) => Ok((
            StatusCode::ACCEPTED,
            json!({"status": "queued", "delivery": delivery, "pipeline": pipeline.name,
                       "queue_id": q.item.id, "joined": q.joined, "due_at": q.item.due_at}),
        )),
    }
}
