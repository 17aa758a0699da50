//! OpenPGP verification of signed git objects against a pipeline's pinned keyring.
//!
//! Release-verification semantics: the question is whether the signing key was
//! valid *when the signature was made*. A signature made while its key was valid
//! stays valid after the key expires; a signature made after the key expired, or
//! after it was revoked, is refused. A "hard" revocation (no reason given, key
//! compromised, or a reason this module does not know) refuses every signature
//! of the key whatever its date, since a compromised key can backdate
//! signatures; a "soft" one (superseded, retired) refuses only signatures made
//! after it.
//!
//! The policy follows what current OpenPGP implementations enforce (Sequoia's
//! `StandardPolicy` for hash algorithms and their cutoff dates, GnuPG for what
//! counts as a self-signature), with every cutoff compared against the time a
//! signature says it was made. (Sequoia compares its cutoffs with the time of
//! checking instead; judging by the signature's own date keeps a release
//! signed while its hash was still acceptable verified, as above for keys.)
//!
//!
//! - **Self-signatures.** Only certifications of a user ID (types 0x10–0x13),
//!   subkey bindings (0x18) and direct-key signatures (0x1F) made by the primary
//!   key bind a key and may set its expiry and usage. A user-ID revocation
//!   (0x30) is not one: it withdraws that user ID's certifications made at or
//!   before it, so a user ID revoked and never certified again binds nothing.
//!   Key (0x20) and subkey (0x28) revocations count only when they verify
//!   against the primary key, and a key revocation counts wherever it sits in
//!   the key file (GnuPG, too, moves a misplaced one into place on import).
//!   Revocations of all three kinds are honoured whatever hash they use,
//!   since ignoring a genuine revocation is worse than honouring a weak one.
//! - **Back-signatures.** A subkey bound as signing-capable must carry, in its
//!   binding, a valid primary-key binding signature (0x19) made by the subkey
//!   itself; without one the binding does not count, and a data signature by
//!   that subkey is refused as [`Verdict::NoBackSignature`].
//! - **Hashes.** A data signature (the tag's) made with MD5 or RIPEMD-160 is
//!   refused, and one made with SHA-1 from 2013-02-01 on (Sequoia's collision-
//!   resistance cutoff). A self-signature or back-signature counts only if its
//!   hash was acceptable when it was made (Sequoia's second-preimage cutoffs):
//!   SHA-1 before 2023-02-01, RIPEMD-160 before 2013-02-01, MD5 never. The
//!   SHA-2 and SHA-3 families are always accepted.
//! - **Signature expiry.** A data signature past its own Signature Expiration
//!   Time (judged at the time of checking, [`Keyring::verify_detached_at`]) is
//!   refused.
//! - **Signature type.** Only a document signature (binary 0x00 or text 0x01)
//!   vouches for a tag; any other type is a bad signature.
//!
//! Every refusal is its own [`Verdict`], named by [`Verdict::kind`].
//!
//! The keyring is parsed and every self-signature checked once, at load; checking
//! a signature is then one cryptographic verification and a few comparisons.

use std::{
    fmt,
    io::BufReader,
    path::{Path, PathBuf},
};

use chrono::{DateTime, TimeZone, Utc};
use pgp::{
    armor::Dearmor,
    composed::{Deserializable, DetachedSignature, SignedPublicKey},
    crypto::hash::HashAlgorithm,
    packet::{
        Packet, PacketParser, PublicKey, PublicSubkey, RevocationCode, Signature, SignatureType,
        SubpacketData,
    },
    types::{KeyDetails, Tag},
};
use serde::{Deserialize, Serialize};

/// The line that opens an armored OpenPGP signature inside a git object.
const PGP_SIGNATURE_BEGIN: &[u8] = b"-----BEGIN PGP SIGNATURE-----";

/// 2013-02-01T00:00:00Z: Sequoia's `Y2013M2`, from when SHA-1 is refused where
/// collision resistance is needed (data signatures), and RIPEMD-160 everywhere.
const Y2013M2: u32 = 1_359_676_800;

/// 2023-02-01T00:00:00Z: Sequoia's `Y2023M2`, from when SHA-1 is refused where
/// only second-preimage resistance is needed (self-signatures).
const Y2023M2: u32 = 1_675_209_600;

/// Errors loading a keyring.
#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    /// The path could not be read.
    #[error("cannot read keyring {path}: {source}")]
    Read {
        /// The file or folder.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A file held no parsable OpenPGP public key.
    #[error("keyring file {path} is not an OpenPGP public key: {reason}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        reason: String,
    },
    /// The keyring held no key at all.
    #[error("keyring {path} holds no OpenPGP public key (looked for *.asc, *.gpg, *.pgp, *.key)")]
    Empty {
        /// The file or folder.
        path: PathBuf,
    },
}

