//! Signed provenance: when a build becomes VERIFIED, habd signs an in-toto
//! Statement of how it was made (SLSA Provenance v1, the maintainer's
//! signed tag object inside) as a DSSE envelope with its own ed25519 key,
//! and attaches it to the image index in the registry. A rollout asks for
//! it before touching a node; an auditor re-checks it offline, with two
//! public keys and no hab store (`habctl verify --offline`).
//!
//! By concern: [`key`] (habd's key, PEM and OpenSSH forms), [`dsse`] (the
//! envelope), [`statement`] (what is signed, and the claims read back),
//! [`check`] (the checks, pure), [`layout`] (an OCI image layout on disk),
//! and here the adapter that signs, attaches and finds attestations.

pub mod check;
pub mod dsse;
pub mod key;
pub mod layout;
pub mod statement;

use std::sync::Arc;

use crate::registry::{Registry, RegistryError};
pub use check::{Audit, Failure};
pub use key::{KeyError, PublicKey, SigningKey};
pub use statement::{BuildFacts, Claims, PlatformFacts};

/// The media type of an attestation's one layer.
pub const DSSE_MEDIA_TYPE: &str = "application/vnd.dsse.envelope.v1+json";
/// The artifact type of an attestation manifest.
pub const ATTESTATION_TYPE: &str = dsse::IN_TOTO_PAYLOAD;

/// Errors attesting or checking.
#[derive(Debug, thiserror::Error)]
pub enum ProvenanceError {
    /// The registry failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// What the registry holds does not vouch for the digest.
    #[error(transparent)]
    Failure(#[from] Failure),
}

/// An attestation as attached.
#[derive(Debug, Clone)]
pub struct Attested {
    /// The attestation manifest's digest.
    pub manifest: String,
    /// The fallback tag that lists it.
    pub fallback_tag: String,
    /// Whether the registry's referrers API lists it too.
    pub referrers_api: bool,
    /// The envelope's size in bytes.
    pub size: usize,
}

/// habd's signer and checker of attestations.
#[derive(Clone)]
pub struct Provenance {
    key: Arc<SigningKey>,
    registry: Registry,
}

impl std::fmt::Debug for Provenance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provenance")
            .field("keyid", &self.key.public().keyid())
            .finish_non_exhaustive()
    }
}

impl Provenance {
    /// Over habd's key and the registry.
    pub fn new(key: Arc<SigningKey>, registry: Registry) -> Self {
        Provenance { key, registry }
    }

    /// habd's public key.
    pub fn public_key(&self) -> &PublicKey {
        self.key.public()
    }

    /// The builder id the statements carry: habd, named by its key.
    pub fn builder_id(&self) -> String {
        format!("urn:hab:habd:{}", &self.key.public().keyid()[..16])
    }

    /// Signs the statement of `facts` and attaches it to the index
    /// (`index_size` bytes).
    ///
    /// # Errors
    /// The registry failed.
    pub async fn attest(
        &self,
        facts: &BuildFacts,
        index_size: i64,
    ) -> Result<Attested, ProvenanceError> {
        let payload =
            serde_json::to_vec(&statement::statement(facts)).expect("a statement serializes");
        let envelope = dsse::sign(dsse::IN_TOTO_PAYLOAD, &payload, &self.key);
        let bytes = serde_json::to_vec(&envelope).expect("an envelope serializes");
        let a = self
            .registry
            .attach(
                &facts.repository,
                (&facts.index_digest, index_size),
                ATTESTATION_TYPE,
                DSSE_MEDIA_TYPE,
                &bytes,
            )
            .await?;
        Ok(Attested {
            manifest: a.manifest,
            fallback_tag: a.fallback_tag,
            referrers_api: a.referrers_api,
            size: bytes.len(),
        })
    }

    /// The rollout's question: does the registry hold an attestation of
    /// `repository@digest` signed by habd's key, naming the digest? Returns
    /// the claims of the first that does.
    ///
    /// # Errors
    /// [`Failure::Missing`] when none is attached; otherwise the failure of
    /// the last one found; or the registry failed.
    pub async fn check(&self, repository: &str, digest: &str) -> Result<Claims, ProvenanceError> {
        let mut last = Failure::Missing {
            digest: digest.into(),
        };
        for (_, envelope) in layout::envelopes(&self.registry, repository, digest).await? {
            match envelope.and_then(|e| check::attested(&e, digest, self.key.public())) {
                Ok(c) => return Ok(c),
                Err(f) => last = f,
            }
        }
        Err(last.into())
    }
}
