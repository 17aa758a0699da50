//! The Kubernetes target as a real cluster behaves (issue 14), against the
//! API double (tests/common/kube_double.rs) grown to act like one: the
//! StatefulSet controller's revisions (`currentRevision` moves once every
//! pod is updated and Ready; a pod below the partition comes back on it), an
//! informer that lags, Terminating pods with a grace period, injected 503s,
//! 500s and resets, the real API's Event validation and `managedFields`.
//! Each test fails on hab before it followed revisions.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

async fn build(habd: &Habd, pipeline: &str, tag: &str) -> Value {
    build_of(habd, pipeline, tag).await
}

/// Syncs both pipelines of a KubeWorld.
async fn sync_both(habd: &Habd) {
    for p in ["node", "node2"] {
        let (s, b) = call(habd.api(reqwest::Method::POST, &format!("/pipelines/{p}/sync"))).await;
        assert_eq!(s, 200, "{b}");
    }
}

/// Promotes `build` to `stable` without waiting; returns the rollout's id.
async fn promote(habd: &Habd, build: &Value) -> i64 {
    let pipeline = build["pipeline"].as_str().unwrap();
    let (s, p) = call(
        habd.api(
            reqwest::Method::POST,
            &format!("/pipelines/{pipeline}/promote"),
        )
        .json(&json!({ "target": build["id"].to_string(), "channel": "stable", "by": "test" })),
    )
    .await;
    assert_eq!(s, 200, "{p}");
    p["rollouts"][0]["id"].as_i64().unwrap()
}

async fn rollout(habd: &Habd, id: i64) -> Value {
    call(habd.api(reqwest::Method::GET, &format!("/rollouts/{id}")))
        .await
        .1
}

