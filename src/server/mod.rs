//! habd's HTTP side: the JSON API under `/api/v1` (bearer-token auth),
//! `/healthz`, `/metrics` (Prometheus text), and the mirrors, read-only, over
//! git's dumb HTTP protocol under `/git/<pipeline>`.
//!
//! The mirrors are served without a token: they hold upstream's public source,
//! and `git clone http://HOST:PORT/git/<pipeline>` should just work inside the
//! cluster. Nothing under `/git` writes.

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Instant,
};

use axum::{
    extract::{Path, Request, State},
    http::{header, HeaderValue, StatusCode},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, post},
    Json, Router,
};
use prometheus_client::registry::Registry;
use serde_json::json;

mod app;
mod builds;
mod chain;
mod channels;
mod git;
mod hooks;
mod metrics;
mod rollouts;
mod ui;

use git::{git_head, git_info_packs, git_info_refs, git_object};
use metrics::{metrics, Metrics};
pub use ui::{gather_facts, overview_html};

use crate::{
    api::{
        AckRequest, ErrorBody, PipelineView, PruneReport, PruneRequest, RefBuild, RefView,
        StatusView,
    },
    builder::Builds,
    config::{Config, Pipeline, SignaturePolicy},
    refplan::may_build,
    store::{StoreError, StoredRef},
    sync::Syncer,
};

/// An API error: a status and a JSON body `{"error": reason}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    reason: String,
    extra: Option<serde_json::Value>,
}

impl ApiError {
    fn new(status: StatusCode, reason: impl Into<String>) -> Self {
        ApiError {
            status,
            reason: reason.into(),
            extra: None,
        }
    }

    /// A 500 carrying the error's own words.
    fn internal(e: impl std::fmt::Display) -> Self {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NoSuchRef { .. } => ApiError::new(StatusCode::NOT_FOUND, e.to_string()),
            StoreError::AckRefused {
                ref current_oid, ..
            } => {
                let detail = json!({ "current_oid": current_oid });
                let mut err = ApiError::new(StatusCode::CONFLICT, e.to_string());
                err.extra = Some(detail);
                err
            }
            e => ApiError::internal(e),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.reason,
            status: self.status.as_u16(),
            detail: self.extra,
        };
        let mut resp = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

type ApiResult<T> = Result<Json<T>, ApiError>;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    config: Arc<Config>,
    syncer: Syncer,
    tokens: Arc<Vec<String>>,
    metrics: Arc<Metrics>,
    registry: Arc<Registry>,
    builds: Arc<Builds>,
    rollouts: Arc<crate::rollout::Rollouts>,
    promotions: Arc<crate::promotion::Promotions>,
    /// habd's signer of provenance (its public key is served at `/api/v1/key`).
    provenance: crate::provenance::Provenance,
    queue: Arc<crate::queue::Queue>,
    started: Instant,
    requests: Arc<AtomicU64>,
    sessions: ui::SessionStore,
}

/// Runs a blocking store call off the async runtime.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("task failed: {e}"),
            )
        })?
        .map_err(ApiError::from)
}

/// The whole HTTP application.
pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/status", get(status))
        .route("/key", get(signing_key))
        .route("/gateway", get(gateway_nodes))
        .route("/pipelines", get(list_pipelines))
        .route("/pipelines/{name}", get(get_pipeline))
        .route("/pipelines/{name}/sync", post(sync_pipeline))
        .route("/pipelines/{name}/syncs", get(list_syncs))
        .route("/pipelines/{name}/rebuild", post(rebuild_pipeline))
        .route("/pipelines/{name}/refs", get(list_refs))
        .route("/pipelines/{name}/acknowledge", post(acknowledge))
        .route(
            "/pipelines/{name}/builds",
            post(builds::start_build).get(builds::list_builds),
        )
        .route("/builds", get(builds::list_builds))
        .route("/builds/{id}", get(builds::get_build))
        .route("/builds/{id}/logs", get(builds::build_logs))
        .route("/builds/{id}/cancel", post(builds::cancel_build))
        .route("/verify", post(builds::verify))
        .route("/pipelines/{name}/channels", get(channels::list_channels))
        .route("/pipelines/{name}/promote", post(channels::promote_build))
        .route("/fleets", get(rollouts::list_fleets))
        .route("/fleets/{name}/{action}", post(rollouts::control))
        .route("/rollouts", get(rollouts::list_rollouts))
        .route("/rollouts/{id}", get(rollouts::get_rollout))
        .route("/fleets/{name}", get(chain::fleet))
        .route("/builds/{id}/chain", get(chain::build_chain))
        .route("/queue", get(chain::list_queue))
        .route("/registry/prune", post(prune_registry))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such API route") })
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    let dashboard = Router::new()
        .route("/", get(ui::overview))
        .route("/freshness", get(ui::freshness))
        .route("/fleets", get(ui::fleets_page))
        .route("/events/fleets", get(ui::fleets_events))
        .route("/builds/{id}", get(ui::build_page))
        .route("/custody", get(ui::custody))
        .route("/queue", get(ui::queue_page))
        .route(
            "/act/{fleet}/{action}",
            get(ui::act_confirm).post(ui::act_post),
        )
        .route("/promote", get(ui::promote_confirm).post(ui::promote_post))
        .route("/signout", post(ui::signout))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            ui::require_session,
        ))
        .route("/signin", get(ui::signin_page).post(ui::signin))
        .layer(middleware::from_fn(ui::same_origin));
    Router::new()
        .merge(dashboard)
        .route("/assets/{name}", get(ui::asset))
        .nest("/api/v1", api)
        .route("/healthz", get(healthz))
        .route("/hooks/github", post(hooks::github))
        .route("/hooks/gitea", post(hooks::gitea))
        .route("/hooks/generic/{pipeline}", post(hooks::generic))
        .route("/metrics", get(metrics))
        .route("/git/{name}/info/refs", get(git_info_refs))
        .route("/git/{name}/HEAD", get(git_head))
        .route("/git/{name}/objects/info/packs", get(git_info_packs))
        .route("/git/{name}/objects/{*path}", get(git_object))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not found") })
        .with_state(state)
}

