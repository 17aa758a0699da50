//! Upstream as an adversary: refs that lie about what they are, objects
//! that are not commits, a server that connects and never answers, a tag
//! that moves again between review and acknowledgement. Against `git
//! daemon` on 127.0.0.1, keys GnuPG makes here, real habd processes and the
//! real registry.

mod common;

use std::{
    io::Read,
    net::{TcpListener, TcpStream},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use common::*;
use hab::{
    refplan::{RefState, JUDGED_BY},
    signature::Verdict,
    store::Store,
    sync::sync_blocking,
};
use serde_json::Value;

fn text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn sync(world: &World, store: &Store) -> hab::sync::SyncReport {
    sync_blocking(store, &world.path("state"), &world.pipeline(), "test").unwrap()
}

fn stored(store: &Store, tag: &str) -> hab::store::StoredRef {
    store
        .get_ref("node", &format!("refs/tags/{tag}"))
        .unwrap()
        .unwrap_or_else(|| panic!("{tag} not recorded: {:#?}", store.refs("node")))
}

/// Points `refs/tags/<name>` at an existing object, as a forge account or a
/// man in the middle can: no new object, only a new name.
fn republish(world: &World, object: &str, name: &str) {
    world
        .upstream
        .git(&["update-ref", &format!("refs/tags/{name}"), object]);
}

/// Upstream with signed releases v1.0.0 and v1.1.0 (the newest), and
/// v1.0.0's genuine tag object republished as v9.9.9, which sorts after
/// both. Returns the world and v1.0.0's tag object.
fn republished_world() -> (World, String) {
    let (world, fpr, _) = World::with_release();
    let c2 = world.upstream.commit("release 1.1");
    world
        .upstream
        .signed_tag(&world.gpg, &fpr, "v1.1.0", &c2, T2020_02_01);
    let old = world.upstream.git(&["rev-parse", "refs/tags/v1.0.0"]);
    republish(&world, &old, "v9.9.9");
    (world, old)
}

#[test]
fn a_signed_tag_republished_under_another_name_is_refused_with_both_names() {
    let (world, old) = republished_world();
    world.write_pipeline(&world.daemon.url("node.git"));
    let store = Store::open(&world.path("hab.sqlite3")).unwrap();
    sync(&world, &store);

    let forged = stored(&store, "v9.9.9");
    assert_eq!(forged.oid, old, "the genuine object, under a new name");
    assert_eq!(
        forged.verdict,
        Verdict::TagNameMismatch {
            tag_name: "v1.0.0".into(),
            ref_name: "refs/tags/v9.9.9".into()
        }
    );
    let why = hab::refplan::may_build(
        forged.state,
        &forged.verdict,
        hab::config::SignaturePolicy::Signed,
    )
    .unwrap_err();
    assert!(
        why.contains("\"v1.0.0\"") && why.contains("refs/tags/v9.9.9"),
        "{why}"
    );
    // Not even a pipeline that asks for no signature may build it.
    assert!(hab::refplan::may_build(
        forged.state,
        &forged.verdict,
        hab::config::SignaturePolicy::None
    )
    .is_err());
    // The genuine releases are untouched.
    assert!(stored(&store, "v1.0.0").verdict.is_verified());
    assert!(stored(&store, "v1.1.0").verdict.is_verified());

    // The newest release a first sync builds is the real one, not the
    // republished name that sorts after it.
    let changes: Vec<(String, hab::refplan::ChangeKind)> = store
        .refs("node")
        .unwrap()
        .into_iter()
        .map(|r| (r.name, hab::refplan::ChangeKind::Added))
        .collect();
    let buildable = |name: &str| {
        let r = store.get_ref("node", name).unwrap().unwrap();
        hab::refplan::may_build(r.state, &r.verdict, hab::config::SignaturePolicy::Signed).is_ok()
    };
    let first = hab::refplan::auto_builds(&changes, true, buildable);
    assert!(first.contains(&"refs/tags/v1.1.0".to_string()), "{first:?}");
    assert!(!first.iter().any(|n| n.contains("v9.9.9")), "{first:?}");
}

#[test]
fn verdicts_recorded_under_older_rules_are_judged_again() {
    // A store from before tag binding recorded the republished tag verified.
    let (world, _, _) = World::with_release();
    world.write_pipeline(&world.daemon.url("node.git"));
    let old = world.upstream.git(&["rev-parse", "refs/tags/v1.0.0"]);
    republish(&world, &old, "v9.9.9");
    let store = Store::open(&world.path("hab.sqlite3")).unwrap();
    sync(&world, &store);
    let genuine = serde_json::to_string(&stored(&store, "v1.0.0").verdict).unwrap();
    {
        let db = rusqlite::Connection::open(world.path("hab.sqlite3")).unwrap();
        db.execute(
            "UPDATE refs SET verdict = 'verified', verdict_json = ?1, judged_by = 0",
            [&genuine],
        )
        .unwrap();
    }
    assert!(stored(&store, "v9.9.9").verdict.is_verified());

    let report = sync(&world, &store);
    let rejudged: Vec<&str> = report
        .changes
        .iter()
        .filter(|c| c.change == hab::refplan::ChangeKind::Rejudged)
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(
        rejudged,
        ["refs/heads/master", "refs/tags/v1.0.0", "refs/tags/v9.9.9"],
        "every ref judged by older rules"
    );
    let forged = stored(&store, "v9.9.9");
    assert_eq!(forged.verdict.kind(), "tag_name_mismatch");
    assert_eq!(forged.judged_by, JUDGED_BY);
    assert!(stored(&store, "v1.0.0").verdict.is_verified());
    assert_eq!(report.sync.added + report.sync.moved, 0, "nothing moved");
    // Judged once: the next sync has nothing to say.
    assert!(sync(&world, &store).changes.is_empty());

    // A build made from it while it read as verified cannot reach a
    // channel now, by ref or by id; the genuine release's build can.
    let mut pipeline = (*world.pipeline()).clone();
    pipeline.channels.push(hab::config::Channel {
        name: "edge".into(),
        auto: true,
    });
    let built = |tag: &str, digest: &str| {
        let r = stored(&store, tag);
        let b = store
            .create_build(&hab::store::NewBuild {
                pipeline: "node".into(),
                ref_name: r.name.clone(),
                commit: r.commit.clone(),
                version: tag.into(),
                signer: None,
                trigger: "test".into(),
                repository: "hab/node".into(),
                platforms: Vec::new(),
            })
            .unwrap();
        store.finish_verified(b.id, digest).unwrap();
        b.id
    };
    let forged_build = built("v9.9.9", &format!("sha256:{}", "9".repeat(64)));
    let genuine_build = built("v1.0.0", &format!("sha256:{}", "1".repeat(64)));
    let promotion = |target: &str, by: &str| hab::promotion::Promotion {
        target: hab::channel::PromoteTarget::parse(target),
        channel: "edge".into(),
        by: by.into(),
        reason: None,
        force: false,
        automatic: false,
    };
    for target in ["v9.9.9".to_string(), forged_build.to_string()] {
        let err =
            hab::promotion::decide(&store, &pipeline, &promotion(&target, "mallory")).unwrap_err();
        assert!(
            matches!(err, hab::channel::PromoteError::Refused(_))
                && err.to_string().contains("now refused: tag name mismatch"),
            "{target}: {err}"
        );
    }
    let ok = hab::promotion::decide(&store, &pipeline, &promotion("v1.0.0", "alice")).unwrap();
    assert_eq!(ok.id, genuine_build);
}

#[test]
fn signed_tag_objects_of_type_tree_blob_or_tag_are_refused() {
    let (world, fpr, _) = World::with_release();
    world.write_pipeline(&world.daemon.url("node.git"));
    let up = &world.upstream;
    let tree = up.git(&["rev-parse", "HEAD^{tree}"]);
    let blob = up.git(&["rev-parse", "HEAD:file.txt"]);
    let tag = up.git(&["rev-parse", "refs/tags/v1.0.0"]);
    for (name, object, typ) in [
        ("v2.0.0", &tree, "tree"),
        ("v3.0.0", &blob, "blob"),
        ("v4.0.0", &tag, "tag"),
    ] {
        let payload = format!(
            "object {object}\ntype {typ}\ntag {name}\n\
             tagger Upstream Dev <dev@example.org> 1579046400 +0000\n\nRelease {name}\n"
        );
        let sig = world.gpg.sign(&fpr, payload.as_bytes(), T2020_02_01);
        up.write_tag(name, &format!("{payload}{sig}"));
    }
    let store = Store::open(&world.path("hab.sqlite3")).unwrap();
    sync(&world, &store);
    for (name, typ) in [("v2.0.0", "tree"), ("v3.0.0", "blob"), ("v4.0.0", "tag")] {
        let r = stored(&store, name);
        assert_eq!(
            r.verdict,
            Verdict::NotACommit {
                object_type: typ.into()
            },
            "{name}"
        );
        assert!(r.verdict.is_misbound());
    }
    assert!(stored(&store, "v1.0.0").verdict.is_verified());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tag_on_a_tree_is_listed_as_not_a_commit_and_the_sync_goes_on() {
    let (world, fpr, _) = World::with_release();
    world.write_pipeline(&world.daemon.url("node.git"));
    let habd = Habd::start(&world).await;
    let (s, first) = habd.sync_node().await;
    assert_eq!(s, 200, "{first}");
    let before = habd.store.get_ref("node", "refs/tags/v1.0.0").unwrap();

    // `git tag x HEAD^{tree}`: a lightweight tag on a tree, and beside it
    // a genuine new release that must still be seen.
    let up = &world.upstream;
    up.git(&["tag", "v1.5.0-tree", "HEAD^{tree}"]);
    let c = up.commit("release 1.6");
    up.signed_tag(&world.gpg, &fpr, "v1.6.0", &c, T2020_02_01);

    let url = habd.url.clone();
    let (sync, refs, json) = tokio::task::spawn_blocking(move || {
        (
            habctl_at(&url, &["sync", "node"]),
            habctl_at(&url, &["refs", "node"]),
            habctl_at(&url, &["refs", "node", "-o", "json"]),
        )
    })
    .await
    .unwrap();
    assert!(sync.status.success(), "{}", text(&sync));
    assert!(refs.status.success(), "{}", text(&refs));
    let refs = text(&refs);
    let odd = refs
        .lines()
        .find(|l| l.starts_with("v1.5.0-tree"))
        .unwrap_or_else(|| panic!("{refs}"));
    assert!(odd.contains("not_a_commit"), "{refs}");
    assert!(
        refs.contains("refs/tags/v1.5.0-tree: refused whatever the signature policy: not a commit: the ref leads to a tree"),
        "{refs}"
    );
    let listed: Vec<Value> = serde_json::from_slice(&json.stdout).unwrap();
    let v16 = listed
        .iter()
        .find(|r| r["name"] == "refs/tags/v1.6.0")
        .unwrap();
    assert_eq!(v16["verdict"]["verdict"], "verified", "{v16}");
    assert_eq!(v16["buildable"], true);
    // Every other ref is as it was.
    assert_eq!(
        habd.store.get_ref("node", "refs/tags/v1.0.0").unwrap(),
        before
    );
    habd.stop().await;
}

/// A TCP server on 127.0.0.1 that accepts every connection and never says
/// a word. Returns its port and the connections it holds.
fn silent_server() -> (u16, Arc<Mutex<Vec<TcpStream>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let held = Arc::new(Mutex::new(Vec::new()));
    let keep = held.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            keep.lock().unwrap().push(stream);
        }
    });
    (port, held)
}

