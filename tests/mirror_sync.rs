//! Mirror + verification + store, end to end, against an upstream served by
//! `git daemon` on 127.0.0.1 with tags signed by keys GnuPG makes here.

mod common;

use common::*;
use hab::{
    mirror::Mirror,
    refplan::RefState,
    signature::Verdict,
    store::Store,
    sync::{mirror_path, sync_blocking},
};

struct Setup {
    world: World,
    store: Store,
    trusted: String,
}

/// A world with one pinned key (made 2020-01-01, set on 2020-01-02 to expire
/// 2020-06-01) and the pipeline `node` following it.
fn setup() -> Setup {
    let world = World::new();
    let trusted = world.gpg.gen_key("release", T2020_01_01);
    world.pin(&[&trusted]);
    world.write_pipeline(&world.daemon.url("node.git"));
    let store = Store::open(&world.path("hab.sqlite3")).unwrap();
    Setup {
        world,
        store,
        trusted,
    }
}

impl Setup {
    fn sync(&self) -> Result<hab::sync::SyncReport, hab::sync::SyncFailure> {
        sync_blocking(
            &self.store,
            &self.world.path("state"),
            &self.world.pipeline(),
            "test",
        )
    }

    fn verdict(&self, tag: &str) -> Verdict {
        self.stored(tag).verdict
    }

    fn stored(&self, tag: &str) -> hab::store::StoredRef {
        self.store
            .get_ref("node", &format!("refs/tags/{tag}"))
            .unwrap()
            .unwrap_or_else(|| panic!("{tag} not recorded; refs: {:#?}", self.store.refs("node")))
    }
}

#[test]
fn signed_tag_is_verified_with_the_signing_fingerprint() {
    let s = setup();
    let up = &s.world.upstream;
    let commit = up.commit("release 1");
    up.signed_tag(&s.world.gpg, &s.trusted, "v1.0.0", &commit, T2020_02_01);
    let report = s.sync().unwrap();
    assert_eq!(report.sync.added, 2, "the tag and master: {report:#?}");
    match s.verdict("v1.0.0") {
        Verdict::Verified {
            fingerprint,
            primary_fingerprint,
            signed_at,
        } => {
            assert_eq!(fingerprint, s.trusted);
            assert_eq!(primary_fingerprint, s.trusted);
            assert_eq!(signed_at.to_rfc3339(), "2020-02-01T00:00:00+00:00");
        }
        v => panic!("expected verified, got {v:?}"),
    }
    let r = s.stored("v1.0.0");
    assert_eq!(r.commit, commit);
    assert_eq!(r.state, RefState::Active);
}

#[test]
fn unsigned_unknown_key_and_tampered_tags_are_refused_with_their_reason() {
    let s = setup();
    let stranger = s.world.gpg.gen_key("stranger", T2020_01_01);
    let up = &s.world.upstream;
    let c = up.commit("release");
    up.unsigned_tag("v1.0.0", &c);
    up.signed_tag(&s.world.gpg, &stranger, "v1.1.0", &c, T2020_02_01);
    up.tampered_tag(&s.world.gpg, &s.trusted, "v1.2.0", &c, T2020_02_01);
    up.git(&["tag", "v1.3.0", &c]); // lightweight
    s.sync().unwrap();
    assert_eq!(s.verdict("v1.0.0"), Verdict::Unsigned);
    assert_eq!(
        s.verdict("v1.1.0"),
        Verdict::UnknownKey {
            issuer: stranger.clone()
        }
    );
    assert!(
        matches!(s.verdict("v1.2.0"), Verdict::BadSignature { ref reason } if reason.contains(&s.trusted)),
        "{:?}",
        s.verdict("v1.2.0")
    );
    assert_eq!(s.verdict("v1.3.0"), Verdict::Unsigned);
}

#[test]
fn expiry_is_judged_at_signing_time() {
    let s = setup();
    let gpg = &s.world.gpg;
    let up = &s.world.upstream;
    let c = up.commit("release");
    // Signed on 2020-08-01 while GnuPG still saw no expiry; then a self-signature
    // dated 2020-01-02 sets the expiry to 2020-06-01, so on 2020-08-01 the key
    // had expired.
    let late = up.tag_payload("v2.0.0", &c, "Release v2.0.0");
    let late_sig = gpg.sign(&s.trusted, late.as_bytes(), T2020_08_01);
    gpg.set_expiry(&s.trusted, T2020_01_02, "2020-06-01");
    up.write_tag("v2.0.0", &format!("{late}{late_sig}"));
    up.signed_tag(gpg, &s.trusted, "v1.0.0", &c, T2020_03_01);
    s.world.pin(&[&s.trusted]);
    s.sync().unwrap();
    // Signed 2020-03-01, before the 2020-06-01 expiry: verified today, years after.
    assert!(
        s.verdict("v1.0.0").is_verified(),
        "{:?}",
        s.verdict("v1.0.0")
    );
    match s.verdict("v2.0.0") {
        Verdict::KeyExpired {
            fingerprint,
            expired_at,
            signed_at,
        } => {
            assert_eq!(fingerprint, s.trusted);
            assert!(expired_at < signed_at);
            assert_eq!(expired_at.date_naive().to_string(), "2020-06-01");
        }
        v => panic!("expected key_expired, got {v:?}"),
    }
}

