//! Build planning, as plain functions over plain data: the build key of a
//! platform, the version tag of a ref, the build arguments hab adds, and which
//! platforms of a release can reuse a verified image.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

/// One file of a recipe folder, as it enters the build key and the context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipeFile {
    /// Path relative to the recipe folder, `/`-separated.
    pub path: String,
    /// Unix mode bits (0o644, 0o755); 0o120000 for a symlink.
    pub mode: u32,
    /// File contents, or the symlink's target.
    pub content: Vec<u8>,
}

impl RecipeFile {
    /// True for a symbolic link.
    pub fn is_symlink(&self) -> bool {
        self.mode & 0o170000 == 0o120000
    }
}

/// Everything a platform's image is a function of.
#[derive(Debug, Clone)]
pub struct KeyInputs<'a> {
    /// The commit built.
    pub commit: &'a str,
    /// The recipe's files.
    pub recipe: &'a [RecipeFile],
    /// Every build argument passed (hab's and the pipeline's).
    pub args: &'a BTreeMap<String, String>,
    /// `linux/amd64`, `linux/arm64`.
    pub platform: &'a str,
    /// The base image's digest for this platform, when the recipe has one.
    pub base_digest: Option<&'a str>,
}

/// The build key: sha256 over a canonical text of the inputs. Two builds
/// with the same key would make the same image, so a key that verified once
/// is never built again (DESIGN.md invariant 3).
pub fn build_key(k: &KeyInputs<'_>) -> String {
    let mut h = Sha256::new();
    // The first line versions the scheme: changing what goes in changes every key.
    h.update(b"hab-build-key v1\n");
    h.update(format!("commit {}\n", k.commit));
    h.update(format!("platform {}\n", k.platform));
    h.update(format!("base {}\n", k.base_digest.unwrap_or("none")));
    for (name, value) in k.args {
        // Lengths, so no choice of names and values can collide with another.
        h.update(format!("arg {} {name} {} ", name.len(), value.len()));
        h.update(value.as_bytes());
        h.update(b"\n");
    }
    hash_recipe(&mut h, k.recipe);
    format!("sha256:{}", hex::encode(h.finalize()))
}

/// The digest of a recipe's files alone (each file's mode, path and
/// content's sha256, by path), as the build's provenance records it.
pub fn recipe_digest(recipe: &[RecipeFile]) -> String {
    let mut h = Sha256::new();
    hash_recipe(&mut h, recipe);
    format!("sha256:{}", hex::encode(h.finalize()))
}

fn hash_recipe(h: &mut Sha256, recipe: &[RecipeFile]) {
    let mut files: Vec<&RecipeFile> = recipe.iter().collect();
    files.sort_by(|a, b| a.path.cmp(&b.path));
    for f in files {
        let digest = hex::encode(Sha256::digest(&f.content));
        h.update(format!(
            "file {:o} {} {} {digest}\n",
            f.mode,
            f.path.len(),
            f.path
        ));
    }
}

/// The image tag for a ref: its short name with characters a tag cannot
/// hold replaced by `-` (`refs/tags/v27.1` → `v27.1`).
pub fn version_tag(ref_name: &str) -> String {
    let short = crate::refname::short(ref_name);
    let mut tag: String = short
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    if tag.starts_with(['.', '-']) || tag.is_empty() {
        tag.insert(0, '_');
    }
    tag.truncate(128);
    tag
}

/// The build arguments hab passes to every recipe, over the pipeline's own:
/// `VERSION`, `COMMIT`, `SOURCE_DATE_EPOCH` (the commit time, so timestamps
/// in the image are the commit's), and, when the pipeline names a base,
/// `BASE_IMAGE` (the target platform's image, by digest) and `BASE_INDEX`
/// (the base's index by digest: a cross-compiling stage takes the builder's
/// own platform from it). hab's win over the pipeline's: they describe
/// what is built.
pub fn build_args(
    pipeline_args: &BTreeMap<String, String>,
    version: &str,
    commit: &str,
    commit_time: i64,
    base: Option<(&str, Option<&str>)>,
) -> BTreeMap<String, String> {
    let mut args = pipeline_args.clone();
    args.insert("VERSION".into(), version.into());
    args.insert("COMMIT".into(), commit.into());
    args.insert("SOURCE_DATE_EPOCH".into(), commit_time.to_string());
    if let Some((image, index)) = base {
        args.insert("BASE_IMAGE".into(), image.into());
        args.insert("BASE_INDEX".into(), index.unwrap_or(image).into());
    }
    args
}