/// The outcome of checking one signed object. Stored with every ref and shown
/// by `habctl refs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    /// Signed by a pinned key that was valid when it signed.
    Verified {
        /// Fingerprint of the key (or subkey) that made the signature.
        fingerprint: String,
        /// Fingerprint of its primary key, as pinned.
        primary_fingerprint: String,
        /// When the signature says it was made.
        signed_at: DateTime<Utc>,
    },
    /// The object carries no OpenPGP signature (or is a lightweight tag).
    Unsigned,
    /// Signed by a key that is not in the pipeline's keyring.
    UnknownKey {
        /// The issuer fingerprint or key id the signature names.
        issuer: String,
    },
    /// The signature does not verify (object tampered with, or malformed).
    BadSignature {
        /// Why it was refused.
        reason: String,
    },
    /// The key had expired when the signature was made.
    KeyExpired {
        /// Fingerprint of the signing (sub)key.
        fingerprint: String,
        /// When the signature says it was made.
        signed_at: DateTime<Utc>,
        /// When the key expired.
        expired_at: DateTime<Utc>,
    },
    /// The key was revoked when the signature was made (or revoked as compromised).
    KeyRevoked {
        /// Fingerprint of the signing (sub)key.
        fingerprint: String,
        /// When the signature says it was made.
        signed_at: DateTime<Utc>,
        /// When the revocation was made.
        revoked_at: DateTime<Utc>,
        /// The revocation reason, as the key holder gave it.
        reason: String,
    },
    /// A tag object found under a ref whose name is not the one its own
    /// header gives: a genuine signature of one release republished under
    /// another name. The signature vouches only for the name it signed.
    TagNameMismatch {
        /// The name the tag object's `tag` line gives (what was signed).
        tag_name: String,
        /// The ref it was found at.
        ref_name: String,
    },
    /// The ref does not lead to a commit: a tag object of `type tree`,
    /// `blob` or `tag`, or a ref that points at a tree or blob. Nothing can
    /// be built from it.
    NotACommit {
        /// What it leads to (`tree`, `blob`, `tag`, ...).
        object_type: String,
    },
    /// The signature verifies but uses a hash algorithm refused for
    /// signatures made when it was made: MD5 and RIPEMD-160 always, SHA-1
    /// from 2013-02-01 on (collisions make such a signature worthless).
    WeakHash {
        /// Fingerprint of the signing (sub)key.
        fingerprint: String,
        /// The hash algorithm (`MD5`, `SHA1`, `RIPEMD160`, ...). A boxed
        /// `str`, not a `String`, to keep [`Verdict`] as small as it was.
        hash: Box<str>,
        /// When the signature says it was made.
        signed_at: DateTime<Utc>,
        /// From when signatures with this hash are refused; `None` when the
        /// hash is never accepted.
        cutoff: Option<DateTime<Utc>>,
    },
    /// The signature carries its own expiration time, and it has passed.
    SignatureExpired {
        /// Fingerprint of the signing (sub)key.
        fingerprint: String,
        /// When the signature says it was made.
        signed_at: DateTime<Utc>,
        /// When the signature expired.
        expired_at: DateTime<Utc>,
    },
    /// Made by a signing subkey whose binding lacks a valid back-signature
    /// (a primary-key binding signature made by the subkey): without it, the
    /// subkey has not agreed to sign for this primary key.
    NoBackSignature {
        /// Fingerprint of the subkey.
        fingerprint: String,
    },
    /// The signing key (or its primary key) has no self-signature that
    /// counts: none verifies, all use a refused hash, or the user IDs that
    /// carried them are revoked.
    NoBinding {
        /// Fingerprint of the key without a binding.
        fingerprint: String,
        /// Why none counts.
        reason: String,
    },
    /// The key that signed is not certified for signing (its key flags,
    /// in the self-signature in force when it signed, do not allow it).
    NotForSigning {
        /// Fingerprint of the signing (sub)key.
        fingerprint: String,
    },
}

