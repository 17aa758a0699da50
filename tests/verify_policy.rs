//! The signature policy of `hab::signature`, one OpenPGP case per test, with
//! keys and signatures GnuPG makes here (at faked times) and, where GnuPG
//! cannot make the case, a GnuPG-made key edited with rpgp.
//!
//! What each case checks is in the module documentation of `src/signature/`;
//! the shipped upstream keys (`keys/`) are checked by its unit tests, which
//! look at the binding in force and its expiry directly.

mod common;

use std::{
    io::Write,
    process::{Command, Stdio},
};

use chrono::{DateTime, Utc};
use common::{run, Gpg, T2020_01_01, T2020_02_01, T2020_03_01};
use hab::signature::{Keyring, Verdict};
use pgp::{
    composed::{ArmorOptions, Deserializable, SignedPublicKey},
    packet::{Signature, SignatureType, Subpacket, SubpacketData},
};
use tempfile::TempDir;

/// What every test signs (stands for a tag object's text).
const DATA: &[u8] =
    b"object 0123456789abcdef0123456789abcdef01234567\ntype commit\ntag v1.0.0\n\nRelease v1.0.0\n";

const T2012_06_01: &str = "20120601T000000";
const T2012_07_01: &str = "20120701T000000";
const T2013_01_15: &str = "20130115T000000";
const T2013_03_01: &str = "20130301T000000";
const T2020_01_15: &str = "20200115T000000";
const T2020_02_15: &str = "20200215T000000";
const T2020_04_01: &str = "20200401T000000";
const T2022_06_01: &str = "20220601T000000";
const T2022_07_01: &str = "20220701T000000";
const T2023_06_01: &str = "20230601T000000";
const T2023_07_01: &str = "20230701T000000";

fn utc(rfc3339: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(rfc3339).unwrap().into()
}

/// A GnuPG home of its own, with the commands `common::Gpg` does not offer.
struct Lab {
    gpg: Gpg,
    tmp: TempDir,
}