#[test]
fn revoked_key_is_refused() {
    let s = setup();
    let up = &s.world.upstream;
    let c = up.commit("release");
    up.signed_tag(&s.world.gpg, &s.trusted, "v1.0.0", &c, T2020_02_01);
    s.world.gpg.revoke(&s.trusted);
    s.world.pin(&[&s.trusted]);
    s.sync().unwrap();
    assert!(
        matches!(s.verdict("v1.0.0"), Verdict::KeyRevoked { ref fingerprint, .. } if *fingerprint == s.trusted),
        "{:?}",
        s.verdict("v1.0.0")
    );
}

#[test]
fn moved_tag_is_flagged_and_its_old_object_kept() {
    let s = setup();
    let up = &s.world.upstream;
    let c1 = up.commit("release");
    let old = up.signed_tag(&s.world.gpg, &s.trusted, "v1.0.0", &c1, T2020_02_01);
    s.sync().unwrap();
    let c2 = up.commit("sneaky");
    let new = up.signed_tag(&s.world.gpg, &s.trusted, "v1.0.0", &c2, T2020_03_01);
    let report = s.sync().unwrap();
    assert_eq!(
        report.sync.moved, 2,
        "tag moved, master updated: {report:#?}"
    );
    let r = s.stored("v1.0.0");
    assert_eq!(r.state, RefState::Moved);
    assert_eq!(r.oid, new);
    assert_eq!(r.previous_oid.as_deref(), Some(old.as_str()));
    // Not buildable until acknowledged, even though the new tag verifies.
    assert!(r.verdict.is_verified());
    assert!(
        hab::refplan::may_build(r.state, &r.verdict, hab::config::SignaturePolicy::Signed).is_err()
    );
    // The old object is still in the mirror, reachable from a kept ref.
    let mirror = Mirror::open_or_init(&mirror_path(&s.world.path("state"), "node")).unwrap();
    let raw = String::from_utf8(mirror.read_raw(&old).unwrap()).unwrap();
    assert!(raw.contains(&c1));
    let kept = report
        .changes
        .iter()
        .find(|c| c.name == "refs/tags/v1.0.0")
        .unwrap();
    assert_eq!(
        kept.kept_as.as_deref(),
        Some(format!("refs/hab/kept/tags/v1.0.0/{old}").as_str())
    );
    let repo = git2::Repository::open_bare(mirror.path()).unwrap();
    assert_eq!(
        repo.refname_to_id(kept.kept_as.as_ref().unwrap())
            .unwrap()
            .to_string(),
        old
    );
    // A second identical sync does not flag it again; acknowledging clears it.
    assert_eq!(s.sync().unwrap().sync.moved, 0);
    let acked = s
        .store
        .acknowledge("node", "refs/tags/v1.0.0", None, "tester")
        .unwrap();
    assert_eq!(acked.state, RefState::Active);
    assert_eq!(acked.acknowledged_by.as_deref(), Some("tester"));
    let events: Vec<String> = s
        .store
        .ref_events("node", "refs/tags/v1.0.0")
        .unwrap()
        .into_iter()
        .map(|e| e.event)
        .collect();
    assert_eq!(events, ["added", "moved", "acknowledged"]);
}

#[test]
fn deleted_ref_is_recorded_not_dropped() {
    let s = setup();
    let up = &s.world.upstream;
    let c = up.commit("release");
    let oid = up.signed_tag(&s.world.gpg, &s.trusted, "v1.0.0", &c, T2020_02_01);
    s.sync().unwrap();
    up.delete_tag("v1.0.0");
    let report = s.sync().unwrap();
    assert_eq!(report.sync.deleted, 1);
    let r = s.stored("v1.0.0");
    assert_eq!(r.state, RefState::Deleted);
    assert!(r.verdict.is_verified(), "the verdict stays recorded");
    let mirror = Mirror::open_or_init(&mirror_path(&s.world.path("state"), "node")).unwrap();
    assert!(
        !mirror.refs().unwrap().contains_key("refs/tags/v1.0.0"),
        "the mirror follows upstream"
    );
    assert!(mirror.read_raw(&oid).is_ok(), "the object is kept");
    assert_eq!(s.sync().unwrap().sync.deleted, 0, "recorded once");
}

