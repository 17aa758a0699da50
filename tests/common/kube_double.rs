//! A Kubernetes API double for hab's Kubernetes target (no kube-apiserver
//! can be installed here). It serves the part of the API hab calls, with the
//! real semantics: resourceVersion and generation on every change, JSON
//! merge and strategic merge patches (containers merged by name), Status
//! bodies for errors, 409 Conflicts on demand, `managedFields` by field
//! manager (the `fieldManager` parameter, else the client's User-Agent, as
//! the API server does), and Events validated as the real API validates
//! them (core/v1 with `eventTime` needs `reportingInstance` and `action`;
//! events.k8s.io/v1 needs every reporting field). It runs the StatefulSet
//! controller as Kubernetes does (`stateful_set_control.go`):
//! - it acts on the StatefulSet as its informer cache last saw it, `lag`
//!   ago, and reports that generation as `observedGeneration`;
//! - pods are created from ordinal 0 up, each once the one before is Ready
//!   (OrderedReady), below the partition on `currentRevision`, at or above
//!   it on `updateRevision`;
//! - the rolling update replaces the highest pod at or above the partition
//!   not on `updateRevision`, one at a time, only while every pod is Ready,
//!   so a pod stuck not-Ready blocks it for good (kubernetes/kubernetes#67250)
//!   until someone deletes that pod;
//! - `currentRevision` becomes `updateRevision` once every pod is updated
//!   and Ready (`completeRollingUpdate`);
//! - a deleted pod is Terminating (`deletionTimestamp`, not Ready) for
//!   `terminate_hold` (at most its grace period), and the controller waits
//!   for it to be gone before it creates its successor.
//!
//! Faults can be injected on any request (`faults`): a status (429, 500,
//! 503…) or a reset (the response body breaks off). Pods are real
//! containers (docker), each on its own 127.0.0.x address, Ready when the
//! node's RPC answers `getblockchaininfo`, reporting the digest they run as
//! `imageID`; each pod's "PVC" is a docker volume the double never deletes.

