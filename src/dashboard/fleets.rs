//! The fleets page (every node, every rollout, updated live), and the chain
//! of custody of one build.

use chrono::{DateTime, Utc};
use maud::{html, Markup};

use super::{
    model::{digest_of, lags, short_digest, steps_of, Facts, FleetFacts},
    pages::{layout, when, when_ago},
    Session,
};
use crate::{
    api::Chain,
    store::{NodeLook, RolloutRecord, RolloutState},
};

/// The actions an operator may take on a rollout in this state.
pub fn actions_for(state: RolloutState) -> &'static [&'static str] {
    match state {
        RolloutState::Running | RolloutState::RollingBack => &["pause", "undo"],
        RolloutState::Paused => &["resume", "undo"],
        RolloutState::Queued => &["undo"],
        RolloutState::Succeeded | RolloutState::Failed | RolloutState::Superseded => &[],
    }
}

fn rollout_summary(r: &RolloutRecord, nodes: u32) -> Markup {
    let settled = r.nodes.iter().filter(|(_, _, s)| *s).count();
    html! {
        p.rollout {
            "Rollout " strong { "#" (r.id) } " to " a href={ "/builds/" (r.build_id) } { "build #" (r.build_id) }
            " (" code title=(r.image) { (digest_of(&r.image).map_or(r.image.as_str(), short_digest)) } "): "
            span.state.(r.state.as_str()) { (r.state.as_str()) }
            ", " (settled) " of " (nodes) " nodes done"
            @if let Some(why) = &r.reason { " — " (why) }
        }
        @if !actions_for(r.state).is_empty() {
            p.actions {
                @for a in actions_for(r.state) {
                    a.button.(if *a == "undo" { "danger" } else { "" }) href={ "/act/" (r.fleet) "/" (a) } { (a) " this rollout…" } " "
                }
            }
        }
    }
}

fn node_row(n: Option<&NodeLook>, ordinal: u32, lag: Option<u64>, f: &FleetFacts) -> Markup {
    let last = f
        .rollout
        .as_ref()
        .and_then(|_| steps_of(&f.steps, ordinal).last().copied());
    html! {
        tr {
            th scope="row" { (f.name) "/" (ordinal) }
            @match n {
                None => td colspan="6" { span.muted { "not looked at yet" } },
                Some(n) => {
                    td { @match n.image.as_deref() {
                        Some(i) => a href={ "/custody?image=" (i) } title={ "Chain of custody of " (i) } { code { (digest_of(i).map_or(i, short_digest)) } },
                        None => span.muted { "—" },
                    } }
                    td.num { @match n.height { Some(h) => (h), None => span.muted { "—" } } }
                    td.num { @match lag { Some(l) => (l), None => span.muted { "—" } } }
                    td { @match n.ibd { Some(true) => "yes", Some(false) => "no", None => span.muted { "—" } } }
                    td.(if n.healthy { "ok" } else { "bad" }) { @if n.healthy { "healthy" } @else { "unhealthy: " (n.reason.as_deref().unwrap_or("")) } }
                    td { @match last { Some(s) => { (s.kind) ": " (s.detail) }, None => span.muted { "—" } } }
                }
            }
        }
    }
}

/// The part of the fleets page that changes while rollouts run: every
/// fleet's nodes and newest rollout with its steps. Sent again, whole, to a
/// browser following the page live.
pub fn live(f: &Facts) -> Markup {
    let lags = lags(&f.nodes);
    html! {
        p.muted { "As of " (when(f.now)) "." }
        @for fleet in &f.fleets {
            section.card #{ "fleet-" (fleet.name) } aria-labelledby={ "h-" (fleet.name) } {
                h2 #{ "h-" (fleet.name) } { (fleet.name) }
                p { "Runs " strong { (fleet.pipeline) } " from channel " strong { (fleet.channel) } " on " code { (fleet.target) } "." }
                @match &fleet.rollout {
                    Some(r) => (rollout_summary(r, fleet.nodes)),
                    None => p.muted { "Never rolled out." },
                }
                div.scroll { table {
                    caption.visually-hidden { "Nodes of " (fleet.name) }
                    thead { tr { th scope="col" { "Node" } th scope="col" { "Image" } th scope="col" { "Height" } th scope="col" { "Lag" } th scope="col" { "IBD" } th scope="col" { "Gates" } th scope="col" { "Last step" } } }
                    tbody { @for o in 0..fleet.nodes {
                        @let n = f.nodes.iter().find(|n| n.fleet == fleet.name && n.ordinal == o);
                        (node_row(n, o, lags.get(&(fleet.name.clone(), o)).copied().flatten(), fleet))
                    } }
                } }
                @if let Some(r) = &fleet.rollout {
                    @if !fleet.steps.is_empty() {
                        details open[!r.state.is_final()] {
                            summary { "Steps of rollout #" (r.id) " (" (fleet.steps.len()) ")" }
                            ol.steps { @for s in fleet.steps.iter().rev().take(30).collect::<Vec<_>>().into_iter().rev() {
                                li { (when(s.at)) " " @if let Some(o) = s.ordinal { strong { "node " (o) } " " } span.kind { (s.kind) } " " (s.detail) }
                            } }
                        }
                    }
                }
            }
        }
        @if f.fleets.is_empty() { p { "No fleets are configured." } }
    }
}

