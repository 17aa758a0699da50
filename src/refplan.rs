//! What a sync changed, and what may be built: plain functions over plain data.
//!
//! [`plan`] compares the refs the store recorded after the last good sync with
//! the refs the mirror holds now. The store, not the mirror, is the baseline:
//! if habd died after a fetch but before the store committed, the next sync
//! sees the same changes again instead of losing them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{config::SignaturePolicy, signature::Verdict};

/// What a ref is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefKind {
    /// `refs/tags/*` pointing at a tag object (can carry a signature).
    AnnotatedTag,
    /// `refs/tags/*` pointing straight at a commit (cannot be signed).
    LightweightTag,
    /// `refs/heads/*` (its head commit can carry a signature).
    Branch,
}

impl RefKind {
    /// Stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            RefKind::AnnotatedTag => "annotated_tag",
            RefKind::LightweightTag => "lightweight_tag",
            RefKind::Branch => "branch",
        }
    }

    /// Reads the stored form (unknown values read as branch, the least trusted
    /// kind for moves).
    pub fn from_db(s: &str) -> Self {
        match s {
            "annotated_tag" => RefKind::AnnotatedTag,
            "lightweight_tag" => RefKind::LightweightTag,
            _ => RefKind::Branch,
        }
    }
}

/// Where a ref stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefState {
    /// Present upstream, as recorded.
    Active,
    /// A tag that upstream moved: flagged until an operator acknowledges it.
    Moved,
    /// Gone upstream; kept in the mirror and recorded.
    Deleted,
}

impl RefState {
    /// Stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            RefState::Active => "active",
            RefState::Moved => "moved",
            RefState::Deleted => "deleted",
        }
    }

    /// Reads the stored form.
    pub fn from_db(s: &str) -> Self {
        match s {
            "moved" => RefState::Moved,
            "deleted" => RefState::Deleted,
            _ => RefState::Active,
        }
    }
}

/// The version of the rules a verdict is reached by. Bump it whenever
/// verification changes what it accepts (1: tag objects bound to their name
/// and a commit, the OpenPGP standard policy): every recorded ref is then
/// judged again at its pipeline's next sync, so a verdict reached under
/// looser rules never stands.
pub const JUDGED_BY: i64 = 1;

/// A ref as recorded after the last good sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Known {
    /// Full name.
    pub name: String,
    /// Recorded target.
    pub oid: String,
    /// Recorded state.
    pub state: RefState,
    /// The rules its verdict was reached by ([`JUDGED_BY`] when current).
    pub judged_by: i64,
}

/// Kinds of change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// A ref never seen before.
    Added,
    /// A tag that now points elsewhere: flagged.
    Moved,
    /// A branch that advanced (branches move; that is not suspicious).
    Updated,
    /// Gone upstream.
    Deleted,
    /// Deleted before, back now at the same target.
    Restored,
    /// Unchanged upstream, judged again because its verdict was reached by
    /// older rules ([`JUDGED_BY`]); its state stays as it was.
    Rejudged,
}

impl ChangeKind {
    /// Stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Added => "added",
            ChangeKind::Moved => "moved",
            ChangeKind::Updated => "updated",
            ChangeKind::Deleted => "deleted",
            ChangeKind::Restored => "restored",
            ChangeKind::Rejudged => "rejudged",
        }
    }
}

/// One change to a tracked ref.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// Full ref name.
    pub name: String,
    /// What happened.
    pub kind: ChangeKind,
    /// The recorded target before (None when added).
    pub old_oid: Option<String>,
    /// The target now (None when deleted).
    pub new_oid: Option<String>,
}

/// What a ref points at now, read from the mirror.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefTarget {
    /// Annotated tag, lightweight tag or branch.
    pub kind: RefKind,
    /// The ref's direct target.
    pub oid: String,
    /// The commit it resolves to (empty when it resolves to none: the
    /// verdict is then [`Verdict::NotACommit`]).
    pub commit: String,
}

/// A change with what the sync read and decided about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    /// The change.
    pub change: Change,
    /// The new target (None when deleted).
    pub target: Option<RefTarget>,
    /// Its verdict (None when deleted).
    pub verdict: Option<Verdict>,
}