impl Verdict {
    /// The short name of the verdict, as stored and shown (`verified`, `unsigned`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            Verdict::Verified { .. } => "verified",
            Verdict::Unsigned => "unsigned",
            Verdict::UnknownKey { .. } => "unknown_key",
            Verdict::BadSignature { .. } => "bad_signature",
            Verdict::KeyExpired { .. } => "key_expired",
            Verdict::KeyRevoked { .. } => "key_revoked",
            Verdict::TagNameMismatch { .. } => "tag_name_mismatch",
            Verdict::NotACommit { .. } => "not_a_commit",
            Verdict::WeakHash { .. } => "weak_hash",
            Verdict::SignatureExpired { .. } => "signature_expired",
            Verdict::NoBackSignature { .. } => "no_back_signature",
            Verdict::NoBinding { .. } => "no_binding",
            Verdict::NotForSigning { .. } => "not_for_signing",
        }
    }

    /// True when the ref itself is inconsistent (a tag object under another
    /// name, or no commit behind it): refused whatever the signature policy,
    /// since no signature can vouch for what the ref claims.
    pub fn is_misbound(&self) -> bool {
        matches!(
            self,
            Verdict::TagNameMismatch { .. } | Verdict::NotACommit { .. }
        )
    }

    /// True only for [`Verdict::Verified`].
    pub fn is_verified(&self) -> bool {
        matches!(self, Verdict::Verified { .. })
    }

    /// The signer's primary fingerprint when verified.
    pub fn signer(&self) -> Option<&str> {
        match self {
            Verdict::Verified {
                primary_fingerprint,
                ..
            } => Some(primary_fingerprint),
            _ => None,
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Verified {
                fingerprint,
                signed_at,
                ..
            } => write!(f, "verified: signed by {fingerprint} at {signed_at}"),
            Verdict::Unsigned => write!(f, "unsigned"),
            Verdict::UnknownKey { issuer } => {
                write!(f, "unknown key: signed by {issuer}, not in the keyring")
            }
            Verdict::BadSignature { reason } => write!(f, "bad signature: {reason}"),
            Verdict::KeyExpired {
                fingerprint,
                signed_at,
                expired_at,
            } => write!(
                f,
                "key expired: {fingerprint} expired at {expired_at}, signature made at {signed_at}"
            ),
            Verdict::KeyRevoked {
                fingerprint,
                signed_at,
                revoked_at,
                reason,
            } => write!(
                f,
                "key revoked: {fingerprint} revoked at {revoked_at} ({reason}), signature made at {signed_at}"
            ),
            Verdict::TagNameMismatch { tag_name, ref_name } => write!(
                f,
                "tag name mismatch: the tag object names {tag_name:?} but was found at {ref_name}; a signature counts only for the name it signed"
            ),
            Verdict::NotACommit { object_type } => {
                write!(f, "not a commit: the ref leads to a {object_type}, nothing to build")
            }
            Verdict::WeakHash {
                fingerprint,
                hash,
                signed_at,
                cutoff: Some(cutoff),
            } => write!(
                f,
                "weak hash: {fingerprint} signed at {signed_at} with {hash}, refused for signatures made from {cutoff} on"
            ),
            Verdict::WeakHash {
                fingerprint,
                hash,
                signed_at,
                cutoff: None,
            } => write!(
                f,
                "weak hash: {fingerprint} signed at {signed_at} with {hash}, which is never accepted"
            ),
            Verdict::SignatureExpired {
                fingerprint,
                signed_at,
                expired_at,
            } => write!(
                f,
                "signature expired: made by {fingerprint} at {signed_at}, expired at {expired_at}"
            ),
            Verdict::NoBackSignature { fingerprint } => write!(
                f,
                "no back-signature: signing subkey {fingerprint} is bound without a valid primary-key binding signature made by the subkey, so it cannot sign for its primary key"
            ),
            Verdict::NoBinding {
                fingerprint,
                reason,
            } => write!(
                f,
                "no binding: key {fingerprint} has no self-signature that counts ({reason})"
            ),
            Verdict::NotForSigning { fingerprint } => {
                write!(f, "not for signing: key {fingerprint} is not certified for signing")
            }
        }
    }
}

/// What a hash algorithm is used for, which decides the cutoff that applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HashUse {
    /// A signature over data someone else may have chosen: needs collision
    /// resistance.
    Data,
    /// A self-signature or back-signature over keys and user IDs: needs
    /// second-preimage resistance only.
    SelfSignature,
}

/// From when a signature made with `hash` for `usage` is refused (seconds
/// since the epoch, compared with the signature's creation time): `None`
/// when it is always accepted, `Some(0)` when it never is. The cutoffs are
/// Sequoia `StandardPolicy`'s, except that MD5 and, for data, RIPEMD-160 are
/// refused outright.
fn hash_cutoff(hash: HashAlgorithm, usage: HashUse) -> Option<u32> {
    use HashAlgorithm as H;
    match (hash, usage) {
        (H::Sha224 | H::Sha256 | H::Sha384 | H::Sha512 | H::Sha3_256 | H::Sha3_512, _) => None,
        (H::Sha1, HashUse::Data) => Some(Y2013M2),
        (H::Sha1, HashUse::SelfSignature) => Some(Y2023M2),
        (H::Ripemd160, HashUse::SelfSignature) => Some(Y2013M2),
        // MD5 (collisions since 2004), RIPEMD-160 over data, anything unknown.
        _ => Some(0),
    }
}

