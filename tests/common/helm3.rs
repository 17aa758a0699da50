//! What Helm 3's `helm upgrade` sends for an object that already exists:
//! `CreateThreeWayMergePatch(original, modified, current)` (k8s.io
//! apimachinery's strategicpatch, with `overwrite`), where `original` is the
//! object in the last release's manifest, `modified` the new render and
//! `current` the live object. The patch sets every field of `modified` that
//! differs from `current`, deletes the fields `original` had and `modified`
//! dropped, and leaves the fields only `current` has (what controllers and
//! habd added). Lists whose Kubernetes type declares a merge key are merged
//! element by element; every other list is replaced whole when it differs.
//! Helm sends the patch as `application/strategic-merge-patch+json`, and
//! sends nothing when it is `{}`.
//!
//! Not modelled (no StatefulSet of the chart needs them): `$retainKeys`
//! (volumes, a Deployment's strategy), merging lists of scalars, and the
//! typed round trip Helm makes before diffing (which adds zero values such
//! as `creationTimestamp: null` that the API server ignores).

use serde_json::{Map, Value};

/// The merge key of a list field of a StatefulSet (and its pod template),
/// as the Kubernetes types declare it (`patchStrategy:"merge"`); `None`: an
/// atomic list (args, command, tolerations, volumeClaimTemplates, …).
pub fn merge_key(field: &str) -> Option<&'static str> {
    match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "env"
        | "volumes"
        | "imagePullSecrets" => Some("name"),
        "ports" => Some("containerPort"),
        "volumeMounts" => Some("mountPath"),
        "volumeDevices" => Some("devicePath"),
        _ => None,
    }
}

/// Which part of a diff to keep (strategicpatch's `DiffOptions`).
#[derive(Clone, Copy)]
struct Keep {
    /// Fields and list elements of `original` missing from `modified`.
    deletions: bool,
    /// Fields and list elements added to or changed in `modified`.
    changes: bool,
}

