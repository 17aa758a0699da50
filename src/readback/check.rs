//! The read-back checks: pure functions over the bytes the registry sent
//! back (and what hab asked for), one per decision. Each returns the parsed
//! value or a [`Refusal`] whose text is what `habctl show` and the build's
//! log say.

use std::collections::BTreeMap;

use super::Refusal;
use crate::registry::{
    digest_of, parse_config_platform, parse_index, parse_manifest, Descriptor, FetchedBlob, Index,
    IndexManifest, Manifest,
};

/// The index's bytes are the ones asked for: they hash to `asked`.
///
/// # Errors
/// [`Refusal::IndexDiffers`].
pub fn index_digest(asked: &str, bytes: &[u8]) -> Result<(), Refusal> {
    let got = digest_of(bytes);
    if got == asked {
        Ok(())
    } else {
        Err(Refusal::IndexDiffers {
            asked: asked.into(),
            got,
        })
    }
}

/// The index's bytes are an image index (OCI, or a Docker manifest list).
///
/// # Errors
/// [`Refusal::NotAnIndex`].
pub fn index_parses(digest: &str, bytes: &[u8]) -> Result<Index, Refusal> {
    parse_index(bytes).map_err(|e| Refusal::NotAnIndex {
        digest: digest.into(),
        reason: e.to_string(),
    })
}

/// The one entry of `index` for the expected `platform` (`linux/arm64`).
///
/// # Errors
/// [`Refusal::PlatformMissing`] when it lists none, [`Refusal::PlatformTwice`]
/// when it lists several.
pub fn platform_entry<'a>(
    index_digest: &str,
    index: &'a Index,
    platform: &str,
) -> Result<&'a IndexManifest, Refusal> {
    match index.entries_for(platform).as_slice() {
        [] => Err(Refusal::PlatformMissing {
            index: index_digest.into(),
            platform: platform.into(),
        }),
        [m] => Ok(m),
        _ => Err(Refusal::PlatformTwice {
            index: index_digest.into(),
            platform: platform.into(),
        }),
    }
}

/// The platform an index entry is listed as, `os/architecture`, or
/// `unknown platform` when the index says none.
pub fn entry_platform(entry: &IndexManifest) -> String {
    entry
        .platform
        .as_ref()
        .map(|p| format!("{}/{}", p.os, p.architecture))
        .unwrap_or_else(|| "unknown platform".into())
}

/// A manifest's bytes are the ones the index lists: same digest, same size.
///
/// # Errors
/// [`Refusal::ManifestDiffers`].
pub fn manifest_digest(entry: &IndexManifest, platform: &str, bytes: &[u8]) -> Result<(), Refusal> {
    let got = digest_of(bytes);
    if got == entry.digest && bytes.len() as i64 == entry.size {
        Ok(())
    } else {
        Err(Refusal::ManifestDiffers {
            digest: entry.digest.clone(),
            platform: platform.into(),
            got,
            size: bytes.len(),
        })
    }
}

/// A manifest's bytes are an image manifest: its config and layers.
///
/// # Errors
/// [`Refusal::ManifestUnparsable`].
pub fn manifest_parses(
    entry: &IndexManifest,
    platform: &str,
    bytes: &[u8],
) -> Result<Manifest, Refusal> {
    parse_manifest(bytes).map_err(|e| Refusal::ManifestUnparsable {
        digest: entry.digest.clone(),
        platform: platform.into(),
        reason: e.to_string(),
    })
}

/// What an image's config blob is called in a refusal.
pub fn config_label(platform: &str) -> String {
    format!("config of {platform}")
}

/// What layer `i` (from 0) of `count` is called in a refusal.
pub fn layer_label(platform: &str, i: usize, count: usize) -> String {
    format!("layer {} of {count} of {platform}", i + 1)
}

