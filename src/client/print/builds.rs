//! Builds: the list, one build whole, its verifications, and the whole
//! chain of a release from upstream to the nodes.

use super::{human_bytes, short, table};
use crate::{
    api::{BuildView, Chain, Verification},
    store::VerificationRecord,
};

/// Builds, one a row.
pub fn builds(builds: &[BuildView]) -> String {
    let mut out = String::new();
    if builds.is_empty() {
        put!(out, "no builds yet (habctl build <pipeline> --ref <tag>)");
        return out;
    }
    let rows = builds
        .iter()
        .map(|v| {
            let b = &v.build;
            vec![
                b.id.to_string(),
                b.pipeline.clone(),
                b.version.clone(),
                short(&b.commit).to_string(),
                b.state.as_str().to_uppercase(),
                b.platforms
                    .iter()
                    .map(|p| p.platform.trim_start_matches("linux/").to_string())
                    .collect::<Vec<_>>()
                    .join(","),
                b.index_digest.as_deref().map_or("-".into(), |d| {
                    short(d.trim_start_matches("sha256:")).to_string()
                }),
                b.created_at.format("%Y-%m-%d %H:%M:%SZ").to_string(),
            ]
        })
        .collect();
    put!(
        out,
        "{}",
        table(
            &[
                "ID",
                "PIPELINE",
                "VERSION",
                "COMMIT",
                "STATE",
                "PLATFORMS",
                "INDEX",
                "CREATED"
            ],
            rows
        )
    );
    out
}

/// One build: ref, commit, signer, times, each platform, verifications.
pub fn build(v: &BuildView) -> String {
    let mut out = String::new();
    let b = &v.build;
    put!(
        out,
        "build {} of {}: {}",
        b.id,
        b.pipeline,
        b.state.as_str().to_uppercase()
    );
    put!(out, "  ref       {} ({})", b.ref_name, b.version);
    put!(out, "  commit    {}", b.commit);
    put!(
        out,
        "  signer    {}",
        b.signer.as_deref().unwrap_or("- (unsigned)")
    );
    put!(out, "  trigger   {}", b.trigger);
    put!(out, "  index     {}", v.reference.as_deref().unwrap_or("-"));
    if let Some(a) = &b.attestation {
        put!(
            out,
            "  attested  {a} (signed provenance: habctl verify --offline)"
        );
    }
    if let Some(r) = &b.reason {
        put!(out, "  reason    {r}");
    }
    if let Some(bad) = &b.known_bad {
        put!(
            out,
            "  KNOWN-BAD its rollout {}to fleet {} failed its gates at {}: {}",
            bad.rollout_id.map(|r| format!("{r} ")).unwrap_or_default(),
            bad.fleet,
            bad.at.format("%Y-%m-%d %H:%M:%SZ"),
            bad.reason
        );
    }
    put!(
        out,
        "  times     created {}{}",
        b.created_at.format("%Y-%m-%d %H:%M:%SZ"),
        b.finished_at
            .map(|t| format!(", finished {}", t.format("%Y-%m-%d %H:%M:%SZ")))
            .unwrap_or_default()
    );
    let rows = b
        .platforms
        .iter()
        .map(|p| {
            vec![
                p.platform.clone(),
                p.builder.clone(),
                p.stage.clone(),
                p.manifest_digest.clone().unwrap_or_else(|| "-".into()),
                if p.reused {
                    "reused".into()
                } else {
                    format!(
                        "{} / {}",
                        human_bytes(p.bytes_pushed),
                        human_bytes(p.bytes_total)
                    )
                },
                p.build_key.clone(),
            ]
        })
        .collect();
    put!(out);
    put!(
        out,
        "{}",
        table(
            &[
                "PLATFORM",
                "BUILDER",
                "STAGE",
                "MANIFEST",
                "UPLOADED",
                "BUILD KEY"
            ],
            rows
        )
    );
    if !v.verifications.is_empty() {
        put!(out);
        out.push_str(&verifications(&v.verifications));
    }
    out
}

/// One line per verification run.
pub fn verifications(runs: &[VerificationRecord]) -> String {
    let mut out = String::new();
    for r in runs {
        put!(
            out,
            "  verification {} at {}: {}{}",
            r.id,
            r.at.format("%Y-%m-%d %H:%M:%SZ"),
            if r.ok { "ok" } else { "FAILED" },
            r.reason
                .as_ref()
                .map(|x| format!(": {x}"))
                .unwrap_or_default()
        );
    }
    out
}

