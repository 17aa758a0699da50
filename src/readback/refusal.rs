//! Why read-back refuses an image: one variant per decision of
//! [`super::check`], each with the words the build's log, its reason and
//! `habctl verify` show.

/// Why read-back refuses what the registry sent, or what a smoke run did.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The index's bytes do not hash to the digest asked for.
    #[error("index {asked} read back as {got}: the registry's copy differs")]
    IndexDiffers {
        /// The digest asked for.
        asked: String,
        /// The digest of the bytes sent.
        got: String,
    },
    /// The index's bytes are not an image index.
    #[error("index {digest} is not an image index: {reason}")]
    NotAnIndex {
        /// The index.
        digest: String,
        /// The parser's words.
        reason: String,
    },
    /// The index lists no image for an expected platform.
    #[error("index {index} lists no {platform} image")]
    PlatformMissing {
        /// The index.
        index: String,
        /// `linux/arm64`.
        platform: String,
    },
    /// The index lists an expected platform more than once.
    #[error("index {index} lists {platform} more than once")]
    PlatformTwice {
        /// The index.
        index: String,
        /// `linux/arm64`.
        platform: String,
    },
    /// A manifest's bytes do not hash to, or are not as long as, what the
    /// index says.
    #[error("manifest {digest} ({platform}) read back as {got}, {size} bytes: the registry's copy differs")]
    ManifestDiffers {
        /// The digest the index lists.
        digest: String,
        /// Its platform, as the index says.
        platform: String,
        /// The digest of the bytes sent.
        got: String,
        /// Their length.
        size: usize,
    },
    /// A manifest's bytes are not an image manifest.
    #[error("manifest {digest} ({platform}) does not parse: {reason}")]
    ManifestUnparsable {
        /// The manifest.
        digest: String,
        /// Its platform, as the index says.
        platform: String,
        /// The parser's words.
        reason: String,
    },
    /// An image's config names another platform than the index lists it as.
    #[error("image {image} is listed as {platform} but its config says {config}")]
    ConfigPlatform {
        /// The image manifest's digest.
        image: String,
        /// The platform the index lists it as.
        platform: String,
        /// The platform its config names.
        config: String,
    },
    /// An image's config has no `os` and `architecture`.
    #[error("config {digest} ({platform}) does not parse: {reason}")]
    ConfigUnparsable {
        /// The config blob.
        digest: String,
        /// Its platform, as the index says.
        platform: String,
        /// The parser's words.
        reason: String,
    },
    /// Every byte of a blob arrived, and they hash to another digest.
    #[error("blob {digest} ({what}) read back as {got}: the registry's copy is corrupt")]
    BlobCorrupt {
        /// The blob.
        digest: String,
        /// Which blob of which image ([`super::check::config_label`],
        /// [`super::check::layer_label`]).
        what: String,
        /// The digest of the bytes sent.
        got: String,
    },
    /// A blob's read failed before every byte arrived.
    #[error("blob {digest} ({what}) could not be read back: {reason}")]
    BlobUnreadable {
        /// The blob.
        digest: String,
        /// Which blob of which image.
        what: String,
        /// Why the read failed.
        reason: String,
    },
    /// A blob hashes right but is not as long as its manifest says.
    #[error("blob {digest} ({what}) read back with {size} bytes, the manifest says {expected}")]
    BlobSize {
        /// The blob.
        digest: String,
        /// Which blob of which image.
        what: String,
        /// Bytes that arrived.
        size: u64,
        /// The size the manifest gives.
        expected: i64,
    },
    /// A platform's smoke command did not exit 0.
    #[error(
        "smoke command `{}` on {platform} {}: {}",
        .command.join(" "),
        .exit_code.map_or("could not run".to_string(), |c| format!("exited {c}")),
        .output.trim()
    )]
    SmokeFailed {
        /// The command.
        command: Vec<String>,
        /// `linux/arm64`.
        platform: String,
        /// Its exit code; None when it could not run.
        exit_code: Option<i64>,
        /// Its output, or why it could not run.
        output: String,
    },
    /// What to read back is not `repository@digest`.
    #[error("{reference:?} is not repository@sha256:digest")]
    NotPinned {
        /// As given, without the registry's host.
        reference: String,
    },
}