/// A blob read back is the one `d` names: every byte arrived, hashing to
/// its digest, as many as it says. oci-client also checks the digest and
/// fails the stream's last read; when every byte arrived, hab's own hash
/// says plainly what happened, so a corrupt blob is named corrupt even
/// when the read failed.
///
/// # Errors
/// [`Refusal::BlobCorrupt`], [`Refusal::BlobUnreadable`] or
/// [`Refusal::BlobSize`].
pub fn blob(d: &Descriptor, what: &str, read: &FetchedBlob) -> Result<(), Refusal> {
    let corrupt = || Refusal::BlobCorrupt {
        digest: d.digest.clone(),
        what: what.into(),
        got: read.digest.clone(),
    };
    let whole = read.size as i64 == d.size;
    match &read.error {
        _ if whole && read.digest != d.digest => Err(corrupt()),
        Some(reason) => Err(Refusal::BlobUnreadable {
            digest: d.digest.clone(),
            what: what.into(),
            reason: reason.clone(),
        }),
        None if read.digest != d.digest => Err(corrupt()),
        None if !whole => Err(Refusal::BlobSize {
            digest: d.digest.clone(),
            what: what.into(),
            size: read.size,
            expected: d.size,
        }),
        None => Ok(()),
    }
}

/// An image's config names the platform the index lists the image as.
/// `image` is the image manifest's digest, `config` the config blob's
/// descriptor and `bytes` its content.
///
/// # Errors
/// [`Refusal::ConfigPlatform`] or [`Refusal::ConfigUnparsable`].
pub fn config_platform(
    image: &str,
    platform: &str,
    config: &Descriptor,
    bytes: &[u8],
) -> Result<(), Refusal> {
    match parse_config_platform(bytes) {
        Ok(c) if c == platform => Ok(()),
        Ok(c) => Err(Refusal::ConfigPlatform {
            image: image.into(),
            platform: platform.into(),
            config: c,
        }),
        Err(e) => Err(Refusal::ConfigUnparsable {
            digest: config.digest.clone(),
            platform: platform.into(),
            reason: e.to_string(),
        }),
    }
}

/// The images to smoke-run, as (platform, manifest digest): the expected
/// platforms that read back, in their order; every platform read back when
/// none is expected (an index no build of hab's pushed).
pub fn smoke_targets(
    expected: &[String],
    found: &BTreeMap<String, String>,
) -> Vec<(String, String)> {
    if expected.is_empty() {
        found.iter().map(|(p, d)| (p.clone(), d.clone())).collect()
    } else {
        expected
            .iter()
            .filter_map(|p| found.get(p).map(|d| (p.clone(), d.clone())))
            .collect()
    }
}

/// A smoke run passed: it ran and exited 0.
///
/// # Errors
/// [`Refusal::SmokeFailed`].
pub fn smoke_run(
    command: &[String],
    platform: &str,
    exit_code: Option<i64>,
    output: &str,
) -> Result<(), Refusal> {
    if exit_code == Some(0) {
        Ok(())
    } else {
        Err(Refusal::SmokeFailed {
            command: command.to_vec(),
            platform: platform.into(),
            exit_code,
            output: output.into(),
        })
    }
}

