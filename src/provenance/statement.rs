//! The in-toto Statement v1 habd signs for a VERIFIED build, with an SLSA
//! Provenance v1 predicate, and the claims a checker reads back out of it.
//!
//! Where hab's facts sit in the predicate:
//! - `buildDefinition.externalParameters`: pipeline, ref, recipe, source,
//!   platforms (what an operator chose);
//! - `buildDefinition.internalParameters`: each platform's build key and
//!   build arguments;
//! - `buildDefinition.resolvedDependencies`: the source (`gitCommit`), the
//!   maintainer's signed tag object itself (`gitTag`, its raw bytes in
//!   `content`, the verdict and signer in `annotations`), the recipe
//!   (`sha256` of its files), each platform's base image;
//! - `runDetails`: habd as builder (its key id), the build's times, and the
//!   read-back and smoke results as a byproduct.

use base64::Engine as _;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};

/// The Statement's `_type`.
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
/// The predicate type: SLSA Provenance v1.
pub const SLSA_PROVENANCE: &str = "https://slsa.dev/provenance/v1";
/// The build type of hab's recipe builds.
pub const BUILD_TYPE: &str = "urn:hab:build-type:recipe:v1";

/// One platform image of a build.
#[derive(Debug, Clone)]
pub struct PlatformFacts {
    /// `linux/amd64`.
    pub platform: String,
    /// Its manifest's digest.
    pub digest: String,
    /// Its build key.
    pub build_key: String,
    /// Its build arguments (`BASE_IMAGE` pinned).
    pub args: std::collections::BTreeMap<String, String>,
    /// `repo@sha256:…` of its base image, when the recipe has one.
    pub base_image: Option<String>,
}

/// What habd knows of a build when it verifies: the Statement's inputs.
#[derive(Debug, Clone)]
pub struct BuildFacts {
    /// The image repository (`hab/bitcoind`).
    pub repository: String,
    /// The index's digest.
    pub index_digest: String,
    /// Each platform image.
    pub platforms: Vec<PlatformFacts>,
    /// The pipeline.
    pub pipeline: String,
    /// Its upstream git URL.
    pub upstream: String,
    /// The full ref built (`refs/tags/v28.1`).
    pub ref_name: String,
    /// The commit built.
    pub commit: String,
    /// The version tag of the image.
    pub version: String,
    /// The recipe as configured.
    pub recipe: String,
    /// `sha256:` over the recipe's files.
    pub recipe_digest: String,
    /// The object the ref points at upstream (tag object or commit).
    pub ref_oid: String,
    /// The raw annotated tag object, when the ref is one.
    pub tag_object: Option<Vec<u8>>,
    /// The signature verdict (`verified`, `unsigned`, …).
    pub verdict: String,
    /// The verdict in words.
    pub verdict_text: String,
    /// The signer's fingerprint, when verified.
    pub signer: Option<String>,
    /// Who built: habd's builder id.
    pub builder_id: String,
    /// The build's id in habd's store.
    pub build_id: i64,
    /// When the build started.
    pub started: DateTime<Utc>,
    /// When it was verified.
    pub finished: DateTime<Utc>,
    /// The read-back and smoke report.
    pub verification: Value,
}

fn sha256_map(digest: &str) -> Value {
    json!({"sha256": digest.strip_prefix("sha256:").unwrap_or(digest)})
}