use std::{
    collections::{BTreeMap, HashMap},
    process::Command,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    body::Bytes,
    extract::{Request, State},
    http::{Method, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use serde_json::{json, Value};
use sha2::Digest;

#[derive(Debug, Clone)]
struct PodRec {
    uid: String,
    ordinal: u32,
    revision: String,
    image: String,
    ip: String,
    env: Vec<(String, String)>,
    /// Secret volumes as the kubelet projects them: (mount path, files,
    /// mode), mounted read-only.
    files: Vec<(String, BTreeMap<String, Vec<u8>>, u32)>,
    ready: bool,
    container: String,
    /// The digest it runs (`repo@sha256:…`), once its container started.
    image_id: Option<String>,
    /// Terminating: when it was deleted (RFC 3339) and when it is gone.
    deleting: Option<(String, Instant)>,
    /// Its grace period, from the template.
    grace: u64,
    /// metadata.annotations, as merge patches left them.
    annotations: BTreeMap<String, String>,
}

#[derive(Debug)]
struct Sts {
    obj: Value,
    generation: i64,
    revisions: BTreeMap<String, Value>,
    current: String,
    /// Pod N of this set is at 127.0.0.(ip_base + ip_offset + N).
    ip_offset: u8,
    /// Every version of the object, with when it was written: the
    /// controller's informer sees the newest one at least `lag` old.
    history: Vec<(Instant, Value)>,
}

/// A fault to inject into the next request that matches.
#[derive(Debug, Clone)]
pub struct Fault {
    /// `GET`, `PATCH`…
    pub method: &'static str,
    /// A part of the path (`/pods/`, `/statefulsets/`).
    pub path_has: String,
    /// Only watches (true), only other requests (false), or both.
    pub watch: Option<bool>,
    /// What happens.
    pub kind: FaultKind,
}

/// What an injected fault does.
#[derive(Debug, Clone, Copy)]
pub enum FaultKind {
    /// The API answers this status, with a Status body.
    Status(u16),
    /// The response starts, then the connection breaks off.
    Reset,
}

/// What the double holds, for tests to look at.
#[derive(Debug, Default)]
pub struct DoubleState {
    rv: u64,
    uid: u64,
    sets: BTreeMap<String, Sts>,
    pods: BTreeMap<String, PodRec>,
    /// Events created, in order.
    pub events: Vec<Value>,
    /// 409 Conflicts still to answer to patches.
    pub conflicts: u32,
    /// 409 Conflicts answered.
    pub conflicts_served: u32,
    /// Patches received: (content type, body).
    pub patches: Vec<(String, Value)>,
    /// Pods deleted through the API.
    pub deleted: Vec<String>,
    /// Pod watches served.
    pub watches: u32,
    /// Merge patches of pods: (pod, patch), in order.
    pub pod_patches: Vec<(String, Value)>,
    /// Every request: (method, path, query), in order.
    pub requests: Vec<(String, String, String)>,
    /// Secrets, by name (created by the test, as `helm install` would).
    secrets: BTreeMap<String, Value>,
    /// How far behind the StatefulSet controller's informer is.
    pub lag: Duration,
    /// How long a deleted pod stays Terminating (at most its grace period).
    pub terminate_hold: Duration,
    /// Faults still to inject, each once, in order.
    pub faults: Vec<Fault>,
    /// Faults injected.
    pub faults_served: Vec<String>,
    /// Events the API refused (422), with why.
    pub events_refused: Vec<String>,
    /// Pods created by the controller: (pod, revision), in order.
    pub created: Vec<(String, String)>,
    /// Pods that were held Terminating (a non-zero hold).
    pub terminated: u32,
}

impl DoubleState {
    /// The reasons of the Events recorded, in order.
    pub fn event_reasons(&self) -> Vec<&str> {
        self.events
            .iter()
            .filter_map(|e| e["reason"].as_str())
            .collect()
    }
}

/// A running double.
pub struct KubeDouble {
    pub url: String,
    pub state: Arc<Mutex<DoubleState>>,
    prefix: String,
    ip_base: u8,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

fn status(code: u16, reason: &str, message: String) -> Response {
    (
        StatusCode::from_u16(code).unwrap(),
        Json(
            json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                    "message": message, "reason": reason, "code": code}),
        ),
    )
        .into_response()
}

fn revision(template: &Value) -> String {
    hex::encode(&sha2::Sha256::digest(template.to_string().as_bytes())[..5])
}

/// RFC 7386.
fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

/// A strategic merge patch, for the lists hab patches: `containers` (and
/// `env`, `ports`) merge by `name`/`containerPort`; other lists replace.
fn strategic(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                let keyed = match k.as_str() {
                    "containers" | "initContainers" | "env" => Some("name"),
                    "ports" => Some("containerPort"),
                    _ => None,
                };
                match (keyed, t.get_mut(k), v) {
                    (Some(key), Some(Value::Array(items)), Value::Array(changes)) => {
                        for c in changes {
                            match items.iter_mut().find(|i| i[key] == c[key]) {
                                Some(i) => strategic(i, c),
                                None => items.push(c.clone()),
                            }
                        }
                    }
                    _ if v.is_null() => {
                        t.remove(k);
                    }
                    _ => strategic(t.entry(k.clone()).or_insert(Value::Null), v),
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

impl KubeDouble {
    /// Starts the API on a free port; pod N of the k-th StatefulSet created
    /// gets address 127.0.0.(ip_base + 10k + N).
    pub async fn start(prefix: &str, ip_base: u8) -> Self {
        let state: Arc<Mutex<DoubleState>> = Arc::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(state.clone());
        let tx = super::serve_in_background(listener, app);
        let double = KubeDouble {
            url,
            state,
            prefix: prefix.to_string(),
            ip_base,
            stop: Some(tx),
        };
        double.spawn_controller();
        double
    }

    /// Starts the API only, without the StatefulSet controller and kubelet:
    /// objects are stored, read and patched with the same semantics, and no
    /// pod ever runs (for tests of what clients send, not of rollouts).
    pub async fn start_api(prefix: &str) -> Self {
        let state: Arc<Mutex<DoubleState>> = Arc::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(state.clone());
        let tx = super::serve_in_background(listener, app);
        KubeDouble {
            url,
            state,
            prefix: prefix.to_string(),
            ip_base: 0,
            stop: Some(tx),
        }
    }

    /// A kubeconfig file (written into `dir`) whose current context is this
    /// double, for tools that speak to a cluster (helm's `lookup`).
    pub fn kubeconfig(&self, dir: &std::path::Path) -> std::path::PathBuf {
        let file = dir.join("kubeconfig");
        std::fs::write(
            &file,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: double\n  cluster:\n    server: {}\n\
                 contexts:\n- name: double\n  context:\n    cluster: double\n    user: double\n    namespace: default\n\
                 current-context: double\nusers:\n- name: double\n  user: {{}}\n",
                self.url
            ),
        )
        .unwrap();
        file
    }

    /// Creates a StatefulSet (as `helm install` would).
    pub fn create_statefulset(&self, sts: Value) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.rv += 1;
        let name = sts["metadata"]["name"].as_str().unwrap().to_string();
        let mut obj = sts;
        obj["metadata"]["resourceVersion"] = json!(s.rv.to_string());
        obj["metadata"]["generation"] = json!(1);
        obj["metadata"]["namespace"] = json!("default");
        let rev = revision(&obj["spec"]["template"]);
        let template = obj["spec"]["template"].clone();
        let ip_offset = 10 * s.sets.len() as u8;
        s.sets.insert(
            name,
            Sts {
                history: vec![(Instant::now(), obj.clone())],
                obj,
                generation: 1,
                revisions: BTreeMap::from([(rev.clone(), template)]),
                current: rev,
                ip_offset,
            },
        );
    }

    /// Creates a Secret (as `helm install` would); pods' `secretKeyRef`
    /// env values are read from it.
    pub fn create_secret(&self, secret: Value) {
        let name = secret["metadata"]["name"].as_str().unwrap().to_string();
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .secrets
            .insert(name, secret);
    }

    /// The docker volume standing for a pod's PVC.
    pub fn pvc(&self, sts: &str, ordinal: u32) -> String {
        format!("{}-{sts}-{ordinal}-data", self.prefix)
    }

    /// Patches a StatefulSet through the API as `manager` would (kubectl, a
    /// GitOps tool): a strategic merge patch.
    pub async fn patch_statefulset(&self, name: &str, patch: Value, manager: &str) -> Value {
        let res = reqwest::Client::new()
            .patch(format!(
                "{}/apis/apps/v1/namespaces/default/statefulsets/{name}?fieldManager={manager}",
                self.url
            ))
            .header("content-type", "application/strategic-merge-patch+json")
            .body(patch.to_string())
            .send()
            .await
            .unwrap();
        assert!(
            res.status().is_success(),
            "patch of {name}: {}",
            res.status()
        );
        res.json().await.unwrap()
    }

    /// The StatefulSet as the API serves it now.
    pub fn statefulset(&self, name: &str) -> Value {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).sets[name]
            .obj
            .clone()
    }

    /// Each pod of `sts` that exists: (ordinal, uid, revision).
    pub fn pods_of(&self, sts: &str) -> Vec<(u32, String, String)> {
        let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<_> = s
            .pods
            .iter()
            .filter(|(n, _)| n.rsplit_once('-').is_some_and(|(a, _)| a == sts))
            .map(|(_, p)| (p.ordinal, p.uid.clone(), p.revision.clone()))
            .collect();
        out.sort();
        out
    }

    fn spawn_controller(&self) {
        let state = self.state.clone();
        let (prefix, ip_base) = (self.prefix.clone(), self.ip_base);
        tokio::spawn(async move {
            let http = reqwest::Client::new();
            loop {
                reconcile(&state, &prefix, ip_base, &http).await;
                tokio::time::sleep(Duration::from_millis(50)).await;
                if Arc::strong_count(&state) == 1 {
                    return;
                }
            }
        });
    }

    /// Removes every pod container and PVC volume.
    pub fn cleanup(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        for (name, p) in &s.pods {
            let _ = Command::new("/usr/bin/docker")
                .args(["rm", "-f", &p.container])
                .output();
            for i in 0..p.files.len() {
                let _ = std::fs::remove_dir_all(volume_dir(&p.container, i));
            }
            let _ = name;
        }
        for (name, set) in &s.sets {
            let replicas = set.obj["spec"]["replicas"].as_u64().unwrap_or(1) as u32;
            for o in 0..replicas {
                let _ = Command::new("/usr/bin/docker")
                    .args([
                        "volume",
                        "rm",
                        "-f",
                        &format!("{}-{name}-{o}-data", self.prefix),
                    ])
                    .output();
            }
        }
    }
}

