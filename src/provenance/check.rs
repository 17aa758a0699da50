//! The checks of an attestation, over bytes: what a rollout asks before it
//! touches a node ([`attested`]), and what an auditor asks offline
//! ([`audit`]), each failure naming what failed.

use super::{
    dsse::{self, EnvelopeError},
    key::PublicKey,
    statement::{claims, Claims},
};
use crate::signature::{Keyring, Verdict};

/// Why an attestation does not vouch for a digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    /// The registry (or layout) holds no attestation for the digest.
    #[error("no attestation of {digest} (hab signs one when it verifies a build; an image pushed by other hands has none)")]
    Missing {
        /// The digest asked about.
        digest: String,
    },
    /// The index's bytes are not the digest asked about.
    #[error("the index was altered: its bytes hash to {got}, not {want}")]
    IndexAltered {
        /// The digest asked about.
        want: String,
        /// What the bytes hash to.
        got: String,
    },
    /// The index cannot be read.
    #[error("the index {digest} is not an OCI image index: {reason}")]
    IndexMalformed {
        /// Its digest.
        digest: String,
        /// Why.
        reason: String,
    },
    /// The envelope's blob is not the bytes its manifest names.
    #[error(
        "the attestation envelope was altered: its bytes hash to {got}, its manifest names {want}"
    )]
    EnvelopeAltered {
        /// The digest the attestation manifest names.
        want: String,
        /// What the bytes hash to.
        got: String,
    },
    /// The attestation's envelope cannot be read.
    #[error("the attestation cannot be read: {0}")]
    Unreadable(String),
    /// The DSSE envelope does not verify.
    #[error("the attestation's DSSE envelope: {0}")]
    Envelope(#[from] EnvelopeError),
    /// The payload is not the Statement hab writes.
    #[error("the attestation's statement: {0}")]
    Statement(String),
    /// A digest the statement does not name.
    #[error("the attestation does not name {digest} as a subject (its subjects: {subjects})")]
    NotASubject {
        /// The digest.
        digest: String,
        /// What it names.
        subjects: String,
    },
    /// No tag object to check (the build was not made from a signed tag).
    #[error("the provenance carries no signed tag object (ref {ref_name}, verdict {verdict})")]
    NoTag {
        /// The ref built.
        ref_name: String,
        /// The verdict habd recorded.
        verdict: String,
    },
    /// The embedded tag object's bytes are not the object id recorded.
    #[error("the embedded tag object was altered: its bytes are git object {got}, the provenance records {want}")]
    TagAltered {
        /// The recorded id.
        want: String,
        /// What its bytes hash to.
        got: String,
    },
    /// The maintainers' keyring does not vouch for the tag object.
    #[error("the embedded tag object does not verify against the maintainers' keyring: {0}")]
    TagSignature(String),
    /// The tag names another commit.
    #[error("the signed tag names commit {tagged}, but the provenance records {recorded}")]
    TagCommit {
        /// The tag's `object` line.
        tagged: String,
        /// The source dependency's `gitCommit`.
        recorded: String,
    },
}

/// What an audit found.
#[derive(Debug, Clone)]
pub struct Audit {
    /// The statement's claims.
    pub claims: Claims,
    /// The platform manifests the index lists (each a subject).
    pub manifests: Vec<String>,
    /// The maintainer key's fingerprint that signed the tag.
    pub signer: String,
    /// The primary key it belongs to.
    pub primary: String,
}

/// The rollout's question: does `envelope` carry a statement signed by
/// `key` whose subjects include `digest`? Returns its claims.
///
/// # Errors
/// [`Failure::Envelope`], [`Failure::Statement`], [`Failure::NotASubject`].
pub fn attested(envelope: &[u8], digest: &str, key: &PublicKey) -> Result<Claims, Failure> {
    let payload = dsse::open(envelope, key)?;
    let claims = claims(&payload).map_err(Failure::Statement)?;
    if !claims.subjects.iter().any(|s| s == digest) {
        return Err(Failure::NotASubject {
            digest: digest.into(),
            subjects: claims.subjects.join(", "),
        });
    }
    Ok(claims)
}

