//! Channels and where they point, a promote, and fleets with their nodes.

use super::chain;
use super::table;
use crate::api::{ChannelsView, FleetChain, FleetView, PromoteView};

/// Where each channel points, then its moves.
pub fn channels(v: &ChannelsView) -> String {
    let mut out = String::new();
    if v.channels.is_empty() {
        put!(
            out,
            "no channels declared (add [[channel]] to the pipeline file)"
        );
        return out;
    }
    let rows = v
        .channels
        .iter()
        .map(|c| match &c.current {
            Some(s) => vec![
                c.name.clone(),
                if c.auto { "auto" } else { "promote" }.into(),
                format!("build {}", s.build_id),
                s.index_digest.clone(),
                format!(
                    "{} by {}",
                    s.moved_at.format("%Y-%m-%d %H:%M:%SZ"),
                    s.moved_by
                ),
                s.reason.clone().unwrap_or_else(|| "-".into()),
            ],
            None => vec![
                c.name.clone(),
                if c.auto { "auto" } else { "promote" }.into(),
                "-".into(),
                "-".into(),
                "never moved".into(),
                "-".into(),
            ],
        })
        .collect();
    put!(
        out,
        "{}",
        table(
            &["CHANNEL", "MOVES", "BUILD", "INDEX", "MOVED", "WHY"],
            rows
        )
    );
    for c in &v.channels {
        if let (Some(s), Some(bad)) = (&c.current, &c.known_bad) {
            put!(
                out,
                "  {}: build {} is {bad} (promoted with --force)",
                c.name,
                s.build_id
            );
        }
    }
    if !v.moves.is_empty() {
        put!(out);
        for m in &v.moves {
            put!(
                out,
                "  {} {:<8} build {} -> {}  by {}{}",
                m.at.format("%Y-%m-%d %H:%M:%SZ"),
                m.channel,
                m.from_build.map_or("none".to_string(), |b| b.to_string()),
                m.to_build,
                m.by,
                m.reason
                    .as_ref()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default()
            );
        }
    }
    out
}

/// What a promote of `channel` did: the move (or none), and the rollouts
/// it queued.
pub fn promoted(pipeline: &str, channel: &str, p: &PromoteView) -> String {
    let mut out = String::new();
    match &p.promoted.channel_move {
        None => put!(
            out,
            "{channel} of {pipeline} already at build {}: nothing moved",
            p.promoted.build_id
        ),
        Some(m) => {
            put!(
                out,
                "{channel} of {pipeline}: build {} -> build {} ({}), by {}",
                m.from_build.map_or("none".to_string(), |b| b.to_string()),
                m.to_build,
                m.index_digest,
                m.by
            );
            for r in &p.rollouts {
                put!(out, "  rollout {} of fleet {} queued", r.id, r.fleet);
            }
        }
    }
    out
}

/// Each fleet: its newest rollout, then its nodes.
pub fn fleets(fleets: &[FleetView]) -> String {
    let mut out = String::new();
    if fleets.is_empty() {
        put!(out, "no fleets configured (add [[fleet]] to hab.toml)");
        return out;
    }
    for f in fleets {
        put!(
            out,
            "fleet {} ({} {} on {}){}",
            f.name,
            f.pipeline,
            f.channel,
            f.target,
            f.rollout.as_ref().map_or(String::new(), |r| format!(
                ": rollout {} {} to build {}{}",
                r.id,
                r.state.as_str().to_uppercase(),
                r.build_id,
                r.reason
                    .as_ref()
                    .map(|x| format!(" ({x})"))
                    .unwrap_or_default()
            ))
        );
        let rows = f
            .nodes
            .iter()
            .map(|n| {
                vec![
                    n.ordinal.to_string(),
                    n.image.clone().unwrap_or_else(|| "-".into()),
                    n.rpc.clone().unwrap_or_else(|| "-".into()),
                    match &n.health {
                        Ok(h) => format!("healthy at {h}"),
                        Err(e) => e.clone(),
                    },
                ]
            })
            .collect();
        put!(out, "{}", table(&["NODE", "IMAGE", "RPC", "HEALTH"], rows));
        put!(out);
    }
    out
}

/// One fleet now, then the whole chain of the build it runs.
pub fn fleet_chain(v: &FleetChain) -> String {
    let mut out = fleets(std::slice::from_ref(&v.fleet));
    match &v.chain {
        Some(c) => {
            put!(out);
            out.push_str(&chain(c));
        }
        None => put!(out, "\nno rollout of {} has succeeded yet", v.fleet.name),
    }
    out
}

/// The RPC front door's view: each node, its height and lag, calls in
/// flight and served, and why it gets no calls when it gets none.
pub fn door(nodes: &[crate::gateway::DoorNode]) -> String {
    if nodes.is_empty() {
        return "the front door knows no node yet (are the fleets it fronts running?)\n".into();
    }
    let opt = |v: Option<u64>| v.map_or("-".to_string(), |v| v.to_string());
    let rows = nodes
        .iter()
        .map(|n| {
            vec![
                n.name.clone(),
                opt(n.height),
                opt(n.lag),
                if n.initial_block_download {
                    "yes"
                } else {
                    "no"
                }
                .into(),
                n.in_flight.to_string(),
                n.served.to_string(),
                if n.drained { "yes" } else { "no" }.into(),
                n.excluded
                    .clone()
                    .map_or("in service".into(), |why| format!("no calls: {why}")),
            ]
        })
        .collect();
    table(
        &[
            "NODE",
            "HEIGHT",
            "LAG",
            "IBD",
            "IN FLIGHT",
            "SERVED",
            "DRAINED",
            "STATE",
        ],
        rows,
    )
}
