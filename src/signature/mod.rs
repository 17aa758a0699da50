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

mod key;
mod policy;
mod tag;
mod verdict;

use std::{
    io::BufReader,
    path::{Path, PathBuf},
};

use chrono::{DateTime, TimeZone, Utc};
use pgp::{
    armor::Dearmor,
    composed::{Deserializable, DetachedSignature, SignedPublicKey},
    packet::{Packet, PacketParser, Signature, SignatureType},
};

use key::{hex_upper, ts, Component, Invalid, PinnedKey, Unbound};
use policy::{refused_hash, HashUse};
pub use tag::split_signed_tag;
use tag::tag_binding;
pub use verdict::Verdict;

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

/// The keys a pipeline trusts. Load once, check many.
#[derive(Debug, Clone)]
pub struct Keyring {
    keys: Vec<PinnedKey>,
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
