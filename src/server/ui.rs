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

use super::{blocking, rollouts::act, AppState};
use crate::{
    config::Config,
    dashboard::{self, fleets, model, pages, Session},
    store::{Store, StoreError},
};

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
        let t = req
            .headers()
            .get(header::AUTHORIZATION)?
            .to_str()
            .ok()?
            .strip_prefix("Bearer ")?
            .trim();
        state
            .tokens
            .iter()
            .any(|k| dashboard::same_secret(k, t))
            .then(|| Session {
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
    if !state
        .tokens
        .iter()
        .any(|k| dashboard::same_secret(k, token))
    {
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

/// Everything the overview and the fleets page read, from the store.
pub fn gather(store: &Store, config: &Config, steps: bool) -> Result<model::Facts, StoreError> {
    let mut pipelines = Vec::new();
    for p in &config.pipelines {
        let states = store.channels(&p.name)?;
        let mut builds = BTreeMap::new();
        let channels = p
            .channels
            .iter()
            .map(|c| {
                let s = states.iter().find(|s| s.name == c.name).cloned();
                if let Some(s) = &s {
                    if !builds.contains_key(&s.build_id) {
                        if let Some(b) = store.build(s.build_id)? {
                            builds.insert(b.id, b);
                        }
                    }
                }
                Ok((c.name.clone(), s))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        pipelines.push(model::PipelineFacts {
            name: p.name.clone(),
            implementation: serde_json::to_value(p.implementation)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default(),
            channels,
            builds,
        });
    }
    let mut fleets = Vec::new();
    for f in &config.fleets {
        let rollout = store.rollouts(Some(&f.name), 1)?.into_iter().next();
        let steps = match (&rollout, steps) {
            (Some(r), true) => store.rollout_steps(r.id)?,
            _ => Vec::new(),
        };
        fleets.push(model::FleetFacts {
            name: f.name.clone(),
            pipeline: f.pipeline.clone(),
            channel: f.channel.clone(),
            target: f.target.clone(),
            nodes: f.nodes,
            rollout,
            steps,
        });
    }
    Ok(model::Facts {
        now: chrono::Utc::now(),
        pipelines,
        fleets,
        nodes: store.node_statuses()?,
    })
}

/// The message of an annotated tag object (without its signature), or the
/// whole object when `whole`.
fn tag_text(state_dir: &std::path::Path, pipeline: &str, oid: &str, whole: bool) -> Option<String> {
    let path = crate::sync::mirror_path(state_dir, pipeline);
    if !path.join("HEAD").exists() {
        return None;
    }
    let raw = crate::mirror::Mirror::open_or_init(&path)
        .ok()?
        .read_raw(oid)
        .ok()?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    if whole {
        return Some(text);
    }
    let body = text.split_once("\n\n").map_or("", |(_, b)| b);
    let message = body
        .split("-----BEGIN PGP SIGNATURE-----")
        .next()
        .unwrap_or("");
    Some(message.trim_end().to_string())
}

/// Per pipeline, its newest tag and when it reached each stage (the
/// freshness page and `/metrics`); with `messages`, the tags' messages.
pub fn releases(
    store: &Store,
    config: &Config,
    messages: bool,
) -> Result<Vec<pages::Freshness>, StoreError> {
    let mut out = Vec::new();
    for p in &config.pipelines {
        let refs: Vec<_> = store
            .refs(&p.name)?
            .into_iter()
            .filter(|r| p.refs.tracks(&r.name))
            .collect();
        let channels: Vec<String> = p.channels.iter().map(|c| c.name.clone()).collect();
        let mut message = None;
        let stages = match model::newest_tag(&refs) {
            None => None,
            Some(tag) => {
                let events = store.ref_events(&p.name, &tag.name)?;
                let of_tag: Vec<_> = store
                    .builds(Some(&p.name), 1000)?
                    .into_iter()
                    .filter(|b| b.ref_name == tag.name)
                    .collect();
                let ids: Vec<i64> = of_tag.iter().map(|b| b.id).collect();
                let moves = store.channel_moves(&p.name, None, 1000)?;
                if messages && tag.kind == crate::refplan::RefKind::AnnotatedTag {
                    message = tag_text(&config.state_dir, &p.name, &tag.oid, false);
                }
                let newest = of_tag.into_iter().max_by_key(|b| b.id);
                Some(model::release_stages(
                    tag, &events, newest, &moves, &channels, &ids,
                ))
            }
        };
        out.push(pages::Freshness {
            pipeline: p.name.clone(),
            implementation: serde_json::to_value(p.implementation)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default(),
            stages,
            message,
        });
    }
    Ok(out)
}

/// The overview page's HTML for `session`, from the store: what `GET /`
/// answers (and what `examples/bench_dashboard.rs` times).
///
/// # Errors
/// The store fails.
pub fn overview_html(
    store: &Store,
    config: &Config,
    session: &Session,
) -> Result<String, StoreError> {
    Ok(pages::overview(&gather(store, config, false)?, session).into_string())
}

/// The facts the overview reads, alone (the benchmark's measure of the
/// store's share).
///
/// # Errors
/// The store fails.
pub fn gather_facts(store: &Store, config: &Config) -> Result<model::Facts, StoreError> {
    gather(store, config, false)
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
            loop {
                if !first {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                let (store, config) = (state.store(), state.config.clone());
                let facts = blocking(move || gather(&store, &config, true)).await;
                let Ok(facts) = facts else {
                    continue;
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

fn known_action(action: &str) -> Option<(&'static str, &'static str)> {
    match action {
        "pause" => Some(("Pause", "The rollout stops after the node it is on; nodes keep what they run until you resume it.")),
        "resume" => Some(("Resume", "The rollout goes on the way it was going, one node at a time, behind the gates.")),
        "undo" => Some(("Undo", "Every node the rollout changed goes back to the image it ran before, one at a time, behind the gates.")),
        _ => None,
    }
}

pub(super) async fn act_confirm(
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

pub(super) async fn act_post(
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
pub(super) struct PromoteQuery {
    pipeline: String,
    build: i64,
    channel: String,
}

pub(super) async fn promote_confirm(
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

pub(super) async fn promote_post(
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