impl Drop for KubeDouble {
    /// A test that fails still removes its pods' containers and volumes.
    fn drop(&mut self) {
        self.cleanup();
    }
}

/// The secret volumes `container` mounts: (mount path, the files as the
/// kubelet writes them, `defaultMode` or 0644). A `secret` volume or a
/// `projected` one of `secret` sources; with `items`, only those keys, each
/// at its `path`, as the kubelet does.
fn secret_volumes(
    secrets: &BTreeMap<String, Value>,
    pod_spec: &Value,
    container: &Value,
) -> Vec<(String, BTreeMap<String, Vec<u8>>, u32)> {
    use base64::Engine as _;
    let project = |name: &str, items: &Value, files: &mut BTreeMap<String, Vec<u8>>| {
        let data = secrets
            .get(name)
            .and_then(|s| s["data"].as_object().cloned())
            .unwrap_or_default();
        let decode = |v: &Value| {
            base64::engine::general_purpose::STANDARD
                .decode(v.as_str().unwrap_or(""))
                .unwrap_or_default()
        };
        match items.as_array() {
            Some(items) => {
                for i in items {
                    let key = i["key"].as_str().unwrap_or("");
                    if let Some(v) = data.get(key) {
                        let path = i["path"].as_str().unwrap_or(key);
                        files.insert(path.to_string(), decode(v));
                    }
                }
            }
            None => {
                for (k, v) in &data {
                    files.insert(k.clone(), decode(v));
                }
            }
        }
    };
    let mut out = Vec::new();
    for m in container["volumeMounts"].as_array().into_iter().flatten() {
        let Some(v) = pod_spec["volumes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|v| v["name"] == m["name"])
        else {
            continue;
        };
        let mut files = BTreeMap::new();
        let mode = if let Some(secret) = v["secret"]["secretName"].as_str() {
            project(secret, &v["secret"]["items"], &mut files);
            v["secret"]["defaultMode"].as_u64()
        } else if let Some(sources) = v["projected"]["sources"].as_array() {
            for source in sources {
                if let Some(secret) = source["secret"]["name"].as_str() {
                    project(secret, &source["secret"]["items"], &mut files);
                }
            }
            v["projected"]["defaultMode"].as_u64()
        } else {
            continue;
        };
        out.push((
            m["mountPath"].as_str().unwrap_or("").to_string(),
            files,
            mode.unwrap_or(0o644) as u32,
        ));
    }
    out
}

/// Where the double projects a pod's `i`th secret volume.
fn volume_dir(container: &str, i: usize) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("{container}-vol{i}"))
}

/// An env entry's value: `value`, or `valueFrom.secretKeyRef` read from the
/// Secrets the double holds (as the kubelet does).
fn env_value(secrets: &BTreeMap<String, Value>, v: &Value) -> String {
    if let Some(value) = v["value"].as_str() {
        return value.to_string();
    }
    let r = &v["valueFrom"]["secretKeyRef"];
    let (Some(name), Some(key)) = (r["name"].as_str(), r["key"].as_str()) else {
        return String::new();
    };
    let Some(data) = secrets.get(name).and_then(|s| s["data"][key].as_str()) else {
        return String::new();
    };
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(data)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .unwrap_or_default()
}

fn pod_json(name: &str, sts: &str, p: &PodRec, rv: u64) -> Value {
    let mut pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "uid": p.uid,
                     "resourceVersion": rv.to_string(),
                     "labels": {"app.kubernetes.io/instance": sts,
                                "controller-revision-hash": format!("{sts}-{}", p.revision),
                                "apps.kubernetes.io/pod-index": p.ordinal.to_string()}},
        "spec": {"terminationGracePeriodSeconds": p.grace,
                 "containers": [{"name": "node", "image": p.image,
                 "env": p.env.iter().map(|(k, v)| json!({"name": k, "value": v})).collect::<Vec<_>>()}]},
        "status": {"phase": "Running", "podIP": p.ip,
                   "conditions": [{"type": "Ready", "status": if p.ready { "True" } else { "False" }}],
                   "containerStatuses": [{"name": "node", "image": p.image, "ready": p.ready,
                                          "imageID": p.image_id.as_ref().map(|d| format!("docker-pullable://{d}")).unwrap_or_default()}]},
    });
    if !p.annotations.is_empty() {
        pod["metadata"]["annotations"] = json!(p.annotations);
    }
    if let Some((at, _)) = &p.deleting {
        pod["metadata"]["deletionTimestamp"] = json!(at);
        pod["metadata"]["deletionGracePeriodSeconds"] = json!(p.grace);
    }
    pod
}

