//! `/metrics`: counts read from the store at each scrape, in Prometheus'
//! text format.

use axum::{
    extract::State,
    http::header,
    response::{IntoResponse, Response},
};
use prometheus_client::{
    encoding::text::encode,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
};

use super::{blocking, ApiError, AppState};

/// Counters habd exports on `/metrics`.
#[derive(Default)]
pub(super) struct Metrics {
    pub(super) syncs: Family<Vec<(String, String)>, Gauge>,
    pub(super) webhooks: Family<Vec<(String, String)>, Counter>,
    pub(super) queue: Family<Vec<(String, String)>, Gauge>,
    pub(super) refs: Family<Vec<(String, String)>, Gauge>,
    pub(super) last_sync: Family<Vec<(String, String)>, Gauge>,
    pub(super) builds: Family<Vec<(String, String)>, Gauge>,
    pub(super) http_unauthorized: Counter,
}

pub(super) async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let store = state.store();
    let names: Vec<String> = state
        .config
        .pipelines
        .iter()
        .map(|p| p.name.clone())
        .collect();
    let snapshot = blocking(move || {
        let mut out = Vec::new();
        for name in names {
            let refs = store.refs(&name)?;
            let last = store.syncs(&name, 1)?.into_iter().next();
            out.push((name, refs, last));
        }
        Ok((
            out,
            store.build_counts()?,
            store.sync_counts()?,
            store.queue_counts()?,
        ))
    })
    .await?;
    let (snapshot, builds, syncs, queue) = snapshot;
    set_counts(&state.metrics.syncs, ("pipeline", "status"), syncs);
    set_counts(&state.metrics.queue, ("kind", "state"), queue);
    set_counts(&state.metrics.builds, ("pipeline", "state"), builds);
    state.metrics.refs.clear();
    for (name, refs, last) in snapshot {
        for r in &refs {
            state
                .metrics
                .refs
                .get_or_create(&vec![
                    ("pipeline".into(), name.clone()),
                    ("state".into(), r.state.as_str().into()),
                    ("verdict".into(), r.verdict.kind().into()),
                ])
                .inc();
        }
        if let Some(s) = last.filter(|s| s.finished_at.is_some()) {
            state
                .metrics
                .last_sync
                .get_or_create(&vec![
                    ("pipeline".into(), name.clone()),
                    ("status".into(), s.status.clone()),
                ])
                .set(s.finished_at.map_or(0, |t| t.timestamp()));
        }
    }
    let mut text = String::new();
    encode(&mut text, &state.registry).map_err(ApiError::internal)?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

/// Sets a gauge family to counts read from the store, by two labels; label
/// sets no longer counted disappear.
fn set_counts(
    family: &Family<Vec<(String, String)>, Gauge>,
    labels: (&str, &str),
    counts: Vec<(String, String, i64)>,
) {
    family.clear();
    for (a, b, n) in counts {
        family
            .get_or_create(&vec![(labels.0.into(), a), (labels.1.into(), b)])
            .set(n);
    }
}
