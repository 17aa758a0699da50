//! The pages that are not the fleets: the layout every page shares, sign-in,
//! the overview matrix, upstream freshness, the queue, and the confirmation
//! and result pages of an action. maud escapes every value interpolated.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use maud::{html, Markup, DOCTYPE};

use super::{
    model::{ago, nodes_on, short_digest, span, Facts, ReleaseStages},
    Session, CSS_PATH, JS_PATH,
};
use crate::store::{ActionRecord, DeliveryRecord, NodeLook, QueueItem, TriggerRecord};

/// The sections of the site, for the navigation.
pub const SECTIONS: &[(&str, &str)] = &[
    ("/", "Overview"),
    ("/freshness", "Upstream"),
    ("/fleets", "Fleets"),
    ("/queue", "Queue"),
];

/// A time as `2026-12-01 04:33 UTC`, in a `<time>` element.
pub fn when(t: DateTime<Utc>) -> Markup {
    html! { time datetime=(t.to_rfc3339()) { (t.format("%Y-%m-%d %H:%M UTC")) } }
}

/// A time with how long ago it was.
pub fn when_ago(now: DateTime<Utc>, t: DateTime<Utc>) -> Markup {
    html! { (when(t)) " " span.muted { "(" (ago(now, t)) ")" } }
}

/// Every page: the header with the navigation and who is signed in, the
/// main content, and the footer.
pub fn layout(title: &str, current: &str, session: Option<&Session>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="color-scheme" content="light dark";
                title { (title) " · hab" }
                link rel="stylesheet" href=(CSS_PATH);
                script src=(JS_PATH) defer {}
            }
            body {
                a.skip href="#main" { "Skip to the content" }
                header.top {
                    a.brand href="/" { "hab" }
                    @if session.is_some() {
                        nav aria-label="Sections" {
                            ul {
                                @for (path, name) in SECTIONS {
                                    li { a href=(path) aria-current=[(*path == current).then_some("page")] { (name) } }
                                }
                            }
                        }
                    }
                    @if let Some(s) = session {
                        @if s.csrf.is_empty() {
                            // An API token in the request: nothing to sign out of.
                            p.signout { span.who { "Reading as " (s.who) } }
                        } @else {
                            form.signout method="post" action="/signout" {
                                input type="hidden" name="csrf" value=(s.csrf);
                                span.who { "Signed in as " (s.who) }
                                " "
                                button type="submit" { "Sign out" }
                            }
                        }
                    }
                }
                main #main { h1 { (title) } (body) }
                footer { "hab " (env!("CARGO_PKG_VERSION")) " · every image built from signed upstream tags, verified by digest" }
            }
        }
    }
}

/// The sign-in page.
pub fn signin(next: &str, error: Option<&str>) -> Markup {
    layout(
        "Sign in",
        "",
        None,
        html! {
            p { "Reading and acting need an API token, the same as " code { "habctl" } " uses (" code { "habctl --token-file" } ")." }
            @if let Some(e) = error { p.error role="alert" { (e) } }
            form.signin method="post" action="/signin" {
                input type="hidden" name="next" value=(next);
                p {
                    label for="token" { "API token" }
                    input #token type="password" name="token" autocomplete="current-password" required;
                }
                p {
                    label for="name" { "Your name " span.muted { "(recorded with your actions)" } }
                    input #name type="text" name="name" autocomplete="username" maxlength="64";
                }
                p { button type="submit" { "Sign in" } }
            }
        },
    )
}

fn platforms_of(f: &Facts) -> Vec<String> {
    let set: BTreeSet<String> = f
        .pipelines
        .iter()
        .flat_map(|p| p.builds.values())
        .flat_map(|b| b.platforms.iter().map(|p| p.platform.clone()))
        .collect();
    if set.is_empty() {
        vec!["linux/amd64".into(), "linux/arm64".into()]
    } else {
        set.into_iter().collect()
    }
}

