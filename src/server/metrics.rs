//! `/metrics`: counts read from the store at each scrape, in Prometheus'
//! text format.

use axum::{
    extract::State,
    http::header,
    response::{IntoResponse, Response},
};
use prometheus_client::{
    encoding::text::encode,
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{exponential_buckets, Histogram},
    },
    registry::Registry,
};

use super::{blocking, ApiError, AppState};
use crate::dashboard::model;

/// Counters habd exports on `/metrics`.
pub(super) struct Metrics {
    pub(super) syncs: Family<Vec<(String, String)>, Gauge>,
    pub(super) webhooks: Family<Vec<(String, String)>, Counter>,
    pub(super) queue: Family<Vec<(String, String)>, Gauge>,
    pub(super) refs: Family<Vec<(String, String)>, Gauge>,
    pub(super) last_sync: Family<Vec<(String, String)>, Gauge>,
    pub(super) builds: Family<Vec<(String, String)>, Gauge>,
    pub(super) http_unauthorized: Counter,
    pub(super) node_height: Family<Labels, Gauge>,
    pub(super) node_lag: Family<Labels, Gauge>,
    pub(super) node_ibd: Family<Labels, Gauge>,
    pub(super) node_healthy: Family<Labels, Gauge>,
    pub(super) node_image: Family<Labels, Gauge>,
    pub(super) node_observed: Family<Labels, Gauge>,
    pub(super) rollout_state: Family<Labels, Gauge>,
    pub(super) rollout_step: Family<Labels, Gauge>,
    pub(super) rollout_nodes: Family<Labels, Gauge>,
    pub(super) build_seconds: Family<Labels, Histogram, fn() -> Histogram>,
    pub(super) verify_seconds: Family<Labels, Histogram, fn() -> Histogram>,
    pub(super) release_stage: Family<Labels, Gauge>,
    pub(super) tag_seen: Family<Labels, Gauge>,
}

type Labels = Vec<(String, String)>;

/// Build and verification times: from 10 s to about 11 h.
fn duration_buckets() -> Histogram {
    Histogram::new(exponential_buckets(10.0, 2.0, 13))
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            syncs: Family::default(),
            webhooks: Family::default(),
            queue: Family::default(),
            refs: Family::default(),
            last_sync: Family::default(),
            builds: Family::default(),
            http_unauthorized: Counter::default(),
            node_height: Family::default(),
            node_lag: Family::default(),
            node_ibd: Family::default(),
            node_healthy: Family::default(),
            node_image: Family::default(),
            node_observed: Family::default(),
            rollout_state: Family::default(),
            rollout_step: Family::default(),
            rollout_nodes: Family::default(),
            build_seconds: Family::new_with_constructor(duration_buckets),
            verify_seconds: Family::new_with_constructor(duration_buckets),
            release_stage: Family::default(),
            tag_seen: Family::default(),
        }
    }
}

impl Metrics {
    /// Registers every family under `registry` (prefixed `hab_`).
    pub(super) fn register(&self, registry: &mut Registry) {
        let gauges: [(&str, &str, &Family<Labels, Gauge>); 16] = [
            ("syncs", "Syncs recorded, by pipeline and outcome", &self.syncs),
            ("queue", "Queue items, by kind and state", &self.queue),
            ("refs", "Tracked refs, by pipeline, state and verdict", &self.refs),
            ("last_sync_timestamp_seconds", "Unix time the last sync of a pipeline finished, by outcome", &self.last_sync),
            ("builds", "Builds recorded, by pipeline and state", &self.builds),
            ("node_height_blocks", "Blocks each node has validated, at habd's last look", &self.node_height),
            ("node_lag_blocks", "Blocks each node is behind the best healthy node on its chain", &self.node_lag),
            ("node_initial_block_download", "1 while the node says it is in initial block download", &self.node_ibd),
            ("node_healthy", "1 when the node passes its gates (running, answering, not in IBD)", &self.node_healthy),
            ("node_image_info", "The pinned image each node runs (always 1)", &self.node_image),
            ("node_observed_timestamp_seconds", "Unix time of habd's last look at the node", &self.node_observed),
            ("rollout_state", "1 for the state of each fleet's newest rollout", &self.rollout_state),
            ("rollout_step", "Nodes of each fleet's newest rollout done (moved and through their gates)", &self.rollout_step),
            ("rollout_nodes", "Nodes in each fleet's newest rollout", &self.rollout_nodes),
            ("release_stage_seconds", "Seconds from each pipeline's newest tag first seen to each stage it reached (verified, built, each channel)", &self.release_stage),
            ("release_tag_seen_timestamp_seconds", "Unix time each pipeline's newest tag was first seen", &self.tag_seen),
        ];
        for (name, help, family) in gauges {
            registry.register(name, help, family.clone());
        }
        registry.register(
            "webhooks",
            "Webhook deliveries, by provider and outcome (queued, duplicate, pong, ignored, or the HTTP status refusing it)",
            self.webhooks.clone(),
        );
        registry.register(
            "kubernetes_events_failed",
            "Kubernetes Events the API refused (each is also a warning in habd's log)",
            crate::rollout::kube::EVENTS_FAILED.clone(),
        );
        registry.register(
            "http_unauthorized",
            "API requests refused for a missing or wrong token",
            self.http_unauthorized.clone(),
        );
        registry.register(
            "build_duration_seconds",
            "Seconds from a build queued to its end (the newest 500 builds)",
            self.build_seconds.clone(),
        );
        registry.register(
            "verification_duration_seconds",
            "Seconds a build's verification took: read-back and smoke runs (the newest 500 builds)",
            self.verify_seconds.clone(),
        );
    }

