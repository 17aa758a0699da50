//! The metrics habd exports, as the chart's dashboard and the tests know them.

/// How Prometheus names a metric's series.
#[derive(Clone, Copy, PartialEq)]
pub enum Kind {
    /// One series, the metric's name.
    Gauge,
    /// One series, the metric's name (which ends in `_total`).
    Counter,
    /// `_bucket` (with `le`), `_sum` and `_count`.
    Histogram,
}

/// The metrics habd exports on `/metrics`: name, kind, labels. The chart's
/// Grafana dashboard may query these and nothing else
/// (tests/chart_monitoring.rs); tests/dashboard_browser.rs checks this list
/// against a live habd's scrape.
pub const HABD_METRICS: &[(&str, Kind, &[&str])] = &[
    ("hab_syncs", Kind::Gauge, &["pipeline", "status"]),
    (
        "hab_webhooks_total",
        Kind::Counter,
        &["provider", "outcome"],
    ),
    ("hab_queue", Kind::Gauge, &["kind", "state"]),
    ("hab_refs", Kind::Gauge, &["pipeline", "state", "verdict"]),
    (
        "hab_last_sync_timestamp_seconds",
        Kind::Gauge,
        &["pipeline", "status"],
    ),
    ("hab_builds", Kind::Gauge, &["pipeline", "state"]),
    ("hab_kubernetes_events_failed_total", Kind::Counter, &[]),
    ("hab_http_unauthorized_total", Kind::Counter, &[]),
    ("hab_node_height_blocks", Kind::Gauge, &["fleet", "node"]),
    ("hab_node_lag_blocks", Kind::Gauge, &["fleet", "node"]),
    (
        "hab_node_initial_block_download",
        Kind::Gauge,
        &["fleet", "node"],
    ),
    ("hab_node_healthy", Kind::Gauge, &["fleet", "node"]),
    (
        "hab_node_image_info",
        Kind::Gauge,
        &["fleet", "node", "image"],
    ),
    (
        "hab_node_observed_timestamp_seconds",
        Kind::Gauge,
        &["fleet", "node"],
    ),
    (
        "hab_rollout_state",
        Kind::Gauge,
        &["fleet", "rollout", "state"],
    ),
    ("hab_rollout_step", Kind::Gauge, &["fleet"]),
    ("hab_rollout_nodes", Kind::Gauge, &["fleet"]),
    ("hab_build_duration_seconds", Kind::Histogram, &["pipeline"]),
    (
        "hab_verification_duration_seconds",
        Kind::Histogram,
        &["pipeline"],
    ),
    (
        "hab_release_stage_seconds",
        Kind::Gauge,
        &["pipeline", "ref", "stage"],
    ),
    (
        "hab_release_tag_seen_timestamp_seconds",
        Kind::Gauge,
        &["pipeline", "ref"],
    ),
];
