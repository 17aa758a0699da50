//! The dashboard's actions: pause, resume and undo a rollout, promote a
//! build. Each is asked to be confirmed on a page of its own (GET), then
//! done on a POST carrying the session's CSRF token, through the same
//! functions as the API's, and recorded with who took it.

use std::collections::BTreeMap;

use axum::{
    extract::{Form, Path, Query, State},
    http::StatusCode,
    response::Response,
};
use serde::Deserialize;

use super::{check_csrf, failed, page, CsrfForm};
use crate::{
    dashboard::{pages, Session},
    server::{blocking, rollouts::act, AppState},
};

fn known_action(action: &str) -> Option<(&'static str, &'static str)> {
    match action {
        "pause" => Some(("Pause", "The rollout stops after the node it is on; nodes keep what they run until you resume it.")),
        "resume" => Some(("Resume", "The rollout goes on the way it was going, one node at a time, behind the gates.")),
        "undo" => Some(("Undo", "Every node the rollout changed goes back to the image it ran before, one at a time, behind the gates.")),
        _ => None,
    }
}

pub(in crate::server) async fn act_confirm(
    State(state): State<AppState>,
    axum::Extension(session): axum::Extension<Session>,
    Path((fleet, action)): Path<(String, String)>,
) -> Response {
    let Some((verb, consequence)) = known_action(&action) else {
        return page(
            StatusCode::NOT_FOUND,
            pages::problem(
                "No such action",
                "Actions are pause, resume and undo.",
                Some(&session),
            ),
        );
    };
    if !state.config.fleets.iter().any(|f| f.name == fleet) {
        return page(
            StatusCode::NOT_FOUND,
            pages::problem(
                "No such fleet",
                &format!("No fleet is named {fleet:?}."),
                Some(&session),
            ),
        );
    }
    page(
        StatusCode::OK,
        pages::confirm(
            &format!("{verb} the rollout of {fleet}?"),
            consequence,
            &format!("/act/{fleet}/{action}"),
            &BTreeMap::new(),
            &format!("/fleets#fleet-{fleet}"),
            &session,
        ),
    )
}

pub(in crate::server) async fn act_post(
    State(state): State<AppState>,
    axum::Extension(session): axum::Extension<Session>,
    Path((fleet, action)): Path<(String, String)>,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Some(refused) = check_csrf(&session, &form) {
        return refused;
    }
    let back = format!("/fleets#fleet-{fleet}");
    match act(&state, &fleet, &action, &session.who).await {
        Ok(r) => page(
            StatusCode::OK,
            pages::outcome(
                "Done",
                true,
                &format!(
                    "Rollout {} of {fleet}: {action} done, it is now {}.",
                    r.id,
                    r.state.as_str()
                ),
                &back,
                &session,
            ),
        ),
        Err(e) => page(
            e.status,
            pages::outcome("Not done", false, &e.reason, &back, &session),
        ),
    }
}

#[derive(Deserialize)]
pub(in crate::server) struct PromoteQuery {
    pipeline: String,
    build: i64,
    channel: String,
}

pub(in crate::server) async fn promote_confirm(
    State(state): State<AppState>,
    axum::Extension(session): axum::Extension<Session>,
    Query(q): Query<PromoteQuery>,
) -> Response {
    if let Err(e) = state.pipeline(&q.pipeline) {
        return page(
            e.status,
            pages::problem("No such pipeline", &e.reason, Some(&session)),
        );
    }
    let fields = BTreeMap::from([
        ("pipeline", q.pipeline.clone()),
        ("build", q.build.to_string()),
        ("channel", q.channel.clone()),
    ]);
    page(
        StatusCode::OK,
        pages::confirm(
            &format!("Promote build #{} of {} to {}?", q.build, q.pipeline, q.channel),
            "Every fleet following that channel is rolled to it, one node at a time, behind its gates.",
            "/promote",
            &fields,
            "/",
            &session,
        ),
    )
}

pub(in crate::server) async fn promote_post(
    State(state): State<AppState>,
    axum::Extension(session): axum::Extension<Session>,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Some(refused) = check_csrf(&session, &form) {
        return refused;
    }
    let field = |k: &str| form.rest.get(k).cloned().unwrap_or_default();
    let (pipeline, build, channel) = (field("pipeline"), field("build"), field("channel"));
    let target = format!("{pipeline} build {build} to {channel}");
    let result = match state.pipeline(&pipeline) {
        Err(e) => Err(e.reason),
        Ok(p) => state
            .promotions
            .promote(
                &p,
                crate::promotion::Promotion {
                    target: crate::channel::PromoteTarget::parse(&build),
                    channel: channel.clone(),
                    by: session.who.clone(),
                    reason: Some("promoted from the dashboard".into()),
                    force: false,
                    automatic: false,
                },
            )
            .await
            .map_err(|e| e.to_string()),
    };
    let outcome = match &result {
        Ok(_) => "ok".to_string(),
        Err(e) => e.clone(),
    };
    let (store, who, t) = (state.store(), session.who.clone(), target.clone());
    if let Err(e) = blocking(move || store.record_action(&who, "promote", &t, &outcome)).await {
        return failed(e.reason, Some(&session));
    }
    match result {
        Ok(o) => page(
            StatusCode::OK,
            pages::outcome(
                "Promoted",
                true,
                &format!("Promoted {target}; {} rollout(s) queued.", o.rollouts.len()),
                "/fleets",
                &session,
            ),
        ),
        Err(e) => page(
            StatusCode::CONFLICT,
            pages::outcome("Not promoted", false, &e, "/", &session),
        ),
    }
}