/// The cutoff `sig` falls foul of, if its hash is refused for `usage` at
/// its creation time: `Some((hash, cutoff))`, cutoff 0 meaning never accepted.
fn refused_hash(sig: &Signature, usage: HashUse) -> Option<(HashAlgorithm, u32)> {
    let hash = sig.hash_alg()?;
    hash_cutoff(hash, usage)
        .filter(|cutoff| created(sig) >= *cutoff)
        .map(|cutoff| (hash, cutoff))
}

/// One self-signature that binds a key (or subkey) and may set its expiry.
#[derive(Debug, Clone)]
struct Binding {
    created: u32,
    /// Seconds after key creation at which the key expires (None: never).
    expires_after: Option<u32>,
    can_sign: bool,
}

#[derive(Debug, Clone)]
struct Revocation {
    created: u32,
    hard: bool,
    reason: String,
}

/// Why a key or subkey has no binding at all.
#[derive(Debug, Clone)]
enum Unbound {
    /// Its only signing bindings lack a valid back-signature.
    NoBackSignature,
    /// Anything else, said in words.
    Reason(String),
}

/// What was set aside while collecting a component's self-signatures, to
/// explain an empty binding list.
#[derive(Debug, Default)]
struct SetAside {
    weak_hash: Option<String>,
    revoked_user_id: bool,
    no_back_signature: bool,
    invalid: bool,
}