#[test]
fn sync_without_upstream_change_transfers_no_objects() {
    let s = setup();
    let up = &s.world.upstream;
    let c = up.commit("release");
    up.signed_tag(&s.world.gpg, &s.trusted, "v1.0.0", &c, T2020_02_01);
    let first = s.sync().unwrap();
    assert!(first.sync.objects_received > 0);
    let second = s.sync().unwrap();
    assert_eq!(second.sync.objects_received, 0, "{second:#?}");
    assert_eq!(second.sync.bytes_received, 0);
    assert!(second.changes.is_empty());
    // Only the new objects come across on the next change.
    up.commit("next");
    let third = s.sync().unwrap();
    assert!(
        third.sync.objects_received > 0
            && third.sync.objects_received < first.sync.objects_received + 3
    );
}

#[test]
fn unreachable_upstream_fails_clearly_and_keeps_everything() {
    let s = setup();
    let up = &s.world.upstream;
    let c = up.commit("release");
    up.signed_tag(&s.world.gpg, &s.trusted, "v1.0.0", &c, T2020_02_01);
    s.sync().unwrap();
    let before = s.store.refs("node").unwrap();
    let mirror = Mirror::open_or_init(&mirror_path(&s.world.path("state"), "node")).unwrap();
    let mirrored = mirror.refs().unwrap();

    // Point the pipeline at a port nothing listens on.
    s.world
        .write_pipeline(&format!("git://127.0.0.1:{}/node.git", free_port()));
    let err = s.sync().unwrap_err();
    assert!(
        err.reason.contains("fetch from git://127.0.0.1"),
        "{}",
        err.reason
    );
    assert!(
        err.reason.to_lowercase().contains("connect"),
        "{}",
        err.reason
    );
    let recorded = s.store.sync(err.sync_id).unwrap();
    assert_eq!(recorded.status, "failed");
    assert_eq!(recorded.error.as_deref(), Some(err.reason.as_str()));
    assert_eq!(s.store.refs("node").unwrap(), before, "verdicts intact");
    assert_eq!(mirror.refs().unwrap(), mirrored, "mirror intact");
}

#[test]
fn a_crash_between_fetch_and_commit_loses_nothing() {
    let s = setup();
    let up = &s.world.upstream;
    let c = up.commit("release");
    up.signed_tag(&s.world.gpg, &s.trusted, "v1.0.0", &c, T2020_02_01);
    s.sync().unwrap();
    // A sync that died after its fetch: the mirror has v1.1.0, the store does not.
    up.signed_tag(&s.world.gpg, &s.trusted, "v1.1.0", &c, T2020_03_01);
    let crashed = s.store.begin_sync("node", "test").unwrap();
    let mirror = Mirror::open_or_init(&mirror_path(&s.world.path("state"), "node")).unwrap();
    mirror
        .fetch(
            &s.world.daemon.url("node.git"),
            std::time::Duration::from_secs(60),
        )
        .unwrap();
    assert!(mirror.refs().unwrap().contains_key("refs/tags/v1.1.0"));

    // habd restarts: the store reopens at the same schema, the dead sync is marked.
    let reopened = Store::open(&s.world.path("hab.sqlite3")).unwrap();
    assert_eq!(
        reopened.schema_version().unwrap(),
        s.store.schema_version().unwrap()
    );
    assert_eq!(reopened.mark_interrupted().unwrap(), 1);
    assert_eq!(reopened.sync(crashed).unwrap().status, "interrupted");
    assert!(
        reopened
            .get_ref("node", "refs/tags/v1.1.0")
            .unwrap()
            .is_none(),
        "nothing half-written"
    );

    // The next sync sees the change again (the store, not the mirror, is the baseline).
    let next = sync_blocking(
        &reopened,
        &s.world.path("state"),
        &s.world.pipeline(),
        "test",
    )
    .unwrap();
    assert_eq!(next.sync.objects_received, 0, "already fetched");
    assert_eq!(next.sync.added, 1);
    assert!(reopened
        .get_ref("node", "refs/tags/v1.1.0")
        .unwrap()
        .unwrap()
        .verdict
        .is_verified());
}
