//! Which hash algorithms are accepted, for what, and until when: Sequoia's
//! `StandardPolicy` cutoffs, compared with the time a signature says it was
//! made.

use pgp::{crypto::hash::HashAlgorithm, packet::Signature};

/// 2013-02-01T00:00:00Z: Sequoia's `Y2013M2`, from when SHA-1 is refused where
/// collision resistance is needed (data signatures), and RIPEMD-160 everywhere.
pub(super) const Y2013M2: u32 = 1_359_676_800;

/// 2023-02-01T00:00:00Z: Sequoia's `Y2023M2`, from when SHA-1 is refused where
/// only second-preimage resistance is needed (self-signatures).
pub(super) const Y2023M2: u32 = 1_675_209_600;

/// What a hash algorithm is used for, which decides the cutoff that applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum HashUse {
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
pub(super) fn hash_cutoff(hash: HashAlgorithm, usage: HashUse) -> Option<u32> {
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
pub(super) fn refused_hash(sig: &Signature, usage: HashUse) -> Option<(HashAlgorithm, u32)> {
    let hash = sig.hash_alg()?;
    hash_cutoff(hash, usage)
        .filter(|cutoff| created(sig) >= *cutoff)
        .map(|cutoff| (hash, cutoff))
}

/// When a signature says it was made (0 when it does not say).
pub(super) fn created(sig: &Signature) -> u32 {
    sig.created().map(|t| t.as_secs()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::super::key::ts;
    use super::*;

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
}
