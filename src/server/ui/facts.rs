//! The facts the dashboard's pages and `/metrics` read, gathered from the
//! store (and, for a tag's text, the mirror).

use std::collections::BTreeMap;

use crate::{
    config::Config,
    dashboard::{model, pages, Session},
    store::{Store, StoreError},
};

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
            implementation: p.implementation.as_str().to_string(),
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
pub(super) fn tag_text(
    state_dir: &std::path::Path,
    pipeline: &str,
    oid: &str,
    whole: bool,
) -> Option<String> {
    let path = crate::sync::mirror_path(state_dir, pipeline);
    if !path.join("HEAD").exists() {
        return None;
    }
    let raw = crate::mirror::Mirror::open_or_init(&path)
        .ok()?
        .read_raw(oid)
        .ok()?;
    if whole {
        return Some(String::from_utf8_lossy(&raw).into_owned());
    }
    // What was signed, split as git and the verdict split it.
    let signed = crate::signature::split_signed_tag(&raw).map_or(raw.as_slice(), |(p, _)| p);
    let text = String::from_utf8_lossy(signed);
    let message = text.split_once("\n\n").map_or("", |(_, b)| b);
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
            implementation: p.implementation.as_str().to_string(),
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
