//! What habctl prints for people: each API view rendered as aligned
//! columns and lines of text. Every function returns the text, each line
//! ending in a newline, for the caller to print; nothing here talks to
//! habd. Builds and their chain are in `builds`, channels and fleets in
//! `rollouts`; everything is reachable from here.

use crate::{
    api::{PipelineView, PruneReport, QueueView, RefView, StatusView},
    store::{LogLine, StoredRef},
    sync::SyncReport,
};

/// Appends one line to `out` (as `println!` would print it).
macro_rules! put {
    ($out:expr) => {
        $out.push('\n')
    };
    ($out:expr, $($arg:tt)*) => {{
        $out.push_str(&format!($($arg)*));
        $out.push('\n');
    }};
}

mod builds;
mod rollouts;

pub use builds::{build, builds, chain, verification, verifications};
pub use rollouts::{channels, door, fleet_chain, fleets, promoted};

/// Left-aligned columns two spaces apart, a header row first, trailing
/// blanks trimmed; no final newline.
pub fn table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = vec![line(headers.iter().map(|h| h.to_string()).collect())];
    out.extend(rows.into_iter().map(line));
    out.join("\n")
}

/// The first 12 characters of an object id or digest.
pub fn short(oid: &str) -> &str {
    oid.get(..12).unwrap_or(oid)
}