/// The bearer token a request carries, if any.
fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
}

impl AppState {
    /// Whether `token` is one of the API tokens (compared in constant time).
    fn knows_token(&self, token: &str) -> bool {
        self.tokens
            .iter()
            .any(|k| crate::dashboard::same_secret(k, token))
    }
}

async fn require_token(State(state): State<AppState>, req: Request, next: Next) -> Response {
    state.requests.fetch_add(1, Ordering::Relaxed);
    let reason = match bearer(req.headers()) {
        None => "missing bearer token: send 'Authorization: Bearer <token>' (habctl: --token or HAB_TOKEN)",
        Some(t) if state.knows_token(t) => {
            let who = format!("api ({})", crate::dashboard::who("", t));
            let mut req = req;
            req.extensions_mut().insert(rollouts::Caller(who));
            return next.run(req).await;
        }
        Some(_) => "wrong bearer token",
    };
    state.metrics.http_unauthorized.inc();
    ApiError::new(StatusCode::UNAUTHORIZED, reason).into_response()
}

/// habd's public signing key: what an auditor checks attestations with.
async fn signing_key(State(state): State<AppState>) -> Json<crate::api::SigningKeyView> {
    let key = state.provenance.public_key();
    Json(crate::api::SigningKeyView {
        keyid: key.keyid(),
        pem: key.pem(),
        openssh: key.openssh("habd"),
        builder_id: state.provenance.builder_id(),
    })
}

async fn healthz(State(state): State<AppState>) -> Response {
    let store = state.store();
    match blocking(move || store.schema_version()).await {
        Ok(v) => Json(json!({ "status": "ok", "schema_version": v })).into_response(),
        Err(e) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("store unavailable: {}", e.reason),
        )
        .into_response(),
    }
}

fn pipeline_view(
    p: &Pipeline,
    refs: &[StoredRef],
    last: Option<crate::store::SyncRecord>,
) -> PipelineView {
    let mut counts = std::collections::BTreeMap::new();
    // Refs recorded under an older track/ignore setting stay in the store
    // (nothing is dropped) but are no longer shown as the pipeline's.
    for r in refs.iter().filter(|r| p.refs.tracks(&r.name)) {
        *counts.entry(r.verdict.kind().to_string()).or_insert(0) += 1;
    }
    PipelineView {
        name: p.name.clone(),
        implementation: p.implementation.as_str().to_string(),
        upstream: p.upstream.clone(),
        track: p.refs.track.clone(),
        ignore: p.refs.ignore.clone(),
        policy: match p.policy {
            SignaturePolicy::Signed => "signed".into(),
            SignaturePolicy::None => "none".into(),
        },
        keys: p
            .keyring
            .as_ref()
            .map(|k| k.fingerprints())
            .unwrap_or_default(),
        sync_schedule: p.sync_schedule.as_ref().map(|s| s.expression.clone()),
        next_sync: p
            .sync_schedule
            .as_ref()
            .and_then(|s| crate::schedule::next_slot(&s.cron, p.timezone, chrono::Utc::now())),
        rebuild_schedule: p.rebuild_schedule.as_ref().map(|s| s.expression.clone()),
        next_rebuild: p
            .rebuild_schedule
            .as_ref()
            .and_then(|s| crate::schedule::next_slot(&s.cron, p.timezone, chrono::Utc::now())),
        timezone: p.timezone.name().to_string(),
        webhook: p.webhook_secret.is_some(),
        auto_build: p.build.as_ref().is_some_and(|b| b.auto),
        channels: p.channels.iter().map(|c| c.name.clone()).collect(),
        refs: counts,
        last_sync: last,
        mirror: format!("/git/{}", p.name),
    }
}

