//! What habctl does without habd: the offline check of a digest's signed
//! provenance (`habctl verify --offline`), making the recipes' base image
//! (`habctl base-image`), and ending quietly on a closed pipe.

use std::{path::Path, process::ExitCode};

use super::ClientError;
use crate::{
    config::{RegistryConfig, DEFAULT_REGISTRY_TIMEOUT},
    provenance::{
        layout::{audit_evidence, from_registry, Layout},
        Audit, PublicKey,
    },
    registry::Registry,
    signature::Keyring,
};

/// What `habctl verify --offline` checked, for its report.
#[derive(Debug, Clone, serde::Serialize)]
pub struct OfflineReport {
    /// The reference checked.
    pub reference: String,
    /// Where it was read (a registry URL or a layout directory).
    pub source: String,
    /// habd's key id.
    pub habd_key: String,
    /// The builder the statement names.
    pub builder: String,
    /// The pipeline and ref built.
    pub pipeline: String,
    /// The full ref.
    pub ref_name: String,
    /// The commit.
    pub commit: String,
    /// The platform manifests, each a subject.
    pub manifests: Vec<String>,
    /// The maintainer key that signed the tag, and its primary key.
    pub signer: String,
    /// Its primary key.
    pub primary: String,
    /// When habd verified the build.
    pub verified_at: Option<String>,
}

/// Splits `[host/]repository@sha256:…` into (host, repository, digest).
fn parts(target: &str) -> Result<(Option<&str>, &str, &str), ClientError> {
    let bad = || {
        ClientError::Failed(format!(
            "{target:?} is not REPOSITORY@sha256:… (like 127.0.0.1:5000/hab/bitcoind@sha256:…)"
        ))
    };
    let (name, digest) = target.rsplit_once('@').ok_or_else(bad)?;
    let hex = digest.strip_prefix("sha256:").ok_or_else(bad)?;
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad());
    }
    // A first component with a dot or a colon, or `localhost`, is a host.
    match name.split_once('/') {
        Some((h, repo)) if h.contains(['.', ':']) || h == "localhost" => {
            Ok((Some(h), repo, digest))
        }
        _ => Ok((None, name, digest)),
    }
}

/// Checks `target`'s signed provenance with no habd and no store: reads
/// the index and its attestations from `layout`, or else from the registry
/// `target` names, and audits them
/// ([`crate::provenance::layout::audit_evidence`]).
///
/// # Errors
/// A key, keyring, layout or registry that cannot be read, or a check that
/// fails (named).
pub async fn verify_offline(
    target: &str,
    key: &Path,
    keyring: &Path,
    layout: Option<&Path>,
) -> Result<OfflineReport, ClientError> {
    let failed = |e: String| ClientError::Failed(e);
    let (host, repository, digest) = parts(target)?;
    let habd = PublicKey::read(key).map_err(|e| failed(format!("habd's key: {e}")))?;
    let keyring = Keyring::load(keyring).map_err(|e| failed(e.to_string()))?;
    let (evidence, source) = match layout {
        Some(dir) => {
            let l = Layout::open(dir).map_err(failed)?;
            (
                l.evidence(digest).map_err(failed)?,
                dir.display().to_string(),
            )
        }
        None => {
            let host = host.ok_or_else(|| {
                failed(format!(
                    "{target} names no registry host: give one (HOST/REPOSITORY@sha256:…) or --layout DIR"
                ))
            })?;
            let local = host.starts_with("127.") || host.starts_with("localhost");
            let url = format!("{}://{host}", if local { "http" } else { "https" });
            let cfg = RegistryConfig {
                url: url.parse().map_err(|e| failed(format!("{url}: {e}")))?,
                username: None,
                password_file: None,
                pull_host: None,
                timeout: DEFAULT_REGISTRY_TIMEOUT,
            };
            let registry = Registry::new(&cfg).map_err(|e| failed(e.to_string()))?;
            let e = from_registry(&registry, repository, digest)
                .await
                .map_err(|e| failed(e.to_string()))?;
            (e, url)
        }
    };
    let Audit {
        claims,
        manifests,
        signer,
        primary,
    } = audit_evidence(digest, &evidence, &habd, &keyring)
        .map_err(|f| failed(format!("{target} does not verify: {f}")))?;
    Ok(OfflineReport {
        reference: target.to_string(),
        source,
        habd_key: habd.keyid(),
        builder: claims.builder,
        pipeline: claims.pipeline,
        ref_name: claims.ref_name,
        commit: claims.commit,
        manifests,
        signer,
        primary,
        verified_at: claims.finished,
    })
}

/// The report of a passed offline check, for people.
pub fn offline_report(r: &OfflineReport) -> String {
    let mut out = format!("VERIFIED {} (read from {})\n", r.reference, r.source);
    out.push_str(&format!(
        "  attestation  DSSE signature by habd's key {} (builder {}), verified {}\n",
        &r.habd_key[..16],
        r.builder,
        r.verified_at.as_deref().unwrap_or("at an unrecorded time")
    ));
    out.push_str(&format!(
        "  subjects     the index and its {} platform manifests\n",
        r.manifests.len()
    ));
    out.push_str(&format!(
        "  source       {} of {} (pipeline {})\n",
        r.commit, r.ref_name, r.pipeline
    ));
    out.push_str(&format!(
        "  tag          signed by {} (primary key {}), names that commit\n",
        r.signer, r.primary
    ));
    out
}

/// scripts/base-image.sh, carried inside habctl so the command works where
/// only the binary is installed.
const BASE_IMAGE_SCRIPT: &str = include_str!("../../scripts/base-image.sh");

/// `habctl base-image`: runs the script that makes the recipes' base image.
pub fn base_image(registry: &str, name: &str) -> ExitCode {
    let dir = std::env::temp_dir().join(format!("habctl-base-image-{}", std::process::id()));
    let script = dir.join("base-image.sh");
    let run = std::fs::create_dir_all(&dir)
        .and_then(|()| std::fs::write(&script, BASE_IMAGE_SCRIPT))
        .and_then(|()| {
            std::process::Command::new("bash")
                .arg(&script)
                .args([registry, name])
                .current_dir(&dir)
                .status()
        });
    let _ = std::fs::remove_dir_all(&dir);
    match run {
        Ok(s) if s.success() => ExitCode::SUCCESS,
        Ok(s) => {
            eprintln!("habctl: making the base image failed ({s})");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("habctl: cannot run bash: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `habctl show 12 | head` closes stdout early: end quietly, as a program
/// killed by SIGPIPE would (exit 141), instead of a panic's backtrace.
/// Rust ignores SIGPIPE, and restoring it needs unsafe code, which this
/// crate forbids.
pub fn quiet_on_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if msg.contains("failed printing to stdout") && msg.contains("Broken pipe") {
            std::process::exit(141);
        }
        default(info);
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_split_into_host_repository_and_digest() {
        let d = format!("sha256:{}", "a".repeat(64));
        let full = format!("127.0.0.1:5000/hab/node@{d}");
        let (h, r, g) = parts(&full).unwrap();
        assert_eq!((h, r, g), (Some("127.0.0.1:5000"), "hab/node", d.as_str()));
        let short = format!("hab/node@{d}");
        let (h, r, _) = parts(&short).unwrap();
        assert_eq!((h, r), (None, "hab/node"));
        assert!(parts("hab/node:v1").is_err());
        assert!(parts("hab/node@sha256:abc").is_err());
    }
}