/// `repository` and `digest` of what to read back, given as
/// `[host/]repository@digest` (`host` is the registry's, and optional).
///
/// # Errors
/// [`Refusal::NotPinned`] when there is no `@`.
pub fn pinned_parts<'a>(host: &str, reference: &'a str) -> Result<(&'a str, &'a str), Refusal> {
    let reference = reference
        .strip_prefix(&format!("{host}/"))
        .unwrap_or(reference);
    reference.split_once('@').ok_or_else(|| Refusal::NotPinned {
        reference: reference.into(),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};
    use sha2::{Digest, Sha256};

    use super::*;

    /// The digest of `bytes`, computed here rather than by the code under
    /// test.
    fn sha(bytes: &[u8]) -> String {
        format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
    }

    fn bytes(v: &Value) -> Vec<u8> {
        serde_json::to_vec(v).unwrap()
    }

    /// An OCI index entry for `platform` (`linux/arm64`).
    fn mk_entry(platform: &str, manifest: &[u8]) -> Value {
        let (os, arch) = platform.split_once('/').unwrap();
        let mut p = json!({"os": os, "architecture": arch});
        if arch == "arm64" {
            p["variant"] = json!("v8");
        }
        json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": sha(manifest),
            "size": manifest.len(),
            "platform": p,
        })
    }

    fn mk_index(entries: Vec<Value>) -> Vec<u8> {
        bytes(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": entries,
            "annotations": {"io.hab.signer.fingerprint": "ABCD"},
        }))
    }

    fn mk_config(os: &str, arch: &str) -> Vec<u8> {
        bytes(&json!({
            "os": os,
            "architecture": arch,
            "rootfs": {"type": "layers", "diff_ids": []},
        }))
    }

    fn desc(blob: &[u8]) -> Descriptor {
        Descriptor {
            digest: sha(blob),
            size: blob.len() as i64,
        }
    }

    fn mk_manifest(config: &[u8], layers: &[&[u8]]) -> Vec<u8> {
        let d = |b: &[u8], t: &str| json!({"mediaType": t, "digest": sha(b), "size": b.len()});
        bytes(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": d(config, "application/vnd.oci.image.config.v1+json"),
            "layers": layers.iter().map(|l| d(l, "application/vnd.oci.image.layer.v1.tar+gzip")).collect::<Vec<_>>(),
        }))
    }

    /// What reading `blob` back whole and without error gives.
    fn fetched(blob: &[u8]) -> FetchedBlob {
        FetchedBlob {
            digest: sha(blob),
            size: blob.len() as u64,
            bytes: Vec::new(),
            error: None,
        }
    }

    fn entry(digest: &str, size: i64) -> IndexManifest {
        IndexManifest {
            digest: digest.into(),
            size,
            platform: None,
        }
    }

    #[test]
    fn the_digest_of_bytes_is_their_sha256() {
        assert_eq!(digest_of(b"hab"), sha(b"hab"));
    }

    #[test]
    fn a_sound_two_platform_index_passes_every_check() {
        let layers: [&[u8]; 2] = [b"layer one", b"layer two"];
        let (amd_cfg, arm_cfg) = (mk_config("linux", "amd64"), mk_config("linux", "arm64"));
        let amd = mk_manifest(&amd_cfg, &layers);
        let arm = mk_manifest(&arm_cfg, &layers[..1]);
        let index = mk_index(vec![
            mk_entry("linux/amd64", &amd),
            mk_entry("linux/arm64", &arm),
        ]);
        let d = sha(&index);
        index_digest(&d, &index).unwrap();
        let parsed = index_parses(&d, &index).unwrap();
        assert_eq!(
            parsed.annotations.as_ref().unwrap()["io.hab.signer.fingerprint"],
            "ABCD"
        );
        let expected = ["linux/amd64".to_string(), "linux/arm64".to_string()];
        for (want, (bytes, cfg)) in expected.iter().zip([(&amd, &amd_cfg), (&arm, &arm_cfg)]) {
            let e = platform_entry(&d, &parsed, want).unwrap();
            assert_eq!(e.digest, sha(bytes));
            let platform = entry_platform(e);
            assert_eq!(&platform, want);
            manifest_digest(e, &platform, bytes).unwrap();
            let m = manifest_parses(e, &platform, bytes).unwrap();
            assert_eq!(m.config, desc(cfg));
            blob(&m.config, &config_label(&platform), &fetched(cfg)).unwrap();
            config_platform(&e.digest, &platform, &m.config, cfg).unwrap();
            for (i, (l, raw)) in m.layers.iter().zip(layers).enumerate() {
                assert_eq!(l, &desc(raw));
                blob(l, &layer_label(&platform, i, m.layers.len()), &fetched(raw)).unwrap();
            }
        }
    }

    #[test]
    fn an_index_that_hashes_otherwise_is_refused() {
        let index = mk_index(vec![]);
        let asked = sha(b"what was pushed");
        assert_eq!(
            index_digest(&asked, &index).unwrap_err().to_string(),
            format!(
                "index {asked} read back as {}: the registry's copy differs",
                sha(&index)
            )
        );
    }

    #[test]
    fn bytes_that_are_not_an_index_are_refused() {
        let manifest = mk_manifest(b"{}", &[]);
        let d = sha(&manifest);
        assert_eq!(
            index_parses(&d, &manifest).unwrap_err().to_string(),
            format!(
                "index {d} is not an image index: missing field `manifests` at line 1 column {}",
                manifest.len()
            )
        );
        let r = index_parses(&d, b"not json").unwrap_err();
        assert!(matches!(r, Refusal::NotAnIndex { .. }), "{r:?}");
        assert!(
            r.to_string()
                .starts_with(&format!("index {d} is not an image index: expected ident")),
            "{r}"
        );
    }

    #[test]
    fn an_expected_platform_must_be_listed_exactly_once() {
        let (amd, arm) = (mk_manifest(b"a", &[]), mk_manifest(b"b", &[]));
        let index = index_parses("i", &mk_index(vec![mk_entry("linux/amd64", &amd)])).unwrap();
        assert_eq!(
            platform_entry("sha256:i", &index, "linux/arm64")
                .unwrap_err()
                .to_string(),
            "index sha256:i lists no linux/arm64 image"
        );
        let twice = index_parses(
            "i",
            &mk_index(vec![
                mk_entry("linux/arm64", &arm),
                mk_entry("linux/arm64", &amd),
            ]),
        )
        .unwrap();
        assert_eq!(
            platform_entry("sha256:i", &twice, "linux/arm64")
                .unwrap_err()
                .to_string(),
            "index sha256:i lists linux/arm64 more than once"
        );
        // A platform that is not a platform is simply not listed.
        assert!(matches!(
            platform_entry("sha256:i", &index, "amd64"),
            Err(Refusal::PlatformMissing { .. })
        ));
    }

    #[test]
    fn an_entry_without_a_platform_is_an_unknown_platform() {
        assert_eq!(entry_platform(&entry("sha256:x", 1)), "unknown platform");
        let index = index_parses("i", &mk_index(vec![mk_entry("linux/arm64", b"m")])).unwrap();
        assert_eq!(entry_platform(&index.manifests[0]), "linux/arm64");
    }

    #[test]
    fn a_manifest_must_hash_to_and_be_as_long_as_its_entry_says() {
        let m = mk_manifest(b"c", &[]);
        manifest_digest(&entry(&sha(&m), m.len() as i64), "linux/amd64", &m).unwrap();
        let other = mk_manifest(b"d", &[]);
        assert_eq!(
            manifest_digest(&entry(&sha(&m), m.len() as i64), "linux/amd64", &other)
                .unwrap_err()
                .to_string(),
            format!(
                "manifest {} (linux/amd64) read back as {}, {} bytes: the registry's copy differs",
                sha(&m),
                sha(&other),
                other.len()
            )
        );
        // The right bytes, where the index gives another size.
        assert_eq!(
            manifest_digest(&entry(&sha(&m), 7), "linux/amd64", &m),
            Err(Refusal::ManifestDiffers {
                digest: sha(&m),
                platform: "linux/amd64".into(),
                got: sha(&m),
                size: m.len(),
            })
        );
    }

    #[test]
    fn a_manifest_without_config_or_layers_is_refused() {
        let index = mk_index(vec![]);
        let e = entry(&sha(&index), index.len() as i64);
        assert_eq!(
            manifest_parses(&e, "linux/arm64", &index)
                .unwrap_err()
                .to_string(),
            format!(
                "manifest {} (linux/arm64) does not parse: missing field `config` at line 1 column {}",
                sha(&index),
                index.len()
            )
        );
    }

    #[test]
    fn a_config_must_name_the_platform_its_image_is_listed_as() {
        let cfg = mk_config("linux", "amd64");
        config_platform("sha256:m", "linux/amd64", &desc(&cfg), &cfg).unwrap();
        assert_eq!(
            config_platform("sha256:m", "linux/arm64", &desc(&cfg), &cfg)
                .unwrap_err()
                .to_string(),
            "image sha256:m is listed as linux/arm64 but its config says linux/amd64"
        );
        // An entry without a platform never matches its config.
        assert!(matches!(
            config_platform("sha256:m", "unknown platform", &desc(&cfg), &cfg),
            Err(Refusal::ConfigPlatform { .. })
        ));
        let no_arch = bytes(&json!({"os": "linux"}));
        assert_eq!(
            config_platform("sha256:m", "linux/amd64", &desc(&no_arch), &no_arch)
                .unwrap_err()
                .to_string(),
            format!(
                "config {} (linux/amd64) does not parse: missing field `architecture` at line 1 column {}",
                sha(&no_arch),
                no_arch.len()
            )
        );
    }

    #[test]
    fn a_blob_whose_bytes_hash_otherwise_is_corrupt() {
        let layer = b"the layer pushed";
        let d = desc(layer);
        let mut read = fetched(b"the layer bytes!");
        assert_eq!(read.size as i64, d.size);
        let what = layer_label("linux/amd64", 1, 3);
        let corrupt = format!(
            "blob {} (layer 2 of 3 of linux/amd64) read back as {}: the registry's copy is corrupt",
            d.digest, read.digest
        );
        assert_eq!(blob(&d, &what, &read).unwrap_err().to_string(), corrupt);
        // oci-client fails the last read of a corrupt stream: every byte
        // arrived, so the blob is named corrupt all the same.
        read.error = Some("digest mismatch".into());
        assert_eq!(blob(&d, &what, &read).unwrap_err().to_string(), corrupt);
        // Fewer bytes, read to the end: corrupt too.
        let short = fetched(b"the layer");
        assert!(matches!(
            blob(&d, &what, &short),
            Err(Refusal::BlobCorrupt { .. })
        ));
    }

    #[test]
    fn a_blob_whose_read_failed_part_way_could_not_be_read_back() {
        let layer = b"the layer pushed";
        let d = desc(layer);
        let read = FetchedBlob {
            error: Some("connection dropped; gave up after 5 attempts over 7.5s".into()),
            ..fetched(b"the layer")
        };
        assert_eq!(
            blob(&d, &config_label("linux/arm64"), &read)
                .unwrap_err()
                .to_string(),
            format!(
                "blob {} (config of linux/arm64) could not be read back: connection dropped; gave up after 5 attempts over 7.5s",
                d.digest
            )
        );
    }

    #[test]
    fn a_blob_longer_than_its_manifest_says_is_refused() {
        let layer = b"the layer pushed";
        let d = Descriptor {
            size: 3,
            ..desc(layer)
        };
        assert_eq!(
            blob(&d, "layer 1 of 1 of linux/amd64", &fetched(layer))
                .unwrap_err()
                .to_string(),
            format!(
                "blob {} (layer 1 of 1 of linux/amd64) read back with {} bytes, the manifest says 3",
                d.digest,
                layer.len()
            )
        );
    }

    #[test]
    fn smoke_runs_the_expected_platforms_that_read_back_or_all() {
        let found: BTreeMap<String, String> = [
            ("linux/amd64".to_string(), "sha256:a".to_string()),
            ("linux/arm64".to_string(), "sha256:b".to_string()),
        ]
        .into();
        let all = vec![
            ("linux/amd64".to_string(), "sha256:a".to_string()),
            ("linux/arm64".to_string(), "sha256:b".to_string()),
        ];
        assert_eq!(smoke_targets(&[], &found), all);
        assert_eq!(
            smoke_targets(
                &[
                    "linux/arm64".into(),
                    "linux/riscv64".into(),
                    "linux/amd64".into()
                ],
                &found
            ),
            vec![
                ("linux/arm64".to_string(), "sha256:b".to_string()),
                ("linux/amd64".to_string(), "sha256:a".to_string()),
            ]
        );
        assert!(smoke_targets(&["linux/arm64".into()], &BTreeMap::new()).is_empty());
    }

    #[test]
    fn a_smoke_run_passes_only_when_it_exits_zero() {
        let cmd = vec!["bitcoind".to_string(), "-version".to_string()];
        smoke_run(&cmd, "linux/amd64", Some(0), "Bitcoin Core version v27.0\n").unwrap();
        assert_eq!(
            smoke_run(&cmd, "linux/amd64", Some(3), "  bad\n")
                .unwrap_err()
                .to_string(),
            "smoke command `bitcoind -version` on linux/amd64 exited 3: bad"
        );
        assert_eq!(
            smoke_run(&cmd, "linux/arm64", None, "no builder runs linux/arm64")
                .unwrap_err()
                .to_string(),
            "smoke command `bitcoind -version` on linux/arm64 could not run: no builder runs linux/arm64"
        );
    }

    #[test]
    fn what_to_read_back_is_repository_at_digest_with_or_without_the_host() {
        let host = "127.0.0.1:5000";
        assert_eq!(
            pinned_parts(host, "127.0.0.1:5000/hab/node@sha256:ab"),
            Ok(("hab/node", "sha256:ab"))
        );
        assert_eq!(
            pinned_parts(host, "hab/node@sha256:ab"),
            Ok(("hab/node", "sha256:ab"))
        );
        assert_eq!(
            pinned_parts(host, "127.0.0.1:5000/hab/node:v27")
                .unwrap_err()
                .to_string(),
            "\"hab/node:v27\" is not repository@sha256:digest"
        );
    }
}
