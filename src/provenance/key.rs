//! habd's ed25519 signing key: made at first start (mode 0600) or supplied,
//! written and read as standard PEM so that OpenSSL, Python's
//! `cryptography` and `securesystemslib` read the same files.
//!
//! The private key is a PKCS#8 v1 `PrivateKeyInfo` (RFC 8410), the form
//! OpenSSL writes and every reader accepts (OpenSSL 3.0 and `cryptography`
//! refuse the v2 form ring would write); the public key is a
//! `SubjectPublicKeyInfo`.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};
use sha2::{Digest, Sha256};

/// DER of a PKCS#8 v1 ed25519 private key, before the 32-byte seed.
const PKCS8_V1_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];
/// DER of an ed25519 `SubjectPublicKeyInfo`, before the 32-byte key.
const SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// Errors reading, making or using a key.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The key file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not a key of the kind expected.
    #[error("{path}: {reason}")]
    Malformed {
        /// The key file (or what held the key).
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A private key file others (not its owner or group) can use.
    #[error("{path} is open to others (mode {mode:o}): chmod 600 {path}")]
    Exposed {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
}

/// habd's signing key (private).
pub struct SigningKey {
    pair: Ed25519KeyPair,
    public: PublicKey,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("keyid", &self.public.keyid())
            .finish_non_exhaustive()
    }
}

/// An ed25519 public key: habd's, as an auditor holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey([u8; 32]);

impl SigningKey {
    /// Reads the key at `path`, or makes one there (mode 0600) when there is
    /// none. Returns the key and whether it was made now.
    ///
    /// # Errors
    /// The file cannot be read or written, is not an ed25519 PKCS#8 key, or
    /// others can read it.
    pub fn load_or_create(path: &Path) -> Result<(Self, bool), KeyError> {
        match Self::load(path) {
            Err(KeyError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                let seed: [u8; 32] = {
                    let mut s = [0u8; 32];
                    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut s)
                        .map_err(|_| KeyError::Malformed {
                            path: path.to_path_buf(),
                            reason: "the system's random source failed".into(),
                        })?;
                    s
                };
                let mut der = PKCS8_V1_PREFIX.to_vec();
                der.extend_from_slice(&seed);
                let pem = pem_encode("PRIVATE KEY", &der);
                crate::secrets::write_private(path, pem.as_bytes()).map_err(|source| {
                    KeyError::Io {
                        path: path.to_path_buf(),
                        source,
                    }
                })?;
                Ok((Self::load(path)?, true))
            }
            other => other.map(|k| (k, false)),
        }
    }

    /// Reads a PEM `PRIVATE KEY` (PKCS#8, v1 or v2) from `path`.
    ///
    /// # Errors
    /// As [`SigningKey::load_or_create`], but a missing file is an error.
    /// A file others can read or write is refused; its group may read it.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let io = |source| KeyError::Io {
            path: path.to_path_buf(),
            source,
        };
        let text = std::fs::read_to_string(path).map_err(io)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path).map_err(io)?.permissions().mode() & 0o777;
            // Others, never; the group may read it (Kubernetes gives a
            // pod's volumes to its fsGroup, group-readable).
            if mode & 0o007 != 0 {
                return Err(KeyError::Exposed {
                    path: path.to_path_buf(),
                    mode,
                });
            }
        }
        let malformed = |reason: String| KeyError::Malformed {
            path: path.to_path_buf(),
            reason,
        };
        let der = pem_decode(&text, "PRIVATE KEY").map_err(malformed)?;
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der).map_err(|e| {
            malformed(format!(
                "not an ed25519 PKCS#8 private key ({e}); make one with `openssl genpkey -algorithm ed25519`"
            ))
        })?;
        let public = PublicKey(
            pair.public_key()
                .as_ref()
                .try_into()
                .expect("an ed25519 public key is 32 bytes"),
        );
        Ok(SigningKey { pair, public })
    }

    /// Its public half.
    pub fn public(&self) -> &PublicKey {
        &self.public
    }

    /// Signs `message` (a DSSE pre-authentication encoding).
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.pair.sign(message).as_ref().to_vec()
    }
}

