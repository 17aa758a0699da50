//! The queue's decisions, pure: whether a sync is a pipeline's first, which
//! refs a rebuild builds again, how an item's triggers read in a record,
//! and what an item's end records.

use serde::Serialize;

use crate::store::{BuildRecord, BuildState, SyncRecord, TriggerRecord};

/// Whether sync `sync_id` is the pipeline's first successful one, given its
/// recorded syncs: the first sync of a pipeline builds only the newest
/// release, not its whole history.
pub fn first_sync(sync_id: i64, syncs: &[SyncRecord]) -> bool {
    syncs.iter().all(|s| s.id >= sync_id || s.status != "ok")
}

/// The refs a rebuild builds again: the builds the channels point at (not
/// one an operator forced there although known-bad), each ref once; with no
/// channel set yet, the newest VERIFIED build that is not known-bad.
/// `on_channels` in the channels' order, `recent` newest first.
pub fn rebuild_refs(on_channels: &[BuildRecord], recent: &[BuildRecord]) -> Vec<String> {
    let mut refs: Vec<String> = Vec::new();
    for b in on_channels {
        if b.known_bad.is_none() && !refs.contains(&b.ref_name) {
            refs.push(b.ref_name.clone());
        }
    }
    if refs.is_empty() {
        if let Some(b) = recent
            .iter()
            .find(|b| b.verified() && b.known_bad.is_none())
        {
            refs.push(b.ref_name.clone());
        }
    }
    refs
}

/// Who asked for item `id`, for the record of the work it ran:
/// `webhook:github (50 triggers), queue 7`; `source` when no trigger is
/// recorded.
pub fn who_asked(id: i64, source: &str, triggers: &[TriggerRecord]) -> String {
    let mut sources: Vec<&str> = Vec::new();
    for t in triggers {
        if !sources.contains(&t.source.as_str()) {
            sources.push(&t.source);
        }
    }
    let mut s = if sources.is_empty() {
        source.to_string()
    } else {
        sources.join("+")
    };
    match triggers {
        [only] => {
            if let Some(d) = &only.detail {
                s.push_str(&format!(": {d}"));
            }
        }
        [] => {}
        many => s.push_str(&format!(" ({} triggers)", many.len())),
    }
    s.push_str(&format!(", queue {id}"));
    s
}

/// What an item's end records as its result (the `result` of
/// `GET /api/v1/queue`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum ItemSummary {
    /// A sync that ran.
    Synced {
        /// Refs added.
        added: i64,
        /// Refs deleted.
        deleted: i64,
        /// Refs moved.
        moved: i64,
        /// The sync's record.
        sync_id: i64,
    },
    /// A sync that failed.
    SyncFailed {
        /// The sync's record.
        sync_id: i64,
    },
    /// A rebuild: the refs whose builds it queued.
    Rebuilt {
        /// Full ref names.
        refs: Vec<String>,
    },
    /// A build, as far as it got.
    Build {
        /// The build.
        build_id: i64,
        /// An equal verified build was reused.
        #[serde(skip_serializing_if = "Option::is_none")]
        reused: Option<bool>,
        /// How it ended.
        #[serde(skip_serializing_if = "Option::is_none")]
        state: Option<BuildState>,
    },
}

/// How an item ended: what it recorded, and why it failed (None: done).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ItemEnd {
    /// The result recorded.
    pub summary: Option<ItemSummary>,
    /// Why it failed.
    pub error: Option<String>,
}

impl ItemEnd {
    /// Ended well, recording `summary`.
    pub fn done(summary: ItemSummary) -> Self {
        ItemEnd {
            summary: Some(summary),
            error: None,
        }
    }

    /// Failed for `error`, recording `summary` if any.
    pub fn failed(summary: Option<ItemSummary>, error: String) -> Self {
        ItemEnd {
            summary,
            error: Some(error),
        }
    }

