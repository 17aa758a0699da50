//! A pinned key with its self-signatures checked once, at load: which
//! bindings and revocations count, and whether a key or subkey was valid at
//! a given time.

use chrono::{DateTime, TimeZone, Utc};
use pgp::{
    composed::SignedPublicKey,
    crypto::hash::HashAlgorithm,
    packet::{PublicKey, PublicSubkey, RevocationCode, Signature, SignatureType, SubpacketData},
    types::{KeyDetails, Tag},
};

use super::policy::{created, refused_hash, HashUse};

/// One self-signature that binds a key (or subkey) and may set its expiry.
#[derive(Debug, Clone)]
pub(super) struct Binding {
    pub(super) created: u32,
    /// Seconds after key creation at which the key expires (None: never).
    pub(super) expires_after: Option<u32>,
    pub(super) can_sign: bool,
}

#[derive(Debug, Clone)]
pub(super) struct Revocation {
    pub(super) created: u32,
    pub(super) hard: bool,
    pub(super) reason: String,
}

/// Why a key or subkey has no binding at all.
#[derive(Debug, Clone)]
pub(super) enum Unbound {
    /// Its only signing bindings lack a valid back-signature.
    NoBackSignature,
    /// Anything else, said in words.
    Reason(String),
}

/// What was set aside while collecting a component's self-signatures, to
/// explain an empty binding list.
#[derive(Debug, Default)]
pub(super) struct SetAside {
    pub(super) weak_hash: Option<String>,
    pub(super) revoked_user_id: bool,
    pub(super) no_back_signature: bool,
    pub(super) invalid: bool,
}

impl SetAside {
    pub(super) fn weak(&mut self, sig: &Signature, hash: HashAlgorithm, cutoff: u32) {
        let made = ts(created(sig)).date_naive();
        let why = if cutoff == 0 {
            format!("a {hash} self-signature made {made}: {hash} is never accepted")
        } else {
            format!(
                "a {hash} self-signature made {made}: {hash} self-signatures count only when made before {}",
                ts(cutoff).date_naive()
            )
        };
        self.weak_hash.get_or_insert(why);
    }

    pub(super) fn unbound(&self) -> Unbound {
        if self.no_back_signature {
            return Unbound::NoBackSignature;
        }
        let mut why = Vec::new();
        if let Some(weak) = &self.weak_hash {
            why.push(weak.clone());
        }
        if self.revoked_user_id {
            why.push("its user IDs are revoked and not certified again".to_string());
        }
        if self.invalid {
            why.push("a self-signature does not verify".to_string());
        }
        if why.is_empty() {
            why.push("it carries none".to_string());
        }
        Unbound::Reason(why.join("; "))
    }
}

/// A key or subkey with its checked self-signatures.
#[derive(Debug, Clone)]
pub(super) struct Component {
    pub(super) fingerprint: String,
    pub(super) key_id: String,
    pub(super) created: u32,
    pub(super) bindings: Vec<Binding>,
    pub(super) revocations: Vec<Revocation>,
    /// Why `bindings` is empty, when it is.
    pub(super) unbound: Unbound,
}

/// A pinned key with its subkeys, self-signatures already verified.
#[derive(Debug, Clone)]
pub(super) struct PinnedKey {
    pub(super) key: SignedPublicKey,
    pub(super) primary: Component,
    pub(super) subkeys: Vec<Component>,
}