#[test]
fn a_stalled_upstream_ends_the_sync_at_its_timeout_and_frees_the_pipeline() {
    let world = World::new();
    let (port, held) = silent_server();
    let dir = world.path("pipelines");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("node.toml"),
        format!(
            "implementation = \"bitcoind\"\n\
             [upstream]\nurl = \"git://127.0.0.1:{port}/node.git\"\ntimeout = \"2s\"\n\
             [signature]\npolicy = \"none\"\n"
        ),
    )
    .unwrap();
    let config = world.path("hab.toml");
    std::fs::write(
        &config,
        format!(
            "state_dir = \"state\"\npipelines_dir = \"pipelines\"\n[api]\ntokens = [\"{TOKEN}\"]\n"
        ),
    )
    .unwrap();
    let api = free_port();
    let _habd = HabdProcess::start_quiet(&config, api);
    let url = format!("http://127.0.0.1:{api}");

    let started = Instant::now();
    let first = habctl_at(&url, &["sync", "node"]);
    let took = started.elapsed();
    assert!(!first.status.success());
    let said = text(&first);
    assert!(
        said.contains("of node failed")
            && said.contains("made no progress for 2s ([upstream] timeout)"),
        "{said}"
    );
    assert!(took < Duration::from_secs(10), "took {took:?}");
    let state = world.path("state").display().to_string();
    assert!(!said.contains(&state), "a server path in {said}");

    // The next sync is a sync of its own, on a connection of its own: not
    // joined to the stuck one, which still holds its socket.
    let second = habctl_at(&url, &["sync", "node", "-o", "json"]);
    assert!(!second.status.success());
    let said = text(&second);
    assert!(said.contains("([upstream] timeout)"), "{said}");
    assert_eq!(held.lock().unwrap().len(), 2, "one connection per sync");
    let store = Store::open(&world.path("state/hab.sqlite3")).unwrap();
    let syncs = store.syncs("node", 10).unwrap();
    assert_eq!(syncs.len(), 2, "{syncs:#?}");
    assert!(syncs.iter().all(|s| s.status == "failed"
        && s.error
            .as_deref()
            .unwrap_or("")
            .contains("[upstream] timeout")));

    // habd's process-wide socket timeout (the longest pipeline timeout)
    // closes the abandoned transfers' sockets too: nothing is left behind.
    let deadline = Instant::now() + Duration::from_secs(30);
    for stream in held.lock().unwrap().iter_mut() {
        stream
            .set_read_timeout(Some(deadline.saturating_duration_since(Instant::now())))
            .unwrap();
        let mut buf = [0u8; 512];
        loop {
            match stream.read(&mut buf) {
                Ok(0) => break, // closed by habd
                Ok(_) => continue,
                Err(e) => panic!("habd kept an abandoned fetch's socket open: {e}"),
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledgement_binds_to_the_object_reviewed() {
    let (world, fpr, _) = World::with_release();
    world.write_pipeline(&world.daemon.url("node.git"));
    let habd = Habd::start(&world).await;
    assert_eq!(habd.sync_node().await.0, 200);
    let up = &world.upstream;

    // The tag moves; an operator reviews the new object...
    let c2 = up.commit("rebuilt 1.0.0");
    let reviewed = up.signed_tag(&world.gpg, &fpr, "v1.0.0", &c2, T2020_02_01);
    assert_eq!(habd.sync_node().await.0, 200);
    let url = habd.url.clone();
    let refs = tokio::task::spawn_blocking(move || habctl_at(&url, &["refs", "node"]))
        .await
        .unwrap();
    assert!(
        text(&refs).contains(&reviewed[..12]),
        "habctl refs shows the object: {}",
        text(&refs)
    );
    // ...and before the ack, it moves again.
    let c3 = up.commit("rebuilt 1.0.0 again");
    let now = up.signed_tag(&world.gpg, &fpr, "v1.0.0", &c3, T2020_03_01);
    assert_eq!(habd.sync_node().await.0, 200);

    let url = habd.url.clone();
    let (plain, stale, bound, shown) = {
        let now = now.clone();
        let reviewed = reviewed.clone();
        tokio::task::spawn_blocking(move || {
            (
                habctl_at(&url, &["ack", "node", "v1.0.0"]),
                habctl_at(&url, &["ack", "node", "v1.0.0", "--oid", &reviewed]),
                habctl_at(
                    &url,
                    &["ack", "node", "v1.0.0", "--oid", &now[..12].to_uppercase()],
                ),
                habctl_at(&url, &["refs", "node"]),
            )
        })
        .await
        .unwrap()
    };
    for refused in [&plain, &stale] {
        assert!(!refused.status.success());
        let said = text(refused);
        assert!(
            said.contains(&format!("it now points at {now}")) && said.contains("--oid"),
            "{said}"
        );
    }
    assert!(text(&plain).contains("moved 2 times"), "{}", text(&plain));
    assert!(bound.status.success(), "{}", text(&bound));
    assert!(text(&bound).contains(&now), "{}", text(&bound));
    let r = habd
        .store
        .get_ref("node", "refs/tags/v1.0.0")
        .unwrap()
        .unwrap();
    assert_eq!(r.state, RefState::Active);
    assert_eq!(r.acknowledged_oid.as_deref(), Some(now.as_str()));
    assert!(text(&shown).contains(&now[..12]));

    // Over the API: the refusal is a 409 with the current object.
    let c4 = up.commit("and again");
    up.signed_tag(&world.gpg, &fpr, "v1.0.0", &c4, T2020_03_01);
    assert_eq!(habd.sync_node().await.0, 200);
    let (s, body) = call(
        habd.api(reqwest::Method::POST, "/pipelines/node/acknowledge")
            .json(&serde_json::json!({"ref": "v1.0.0", "oid": now})),
    )
    .await;
    assert_eq!(s, 409, "{body}");
    let current = habd
        .store
        .get_ref("node", "refs/tags/v1.0.0")
        .unwrap()
        .unwrap()
        .oid;
    assert_eq!(body["detail"]["current_oid"], current.as_str(), "{body}");
    // One move since the last acknowledgement: a plain ack is enough.
    let (s, body) = call(
        habd.api(reqwest::Method::POST, "/pipelines/node/acknowledge")
            .json(&serde_json::json!({"ref": "v1.0.0"})),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["acknowledged_oid"], current.as_str());
    habd.stop().await;
}

/// A `docker save` archive of a one-layer image, made here.
fn saved_image(path: &std::path::Path) {
    use sha2::{Digest, Sha256};
    let mut layer = tar::Builder::new(Vec::new());
    let data = b"hab\n";
    let mut header = tar::Header::new_gnu();
    header.set_size(data.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    layer.append_data(&mut header, "hello", &data[..]).unwrap();
    let layer = layer.into_inner().unwrap();
    let diff_id = format!("sha256:{}", hex::encode(Sha256::digest(&layer)));
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "config": {}
    })
    .to_string();
    let manifest = r#"[{"Config":"config.json","RepoTags":[],"Layers":["layer.tar"]}]"#;
    let mut ar = tar::Builder::new(std::fs::File::create(path).unwrap());
    for (name, bytes) in [
        ("manifest.json", manifest.as_bytes()),
        ("config.json", config.as_bytes()),
        ("layer.tar", &layer[..]),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_size(bytes.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        ar.append_data(&mut h, name, bytes).unwrap();
    }
    ar.finish().unwrap();
}

fn registry(url: &str, timeout: Duration) -> hab::registry::Registry {
    hab::registry::Registry::new(&hab::config::RegistryConfig {
        url: url.parse().unwrap(),
        username: None,
        password_file: None,
        pull_host: None,
        timeout,
    })
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_registry_ends_a_publish_at_its_timeout() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("image.tar");
    saved_image(&archive);
    let noop: Arc<dyn Fn(i64, i64) + Send + Sync> = Arc::new(|_, _| {});

    // The archive publishes to the real registry...
    let real = TestRegistry::start(&tmp.path().join("registry"), None, None);
    let pushed = registry(&real.url(), Duration::from_secs(2))
        .publish_saved(&archive, "hab/stall", noop.clone())
        .await
        .unwrap();
    assert!(pushed.digest.starts_with("sha256:"));

    // ...and to one that accepts connections and never answers, it fails
    // at the timeout, saying so.
    let (port, held) = silent_server();
    let stalled = registry(&format!("http://127.0.0.1:{port}"), Duration::from_secs(2));
    let started = Instant::now();
    let err = stalled
        .publish_saved(&archive, "hab/stall", noop)
        .await
        .unwrap_err();
    let took = started.elapsed();
    assert!(
        matches!(err, hab::registry::RegistryError::Timeout { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("([registry] timeout)"), "{err}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert!(!held.lock().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_republished_tag_can_be_neither_built_nor_promoted() {
    let (world, _) = republished_world();
    // A pipeline that builds and has an automatic edge channel; the
    // refusals come before any builder is asked for anything.
    let recipe = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("dockerfiles/fixture");
    std::fs::create_dir_all(world.path("pipelines")).unwrap();
    std::fs::write(
        world.path("pipelines/node.toml"),
        format!(
            "implementation = \"bitcoind\"\n\
             [upstream]\nurl = \"{}\"\n\
             [signature]\npolicy = \"signed\"\nkeyring = \"../keys\"\n\
             [build]\nrecipe = \"{}\"\nplatforms = [\"linux/amd64\"]\n\
             [image]\nrepository = \"hab/node\"\n\
             [[channel]]\nname = \"edge\"\nauto = true\n",
            world.daemon.url("node.git"),
            recipe.display()
        ),
    )
    .unwrap();
    let habd = Habd::start(&world).await;
    assert_eq!(habd.sync_node().await.0, 200);

    let (s, body) = call(
        habd.api(reqwest::Method::POST, "/pipelines/node/builds")
            .json(&serde_json::json!({ "ref": "v9.9.9" })),
    )
    .await;
    assert!((400..500).contains(&s), "{s} {body}");
    let why = body["error"].as_str().unwrap();
    assert!(
        why.contains("tag name mismatch") && why.contains("\"v1.0.0\""),
        "{why}"
    );
    let (s, body) = call(
        habd.api(reqwest::Method::POST, "/pipelines/node/promote")
            .json(&serde_json::json!({ "target": "v9.9.9", "channel": "edge", "by": "mallory" })),
    )
    .await;
    assert!((400..500).contains(&s), "{s} {body}");
    let (_, channels) = call(habd.api(reqwest::Method::GET, "/pipelines/node/channels")).await;
    assert!(
        channels["channels"][0]["current"].is_null(),
        "edge did not move: {channels}"
    );
    assert!(habd.store.latest_builds("node").unwrap().is_empty());
    habd.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_sync_names_the_pipeline_and_the_cause_but_no_server_path() {
    let (world, fpr, _) = World::with_release();
    world.write_pipeline(&world.daemon.url("node.git"));
    let habd = Habd::start(&world).await;
    assert_eq!(habd.sync_node().await.0, 200);
    // A stale lock in the mirror (a crash at the wrong moment) makes
    // libgit2 fail on a file it names by its full path.
    let lock = world.path("state/mirrors/node.git/refs/tags/v1.1.0.lock");
    std::fs::write(&lock, "").unwrap();
    let c = world.upstream.commit("release 1.1");
    world
        .upstream
        .signed_tag(&world.gpg, &fpr, "v1.1.0", &c, T2020_02_01);
    let (s, body) = habd.sync_node().await;
    assert_eq!(s, 502, "{body}");
    let why = body["error"].as_str().unwrap();
    assert!(
        why.contains("of node failed") && why.contains("lock"),
        "{why}"
    );
    let state = world.path("state").display().to_string();
    assert!(!why.contains(&state), "a server path in {why}");
    assert!(why.contains("<mirror>/refs/tags/v1.1.0.lock"), "{why}");
    std::fs::remove_file(&lock).unwrap();
    assert_eq!(habd.sync_node().await.0, 200);
    habd.stop().await;
}