/// The changes between what the store recorded and what upstream holds now,
/// for the refs `tracks` accepts, in name order. Untracked refs are left alone,
/// recorded or not.
pub fn plan(
    known: &[Known],
    upstream: &BTreeMap<String, String>,
    tracks: impl Fn(&str) -> bool,
) -> Vec<Change> {
    let recorded: BTreeMap<&str, &Known> = known.iter().map(|k| (k.name.as_str(), k)).collect();
    let mut changes = Vec::new();
    for (name, oid) in upstream.iter().filter(|(n, _)| tracks(n)) {
        let change = |kind, old: Option<&str>| Change {
            name: name.clone(),
            kind,
            old_oid: old.map(String::from),
            new_oid: Some(oid.clone()),
        };
        match recorded.get(name.as_str()) {
            None => changes.push(change(ChangeKind::Added, None)),
            Some(k) if k.oid == *oid => {
                if k.state == RefState::Deleted {
                    changes.push(change(ChangeKind::Restored, Some(&k.oid)));
                } else if k.judged_by < JUDGED_BY {
                    changes.push(change(ChangeKind::Rejudged, Some(&k.oid)));
                }
            }
            Some(k) => {
                let kind = if name.starts_with("refs/tags/") {
                    ChangeKind::Moved
                } else {
                    ChangeKind::Updated
                };
                changes.push(change(kind, Some(&k.oid)));
            }
        }
    }
    for k in known {
        if k.state != RefState::Deleted && tracks(&k.name) && !upstream.contains_key(&k.name) {
            changes.push(Change {
                name: k.name.clone(),
                kind: ChangeKind::Deleted,
                old_oid: Some(k.oid.clone()),
                new_oid: None,
            });
        }
    }
    changes.sort_by(|a, b| a.name.cmp(&b.name));
    changes
}

/// Whether a recorded ref may be built, and if not, why (DESIGN.md invariant 1).
///
/// # Errors
/// The reason it may not, in words for the operator.
pub fn may_build(
    state: RefState,
    verdict: &Verdict,
    policy: SignaturePolicy,
) -> Result<(), String> {
    match state {
        RefState::Moved => {
            return Err(
                "the tag moved upstream; an operator must acknowledge it (habctl ack) first".into(),
            )
        }
        RefState::Deleted => return Err("the ref was deleted upstream".into()),
        RefState::Active => {}
    }
    if verdict.is_misbound() {
        return Err(format!("refused whatever the signature policy: {verdict}"));
    }
    match (policy, verdict) {
        (SignaturePolicy::None, _) | (SignaturePolicy::Signed, Verdict::Verified { .. }) => Ok(()),
        (SignaturePolicy::Signed, v) => Err(format!("signature policy refuses it: {v}")),
    }
}

