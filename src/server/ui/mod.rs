//! The dashboard's HTTP side: sign-in and the session cookie, the pages,
//! the live feed of the fleets page (server-sent events), and the actions
//! (pause, resume, undo, promote), each confirmed on a page of its own and
//! posted with the session's CSRF token. The pages are rendered by
//! [`crate::dashboard`] from facts gathered here from the store; the
//! actions go through the same functions as the API's.

use std::{collections::BTreeMap, convert::Infallible, sync::Arc, time::Duration};

use axum::{
    extract::{Form, Path, Query, Request, State},
    http::{header, HeaderMap, HeaderValue, StatusCode},
    middleware::Next,
    response::{
        sse::{Event, KeepAlive, Sse},
        IntoResponse, Redirect, Response,
    },
};
use maud::Markup;
use serde::Deserialize;

mod actions;
mod facts;

pub(in crate::server) use actions::{act_confirm, act_post, promote_confirm, promote_post};
use facts::tag_text;
pub use facts::{gather, gather_facts, overview_html, releases};

use super::{blocking, AppState};
use crate::dashboard::{self, fleets, model, pages, Session};

/// The whole page's headers: no caching of what a token unlocked, no
/// framing, nothing from elsewhere.
fn page(status: StatusCode, markup: Markup) -> Response {
    let mut resp = (status, markup).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(dashboard::CSP),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    resp
}

fn failed(e: impl std::fmt::Display, session: Option<&Session>) -> Response {
    page(
        StatusCode::INTERNAL_SERVER_ERROR,
        pages::problem("Something failed", &e.to_string(), session),
    )
}

/// Did the browser reach habd over TLS (habd itself, or a proxy before it
/// that says so)? Then the cookie is Secure.
fn over_tls(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

/// Lets a request through with its [`Session`] (from the cookie, or an API
/// token in `Authorization`, which carries no CSRF token and so can take no
/// action here); anything else is sent to the sign-in page.
pub(super) async fn require_session(
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Response {
    let from_cookie = req
        .headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|c| dashboard::cookie_value(c).and_then(|id| state.sessions.get(id)));
    let from_token = || {
        let t = super::bearer(req.headers())?;
        state.knows_token(t).then(|| Session {
            who: dashboard::who("", t),
            csrf: String::new(),
        })
    };
    match from_cookie.or_else(from_token) {
        Some(s) => {
            req.extensions_mut().insert(s);
            next.run(req).await
        }
        None => {
            let next = req
                .uri()
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .to_string();
            let target = format!("/signin?next={}", encode(&next));
            Redirect::to(&target).into_response()
        }
    }
}

/// Refuses a form posted from another site: a browser names the page's
/// origin in `Origin`, which must be this host (the CSRF token is checked
/// as well; this also covers the sign-in form, which has none).
pub(super) async fn same_origin(req: Request, next: Next) -> Response {
    if req.method() == axum::http::Method::POST {
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|v| v.to_str().ok());
        let origin = req
            .headers()
            .get(header::ORIGIN)
            .and_then(|v| v.to_str().ok());
        if let Some(origin) = origin {
            let from = origin.split_once("://").map(|(_, rest)| rest);
            if from.is_none() || from != host {
                tracing::warn!(origin, host, "a form posted from another site refused");
                return page(
                    StatusCode::FORBIDDEN,
                    pages::problem(
                        "Refused",
                        "This form was posted from another site: nothing was done.",
                        None,
                    ),
                );
            }
        }
    }
    next.run(req).await
}

fn encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[derive(Deserialize)]
pub(super) struct NextQuery {
    next: Option<String>,
}

pub(super) async fn signin_page(Query(q): Query<NextQuery>) -> Response {
    let next = dashboard::safe_next(q.next.as_deref());
    page(StatusCode::OK, pages::signin(&next, None))
}

#[derive(Deserialize)]
pub(super) struct SigninForm {
    token: String,
    #[serde(default)]
    name: String,
    next: Option<String>,
}

