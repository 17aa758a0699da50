//! OpenPGP verification of signed git objects against a pipeline's pinned keyring.
//!
//! Release-verification semantics: the question is whether the signing key was
//! valid *when the signature was made*. A signature made while its key was valid
//! stays valid after the key expires; a signature made after the key expired, or
//! after it was revoked, is refused. A "hard" revocation (no reason given, or key
//! compromised) refuses every signature of the key whatever its date, since a
//! compromised key can backdate signatures; a "soft" one (superseded, retired)
//! refuses only signatures made after it.
//!
//! The keyring is parsed and every self-signature checked once, at load; checking
//! a signature is then one cryptographic verification and a few comparisons.

use std::{
    fmt,
    path::{Path, PathBuf},
};

use chrono::{DateTime, TimeZone, Utc};
use pgp::{
    composed::{Deserializable, DetachedSignature, SignedPublicKey},
    packet::{RevocationCode, Signature, SignatureType},
    types::{KeyDetails, Tag},
};
use serde::{Deserialize, Serialize};

/// The line that opens an armored OpenPGP signature inside a git object.
const PGP_SIGNATURE_BEGIN: &[u8] = b"-----BEGIN PGP SIGNATURE-----";

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
        }
    }
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

/// A key or subkey with its checked self-signatures.
#[derive(Debug, Clone)]
struct Component {
    fingerprint: String,
    key_id: String,
    created: u32,
    bindings: Vec<Binding>,
    revocations: Vec<Revocation>,
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
        created: sig.created().map(|t| t.as_secs()).unwrap_or(0),
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
            .any(|p| matches!(p.data, pgp::packet::SubpacketData::KeyFlags(_)))
    });
    Binding {
        created: sig.created().map(|t| t.as_secs()).unwrap_or(0),
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

fn issued_by(sig: &Signature, fingerprint: &[u8], key_id: &[u8]) -> bool {
    let by_fpr = sig.issuer_fingerprint();
    let by_id = sig.issuer_key_id();
    if by_fpr.is_empty() && by_id.is_empty() {
        return true; // nothing to filter on: let the cryptographic check decide
    }
    by_fpr.iter().any(|f| f.as_bytes() == fingerprint) || by_id.iter().any(|k| k.as_ref() == key_id)
}

impl PinnedKey {
    fn new(key: SignedPublicKey) -> Self {
        let pk = &key.primary_key;
        let pfpr = pk.fingerprint();
        let pid = pk.legacy_key_id();
        let own = |s: &&Signature| issued_by(s, pfpr.as_bytes(), pid.as_ref());

        let mut bindings = Vec::new();
        for user in &key.details.users {
            for sig in user.signatures.iter().filter(own) {
                if sig.verify_certification(pk, Tag::UserId, &user.id).is_ok() {
                    bindings.push(binding_of(sig, true));
                }
            }
        }
        for sig in key.details.direct_signatures.iter().filter(own) {
            if sig.verify_key(pk).is_ok() {
                bindings.push(binding_of(sig, true));
            }
        }
        let revocations = key
            .details
            .revocation_signatures
            .iter()
            .filter(own)
            .filter(|s| s.typ() == Some(SignatureType::KeyRevocation) && s.verify_key(pk).is_ok())
            .map(revocation_of)
            .collect();
        let primary = Component {
            fingerprint: hex_upper(pfpr.as_bytes()),
            key_id: hex_upper(pid.as_ref()),
            created: pk.created_at().as_secs(),
            bindings,
            revocations,
        };

        let subkeys = key
            .public_subkeys
            .iter()
            .map(|sub| {
                let mut bindings = Vec::new();
                let mut revocations = Vec::new();
                for sig in sub.signatures.iter().filter(own) {
                    if sig.verify_subkey_binding(pk, &sub.key).is_err() {
                        continue;
                    }
                    match sig.typ() {
                        Some(SignatureType::SubkeyBinding) => bindings.push(binding_of(sig, false)),
                        Some(SignatureType::SubkeyRevocation) => {
                            revocations.push(revocation_of(sig))
                        }
                        _ => {}
                    }
                }
                Component {
                    fingerprint: hex_upper(sub.key.fingerprint().as_bytes()),
                    key_id: hex_upper(sub.key.legacy_key_id().as_ref()),
                    created: sub.key.created_at().as_secs(),
                    bindings,
                    revocations,
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
    NoBinding,
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
        let binding = self.binding_at(t).ok_or(Invalid::NoBinding)?;
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
            keys.extend(Self::parse(&bytes).map_err(|reason| KeyringError::Parse {
                path: file.clone(),
                reason,
            })?);
        }
        if keys.is_empty() {
            return Err(KeyringError::Empty {
                path: path.to_path_buf(),
            });
        }
        Ok(Keyring {
            keys: keys.into_iter().map(PinnedKey::new).collect(),
        })
    }

    /// Parses armored or binary public keys. An armored file may hold several
    /// blocks one after the other (as `roasbeef.asc` does).
    fn parse(bytes: &[u8]) -> Result<Vec<SignedPublicKey>, String> {
        const BEGIN: &[u8] = b"-----BEGIN PGP";
        let starts: Vec<usize> = (0..bytes.len())
            .filter(|&i| bytes[i..].starts_with(BEGIN) && (i == 0 || bytes[i - 1] == b'\n'))
            .collect();
        let mut keys = Vec::new();
        if starts.is_empty() {
            let iter = SignedPublicKey::from_bytes_many(bytes).map_err(|e| e.to_string())?;
            for key in iter {
                keys.push(key.map_err(|e| e.to_string())?);
            }
        }
        for (n, start) in starts.iter().enumerate() {
            let end = starts.get(n + 1).copied().unwrap_or(bytes.len());
            let (iter, _) = SignedPublicKey::from_armor_many_buf(&bytes[*start..end])
                .map_err(|e| e.to_string())?;
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

    /// Checks an armored detached signature over `payload`.
    pub fn verify_detached(&self, payload: &[u8], armored_signature: &[u8]) -> Verdict {
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
            if let Err(e) = crypto {
                return Verdict::BadSignature {
                    reason: format!("does not verify with {}: {e}", component.fingerprint),
                };
            }
            let signed_at = ts(signed);
            let is_primary = std::ptr::eq(component, &pinned.primary);
            // The primary key must be valid at signing time too.
            let checks = [(&pinned.primary, is_primary), (component, true)];
            for (c, need_sign) in checks {
                match c.valid_at(signed, need_sign) {
                    Ok(()) => {}
                    Err(Invalid::Expired(at)) => {
                        return Verdict::KeyExpired {
                            fingerprint: c.fingerprint.clone(),
                            signed_at,
                            expired_at: ts(at),
                        }
                    }
                    Err(Invalid::Revoked(r)) => {
                        return Verdict::KeyRevoked {
                            fingerprint: c.fingerprint.clone(),
                            signed_at,
                            revoked_at: ts(r.created),
                            reason: r.reason,
                        }
                    }
                    Err(Invalid::NotYetCreated) => {
                        return Verdict::BadSignature {
                            reason: format!(
                                "signature dated {signed_at} predates key {}",
                                c.fingerprint
                            ),
                        }
                    }
                    Err(Invalid::NoBinding) => {
                        return Verdict::BadSignature {
                            reason: format!("key {} has no valid self-signature", c.fingerprint),
                        }
                    }
                    Err(Invalid::CannotSign) => {
                        return Verdict::BadSignature {
                            reason: format!("key {} is not certified for signing", c.fingerprint),
                        }
                    }
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
    /// found at `ref_name`. It verifies only when its header says `type
    /// commit` and its `tag` line is the ref's short name (`refs/tags/X` →
    /// `X`): a signature counts only for the release it names. Those checks
    /// come first, so a misbound tag is refused whoever signed it.
    pub fn verify_tag(&self, ref_name: &str, raw: &[u8]) -> Verdict {
        if let Some(refusal) = tag_binding(ref_name, raw) {
            return refusal;
        }
        match split_signed_tag(raw) {
            Some((payload, signature)) => self.verify_detached(payload, signature),
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

    #[test]
    fn btcd_signing_subkeys_carry_their_published_expiry() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("keys/btcd");
        let ring = Keyring::load(&dir).unwrap();
        let sub = |fpr: &str| {
            ring.keys
                .iter()
                .flat_map(|k| k.subkeys.iter())
                .find(|c| c.fingerprint == fpr)
                .unwrap_or_else(|| panic!("{fpr} missing"))
                .clone()
        };
        // RSA signing subkey expired 2024-10-11 (keys/README.md): valid in 2023, not in 2025.
        let rsa = sub("60A1FA7DA5BFF08BDCBBE7903BBD59E99B280306");
        assert!(rsa.valid_at(1_690_000_000, true).is_ok());
        assert!(matches!(
            rsa.valid_at(1_740_000_000, true),
            Err(Invalid::Expired(_))
        ));
    }
}