/// `1234567` → `1.2 MB` (powers of 1000).
pub fn human_bytes(n: i64) -> String {
    const UNITS: [&str; 4] = ["B", "KB", "MB", "GB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1000.0 && u < UNITS.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Pipelines, one a row.
pub fn pipelines(views: &[PipelineView]) -> String {
    let mut out = String::new();
    let rows = views
        .iter()
        .map(|p| {
            let refs = if p.refs.is_empty() {
                "-".into()
            } else {
                p.refs
                    .iter()
                    .map(|(k, v)| format!("{v} {k}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let last = p.last_sync.as_ref().map_or("never".into(), |s| {
                format!(
                    "{} {}",
                    s.status,
                    s.finished_at
                        .unwrap_or(s.started_at)
                        .format("%Y-%m-%d %H:%M:%SZ")
                )
            });
            let next = |t: &Option<chrono::DateTime<chrono::Utc>>| {
                t.map_or("-".into(), |t| t.format("%Y-%m-%d %H:%MZ").to_string())
            };
            let mut triggers = Vec::new();
            if let Some(s) = &p.sync_schedule {
                triggers.push(format!("cron {s}"));
            }
            if p.webhook {
                triggers.push("webhook".into());
            }
            if p.auto_build {
                triggers.push("auto-build".into());
            }
            vec![
                p.name.clone(),
                p.upstream.clone(),
                p.policy.clone(),
                refs,
                last,
                next(&p.next_sync),
                next(&p.next_rebuild),
                if triggers.is_empty() {
                    "habctl only".into()
                } else {
                    triggers.join(", ")
                },
            ]
        })
        .collect();
    put!(
        out,
        "{}",
        table(
            &[
                "PIPELINE",
                "UPSTREAM",
                "POLICY",
                "REFS",
                "LAST SYNC",
                "NEXT SYNC",
                "NEXT REBUILD",
                "TRIGGERS"
            ],
            rows
        )
    );
    out
}

/// habd's version, uptime and state folder, then its pipelines.
pub fn status(s: &StatusView) -> String {
    format!(
        "habd {} up {}s, state in {}\n{}",
        s.version,
        s.uptime_seconds,
        s.state_dir.display(),
        pipelines(&s.pipelines)
    )
}

/// Tracked refs, one a row, then why some may not be built.
pub fn refs(refs: &[RefView]) -> String {
    let mut out = String::new();
    if refs.is_empty() {
        put!(out, "no tracked refs yet (run habctl sync)");
        return out;
    }
    let rows = refs
        .iter()
        .map(|r| {
            let s = &r.stored;
            let name = s
                .name
                .strip_prefix("refs/tags/")
                .unwrap_or(&s.name)
                .to_string();
            vec![
                name,
                short(&s.oid).to_string(),
                if s.commit.is_empty() {
                    "-".into()
                } else {
                    short(&s.commit).to_string()
                },
                s.state.as_str().to_string(),
                s.verdict.kind().to_string(),
                s.verdict.signer().unwrap_or("-").to_string(),
                if r.buildable {
                    "yes".into()
                } else {
                    "no".into()
                },
                r.build.as_ref().map_or("-".into(), |b| {
                    format!(
                        "#{} {}{}",
                        b.id,
                        b.state.as_str().to_uppercase(),
                        if b.known_bad.is_some() {
                            " KNOWN-BAD"
                        } else {
                            ""
                        }
                    )
                }),
            ]
        })
        .collect();
    put!(
        out,
        "{}",
        table(
            &[
                "REF",
                "OBJECT",
                "COMMIT",
                "STATE",
                "VERDICT",
                "SIGNER",
                "BUILDABLE",
                "BUILD"
            ],
            rows
        )
    );
    for r in refs.iter().filter(|r| !r.buildable) {
        if let Some(why) = &r.refusal {
            put!(out, "  {}: {why}", r.stored.name);
        }
    }
    for r in refs {
        if let Some((b, bad)) = r
            .build
            .as_ref()
            .and_then(|b| Some((b, b.known_bad.as_ref()?)))
        {
            put!(out, "  {}: build {} is {bad}", r.stored.name, b.id);
        }
    }
    out
}

/// What a sync found.
pub fn sync(r: &SyncReport) -> String {
    let mut out = String::new();
    let s = &r.sync;
    put!(
        out,
        "sync {} of {}: {}{} — {} added, {} moved, {} deleted; {} objects ({} bytes) received",
        s.id,
        s.pipeline,
        s.status,
        if r.joined {
            " (joined a sync already running)"
        } else {
            ""
        },
        s.added,
        s.moved,
        s.deleted,
        s.objects_received,
        s.bytes_received
    );
    for c in &r.changes {
        put!(
            out,
            "  {:<9} {}  {}{}",
            format!("{:?}", c.change).to_lowercase(),
            c.name,
            c.verdict.as_deref().unwrap_or("-"),
            c.signer
                .as_ref()
                .map(|s| format!(" by {s}"))
                .unwrap_or_default()
        );
    }
    out
}

/// An acknowledged ref.
pub fn acknowledged(pipeline: &str, r: &StoredRef) -> String {
    format!(
        "acknowledged {} of {pipeline} at {}: now {} ({})\n",
        r.name,
        r.oid,
        r.state.as_str(),
        r.verdict.kind()
    )
}

/// Queue items, one a row.
pub fn queue(items: &[QueueView]) -> String {
    let mut out = String::new();
    if items.is_empty() {
        put!(out, "the queue is empty: nothing has been triggered yet");
        return out;
    }
    let rows = items
        .iter()
        .map(|q| {
            let i = &q.item;
            vec![
                i.id.to_string(),
                i.pipeline.clone(),
                i.kind.as_str().to_string(),
                i.ref_name
                    .strip_prefix("refs/tags/")
                    .unwrap_or(&i.ref_name)
                    .to_string(),
                format!("{:?}", i.state).to_lowercase(),
                format!("{} x{}", i.source, i.triggers),
                i.created_at.format("%Y-%m-%d %H:%M:%SZ").to_string(),
                match (&i.error, &i.result) {
                    (Some(e), _) => e.clone(),
                    (None, Some(r)) => r.to_string(),
                    (None, None) => "-".into(),
                },
            ]
        })
        .collect();
    put!(
        out,
        "{}",
        table(
            &["ID", "PIPELINE", "KIND", "REF", "STATE", "ASKED BY", "CREATED", "RESULT"],
            rows
        )
    );
    out
}

/// What a prune kept and deleted (or, on a dry run, would delete). Its
/// errors are not included: see [`PruneReport::errors`].
pub fn pruned(r: &PruneReport) -> String {
    let mut out = String::new();
    let kept: Vec<String> = r.plan.kept.iter().map(i64::to_string).collect();
    put!(out, "kept builds: {}", kept.join(", "));
    for d in r.plan.delete.iter().chain(&r.attached) {
        put!(
            out,
            "{} build {} {}: {}@{}",
            if r.dry_run { "would delete" } else { "deleted" },
            d.build,
            d.what,
            d.repository,
            d.digest
        );
    }
    out
}

/// One line of a build's output, with its platform when it has one.
pub fn log_line(l: &LogLine) -> String {
    match &l.platform {
        Some(p) => format!("[{p}] {}\n", l.line),
        None => format!("{}\n", l.line),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns_and_trims_trailing_blanks() {
        let t = table(
            &["ID", "NAME", "WHY"],
            vec![
                vec!["1".into(), "edge".into(), "-".into()],
                vec!["12".into(), "stable-long".into(), String::new()],
            ],
        );
        assert_eq!(
            t,
            "ID  NAME         WHY\n1   edge         -\n12  stable-long"
        );
    }

    #[test]
    fn table_counts_characters_not_bytes() {
        let t = table(&["A", "B"], vec![vec!["é—".into(), "x".into()]]);
        assert_eq!(t, "A   B\né—  x");
    }

    #[test]
    fn human_bytes_uses_powers_of_1000() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(1_000), "1.0 KB");
        assert_eq!(human_bytes(48_213_377), "48.2 MB");
        assert_eq!(human_bytes(7_000_000_000_000), "7000.0 GB");
    }

    #[test]
    fn short_keeps_twelve_characters() {
        assert_eq!(short("0123456789abcdef"), "0123456789ab");
        assert_eq!(short("abc"), "abc");
    }

    #[test]
    fn a_log_line_names_its_platform() {
        let line = |platform: Option<&str>| LogLine {
            seq: 1,
            platform: platform.map(String::from),
            at: chrono::Utc::now(),
            line: "#1 DONE 0.1s".into(),
        };
        assert_eq!(log_line(&line(None)), "#1 DONE 0.1s\n");
        assert_eq!(
            log_line(&line(Some("linux/arm64"))),
            "[linux/arm64] #1 DONE 0.1s\n"
        );
    }

    #[test]
    fn a_prune_says_what_it_would_delete() {
        let r = PruneReport {
            plan: crate::prune::PrunePlan {
                kept: vec![4, 7],
                delete: vec![crate::prune::Doomed {
                    build: 2,
                    repository: "hab/node".into(),
                    digest: "sha256:aa".into(),
                    what: "index".into(),
                }],
            },
            deleted: 0,
            missing: 0,
            errors: Vec::new(),
            attached: Vec::new(),
            dry_run: true,
        };
        assert_eq!(
            pruned(&r),
            "kept builds: 4, 7\nwould delete build 2 index: hab/node@sha256:aa\n"
        );
    }
}