pub(super) async fn signin(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(f): Form<SigninForm>,
) -> Response {
    let next = dashboard::safe_next(f.next.as_deref());
    let token = f.token.trim();
    if !state.knows_token(token) {
        state.metrics.http_unauthorized.inc();
        return page(
            StatusCode::UNAUTHORIZED,
            pages::signin(&next, Some("That token is not one of habd's API tokens.")),
        );
    }
    let who = dashboard::who(&f.name, token);
    match state.sessions.start(who) {
        Ok((id, s)) => {
            tracing::info!(who = %s.who, "signed in to the dashboard");
            let mut resp = Redirect::to(&next).into_response();
            if let Ok(v) =
                HeaderValue::from_str(&dashboard::session_cookie(&id, over_tls(&headers)))
            {
                resp.headers_mut().insert(header::SET_COOKIE, v);
            }
            resp
        }
        Err(e) => failed(e, None),
    }
}

#[derive(Deserialize)]
pub(super) struct CsrfForm {
    #[serde(default)]
    csrf: String,
    #[serde(flatten)]
    rest: BTreeMap<String, String>,
}

/// Refuses a form without the session's CSRF token (a page elsewhere
/// posting in the operator's name): the refusal, or None to go on.
fn check_csrf(session: &Session, form: &CsrfForm) -> Option<Response> {
    if !session.csrf.is_empty() && dashboard::same_secret(&session.csrf, &form.csrf) {
        return None;
    }
    tracing::warn!(who = %session.who, "dashboard form without its CSRF token refused");
    Some(page(
        StatusCode::FORBIDDEN,
        pages::problem(
            "Refused",
            "This request did not carry the form's CSRF token, so it may not come from a page of habd: nothing was done. Open the page again and use its buttons.",
            Some(session),
        ),
    ))
}