/// The merge key's value of a list element, as strategicpatch compares it.
fn key_of(item: &Value, key: &str) -> String {
    match &item[key] {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `diffMaps`: the patch taking `original` to `modified`, restricted by
/// `keep`.
fn diff_maps(
    original: &Map<String, Value>,
    modified: &Map<String, Value>,
    keep: Keep,
) -> Map<String, Value> {
    let mut patch = Map::new();
    for (k, m) in modified {
        let Some(o) = original.get(k) else {
            if keep.changes {
                patch.insert(k.clone(), m.clone());
            }
            continue;
        };
        match (o, m) {
            (Value::Object(o), Value::Object(m)) => {
                let p = diff_maps(o, m, keep);
                if !p.is_empty() {
                    patch.insert(k.clone(), Value::Object(p));
                }
            }
            (Value::Array(o), Value::Array(m)) => match merge_key(k) {
                Some(key) if o.iter().chain(m).all(Value::is_object) => {
                    diff_keyed_lists(k, key, o, m, keep, &mut patch)
                }
                _ => {
                    if keep.changes && o != m {
                        patch.insert(k.clone(), Value::Array(m.clone()));
                    }
                }
            },
            _ => {
                if keep.changes && o != m {
                    patch.insert(k.clone(), m.clone());
                }
            }
        }
    }
    if keep.deletions {
        for k in original.keys() {
            if !modified.contains_key(k) {
                patch.insert(k.clone(), Value::Null);
            }
        }
    }
    patch
}

/// `diffLists` of a list of maps merged by `key`: changed elements (their
/// merge key and what changed), added elements whole, `{"$patch":
/// "delete"}` for removed ones, and `$setElementOrder/<field>` (the keys of
/// `modified`, in order) when anything changed or the order differs.
fn diff_keyed_lists(
    field: &str,
    key: &str,
    original: &[Value],
    modified: &[Value],
    keep: Keep,
    patch: &mut Map<String, Value>,
) {
    if original.is_empty() {
        if keep.changes && !modified.is_empty() {
            patch.insert(field.to_string(), Value::Array(modified.to_vec()));
        }
        return;
    }
    let mut items = Vec::new();
    for m in modified {
        match original.iter().find(|o| key_of(o, key) == key_of(m, key)) {
            Some(o) => {
                let (Value::Object(o), Value::Object(mm)) = (o, m) else {
                    unreachable!("checked: every element is a map")
                };
                let mut p = diff_maps(o, mm, keep);
                if !p.is_empty() {
                    p.insert(key.to_string(), m[key].clone());
                    items.push(Value::Object(p));
                }
            }
            None if keep.changes => items.push(m.clone()),
            None => {}
        }
    }
    if keep.deletions {
        for o in original {
            if !modified.iter().any(|m| key_of(m, key) == key_of(o, key)) {
                let mut d = Map::new();
                d.insert(key.to_string(), o[key].clone());
                d.insert("$patch".into(), "delete".into());
                items.push(Value::Object(d));
            }
        }
    }
    let order_same = original.len() == modified.len()
        && original
            .iter()
            .zip(modified)
            .all(|(o, m)| key_of(o, key) == key_of(m, key));
    let set_order = (keep.changes && (!items.is_empty() || !order_same))
        || (keep.deletions && !items.is_empty());
    if !items.is_empty() {
        patch.insert(field.to_string(), Value::Array(items));
    }
    if set_order {
        let order = modified
            .iter()
            .map(|m| {
                let mut o = Map::new();
                o.insert(key.to_string(), m[key].clone());
                Value::Object(o)
            })
            .collect();
        patch.insert(format!("$setElementOrder/{field}"), Value::Array(order));
    }
}

/// `mergeMap(deletions, delta)` as CreateThreeWayMergePatch calls it: the
/// two patches never touch the same scalar (deletions name fields
/// `modified` lacks, the delta only fields it has), so this is their union,
/// maps merged key by key and keyed lists element by element.
fn union(into: &mut Map<String, Value>, from: Map<String, Value>) {
    for (k, v) in from {
        match (into.get_mut(&k), v) {
            (Some(Value::Object(a)), Value::Object(b)) => union(a, b),
            (Some(Value::Array(a)), Value::Array(b)) if merge_key(&k).is_some() => {
                let key = merge_key(&k).unwrap();
                for item in b {
                    match a.iter_mut().find(|i| key_of(i, key) == key_of(&item, key)) {
                        Some(Value::Object(i)) => {
                            if let Value::Object(item) = item {
                                union(i, item)
                            }
                        }
                        _ => a.push(item),
                    }
                }
            }
            (_, v) => {
                into.insert(k, v);
            }
        }
    }
}

/// Helm 3's patch of an existing object on `helm upgrade`:
/// `CreateThreeWayMergePatch(original, modified, current)` with overwrite.
/// `{}` means helm sends nothing.
pub fn three_way_patch(original: &Value, modified: &Value, current: &Value) -> Value {
    let obj = |v: &Value| v.as_object().cloned().unwrap_or_default();
    let (original, modified, current) = (obj(original), obj(modified), obj(current));
    let mut patch = diff_maps(
        &original,
        &modified,
        Keep {
            deletions: true,
            changes: false,
        },
    );
    let delta = diff_maps(
        &current,
        &modified,
        Keep {
            deletions: false,
            changes: true,
        },
    );
    union(&mut patch, delta);
    Value::Object(patch)
}

/// The `node` container's image a patch sets, if it sets one.
pub fn patched_image(patch: &Value) -> Option<&str> {
    patch["spec"]["template"]["spec"]["containers"]
        .as_array()?
        .iter()
        .find(|c| c["name"] == "node")?["image"]
        .as_str()
}

/// The partition a patch sets, if it sets one.
pub fn patched_partition(patch: &Value) -> Option<u64> {
    patch["spec"]["updateStrategy"]["rollingUpdate"]["partition"].as_u64()
}

/// Drops `$setElementOrder/…` lists (they only order elements the double
/// keeps in order anyway), and refuses what the double's strategic merge
/// cannot apply as Kubernetes would: `$patch`, `$retainKeys` and
/// `$deleteFromPrimitiveList` directives, and keyed lists it replaces
/// instead of merging.
fn for_the_double(v: &mut Value) {
    if let Value::Object(m) = v {
        m.retain(|k, _| !k.starts_with("$setElementOrder/"));
        for (k, child) in m.iter_mut() {
            assert!(
                !k.starts_with('$'),
                "the API double cannot apply the directive {k} in this patch: teach its strategic() the directive, or patch without it"
            );
            assert!(
                !matches!(k.as_str(), "volumes" | "volumeMounts" | "imagePullSecrets" | "volumeDevices"),
                "the API double replaces `{k}` lists instead of merging them by key: add `{k}` to the keyed lists of its strategic()"
            );
            for_the_double(child);
        }
    } else if let Value::Array(items) = v {
        items.iter_mut().for_each(for_the_double);
    }
}

/// Sends `patch` to the StatefulSet `name` of the API double at `url` as
/// Helm 3 does: a strategic merge PATCH through the API (so
/// resourceVersion, generation and revisions move as for any patch), and
/// nothing at all when the patch is `{}`. Returns whether it was sent.
pub async fn apply_helm_patch(url: &str, name: &str, patch: &Value) -> bool {
    if patch.as_object().is_none_or(Map::is_empty) {
        return false;
    }
    let mut body = patch.clone();
    for_the_double(&mut body);
    let r = reqwest::Client::new()
        .patch(format!(
            "{url}/apis/apps/v1/namespaces/default/statefulsets/{name}"
        ))
        .header("content-type", "application/strategic-merge-patch+json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = r.status();
    assert!(
        status.is_success(),
        "the double refused helm's patch {body}: {status} {}",
        r.text().await.unwrap_or_default()
    );
    true
}