    /// The result as the store keeps it.
    pub fn result_json(&self) -> Option<serde_json::Value> {
        self.summary
            .as_ref()
            .map(|s| serde_json::to_value(s).unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use serde_json::json;

    use super::*;
    use crate::store::{KnownBad, QueueKind};

    fn sync(id: i64, status: &str) -> SyncRecord {
        SyncRecord {
            id,
            pipeline: "node".into(),
            trigger: "test".into(),
            started_at: Utc::now(),
            finished_at: None,
            status: status.into(),
            error: None,
            objects_received: 0,
            bytes_received: 0,
            added: 0,
            moved: 0,
            deleted: 0,
        }
    }

    #[test]
    fn a_first_sync_has_no_successful_sync_before_it() {
        assert!(first_sync(1, &[]));
        assert!(first_sync(3, &[sync(3, "ok")]), "itself does not count");
        assert!(
            first_sync(3, &[sync(3, "ok"), sync(2, "failed"), sync(1, "running")]),
            "failed and unfinished syncs before it do not count"
        );
        assert!(!first_sync(3, &[sync(3, "ok"), sync(2, "ok")]));
        assert!(
            first_sync(3, &[sync(4, "ok"), sync(3, "ok")]),
            "a later one does not count"
        );
    }

    fn build(id: i64, r: &str, state: BuildState, bad: bool) -> BuildRecord {
        let mut b: BuildRecord = serde_json::from_value(json!({
            "id": id, "pipeline": "node", "ref": r, "commit": "c", "version": "v",
            "trigger": "t", "repository": "hab/node", "state": state,
            "created_at": Utc::now(), "platforms": []
        }))
        .unwrap();
        if bad {
            b.known_bad = Some(KnownBad {
                build_id: id,
                fleet: "f".into(),
                rollout_id: None,
                reason: "gates".into(),
                at: Utc::now(),
            });
        }
        b
    }

    #[test]
    fn a_rebuild_builds_what_the_channels_run_else_the_newest_verified() {
        let v = BuildState::Verified;
        let stable = build(1, "refs/tags/v1", v, false);
        let edge = build(2, "refs/tags/v2", v, false);
        let edge_too = build(3, "refs/tags/v2", v, false);
        assert_eq!(
            rebuild_refs(&[stable.clone(), edge, edge_too], &[]),
            vec!["refs/tags/v1", "refs/tags/v2"],
            "each ref once, in the channels' order"
        );
        let forced = build(4, "refs/tags/v3", v, true);
        assert_eq!(
            rebuild_refs(&[forced.clone(), stable], &[]),
            vec!["refs/tags/v1"],
            "not a known-bad build an operator forced onto a channel"
        );
        let failed = build(5, "refs/tags/v5", BuildState::Failed, false);
        let newest_ok = build(6, "refs/tags/v4", v, false);
        assert_eq!(
            rebuild_refs(
                std::slice::from_ref(&forced),
                &[failed.clone(), forced.clone(), newest_ok]
            ),
            vec!["refs/tags/v4"],
            "no channel to follow: the newest verified, not known-bad"
        );
        assert!(rebuild_refs(&[], &[failed]).is_empty());
    }

    fn trigger(source: &str, detail: Option<&str>) -> TriggerRecord {
        TriggerRecord {
            id: 1,
            queue_id: 7,
            pipeline: "node".into(),
            kind: QueueKind::Sync,
            ref_name: String::new(),
            source: source.into(),
            detail: detail.map(Into::into),
            at: Utc::now(),
        }
    }

    #[test]
    fn who_asked_names_each_source_once() {
        assert_eq!(who_asked(7, "start", &[]), "start, queue 7");
        assert_eq!(
            who_asked(7, "x", &[trigger("schedule", Some("0 * * * * at 10:00"))]),
            "schedule: 0 * * * * at 10:00, queue 7"
        );
        let burst: Vec<_> = (0..50)
            .map(|i| trigger(if i == 3 { "api" } else { "webhook:github" }, Some("d")))
            .collect();
        assert_eq!(
            who_asked(7, "x", &burst),
            "webhook:github+api (50 triggers), queue 7"
        );
    }

    #[test]
    fn summaries_record_what_they_always_recorded() {
        let text = |e: ItemEnd| e.result_json().unwrap().to_string();
        assert_eq!(
            text(ItemEnd::done(ItemSummary::Synced {
                sync_id: 4,
                added: 1,
                moved: 2,
                deleted: 0
            })),
            r#"{"added":1,"deleted":0,"moved":2,"sync_id":4}"#
        );
        assert_eq!(
            text(ItemEnd::failed(
                Some(ItemSummary::SyncFailed { sync_id: 4 }),
                "x".into()
            )),
            r#"{"sync_id":4}"#
        );
        assert_eq!(
            text(ItemEnd::done(ItemSummary::Rebuilt {
                refs: vec!["refs/tags/v1".into()]
            })),
            r#"{"refs":["refs/tags/v1"]}"#
        );
        let b = |reused, state| {
            text(ItemEnd::done(ItemSummary::Build {
                build_id: 9,
                reused,
                state,
            }))
        };
        assert_eq!(b(None, None), r#"{"build_id":9}"#);
        assert_eq!(b(Some(true), None), r#"{"build_id":9,"reused":true}"#);
        assert_eq!(
            b(Some(false), Some(BuildState::Verified)),
            r#"{"build_id":9,"reused":false,"state":"verified"}"#
        );
        assert_eq!(ItemEnd::default().result_json(), None);
    }
}
