//! habd's metrics as the chart hands them to a monitoring stack (issue 19):
//! a ServiceMonitor for habd's own `/metrics`, off by default and apart
//! from the node exporters' one; the Grafana dashboard the chart ships
//! (charts/hab/dashboards/hab.json), carried unchanged by a ConfigMap for
//! Grafana's sidecar; and every series that dashboard queries is one habd
//! exports, filtered by the dashboard's own variables.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::*;
use regex::Regex;
use serde_json::{json, Value};

/// Every series name habd exports, with its metric's name and labels.
fn series() -> BTreeMap<String, (&'static str, BTreeSet<&'static str>)> {
    let mut out = BTreeMap::new();
    for &(name, kind, labels) in HABD_METRICS {
        let labels: BTreeSet<&str> = labels.iter().copied().collect();
        let names = match kind {
            Kind::Gauge | Kind::Counter => vec![name.to_string()],
            Kind::Histogram => ["_bucket", "_sum", "_count"]
                .iter()
                .map(|s| format!("{name}{s}"))
                .collect(),
        };
        for n in names {
            let mut l = labels.clone();
            if n.ends_with("_bucket") {
                l.insert("le");
            }
            out.insert(n, (name, l));
        }
    }
    out
}

fn dashboard_text() -> String {
    std::fs::read_to_string(chart_dir().join("dashboards/hab.json")).unwrap()
}

fn dashboard() -> Value {
    serde_json::from_str(&dashboard_text())
        .unwrap_or_else(|e| panic!("charts/hab/dashboards/hab.json is not JSON: {e}"))
}