impl SetAside {
    fn weak(&mut self, sig: &Signature, hash: HashAlgorithm, cutoff: u32) {
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

    fn unbound(&self) -> Unbound {
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
struct Component {
    fingerprint: String,
    key_id: String,
    created: u32,
    bindings: Vec<Binding>,
    revocations: Vec<Revocation>,
    /// Why `bindings` is empty, when it is.
    unbound: Unbound,
}

/// A pinned key with its subkeys, self-signatures already verified.
#[derive(Debug, Clone)]
struct PinnedKey {
    key: SignedPublicKey,
    primary: Component,
    subkeys: Vec<Component>,
}

/// The keys a pipeline trusts. Load once, check many.
#[derive(Debug, Clone)]
pub struct Keyring {
    keys: Vec<PinnedKey>,
}

fn hex_upper(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

fn ts(secs: u32) -> DateTime<Utc> {
    Utc.timestamp_opt(i64::from(secs), 0)
        .single()
        .unwrap_or_default()
}

/// When a signature says it was made (0 when it does not say).
fn created(sig: &Signature) -> u32 {
    sig.created().map(|t| t.as_secs()).unwrap_or(0)
}

fn revocation_of(sig: &Signature) -> Revocation {
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

fn binding_of(sig: &Signature, default_can_sign: bool) -> Binding {
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
fn back_signed(binding: &Signature, primary: &PublicKey, subkey: &PublicSubkey) -> bool {
    binding.embedded_signature().is_some_and(|back| {
        back.typ() == Some(SignatureType::KeyBinding)
            && back.verify_primary_key_binding(subkey, primary).is_ok()
            && refused_hash(back, HashUse::SelfSignature).is_none()
    })
}

fn issued_by(sig: &Signature, fingerprint: &[u8], key_id: &[u8]) -> bool {
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
    fn new(key: SignedPublicKey, loose_revocations: &[Signature]) -> Self {
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
enum Invalid {
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
    fn binding_at(&self, t: u32) -> Option<&Binding> {
        self.bindings
            .iter()
            .filter(|b| b.created <= t)
            .max_by_key(|b| b.created)
            .or_else(|| self.bindings.iter().min_by_key(|b| b.created))
    }

    fn valid_at(&self, t: u32, need_sign: bool) -> Result<(), Invalid> {
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

impl Keyring {
    /// Loads every public key from a file, or from every `*.asc`, `*.gpg`, `*.pgp`
    /// and `*.key` file in a folder.
    ///
    /// # Errors
    /// A file that cannot be read or parsed, or a keyring with no key.
    pub fn load(path: &Path) -> Result<Self, KeyringError> {
        let read_err = |source| KeyringError::Read {
            path: path.to_path_buf(),
            source,
        };
        let mut files = Vec::new();
        if path.is_dir() {
            for entry in std::fs::read_dir(path).map_err(read_err)? {
                let p = entry.map_err(read_err)?.path();
                let ext = p.extension().and_then(|e| e.to_str()).unwrap_or("");
                if matches!(ext, "asc" | "gpg" | "pgp" | "key") {
                    files.push(p);
                }
            }
            files.sort();
        } else {
            files.push(path.to_path_buf());
        }
        let mut keys = Vec::new();
        for file in &files {
            let bytes = std::fs::read(file).map_err(|source| KeyringError::Read {
                path: file.clone(),
                source,
            })?;
            let parsed = Self::parse(&bytes).map_err(|reason| KeyringError::Parse {
                path: file.clone(),
                reason,
            })?;
            let loose = Self::loose_key_revocations(&bytes);
            keys.extend(parsed.into_iter().map(|key| PinnedKey::new(key, &loose)));
        }
        if keys.is_empty() {
            return Err(KeyringError::Empty {
                path: path.to_path_buf(),
            });
        }
        Ok(Keyring { keys })
    }

    /// Byte ranges of the armored blocks in `bytes` (none for binary input).
    fn armored_blocks(bytes: &[u8]) -> Vec<&[u8]> {
        const BEGIN: &[u8] = b"-----BEGIN PGP";
        let starts: Vec<usize> = (0..bytes.len())
            .filter(|&i| bytes[i..].starts_with(BEGIN) && (i == 0 || bytes[i - 1] == b'\n'))
            .collect();
        starts
            .iter()
            .enumerate()
            .map(|(n, start)| &bytes[*start..starts.get(n + 1).copied().unwrap_or(bytes.len())])
            .collect()
    }

    /// Every key revocation signature (0x20) in a key file, wherever it sits.
    /// rpgp keeps only those between a primary key and its first user ID (or
    /// after a subkey) and silently drops one placed after a user ID, where
    /// GnuPG still finds and honours it. Unchecked here: whose it is and
    /// whether it verifies is decided per key. Best effort: a packet that
    /// does not parse ends the scan of its block.
    fn loose_key_revocations(bytes: &[u8]) -> Vec<Signature> {
        let is_revocation = |p: Result<Packet, pgp::errors::Error>| match p {
            Ok(Packet::Signature(sig)) if sig.typ() == Some(SignatureType::KeyRevocation) => {
                Some(sig)
            }
            _ => None,
        };
        let blocks = Self::armored_blocks(bytes);
        if blocks.is_empty() {
            return PacketParser::new(bytes).filter_map(is_revocation).collect();
        }
        let mut found = Vec::new();
        for block in blocks {
            let mut dearmor = Dearmor::new(block);
            if dearmor.read_header().is_ok() {
                found.extend(PacketParser::new(BufReader::new(dearmor)).filter_map(is_revocation));
            }
        }
        found
    }

    /// Parses armored or binary public keys. An armored file may hold several
    /// blocks one after the other (as `roasbeef.asc` does).
    fn parse(bytes: &[u8]) -> Result<Vec<SignedPublicKey>, String> {
        let blocks = Self::armored_blocks(bytes);
        let mut keys = Vec::new();
        if blocks.is_empty() {
            let iter = SignedPublicKey::from_bytes_many(bytes).map_err(|e| e.to_string())?;
            for key in iter {
                keys.push(key.map_err(|e| e.to_string())?);
            }
        }
        for block in blocks {
            let (iter, _) =
                SignedPublicKey::from_armor_many_buf(block).map_err(|e| e.to_string())?;
            for key in iter {
                keys.push(key.map_err(|e| e.to_string())?);
            }
        }
        if keys.is_empty() {
            return Err("no public key found".into());
        }
        Ok(keys)
    }

    /// A keyring that trusts nobody: every signature reads as unknown key.
    pub fn empty() -> Self {
        Keyring { keys: Vec::new() }
    }

    /// Primary fingerprints of the pinned keys.
    pub fn fingerprints(&self) -> Vec<String> {
        self.keys
            .iter()
            .map(|k| k.primary.fingerprint.clone())
            .collect()
    }

    /// Checks an armored detached signature over `payload`, as of now: the
    /// same as [`Keyring::verify_detached_at`] with [`Utc::now`].
    pub fn verify_detached(&self, payload: &[u8], armored_signature: &[u8]) -> Verdict {
        self.verify_detached_at(payload, armored_signature, Utc::now())
    }

    /// Checks an armored detached signature over `payload`, with `now` as the
    /// time of checking. `now` decides only whether the signature has passed
    /// its own expiration time; the key's validity (expiry, revocation,
    /// self-signature in force) is judged at the time the signature says it
    /// was made. See the module documentation for the policy.
    pub fn verify_detached_at(
        &self,
        payload: &[u8],
        armored_signature: &[u8],
        now: DateTime<Utc>,
    ) -> Verdict {
        let sig = match DetachedSignature::from_armor_single_buf(armored_signature) {
            Ok((sig, _)) => sig.signature,
            Err(e) => {
                return Verdict::BadSignature {
                    reason: format!("malformed signature: {e}"),
                }
            }
        };
        let Some(signed) = sig.created().map(|t| t.as_secs()) else {
            return Verdict::BadSignature {
                reason: "signature has no creation time".into(),
            };
        };
        let fprs: Vec<Vec<u8>> = sig
            .issuer_fingerprint()
            .iter()
            .map(|f| f.as_bytes().to_vec())
            .collect();
        let ids: Vec<String> = sig
            .issuer_key_id()
            .iter()
            .map(|k| hex_upper(k.as_ref()))
            .collect();
        let issuer = fprs
            .first()
            .map(|f| hex_upper(f))
            .or_else(|| ids.first().cloned())
            .unwrap_or_else(|| "an unnamed key".into());
        let matches = |c: &Component| {
            fprs.iter().any(|f| hex_upper(f) == c.fingerprint) || ids.contains(&c.key_id)
        };

        for pinned in &self.keys {
            let (component, crypto) = if matches(&pinned.primary) {
                (
                    &pinned.primary,
                    sig.verify(&pinned.key.primary_key, payload),
                )
            } else if let Some(i) = pinned.subkeys.iter().position(matches) {
                (
                    &pinned.subkeys[i],
                    sig.verify(&pinned.key.public_subkeys[i].key, payload),
                )
            } else {
                continue;
            };
            let fingerprint = component.fingerprint.clone();
            // Only a signature over a document vouches for it: a key or user-ID
            // signature made to look like one must not.
            if !matches!(sig.typ(), Some(SignatureType::Binary | SignatureType::Text)) {
                return Verdict::BadSignature {
                    reason: format!(
                        "not a document signature (type {}) from {fingerprint}",
                        sig.typ().map_or("unknown".into(), |t| format!("{t:?}"))
                    ),
                };
            }
            if let Err(e) = crypto {
                return Verdict::BadSignature {
                    reason: format!("does not verify with {fingerprint}: {e}"),
                };
            }
            let signed_at = ts(signed);
            if let Some((hash, cutoff)) = refused_hash(&sig, HashUse::Data) {
                return Verdict::WeakHash {
                    fingerprint,
                    hash: hash.to_string().into(),
                    signed_at,
                    cutoff: (cutoff > 0).then(|| ts(cutoff)),
                };
            }
            if let Some(lifetime) = sig.signature_expiration_time().map(|d| d.as_secs()) {
                let expires = i64::from(signed) + i64::from(lifetime);
                if lifetime > 0 && now.timestamp() >= expires {
                    return Verdict::SignatureExpired {
                        fingerprint,
                        signed_at,
                        expired_at: Utc.timestamp_opt(expires, 0).single().unwrap_or_default(),
                    };
                }
            }
            let is_primary = std::ptr::eq(component, &pinned.primary);
            // The primary key must be valid at signing time too.
            let checks = [(&pinned.primary, is_primary), (component, true)];
            for (c, need_sign) in checks {
                let fingerprint = c.fingerprint.clone();
                match c.valid_at(signed, need_sign) {
                    Ok(()) => {}
                    Err(Invalid::Expired(at)) => {
                        return Verdict::KeyExpired {
                            fingerprint,
                            signed_at,
                            expired_at: ts(at),
                        }
                    }
                    Err(Invalid::Revoked(r)) => {
                        return Verdict::KeyRevoked {
                            fingerprint,
                            signed_at,
                            revoked_at: ts(r.created),
                            reason: r.reason,
                        }
                    }
                    Err(Invalid::NotYetCreated) => {
                        return Verdict::BadSignature {
                            reason: format!(
                                "signature dated {signed_at} predates key {fingerprint}"
                            ),
                        }
                    }
                    Err(Invalid::Unbound(Unbound::NoBackSignature)) => {
                        return Verdict::NoBackSignature { fingerprint }
                    }
                    Err(Invalid::Unbound(Unbound::Reason(reason))) => {
                        return Verdict::NoBinding {
                            fingerprint,
                            reason,
                        }
                    }
                    Err(Invalid::CannotSign) => return Verdict::NotForSigning { fingerprint },
                }
            }
            return Verdict::Verified {
                fingerprint: component.fingerprint.clone(),
                primary_fingerprint: pinned.primary.fingerprint.clone(),
                signed_at,
            };
        }
        Verdict::UnknownKey { issuer }
    }

    /// Checks a raw annotated tag object (as stored in git's object database)
    /// found at `ref_name`, as of now: the same as [`Keyring::verify_tag_at`]
    /// with [`Utc::now`].
    pub fn verify_tag(&self, ref_name: &str, raw: &[u8]) -> Verdict {
        self.verify_tag_at(ref_name, raw, Utc::now())
    }

    /// Checks a raw annotated tag object found at `ref_name`, with `now` as
    /// the time of checking (see [`Keyring::verify_detached_at`]). It
    /// verifies only when its header says `type commit` and its `tag` line is
    /// the ref's short name (`refs/tags/X` → `X`): a signature counts only for
    /// the release it names. Those checks come first, so a misbound tag is
    /// refused whoever signed it.
    pub fn verify_tag_at(&self, ref_name: &str, raw: &[u8], now: DateTime<Utc>) -> Verdict {
        if let Some(refusal) = tag_binding(ref_name, raw) {
            return refusal;
        }
        match split_signed_tag(raw) {
            Some((payload, signature)) => self.verify_detached_at(payload, signature, now),
            None => Verdict::Unsigned,
        }
    }
}

/// The header fields of a tag object that bind it (`type`, `tag`).
#[derive(Debug, Default, PartialEq, Eq)]
struct TagHeader {
    object_type: Option<String>,
    tag: Option<String>,
}

fn tag_header(raw: &[u8]) -> TagHeader {
    let mut header = TagHeader::default();
    // The header ends at the first empty line; each field is `key value`.
    for line in raw.split(|b| *b == b'\n') {
        if line.is_empty() {
            break;
        }
        let line = String::from_utf8_lossy(line);
        if let Some((key, value)) = line.split_once(' ') {
            let slot = match key {
                "type" => &mut header.object_type,
                "tag" => &mut header.tag,
                _ => continue,
            };
            // A second `type` or `tag` line makes the object ambiguous:
            // keep the first, and let the mismatch show below if they differ.
            slot.get_or_insert_with(|| value.to_string());
        }
    }
    header
}

/// Why a tag object may not stand for `ref_name`, if it may not.
fn tag_binding(ref_name: &str, raw: &[u8]) -> Option<Verdict> {
    let header = tag_header(raw);
    let object_type = header.object_type.unwrap_or_else(|| "nothing".into());
    if object_type != "commit" {
        return Some(Verdict::NotACommit { object_type });
    }
    let short = ref_name.strip_prefix("refs/tags/").unwrap_or(ref_name);
    match header.tag {
        Some(tag) if tag == short => None,
        tag => Some(Verdict::TagNameMismatch {
            tag_name: tag.unwrap_or_default(),
            ref_name: ref_name.to_string(),
        }),
    }
}

/// Splits a raw tag object into the signed payload and the armored signature,
/// the way git does: the signature starts at the first line that opens a PGP
/// signature block; everything before it is what was signed.
pub fn split_signed_tag(raw: &[u8]) -> Option<(&[u8], &[u8])> {
    let mut offset = 0;
    for line in raw.split_inclusive(|b| *b == b'\n') {
        if line.starts_with(PGP_SIGNATURE_BEGIN) {
            return Some((&raw[..offset], &raw[offset..]));
        }
        offset += line.len();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_finds_signature_block() {
        let raw = b"object abc\ntype commit\ntag v1\ntagger x\n\nmsg\n-----BEGIN PGP SIGNATURE-----\nxx\n-----END PGP SIGNATURE-----\n";
        let (payload, sig) = split_signed_tag(raw).unwrap();
        assert!(payload.ends_with(b"msg\n"));
        assert!(sig.starts_with(PGP_SIGNATURE_BEGIN));
        assert!(split_signed_tag(b"object abc\n\nmsg\n").is_none());
    }

    #[test]
    fn a_tag_object_binds_only_its_own_name_and_a_commit() {
        let raw = |typ: &str, tag: &str| {
            format!("object abc\ntype {typ}\ntag {tag}\ntagger x 1 +0000\n\nmsg\ntag v9\n")
        };
        assert_eq!(
            tag_binding("refs/tags/v1", raw("commit", "v1").as_bytes()),
            None
        );
        assert_eq!(
            tag_binding("refs/tags/v9", raw("commit", "v1").as_bytes()),
            Some(Verdict::TagNameMismatch {
                tag_name: "v1".into(),
                ref_name: "refs/tags/v9".into()
            })
        );
        for typ in ["tree", "blob", "tag"] {
            assert_eq!(
                tag_binding("refs/tags/v1", raw(typ, "v1").as_bytes()),
                Some(Verdict::NotACommit {
                    object_type: typ.into()
                })
            );
        }
        // Nested directories are part of the name; a message line is not a header.
        assert_eq!(
            tag_binding("refs/tags/rc/v1", raw("commit", "rc/v1").as_bytes()),
            None
        );
        let doubled = "object abc\ntype commit\ntag v1\ntag v9\n\nmsg\n";
        assert!(tag_binding("refs/tags/v9", doubled.as_bytes()).is_some());
        let unnamed = "object abc\ntype commit\n\nmsg\n";
        assert!(matches!(
            tag_binding("refs/tags/v1", unnamed.as_bytes()),
            Some(Verdict::TagNameMismatch { .. })
        ));
    }

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

    #[test]
    fn hash_cutoffs_follow_sequoia_standard_policy() {
        use HashAlgorithm as H;
        assert_eq!(ts(Y2013M2).to_rfc3339(), "2013-02-01T00:00:00+00:00");
        assert_eq!(ts(Y2023M2).to_rfc3339(), "2023-02-01T00:00:00+00:00");
        let data = |h| hash_cutoff(h, HashUse::Data);
        let own = |h| hash_cutoff(h, HashUse::SelfSignature);
        assert_eq!(data(H::Md5), Some(0));
        assert_eq!(data(H::Ripemd160), Some(0));
        assert_eq!(data(H::Sha1), Some(Y2013M2));
        assert_eq!(own(H::Md5), Some(0));
        assert_eq!(own(H::Ripemd160), Some(Y2013M2));
        assert_eq!(own(H::Sha1), Some(Y2023M2));
        for strong in [
            H::Sha224,
            H::Sha256,
            H::Sha384,
            H::Sha512,
            H::Sha3_256,
            H::Sha3_512,
        ] {
            assert_eq!(data(strong), None, "{strong}");
            assert_eq!(own(strong), None, "{strong}");
        }
        assert_eq!(data(H::Other(200)), Some(0));
        assert_eq!(own(H::None), Some(0));
    }

    #[test]
    fn policy_verdicts_have_stable_kinds_and_round_trip_as_stored() {
        let at = ts(Y2013M2);
        let cases = [
            (
                Verdict::WeakHash {
                    fingerprint: "AB".into(),
                    hash: "SHA1".into(),
                    signed_at: at,
                    cutoff: Some(at),
                },
                "weak_hash",
                "refused for signatures made from 2013-02-01 00:00:00 UTC on",
            ),
            (
                Verdict::WeakHash {
                    fingerprint: "AB".into(),
                    hash: "MD5".into(),
                    signed_at: at,
                    cutoff: None,
                },
                "weak_hash",
                "with MD5, which is never accepted",
            ),
            (
                Verdict::SignatureExpired {
                    fingerprint: "AB".into(),
                    signed_at: at,
                    expired_at: at,
                },
                "signature_expired",
                "expired at",
            ),
            (
                Verdict::NoBackSignature {
                    fingerprint: "AB".into(),
                },
                "no_back_signature",
                "signing subkey AB",
            ),
            (
                Verdict::NoBinding {
                    fingerprint: "AB".into(),
                    reason: "it carries none".into(),
                },
                "no_binding",
                "key AB has no self-signature that counts (it carries none)",
            ),
            (
                Verdict::NotForSigning {
                    fingerprint: "AB".into(),
                },
                "not_for_signing",
                "key AB is not certified for signing",
            ),
        ];
        for (verdict, kind, shown) in cases {
            assert_eq!(verdict.kind(), kind);
            assert!(verdict.to_string().contains(shown), "{verdict}");
            let json = serde_json::to_value(&verdict).unwrap();
            assert_eq!(json["verdict"], kind);
            assert_eq!(serde_json::from_value::<Verdict>(json).unwrap(), verdict);
        }
        // Verdicts stored before these existed still read back.
        let old = r#"{"verdict":"key_revoked","fingerprint":"AB","signed_at":"2020-01-01T00:00:00Z","revoked_at":"2020-02-01T00:00:00Z","reason":"compromised"}"#;
        assert_eq!(
            serde_json::from_str::<Verdict>(old).unwrap().kind(),
            "key_revoked"
        );
    }

    #[test]
    fn a_verdict_is_no_larger_than_before_the_policy_verdicts() {
        // Build and store errors carry a Verdict by value; past 72 bytes,
        // clippy's result_large_err fires on them (src/build/mod.rs).
        assert!(std::mem::size_of::<Verdict>() <= 72);
    }
}
