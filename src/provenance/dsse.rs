//! DSSE envelopes (github.com/secure-systems-lab/dsse, protocol v1): the
//! payload, its type, and signatures over the pre-authentication encoding
//! `DSSEv1 <len> <type> <len> <payload>`, so a signature counts only for
//! the payload *and* the type it was made over.

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::key::{PublicKey, SigningKey};

/// The payload type of an in-toto Statement.
pub const IN_TOTO_PAYLOAD: &str = "application/vnd.in-toto+json";

/// A DSSE envelope as JSON carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope {
    /// Standard base64 of the payload.
    pub payload: String,
    /// What the payload is.
    pub payload_type: String,
    /// One per signer.
    pub signatures: Vec<EnvelopeSignature>,
}

/// One signature of an envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvelopeSignature {
    /// The signer's key id (securesystemslib's default for the key).
    #[serde(default)]
    pub keyid: String,
    /// Standard base64 of the signature.
    pub sig: String,
}

/// The pre-authentication encoding of DSSE v1.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {payload_type} {} ",
        payload_type.len(),
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

/// Signs `payload` of `payload_type` with `key`.
pub fn sign(payload_type: &str, payload: &[u8], key: &SigningKey) -> Envelope {
    let b64 = base64::engine::general_purpose::STANDARD;
    Envelope {
        payload: b64.encode(payload),
        payload_type: payload_type.into(),
        signatures: vec![EnvelopeSignature {
            keyid: key.public().keyid(),
            sig: b64.encode(key.sign(&pae(payload_type, payload))),
        }],
    }
}

/// Why an envelope does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// Not a DSSE envelope.
    #[error("not a DSSE envelope: {0}")]
    Malformed(String),
    /// No signature of the key verifies.
    #[error(
        "no signature in the envelope verifies with habd's key {keyid} ({signatures} signatures)"
    )]
    NotSigned {
        /// The key's id.
        keyid: String,
        /// How many signatures it carried.
        signatures: usize,
    },
    /// Signed, but not an in-toto Statement.
    #[error("the envelope's payload type is {0:?}, not {IN_TOTO_PAYLOAD}")]
    PayloadType(String),
}

/// Parses `bytes` as an envelope and checks it: some signature is `key`'s
/// over the payload and its type, and the type is an in-toto Statement.
/// Returns the payload.
///
/// # Errors
/// [`EnvelopeError`], naming what failed.
pub fn open(bytes: &[u8], key: &PublicKey) -> Result<Vec<u8>, EnvelopeError> {
    let env: Envelope =
        serde_json::from_slice(bytes).map_err(|e| EnvelopeError::Malformed(e.to_string()))?;
    let b64 = base64::engine::general_purpose::STANDARD;
    let payload = b64
        .decode(&env.payload)
        .map_err(|e| EnvelopeError::Malformed(format!("payload: {e}")))?;
    let message = pae(&env.payload_type, &payload);
    let signed = env.signatures.iter().any(|s| {
        b64.decode(&s.sig)
            .is_ok_and(|sig| key.verifies(&message, &sig))
    });
    if !signed {
        return Err(EnvelopeError::NotSigned {
            keyid: key.keyid(),
            signatures: env.signatures.len(),
        });
    }
    if env.payload_type != IN_TOTO_PAYLOAD {
        return Err(EnvelopeError::PayloadType(env.payload_type));
    }
    Ok(payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pae_is_the_specs() {
        // The DSSE protocol's own example.
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
        );
    }

    #[test]
    fn a_signature_counts_for_its_payload_and_type_only() {
        let dir = tempfile::tempdir().unwrap();
        let (key, _) = SigningKey::load_or_create(&dir.path().join("k")).unwrap();
        let (other, _) = SigningKey::load_or_create(&dir.path().join("o")).unwrap();
        let env = sign(IN_TOTO_PAYLOAD, b"{\"a\":1}", &key);
        let bytes = serde_json::to_vec(&env).unwrap();
        assert_eq!(open(&bytes, key.public()).unwrap(), b"{\"a\":1}");
        assert!(matches!(
            open(&bytes, other.public()),
            Err(EnvelopeError::NotSigned { .. })
        ));
        // The payload changed.
        let mut forged = env.clone();
        forged.payload = base64::engine::general_purpose::STANDARD.encode(b"{\"a\":2}");
        let e = open(&serde_json::to_vec(&forged).unwrap(), key.public()).unwrap_err();
        assert!(matches!(e, EnvelopeError::NotSigned { .. }), "{e}");
        // The type changed (same payload, same signature).
        let mut retyped = env.clone();
        retyped.payload_type = "text/plain".into();
        assert!(open(&serde_json::to_vec(&retyped).unwrap(), key.public()).is_err());
        // Signed as another type: the signature holds, the type does not.
        let plain = sign("text/plain", b"x", &key);
        assert!(matches!(
            open(&serde_json::to_vec(&plain).unwrap(), key.public()),
            Err(EnvelopeError::PayloadType(_))
        ));
        assert!(matches!(
            open(b"{", key.public()),
            Err(EnvelopeError::Malformed(_))
        ));
    }
}