impl PublicKey {
    /// Reads a PEM `PUBLIC KEY` (an ed25519 `SubjectPublicKeyInfo`), or an
    /// OpenSSH `ssh-ed25519 AAAA…` line.
    ///
    /// # Errors
    /// Neither form, or not an ed25519 key.
    pub fn parse(text: &str) -> Result<Self, String> {
        let trimmed = text.trim();
        if let Some(rest) = trimmed.strip_prefix("ssh-ed25519 ") {
            let b64 = rest.split_whitespace().next().unwrap_or("");
            let blob = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|e| format!("OpenSSH key: {e}"))?;
            // string "ssh-ed25519", string key
            let want = [&[0, 0, 0, 11][..], b"ssh-ed25519", &[0, 0, 0, 32]].concat();
            return match blob.strip_prefix(want.as_slice()) {
                Some(k) if k.len() == 32 => Ok(PublicKey(k.try_into().expect("32 bytes"))),
                _ => Err("not an ssh-ed25519 public key".into()),
            };
        }
        let der = pem_decode(trimmed, "PUBLIC KEY")?;
        match der.strip_prefix(SPKI_PREFIX.as_slice()) {
            Some(k) if k.len() == 32 => Ok(PublicKey(k.try_into().expect("32 bytes"))),
            _ => Err("not an ed25519 public key (SubjectPublicKeyInfo)".into()),
        }
    }

    /// Reads a public key file (PEM or OpenSSH).
    ///
    /// # Errors
    /// Unreadable, or neither form.
    pub fn read(path: &Path) -> Result<Self, KeyError> {
        let text = std::fs::read_to_string(path).map_err(|source| KeyError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text).map_err(|reason| KeyError::Malformed {
            path: path.to_path_buf(),
            reason,
        })
    }

    /// The 32 bytes.
    pub fn bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// PEM `PUBLIC KEY`, as `openssl pkey -pubout` writes it.
    pub fn pem(&self) -> String {
        let mut der = SPKI_PREFIX.to_vec();
        der.extend_from_slice(&self.0);
        pem_encode("PUBLIC KEY", &der)
    }

    /// The OpenSSH one-line form (`ssh-ed25519 AAAA… comment`).
    pub fn openssh(&self, comment: &str) -> String {
        let blob = [&[0, 0, 0, 11][..], b"ssh-ed25519", &[0, 0, 0, 32], &self.0].concat();
        format!(
            "ssh-ed25519 {} {comment}",
            base64::engine::general_purpose::STANDARD.encode(blob)
        )
    }

    /// The key id securesystemslib gives this key by default: the sha256
    /// of its canonical JSON form. DSSE signatures carry it.
    pub fn keyid(&self) -> String {
        let canonical = format!(
            r#"{{"keytype":"ed25519","keyval":{{"public":"{}"}},"scheme":"ed25519"}}"#,
            hex::encode(self.0)
        );
        hex::encode(Sha256::digest(canonical.as_bytes()))
    }

    /// Whether `signature` is this key's over `message`.
    pub fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        UnparsedPublicKey::new(&ED25519, &self.0)
            .verify(message, signature)
            .is_ok()
    }
}

fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn pem_decode(text: &str, label: &str) -> Result<Vec<u8>, String> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = text
        .find(&begin)
        .ok_or_else(|| format!("no {begin} line"))?
        + begin.len();
    let stop = text[start..]
        .find(&end)
        .ok_or_else(|| format!("no {end} line"))?
        + start;
    let b64: String = text[start..stop]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| format!("bad base64 in the PEM block: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_made_key_is_private_reloads_and_signs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("habd.key");
        let (key, made) = SigningKey::load_or_create(&path).unwrap();
        assert!(made);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let (again, made) = SigningKey::load_or_create(&path).unwrap();
        assert!(!made);
        assert_eq!(key.public(), again.public());
        let sig = key.sign(b"hello");
        assert!(key.public().verifies(b"hello", &sig));
        assert!(!key.public().verifies(b"hellO", &sig));
        // Both public forms read back as the same key.
        assert_eq!(
            &PublicKey::parse(&key.public().pem()).unwrap(),
            key.public()
        );
        assert_eq!(
            &PublicKey::parse(&key.public().openssh("habd")).unwrap(),
            key.public()
        );
        // A key others can read is refused, with the fix.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            let e = SigningKey::load(&path).unwrap_err().to_string();
            assert!(e.contains("chmod 600"), "{e}");
        }
    }

    #[test]
    fn rfc8032_test_vector_1() {
        // RFC 8032 section 7.1, TEST 1: the seed, its public key, and the
        // signature of the empty message.
        let seed = hex::decode("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        let der = [PKCS8_V1_PREFIX.as_slice(), &seed].concat();
        crate::secrets::write_private(&path, pem_encode("PRIVATE KEY", &der).as_bytes()).unwrap();
        let key = SigningKey::load(&path).unwrap();
        assert_eq!(
            hex::encode(key.public().bytes()),
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
        );
        assert_eq!(
            hex::encode(key.sign(b"")),
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
        );
    }

    #[test]
    fn other_keys_are_refused_with_a_reason() {
        assert!(PublicKey::parse("ssh-rsa AAAAB3NzaC1yc2E= x").is_err());
        let e = PublicKey::parse(
            "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA\n-----END PUBLIC KEY-----\n",
        )
        .unwrap_err();
        assert!(e.contains("ed25519"), "{e}");
    }
}