/// The OCI `architecture` of a platform (`linux/arm64` → `arm64`).
pub fn architecture(platform: &str) -> &str {
    platform.split('/').nth(1).unwrap_or(platform)
}

/// The OCI `os` of a platform (`linux/arm64` → `linux`).
pub fn os(platform: &str) -> &str {
    platform.split('/').next().unwrap_or(platform)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, content: &str) -> RecipeFile {
        RecipeFile {
            path: path.into(),
            mode: 0o644,
            content: content.as_bytes().to_vec(),
        }
    }

    fn key_with(f: impl FnOnce(&mut Vec<RecipeFile>, &mut BTreeMap<String, String>)) -> String {
        let mut recipe = vec![file("Dockerfile", "FROM scratch\n"), file("a.sh", "echo\n")];
        let mut args = BTreeMap::from([("VERSION".to_string(), "v1".to_string())]);
        f(&mut recipe, &mut args);
        build_key(&KeyInputs {
            commit: "c1",
            recipe: &recipe,
            args: &args,
            platform: "linux/amd64",
            base_digest: None,
        })
    }

    #[test]
    fn key_is_stable_and_ignores_file_order() {
        let a = key_with(|_, _| {});
        let b = key_with(|r, _| r.reverse());
        assert_eq!(a, b);
        assert!(a.starts_with("sha256:") && a.len() == 71);
    }

    #[test]
    fn every_input_changes_the_key() {
        let base = key_with(|_, _| {});
        let changed = [
            key_with(|r, _| r[1].content.push(b' ')),
            key_with(|r, _| r[1].mode = 0o755),
            key_with(|r, _| r[1].path = "b.sh".into()),
            key_with(|r, _| r.push(file("new", ""))),
            key_with(|_, a| {
                a.insert("X".into(), "1".into());
            }),
            key_with(|_, a| {
                a.insert("VERSION".into(), "v2".into());
            }),
        ];
        for k in &changed {
            assert_ne!(k, &base);
        }
        let recipe = vec![file("Dockerfile", "FROM scratch\n"), file("a.sh", "echo\n")];
        let args = BTreeMap::from([("VERSION".to_string(), "v1".to_string())]);
        let mk = |commit, platform, base_digest| {
            build_key(&KeyInputs {
                commit,
                recipe: &recipe,
                args: &args,
                platform,
                base_digest,
            })
        };
        assert_eq!(mk("c1", "linux/amd64", None), base);
        assert_ne!(mk("c2", "linux/amd64", None), base);
        assert_ne!(mk("c1", "linux/arm64", None), base);
        assert_ne!(mk("c1", "linux/amd64", Some("sha256:1")), base);
        assert_ne!(
            mk("c1", "linux/amd64", Some("sha256:1")),
            mk("c1", "linux/amd64", Some("sha256:2"))
        );
    }

    #[test]
    fn arg_boundaries_cannot_collide() {
        let a = key_with(|_, a| {
            a.insert("A".into(), "B C".into());
        });
        let b = key_with(|_, a| {
            a.insert("A B".into(), "C".into());
        });
        assert_ne!(a, b);
    }

    #[test]
    fn version_tags() {
        assert_eq!(version_tag("refs/tags/v27.1"), "v27.1");
        assert_eq!(version_tag("refs/heads/master"), "master");
        assert_eq!(version_tag("refs/tags/release/1.0+x"), "release-1.0-x");
        assert_eq!(version_tag("refs/tags/.hidden"), "_.hidden");
        assert_eq!(
            version_tag(&format!("refs/tags/{}", "a".repeat(200))).len(),
            128
        );
    }

    #[test]
    fn hab_args_win_over_the_pipeline() {
        let mine = BTreeMap::from([
            ("VERSION".to_string(), "fake".to_string()),
            ("JOBS".to_string(), "4".to_string()),
        ]);
        let args = build_args(
            &mine,
            "v1",
            "c1",
            1700000000,
            Some(("r/b@sha256:1", Some("r/b@sha256:i"))),
        );
        assert_eq!(args["VERSION"], "v1");
        assert_eq!(args["JOBS"], "4");
        assert_eq!(args["SOURCE_DATE_EPOCH"], "1700000000");
        assert_eq!(args["BASE_IMAGE"], "r/b@sha256:1");
        assert_eq!(args["BASE_INDEX"], "r/b@sha256:i");
        assert_eq!(architecture("linux/arm64"), "arm64");
        assert_eq!(os("linux/arm64"), "linux");
    }
}