/// The fleets page.
pub fn fleets(f: &Facts, session: &Session) -> Markup {
    layout(
        "Fleets",
        "/fleets",
        Some(session),
        html! {
            p.lead { "Every node: what it runs, its height, how far behind the best healthy node it is, and its gates. Rollouts show here as they happen." }
            div #live aria-live="polite" data-live="/events/fleets" { (live(f)) }
            noscript { p.muted { "Without JavaScript this page does not follow rollouts live: reload it to see new steps." } }
        },
    )
}

/// The chain of custody of one build: tag → signer → commit → build keys →
/// digests → verification → channel moves → rollout steps.
pub fn chain(now: DateTime<Utc>, c: &Chain, tag_object: Option<&str>, session: &Session) -> Markup {
    let b = &c.build.build;
    let body = html! {
        p.lead { (b.pipeline) " " strong { (b.version) } ", build #" (b.id) ": " span.state.(b.state.as_str()) { (b.state.as_str()) } }
        ol.custody {
            li { h2 { "Tag" }
                @match &c.stored_ref {
                    Some(r) => {
                        dl.facts {
                            dt { "Ref" } dd { code { (r.name) } " (" (r.kind.as_str()) ")" }
                            dt { "Object" } dd { code { (r.oid) } }
                            dt { "Verdict" } dd.(if r.verdict.is_verified() { "ok" } else { "bad" }) { (r.verdict.kind()) }
                            dt { "Signer" } dd { @match r.verdict.signer() { Some(k) => code { (k) }, None => span.muted { "—" } } }
                            dt { "First seen" } dd { (when_ago(now, r.first_seen)) }
                        }
                        @if let Some(t) = tag_object { details { summary { "The signed tag object, as upstream wrote it" } pre.message { (t) } } }
                    }
                    None => p.muted { "The ref is no longer recorded." },
                }
                @if let Some(s) = &c.sync { p { "Found by sync #" (s.id) " (" (s.trigger) ") " (when_ago(now, s.started_at)) } }
                @if !c.sync_triggers.is_empty() { p { "Triggered by: " @for t in &c.sync_triggers { span.trigger { (t.source) } " " } } }
            }
            li { h2 { "Commit" } p { code { (b.commit) } } }
            li { h2 { "Build" }
                p { "Trigger " (b.trigger) ", queued " (when_ago(now, b.created_at))
                    @if let Some(t) = b.finished_at { ", ended " (when(t)) } }
                @if let Some(r) = &b.reason { p.error { (r) } }
                div.scroll { table {
                    thead { tr { th scope="col" { "Platform" } th scope="col" { "Build key" } th scope="col" { "Manifest digest" } th scope="col" { "Builder" } } }
                    tbody { @for p in &b.platforms { tr {
                        th scope="row" { (p.platform) } td { code title=(p.build_key) { (short_digest(&p.build_key)) } }
                        td { @match &p.manifest_digest { Some(d) => code title=(d) { (short_digest(d)) }, None => span.muted { "—" } } }
                        td { (p.builder) @if p.reused { " (reused)" } }
                    } } }
                } }
                @if let Some(r) = &c.build.reference { p { "Index: " code.wrap { (r) } } }
            }
            li { h2 { "Verification" }
                @if c.verifications.is_empty() { p.muted { "Not verified yet." } }
                ul { @for v in &c.verifications { li.(if v.ok { "ok" } else { "bad" }) {
                    (when_ago(now, v.at)) ": " @if v.ok { "passed" } @else { "failed: " (v.reason.as_deref().unwrap_or("")) }
                } } }
            }
            li { h2 { "Signed provenance" }
                @match (&b.attestation, &c.build.reference) {
                    (Some(a), Some(r)) => {
                        p.ok { "Attested by habd: an in-toto statement carrying the signed tag, attached to the index as " code title=(a) { (short_digest(a)) } "." }
                        p { "Check it offline, with habd's key (" code { "habctl key" } ") and the maintainers' keys:" }
                        pre.message { "habctl verify --offline --key habd.pub --keyring keys/ " (r) }
                    }
                    _ if b.verified() => p.bad { "No attestation: this build cannot be promoted, rolled or reused. " code { "habctl build " (b.pipeline) " --ref " (b.version) } " builds it again." },
                    _ => p.muted { "Attested when it verifies." },
                }
            }
            li { h2 { "Channels" }
                @if c.channel_moves.is_empty() { p.muted { "On no channel yet." } }
                ul { @for m in &c.channel_moves { li { "On " strong { (m.channel) } " " (when_ago(now, m.at)) " by " (m.by) @if let Some(r) = &m.reason { " — " (r) } } } }
            }
            li { h2 { "Rollouts" }
                @if c.rollouts.is_empty() { p.muted { "Not rolled out yet." } }
                @for r in &c.rollouts {
                    details { summary { "#" (r.rollout.id) " of " (r.rollout.fleet) ": " (r.rollout.state.as_str()) " (" (r.steps.len()) " steps)" }
                        p { a href={ "/fleets#fleet-" (r.rollout.fleet) } { "The fleet " (r.rollout.fleet) " now" } }
                        ol.steps { @for s in &r.steps { li { (when(s.at)) " " @if let Some(o) = s.ordinal { strong { "node " (o) } " " } span.kind { (s.kind) } " " (s.detail) } } }
                    }
                }
            }
        }
    };
    layout(&format!("Build #{}", b.id), "", Some(session), body)
}
