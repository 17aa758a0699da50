//! Signed provenance, checked by tools hab did not write and offline
//! (issue 20). A real build of both platforms by dockerd/BuildKit into a
//! real registry; the attestation is found by `skopeo` through the OCI
//! fallback tag, its DSSE envelope verified by in-toto and securesystemslib
//! (PyPI) with habd's public key, the maintainer's tag object inside it by
//! GnuPG's `gpgv`. Then `habctl verify --offline` passes from the registry
//! and from an OCI layout that skopeo copied off it, with habd stopped and
//! then the registry gone; and fails, naming what, when one byte of the
//! envelope, the tag object or the index is changed, also by an attacker
//! holding habd's key.

mod common;

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use base64::Engine as _;
use common::*;
use hab::provenance::{dsse, SigningKey};
use serde_json::Value;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

fn skopeo(args: &[&str]) -> String {
    run(Command::new("skopeo").args(args))
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// `habctl verify --offline …`: (success, stdout + stderr).
fn verify_offline(
    key: &Path,
    keyring: &Path,
    layout: Option<&Path>,
    target: &str,
) -> (bool, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_habctl"));
    cmd.args(["verify", "--offline", "--key"])
        .arg(key)
        .arg("--keyring")
        .arg(keyring);
    if let Some(l) = layout {
        cmd.arg("--layout").arg(l);
    }
    // No habd answers here: --offline must not ask one.
    let out = cmd
        .arg(target)
        .env("HAB_SERVER", "http://127.0.0.1:9")
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn blob_path(layout: &Path, digest: &str) -> PathBuf {
    layout
        .join("blobs/sha256")
        .join(digest.strip_prefix("sha256:").unwrap())
}

fn digest(bytes: &[u8]) -> String {
    hab::registry::digest_of(bytes)
}

/// Copies `layout` to `to` and rewrites the envelope of the attestation
/// manifest `att` with `edit`, then every digest that names it (the
/// manifest's layer, the layout's index.json), as a careful attacker would.
fn rewrite_envelope(layout: &Path, to: &Path, att: &str, edit: impl FnOnce(Vec<u8>) -> Vec<u8>) {
    run(Command::new("cp").arg("-a").arg(layout).arg(to));
    let mut manifest = json(&std::fs::read_to_string(blob_path(to, att)).unwrap());
    let layer = manifest["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let envelope = edit(std::fs::read(blob_path(to, &layer)).unwrap());
    let new_layer = digest(&envelope);
    std::fs::write(blob_path(to, &new_layer), &envelope).unwrap();
    manifest["layers"][0]["digest"] = new_layer.into();
    manifest["layers"][0]["size"] = envelope.len().into();
    let bytes = serde_json::to_vec(&manifest).unwrap();
    let new_att = digest(&bytes);
    std::fs::write(blob_path(to, &new_att), &bytes).unwrap();
    let index_json = to.join("index.json");
    let mut index = json(&std::fs::read_to_string(&index_json).unwrap());
    for d in index["manifests"].as_array_mut().unwrap() {
        if d["digest"] == att {
            d["digest"] = new_att.clone().into();
            d["size"] = bytes.len().into();
        }
    }
    std::fs::write(&index_json, serde_json::to_vec(&index).unwrap()).unwrap();
}

/// Re-signs an envelope's statement, edited by `edit`, with `key`.
fn resign(envelope: &[u8], key: &SigningKey, edit: impl FnOnce(&mut Value)) -> Vec<u8> {
    let env: dsse::Envelope = serde_json::from_slice(envelope).unwrap();
    let mut statement: Value = serde_json::from_slice(&B64.decode(env.payload).unwrap()).unwrap();
    edit(&mut statement);
    let payload = serde_json::to_vec(&statement).unwrap();
    serde_json::to_vec(&dsse::sign(dsse::IN_TOTO_PAYLOAD, &payload, key)).unwrap()
}

fn tag_dep(statement: &mut Value) -> &mut Value {
    statement["predicate"]["buildDefinition"]["resolvedDependencies"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|d| d["name"] == "tag")
        .unwrap()
}

/// One byte of the tag object's message changed (the first byte after the
/// header's blank line).
fn flip_tag_message(raw: &[u8]) -> Vec<u8> {
    let mut raw = raw.to_vec();
    let at = raw.windows(2).position(|w| w == b"\n\n").unwrap() + 2;
    raw[at] ^= 0x01;
    raw
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tools_we_did_not_write_check_it_and_every_tampering_is_named() {
    let bw = BuildWorld::new();
    let mut registry = TestRegistry::start(&bw.world.path("registry"), None, None);
    bw.write_hab(&registry.url(), None);
    bw.write_pipeline(
        "node",
        &fixture_recipe(),
        BOTH,
        r#"["fixture-node", "--version"]"#,
        "",
    );
    let habd = Habd::start_config(bw.load()).await;
    habd.sync_node().await;

    // habd made its key at first start, readable by it alone, in a form
    // OpenSSL reads; the API and `habctl key` give its public half.
    let key_file = bw.world.path("state/habd-signing.key");
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{}", key_file.display());
    }
    let (s, k) = call(habd.api(reqwest::Method::GET, "/key")).await;
    assert_eq!(s, 200, "{k}");
    let pem = k["pem"].as_str().unwrap().to_string();
    let openssl_pub = run(Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(&key_file));
    assert_eq!(
        openssl_pub, pem,
        "OpenSSL reads habd's private key as the same key"
    );
    let out = habctl_at(&habd.url, &["key"]);
    let printed = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{printed}");
    assert!(printed.starts_with(&pem), "{printed}");
    assert!(
        printed.contains(k["openssh"].as_str().unwrap()),
        "{printed}"
    );
    assert!(
        printed.lines().any(|l| l.starts_with("ssh-ed25519 AAAA")),
        "{printed}"
    );
    let habd_pub = bw.world.path("habd.pub");
    std::fs::write(&habd_pub, &pem).unwrap();

    // A build of both platforms: VERIFIED with its provenance attached.
    let id = build(&habd, "node", "v1.0.0").await;
    let (_, b) = call(habd.api(reqwest::Method::GET, &format!("/builds/{id}"))).await;
    let index = b["index_digest"].as_str().unwrap().to_string();
    let (_, logs) = call(habd.api(reqwest::Method::GET, &format!("/builds/{id}/logs"))).await;
    assert!(
        logs.to_string().contains("signed provenance attached"),
        "{logs}"
    );
    let host = registry.host();
    let repo = format!("{host}/hab/node");

    // skopeo finds the attestation by the fallback tag, and it names the index.
    let tag = format!("sha256-{}", index.strip_prefix("sha256:").unwrap());
    let fallback = json(&skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{repo}:{tag}"),
    ]));
    let listed = fallback["manifests"].as_array().unwrap();
    assert_eq!(listed.len(), 1, "{fallback}");
    assert_eq!(listed[0]["artifactType"], "application/vnd.in-toto+json");
    let att = listed[0]["digest"].as_str().unwrap().to_string();
    // The store records it; `habctl show` and the chain of custody say so.
    assert_eq!(b["attestation"], att.as_str(), "{b}");
    let out = habctl_at(&habd.url, &["show", &id.to_string()]);
    let shown = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(shown.contains(&format!("attested  {att}")), "{shown}");
    let page = client()
        .get(format!("{}/builds/{id}", habd.url))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("Signed provenance")
            && page.contains(&format!(
                "habctl verify --offline --key habd.pub --keyring keys/ {repo}@{index}"
            )),
        "{page}"
    );
    let manifest = json(&skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{repo}@{att}"),
    ]));
    assert_eq!(manifest["subject"]["digest"], index.as_str(), "{manifest}");
    assert_eq!(
        manifest["layers"][0]["mediaType"],
        "application/vnd.dsse.envelope.v1+json"
    );
    // The registry the chart ships offers no referrers API.
    let referrers = client()
        .get(format!("{}/v2/hab/node/referrers/{index}", registry.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(referrers.status(), 404);
    // The envelope, read raw from the registry.
    let layer = manifest["layers"][0]["digest"].as_str().unwrap();
    let envelope = client()
        .get(format!("{}/v2/hab/node/blobs/{layer}", registry.url()))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .to_vec();
    assert_eq!(digest(&envelope), layer);
    let envelope_file = bw.world.path("envelope.json");
    std::fs::write(&envelope_file, &envelope).unwrap();

    // in-toto and securesystemslib verify the DSSE envelope with habd's key.
    let checked = json(&run(Command::new("/opt/hab-intoto/bin/python")
        .arg(repo_root().join("tests/provenance/check_dsse.py"))
        .arg(&envelope_file)
        .arg(&habd_pub)));
    assert_eq!(checked["keyid"], k["keyid"], "{checked}");
    assert_eq!(checked["type"], "https://in-toto.io/Statement/v1");
    assert_eq!(checked["predicateType"], "https://slsa.dev/provenance/v1");
    let index_json = json(&skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{repo}@{index}"),
    ]));
    let platform_manifests: Vec<&str> = index_json["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["digest"].as_str().unwrap())
        .collect();
    assert_eq!(platform_manifests.len(), 2, "{index_json}");
    let subjects: Vec<&str> = checked["subjects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert_eq!(subjects[0], index);
    for m in &platform_manifests {
        assert!(subjects.contains(m), "{m} not a subject: {subjects:?}");
    }
    assert_eq!(checked["commit"], bw.commit.as_str());
    // …and refuse it with one byte of its payload changed.
    let mut forged: Value = serde_json::from_slice(&envelope).unwrap();
    let mut payload = B64.decode(forged["payload"].as_str().unwrap()).unwrap();
    let at = payload.len() / 2;
    payload[at] ^= 0x01;
    forged["payload"] = B64.encode(&payload).into();
    let forged_file = bw.world.path("forged.json");
    std::fs::write(&forged_file, serde_json::to_vec(&forged).unwrap()).unwrap();
    let refused = Command::new("/opt/hab-intoto/bin/python")
        .arg(repo_root().join("tests/provenance/check_dsse.py"))
        .arg(&forged_file)
        .arg(&habd_pub)
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("does not verify"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );

    // GnuPG verifies the embedded tag object against the maintainer's key.
    let raw_tag = B64.decode(checked["tag"].as_str().unwrap()).unwrap();
    let text = String::from_utf8(raw_tag.clone()).unwrap();
    assert!(text.contains(&format!("object {}\n", bw.commit)), "{text}");
    assert!(text.contains("\ntag v1.0.0\n"), "{text}");
    let cut = text.rfind("-----BEGIN PGP SIGNATURE-----").unwrap();
    let dir = bw.world.path("gpgv");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("payload"), &text[..cut]).unwrap();
    std::fs::write(dir.join("payload.asc"), &text[cut..]).unwrap();
    let exported = bw
        .world
        .gpg
        .cmd(None)
        .args(["--export", &bw.fpr])
        .output()
        .unwrap();
    assert!(!exported.stdout.is_empty());
    std::fs::write(dir.join("maintainer.gpg"), &exported.stdout).unwrap();
    let gpgv = Command::new("gpgv")
        .current_dir(&dir)
        .args(["--keyring", "./maintainer.gpg", "payload.asc", "payload"])
        .output()
        .unwrap();
    assert!(
        gpgv.status.success(),
        "gpgv: {}",
        String::from_utf8_lossy(&gpgv.stderr)
    );
    assert!(String::from_utf8_lossy(&gpgv.stderr).contains("Good signature"));
    // The git object id the statement records is the object's.
    let oid = bw.world.upstream.git(&["rev-parse", "refs/tags/v1.0.0"]);
    assert_eq!(checked["gitTag"], oid.trim());

    // An OCI layout copied off the registry: the index with every
    // platform, and the attestation manifest by its digest.
    let layout = bw.world.path("layout");
    skopeo(&[
        "copy",
        "--all",
        "--quiet",
        "--src-tls-verify=false",
        &format!("docker://{repo}@{index}"),
        &format!("oci:{}:v1.0.0", layout.display()),
    ]);
    skopeo(&[
        "copy",
        "--quiet",
        "--src-tls-verify=false",
        &format!("docker://{repo}@{att}"),
        &format!("oci:{}:attestation", layout.display()),
    ]);
    assert!(
        blob_path(&layout, &index).is_file(),
        "skopeo kept the index's bytes"
    );
    assert!(
        blob_path(&layout, &att).is_file(),
        "skopeo kept the attestation's bytes"
    );

    // habctl verify --offline, with no habd running: from the registry…
    habd.stop().await;
    let keys = bw.world.path("keys");
    let (ok, out) = verify_offline(&habd_pub, &keys, None, &format!("{repo}@{index}"));
    assert!(ok, "{out}");
    assert!(out.contains(&format!("VERIFIED {repo}@{index}")), "{out}");
    assert!(out.contains(&bw.commit), "{out}");
    assert!(out.contains("2 platform manifests"), "{out}");
    // …and, the registry gone, from the layout; also with habd's key as
    // its OpenSSH line.
    registry.kill9();
    let target = format!("hab/node@{index}");
    let (ok, out) = verify_offline(&habd_pub, &keys, Some(&layout), &target);
    assert!(ok, "{out}");
    let ssh_pub = bw.world.path("habd.ssh.pub");
    std::fs::write(&ssh_pub, k["openssh"].as_str().unwrap()).unwrap();
    let (ok, out) = verify_offline(&ssh_pub, &keys, Some(&layout), &target);
    assert!(ok, "{out}");

    // Another key, or another maintainer keyring: refused, naming which.
    let (other, _) = SigningKey::load_or_create(&bw.world.path("other.key")).unwrap();
    let other_pub = bw.world.path("other.pub");
    std::fs::write(&other_pub, other.public().pem()).unwrap();
    let (ok, out) = verify_offline(&other_pub, &keys, Some(&layout), &target);
    assert!(
        !ok && out.contains("no signature in the envelope verifies"),
        "{out}"
    );
    let stranger = bw.world.gpg.gen_key("stranger", T2020_01_01);
    let strangers = bw.world.path("strangers.asc");
    std::fs::write(&strangers, bw.world.gpg.export(&stranger)).unwrap();
    let (ok, out) = verify_offline(&habd_pub, &strangers, Some(&layout), &target);
    assert!(
        !ok && out.contains("does not verify against the maintainers' keyring"),
        "{out}"
    );

    // One byte of the index changed.
    let t = bw.world.path("t-index");
    run(Command::new("cp").arg("-a").arg(&layout).arg(&t));
    let mut bytes = std::fs::read(blob_path(&t, &index)).unwrap();
    let at = bytes.len() - 3;
    bytes[at] ^= 0x01;
    std::fs::write(blob_path(&t, &index), &bytes).unwrap();
    let (ok, out) = verify_offline(&habd_pub, &keys, Some(&t), &target);
    assert!(!ok && out.contains("the index was altered"), "{out}");

    // One byte of the envelope changed, in place.
    let t = bw.world.path("t-envelope");
    run(Command::new("cp").arg("-a").arg(&layout).arg(&t));
    let mut bytes = std::fs::read(blob_path(&t, layer)).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x01;
    std::fs::write(blob_path(&t, layer), &bytes).unwrap();
    let (ok, out) = verify_offline(&habd_pub, &keys, Some(&t), &target);
    assert!(
        !ok && out.contains("the attestation envelope was altered"),
        "{out}"
    );

    // One byte of the statement changed and every digest fixed up: the
    // signature no longer holds.
    let t = bw.world.path("t-payload");
    rewrite_envelope(&layout, &t, &att, |env| {
        let mut e: Value = serde_json::from_slice(&env).unwrap();
        let mut payload = B64.decode(e["payload"].as_str().unwrap()).unwrap();
        let at = payload.len() / 3;
        payload[at] ^= 0x01;
        e["payload"] = B64.encode(&payload).into();
        serde_json::to_vec(&e).unwrap()
    });
    let (ok, out) = verify_offline(&habd_pub, &keys, Some(&t), &target);
    assert!(
        !ok && out.contains("DSSE envelope: no signature in the envelope verifies"),
        "{out}"
    );

    // An attacker holding habd's key changes one byte of the tag object…
    let (stolen, _) = SigningKey::load_or_create(&key_file).unwrap();
    let t = bw.world.path("t-tag");
    rewrite_envelope(&layout, &t, &att, |env| {
        resign(&env, &stolen, |s| {
            let dep = tag_dep(s);
            let raw = B64.decode(dep["content"].as_str().unwrap()).unwrap();
            dep["content"] = B64.encode(flip_tag_message(&raw)).into();
        })
    });
    let (ok, out) = verify_offline(&habd_pub, &keys, Some(&t), &target);
    assert!(
        !ok && out.contains("the embedded tag object was altered"),
        "{out}"
    );
    // …and its recorded object id too: the maintainer's signature fails.
    let t = bw.world.path("t-tag-id");
    rewrite_envelope(&layout, &t, &att, |env| {
        resign(&env, &stolen, |s| {
            let dep = tag_dep(s);
            let raw = flip_tag_message(&B64.decode(dep["content"].as_str().unwrap()).unwrap());
            let id = git2::Oid::hash_object(git2::ObjectType::Tag, &raw).unwrap();
            dep["content"] = B64.encode(&raw).into();
            dep["digest"]["gitTag"] = id.to_string().into();
        })
    });
    let (ok, out) = verify_offline(&habd_pub, &keys, Some(&t), &target);
    assert!(
        !ok && out.contains("does not verify against the maintainers' keyring"),
        "{out}"
    );
    // …or records another commit than the one the tag names.
    let t = bw.world.path("t-commit");
    let other_commit = "0123456789abcdef0123456789abcdef01234567";
    rewrite_envelope(&layout, &t, &att, |env| {
        resign(&env, &stolen, |s| {
            for d in s["predicate"]["buildDefinition"]["resolvedDependencies"]
                .as_array_mut()
                .unwrap()
            {
                if d["name"] == "source" {
                    d["digest"]["gitCommit"] = other_commit.into();
                }
            }
        })
    });
    let (ok, out) = verify_offline(&habd_pub, &keys, Some(&t), &target);
    assert!(
        !ok && out.contains(&format!(
            "the signed tag names commit {}, but the provenance records {other_commit}",
            bw.commit
        )),
        "{out}"
    );
    // …or drops the attestation: nothing vouches for the index.
    let t = bw.world.path("t-none");
    run(Command::new("cp").arg("-a").arg(&layout).arg(&t));
    std::fs::remove_file(blob_path(&t, &att)).unwrap();
    let (ok, out) = verify_offline(&habd_pub, &keys, Some(&t), &target);
    assert!(!ok && out.contains("no attestation of"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_made_by_openssl_can_be_supplied_and_one_open_to_others_is_refused() {
    let world = World::new();
    let key = world.path("supplied.key");
    run(Command::new("openssl")
        .args(["genpkey", "-algorithm", "ed25519", "-out"])
        .arg(&key));
    let chmod = |mode: u32| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    chmod(0o600);
    std::fs::write(
        world.path("hab.toml"),
        "state_dir = \"state\"\nsigning_key_file = \"supplied.key\"\n",
    )
    .unwrap();
    let load = || {
        hab::config::Config::load(
            Some(&world.path("hab.toml")),
            &hab::config::Overrides::default(),
        )
        .unwrap()
    };
    let habd = Habd::start_config(load()).await;
    let (s, k) = call(habd.api(reqwest::Method::GET, "/key")).await;
    assert_eq!(s, 200, "{k}");
    let openssl_pub = run(Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(&key));
    assert_eq!(k["pem"], openssl_pub.as_str());
    assert!(
        !world.path("state/habd-signing.key").exists(),
        "a supplied key is used, none made"
    );
    habd.stop().await;

    // Readable by others: habd does not start, and says how to fix it.
    chmod(0o644);
    let config = load();
    let store = hab::store::Store::open(&world.path("state/hab.sqlite3")).unwrap();
    let Err(e) = hab::server::AppState::new(std::sync::Arc::new(config), store, vec![TOKEN.into()])
    else {
        panic!("habd started with a key others can read");
    };
    let e = e.to_string();
    assert!(e.contains("supplied.key") && e.contains("chmod 600"), "{e}");
}