/// Every panel, rows' collapsed panels included.
fn panels(dashboard: &Value) -> Vec<&Value> {
    fn walk<'a>(list: &'a Value, out: &mut Vec<&'a Value>) {
        for p in list.as_array().into_iter().flatten() {
            out.push(p);
            walk(&p["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

/// What a panel's title and one of its queries say about where it is.
fn at(panel: &Value, expr: &str) -> String {
    format!("panel {:?}: {expr}", panel["title"].as_str().unwrap_or(""))
}

#[test]
fn habds_service_monitor_is_off_by_default_and_scrapes_its_metrics_port_when_on() {
    let defaults = documents(&render(None, &[]).unwrap());
    assert!(
        !defaults.iter().any(|d| d["kind"] == "ServiceMonitor"),
        "the defaults render a ServiceMonitor"
    );
    let docs = documents(
        &render(
            None,
            &[
                "habd.metrics.serviceMonitor.enabled=true",
                "habd.metrics.serviceMonitor.interval=15s",
                "habd.metrics.serviceMonitor.labels.release=prometheus",
            ],
        )
        .unwrap(),
    );
    let monitors: Vec<&Value> = docs
        .iter()
        .filter(|d| d["kind"] == "ServiceMonitor")
        .collect();
    assert_eq!(
        monitors.len(),
        1,
        "habd's switch is not the node exporters': {monitors:?}"
    );
    let monitor = find(&docs, "ServiceMonitor", "hab-habd");
    assert_eq!(monitor["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(monitor["metadata"]["namespace"], "bitcoin");
    assert_eq!(monitor["metadata"]["labels"]["release"], "prometheus");
    // It selects habd's Service, and that one only.
    let selector = monitor["spec"]["selector"]["matchLabels"]
        .as_object()
        .unwrap();
    assert!(!selector.is_empty());
    let selected: Vec<&str> = docs
        .iter()
        .filter(|d| d["kind"] == "Service")
        .filter(|d| {
            selector
                .iter()
                .all(|(k, v)| &d["metadata"]["labels"][k] == v)
        })
        .map(|d| d["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(selected, ["hab-habd"]);
    // Its port, by name: the one habd.service.port sets, path /metrics.
    let service = find(&docs, "Service", "hab-habd");
    let endpoints = monitor["spec"]["endpoints"].as_array().unwrap();
    assert_eq!(endpoints.len(), 1, "{endpoints:?}");
    let endpoint = &endpoints[0];
    let port = service["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == endpoint["port"])
        .unwrap_or_else(|| panic!("habd's Service has no port {}", endpoint["port"]));
    assert_eq!(port["port"], 8470);
    assert_eq!(endpoint["path"], "/metrics");
    assert_eq!(endpoint["interval"], "15s");
    // habd's NetworkPolicy opens that port (to habd.networkPolicy.ingressFrom).
    let policy = find(&docs, "NetworkPolicy", "hab-habd");
    assert_eq!(
        policy["spec"]["ingress"][0]["ports"][0]["port"],
        port["targetPort"]
    );
    // Its spec fields are the CRD's (kubernetes-validate has no schema of it).
    kubernetes_validate(
        "habd-service-monitor",
        &render(None, &["habd.metrics.serviceMonitor.enabled=true"]).unwrap(),
    );
}

#[test]
fn the_dashboard_configmap_carries_the_charts_dashboard_unchanged() {
    let defaults = documents(&render(None, &[]).unwrap());
    assert!(
        !defaults
            .iter()
            .any(|d| d["kind"] == "ConfigMap" && d["metadata"]["name"] == "hab-dashboard"),
        "the defaults render the dashboard's ConfigMap"
    );
    let docs = documents(&render(None, &["habd.metrics.grafanaDashboard.enabled=true"]).unwrap());
    let map = find(&docs, "ConfigMap", "hab-dashboard");
    assert_eq!(map["metadata"]["labels"]["grafana_dashboard"], "1");
    let data = map["data"].as_object().unwrap();
    assert_eq!(data.keys().collect::<Vec<_>>(), ["hab.json"]);
    let carried = data["hab.json"].as_str().unwrap();
    let parsed: Value = serde_json::from_str(carried)
        .unwrap_or_else(|e| panic!("the ConfigMap's hab.json is not JSON: {e}"));
    assert_eq!(parsed, dashboard());
    assert_eq!(carried, dashboard_text(), "not byte for byte");
    // Labels of one's own (a sidecar configured for another label).
    let docs = documents(
        &render(
            None,
            &[
                "habd.metrics.grafanaDashboard.enabled=true",
                "habd.metrics.grafanaDashboard.labels.team=bitcoin",
            ],
        )
        .unwrap(),
    );
    let map = find(&docs, "ConfigMap", "hab-dashboard");
    assert_eq!(map["metadata"]["labels"]["team"], "bitcoin");
}

#[test]
fn the_all_values_variant_is_scraped_and_shows_the_dashboard() {
    let docs = documents(&render(Some("mainnet-all-values.yaml"), &[]).unwrap());
    find(&docs, "ServiceMonitor", "hab-habd");
    find(&docs, "ConfigMap", "hab-dashboard");
    // Its Prometheus, in a namespace of its own, is let in, and the
    // release's namespace still is (the registry's CronJob calls habd).
    let policy = find(&docs, "NetworkPolicy", "hab-habd");
    let from = policy["spec"]["ingress"][0]["from"].as_array().unwrap();
    assert_eq!(from[0], json!({"podSelector": {}}));
    assert!(
        from.iter().any(
            |p| p["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
                == "monitoring"
        ),
        "{from:?}"
    );
}

#[test]
fn the_dashboard_queries_only_series_habd_exports() {
    let series = series();
    let name = Regex::new(r"\bhab_[a-z0-9_]+").unwrap();
    let selector = Regex::new(r"\b(hab_[a-z0-9_]+)\s*(\{([^}]*)\})?").unwrap();
    let matcher = Regex::new(r#"([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*""#).unwrap();
    let legend_label = Regex::new(r"\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}").unwrap();
    let d = dashboard();
    let mut used = BTreeSet::new();
    let mut queries = 0;
    for panel in panels(&d) {
        for t in panel["targets"].as_array().into_iter().flatten() {
            let expr = t["expr"]
                .as_str()
                .unwrap_or_else(|| panic!("{}: a target without expr", at(panel, "")));
            queries += 1;
            let names: Vec<&str> = name.find_iter(expr).map(|m| m.as_str()).collect();
            assert!(
                !names.is_empty(),
                "{}: queries no hab_ series",
                at(panel, expr)
            );
            let mut labels = BTreeSet::new();
            for n in names {
                let (metric, l) = series.get(n).unwrap_or_else(|| {
                    panic!("{}: {n} is not a series habd exports", at(panel, expr))
                });
                used.insert(*metric);
                labels.extend(l.iter().copied());
            }
            // A series with a fleet or pipeline label follows the
            // dashboard's variable of that name, and a selector matches
            // only labels its series has (`x=~"$x"` on a series without
            // x would select nothing once a value is picked).
            for c in selector.captures_iter(expr) {
                let (_, l) = &series[&c[1]];
                let matchers = c.get(3).map_or("", |m| m.as_str());
                for m in matcher.captures_iter(matchers) {
                    assert!(
                        l.contains(&m[1]),
                        "{}: {} has no label {}",
                        at(panel, expr),
                        &c[1],
                        &m[1]
                    );
                }
                for var in ["fleet", "pipeline"] {
                    if l.contains(var) {
                        assert!(
                            matchers.contains(&format!("{var}=~\"${var}\"")),
                            "{}: {} is not filtered by ${var}",
                            at(panel, expr),
                            &c[1]
                        );
                    }
                }
            }
            // A legend names labels the series have.
            let legend = t["legendFormat"].as_str().unwrap_or("");
            for c in legend_label.captures_iter(legend) {
                assert!(
                    labels.contains(&c[1]),
                    "{}: legend {legend:?} names {}, which its series lack",
                    at(panel, expr),
                    &c[1]
                );
            }
            assert_eq!(
                t["datasource"],
                json!({"type": "prometheus", "uid": "${datasource}"}),
                "{}",
                at(panel, expr)
            );
        }
        if panel["type"] != "row" {
            assert_eq!(
                panel["datasource"],
                json!({"type": "prometheus", "uid": "${datasource}"}),
                "{}",
                at(panel, "")
            );
        }
    }
    assert!(queries > 20, "{queries} queries");
    // And every metric habd exports has a panel.
    let unused: Vec<&str> = HABD_METRICS
        .iter()
        .map(|m| m.0)
        .filter(|m| !used.contains(m))
        .collect();
    assert!(unused.is_empty(), "no panel shows {unused:?}");
    // The variables: a Prometheus data source, and fleet and pipeline from
    // label_values of series habd exports.
    let vars: BTreeMap<&str, &Value> = d["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["name"].as_str().unwrap(), v))
        .collect();
    assert_eq!(vars["datasource"]["type"], "datasource");
    assert_eq!(vars["datasource"]["query"], "prometheus");
    let label_values = Regex::new(r"^label_values\((hab_[a-z0-9_]+), ([a-z_]+)\)$").unwrap();
    for var in ["fleet", "pipeline"] {
        let v = vars[var];
        let query = v["definition"].as_str().unwrap();
        assert_eq!(v["query"]["query"], query, "${var}");
        let c = label_values
            .captures(query)
            .unwrap_or_else(|| panic!("${var}: {query}"));
        assert_eq!(&c[2], var);
        let (_, labels) = series
            .get(&c[1])
            .unwrap_or_else(|| panic!("${var}: {} is not a series habd exports", &c[1]));
        assert!(labels.contains(var), "${var}: {query}");
        assert_eq!(
            v["datasource"],
            json!({"type": "prometheus", "uid": "${datasource}"})
        );
    }
}

#[test]
fn the_dashboard_is_a_grafana_dashboard_model() {
    let d = dashboard();
    assert_eq!(d["schemaVersion"], 39);
    assert_eq!(d["uid"], "hab");
    assert!(d["id"].is_null(), "an id is Grafana's own, per instance");
    let all = panels(&d);
    let ids: BTreeSet<u64> = all.iter().map(|p| p["id"].as_u64().unwrap()).collect();
    assert_eq!(ids.len(), all.len(), "panel ids are unique");
    for p in &all {
        let g = &p["gridPos"];
        let (x, w) = (g["x"].as_u64().unwrap(), g["w"].as_u64().unwrap());
        assert!(
            x + w <= 24 && g["h"].as_u64().unwrap() > 0,
            "{}",
            p["title"]
        );
        assert!(!p["title"].as_str().unwrap().is_empty());
        if p["type"] != "row" {
            assert!(
                !p["description"].as_str().unwrap_or("").is_empty(),
                "panel {} says what it shows",
                p["title"]
            );
            let refs: Vec<&str> = p["targets"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["refId"].as_str().unwrap())
                .collect();
            let unique: BTreeSet<&&str> = refs.iter().collect();
            assert_eq!(unique.len(), refs.len(), "{}: {refs:?}", p["title"]);
        }
    }
    // No two panels overlap.
    for (i, a) in all.iter().enumerate() {
        for b in &all[i + 1..] {
            let r = |p: &Value, k: &str| p["gridPos"][k].as_u64().unwrap();
            let apart = r(a, "x") + r(a, "w") <= r(b, "x")
                || r(b, "x") + r(b, "w") <= r(a, "x")
                || r(a, "y") + r(a, "h") <= r(b, "y")
                || r(b, "y") + r(b, "h") <= r(a, "y");
            assert!(apart, "{} overlaps {}", a["title"], b["title"]);
        }
    }
}