pub(super) async fn signout(
    State(state): State<AppState>,
    axum::Extension(session): axum::Extension<Session>,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Some(refused) = check_csrf(&session, &form) {
        return refused;
    }
    if let Some(id) = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(dashboard::cookie_value)
    {
        state.sessions.end(id);
    }
    let mut resp = Redirect::to("/signin").into_response();
    if let Ok(v) = HeaderValue::from_str(&dashboard::cleared_cookie(over_tls(&headers))) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

pub(super) async fn overview(
    State(state): State<AppState>,
    axum::Extension(session): axum::Extension<Session>,
) -> Response {
    let (store, config) = (state.store(), state.config.clone());
    match blocking(move || gather(&store, &config, false)).await {
        Ok(f) => page(StatusCode::OK, pages::overview(&f, &session)),
        Err(e) => failed(e.reason, Some(&session)),
    }
}

pub(super) async fn freshness(
    State(state): State<AppState>,
    axum::Extension(session): axum::Extension<Session>,
) -> Response {
    let (store, config) = (state.store(), state.config.clone());
    match blocking(move || releases(&store, &config, true)).await {
        Ok(rows) => page(
            StatusCode::OK,
            pages::freshness(chrono::Utc::now(), &rows, &session),
        ),
        Err(e) => failed(e.reason, Some(&session)),
    }
}

pub(super) async fn fleets_page(
    State(state): State<AppState>,
    axum::Extension(session): axum::Extension<Session>,
) -> Response {
    let (store, config) = (state.store(), state.config.clone());
    match blocking(move || gather(&store, &config, true)).await {
        Ok(f) => page(StatusCode::OK, fleets::fleets(&f, &session)),
        Err(e) => failed(e.reason, Some(&session)),
    }
}

/// What changes the fleets page: each fleet's newest rollout, its step
/// count, and every node's last look.
fn fingerprint(f: &model::Facts) -> String {
    let fleets: Vec<_> = f
        .fleets
        .iter()
        .map(|x| {
            (
                x.rollout.as_ref().map(|r| (r.id, r.state, &r.nodes)),
                x.steps.len(),
            )
        })
        .collect();
    format!("{fleets:?}{:?}", f.nodes)
}

/// The fleets page's live feed: the changing part, rendered again whenever
/// a rollout moves or a node is looked at (checked every second).
pub(super) async fn fleets_events(State(state): State<AppState>) -> Response {
    let stream = futures_util::stream::unfold(
        (state, String::new(), true),
        |(state, last, first)| async move {
            let mut wait = !first;
            loop {
                if wait {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                wait = true;
                let (store, config) = (state.store(), state.config.clone());
                let facts = match blocking(move || gather(&store, &config, true)).await {
                    Ok(f) => f,
                    Err(e) => {
                        // The page keeps what it shows; try again in a second.
                        tracing::warn!(error = %e.reason, "the fleets page's live feed could not read the store");
                        continue;
                    }
                };
                let print = fingerprint(&facts);
                if print != last || first {
                    let html = fleets::live(&facts).into_string();
                    let event = Event::default().event("live").data(html);
                    return Some((Ok::<_, Infallible>(event), (state, print, false)));
                }
            }
        },
    );
    let mut resp = Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

pub(super) async fn build_page(
    State(state): State<AppState>,
    axum::Extension(session): axum::Extension<Session>,
    Path(id): Path<String>,
) -> Response {
    let Ok(id) = id.parse::<i64>() else {
        return page(
            StatusCode::NOT_FOUND,
            pages::problem(
                "No such build",
                "A build is named by its number.",
                Some(&session),
            ),
        );
    };
    let chain = match super::chain::chain_of(&state, id).await {
        Ok(c) => c,
        Err(e) if e.status == StatusCode::NOT_FOUND => {
            return page(
                StatusCode::NOT_FOUND,
                pages::problem("No such build", &e.reason, Some(&session)),
            )
        }
        Err(e) => return failed(e.reason, Some(&session)),
    };
    let tag = chain.stored_ref.as_ref().and_then(|r| {
        (r.kind == crate::refplan::RefKind::AnnotatedTag)
            .then(|| tag_text(&state.config.state_dir, &r.pipeline, &r.oid, true))
            .flatten()
    });
    page(
        StatusCode::OK,
        fleets::chain(chrono::Utc::now(), &chain, tag.as_deref(), &session),
    )
}

#[derive(Deserialize)]
pub(super) struct ImageQuery {
    image: String,
}

/// The chain of custody of the image a node runs: the build hab made of
/// that index digest, or a warning that hab made none.
pub(super) async fn custody(
    State(state): State<AppState>,
    axum::Extension(session): axum::Extension<Session>,
    Query(q): Query<ImageQuery>,
) -> Response {
    let digest = model::digest_of(&q.image).unwrap_or(&q.image).to_string();
    let store = state.store();
    let d = digest.clone();
    match blocking(move || store.build_by_index(&d)).await {
        Ok(Some(b)) => Redirect::to(&format!("/builds/{}", b.id)).into_response(),
        Ok(None) => page(
            StatusCode::NOT_FOUND,
            pages::problem(
                "Not built by hab",
                &format!("No build of habd's has the index digest {digest}: whatever runs {} did not come through hab's verified chain.", q.image),
                Some(&session),
            ),
        ),
        Err(e) => failed(e.reason, Some(&session)),
    }
}

pub(super) async fn queue_page(
    State(state): State<AppState>,
    axum::Extension(session): axum::Extension<Session>,
) -> Response {
    let store = state.store();
    let got = blocking(move || {
        let mut items = Vec::new();
        for i in store.queue_items(None, 50)? {
            let t = store.triggers_of(i.id)?;
            items.push((i, t));
        }
        Ok((items, store.deliveries(50)?, store.actions(50)?))
    })
    .await;
    match got {
        Ok((items, deliveries, actions)) => page(
            StatusCode::OK,
            pages::queue(chrono::Utc::now(), &items, &deliveries, &actions, &session),
        ),
        Err(e) => failed(e.reason, Some(&session)),
    }
}

/// The stylesheet and the script, embedded in the binary.
pub(super) async fn asset(Path(name): Path<String>) -> Response {
    let (body, kind) = match name.as_str() {
        "app.css" => (dashboard::CSS, "text/css; charset=utf-8"),
        "app.js" => (dashboard::JS, "text/javascript; charset=utf-8"),
        _ => return (StatusCode::NOT_FOUND, "no such asset").into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

/// The sessions of the dashboard, shared by the handlers.
pub(super) type SessionStore = Arc<dashboard::Sessions>;