/// A pod deleted through the API or by the controller: Terminating for
/// `terminate_hold` (at most its grace period), then gone.
fn terminate(s: &mut DoubleState, name: &str) -> Option<PodRec> {
    let hold = s.terminate_hold;
    let p = s.pods.get_mut(name)?;
    let held = p.deleting.is_none() && !hold.is_zero();
    if p.deleting.is_none() {
        let hold = hold.min(Duration::from_secs(p.grace));
        p.deleting = Some((
            k8s_openapi::jiff::Timestamp::now().to_string(),
            Instant::now() + hold,
        ));
        p.ready = false;
    }
    let p = p.clone();
    s.terminated += u32::from(held);
    s.rv += 1;
    if hold.is_zero() {
        gone(s, name);
    }
    Some(p)
}

/// A Terminating pod whose time is up: its container removed, the pod gone.
fn gone(s: &mut DoubleState, name: &str) {
    if let Some(p) = s.pods.remove(name) {
        s.rv += 1;
        let _ = Command::new("/usr/bin/docker")
            .args(["rm", "-f", &p.container])
            .output();
        for i in 0..p.files.len() {
            let _ = std::fs::remove_dir_all(volume_dir(&p.container, i));
        }
    }
}

/// The first injected fault for this request, taken.
fn take_fault(s: &mut DoubleState, method: &Method, path: &str, watch: bool) -> Option<FaultKind> {
    let i = s.faults.iter().position(|f| {
        f.method == method.as_str()
            && path.contains(&f.path_has)
            && f.watch.is_none_or(|w| w == watch)
    })?;
    let f = s.faults.remove(i);
    s.faults_served.push(format!(
        "{:?} on {method} {path}{}",
        f.kind,
        if watch { " (watch)" } else { "" }
    ));
    Some(f.kind)
}

fn fault_response(kind: FaultKind) -> Response {
    match kind {
        FaultKind::Status(code) => status(
            code,
            match code {
                429 => "TooManyRequests",
                503 => "ServiceUnavailable",
                _ => "InternalError",
            },
            format!("injected {code}"),
        ),
        FaultKind::Reset => Response::builder()
            .status(200)
            .header("content-type", "application/json")
            .body(axum::body::Body::from_stream(futures_util::stream::iter([
                Ok(Bytes::from_static(b"{\"kind\":")),
                Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "injected reset",
                )),
            ])))
            .unwrap(),
    }
}

/// Validates an Event as the API server does (`ValidateEventCreate`, and
/// events.k8s.io/v1 which requires the reporting fields).
fn validate_event(ev: &Value, events_v1: bool) -> Result<(), String> {
    let field = |k: &str| ev[k].as_str().filter(|v| !v.is_empty());
    let mut missing = Vec::new();
    let has_event_time = field("eventTime").is_some();
    if events_v1 && !has_event_time {
        missing.push("eventTime");
    }
    if events_v1 || has_event_time {
        for k in [
            "reportingController",
            "reportingInstance",
            "action",
            "reason",
        ] {
            if field(k).is_none() {
                missing.push(k);
            }
        }
    }
    if !missing.is_empty() {
        return Err(missing
            .iter()
            .map(|k| format!("{k}: Required value"))
            .collect::<Vec<_>>()
            .join(", "));
    }
    if !matches!(field("type"), Some("Normal" | "Warning")) {
        return Err("type: Unsupported value: must be Normal or Warning".into());
    }
    let object = if events_v1 {
        "regarding"
    } else {
        "involvedObject"
    };
    if ev[object]["kind"].as_str().is_none() || ev[object]["name"].as_str().is_none() {
        return Err(format!("{object}: Required value"));
    }
    let note = if events_v1 { "note" } else { "message" };
    if ev[note].as_str().is_some_and(|n| n.len() > 1024) {
        return Err(format!("{note}: Too long: may not be more than 1024 bytes"));
    }
    for k in ["action", "reportingInstance", "reason"] {
        if field(k).is_some_and(|v| v.len() > 128) {
            return Err(format!("{k}: Too long: may not be more than 128 bytes"));
        }
    }
    Ok(())
}

/// `managedFields` of a patch: the fields it set, as FieldsV1 (list items
/// merged by name keyed as `k:{"name":…}`).
fn fields_v1(patch: &Value) -> Value {
    match patch {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| {
                    let inner = match v {
                        Value::Array(items) if items.iter().all(|i| i["name"].is_string()) => {
                            Value::Object(
                                items
                                    .iter()
                                    .map(|i| {
                                        (format!("k:{{\"name\":{}}}", i["name"]), fields_v1(i))
                                    })
                                    .collect(),
                            )
                        }
                        _ => fields_v1(v),
                    };
                    (format!("f:{k}"), inner)
                })
                .collect(),
        ),
        _ => json!({}),
    }
}

fn query_param(query: &str, k: &str) -> Option<String> {
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(key, _)| key == k)
        .map(|(_, v)| v.into_owned())
}

/// Whether `pod` has every `k=v` of a label selector (equality only).
fn selects(selector: &str, pod: &Value) -> bool {
    selector.split(',').filter(|t| !t.is_empty()).all(|t| {
        let (k, v) = t.split_once('=').unwrap_or((t, ""));
        pod["metadata"]["labels"][k] == json!(v)
    })
}