/// The auditor's question, over the bytes of the index (`index`, asked for
/// as `digest`) and of its attestation envelope: the index is `digest`;
/// the envelope is `key`'s over a statement naming the index and every
/// platform manifest it lists; the embedded tag object is the one recorded,
/// is signed by a key of `keyring` under the ref's name, and names the
/// commit the provenance records.
///
/// # Errors
/// The first check that fails, named.
pub fn audit(
    digest: &str,
    index: &[u8],
    envelope: &[u8],
    key: &PublicKey,
    keyring: &Keyring,
) -> Result<Audit, Failure> {
    let got = crate::registry::digest_of(index);
    if got != digest {
        return Err(Failure::IndexAltered {
            want: digest.into(),
            got,
        });
    }
    let parsed = crate::registry::parse_index(index).map_err(|e| Failure::IndexMalformed {
        digest: digest.into(),
        reason: e.to_string(),
    })?;
    let claims = attested(envelope, digest, key)?;
    let manifests: Vec<String> = parsed.manifests.iter().map(|m| m.digest.clone()).collect();
    for m in &manifests {
        if !claims.subjects.contains(m) {
            return Err(Failure::NotASubject {
                digest: m.clone(),
                subjects: claims.subjects.join(", "),
            });
        }
    }
    let Some((raw, recorded_id)) = &claims.tag else {
        return Err(Failure::NoTag {
            ref_name: claims.ref_name.clone(),
            verdict: claims.verdict.clone().unwrap_or_else(|| "none".into()),
        });
    };
    let id = git2::Oid::hash_object(git2::ObjectType::Tag, raw)
        .map(|o| o.to_string())
        .unwrap_or_default();
    if &id != recorded_id {
        return Err(Failure::TagAltered {
            want: recorded_id.clone(),
            got: id,
        });
    }
    let (signer, primary) = match keyring.verify_tag(&claims.ref_name, raw) {
        Verdict::Verified {
            fingerprint,
            primary_fingerprint,
            ..
        } => (fingerprint, primary_fingerprint),
        other => return Err(Failure::TagSignature(other.to_string())),
    };
    let tagged = String::from_utf8_lossy(raw)
        .lines()
        .take_while(|l| !l.is_empty())
        .find_map(|l| l.strip_prefix("object ").map(str::to_string))
        .unwrap_or_default();
    if tagged != claims.commit {
        return Err(Failure::TagCommit {
            tagged,
            recorded: claims.commit.clone(),
        });
    }
    Ok(Audit {
        claims,
        manifests,
        signer,
        primary,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provenance::{
        dsse::{sign, IN_TOTO_PAYLOAD},
        key::SigningKey,
        statement::{statement, tests::facts},
    };

    #[test]
    fn attested_asks_for_habds_signature_and_the_digest_as_subject() {
        let dir = tempfile::tempdir().unwrap();
        let (key, _) = SigningKey::load_or_create(&dir.path().join("k")).unwrap();
        let (other, _) = SigningKey::load_or_create(&dir.path().join("o")).unwrap();
        let f = facts();
        let payload = serde_json::to_vec(&statement(&f)).unwrap();
        let env = serde_json::to_vec(&sign(IN_TOTO_PAYLOAD, &payload, &key)).unwrap();
        assert!(attested(&env, &f.index_digest, key.public()).is_ok());
        assert!(attested(&env, &f.platforms[0].digest, key.public()).is_ok());
        let e = attested(&env, &format!("sha256:{}", "9".repeat(64)), key.public()).unwrap_err();
        assert!(matches!(e, Failure::NotASubject { .. }), "{e}");
        let e = attested(&env, &f.index_digest, other.public()).unwrap_err();
        assert!(e.to_string().contains("no signature"), "{e}");
    }
}