fn time(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The Statement for `facts`, as JSON.
pub fn statement(f: &BuildFacts) -> Value {
    let mut subject = vec![json!({
        "name": f.repository,
        "digest": sha256_map(&f.index_digest),
        "annotations": {"kind": "index"},
    })];
    for p in &f.platforms {
        subject.push(json!({
            "name": format!("{}#{}", f.repository, p.platform),
            "digest": sha256_map(&p.digest),
            "annotations": {"kind": "manifest", "platform": p.platform},
        }));
    }
    let source = format!("git+{}@{}", f.upstream, f.ref_name);
    let mut deps = vec![json!({
        "name": "source",
        "uri": source,
        "digest": {"gitCommit": f.commit},
    })];
    if let Some(raw) = &f.tag_object {
        let mut annotations = json!({"verdict": f.verdict, "verdictText": f.verdict_text});
        if let Some(s) = &f.signer {
            annotations["signer"] = json!(s);
        }
        deps.push(json!({
            "name": "tag",
            "uri": source,
            "digest": {"gitTag": f.ref_oid},
            "mediaType": "application/x-git-tag",
            "content": base64::engine::general_purpose::STANDARD.encode(raw),
            "annotations": annotations,
        }));
    }
    deps.push(json!({
        "name": "recipe",
        "uri": format!("hab-recipe:{}", f.recipe),
        "digest": sha256_map(&f.recipe_digest),
    }));
    for p in &f.platforms {
        if let Some(base) = &p.base_image {
            let digest = base.rsplit_once('@').map_or("", |(_, d)| d);
            deps.push(json!({
                "name": format!("base image {}", p.platform),
                "uri": format!("oci://{base}"),
                "digest": sha256_map(digest),
            }));
        }
    }
    let internal: serde_json::Map<String, Value> = f
        .platforms
        .iter()
        .map(|p| {
            (
                p.platform.clone(),
                json!({"buildKey": p.build_key, "args": p.args}),
            )
        })
        .collect();
    json!({
        "_type": STATEMENT_TYPE,
        "subject": subject,
        "predicateType": SLSA_PROVENANCE,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": {
                    "pipeline": f.pipeline,
                    "source": f.upstream,
                    "ref": f.ref_name,
                    "version": f.version,
                    "recipe": f.recipe,
                    "platforms": f.platforms.iter().map(|p| &p.platform).collect::<Vec<_>>(),
                },
                "internalParameters": {"platforms": internal},
                "resolvedDependencies": deps,
            },
            "runDetails": {
                "builder": {"id": f.builder_id},
                "metadata": {
                    "invocationId": format!("hab build {}", f.build_id),
                    "startedOn": time(&f.started),
                    "finishedOn": time(&f.finished),
                },
                "byproducts": [{
                    "name": "verification",
                    "mediaType": "application/json",
                    "annotations": f.verification,
                }],
            },
        },
    })
}

/// What a checker reads back out of a Statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// Every subject's `sha256:` digest.
    pub subjects: Vec<String>,
    /// Each platform image: (platform, manifest digest, build key).
    pub images: Vec<(String, String, String)>,
    /// The pipeline.
    pub pipeline: String,
    /// The full ref built.
    pub ref_name: String,
    /// The commit the source dependency records.
    pub commit: String,
    /// The embedded tag object, with the git id recorded for it.
    pub tag: Option<(Vec<u8>, String)>,
    /// The verdict habd recorded.
    pub verdict: Option<String>,
    /// The builder id.
    pub builder: String,
    /// When habd verified the build.
    pub finished: Option<String>,
}