async fn pipeline_views(
    state: &AppState,
    pipelines: Vec<Arc<Pipeline>>,
) -> Result<Vec<PipelineView>, ApiError> {
    let store = state.store();
    blocking(move || {
        pipelines
            .iter()
            .map(|p| {
                let refs = store.refs(&p.name)?;
                let last = store.syncs(&p.name, 1)?.into_iter().next();
                Ok(pipeline_view(p, &refs, last))
            })
            .collect()
    })
    .await
}

async fn list_pipelines(State(state): State<AppState>) -> ApiResult<Vec<PipelineView>> {
    let all = state.config.pipelines.clone();
    Ok(Json(pipeline_views(&state, all).await?))
}

async fn get_pipeline(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<PipelineView> {
    let p = state.pipeline(&name)?;
    let mut views = pipeline_views(&state, vec![p]).await?;
    Ok(Json(views.remove(0)))
}

async fn status(State(state): State<AppState>) -> ApiResult<StatusView> {
    let all = state.config.pipelines.clone();
    let views = pipeline_views(&state, all).await?;
    Ok(Json(StatusView {
        version: env!("CARGO_PKG_VERSION").into(),
        uptime_seconds: state.started.elapsed().as_secs(),
        state_dir: state.config.state_dir.clone(),
        store: state.store().path().to_path_buf(),
        builds_running: state.builds.running(),
        pipelines: views,
    }))
}

/// The RPC front door habd runs, as it sees the nodes (`habctl rpc`).
async fn gateway_nodes(State(state): State<AppState>) -> ApiResult<Vec<crate::gateway::DoorNode>> {
    match state.rollouts.gateway() {
        Some(g) => Ok(Json(g.nodes())),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            match &state.config.gateway {
                Some(_) => "the RPC front door runs apart (gateway.run = \"apart\"): ask one of its processes, habctl rpc --door http://HOST:PORT --user NAME",
                None => "habd runs no RPC front door: add [gateway] to hab.toml (see the README, \"The RPC front door\")",
            },
        )),
    }
}

async fn sync_pipeline(State(state): State<AppState>, Path(name): Path<String>) -> Response {
    let p = match state.pipeline(&name) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let (outcome, joined) = match state.queue.sync_now(&p.name, "habctl", None).await {
        Ok(o) => o,
        Err(e) => return ApiError::internal(e).into_response(),
    };
    match outcome {
        Ok(mut report) => {
            report.joined = joined;
            Json(report).into_response()
        }
        Err(failure) => {
            // "sync 12 of bitcoind failed: <cause>": the pipeline and the cause.
            let mut e = ApiError::new(StatusCode::BAD_GATEWAY, failure.to_string());
            e.extra = Some(json!({ "sync_id": failure.sync_id }));
            e.into_response()
        }
    }
}

/// `POST /api/v1/pipelines/{name}/rebuild`: queue a rebuild of what the
/// pipeline's channels point at (as its rebuild schedule does). A build whose
/// keys did not change (same commit, recipe, arguments and base digest) is
/// reused; only a changed key builds.
async fn rebuild_pipeline(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let p = state.pipeline(&name)?;
    if p.build.is_none() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("pipeline {name} has no [build] section"),
        ));
    }
    let queued = state
        .queue
        .request(crate::store::Enqueue::new(
            &p.name,
            crate::store::QueueKind::Rebuild,
            "habctl",
        ))
        .await?;
    Ok((StatusCode::ACCEPTED, Json(queued)).into_response())
}