impl Lab {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let gpg = Gpg::new(tmp.path());
        Lab { gpg, tmp }
    }

    /// gpg on the lab's home (`common::Gpg::cmd`).
    fn cmd(&self, at: Option<&str>) -> Command {
        self.gpg.cmd(at)
    }

    /// A key (with an encryption subkey) that signed `DATA` on 2020-02-01
    /// and 2020-04-01 and was revoked on 2020-03-01 (GnuPG's reason menu
    /// item `menu`, with `text`): its fingerprint, both signatures, and the
    /// key as exported with the revocation in place and misplaced after the
    /// user ID and after the subkey. GnuPG exports the revocation right
    /// after the primary key; the misplaced copies are where a verifier
    /// reading only rpgp's `revocation_signatures` misses it (see
    /// `misplace_revocation`).
    fn revoked(
        &self,
        name: &str,
        menu: &str,
        text: &str,
    ) -> (String, String, String, [(&'static str, String); 3]) {
        let fpr = self.gpg.gen_key(name, T2020_01_01);
        run(self.cmd(Some(T2020_01_01)).args([
            "--quick-add-key",
            &fpr,
            "cv25519",
            "encr",
            "never",
        ]));
        let before = self.gpg.sign(&fpr, DATA, T2020_02_01);
        let after = self.gpg.sign(&fpr, DATA, T2020_04_01);
        self.revoke_key(&fpr, T2020_03_01, menu, text);
        let key = self.gpg.export(&fpr);
        let keys = [
            ("in place", key.clone()),
            (
                "after the user ID",
                misplace_revocation(&key, Misplaced::AfterUserId),
            ),
            (
                "after the subkey",
                misplace_revocation(&key, Misplaced::AfterSubkey),
            ),
        ];
        (fpr, before, after, keys)
    }

    /// Fingerprints of the key with this e-mail address: primary first, then
    /// its subkeys in order.
    fn fingerprints(&self, email: &str) -> Vec<String> {
        let out = run(self.cmd(None).args(["--list-keys", "--with-colons", email]));
        out.lines()
            .filter(|l| l.starts_with("fpr:"))
            .filter_map(|l| l.split(':').nth(9))
            .map(str::to_string)
            .collect()
    }

    /// An RSA-2048 signing key made at `at` (the weak-hash cases need RSA:
    /// EdDSA signatures need a hash of at least 256 bits).
    fn gen_rsa(&self, name: &str, at: &str, extra: &[&str]) -> String {
        run(self.cmd(Some(at)).args(extra).args([
            "--quick-gen-key",
            &format!("{name} <{name}@example.org>"),
            "rsa2048",
            "sign",
            "never",
        ]));
        self.fingerprints(&format!("{name}@example.org"))[0].clone()
    }

    /// Adds an ed25519 signing subkey to `fpr`, made at `at`; returns its fingerprint.
    fn add_signing_subkey(&self, name: &str, fpr: &str, at: &str) -> String {
        run(self
            .cmd(Some(at))
            .args(["--quick-add-key", fpr, "ed25519", "sign", "never"]));
        self.fingerprints(&format!("{name}@example.org"))
            .last()
            .unwrap()
            .clone()
    }

    /// An armored detached signature over `data` by `signer` (a fingerprint;
    /// `FPR!` for that very subkey), dated `at`, with extra gpg options.
    fn sign(&self, signer: &str, data: &[u8], at: &str, extra: &[&str]) -> String {
        self.gpg.sign_with(signer, data, at, extra)
    }

    /// Revokes the key by a revocation certificate dated `at`, made the way a
    /// person does (`gpg --gen-revoke`, answering its questions: `menu` is the
    /// number GnuPG's reason menu shows, `text` the description), then
    /// imports it. `--gen-revoke` refuses `--batch`, so it reads the answers
    /// from the command fd.
    fn revoke_key(&self, fpr: &str, at: &str, menu: &str, text: &str) {
        let cert = self.tmp.path().join(format!("{fpr}.rev.asc"));
        let mut child = Command::new("gpg")
            .env("GNUPGHOME", &self.gpg.home)
            .args(["--yes", "--no-tty", "--pinentry-mode", "loopback"])
            .args(["--passphrase", "", "--command-fd", "0", "--armor"])
            .arg("--faked-system-time")
            .arg(format!("{at}!"))
            .arg("--output")
            .arg(&cert)
            .args(["--gen-revoke", fpr])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Create it? / reason / description lines ended by an empty line / okay?
        let description = if text.is_empty() {
            String::new()
        } else {
            format!("{text}\n")
        };
        let answers = format!("y\n{menu}\n{description}\ny\n");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(answers.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success() && cert.exists(),
            "gpg --gen-revoke failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        run(self.cmd(None).arg("--import").arg(&cert));
    }

    /// `gpg --list-packets` of an armored key.
    fn packets(&self, armored: &str) -> String {
        let file = self.tmp.path().join("packets.asc");
        std::fs::write(&file, armored).unwrap();
        run(self.cmd(None).arg("--list-packets").arg(&file))
    }

    /// A keyring holding just this armored key, loaded from a file.
    fn keyring(&self, name: &str, armored: &str) -> Keyring {
        let file = self.tmp.path().join(format!("{name}.asc"));
        std::fs::write(&file, armored).unwrap();
        Keyring::load(&file).unwrap()
    }
}

/// Where to move a key revocation to, away from its place after the primary key.
#[derive(Debug, Clone, Copy)]
enum Misplaced {
    /// After the user ID's certification (rpgp drops it there).
    AfterUserId,
    /// After the subkey's binding (rpgp files it under the subkey).
    AfterSubkey,
}

/// The key with its key revocation(s) moved to `place`. GnuPG still honours
/// such a revocation: its import reports "1 signature reordered" and lists
/// the key as revoked.
fn misplace_revocation(armored: &str, place: Misplaced) -> String {
    let (mut key, _) = SignedPublicKey::from_armor_single(armored.as_bytes()).unwrap();
    let revocations = std::mem::take(&mut key.details.revocation_signatures);
    assert!(!revocations.is_empty(), "no key revocation to move");
    match place {
        Misplaced::AfterUserId => key.details.users[0].signatures.extend(revocations),
        Misplaced::AfterSubkey => key.public_subkeys[0].signatures.extend(revocations),
    }
    key.to_armored_string(ArmorOptions::default()).unwrap()
}

/// Position of the embedded signature (the back-signature) in a binding's
/// unhashed area, where GnuPG puts it.
fn unhashed_back_signature(binding: &Signature) -> Option<usize> {
    binding
        .config()?
        .unhashed_subpackets()
        .position(|p| matches!(p.data, SubpacketData::EmbeddedSignature(_)))
}

/// The key with its first subkey's binding signature edited by `edit`.
fn edit_subkey_binding(armored: &str, edit: impl FnOnce(&mut Signature)) -> String {
    let (mut key, _) = SignedPublicKey::from_armor_single(armored.as_bytes()).unwrap();
    let binding = key.public_subkeys[0]
        .signatures
        .iter_mut()
        .find(|s| s.typ() == Some(SignatureType::SubkeyBinding))
        .unwrap();
    edit(binding);
    key.to_armored_string(ArmorOptions::default()).unwrap()
}

#[test]
fn a_user_id_revocation_is_not_a_binding() {
    let lab = Lab::new();
    let fpr = lab.gpg.gen_key("release", T2020_01_01);
    let second = "second <second@example.org>";
    run(lab
        .cmd(Some(T2020_01_01))
        .args(["--quick-add-uid", &fpr, second]));
    // Signed while GnuPG saw no expiry.
    let early = lab.gpg.sign(&fpr, DATA, T2020_01_15);
    let late = lab.gpg.sign(&fpr, DATA, T2020_04_01);
    // 2020-02-01: both user IDs certified again, the key now expiring
    // 2020-03-01. 2020-02-15: the second user ID revoked. That revocation
    // (0x30) carries no key expiry; taken for a binding, it is the newest
    // self-signature before the late signature and says the key never
    // expires, so the late signature would pass.
    lab.gpg.set_expiry(&fpr, T2020_02_01, "2020-03-01");
    run(lab
        .cmd(Some(T2020_02_15))
        .args(["--quick-revoke-uid", &fpr, second]));
    let key = lab.gpg.export(&fpr);
    assert!(lab.packets(&key).contains("sigclass 0x30"), "no 0x30 made");
    let ring = lab.keyring("release", &key);

    let v = ring.verify_detached(DATA, early.as_bytes());
    assert!(v.is_verified(), "{v}");
    match ring.verify_detached(DATA, late.as_bytes()) {
        Verdict::KeyExpired {
            fingerprint,
            expired_at,
            signed_at,
        } => {
            assert_eq!(fingerprint, fpr);
            assert_eq!(expired_at.date_naive().to_string(), "2020-03-01");
            assert_eq!(signed_at, utc("2020-04-01T00:00:00Z"));
        }
        v => panic!("expected key_expired, got {v}"),
    }
}

#[test]
fn a_soft_key_revocation_refuses_only_signatures_made_after_it() {
    let lab = Lab::new();
    // GnuPG's reason menu: 2 "Key is superseded" (code 1), 3 "Key is no
    // longer used" (code 3).
    for (menu, name, reason) in [
        ("2", "superseded", "superseded"),
        ("3", "retired", "retired"),
    ] {
        let (fpr, before, after, keys) = lab.revoked(name, menu, "moved to a new key");
        for (placed, key) in keys {
            let ring = lab.keyring(name, &key);
            let v = ring.verify_detached(DATA, before.as_bytes());
            assert!(v.is_verified(), "{name}, revocation {placed}: {v}");
            match ring.verify_detached(DATA, after.as_bytes()) {
                Verdict::KeyRevoked {
                    fingerprint,
                    revoked_at,
                    reason: given,
                    ..
                } => {
                    assert_eq!(fingerprint, fpr);
                    assert_eq!(revoked_at, utc("2020-03-01T00:00:00Z"));
                    assert_eq!(given, format!("{reason}: moved to a new key"));
                }
                v => panic!("{name}, revocation {placed}: expected key_revoked, got {v}"),
            }
        }
    }
}

#[test]
fn a_hard_key_revocation_refuses_every_signature() {
    let lab = Lab::new();
    // GnuPG's reason menu: 0 "No reason specified" (code 0), 1 "Key has
    // been compromised" (code 2).
    for (menu, name, reason) in [
        ("0", "noreason", "no reason given"),
        ("1", "stolen", "compromised"),
    ] {
        let (fpr, before, after, keys) = lab.revoked(name, menu, "");
        for (placed, key) in keys {
            let ring = lab.keyring(name, &key);
            for sig in [&before, &after] {
                match ring.verify_detached(DATA, sig.as_bytes()) {
                    Verdict::KeyRevoked {
                        fingerprint,
                        revoked_at,
                        reason: given,
                        ..
                    } => {
                        assert_eq!(fingerprint, fpr);
                        assert_eq!(revoked_at, utc("2020-03-01T00:00:00Z"));
                        assert_eq!(given, reason);
                    }
                    v => panic!("{name}, revocation {placed}: expected key_revoked, got {v}"),
                }
            }
        }
    }
}

#[test]
fn sha1_data_signatures_are_refused_from_2013_02_01() {
    let lab = Lab::new();
    let fpr = lab.gen_rsa("sha1", T2012_06_01, &[]);
    let sha1 = ["--digest-algo", "SHA1"];
    let before = lab.sign(&fpr, DATA, T2013_01_15, &sha1);
    let after = lab.sign(&fpr, DATA, T2013_03_01, &sha1);
    let sha256 = lab.sign(&fpr, DATA, T2013_03_01, &["--digest-algo", "SHA256"]);
    let ring = lab.keyring("sha1", &lab.gpg.export(&fpr));

    for sig in [&before, &sha256] {
        let v = ring.verify_detached(DATA, sig.as_bytes());
        assert!(v.is_verified(), "{v}");
    }
    let v = ring.verify_detached(DATA, after.as_bytes());
    assert_eq!(
        v,
        Verdict::WeakHash {
            fingerprint: fpr,
            hash: "SHA1".into(),
            signed_at: utc("2013-03-01T00:00:00Z"),
            cutoff: Some(utc("2013-02-01T00:00:00Z")),
        }
    );
    assert_eq!(v.kind(), "weak_hash");
}

#[test]
fn md5_and_ripemd160_data_signatures_are_always_refused() {
    // GnuPG 2.2 still makes MD5 signatures when told --allow-weak-digest-algos
    // (it only warns), so no signature needs making with rpgp. Both are dated
    // 2012, before any SHA-1 cutoff: the hash alone refuses them.
    let lab = Lab::new();
    let fpr = lab.gen_rsa("weak", T2012_06_01, &[]);
    let ring = {
        let sha256 = lab.sign(&fpr, DATA, T2012_07_01, &["--digest-algo", "SHA256"]);
        let ring = lab.keyring("weak", &lab.gpg.export(&fpr));
        let v = ring.verify_detached(DATA, sha256.as_bytes());
        assert!(v.is_verified(), "{v}");
        ring
    };
    for hash in ["MD5", "RIPEMD160"] {
        let sig = lab.sign(
            &fpr,
            DATA,
            T2012_07_01,
            &["--digest-algo", hash, "--allow-weak-digest-algos"],
        );
        assert_eq!(
            ring.verify_detached(DATA, sig.as_bytes()),
            Verdict::WeakHash {
                fingerprint: fpr.clone(),
                hash: hash.into(),
                signed_at: utc("2012-07-01T00:00:00Z"),
                cutoff: None,
            }
        );
    }
}

#[test]
fn sha1_self_signatures_count_only_when_made_before_2023_02_01() {
    // GnuPG makes SHA-1 self-signatures when told (--cert-digest-algo SHA1)
    // and accepts them; Sequoia's standard policy stops accepting them from
    // 2023-02-01. The data signatures themselves are SHA-256.
    let lab = Lab::new();
    let sha1_certs = ["--cert-digest-algo", "SHA1"];
    let old = lab.gen_rsa("old", T2022_06_01, &sha1_certs);
    let new = lab.gen_rsa("new", T2023_06_01, &sha1_certs);
    assert!(lab
        .packets(&lab.gpg.export(&new))
        .contains("digest algo 2,"));
    let by_old = lab.sign(&old, DATA, T2022_07_01, &[]);
    let by_new = lab.sign(&new, DATA, T2023_07_01, &[]);

    let v = lab
        .keyring("old", &lab.gpg.export(&old))
        .verify_detached(DATA, by_old.as_bytes());
    assert!(v.is_verified(), "{v}");
    match lab
        .keyring("new", &lab.gpg.export(&new))
        .verify_detached(DATA, by_new.as_bytes())
    {
        Verdict::NoBinding {
            fingerprint,
            reason,
        } => {
            assert_eq!(fingerprint, new);
            assert!(
                reason.contains("SHA1 self-signature made 2023-06-01"),
                "{reason}"
            );
        }
        v => panic!("expected no_binding, got {v}"),
    }
}

#[test]
fn a_signature_past_its_own_expiry_is_refused() {
    let lab = Lab::new();
    let fpr = lab.gpg.gen_key("expiring", T2020_01_01);
    // Made 2020-02-01, valid for 10 days.
    let sig = lab.sign(&fpr, DATA, T2020_02_01, &["--default-sig-expire", "10d"]);
    let ring = lab.keyring("expiring", &lab.gpg.export(&fpr));

    let v = ring.verify_detached_at(DATA, sig.as_bytes(), utc("2020-02-05T00:00:00Z"));
    assert!(v.is_verified(), "{v}");
    let expired = Verdict::SignatureExpired {
        fingerprint: fpr,
        signed_at: utc("2020-02-01T00:00:00Z"),
        expired_at: utc("2020-02-11T00:00:00Z"),
    };
    assert_eq!(
        ring.verify_detached_at(DATA, sig.as_bytes(), utc("2020-02-11T00:00:00Z")),
        expired
    );
    // Checked today, through the API the mirror uses.
    assert_eq!(ring.verify_detached(DATA, sig.as_bytes()), expired);
    assert_eq!(expired.kind(), "signature_expired");
}

#[test]
fn a_signing_subkey_needs_its_back_signature() {
    let lab = Lab::new();
    let fpr = lab.gpg.gen_key("primary", T2020_01_01);
    let sub = lab.add_signing_subkey("primary", &fpr, T2020_01_01);
    let sig = lab.sign(&format!("{sub}!"), DATA, T2020_02_01, &[]);
    let key = lab.gpg.export(&fpr);

    // As GnuPG made it: the binding carries the back-signature.
    assert_eq!(
        lab.keyring("complete", &key)
            .verify_detached(DATA, sig.as_bytes()),
        Verdict::Verified {
            fingerprint: sub.clone(),
            primary_fingerprint: fpr.clone(),
            signed_at: utc("2020-02-01T00:00:00Z"),
        }
    );

    // GnuPG puts the back-signature in the binding's unhashed area, so it
    // can be taken out without breaking the binding itself.
    let stripped = edit_subkey_binding(&key, |binding| {
        let at = unhashed_back_signature(binding).expect("GnuPG's back-signature");
        binding.unhashed_subpacket_remove(at).unwrap();
    });
    let no_back_signature = Verdict::NoBackSignature {
        fingerprint: sub.clone(),
    };
    assert_eq!(
        lab.keyring("stripped", &stripped)
            .verify_detached(DATA, sig.as_bytes()),
        no_back_signature
    );

    // A back-signature made by another subkey, for another primary key,
    // does not count either.
    let other = lab.gpg.gen_key("other", T2020_01_01);
    lab.add_signing_subkey("other", &other, T2020_01_01);
    let foreign: Subpacket = {
        let (other_key, _) =
            SignedPublicKey::from_armor_single(lab.gpg.export(&other).as_bytes()).unwrap();
        let binding = &other_key.public_subkeys[0].signatures[0];
        let at = unhashed_back_signature(binding).unwrap();
        let subpacket = binding
            .config()
            .unwrap()
            .unhashed_subpackets()
            .nth(at)
            .cloned();
        subpacket.unwrap()
    };
    let swapped = edit_subkey_binding(&key, |binding| {
        let at = unhashed_back_signature(binding).unwrap();
        binding.unhashed_subpacket_remove(at).unwrap();
        binding.unhashed_subpacket_push(foreign).unwrap();
    });
    assert_eq!(
        lab.keyring("swapped", &swapped)
            .verify_detached(DATA, sig.as_bytes()),
        no_back_signature
    );
    assert_eq!(no_back_signature.kind(), "no_back_signature");
}
