//! A digest without habd's signed provenance cannot be promoted or rolled
//! (issue 20, DESIGN.md invariant 8), whatever the store says: a fleet of
//! real containers (dockerd) on a real build, a real registry, and an
//! index pushed there by hand, which a tampered store calls VERIFIED.
//! Attested by another key, or carrying habd's genuine envelope of another
//! digest, it is refused just the same, with the reason, and no node is
//! touched.

mod common;

use std::sync::Arc;

use common::*;
use hab::{
    provenance::{BuildFacts, Provenance, SigningKey, ATTESTATION_TYPE, DSSE_MEDIA_TYPE},
    registry::{digest_of, Registry},
    store::NewBuild,
};
use serde_json::{json, Value};

/// A rollout of `fleet` to `build` (`image`) written straight into the
/// store, as a tampered store would hold it; the engine's answer.
/// `GET url` (a manifest, as `accept`), as JSON.
async fn get_json(url: String, accept: &str) -> Value {
    client()
        .get(url)
        .header("Accept", accept)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

async fn roll_by_hand(habd: &Habd, fleet: &str, build: i64, image: &str) -> Value {
    let r = habd
        .store
        .queue_rollout(fleet, "node", "stable", build, image, "a tampered store")
        .unwrap();
    wait_rollout(habd, r.id).await
}

/// A rollout of `fleet` to `image` written into the store fails, its
/// reason containing `why`, and the fleet's nodes still run `before`.
async fn refused_roll(
    habd: &Habd,
    fleet: &str,
    build: i64,
    image: &str,
    why: &str,
    before: &[String],
) -> Value {
    let r = roll_by_hand(habd, fleet, build, image).await;
    assert_eq!(r["state"], "failed", "{r}");
    assert!(r["reason"].as_str().unwrap().contains(why), "{r}");
    assert_eq!(images(fleet), before);
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_digest_without_habds_provenance_is_never_promoted_or_rolled() {
    let fx = Fleets::new();
    let fleet = fx.names[0].clone();
    let config = fx.bw.load();
    let registry = Registry::new(&config.registry).unwrap();
    let habd = Habd::start_config(config.clone()).await;
    for p in ["node", "node2"] {
        let (s, b) = call(habd.api(reqwest::Method::POST, &format!("/pipelines/{p}/sync"))).await;
        assert_eq!(s, 200, "{b}");
    }

    // A genuine build rolls, its attestation checked first.
    let a = build(&habd, "node", "v1.0.0").await;
    let ids = promote(&habd, "node", a).await;
    let r = wait_rollout(&habd, ids[0]).await;
    assert_eq!(r["state"], "succeeded", "{r}");
    let kinds: Vec<&str> = r["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds[..2], ["attested", "start"], "{r}");
    let before = images(&fleet);
    assert!(
        before.iter().all(|i| i.contains("/hab/node@sha256:")),
        "{before:?}"
    );

    // Checked again before each node: an attestation deleted while a
    // rollout runs stops it before the next node, and turns it back.
    let b = build(&habd, "node", "v1.1.0").await;
    let (_, built_b) = call(habd.api(reqwest::Method::GET, &format!("/builds/{b}"))).await;
    let index_b = built_b["index_digest"].as_str().unwrap().to_string();
    let id = promote(&habd, "node", b).await[0];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let (_, r) = call(habd.api(reqwest::Method::GET, &format!("/rollouts/{id}"))).await;
        if r["steps"].to_string().contains("\"update\"") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{r}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let gone = registry.detach_all("hab/node", &index_b).await.unwrap();
    assert_eq!(
        gone.len(),
        2,
        "the attestation and its fallback index: {gone:?}"
    );
    let r = wait_rollout(&habd, id).await;
    assert_eq!(r["state"], "failed", "{r}");
    let updates: Vec<&Value> = r["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["kind"] == "update")
        .collect();
    assert!(
        updates[0]["detail"].as_str().unwrap().ends_with(&index_b),
        "{r}"
    );
    assert!(
        updates[1..]
            .iter()
            .all(|u| !u["detail"].as_str().unwrap().ends_with(&index_b)),
        "no node after the first was changed to it: {r}"
    );
    assert!(r["steps"].to_string().contains("no attestation of"), "{r}");
    assert_eq!(images(&fleet), before, "turned back to the attested build");

    // habd's genuine image of another pipeline (node2) does not run on
    // this fleet (node's) either.
    let other = build(&habd, "node2", "v1.0.0").await;
    let (_, built_other) = call(habd.api(reqwest::Method::GET, &format!("/builds/{other}"))).await;
    let other_image = format!(
        "{}/hab/node2@{}",
        config.registry.host(),
        built_other["index_digest"].as_str().unwrap()
    );
    refused_roll(
        &habd,
        &fleet,
        other,
        &other_image,
        "habd attested it as a build of pipeline node2, not node",
        &before,
    )
    .await;

    // By hand: the genuine index with one annotation more, pushed under a
    // tag: same images, a digest habd never attested.
    let (_, built) = call(habd.api(reqwest::Method::GET, &format!("/builds/{a}"))).await;
    let genuine = built["index_digest"].as_str().unwrap().to_string();
    let base = config
        .registry
        .url
        .as_str()
        .trim_end_matches('/')
        .to_string();
    let http = client();
    let mut index: Value =
        get_json(format!("{base}/v2/hab/node/manifests/{genuine}"), OCI_INDEX).await;
    index["annotations"]["org.example.pushed-by"] = json!("hand");
    let bytes = serde_json::to_vec(&index).unwrap();
    let hand = digest_of(&bytes);
    let put = http
        .put(format!("{base}/v2/hab/node/manifests/handmade"))
        .header("Content-Type", OCI_INDEX)
        .body(bytes.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 201, "{}", put.text().await.unwrap());
    let image = format!("{}/hab/node@{hand}", config.registry.host());

    // A store that says otherwise: a VERIFIED build of that index.
    let forged = habd
        .store
        .create_build(&NewBuild {
            pipeline: "node".into(),
            ref_name: "refs/tags/v1.1.0".into(),
            commit: fx.bw.commit.clone(),
            version: "v1.1.0".into(),
            signer: None,
            trigger: "test".into(),
            repository: "hab/node".into(),
            platforms: Vec::new(),
        })
        .unwrap()
        .id;
    habd.store.finish_verified(forged, &hand).unwrap();

    // It cannot be promoted…
    let refused = |why: &str| {
        let why = why.to_string();
        move |(s, p): (u16, Value)| {
            assert_eq!(s, 409, "{p}");
            let e = p["error"].as_str().unwrap();
            assert!(e.contains("cannot be promoted") && e.contains(&why), "{e}");
        }
    };
    let promote_forged = || {
        call(
            habd.api(reqwest::Method::POST, "/pipelines/node/promote")
                .json(&json!({"target": forged.to_string(), "channel": "stable", "by": "mallory"})),
        )
    };
    refused("no attestation of")(promote_forged().await);
    let out = habctl_at(
        &habd.url,
        &[
            "promote",
            "node",
            &forged.to_string(),
            "--channel",
            "stable",
        ],
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no attestation of"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // …nor rolled: the rollout fails with the reason, and no node changes.
    let r = refused_roll(&habd, &fleet, forged, &image, "no attestation of", &before).await;
    assert!(
        r["reason"]
            .as_str()
            .unwrap()
            .contains("no node was touched"),
        "{r}"
    );
    assert!(!r["steps"].to_string().contains("\"update\""), "{r}");

    // Attested, but by another key than habd's: refused the same way.
    let (other, _) = SigningKey::load_or_create(&fx.bw.world.path("other.key")).unwrap();
    let impostor = Provenance::new(Arc::new(other), registry.clone());
    let facts = BuildFacts {
        repository: "hab/node".into(),
        index_digest: hand.clone(),
        platforms: Vec::new(),
        pipeline: "node".into(),
        upstream: "git://127.0.0.1/node.git".into(),
        ref_name: "refs/tags/v1.1.0".into(),
        commit: fx.bw.commit.clone(),
        version: "v1.1.0".into(),
        recipe: "fixture".into(),
        recipe_digest: digest_of(b""),
        ref_oid: "0".repeat(40),
        tag_object: None,
        verdict: "verified".into(),
        verdict_text: "verified".into(),
        signer: None,
        builder_id: impostor.builder_id(),
        build_id: forged,
        started: chrono::Utc::now(),
        finished: chrono::Utc::now(),
        verification: json!({"ok": true}),
    };
    impostor.attest(&facts, bytes.len() as i64).await.unwrap();
    refused("verifies with habd's key")(promote_forged().await);
    refused_roll(
        &habd,
        &fleet,
        forged,
        &image,
        "no signature in the envelope verifies with habd's key",
        &before,
    )
    .await;

    // habd's genuine envelope of the genuine index, attached to the hand
    // index: signed by habd, but not of this digest.
    let tag = genuine.replacen(':', "-", 1);
    let listed: Value = get_json(format!("{base}/v2/hab/node/manifests/{tag}"), OCI_INDEX).await;
    let att: Value = get_json(
        format!(
            "{base}/v2/hab/node/manifests/{}",
            listed["manifests"][0]["digest"].as_str().unwrap()
        ),
        "application/vnd.oci.image.manifest.v1+json",
    )
    .await;
    let envelope = http
        .get(format!(
            "{base}/v2/hab/node/blobs/{}",
            att["layers"][0]["digest"].as_str().unwrap()
        ))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    registry
        .attach(
            "hab/node",
            (&hand, bytes.len() as i64),
            ATTESTATION_TYPE,
            DSSE_MEDIA_TYPE,
            &envelope,
        )
        .await
        .unwrap();
    refused("does not name")(promote_forged().await);
    refused_roll(
        &habd,
        &fleet,
        forged,
        &image,
        &format!("does not name {hand} as a subject"),
        &before,
    )
    .await;

    // A build whose attestation is gone (as one verified before hab signed
    // provenance): `habctl verify` says so; it is not reused, nor are its
    // images (the store alone does not vouch for them): the release is
    // built again, attested, and rolls.
    let out = habctl_at(&habd.url, &["verify", &b.to_string()]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        text.contains("provenance: no attestation of")
            && text.contains("habctl build node --ref v1.1.0 builds it again"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let c = build(&habd, "node", "v1.1.0").await;
    assert_ne!(c, b, "not reused");
    let (_, built_c) = call(habd.api(reqwest::Method::GET, &format!("/builds/{c}"))).await;
    assert!(
        built_c["platforms"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["reused"] == false),
        "{built_c}"
    );
    let index_c = built_c["index_digest"].as_str().unwrap().to_string();
    let r = wait_rollout(&habd, promote(&habd, "node", c).await[0]).await;
    assert_eq!(r["state"], "succeeded", "{r}");
    let image_c = format!("{}/hab/node@{index_c}", config.registry.host());
    assert!(
        images(&fleet).iter().all(|i| *i == image_c),
        "{:?}",
        images(&fleet)
    );

    // A store that maps v1.1.0's build key to habd's genuine, attested
    // image of v1.0.0: once v1.1.0's build is not reusable (its
    // attestation gone), the image is not taken either, since habd's
    // attestation names it with another build key. Built again.
    let key = built_c["build_keys"]["linux/amd64"]
        .as_str()
        .unwrap()
        .to_string();
    let image_a = built["digests"]["linux/amd64"]
        .as_str()
        .unwrap()
        .to_string();
    registry.detach_all("hab/node", &index_c).await.unwrap();
    let db = rusqlite::Connection::open(config.state_dir.join("hab.sqlite3")).unwrap();
    let forged_keys = db
        .execute(
            "UPDATE build_keys SET manifest_digest = ?1, build_id = ?2
             WHERE build_key = ?3 AND repository = 'hab/node'",
            rusqlite::params![image_a, a, key],
        )
        .unwrap();
    assert_eq!(forged_keys, 1);
    let d = build(&habd, "node", "v1.1.0").await;
    let (_, built_d) = call(habd.api(reqwest::Method::GET, &format!("/builds/{d}"))).await;
    assert_ne!(d, c);
    assert_eq!(built_d["platforms"][0]["reused"], false, "{built_d}");
    assert_ne!(
        built_d["digests"]["linux/amd64"],
        image_a.as_str(),
        "{built_d}"
    );

    habd.stop().await;
    cleanup(&fx.names);
}