/// `POST /api/v1/registry/prune {"keep": N, "dry_run": false}`: deletes the
/// manifests of builds older than the newest N verified per pipeline, never
/// one a channel points at or a node runs (see [`crate::prune`]); the
/// registry's garbage collector then reclaims their blobs.
async fn prune_registry(
    State(state): State<AppState>,
    body: Result<Json<PruneRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<PruneReport>, ApiError> {
    let Json(req) = body.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text()))?;
    if req.keep == 0 {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "keep must be at least 1: the newest verified build of each pipeline always stays",
        ));
    }
    let fleets = state.rollouts.fleets().await.map_err(ApiError::internal)?;
    let running: std::collections::BTreeSet<String> = fleets
        .iter()
        .flat_map(|f| f.nodes.iter())
        .filter_map(|n| {
            n.image
                .as_deref()?
                .split_once('@')
                .map(|(_, d)| d.to_string())
        })
        .collect();
    let store = state.store();
    let names: Vec<String> = state
        .config
        .pipelines
        .iter()
        .map(|p| p.name.clone())
        .collect();
    let (builds, protected) = blocking(move || {
        let mut protected = std::collections::BTreeSet::new();
        for p in &names {
            for c in store.channels(p)? {
                protected.insert(c.build_id);
            }
        }
        Ok((store.builds(None, u32::MAX)?, protected))
    })
    .await?;
    let plan = crate::prune::plan(&builds, req.keep, &protected, &running);
    let mut report = PruneReport {
        plan,
        deleted: 0,
        missing: 0,
        errors: Vec::new(),
        attached: Vec::new(),
        dry_run: req.dry_run,
    };
    if !req.dry_run {
        let registry = state.builds.registry();
        for d in &report.plan.delete {
            match registry.delete_manifest(&d.repository, &d.digest).await {
                Ok(true) => report.deleted += 1,
                Ok(false) => report.missing += 1,
                Err(e) => report.errors.push(e.to_string()),
            }
            // An attestation goes with its index, never before it.
            if d.what == "index" {
                match registry.detach_all(&d.repository, &d.digest).await {
                    Ok(gone) => report.attached.extend(gone.into_iter().map(|digest| {
                        crate::prune::Doomed {
                            digest,
                            what: "attestation".into(),
                            ..d.clone()
                        }
                    })),
                    Err(e) => report.errors.push(e.to_string()),
                }
            }
        }
        tracing::info!(
            deleted = report.deleted,
            missing = report.missing,
            errors = report.errors.len(),
            kept = report.plan.kept.len(),
            "registry pruned"
        );
    }
    Ok(Json(report))
}

async fn list_syncs(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Vec<crate::store::SyncRecord>> {
    let p = state.pipeline(&name)?;
    let store = state.store();
    Ok(Json(blocking(move || store.syncs(&p.name, 50)).await?))
}

async fn list_refs(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Vec<RefView>> {
    let p = state.pipeline(&name)?;
    let store = state.store();
    let pn = p.name.clone();
    let (refs, builds) = blocking(move || {
        let builds = store
            .latest_builds(&pn)?
            .into_iter()
            .map(|(name, id, state)| {
                let known_bad = store.known_bad(id)?;
                Ok((
                    name,
                    RefBuild {
                        id,
                        state,
                        known_bad,
                    },
                ))
            })
            .collect::<Result<std::collections::HashMap<String, RefBuild>, crate::store::StoreError>>()?;
        Ok((store.refs(&pn)?, builds))
    })
    .await?;
    Ok(Json(
        refs.into_iter()
            .filter(|r| p.refs.tracks(&r.name))
            .map(|r| {
                let decision = may_build(r.state, &r.verdict, p.policy);
                RefView {
                    build: builds.get(&r.name).cloned(),
                    stored: r,
                    buildable: decision.is_ok(),
                    refusal: decision.err(),
                }
            })
            .collect(),
    ))
}

async fn acknowledge(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: Result<Json<AckRequest>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<StoredRef> {
    let p = state.pipeline(&name)?;
    let Json(req) = body.map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("bad request body: {}", e.body_text()),
        )
    })?;
    let store = state.store();
    let actor = req.by.unwrap_or_else(|| "api".into());
    Ok(Json(
        blocking(move || {
            let found = crate::refname::resolve(&req.ref_name, |c| {
                Ok::<_, StoreError>(store.get_ref(&p.name, c)?.is_some())
            })?;
            let refname = found.unwrap_or_else(|| crate::refname::default_full(&req.ref_name));
            store.acknowledge(&p.name, &refname, req.oid.as_deref(), &actor)
        })
        .await?,
    ))
}

/// Waits for SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown requested: finishing in-flight requests");
}

/// Binds and serves until `shutdown` completes, then drains in-flight requests.
///
/// # Errors
/// The address cannot be bound, or the server fails.
pub async fn serve(
    state: AppState,
    listen: SocketAddr,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {listen}: {e}")))?;
    serve_on(state, listener, shutdown).await
}

/// Serves on an already-bound listener (tests bind port 0).
///
/// # Errors
/// The server fails.
pub async fn serve_on(
    state: AppState,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    tracing::info!(addr = %listener.local_addr()?, "habd listening");
    // The RPC front door, on its own port (its clients are not API users).
    if let (Some(gw), Some(g)) = (state.rollouts.gateway(), state.config.gateway.as_ref()) {
        let front = tokio::net::TcpListener::bind(g.listen).await.map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("cannot listen on {} (gateway.listen): {e}", g.listen),
            )
        })?;
        tracing::info!(addr = %front.local_addr()?, "RPC front door listening");
        let app = gw.router();
        tokio::spawn(async move {
            if let Err(e) = axum::serve(front, app).await {
                tracing::error!(error = %e, "the RPC front door stopped");
            }
        });
    }
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}