    /// Sets the store-fed families from one reading of the store.
    fn set_facts(&self, facts: &StoreFacts) {
        for f in [
            &self.node_height,
            &self.node_lag,
            &self.node_ibd,
            &self.node_healthy,
            &self.node_image,
            &self.node_observed,
            &self.rollout_state,
            &self.rollout_step,
            &self.rollout_nodes,
            &self.release_stage,
            &self.tag_seen,
        ] {
            f.clear();
        }
        self.build_seconds.clear();
        self.verify_seconds.clear();
        let lags = model::lags(&facts.nodes);
        for n in &facts.nodes {
            let l = || {
                vec![
                    label("fleet", &n.fleet),
                    label("node", &n.ordinal.to_string()),
                ]
            };
            if let Some(h) = n.height {
                self.node_height.get_or_create(&l()).set(clamp(h));
            }
            if let Some(Some(lag)) = lags.get(&(n.fleet.clone(), n.ordinal)) {
                self.node_lag.get_or_create(&l()).set(clamp(*lag));
            }
            if let Some(ibd) = n.ibd {
                self.node_ibd.get_or_create(&l()).set(i64::from(ibd));
            }
            self.node_healthy
                .get_or_create(&l())
                .set(i64::from(n.healthy));
            if let Some(image) = &n.image {
                let mut with = l();
                with.push(label("image", image));
                self.node_image.get_or_create(&with).set(1);
            }
            self.node_observed
                .get_or_create(&l())
                .set(n.observed_at.timestamp());
        }
        for f in &facts.fleets {
            let Some(r) = &f.rollout else { continue };
            let fleet = || vec![label("fleet", &f.name)];
            self.rollout_state
                .get_or_create(&vec![
                    label("fleet", &f.name),
                    label("rollout", &r.id.to_string()),
                    label("state", r.state.as_str()),
                ])
                .set(1);
            let done = r.nodes.iter().filter(|(_, _, s)| *s).count();
            self.rollout_step
                .get_or_create(&fleet())
                .set(i64::try_from(done).unwrap_or(i64::MAX));
            self.rollout_nodes
                .get_or_create(&fleet())
                .set(i64::from(f.nodes));
        }
        for d in &facts.durations {
            let l = vec![label("pipeline", &d.pipeline)];
            if let Some(s) = d.build_seconds {
                self.build_seconds.get_or_create(&l).observe(s);
            }
            if let Some(s) = d.verify_seconds {
                self.verify_seconds.get_or_create(&l).observe(s);
            }
        }
        for r in &facts.releases {
            let Some(s) = &r.stages else { continue };
            let tag = s.tag.name.strip_prefix("refs/tags/").unwrap_or(&s.tag.name);
            let base = || vec![label("pipeline", &r.pipeline), label("ref", tag)];
            self.tag_seen.get_or_create(&base()).set(s.seen.timestamp());
            for (stage, secs) in s.reached() {
                let mut l = base();
                l.push(label("stage", &stage));
                self.release_stage.get_or_create(&l).set(secs);
            }
        }
    }
}

fn label(k: &str, v: &str) -> (String, String) {
    (k.to_string(), v.to_string())
}

fn clamp(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// What the store-fed families are set from.
struct StoreFacts {
    nodes: Vec<crate::store::NodeLook>,
    fleets: Vec<model::FleetFacts>,
    durations: Vec<crate::store::BuildDuration>,
    releases: Vec<crate::dashboard::pages::Freshness>,
}

pub(super) async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let store = state.store();
    let names: Vec<String> = state
        .config
        .pipelines
        .iter()
        .map(|p| p.name.clone())
        .collect();
    let config = state.config.clone();
    let snapshot = blocking(move || {
        let facts = super::ui::gather(&store, &config, false)?;
        let facts = StoreFacts {
            nodes: facts.nodes,
            fleets: facts.fleets,
            durations: store.build_durations(500)?,
            releases: super::ui::releases(&store, &config, false)?,
        };
        let mut out = Vec::new();
        for name in names {
            let refs = store.refs(&name)?;
            let last = store.syncs(&name, 1)?.into_iter().next();
            out.push((name, refs, last));
        }
        Ok((
            (out, facts),
            store.build_counts()?,
            store.sync_counts()?,
            store.queue_counts()?,
        ))
    })
    .await?;
    let ((snapshot, facts), builds, syncs, queue) = snapshot;
    state.metrics.set_facts(&facts);
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