/// `GET …/pods?watch=true&labelSelector=…` (or
/// `fieldSelector=metadata.name=<pod>`): watch events for every pod the
/// selectors pick (from a resourceVersion: changes after now only; else
/// ADDED for each first), as each is added, changed (Ready, Terminating,
/// annotations), replaced (DELETED, then ADDED with a new uid) or deleted,
/// until `timeoutSeconds`.
fn watch_pods(state: Arc<Mutex<DoubleState>>, query: &str) -> Response {
    let selector = query_param(query, "labelSelector").unwrap_or_default();
    let only = query_param(query, "fieldSelector")
        .map(|f| f.strip_prefix("metadata.name=").map(str::to_string));
    let Some(only) = only.map_or(Some(None), |o| o.map(Some)) else {
        return status(
            400,
            "BadRequest",
            "the double selects pods by fieldSelector=metadata.name=<pod> only".into(),
        );
    };
    state.lock().unwrap_or_else(|e| e.into_inner()).watches += 1;
    let timeout = query_param(query, "timeoutSeconds")
        .and_then(|t| t.parse().ok())
        .unwrap_or(290u64);
    let until = std::time::Instant::now() + Duration::from_secs(timeout);
    // What a watcher knows: name → (uid, the pod as JSON minus its
    // resourceVersion).
    type Known = BTreeMap<String, (String, Value)>;
    let now = move |s: &DoubleState| -> Known {
        s.pods
            .iter()
            .map(|(name, p)| {
                let sts = name.rsplit_once('-').map_or(name.as_str(), |(a, _)| a);
                (name.clone(), pod_json(name, sts, p, 0))
            })
            .filter(|(name, j)| selects(&selector, j) && only.as_ref().is_none_or(|o| o == name))
            .map(|(name, j)| {
                (
                    name,
                    (j["metadata"]["uid"].as_str().unwrap_or("").to_string(), j),
                )
            })
            .collect()
    };
    let from_now = query_param(query, "resourceVersion").is_some_and(|v| v != "0" && !v.is_empty());
    let first: Known = if from_now {
        now(&state.lock().unwrap_or_else(|e| e.into_inner()))
    } else {
        Known::new()
    };
    let stream = futures_util::stream::unfold(
        (first, std::collections::VecDeque::<Value>::new(), state),
        move |(mut known, mut queue, state)| {
            let now = now.clone();
            async move {
                loop {
                    if let Some(line) = queue.pop_front() {
                        let mut bytes = serde_json::to_vec(&line).unwrap();
                        bytes.push(b'\n');
                        return Some((
                            Ok::<_, std::convert::Infallible>(Bytes::from(bytes)),
                            (known, queue, state),
                        ));
                    }
                    if std::time::Instant::now() >= until {
                        return None;
                    }
                    let (current, rv) = {
                        let s = state.lock().unwrap_or_else(|e| e.into_inner());
                        (now(&s), s.rv)
                    };
                    for (name, (uid, pod)) in &current {
                        let mut obj = pod.clone();
                        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
                        match known.get(name) {
                            None => queue.push_back(json!({"type": "ADDED", "object": obj})),
                            Some((u, _)) if u != uid => {
                                let (_, old) = &known[name];
                                queue.push_back(json!({"type": "DELETED", "object": old}));
                                queue.push_back(json!({"type": "ADDED", "object": obj}));
                            }
                            Some((_, before)) if before != pod => {
                                queue.push_back(json!({"type": "MODIFIED", "object": obj}))
                            }
                            _ => {}
                        }
                    }
                    for (name, (_, old)) in &known {
                        if !current.contains_key(name) {
                            queue.push_back(json!({"type": "DELETED", "object": old}));
                        }
                    }
                    known = current;
                    if queue.is_empty() {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
        },
    );
    Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .body(axum::body::Body::from_stream(stream))
        .unwrap()
}

async fn handle(State(state): State<Arc<Mutex<DoubleState>>>, req: Request) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    state
        .lock()
        .unwrap()
        .requests
        .push((method.to_string(), path.clone(), query.clone()));
    let watch = query.contains("watch=true");
    let fault = take_fault(
        &mut state.lock().unwrap_or_else(|e| e.into_inner()),
        &method,
        &path,
        watch,
    );
    if let Some(kind) = fault {
        return fault_response(kind);
    }
    if method == Method::GET && path.ends_with("/pods") && watch {
        return watch_pods(state, &query);
    }
    let manager = url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "fieldManager")
        .map(|(_, v)| v.into_owned())
        .or_else(|| {
            // The API server names an unnamed manager after the client's
            // User-Agent, up to its first '/'.
            req.headers()
                .get("user-agent")
                .and_then(|v| v.to_str().ok())
                .map(|ua| ua.split('/').next().unwrap_or(ua).to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let ctype = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body: Bytes = axum::body::to_bytes(req.into_body(), usize::MAX)
        .await
        .unwrap();
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
    match (method, parts.as_slice()) {
        (Method::GET, ["apis", "apps", "v1", "namespaces", _, "statefulsets", name]) => {
            match s.sets.get(*name) {
                Some(set) => Json(set.obj.clone()).into_response(),
                None => status(
                    404,
                    "NotFound",
                    format!("statefulsets.apps \"{name}\" not found"),
                ),
            }
        }
        (Method::PATCH, ["apis", "apps", "v1", "namespaces", _, "statefulsets", name]) => {
            let patch: Value = match serde_json::from_slice(&body) {
                Ok(p) => p,
                Err(e) => return status(400, "BadRequest", e.to_string()),
            };
            s.patches.push((ctype.clone(), patch.clone()));
            if s.conflicts > 0 {
                s.conflicts -= 1;
                s.conflicts_served += 1;
                return status(
                    409,
                    "Conflict",
                    format!("Operation cannot be fulfilled on statefulsets.apps \"{name}\": the object has been modified; please apply your changes to the latest version and try again"),
                );
            }
            s.rv += 1;
            let rv = s.rv;
            let Some(set) = s.sets.get_mut(*name) else {
                return status(
                    404,
                    "NotFound",
                    format!("statefulsets.apps \"{name}\" not found"),
                );
            };
            let before = set.obj["spec"].clone();
            if ctype.starts_with("application/merge-patch+json") {
                merge(&mut set.obj, &patch);
            } else if ctype.starts_with("application/strategic-merge-patch+json") {
                strategic(&mut set.obj, &patch);
            } else {
                return status(
                    415,
                    "UnsupportedMediaType",
                    format!("content type {ctype:?}"),
                );
            }
            if set.obj["spec"] != before {
                set.generation += 1;
                set.obj["metadata"]["generation"] = json!(set.generation);
            }
            set.obj["metadata"]["resourceVersion"] = json!(rv.to_string());
            // managedFields: this manager's entry gains the fields it set.
            let mut managed = set.obj["metadata"]["managedFields"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let mut mine = managed
                .iter()
                .position(|m| m["manager"] == json!(manager))
                .map(|i| managed.remove(i))
                .unwrap_or_else(|| {
                    json!({"manager": manager, "operation": "Update", "apiVersion": "apps/v1",
                           "fieldsType": "FieldsV1", "fieldsV1": {}})
                });
            let mut fields = mine["fieldsV1"].take();
            merge(&mut fields, &fields_v1(&patch));
            mine["fieldsV1"] = fields;
            mine["time"] = json!(k8s_openapi::jiff::Timestamp::now().to_string());
            managed.push(mine);
            set.obj["metadata"]["managedFields"] = json!(managed);
            let template = set.obj["spec"]["template"].clone();
            set.revisions.insert(revision(&template), template);
            set.history.push((Instant::now(), set.obj.clone()));
            Json(set.obj.clone()).into_response()
        }
        (Method::GET, ["api", "v1", "namespaces", _, "pods", name]) => {
            let rv = s.rv;
            match s.pods.get(*name) {
                Some(p) => {
                    let sts = name.rsplit_once('-').map_or(*name, |(a, _)| a);
                    Json(pod_json(name, sts, p, rv)).into_response()
                }
                None => status(404, "NotFound", format!("pods \"{name}\" not found")),
            }
        }
        (Method::GET, ["api", "v1", "namespaces", _, "pods"]) => {
            let selector = query_param(&query, "labelSelector").unwrap_or_default();
            let items: Vec<Value> = s
                .pods
                .iter()
                .map(|(name, p)| {
                    let sts = name.rsplit_once('-').map_or(name.as_str(), |(a, _)| a);
                    pod_json(name, sts, p, s.rv)
                })
                .filter(|p| selects(&selector, p))
                .collect();
            Json(json!({"apiVersion": "v1", "kind": "PodList",
                        "metadata": {"resourceVersion": s.rv.to_string()}, "items": items}))
            .into_response()
        }
        (Method::PATCH, ["api", "v1", "namespaces", _, "pods", name]) => {
            // A merge patch of the pod's annotations (what hab patches).
            let patch: Value = match serde_json::from_slice(&body) {
                Ok(p) => p,
                Err(e) => return status(400, "BadRequest", e.to_string()),
            };
            if !ctype.starts_with("application/merge-patch+json") {
                return status(
                    415,
                    "UnsupportedMediaType",
                    format!("content type {ctype:?}"),
                );
            }
            s.rv += 1;
            let rv = s.rv;
            s.pod_patches.push((name.to_string(), patch.clone()));
            let Some(p) = s.pods.get_mut(*name) else {
                return status(404, "NotFound", format!("pods \"{name}\" not found"));
            };
            if let Some(a) = patch["metadata"]["annotations"].as_object() {
                for (k, v) in a {
                    match v.as_str() {
                        Some(v) => p.annotations.insert(k.clone(), v.to_string()),
                        None => p.annotations.remove(k),
                    };
                }
            }
            let sts = name.rsplit_once('-').map_or(*name, |(a, _)| a);
            Json(pod_json(name, sts, p, rv)).into_response()
        }
        (Method::DELETE, ["api", "v1", "namespaces", _, "pods", name]) => {
            match terminate(&mut s, name) {
                Some(p) => {
                    s.deleted.push(name.to_string());
                    let sts = name.rsplit_once('-').map_or(*name, |(a, _)| a);
                    Json(pod_json(name, sts, &p, s.rv)).into_response()
                }
                None => status(404, "NotFound", format!("pods \"{name}\" not found")),
            }
        }
        (Method::POST, ["api", "v1", "namespaces", _, "events"])
        | (Method::POST, ["apis", "events.k8s.io", "v1", "namespaces", _, "events"]) => {
            let events_v1 = path.starts_with("/apis/events.k8s.io/");
            let mut ev: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            if let Err(why) = validate_event(&ev, events_v1) {
                s.events_refused.push(why.clone());
                return status(
                    422,
                    "Invalid",
                    format!("Event {:?} is invalid: {why}", ev["metadata"]["name"]),
                );
            }
            s.rv += 1;
            if ev["metadata"]["name"].as_str().is_none() {
                let gen = ev["metadata"]["generateName"]
                    .as_str()
                    .unwrap_or("ev-")
                    .to_string();
                ev["metadata"]["name"] = json!(format!("{gen}{}", s.rv));
            }
            ev["metadata"]["resourceVersion"] = json!(s.rv.to_string());
            s.events.push(ev.clone());
            (StatusCode::CREATED, Json(ev)).into_response()
        }
        (Method::PATCH, ["apis", "events.k8s.io", "v1", "namespaces", _, "events", name]) => {
            // kube-runtime's Recorder counts a repeated event as a series.
            let patch: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            s.rv += 1;
            let rv = s.rv;
            match s
                .events
                .iter_mut()
                .find(|e| e["metadata"]["name"] == json!(name))
            {
                Some(ev) => {
                    merge(ev, &patch);
                    ev["metadata"]["resourceVersion"] = json!(rv.to_string());
                    Json(ev.clone()).into_response()
                }
                None => status(404, "NotFound", format!("events \"{name}\" not found")),
            }
        }
        // Discovery, as clients map a kind to its resource (helm's
        // `lookup` asks for the group version of the kind it looks up).
        (Method::GET, ["api", "v1"]) => Json(json!({
            "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "v1",
            "resources": [
                {"name": "pods", "singularName": "pod", "namespaced": true, "kind": "Pod",
                 "verbs": ["get", "list", "watch", "patch", "delete"]},
                {"name": "events", "singularName": "event", "namespaced": true, "kind": "Event",
                 "verbs": ["create"]},
                {"name": "secrets", "singularName": "secret", "namespaced": true, "kind": "Secret",
                 "verbs": ["get"]},
            ],
        }))
        .into_response(),
        (Method::GET, ["apis", "apps", "v1"]) => Json(json!({
            "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "apps/v1",
            "resources": [
                {"name": "statefulsets", "singularName": "statefulset", "namespaced": true,
                 "kind": "StatefulSet", "verbs": ["get", "patch"]},
            ],
        }))
        .into_response(),
        // The Secrets the test created (helm's `lookup` of a kept password).
        (Method::GET, ["api", "v1", "namespaces", _, "secrets", name]) => {
            match s.secrets.get(*name) {
                Some(secret) => Json(secret.clone()).into_response(),
                None => status(404, "NotFound", format!("secrets \"{name}\" not found")),
            }
        }
        (m, _) => status(
            404,
            "NotFound",
            format!("the double does not serve {m} {path}"),
        ),
    }
}

/// One pass of the StatefulSet controller and the kubelet.
async fn reconcile(
    state: &Arc<Mutex<DoubleState>>,
    prefix: &str,
    ip_base: u8,
    http: &reqwest::Client,
) {
    // Kubelet: readiness from the node's RPC (a Terminating pod is not
    // Ready); Terminating pods whose time is up are gone.
    let pods: Vec<(String, PodRec)> = {
        let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
        let up: Vec<String> = s
            .pods
            .iter()
            .filter(|(_, p)| {
                p.deleting
                    .as_ref()
                    .is_some_and(|(_, t)| *t <= Instant::now())
            })
            .map(|(n, _)| n.clone())
            .collect();
        for n in up {
            gone(&mut s, &n);
        }
        s.pods
            .iter()
            .filter(|(_, p)| p.deleting.is_none())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    for (name, p) in pods {
        let env: HashMap<_, _> = p.env.iter().cloned().collect();
        let (mut user, mut password) = (
            env.get("RPC_USER").cloned().unwrap_or_default(),
            env.get("RPC_PASSWORD").cloned(),
        );
        // A node given its config file by a Secret: its credentials are
        // there; with a certificate it serves HTTPS, which the kubelet
        // probes without verifying (as httpGet probes do).
        let mut scheme = "http";
        let mut probe = http.clone();
        for (_, files, _) in &p.files {
            for (name, key, pass) in [
                ("bitcoin.conf", "rpcuser=", "rpcpassword="),
                ("btcd.conf", "rpcuser=", "rpcpass="),
            ] {
                if let Some(text) = files
                    .get(name)
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                {
                    let value = |k: &str| {
                        text.lines()
                            .find_map(|l| l.strip_prefix(k).map(str::to_string))
                    };
                    user = value(key).unwrap_or(user);
                    password = value(pass).or(password);
                }
            }
            if files.contains_key("rpc.cert") {
                scheme = "https";
                probe = reqwest::Client::builder()
                    .tls_danger_accept_invalid_certs(true)
                    .build()
                    .unwrap();
            }
        }
        // The double cannot exec the pod's probe (its node client): it
        // asks the RPC port the node serves on (RPC_PORT, as the fixture
        // node reads it).
        let port = p
            .env
            .iter()
            .find(|(k, _)| k == "RPC_PORT")
            .map_or("18443", |(_, v)| v.as_str());
        let ready = probe
            .post(format!("{scheme}://{}:{port}/", p.ip))
            .basic_auth(user, password)
            .timeout(Duration::from_secs(2))
            .body(r#"{"jsonrpc":"1.0","id":"probe","method":"getblockchaininfo","params":[]}"#)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if let Some(rec) = state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pods
            .get_mut(&name)
        {
            if rec.uid == p.uid && rec.deleting.is_none() {
                rec.ready = ready;
            }
        }
    }
    // Controller, on the StatefulSets as its informer saw them `lag` ago.
    let mut to_start = Vec::new();
    {
        let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
        let lag = s.lag;
        let names: Vec<String> = s.sets.keys().cloned().collect();
        for name in names {
            let (view, current, template_of, ip_offset) = {
                let set = &s.sets[&name];
                let seen = set
                    .history
                    .iter()
                    .rev()
                    .find(|(t, _)| t.elapsed() >= lag)
                    .or(set.history.first())
                    .map(|(_, o)| o.clone())
                    .unwrap_or_else(|| set.obj.clone());
                (
                    seen,
                    set.current.clone(),
                    set.revisions.clone(),
                    set.ip_offset,
                )
            };
            let replicas = view["spec"]["replicas"].as_u64().unwrap_or(1) as u32;
            let partition = view["spec"]["updateStrategy"]["rollingUpdate"]["partition"]
                .as_u64()
                .unwrap_or(0) as u32;
            let update = revision(&view["spec"]["template"]);
            let generation = view["metadata"]["generation"].as_i64().unwrap_or(1);
            // Create missing pods: from ordinal 0 up, each once the one
            // before is Ready (OrderedReady), or all at once (Parallel); a
            // Terminating one is waited for.
            let parallel = view["spec"]["podManagementPolicy"] == "Parallel";
            for o in 0..replicas {
                let pod = format!("{name}-{o}");
                match s.pods.get(&pod) {
                    Some(p) if p.ready && p.deleting.is_none() => continue,
                    Some(_) if parallel => continue,
                    Some(_) => break,
                    None => {
                        let rev = if o >= partition {
                            update.clone()
                        } else {
                            current.clone()
                        };
                        let template = &template_of[&rev];
                        let containers = template["spec"]["containers"]
                            .as_array()
                            .cloned()
                            .unwrap_or_default();
                        let c = containers
                            .iter()
                            .find(|c| c["name"] == "node")
                            .or(containers.first())
                            .cloned()
                            .unwrap_or(Value::Null);
                        let env: Vec<(String, String)> = c["env"]
                            .as_array()
                            .map(|e| {
                                e.iter()
                                    .map(|v| {
                                        (
                                            v["name"].as_str().unwrap_or("").to_string(),
                                            env_value(&s.secrets, v),
                                        )
                                    })
                                    .collect()
                            })
                            .unwrap_or_default();
                        let files = secret_volumes(&s.secrets, &template["spec"], &c);
                        s.uid += 1;
                        let rec = PodRec {
                            uid: format!("uid-{}", s.uid),
                            ordinal: o,
                            revision: rev.clone(),
                            image: c["image"].as_str().unwrap_or("").to_string(),
                            ip: format!("127.0.0.{}", ip_base + ip_offset + o as u8),
                            env,
                            files,
                            ready: false,
                            container: format!("{prefix}-{name}-{o}-{}", s.uid),
                            image_id: None,
                            deleting: None,
                            grace: template["spec"]["terminationGracePeriodSeconds"]
                                .as_u64()
                                .unwrap_or(30),
                            annotations: BTreeMap::new(),
                        };
                        s.rv += 1;
                        s.created.push((pod.clone(), rev));
                        to_start.push((
                            pod.clone(),
                            rec.clone(),
                            format!("{prefix}-{name}-{o}-data"),
                        ));
                        s.pods.insert(pod, rec);
                        break;
                    }
                }
            }
            // Rolling update: only while every pod exists, is Ready and not
            // Terminating; the highest one at or above the partition that is
            // not on the update revision.
            let all_ready = (0..replicas).all(|o| {
                s.pods
                    .get(&format!("{name}-{o}"))
                    .is_some_and(|p| p.ready && p.deleting.is_none())
            });
            if all_ready {
                let stale = (partition..replicas)
                    .rev()
                    .find(|o| s.pods[&format!("{name}-{o}")].revision != update);
                if let Some(o) = stale {
                    terminate(&mut s, &format!("{name}-{o}"));
                }
            }
            // Status, as the controller reports it.
            let pods: Vec<PodRec> = (0..replicas)
                .filter_map(|o| s.pods.get(&format!("{name}-{o}")).cloned())
                .collect();
            let updated = pods.iter().filter(|p| p.revision == update).count();
            let ready = pods.iter().filter(|p| p.ready).count();
            let currentn = pods.iter().filter(|p| p.revision == current).count();
            let set = s.sets.get_mut(&name).unwrap();
            if updated as u32 == replicas && ready as u32 == replicas {
                set.current = update.clone();
            }
            set.obj["status"] = json!({
                "replicas": pods.len(), "readyReplicas": ready, "updatedReplicas": updated,
                "currentReplicas": currentn, "observedGeneration": generation,
                "currentRevision": format!("{name}-{}", set.current), "updateRevision": format!("{name}-{update}"),
            });
        }
    }
    for (pod, p, volume) in to_start {
        // The pod's RPC port on its address (a pod's ports are its own).
        let port = p
            .env
            .iter()
            .find(|(k, _)| k == "RPC_PORT")
            .map_or("18443", |(_, v)| v.as_str())
            .to_string();
        let mut args = vec![
            "run".to_string(),
            "-d".into(),
            "--name".into(),
            p.container.clone(),
            "-v".into(),
            format!("{volume}:/data"),
            "-p".into(),
            format!("{}:{port}:{port}", p.ip),
        ];
        for (k, v) in &p.env {
            args.push("-e".into());
            args.push(format!("{k}={v}"));
        }
        for (i, (mount, files, mode)) in p.files.iter().enumerate() {
            let dir = volume_dir(&p.container, i);
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            for (name, bytes) in files {
                let path = dir.join(name);
                std::fs::write(&path, bytes).unwrap();
                std::fs::set_permissions(
                    &path,
                    std::os::unix::fs::PermissionsExt::from_mode(*mode),
                )
                .unwrap();
            }
            args.push("-v".into());
            args.push(format!("{}:{mount}:ro", dir.display()));
        }
        args.push(p.image.clone());
        let image = p.image.clone();
        let (out, digests) = tokio::task::spawn_blocking(move || {
            let out = Command::new("/usr/bin/docker")
                .args(&args)
                .output()
                .unwrap();
            let digests = Command::new("/usr/bin/docker")
                .args([
                    "image",
                    "inspect",
                    "--format",
                    "{{json .RepoDigests}}",
                    &image,
                ])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            (out, digests)
        })
        .await
        .unwrap();
        assert!(
            out.status.success(),
            "docker run: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // imageID: the digest the kubelet pulled, of the pod's repository.
        let repo = p.image.split('@').next().unwrap_or("");
        let repo = match repo.rsplit_once(':') {
            Some((r, tag)) if !tag.contains('/') => r,
            _ => repo,
        };
        let id = serde_json::from_str::<Vec<String>>(digests.trim())
            .unwrap_or_default()
            .into_iter()
            .find(|d| d.split('@').next() == Some(repo))
            .or_else(|| p.image.contains("@sha256:").then(|| p.image.clone()));
        let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
        match s.pods.get_mut(&pod) {
            Some(rec) if rec.uid == p.uid => rec.image_id = id,
            // Deleted while its container was starting: it must not linger.
            _ => {
                let _ = Command::new("/usr/bin/docker")
                    .args(["rm", "-f", &p.container])
                    .output();
            }
        }
    }
}