/// Waits until the rollout's state is `state`.
async fn until_state(habd: &Habd, id: i64, state: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let r = rollout(habd, id).await;
        if r["state"] == state {
            return r;
        }
        assert!(Instant::now() < deadline, "never {state}: {r:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until node `ordinal` of the rollout records a step of `kind`.
async fn until_node_step(habd: &Habd, id: i64, ordinal: u32, kind: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let r = rollout(habd, id).await;
        if r["steps"].as_array().is_some_and(|s| {
            s.iter()
                .any(|s| s["kind"] == kind && s["ordinal"] == json!(ordinal))
        }) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no {kind} step of node {ordinal}: {r:#}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The pod's labels and spec as the API serves them.
async fn pod(kw: &KubeWorld, fleet: &str, o: u32) -> Value {
    call(client().get(format!(
        "{}/api/v1/namespaces/default/pods/{fleet}-{o}",
        kw.double.url
    )))
    .await
    .1
}

/// Every pod of the first fleet is on the StatefulSet's update revision and
/// runs `image` (its spec, by digest).
async fn assert_on(kw: &KubeWorld, image: &str) {
    let sts = kw.double.statefulset(&kw.fleet);
    let update = sts["status"]["updateRevision"]
        .as_str()
        .unwrap()
        .to_string();
    for o in 0..kw.nodes {
        let p = pod(kw, &kw.fleet, o).await;
        assert_eq!(
            p["spec"]["containers"][0]["image"], image,
            "pod {o} runs the image, by digest: {p:#}"
        );
        assert_eq!(
            p["metadata"]["labels"]["controller-revision-hash"], update,
            "pod {o} is on the update revision: {sts:#}"
        );
    }
    let template = &sts["spec"]["template"]["spec"]["containers"][0]["image"];
    assert_eq!(template, image, "{sts:#}");
}

/// Tags `build`'s index `stable` in the registry by hand (as a channel
/// would), so a set can be installed on the tag.
async fn tag_stable(kw: &KubeWorld, build: &Value) {
    let digest = build["index_digest"].as_str().unwrap();
    let accept = "application/vnd.oci.image.index.v1+json";
    let url = format!("{}/v2/hab/node/manifests", kw.registry.url());
    let res = client()
        .get(format!("{url}/{digest}"))
        .header("Accept", accept)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body = res.bytes().await.unwrap();
    let res = client()
        .put(format!("{url}/stable"))
        .header("Content-Type", accept)
        .body(body)
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "{}", res.status());
}

/// A KubeWorld (the first fleet of `nodes` nodes with `gates`), habd in
/// process with both pipelines synced, and builds of `tags` of `node` then
/// of v1.0.0 of `node2` (the last one).
async fn started(
    ip_base: u8,
    nodes: u32,
    gates: &str,
    tags: &[&str],
) -> (KubeWorld, Habd, Vec<Value>) {
    let kw = KubeWorld::with(ip_base, nodes, gates).await;
    let habd = Habd::start_config(kw.bw.load()).await;
    sync_both(&habd).await;
    let mut builds = Vec::new();
    for tag in tags {
        builds.push(build(&habd, "node", tag).await);
    }
    builds.push(build(&habd, "node2", "v1.0.0").await);
    (kw, habd, builds)
}

/// Installs the first fleet on `first` (each pod given `grace` seconds to
/// terminate) and the second on `a2`, waits for every pod to be Ready, and
/// rolls `a` and `a2` (the nodes already run them: checked only).
async fn installed(kw: &KubeWorld, habd: &Habd, first: &str, grace: u64, a: &Value, a2: &Value) {
    kw.install_with(&kw.fleet, first, kw.nodes, grace);
    kw.install(&kw.fleet2, &image(a2));
    kw.wait_ready().await;
    for b in [a, a2] {
        let r = promote_and_wait(habd, b).await;
        assert_eq!(r["state"], "succeeded", "{r:#}");
    }
}

/// Stops the prober: at least 3 of the 4 nodes answered at every instant.
async fn prober_held(
    (stop, prober): (
        std::sync::Arc<std::sync::atomic::AtomicBool>,
        tokio::task::JoinHandle<usize>,
    ),
) {
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let fewest = prober.await.unwrap();
    assert!(
        fewest >= 3,
        "only {fewest} of 4 nodes healthy at some instant"
    );
}

const GATES: &str = "soak = \"1s\"\nready_timeout = \"8s\"\n";

/// A one-replica fleet (btcd's and bcoin's default), installed on the tag
/// `stable`. A release that becomes Ready, so that the controller moves
/// `currentRevision` to it, then fails its gate (it lags): the rollback
/// must land on the old revision and digest, although the controller would
/// recreate a pod below the partition on the bad one; and it sets a digest,
/// never the tag (which hab had moved to the bad release meanwhile).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_replica_fleet_whose_release_fails_after_ready_rolls_back_to_the_old_revision() {
    let (mut kw, habd, builds) = started(150, 1, GATES, &["v1.0.0", "v1.3.0"]).await;
    let [a, lagging, a2] = &builds[..] else {
        unreachable!()
    };
    tag_stable(&kw, a).await;
    let repo = image(a).split('@').next().unwrap().to_string();
    installed(&kw, &habd, &format!("{repo}:stable"), 30, a, a2).await;

    let r = promote_and_wait(&habd, lagging).await;
    assert_eq!(r["state"], "failed", "{r:#}");
    let reason = r["reason"].as_str().unwrap();
    assert!(reason.contains("blocks behind"), "{r:#}");
    let steps: Vec<&str> = r["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["kind"].as_str())
        .collect();
    assert!(steps.contains(&"gate_failed"), "{steps:?}");
    // Back on A: the pod on the revision of A's template, by digest.
    assert_on(&kw, &image(a)).await;
    let sts = kw.double.statefulset(&kw.fleet);
    assert_eq!(
        sts["spec"]["updateStrategy"]["rollingUpdate"]["partition"], 1,
        "frozen again: {sts:#}"
    );
    // habd's patches are habd's in managedFields.
    let managed = sts["metadata"]["managedFields"].as_array().unwrap();
    let habd_fields = managed
        .iter()
        .find(|m| m["manager"] == "habd")
        .unwrap_or_else(|| panic!("no habd manager: {managed:#?}"));
    assert!(
        habd_fields["fieldsV1"]["f:spec"]["f:updateStrategy"]["f:rollingUpdate"]
            .get("f:partition")
            .is_some(),
        "{habd_fields:#}"
    );
    habd.stop().await;
    kw.double.cleanup();
}

/// The controller acts on the StatefulSet as its informer cache saw it
/// 1.5 s ago. A release that never becomes Ready sticks pod 1; the
/// rollback deletes it only once the controller has observed the reverted
/// template, so the pod is never recreated on the bad revision again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_controller_lag_a_rollback_never_recreates_the_stuck_pod_on_the_bad_revision() {
    let (mut kw, habd, builds) = started(180, 2, GATES, &["v1.0.0", "v1.2.0"]).await;
    let [a, bad, a2] = &builds[..] else {
        unreachable!()
    };
    kw.double.state.lock().unwrap().lag = Duration::from_millis(1500);
    installed(&kw, &habd, &image(a), 30, a, a2).await;
    let probing = kw.prober(2);
    let before = kw.double.state.lock().unwrap().created.len();

    let r = promote_and_wait(&habd, bad).await;
    assert_eq!(r["state"], "failed", "{r:#}");
    assert!(
        r["reason"].as_str().unwrap().contains("not healthy"),
        "{r:#}"
    );
    assert_on(&kw, &image(a)).await;
    let pod1 = format!("{}-1", kw.fleet);
    let created: Vec<String> = kw.double.state.lock().unwrap().created[before..]
        .iter()
        .filter(|(p, _)| *p == pod1)
        .map(|(_, rev)| rev.clone())
        .collect();
    assert!(created.len() >= 2, "replaced, then restored: {created:?}");
    let bad_revision = &created[0];
    assert_eq!(
        created.iter().filter(|r| *r == bad_revision).count(),
        1,
        "pod 1 was recreated on the bad revision again: {created:?}"
    );
    prober_held(probing).await;
    habd.stop().await;
    kw.double.cleanup();
}

/// After a rollout the set is frozen: an env var set by kubectl restarts no
/// pod. In the middle of a walk, the same change holds the rollout
/// (paused, with why) instead of letting the controller replace the node
/// already moved a second time; resumed, it completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_change_restarts_no_pod_after_a_rollout_and_holds_one_mid_walk() {
    let gates = "soak = \"3s\"\nready_timeout = \"30s\"\n";
    let (mut kw, habd, builds) = started(210, 2, gates, &["v1.0.0", "v1.1.0"]).await;
    let [a, b, a2] = &builds[..] else {
        unreachable!()
    };
    let fleet = kw.fleet.clone();
    installed(&kw, &habd, &image(a), 30, a, a2).await;
    assert_eq!(promote_and_wait(&habd, b).await["state"], "succeeded");
    assert_on(&kw, &image(b)).await;

    let env = |v: &str| {
        json!({"spec": {"template": {"spec": {"containers": [
            {"name": "node", "env": [{"name": "EXTRA", "value": v}]}]}}}})
    };
    let uids = kw.double.pods_of(&fleet);
    kw.double
        .patch_statefulset(&fleet, env("1"), "kubectl")
        .await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        kw.double.pods_of(&fleet),
        uids,
        "an env change after the rollout restarted a pod"
    );

    // Back to A; while node 1 soaks on it, kubectl changes the env again.
    let id = promote(&habd, a).await;
    until_node_step(&habd, id, 1, "soaking").await;
    let mid = kw.double.pods_of(&fleet);
    kw.double
        .patch_statefulset(&fleet, env("2"), "kubectl")
        .await;
    let r = until_state(&habd, id, "paused").await;
    let held = r["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["kind"] == "held")
        .unwrap_or_else(|| panic!("no held step: {r:#}"));
    assert!(
        held["detail"]
            .as_str()
            .unwrap()
            .contains("changed outside hab"),
        "{held}"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        kw.double.pods_of(&fleet),
        mid,
        "no node replaced while held (node 1 not twice, node 0 not behind the gates)"
    );
    {
        let s = kw.double.state.lock().unwrap();
        let reasons = s.event_reasons();
        assert!(reasons.contains(&"RolloutHeld"), "{reasons:?}");
    }

    // The operator accepts the change.
    let (s, body) = call(habd.api(reqwest::Method::POST, &format!("/fleets/{fleet}/resume"))).await;
    assert_eq!(s, 200, "{body}");
    let r = until_state(&habd, id, "succeeded").await;
    assert_eq!(r["state"], "succeeded");
    assert_on(&kw, &image(a)).await;
    habd.stop().await;
    kw.double.cleanup();
}

/// Events pass the real API's validation (none refused but the one the
/// test makes the API refuse, which habd counts), and the routine
/// failures of a real API during a rollout (a 503 on a pod GET and on a
/// watch, a 500 on a patch, connections reset mid-answer on a GET and on a
/// watch, a node's state unreadable during its soak) are tried again: the
/// rollout succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_valid_and_transient_api_failures_do_not_fail_a_rollout() {
    let gates = "soak = \"3s\"\nready_timeout = \"20s\"\n";
    let (mut kw, habd, builds) = started(240, 2, gates, &["v1.0.0", "v1.1.0"]).await;
    let [a, b, a2] = &builds[..] else {
        unreachable!()
    };
    installed(&kw, &habd, &image(a), 30, a, a2).await;
    let probing = kw.prober(2);

    let id = promote(&habd, b).await;
    until_node_step(&habd, id, 1, "soaking").await;
    let fault = |method, path: &str, watch, kind| Fault {
        method,
        path_has: path.into(),
        watch,
        kind,
    };
    kw.double.state.lock().unwrap().faults = vec![
        fault("GET", "/pods/", Some(false), FaultKind::Status(503)),
        fault("GET", "/pods/", Some(false), FaultKind::Reset),
        fault("GET", "/statefulsets/", Some(false), FaultKind::Status(500)),
        fault("GET", "/statefulsets/", Some(false), FaultKind::Reset),
        fault("PATCH", "/statefulsets/", None, FaultKind::Status(500)),
        fault("GET", "/pods", Some(true), FaultKind::Status(503)),
        fault("GET", "/pods", Some(true), FaultKind::Reset),
        // An Event the API refuses: a warning and a count, nothing more.
        fault("PATCH", "/events/", None, FaultKind::Status(422)),
    ];
    let r = until_state(&habd, id, "succeeded").await;
    assert_eq!(r["state"], "succeeded", "{r:#}");
    assert_on(&kw, &image(b)).await;
    {
        let s = kw.double.state.lock().unwrap();
        assert!(
            s.faults.is_empty(),
            "every fault was met: left {:?}, served {:?}",
            s.faults,
            s.faults_served
        );
        assert!(s.events_refused.is_empty(), "{:?}", s.events_refused);
        let reasons = s.event_reasons();
        for want in [
            "ImageSet",
            "PartitionMoved",
            "GatePassed",
            "RolloutSucceeded",
        ] {
            assert!(reasons.contains(&want), "event {want} in {reasons:?}");
        }
        for e in &s.events {
            assert_eq!(e["reportingController"], "habd", "{e}");
            assert_eq!(e["regarding"]["kind"], "StatefulSet", "{e}");
        }
    }
    let metrics = habd.metrics().await;
    let refused: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("hab_kubernetes_events_failed_total "))
        .unwrap_or_else(|| panic!("no events_failed counter in:\n{metrics}"))
        .trim()
        .parse()
        .unwrap();
    assert!(refused >= 1.0, "the refused Event is counted: {refused}");
    prober_held(probing).await;
    habd.stop().await;
    kw.double.cleanup();
}

/// A replaced pod stays Terminating for 8 s (its grace period is 30 s),
/// longer than the 6 s `ready_timeout` minus the time a node takes to
/// start: the wait counts from the moment the old pod is gone, so the
/// rollout succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_terminating_longer_than_ready_timeout_still_rolls() {
    let gates = "soak = \"1s\"\nready_timeout = \"6s\"\n";
    let (mut kw, habd, builds) = started(120, 2, gates, &["v1.0.0", "v1.1.0"]).await;
    let [a, b, a2] = &builds[..] else {
        unreachable!()
    };
    installed(&kw, &habd, &image(a), 30, a, a2).await;
    kw.double.state.lock().unwrap().terminate_hold = Duration::from_secs(8);
    let r = promote_and_wait(&habd, b).await;
    assert_eq!(r["state"], "succeeded", "{r:#}");
    assert_eq!(
        kw.double.state.lock().unwrap().terminated,
        2,
        "both pods were held Terminating"
    );
    assert_on(&kw, &image(b)).await;
    habd.stop().await;
    kw.double.cleanup();
}