pub(super) fn hex_upper(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

pub(super) fn ts(secs: u32) -> DateTime<Utc> {
    Utc.timestamp_opt(i64::from(secs), 0)
        .single()
        .unwrap_or_default()
}

pub(super) fn revocation_of(sig: &Signature) -> Revocation {
    let code = sig.revocation_reason_code().copied();
    let hard = !matches!(
        code,
        Some(RevocationCode::KeySuperseded) | Some(RevocationCode::KeyRetired)
    );
    let text = sig
        .revocation_reason_string()
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .unwrap_or_default();
    let code_name = match code {
        Some(RevocationCode::KeySuperseded) => "superseded",
        Some(RevocationCode::KeyCompromised) => "compromised",
        Some(RevocationCode::KeyRetired) => "retired",
        Some(RevocationCode::NoReason) | None => "no reason given",
        Some(_) => "other",
    };
    Revocation {
        created: created(sig),
        hard,
        reason: if text.is_empty() {
            code_name.to_string()
        } else {
            format!("{code_name}: {text}")
        },
    }
}

pub(super) fn binding_of(sig: &Signature, default_can_sign: bool) -> Binding {
    let flags = sig.key_flags();
    // A self-signature without key flags says nothing about usage; RFC 9580 then
    // lets the primary key sign. Subkeys must say so.
    let has_flags = sig.config().is_some_and(|c| {
        c.hashed_subpackets()
            .any(|p| matches!(p.data, SubpacketData::KeyFlags(_)))
    });
    Binding {
        created: created(sig),
        expires_after: sig
            .key_expiration_time()
            .map(|d| d.as_secs())
            .filter(|s| *s > 0),
        can_sign: if has_flags {
            flags.sign()
        } else {
            default_can_sign
        },
    }
}

/// True when a subkey binding carries a valid back-signature: an embedded
/// primary-key binding signature (0x19) made by the subkey over the primary
/// key and the subkey, with a hash acceptable for self-signatures.
pub(super) fn back_signed(binding: &Signature, primary: &PublicKey, subkey: &PublicSubkey) -> bool {
    binding.embedded_signature().is_some_and(|back| {
        back.typ() == Some(SignatureType::KeyBinding)
            && back.verify_primary_key_binding(subkey, primary).is_ok()
            && refused_hash(back, HashUse::SelfSignature).is_none()
    })
}

pub(super) fn issued_by(sig: &Signature, fingerprint: &[u8], key_id: &[u8]) -> bool {
    let by_fpr = sig.issuer_fingerprint();
    let by_id = sig.issuer_key_id();
    if by_fpr.is_empty() && by_id.is_empty() {
        return true; // nothing to filter on: let the cryptographic check decide
    }
    by_fpr.iter().any(|f| f.as_bytes() == fingerprint) || by_id.iter().any(|k| k.as_ref() == key_id)
}

impl PinnedKey {
    /// Checks `key`'s self-signatures. `loose_revocations` are the key
    /// revocations found anywhere in the file it came from (see
    /// [`Keyring::loose_key_revocations`]); those of this key count too.
    pub(super) fn new(key: SignedPublicKey, loose_revocations: &[Signature]) -> Self {
        let pk = &key.primary_key;
        let pfpr = pk.fingerprint();
        let pid = pk.legacy_key_id();
        let own = |s: &&Signature| issued_by(s, pfpr.as_bytes(), pid.as_ref());

        let mut bindings = Vec::new();
        let mut revocations = Vec::new();
        let mut set_aside = SetAside::default();

        // User-ID certifications bind the primary key, less those a user-ID
        // revocation made at or after them withdraws. A revocation is never a
        // binding itself (rpgp's verify_certification accepts one all the same).
        for user in &key.details.users {
            let mut certifications = Vec::new();
            let mut revoked_at: Option<u32> = None;
            for sig in user.signatures.iter().filter(own) {
                let revokes = match sig.typ() {
                    Some(
                        SignatureType::CertGeneric
                        | SignatureType::CertPersona
                        | SignatureType::CertCasual
                        | SignatureType::CertPositive,
                    ) => false,
                    Some(SignatureType::CertRevocation) => true,
                    _ => continue,
                };
                if sig.verify_certification(pk, Tag::UserId, &user.id).is_err() {
                    set_aside.invalid = true;
                } else if revokes {
                    revoked_at = revoked_at.max(Some(created(sig)));
                } else {
                    certifications.push(sig);
                }
            }
            for sig in certifications {
                if revoked_at.is_some_and(|r| r >= created(sig)) {
                    set_aside.revoked_user_id = true;
                } else if let Some((hash, cutoff)) = refused_hash(sig, HashUse::SelfSignature) {
                    set_aside.weak(sig, hash, cutoff);
                } else {
                    bindings.push(binding_of(sig, true));
                }
            }
        }

        // Direct-key signatures and key revocations. rpgp files the ones before
        // the first user ID under `revocation_signatures` (every 0x20) and
        // `direct_signatures` (the rest); one misplaced after a subkey lands in
        // that subkey's list, and one after a user ID is dropped, so the loose
        // revocations of the whole file are looked at too (GnuPG honours a
        // misplaced key revocation, moving it into place on import). Each
        // must verify against this primary key.
        let misplaced = key
            .public_subkeys
            .iter()
            .flat_map(|sub| sub.signatures.iter())
            .filter(|s| {
                matches!(
                    s.typ(),
                    Some(SignatureType::Key | SignatureType::KeyRevocation)
                )
            });
        let mut seen: Vec<&Signature> = Vec::new();
        for sig in key
            .details
            .revocation_signatures
            .iter()
            .chain(&key.details.direct_signatures)
            .chain(misplaced)
            .chain(loose_revocations)
            .filter(own)
        {
            if seen.contains(&sig) {
                continue;
            }
            seen.push(sig);
            let typ = sig.typ();
            if !matches!(typ, Some(SignatureType::Key | SignatureType::KeyRevocation)) {
                continue;
            }
            if sig.verify_key(pk).is_err() {
                set_aside.invalid = true;
            } else if typ == Some(SignatureType::KeyRevocation) {
                revocations.push(revocation_of(sig));
            } else if let Some((hash, cutoff)) = refused_hash(sig, HashUse::SelfSignature) {
                set_aside.weak(sig, hash, cutoff);
            } else {
                bindings.push(binding_of(sig, true));
            }
        }
        let primary = Component {
            fingerprint: hex_upper(pfpr.as_bytes()),
            key_id: hex_upper(pid.as_ref()),
            created: pk.created_at().as_secs(),
            bindings,
            revocations,
            unbound: set_aside.unbound(),
        };

        let subkeys = key
            .public_subkeys
            .iter()
            .map(|sub| {
                let mut bindings = Vec::new();
                let mut revocations = Vec::new();
                let mut set_aside = SetAside::default();
                for sig in sub.signatures.iter().filter(own) {
                    let typ = sig.typ();
                    if !matches!(
                        typ,
                        Some(SignatureType::SubkeyBinding | SignatureType::SubkeyRevocation)
                    ) {
                        continue;
                    }
                    if sig.verify_subkey_binding(pk, &sub.key).is_err() {
                        set_aside.invalid = true;
                        continue;
                    }
                    if typ == Some(SignatureType::SubkeyRevocation) {
                        revocations.push(revocation_of(sig));
                        continue;
                    }
                    if let Some((hash, cutoff)) = refused_hash(sig, HashUse::SelfSignature) {
                        set_aside.weak(sig, hash, cutoff);
                        continue;
                    }
                    let binding = binding_of(sig, false);
                    if binding.can_sign && !back_signed(sig, pk, &sub.key) {
                        // Not a binding at all (Sequoia ignores it; GnuPG
                        // refuses signatures by a subkey not cross-certified),
                        // so an older complete one, if any, stays in force.
                        set_aside.no_back_signature = true;
                        continue;
                    }
                    bindings.push(binding);
                }
                Component {
                    fingerprint: hex_upper(sub.key.fingerprint().as_bytes()),
                    key_id: hex_upper(sub.key.legacy_key_id().as_ref()),
                    created: sub.key.created_at().as_secs(),
                    bindings,
                    revocations,
                    unbound: set_aside.unbound(),
                }
            })
            .collect();
        PinnedKey {
            key,
            primary,
            subkeys,
        }
    }
}

/// Why a component was not valid at a given time.
pub(super) enum Invalid {
    Expired(u32),
    Revoked(Revocation),
    NotYetCreated,
    Unbound(Unbound),
    CannotSign,
}

impl Component {
    /// The self-signature in force at `t`: the newest one made at or before `t`.
    /// When every self-signature is newer than `t` (keys re-exported with only
    /// their latest self-signatures are common), the oldest one stands in.
    pub(super) fn binding_at(&self, t: u32) -> Option<&Binding> {
        self.bindings
            .iter()
            .filter(|b| b.created <= t)
            .max_by_key(|b| b.created)
            .or_else(|| self.bindings.iter().min_by_key(|b| b.created))
    }

    pub(super) fn valid_at(&self, t: u32, need_sign: bool) -> Result<(), Invalid> {
        if t < self.created {
            return Err(Invalid::NotYetCreated);
        }
        if let Some(rev) = self.revocations.iter().find(|r| r.hard || r.created <= t) {
            return Err(Invalid::Revoked(rev.clone()));
        }
        let binding = self
            .binding_at(t)
            .ok_or_else(|| Invalid::Unbound(self.unbound.clone()))?;
        if let Some(after) = binding.expires_after {
            let expires = self.created.saturating_add(after);
            if t >= expires {
                return Err(Invalid::Expired(expires));
            }
        }
        if need_sign && !binding.can_sign {
            return Err(Invalid::CannotSign);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::{super::Keyring, *};

    #[test]
    fn shipped_upstream_keys_parse_with_their_fingerprints() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("keys");
        let cases = [
            ("btcd", "E4D85299674B2D31FAA1892E372CBD7633C61696"),
            ("btcd", "A5B61896952D9FDA83BC054CDC42612E89237182"),
            ("bcoin", "E61773CD6E01040E2F1BD78CE7E2984B6289C93A"),
            ("bitcoind", "E777299FC265DD04793070EB944D35F9AC3DB76A"),
            ("bitcoind", "152812300785C96444D3334D17565732E08E5E41"),
            ("bitcoind", "71A3B16735405025D447E8F274810B012346C9A6"),
        ];
        for (implementation, fpr) in cases {
            let ring = Keyring::load(&dir.join(implementation)).unwrap();
            assert!(
                ring.fingerprints().iter().any(|f| f == fpr),
                "{implementation}: {fpr} not in {:?}",
                ring.fingerprints()
            );
        }
    }

    fn shipped(implementation: &str) -> Keyring {
        Keyring::load(
            &Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("keys")
                .join(implementation),
        )
        .unwrap()
    }

    fn component<'a>(ring: &'a Keyring, fpr: &str) -> &'a Component {
        ring.keys
            .iter()
            .flat_map(|k| std::iter::once(&k.primary).chain(k.subkeys.iter()))
            .find(|c| c.fingerprint == fpr)
            .unwrap_or_else(|| panic!("{fpr} missing"))
    }

    fn secs(y: i32, m: u32, d: u32) -> u32 {
        u32::try_from(Utc.with_ymd_and_hms(y, m, d, 0, 0, 0).unwrap().timestamp()).unwrap()
    }

    /// When the self-signature in force at `t` says the key expires (None: never).
    fn expiry_at(c: &Component, t: u32) -> Option<String> {
        let after = c.binding_at(t).expect("a binding").expires_after?;
        Some(ts(c.created + after).date_naive().to_string())
    }

    #[test]
    fn btcd_signing_subkeys_carry_their_published_expiry() {
        let ring = shipped("btcd");
        // RSA signing subkey expired 2024-10-11 (keys/README.md): valid in 2023, not in 2025.
        let rsa = component(&ring, "60A1FA7DA5BFF08BDCBBE7903BBD59E99B280306");
        assert!(rsa.valid_at(1_690_000_000, true).is_ok());
        assert!(matches!(
            rsa.valid_at(1_740_000_000, true),
            Err(Invalid::Expired(_))
        ));
        assert_eq!(
            expiry_at(rsa, secs(2023, 7, 1)).as_deref(),
            Some("2024-10-11")
        );
        // The ed25519 signing subkey expires 2026-10-29, set by a binding made
        // 2025-10-22; signatures made before that binding (v0.25.0 onwards) are
        // judged by it too, the only one the published key carries.
        let ed = component(&ring, "296212681AADF05656A2CDEE90525F7DEEE0AD86");
        assert_eq!(
            expiry_at(ed, secs(2025, 1, 15)).as_deref(),
            Some("2026-10-29")
        );
        assert!(ed.valid_at(secs(2025, 1, 15), true).is_ok());
        assert!(ed.valid_at(secs(2026, 10, 28), true).is_ok());
        assert!(matches!(
            ed.valid_at(secs(2026, 10, 30), true),
            Err(Invalid::Expired(_))
        ));
    }

    #[test]
    fn every_shipped_signing_key_keeps_a_binding_and_its_back_signature() {
        // (keyring, key or subkey that signs releases, a time it signed at)
        let cases = [
            (
                "btcd",
                "60A1FA7DA5BFF08BDCBBE7903BBD59E99B280306",
                secs(2023, 6, 1),
            ),
            (
                "btcd",
                "296212681AADF05656A2CDEE90525F7DEEE0AD86",
                secs(2025, 6, 1),
            ),
            (
                "btcd",
                "A5B61896952D9FDA83BC054CDC42612E89237182",
                secs(2025, 6, 1),
            ),
            (
                "bcoin",
                "E61773CD6E01040E2F1BD78CE7E2984B6289C93A",
                secs(2023, 6, 1),
            ),
            (
                "bitcoind",
                "E777299FC265DD04793070EB944D35F9AC3DB76A",
                secs(2023, 6, 1),
            ),
            (
                "bitcoind",
                "CFB16E21C950F67FA95E558F2EEB9F5CC09526C1",
                secs(2023, 6, 1),
            ),
            (
                "bitcoind",
                "152812300785C96444D3334D17565732E08E5E41",
                secs(2024, 6, 1),
            ),
            (
                "bitcoind",
                "71A3B16735405025D447E8F274810B012346C9A6",
                secs(2021, 6, 1),
            ),
            (
                "bitcoind",
                "9DEAE0DC7063249FB05474681E4AED62986CD25D",
                secs(2021, 6, 1),
            ),
        ];
        for (implementation, fpr, at) in cases {
            let ring = shipped(implementation);
            let key = ring
                .keys
                .iter()
                .find(|k| {
                    k.primary.fingerprint == fpr || k.subkeys.iter().any(|s| s.fingerprint == fpr)
                })
                .unwrap();
            assert!(!key.primary.bindings.is_empty(), "{fpr}: primary unbound");
            assert!(key.primary.valid_at(at, false).is_ok(), "{fpr}: primary");
            let c = component(&ring, fpr);
            // A subkey's signing binding is kept only with a valid back-signature.
            assert!(
                c.bindings.iter().any(|b| b.can_sign),
                "{fpr}: no signing binding: {:?}",
                c.unbound
            );
            assert!(c.valid_at(at, true).is_ok(), "{fpr} not valid for signing");
        }
    }

    #[test]
    fn achow101_user_id_revocations_are_not_bindings() {
        // The published key carries eight user-ID revocations (0x30, 2022-10
        // and 2023-12, no key expiry) older than its only certifications
        // (2025-08-21, expiring 2027-08-21). Read as bindings they would say
        // the key never expires for anything signed from 2022-10 to 2025-08.
        let ring = shipped("bitcoind");
        let achow = component(&ring, "152812300785C96444D3334D17565732E08E5E41");
        assert_eq!(achow.bindings.len(), 3, "one per certified user ID");
        assert!(achow
            .bindings
            .iter()
            .all(|b| b.created >= secs(2025, 8, 21) && b.expires_after.is_some()));
        assert_eq!(
            expiry_at(achow, secs(2024, 6, 1)).as_deref(),
            Some("2027-08-21")
        );
        assert!(achow.valid_at(secs(2024, 6, 1), true).is_ok());
        assert!(matches!(
            achow.valid_at(secs(2027, 9, 1), true),
            Err(Invalid::Expired(_))
        ));
    }

    #[test]
    fn laanwj_sha1_self_signatures_from_2011_still_count() {
        // laanwj's earliest certifications (2011-08-24, 2011-12-15) and his
        // encryption subkey's binding are SHA-1: made before 2023-02-01, they
        // still bind, so signatures from 2011 to 2014 keep a binding in force.
        let ring = shipped("bitcoind");
        let laanwj = component(&ring, "71A3B16735405025D447E8F274810B012346C9A6");
        assert!(laanwj
            .bindings
            .iter()
            .any(|b| b.created == secs(2011, 8, 24) + 8 * 3600 + 22 * 60 + 25));
        let early = secs(2012, 6, 1);
        assert_eq!(
            laanwj
                .binding_at(early)
                .map(|b| ts(b.created).date_naive().to_string()),
            Some("2011-12-15".to_string())
        );
        assert!(laanwj.valid_at(early, true).is_ok());
        assert_eq!(expiry_at(laanwj, early), None);
        let enc = component(&ring, "D01B5D68015444D271DAD33FF69705ED890DE427");
        assert_eq!(enc.bindings.len(), 1);
    }
}