/// The whole chain of a build: upstream, the build, channels, rollouts.
pub fn chain(c: &Chain) -> String {
    let mut out = String::new();
    let time = |t: &chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%d %H:%M:%SZ").to_string();
    put!(out, "upstream");
    match &c.stored_ref {
        Some(r) => {
            put!(out, "  tag       {} -> commit {}", r.name, r.commit);
            put!(
                out,
                "  verdict   {}{}",
                r.verdict.kind(),
                r.verdict
                    .signer()
                    .map(|s| format!(", signed by {s}"))
                    .unwrap_or_default()
            );
        }
        None => put!(
            out,
            "  ref       {} (no longer recorded)",
            c.build.build.ref_name
        ),
    }
    for e in &c.ref_events {
        put!(
            out,
            "  {}  {}{}{}",
            time(&e.at),
            e.event,
            e.sync_id
                .map(|s| format!(" by sync {s}"))
                .unwrap_or_default(),
            e.actor
                .as_ref()
                .map(|a| format!(" by {a}"))
                .unwrap_or_default()
        );
    }
    if let Some(s) = &c.sync {
        put!(
            out,
            "  sync {}   {} at {}, triggered by {}",
            s.id,
            s.status,
            time(&s.started_at),
            s.trigger
        );
    }
    for t in c.sync_triggers.iter().take(10) {
        put!(
            out,
            "    {}  {}{}",
            time(&t.at),
            t.source,
            t.detail
                .as_ref()
                .map(|d| format!(": {d}"))
                .unwrap_or_default()
        );
    }
    if c.sync_triggers.len() > 10 {
        put!(out, "    ... {} more triggers", c.sync_triggers.len() - 10);
    }
    put!(out);
    out.push_str(&build(&c.build));
    for t in &c.build_triggers {
        put!(
            out,
            "  asked     {} by {}{}",
            time(&t.at),
            t.source,
            t.detail
                .as_ref()
                .map(|d| format!(": {d}"))
                .unwrap_or_default()
        );
    }
    if c.build.verifications.is_empty() {
        out.push_str(&verifications(&c.verifications));
    }
    put!(out);
    put!(out, "channels");
    if c.channel_moves.is_empty() {
        put!(out, "  no channel points at this build");
    }
    for m in &c.channel_moves {
        put!(
            out,
            "  {}  {} -> build {}{} by {}{}",
            time(&m.at),
            m.channel,
            m.to_build,
            m.from_build
                .map(|f| format!(" (from build {f})"))
                .unwrap_or_default(),
            m.by,
            m.reason
                .as_ref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default()
        );
    }
    put!(out);
    put!(out, "rollouts");
    if c.rollouts.is_empty() {
        put!(out, "  none");
    }
    for r in &c.rollouts {
        put!(
            out,
            "  rollout {} of fleet {}: {}{}",
            r.rollout.id,
            r.rollout.fleet,
            r.rollout.state.as_str().to_uppercase(),
            r.rollout
                .reason
                .as_ref()
                .map(|x| format!(" ({x})"))
                .unwrap_or_default()
        );
        for s in &r.steps {
            put!(
                out,
                "    {}  {:<8} {:<12} {}",
                time(&s.at),
                s.ordinal.map_or("-".into(), |o| format!("node {o}")),
                s.kind,
                s.detail
            );
        }
    }
    out
}

/// A verification run: the read-back, each platform's smoke run, and the
/// problems found.
pub fn verification(v: &Verification) -> String {
    let mut out = String::new();
    let rb = &v.read_back;
    put!(
        out,
        "{} {}: read back {} blobs ({} bytes), sha256 recomputed",
        if v.ok { "VERIFIED" } else { "FAILED" },
        rb.reference,
        rb.blobs_checked,
        rb.bytes_read
    );
    for (p, d) in &rb.platforms {
        put!(
            out,
            "  {p:<12} {d}  smoke: {}",
            match v.smoke.get(p) {
                None => "not run".to_string(),
                Some(s) => format!(
                    "`{}` exited {}",
                    s.command.join(" "),
                    // As JSON shows a missing exit code.
                    s.exit_code.map_or("null".into(), |c| c.to_string())
                ),
            }
        );
    }
    for p in &rb.problems {
        put!(out, "  problem: {p}");
    }
    if let Some(p) = &v.provenance {
        put!(out, "  provenance: {p}");
    }
    if let Some(reason) = v.reason.as_deref().filter(|_| !v.ok) {
        put!(out, "  reason: {reason}");
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::{api::SmokeReport, readback::ReadBack};

    fn verification(ok: bool, smoke: Option<Option<i64>>) -> Verification {
        Verification {
            ok,
            reason: (!ok).then(|| "smoke failed".to_string()),
            read_back: ReadBack {
                reference: "127.0.0.1:5000/hab/node@sha256:aa".into(),
                platforms: BTreeMap::from([("linux/amd64".into(), "sha256:bb".into())]),
                blobs_checked: 3,
                bytes_read: 1234,
                ..ReadBack::default()
            },
            seconds: 1.5,
            provenance: None,
            smoke: smoke
                .map(|exit_code| {
                    BTreeMap::from([(
                        "linux/amd64".to_string(),
                        SmokeReport {
                            command: vec!["bcoin".into(), "--version".into()],
                            exit_code,
                            output: String::new(),
                        },
                    )])
                })
                .unwrap_or_default(),
        }
    }

    #[test]
    fn a_verification_shows_each_platform_and_its_smoke_run() {
        assert_eq!(
            super::verification(&verification(true, Some(Some(0)))),
            concat!(
                "VERIFIED 127.0.0.1:5000/hab/node@sha256:aa: read back 3 blobs (1234 bytes), sha256 recomputed\n",
                "  linux/amd64  sha256:bb  smoke: `bcoin --version` exited 0\n",
            )
        );
    }

    #[test]
    fn a_failed_verification_gives_its_reason() {
        let text = super::verification(&verification(false, Some(None)));
        assert!(text.starts_with("FAILED "), "{text}");
        assert!(
            text.contains("smoke: `bcoin --version` exited null\n"),
            "{text}"
        );
        assert!(text.ends_with("  reason: smoke failed\n"), "{text}");
        let text = super::verification(&verification(false, None));
        assert!(text.contains("smoke: not run\n"), "{text}");
    }
}