/// Reads the claims of a Statement (the payload of a verified envelope).
///
/// # Errors
/// Not a Statement v1 with an SLSA Provenance v1 predicate, or a field hab
/// writes is missing.
pub fn claims(payload: &[u8]) -> Result<Claims, String> {
    let v: Value = serde_json::from_slice(payload).map_err(|e| format!("not JSON: {e}"))?;
    if v["_type"] != STATEMENT_TYPE {
        return Err(format!("_type is {}, not {STATEMENT_TYPE}", v["_type"]));
    }
    if v["predicateType"] != SLSA_PROVENANCE {
        return Err(format!(
            "predicateType is {}, not {SLSA_PROVENANCE}",
            v["predicateType"]
        ));
    }
    let subjects = v["subject"]
        .as_array()
        .ok_or("no subject")?
        .iter()
        .filter_map(|s| s["digest"]["sha256"].as_str())
        .map(|h| format!("sha256:{h}"))
        .collect();
    let def = &v["predicate"]["buildDefinition"];
    let images = v["subject"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| {
            let platform = s["annotations"]["platform"].as_str()?;
            let key = def["internalParameters"]["platforms"][platform]["buildKey"].as_str()?;
            let digest = s["digest"]["sha256"].as_str()?;
            Some((
                platform.to_string(),
                format!("sha256:{digest}"),
                key.to_string(),
            ))
        })
        .collect();
    let text = |x: &Value, what: &str| {
        x.as_str()
            .map(str::to_string)
            .ok_or_else(|| format!("no {what}"))
    };
    let deps = def["resolvedDependencies"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let named = |n: &str| deps.iter().find(|d| d["name"] == n);
    let commit = text(
        &named("source").map_or(Value::Null, |d| d["digest"]["gitCommit"].clone()),
        "source commit (resolvedDependencies[name=source].digest.gitCommit)",
    )?;
    let tag = match named("tag") {
        None => None,
        Some(d) => {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(text(&d["content"], "tag object content")?)
                .map_err(|e| format!("tag object content: {e}"))?;
            Some((raw, text(&d["digest"]["gitTag"], "tag object id")?))
        }
    };
    Ok(Claims {
        subjects,
        images,
        pipeline: text(&def["externalParameters"]["pipeline"], "pipeline")?,
        ref_name: text(&def["externalParameters"]["ref"], "ref")?,
        commit,
        verdict: named("tag").and_then(|d| d["annotations"]["verdict"].as_str().map(String::from)),
        tag,
        builder: text(&v["predicate"]["runDetails"]["builder"]["id"], "builder id")?,
        finished: v["predicate"]["runDetails"]["metadata"]["finishedOn"]
            .as_str()
            .map(String::from),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn facts() -> BuildFacts {
        BuildFacts {
            repository: "hab/node".into(),
            index_digest: format!("sha256:{}", "a".repeat(64)),
            platforms: vec![PlatformFacts {
                platform: "linux/amd64".into(),
                digest: format!("sha256:{}", "b".repeat(64)),
                build_key: "k1".into(),
                args: [("BASE_IMAGE".to_string(), "base@sha256:cc".to_string())].into(),
                base_image: Some(format!("hab/base@sha256:{}", "c".repeat(64))),
            }],
            pipeline: "node".into(),
            upstream: "git://127.0.0.1/node.git".into(),
            ref_name: "refs/tags/v1.0.0".into(),
            commit: "d".repeat(40),
            version: "v1.0.0".into(),
            recipe: "dockerfiles/fixture".into(),
            recipe_digest: format!("sha256:{}", "e".repeat(64)),
            ref_oid: "f".repeat(40),
            tag_object: Some(b"object dd\ntype commit\ntag v1.0.0\n\nmsg\n".to_vec()),
            verdict: "verified".into(),
            verdict_text: "verified".into(),
            signer: Some("ABCD".into()),
            builder_id: "urn:hab:habd:1234".into(),
            build_id: 7,
            started: DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
            finished: DateTime::from_timestamp(1_700_000_100, 0).unwrap(),
            verification: json!({"ok": true}),
        }
    }

    #[test]
    fn a_statement_reads_back_as_its_facts() {
        let f = facts();
        let s = statement(&f);
        let c = claims(&serde_json::to_vec(&s).unwrap()).unwrap();
        assert_eq!(
            c.subjects,
            vec![f.index_digest.clone(), f.platforms[0].digest.clone()]
        );
        assert_eq!(c.commit, f.commit);
        assert_eq!(
            c.images,
            vec![(
                "linux/amd64".to_string(),
                f.platforms[0].digest.clone(),
                "k1".to_string()
            )]
        );
        assert_eq!(c.ref_name, "refs/tags/v1.0.0");
        assert_eq!(
            c.tag,
            Some((f.tag_object.clone().unwrap(), f.ref_oid.clone()))
        );
        assert_eq!(c.verdict.as_deref(), Some("verified"));
        assert_eq!(c.finished.as_deref(), Some("2023-11-14T22:15:00Z"));
        let deps = s["predicate"]["buildDefinition"]["resolvedDependencies"]
            .as_array()
            .unwrap();
        let names: Vec<&str> = deps.iter().map(|d| d["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["source", "tag", "recipe", "base image linux/amd64"]);
        // Not a Statement, or another predicate: refused by name.
        let mut other = s.clone();
        other["predicateType"] = json!("https://example.com/x");
        assert!(claims(&serde_json::to_vec(&other).unwrap())
            .unwrap_err()
            .contains("predicateType"));
    }
}
