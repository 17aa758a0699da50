//! The chart as a scanner we did not write sees it: checkov (PyPI,
//! installed by scripts/setup.sh) on the defaults and every variant in
//! charts/hab/ci must report no failed check, and every check the chart
//! skips (a `checkov.io/skipN` annotation with its reason) must be in the
//! chart README's "checkov skips" table.

mod common;

use std::collections::BTreeSet;

use common::*;

/// The rows of the README's "checkov skips" table: (check, objects).
fn readme_skips() -> Vec<(String, String)> {
    let readme = std::fs::read_to_string(chart_dir().join("README.md")).unwrap();
    let table = readme
        .split("## checkov skips")
        .nth(1)
        .expect("charts/hab/README.md has no \"## checkov skips\" section");
    table
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2)
        .map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            (cells[1].to_string(), cells[2].to_string())
        })
        .collect()
}

/// The skips the rendered objects carry: (check, component, reason, object).
fn rendered_skips(rendered: &str) -> Vec<(String, String, String, String)> {
    let mut out = Vec::new();
    for d in documents(rendered) {
        let Some(annotations) = d["metadata"]["annotations"].as_object() else {
            continue;
        };
        for (k, v) in annotations {
            if !k.starts_with("checkov.io/skip") {
                continue;
            }
            let v = v.as_str().unwrap();
            let (check, reason) = v
                .split_once('=')
                .unwrap_or_else(|| panic!("{k}: {v:?} gives no reason"));
            assert!(
                !reason.contains('='),
                "{k}: checkov splits at every \"=\": {v:?}"
            );
            assert!(reason.len() > 10, "{k}: a reason, not {reason:?}");
            out.push((
                check.to_string(),
                d["metadata"]["labels"]["app.kubernetes.io/component"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
                reason.to_string(),
                format!(
                    "{}/{}",
                    d["kind"].as_str().unwrap(),
                    d["metadata"]["name"].as_str().unwrap()
                ),
            ));
        }
    }
    out
}

#[test]
fn checkov_finds_nothing_failed_in_any_variant_and_every_skip_is_documented() {
    let table = readme_skips();
    assert!(
        !table.is_empty(),
        "the README's checkov skips table is empty"
    );
    let mut runs = vec![("defaults".to_string(), None)];
    runs.extend(
        variants()
            .into_iter()
            .map(|v| (v.trim_end_matches("-values.yaml").to_string(), Some(v))),
    );
    let mut used = BTreeSet::new();
    for (name, values) in runs {
        let rendered = render(values.as_deref(), &[]).unwrap_or_else(|e| panic!("{name}: {e}"));
        let report = checkov_passes(&name, &rendered);
        let summary = &report["summary"];
        assert!(
            summary["passed"].as_u64().unwrap() > 400,
            "{name}: checkov checked next to nothing: {summary}"
        );
        // Every skip is the README's, for that kind of object; and
        // checkov took each one (the annotation is well formed).
        let skips = rendered_skips(&rendered);
        let skipped: BTreeSet<(String, String)> = report["results"]["skipped_checks"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                let resource = c["resource"].as_str().unwrap_or("");
                let mut parts = resource.split('.');
                let kind = parts.next().unwrap_or("");
                let object = parts.nth(1).unwrap_or("");
                (
                    c["check_id"].as_str().unwrap().to_string(),
                    format!("{kind}/{object}"),
                )
            })
            .collect();
        for (check, component, reason, object) in &skips {
            let row = table
                .iter()
                .find(|(c, objects)| c == check && objects.contains(component.as_str()))
                .unwrap_or_else(|| {
                    panic!(
                        "{name}: {object} skips {check} ({reason}) but the README's \
                         \"checkov skips\" table has no row for it on {component}"
                    )
                });
            used.insert(row.clone());
            assert!(
                skipped.contains(&(check.clone(), object.clone())),
                "{name}: checkov did not take {object}'s skip of {check}: {skipped:?}"
            );
        }
        assert_eq!(
            summary["skipped"].as_u64().unwrap() as usize,
            skipped.len(),
            "{name}: {summary}"
        );
    }
    // And the table lists nothing the chart does not skip.
    let unused: Vec<_> = table.iter().filter(|r| !used.contains(*r)).collect();
    assert!(
        unused.is_empty(),
        "the README lists skips no variant makes: {unused:?}"
    );
}
