//! What checking one signed object concluded, as stored and shown.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

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

#[cfg(test)]
mod tests {
    use super::super::key::ts;
    use super::super::policy::Y2013M2;
    use super::*;

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
        // clippy's result_large_err fires on them (src/builder/mod.rs).
        assert!(std::mem::size_of::<Verdict>() <= 72);
    }
}