/// A node as a short label with its health: `core-main/0`.
pub fn node_chip(n: &NodeLook) -> Markup {
    let label = format!("{}/{}", n.fleet, n.ordinal);
    html! {
        a.chip.(if n.healthy { "ok" } else { "bad" }) href={ "/fleets#fleet-" (n.fleet) }
            title=(n.reason.as_deref().unwrap_or("healthy")) {
            (label) span.visually-hidden { (if n.healthy { " (healthy)" } else { " (unhealthy)" }) }
        }
    }
}

/// The overview: implementation × channel rows, one column per
/// architecture, and the nodes on each build.
pub fn overview(f: &Facts, session: &Session) -> Markup {
    let platforms = platforms_of(f);
    let body = html! {
        p.lead { "What each channel of each implementation points at, per architecture, and the nodes running it. Nodes last looked at "
            @match f.nodes.iter().map(|n| n.observed_at).max() {
                Some(t) => (when_ago(f.now, t)),
                None => "never (habd looks every few seconds once it runs fleets)",
            } "." }
        @for p in &f.pipelines {
            section.card aria-labelledby={ "p-" (p.name) } {
                h2 #{ "p-" (p.name) } { (p.name) " " span.muted { "(" (p.implementation) ")" } }
                div.scroll {
                    table {
                        thead { tr {
                            th scope="col" { "Channel" } th scope="col" { "Version" } th scope="col" { "Build" }
                            @for pl in &platforms { th scope="col" { (pl) } }
                            th scope="col" { "Verified" } th scope="col" { "Nodes" }
                        } }
                        tbody {
                            @for (i, (channel, state)) in p.channels.iter().enumerate() {
                                @let before = i.checked_sub(1).and_then(|j| p.channels[j].1.as_ref());
                                // The channel before it holds a newer build: offer it here.
                                @let offer = before.filter(|b| state.as_ref().is_none_or(|s| b.build_id > s.build_id));
                                tr {
                                    th scope="row" { (channel)
                                        @if let Some(b) = offer {
                                            br; a.button href={ "/promote?pipeline=" (p.name) "&build=" (b.build_id) "&channel=" (channel) } { "Promote #" (b.build_id) " here…" }
                                        }
                                    }
                                    @match state.as_ref().and_then(|s| p.builds.get(&s.build_id).map(|b| (s, b))) {
                                        Some((s, b)) => {
                                            td { (b.version) }
                                            td { a href={ "/builds/" (b.id) } { "#" (b.id) } }
                                            @for pl in &platforms {
                                                td { @match b.platforms.iter().find(|x| &x.platform == pl).and_then(|x| x.manifest_digest.as_deref()) {
                                                    Some(d) => code title=(d) { (short_digest(d)) },
                                                    None => span.muted { "—" },
                                                } }
                                            }
                                            td { @match b.verified_at { Some(t) => (when_ago(f.now, t)), None => "not verified" } }
                                            td { @let on = nodes_on(&f.nodes, &s.index_digest);
                                                @if on.is_empty() { span.muted { "none" } }
                                                @for n in on { (node_chip(n)) " " } }
                                        }
                                        None => {
                                            td colspan=(platforms.len() + 4) { span.muted { "nothing yet" } }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        @if f.pipelines.is_empty() { p { "No pipelines are configured." } }
    };
    layout("Overview", "/", Some(session), body)
}

/// One pipeline's newest release on the freshness page.
pub struct Freshness {
    /// Pipeline.
    pub pipeline: String,
    /// Implementation.
    pub implementation: String,
    /// The newest tag's stages, when there is a tag.
    pub stages: Option<ReleaseStages>,
    /// The tag's message (from the mirror), when annotated.
    pub message: Option<String>,
}

/// Upstream freshness: per pipeline the newest tag, its verdict and signer,
/// and when it reached each stage.
pub fn freshness(now: DateTime<Utc>, rows: &[Freshness], session: &Session) -> Markup {
    let body = html! {
        p.lead { "The newest tag upstream of each pipeline, and how long it took from being seen to being verified, built and on each channel." }
        @for r in rows {
            section.card aria-labelledby={ "f-" (r.pipeline) } {
                h2 #{ "f-" (r.pipeline) } { (r.pipeline) " " span.muted { "(" (r.implementation) ")" } }
                @match &r.stages {
                    None => p.muted { "No tag seen yet." },
                    Some(s) => {
                        dl.facts {
                            dt { "Newest tag" } dd { code { (s.tag.name.strip_prefix("refs/tags/").unwrap_or(&s.tag.name)) } }
                            dt { "Signature" } dd.(if s.tag.verdict.is_verified() { "ok" } else { "bad" }) { (s.tag.verdict.kind()) }
                            dt { "Signer" } dd { @match s.tag.verdict.signer() { Some(k) => code { (k) }, None => span.muted { "—" } } }
                            dt { "Commit" } dd { code { (s.tag.commit.get(..12).unwrap_or(&s.tag.commit)) } }
                        }
                        @if let Some(m) = &r.message { details { summary { "Tag message" } pre.message { (m) } } }
                        ol.timeline aria-label={ "Stages of " (s.tag.name) } {
                            li.done { span.stage { "Tag seen" } " " (when_ago(now, s.seen)) }
                            (stage("Signature verified", s.seen, s.verified))
                            (stage("Built and read back", s.seen, s.built))
                            @for (c, t) in &s.channels { (stage(&format!("On {c}"), s.seen, *t)) }
                        }
                        @if let Some(b) = &s.build { p { a href={ "/builds/" (b.id) } { "Chain of custody of build #" (b.id) } } }
                    }
                }
            }
        }
    };
    layout("Upstream", "/freshness", Some(session), body)
}

fn stage(name: &str, seen: DateTime<Utc>, at: Option<DateTime<Utc>>) -> Markup {
    html! {
        @match at {
            Some(t) => li.done { span.stage { (name) } " " (when(t)) " " span.lag { "+" (span((t - seen).num_seconds())) } },
            None => li.pending { span.stage { (name) } " " span.muted { "not yet" } },
        }
    }
}

/// The queue, the recent webhook deliveries and the operator actions.
pub fn queue(
    now: DateTime<Utc>,
    items: &[(QueueItem, Vec<TriggerRecord>)],
    deliveries: &[DeliveryRecord],
    actions: &[ActionRecord],
    session: &Session,
) -> Markup {
    let body = html! {
        section.card aria-labelledby="q" {
            h2 #q { "Queue" }
            div.scroll { table {
                thead { tr { th scope="col" { "#" } th scope="col" { "Pipeline" } th scope="col" { "Kind" } th scope="col" { "State" } th scope="col" { "Triggers" } th scope="col" { "Queued" } } }
                tbody { @for (i, t) in items { tr {
                    td { (i.id) } td { (i.pipeline) } td { (i.kind.as_str()) } td { (i.state.as_str()) }
                    td { @for tr in t.iter().take(3) { span.trigger { (tr.source) } " " } @if t.len() > 3 { span.muted { "+" (t.len() - 3) } } }
                    td { (when_ago(now, i.created_at)) }
                } } }
            } }
            @if items.is_empty() { p.muted { "Empty." } }
        }
        section.card aria-labelledby="d" {
            h2 #d { "Webhook deliveries" }
            div.scroll { table {
                thead { tr { th scope="col" { "At" } th scope="col" { "Provider" } th scope="col" { "Pipeline" } th scope="col" { "Event" } th scope="col" { "Delivery" } th scope="col" { "Queued as" } } }
                tbody { @for d in deliveries { tr {
                    td { (when_ago(now, d.at)) } td { (d.provider) } td { (d.pipeline) } td { (d.event) }
                    td { code { (d.delivery) } } td { @match d.queue_id { Some(q) => { "#" (q) }, None => span.muted { "—" } } }
                } } }
            } }
            @if deliveries.is_empty() { p.muted { "None recorded." } }
        }
        section.card aria-labelledby="a" {
            h2 #a { "Operator actions" }
            div.scroll { table {
                thead { tr { th scope="col" { "At" } th scope="col" { "Who" } th scope="col" { "Action" } th scope="col" { "On" } th scope="col" { "Outcome" } } }
                tbody { @for a in actions { tr {
                    td { (when_ago(now, a.at)) } td { (a.who) } td { (a.action) } td { (a.target) } td { (a.outcome) }
                } } }
            } }
            @if actions.is_empty() { p.muted { "None yet." } }
        }
    };
    layout("Queue", "/queue", Some(session), body)
}

/// Asks to confirm an action: a form posting to `action` with the session's
/// CSRF token, and a way back.
pub fn confirm(
    question: &str,
    consequence: &str,
    action: &str,
    fields: &BTreeMap<&str, String>,
    back: &str,
    session: &Session,
) -> Markup {
    layout(
        "Confirm",
        "",
        Some(session),
        html! {
            section.card.confirm {
                h2 { (question) }
                p { (consequence) }
                p { "It will be recorded as taken by " strong { (session.who) } "." }
                form method="post" action=(action) {
                    input type="hidden" name="csrf" value=(session.csrf);
                    @for (k, v) in fields { input type="hidden" name=(k) value=(v); }
                    button.danger type="submit" { "Yes, do it" }
                    " "
                    a href=(back) { "Cancel" }
                }
            }
        },
    )
}

/// What came of an action.
pub fn outcome(title: &str, ok: bool, message: &str, back: &str, session: &Session) -> Markup {
    layout(
        title,
        "",
        Some(session),
        html! {
            p.(if ok { "ok" } else { "error" }) role=(if ok { "status" } else { "alert" }) { (message) }
            p { a href=(back) { "Back" } " · " a href="/queue#a" { "All operator actions" } }
        },
    )
}

/// A page for an error a browser should see as a page (403, 404).
pub fn problem(title: &str, message: &str, session: Option<&Session>) -> Markup {
    layout(
        title,
        "",
        session,
        html! { p.error role="alert" { (message) } p { a href="/" { "Overview" } } },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{dashboard::model::PipelineFacts, store::ChannelState};

    fn on(channel: &str, build_id: i64) -> (String, Option<ChannelState>) {
        (
            channel.into(),
            Some(ChannelState {
                pipeline: "core".into(),
                name: channel.into(),
                build_id,
                index_digest: format!("sha256:{build_id}"),
                moved_at: Utc::now(),
                moved_by: "test".into(),
                reason: None,
            }),
        )
    }

    fn page(channels: Vec<(String, Option<ChannelState>)>) -> String {
        let facts = Facts {
            now: Utc::now(),
            pipelines: vec![PipelineFacts {
                name: "core".into(),
                implementation: "bitcoind".into(),
                channels,
                builds: BTreeMap::new(),
            }],
            fleets: Vec::new(),
            nodes: Vec::new(),
        };
        let session = Session {
            who: "<b>ann</b> (token 1a2b3c4d)".into(),
            csrf: "c".repeat(64),
        };
        overview(&facts, &session).into_string()
    }

    #[test]
    fn a_newer_build_on_the_channel_before_is_offered_never_an_older_one() {
        let newer = page(vec![on("edge", 7), on("stable", 5)]);
        assert!(
            newer.contains("/promote?pipeline=core&amp;build=7&amp;channel=stable"),
            "{newer}"
        );
        let older = page(vec![on("edge", 5), on("stable", 7)]);
        assert!(!older.contains("/promote?"), "{older}");
        let empty = page(vec![on("edge", 5), ("stable".into(), None)]);
        assert!(empty.contains("build=5&amp;channel=stable"), "{empty}");
    }

    #[test]
    fn what_a_page_is_given_is_escaped() {
        let p = page(vec![on("edge", 1)]);
        assert!(p.contains("&lt;b&gt;ann&lt;/b&gt;"), "{p}");
        assert!(!p.contains("<b>ann"), "{p}");
    }
}