/// Which refs a sync's changes build by themselves, for a pipeline that
/// builds automatically: each new (or restored, or advanced) ref that may be
/// built. On a pipeline's first sync every tag upstream ever made is new, so
/// only the newest tag is built (by natural version order, `v1.10.0` after
/// `v1.9.2`), not years of history; branch heads are built as they come.
pub fn auto_builds(
    changes: &[(String, ChangeKind)],
    first_sync: bool,
    buildable: impl Fn(&str) -> bool,
) -> Vec<String> {
    let candidates: Vec<&str> = changes
        .iter()
        .filter(|(_, k)| {
            matches!(
                k,
                ChangeKind::Added | ChangeKind::Restored | ChangeKind::Updated
            )
        })
        .map(|(n, _)| n.as_str())
        .filter(|n| buildable(n))
        .collect();
    if !first_sync {
        return candidates.into_iter().map(String::from).collect();
    }
    let newest_tag = candidates
        .iter()
        .filter(|n| n.starts_with("refs/tags/"))
        .max_by(|a, b| crate::refname::natural_cmp(a, b));
    candidates
        .iter()
        .filter(|n| !n.starts_with("refs/tags/") || Some(*n) == newest_tag)
        .map(|n| n.to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_first_sync_builds_only_the_newest_tag() {
        let changes: Vec<(String, ChangeKind)> = [
            ("refs/tags/v1.9.2", ChangeKind::Added),
            ("refs/tags/v1.10.0", ChangeKind::Added),
            ("refs/tags/v1.11.0-unsigned", ChangeKind::Added),
            ("refs/heads/master", ChangeKind::Added),
        ]
        .into_iter()
        .map(|(n, k)| (n.to_string(), k))
        .collect();
        let signed = |n: &str| !n.contains("unsigned");
        assert_eq!(
            auto_builds(&changes, true, signed),
            vec!["refs/tags/v1.10.0", "refs/heads/master"]
        );
        assert_eq!(auto_builds(&changes, false, signed).len(), 3);
    }

    #[test]
    fn moved_and_deleted_refs_build_nothing() {
        let changes = vec![
            ("refs/tags/v2".to_string(), ChangeKind::Moved),
            ("refs/tags/v1".to_string(), ChangeKind::Deleted),
            ("refs/heads/master".to_string(), ChangeKind::Updated),
        ];
        assert_eq!(
            auto_builds(&changes, false, |_| true),
            vec!["refs/heads/master"]
        );
    }

    fn known(name: &str, oid: &str, state: RefState) -> Known {
        Known {
            name: name.into(),
            oid: oid.into(),
            state,
            judged_by: JUDGED_BY,
        }
    }

    fn up(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(n, o)| (n.to_string(), o.to_string()))
            .collect()
    }

    fn kinds(changes: &[Change]) -> Vec<(&str, ChangeKind)> {
        changes.iter().map(|c| (c.name.as_str(), c.kind)).collect()
    }

    const ALL: fn(&str) -> bool = |_| true;

    #[test]
    fn nothing_changed_means_no_changes() {
        let k = [known("refs/tags/v1", "a", RefState::Active)];
        assert!(plan(&k, &up(&[("refs/tags/v1", "a")]), ALL).is_empty());
    }

    #[test]
    fn new_moved_updated_deleted() {
        let k = [
            known("refs/tags/v1", "a", RefState::Active),
            known("refs/tags/v2", "b", RefState::Active),
            known("refs/heads/master", "c", RefState::Active),
        ];
        let u = up(&[
            ("refs/tags/v1", "a2"),
            ("refs/tags/v3", "d"),
            ("refs/heads/master", "c2"),
        ]);
        assert_eq!(
            kinds(&plan(&k, &u, ALL)),
            vec![
                ("refs/heads/master", ChangeKind::Updated),
                ("refs/tags/v1", ChangeKind::Moved),
                ("refs/tags/v2", ChangeKind::Deleted),
                ("refs/tags/v3", ChangeKind::Added),
            ]
        );
    }

    #[test]
    fn deleted_is_recorded_once_and_restore_is_seen() {
        let k = [known("refs/tags/v1", "a", RefState::Deleted)];
        assert!(plan(&k, &up(&[]), ALL).is_empty());
        assert_eq!(
            kinds(&plan(&k, &up(&[("refs/tags/v1", "a")]), ALL)),
            vec![("refs/tags/v1", ChangeKind::Restored)]
        );
        assert_eq!(
            kinds(&plan(&k, &up(&[("refs/tags/v1", "z")]), ALL)),
            vec![("refs/tags/v1", ChangeKind::Moved)]
        );
    }

    #[test]
    fn verdicts_reached_by_older_rules_are_judged_again() {
        let mut old = known("refs/tags/v9", "a", RefState::Moved);
        old.judged_by = JUDGED_BY - 1;
        let gone = Known {
            state: RefState::Deleted,
            ..old.clone()
        };
        assert_eq!(
            kinds(&plan(&[old.clone()], &up(&[("refs/tags/v9", "a")]), ALL)),
            vec![("refs/tags/v9", ChangeKind::Rejudged)]
        );
        // A move is reported as a move (and judged by the new rules anyway).
        assert_eq!(
            kinds(&plan(&[old], &up(&[("refs/tags/v9", "b")]), ALL)),
            vec![("refs/tags/v9", ChangeKind::Moved)]
        );
        // Deleted refs are not judged again until they come back.
        assert_eq!(
            kinds(&plan(&[gone], &up(&[("refs/tags/v9", "a")]), ALL)),
            vec![("refs/tags/v9", ChangeKind::Restored)]
        );
        let ref_now = known("refs/tags/v9", "a", RefState::Active);
        assert!(plan(&[ref_now], &up(&[("refs/tags/v9", "a")]), ALL).is_empty());
    }

    #[test]
    fn untracked_refs_are_left_alone() {
        let k = [known("refs/tags/old", "a", RefState::Active)];
        let tracks = |n: &str| n.starts_with("refs/tags/v");
        assert!(plan(&k, &up(&[("refs/tags/x", "b")]), tracks).is_empty());
    }

    #[test]
    fn only_active_verified_refs_build_under_signed_policy() {
        let v = Verdict::Verified {
            fingerprint: "F".into(),
            primary_fingerprint: "F".into(),
            signed_at: Default::default(),
        };
        assert!(may_build(RefState::Active, &v, SignaturePolicy::Signed).is_ok());
        assert!(may_build(RefState::Moved, &v, SignaturePolicy::Signed).is_err());
        assert!(may_build(RefState::Deleted, &v, SignaturePolicy::None).is_err());
        assert!(may_build(
            RefState::Active,
            &Verdict::Unsigned,
            SignaturePolicy::Signed
        )
        .is_err());
        assert!(may_build(RefState::Active, &Verdict::Unsigned, SignaturePolicy::None).is_ok());
        let misbound = Verdict::TagNameMismatch {
            tag_name: "v1".into(),
            ref_name: "refs/tags/v9".into(),
        };
        assert!(may_build(RefState::Active, &misbound, SignaturePolicy::None).is_err());
        let tree = Verdict::NotACommit {
            object_type: "tree".into(),
        };
        assert!(may_build(RefState::Active, &tree, SignaturePolicy::None).is_err());
    }
}
