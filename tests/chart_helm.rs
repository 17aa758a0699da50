//! Helm and habd share the node StatefulSets: habd owns the `node`
//! container's image and the partition, the chart everything else. These
//! tests show the fight Helm 3's three-way merge starts when the chart
//! renders those two fields from values, and that the chart, rendering them
//! from the live object (`lookup`), leaves a rollout alone: Helm 3's patch
//! computed as Helm computes it (`common::helm3`), the chart rendered by the
//! real `helm` with its `lookup` answered by the Kubernetes API double, and
//! in the end-to-end test a rollout by habd that a `helm upgrade` meets
//! half-way.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

/// The StatefulSet of the end-to-end tests (release `hab`, bitcoind).
const FLEET: &str = "hab-bitcoind";
/// The chart's values file of a small regtest fleet.
const VALUES: &str = "regtest-single-values.yaml";

/// A StatefulSet as small as the fight needs: the image and the partition
/// as `image` and `partition` say, replicas 2.
fn sts(image: &str, partition: u64) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": FLEET, "labels": {"app.kubernetes.io/managed-by": "Helm"}},
        "spec": {
            "replicas": 2,
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": partition}},
            "template": {"spec": {"containers": [
                {"name": "node", "image": image, "args": ["-regtest"],
                 "env": [{"name": "NETWORK", "value": "regtest"}]},
            ]}},
        },
    })
}

/// What the API server adds to what was applied: metadata and status.
fn live(mut obj: Value) -> Value {
    obj["metadata"]["resourceVersion"] = json!("42");
    obj["metadata"]["generation"] = json!(4);
    obj["status"] = json!({"replicas": 2, "readyReplicas": 2, "currentRevision": "hab-bitcoind-a"});
    obj
}

#[test]
fn rendered_from_values_helms_patch_reverts_the_image_and_resets_the_partition() {
    // Installed on the tag; habd has since set the image by digest and
    // walked the partition to 1 (pod 1 replaced). A `helm upgrade` that
    // renders from values again (nothing in them changed):
    let installed = sts("reg/hab/bitcoind:stable", 2);
    let current = live(sts("reg/hab/bitcoind@sha256:b", 1));
    let patch = three_way_patch(&installed, &installed, &current);
    assert_eq!(
        patch,
        json!({"spec": {
            "template": {"spec": {
                "$setElementOrder/containers": [{"name": "node"}],
                "containers": [{"name": "node", "image": "reg/hab/bitcoind:stable"}],
            }},
            "updateStrategy": {"rollingUpdate": {"partition": 2}},
        }}),
        "the image reverted and the partition reset: the rollout is frozen half-way on two images"
    );
}

#[test]
fn rendered_from_the_live_object_helms_patch_leaves_image_and_partition_alone() {
    let installed = sts("reg/hab/bitcoind:stable", 2);
    let current = live(sts("reg/hab/bitcoind@sha256:b", 1));
    // What the chart renders with lookup: image and partition as live.
    let rendered = sts("reg/hab/bitcoind@sha256:b", 1);
    assert_eq!(three_way_patch(&installed, &rendered, &current), json!({}));
    // Anything else the values change still goes through.
    let mut changed = rendered.clone();
    changed["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"] = json!("signet");
    let patch = three_way_patch(&installed, &changed, &current);
    assert_eq!(patched_image(&patch), None, "{patch}");
    assert_eq!(patched_partition(&patch), None, "{patch}");
    assert_eq!(
        patch["spec"]["template"]["spec"]["containers"][0]["env"],
        json!([{"name": "NETWORK", "value": "signet"}])
    );
}

#[test]
fn the_three_way_merge_is_strategicpatchs() {
    let original = json!({
        "metadata": {"labels": {"a": "1", "gone": "x"}},
        "spec": {"template": {"spec": {"containers": [
            {"name": "node", "image": "i1", "args": ["-a"],
             "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]},
            {"name": "old", "image": "o"},
        ]}}},
    });
    // The new render: a label changed and one dropped, args changed, env B
    // and container `old` dropped.
    let modified = json!({
        "metadata": {"labels": {"a": "2"}},
        "spec": {"template": {"spec": {"containers": [
            {"name": "node", "image": "i1", "args": ["-b"], "env": [{"name": "A", "value": "1"}]},
        ]}}},
    });
    // Live: what others added (a label, a sidecar, an env entry, status)
    // and an image someone else set.
    let current = json!({
        "metadata": {"labels": {"a": "1", "gone": "x", "c": "3"}, "resourceVersion": "7"},
        "spec": {"template": {"spec": {"containers": [
            {"name": "node", "image": "live", "args": ["-a"],
             "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}, {"name": "INJ", "value": "y"}]},
            {"name": "old", "image": "o"},
            {"name": "sidecar", "image": "s"},
        ]}}},
        "status": {"replicas": 1},
    });
    let patch = three_way_patch(&original, &modified, &current);
    assert_eq!(
        patch,
        json!({
            // Changed: set; dropped from the render: deleted; only live
            // (`c`, resourceVersion, status): left alone.
            "metadata": {"labels": {"a": "2", "gone": null}},
            "spec": {"template": {"spec": {
                "$setElementOrder/containers": [{"name": "node"}],
                "containers": [
                    // Merged by name: the image differing from live is set
                    // back, args (an atomic list) replaced whole, env B
                    // deleted by directive, INJ (live only) left.
                    {"name": "node", "image": "i1", "args": ["-b"],
                     "env": [{"name": "B", "$patch": "delete"}],
                     "$setElementOrder/env": [{"name": "A"}]},
                    // Dropped from the render: deleted; the sidecar stays.
                    {"name": "old", "$patch": "delete"},
                ],
            }}},
        })
    );
    // Nothing changed anywhere: nothing to send.
    assert_eq!(three_way_patch(&original, &original, &original), json!({}));
}

/// Sends a patch to the double as habd does (merge or strategic).
async fn patch(double: &KubeDouble, ctype: &str, body: Value) {
    let r = client()
        .patch(format!(
            "{}/apis/apps/v1/namespaces/default/statefulsets/{FLEET}",
            double.url
        ))
        .header("content-type", ctype)
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
}

/// `--set` pairs as helm's arguments.
fn strs(sets: &[String]) -> Vec<&str> {
    sets.iter().map(String::as_str).collect()
}

/// The live StatefulSet.
async fn get_sts(double: &KubeDouble) -> Value {
    let (s, sts) = call(client().get(format!(
        "{}/apis/apps/v1/namespaces/default/statefulsets/{FLEET}",
        double.url
    )))
    .await;
    assert_eq!(s, 200, "{sts}");
    sts
}

/// The `node` container's image and the partition of a StatefulSet.
fn image_and_partition(sts: &Value) -> (String, u64) {
    let spec = &sts["spec"];
    let image = spec["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "node")
        .unwrap()["image"]
        .as_str()
        .unwrap()
        .to_string();
    let partition = spec["updateStrategy"]["rollingUpdate"]["partition"]
        .as_u64()
        .unwrap();
    (image, partition)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helms_lookup_reads_the_live_statefulset_from_the_double() {
    let mut double = KubeDouble::start_api(&format!("helmapi{}", free_port())).await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = double.kubeconfig(dir.path());
    let (digest_a, digest_b) = (
        format!("sha256:{}", "a".repeat(64)),
        format!("sha256:{}", "b".repeat(64)),
    );
    let image_b = format!("127.0.0.1:30500/hab/node@{digest_b}");
    let sets = |replicas: u32| {
        vec![one_set(
            "bitcoind",
            &format!(
                r#""replicas": {replicas}, "image": {{"repository": "hab/node", "digest": "{digest_a}"}}"#
            ),
        )]
    };
    let sts_of = |yaml: &str| find(&documents(yaml), "StatefulSet", FLEET).clone();
    let render_plain = |replicas: u32| render(Some(VALUES), &strs(&sets(replicas))).unwrap();
    let render_lookup =
        |replicas: u32| render_live(&kubeconfig, Some(VALUES), &strs(&sets(replicas))).unwrap();

    // Before the set exists, lookup finds nothing: rendered from values,
    // frozen at replicas.
    let first = render_lookup(2);
    let installed = sts_of(&first);
    assert_eq!(
        image_and_partition(&installed),
        (format!("127.0.0.1:30500/hab/node@{digest_a}"), 2)
    );
    let secret = find(&documents(&first), "Secret", "hab-rpc").clone();
    double.create_secret(secret.clone());
    double.create_statefulset(installed.clone());
    // (Copied out of the lock: an assertion failing under it would poison
    // it for the double's cleanup.)
    let requests = double.state.lock().unwrap().requests.clone();
    let asked = |p: &str| requests.iter().any(|(m, path, _)| m == "GET" && path == p);
    assert!(
        asked("/apis/apps/v1") && asked("/api/v1"),
        "helm's lookup maps kinds through discovery: {requests:?}"
    );
    assert!(
        asked(&format!(
            "/apis/apps/v1/namespaces/default/statefulsets/{FLEET}"
        )),
        "helm looked the StatefulSet up: {requests:?}"
    );

    // habd rolls to B: freeze, image, walk to 1 (its own patches).
    patch(
        &double,
        "application/merge-patch+json",
        json!({"spec": {"updateStrategy": {"rollingUpdate": {"partition": 2}}}}),
    )
    .await;
    patch(
        &double,
        "application/strategic-merge-patch+json",
        json!({"spec": {"template": {"spec": {"containers": [{"name": "node", "image": image_b}]}}}}),
    )
    .await;
    patch(
        &double,
        "application/merge-patch+json",
        json!({"spec": {"updateStrategy": {"rollingUpdate": {"partition": 1}}}}),
    )
    .await;

    // helm upgrade with the same values: rendered as live.
    let upgrade = render_lookup(2);
    let rendered = sts_of(&upgrade);
    assert_eq!(image_and_partition(&rendered), (image_b.clone(), 1));
    assert_eq!(
        secret_value(
            find(&documents(&upgrade), "Secret", "hab-rpc"),
            "rpc-password"
        ),
        secret_value(&secret, "rpc-password"),
        "the RPC password kept: the Secret looked up through the double"
    );
    let current = get_sts(&double).await;
    let generation = current["metadata"]["generation"].clone();
    assert!(
        !apply_helm_patch(
            &double.url,
            FLEET,
            &three_way_patch(&installed, &rendered, &current)
        )
        .await,
        "helm has nothing to send"
    );
    assert_eq!(get_sts(&double).await["metadata"]["generation"], generation);

    // Scaled up half-way: new pods on the current revision (partition at
    // the new replicas), no node replaced (raising it replaces none).
    assert_eq!(
        image_and_partition(&sts_of(&render_lookup(3))),
        (image_b.clone(), 3)
    );

    // `helm template` (no cluster): from values. Its patch is the fight,
    // and the double shows it: the image reverted, the partition reset, a
    // new generation.
    let plain = sts_of(&render_plain(2));
    let fight = three_way_patch(&installed, &plain, &current);
    assert_eq!(
        patched_image(&fight),
        Some(format!("127.0.0.1:30500/hab/node@{digest_a}").as_str())
    );
    assert_eq!(patched_partition(&fight), Some(2));
    assert!(apply_helm_patch(&double.url, FLEET, &fight).await);
    let reverted = get_sts(&double).await;
    assert_eq!(
        image_and_partition(&reverted),
        (format!("127.0.0.1:30500/hab/node@{digest_a}"), 2)
    );
    assert_ne!(reverted["metadata"]["generation"], generation);

    // Frozen at 2 and scaled down to 1: the partition never drops below
    // what is live.
    assert_eq!(image_and_partition(&sts_of(&render_lookup(1))).1, 2);
    double.cleanup();
}

/// The pods' uids, by ordinal.
async fn pod_uids(double: &KubeDouble, replicas: u32) -> Vec<String> {
    let mut uids = Vec::new();
    for o in 0..replicas {
        let (s, pod) = call(client().get(format!(
            "{}/api/v1/namespaces/default/pods/{FLEET}-{o}",
            double.url
        )))
        .await;
        assert_eq!(s, 200, "{pod}");
        uids.push(pod["metadata"]["uid"].as_str().unwrap().to_string());
    }
    uids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_helm_upgrade_half_way_through_a_rollout_leaves_it_alone() {
    let bw = BuildWorld::with_node_releases();
    let registry = TestRegistry::start(&bw.world.path("registry"), None, None);
    let mut double = KubeDouble::start(&format!("helm{}", free_port()), 120).await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = double.kubeconfig(dir.path());
    bw.write_hab(&registry.url(), None);
    // A soak long enough for a helm upgrade to land while habd holds the
    // first replaced node to its gates.
    let mut hab = std::fs::read_to_string(bw.world.path("hab.toml")).unwrap();
    hab.push_str(&format!(
        "[[target]]\nname = \"cluster\"\nkind = \"kubernetes\"\nendpoint = \"{}\"\nnamespace = \"default\"\n\
         [[fleet]]\nname = \"{FLEET}\"\npipeline = \"node\"\nchannel = \"stable\"\ntarget = \"cluster\"\nnodes = 2\n\
         network = \"regtest\"\nrpc_user = \"hab\"\nrpc_password_file = \"rpc-password\"\nrpc_port = 18443\n\
         [fleet.gates]\nsoak = \"6s\"\nready_timeout = \"20s\"\n",
        double.url
    ));
    std::fs::write(bw.world.path("hab.toml"), hab).unwrap();
    bw.write_pipeline(
        "node",
        &fixture_recipe(),
        AMD64,
        r#"["fixture-node", "--version"]"#,
        "[[channel]]\nname = \"stable\"\n",
    );
    let habd = Habd::start_config(bw.load()).await;
    let (s, r) = call(habd.api(reqwest::Method::POST, "/pipelines/node/sync")).await;
    assert_eq!(s, 200, "{r}");
    let a = build_of(&habd, "node", "v1.0.0").await;
    let b = build_of(&habd, "node", "v1.1.0").await;
    let (image_a, image_b) = (
        a["reference"].as_str().unwrap().to_string(),
        b["reference"].as_str().unwrap().to_string(),
    );

    // helm install on A: the release's manifest is `installed`.
    let pull_host = format!("registry.pullHost={}", registry.host());
    let set = one_set(
        "bitcoind",
        &format!(
            r#""replicas": 2, "image": {{"repository": "hab/node", "digest": "{}"}}"#,
            a["index_digest"].as_str().unwrap()
        ),
    );
    let install_sets = [pull_host.as_str(), set.as_str()];
    // Rendered as helm install does: in the release's namespace (the peers'
    // names hold it), with nothing to look up yet.
    let docs = documents(&render_live(&kubeconfig, Some(VALUES), &install_sets).unwrap());
    let installed = find(&docs, "StatefulSet", FLEET).clone();
    let secret = find(&docs, "Secret", "hab-rpc").clone();
    assert_eq!(image_and_partition(&installed), (image_a.clone(), 2));
    double.create_secret(secret.clone());
    double.create_statefulset(installed.clone());
    std::fs::write(
        bw.world.path("rpc-password"),
        secret_value(&secret, "rpc-password"),
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while get_sts(&double).await["status"]["readyReplicas"] != 2 {
        assert!(Instant::now() < deadline, "pods never ready");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // habd rolls to B; wait until node 1 has been replaced on B while the
    // walk goes on (node 0 still on A; habd freezes the set between nodes,
    // so the partition is whatever step the walk is at).
    let rollout = promote(&habd, "node", b["id"].as_i64().unwrap()).await[0];
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let sts = get_sts(&double).await;
        let (_, pod) = call(client().get(format!(
            "{}/api/v1/namespaces/default/pods/{FLEET}-1",
            double.url
        )))
        .await;
        let (_, pod0) = call(client().get(format!(
            "{}/api/v1/namespaces/default/pods/{FLEET}-0",
            double.url
        )))
        .await;
        if image_and_partition(&sts).0 == image_b
            && pod["spec"]["containers"][0]["image"] == image_b.as_str()
            && pod0["spec"]["containers"][0]["image"] == image_a.as_str()
        {
            break;
        }
        assert!(Instant::now() < deadline, "node 1 never replaced: {sts}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // helm upgrade --reuse-values --set nodes.serviceType=NodePort: the same
    // replicas, a change to the Services only. Rendered with lookup
    // against the live set, as helm upgrade renders.
    let mut upgrade_sets = install_sets.to_vec();
    upgrade_sets.push("nodes.serviceType=NodePort");
    let upgrade = documents(&render_live(&kubeconfig, Some(VALUES), &upgrade_sets).unwrap());
    let rendered = find(&upgrade, "StatefulSet", FLEET).clone();
    assert_eq!(
        find(&upgrade, "Service", "hab-nodes")["spec"]["type"],
        "NodePort",
        "the upgrade changes something"
    );
    let current = get_sts(&double).await;
    let live = image_and_partition(&current);
    assert_eq!(live.0, image_b, "still half-way when helm patches");
    assert_eq!(
        image_and_partition(&rendered),
        live,
        "lookup saw the walk half-way"
    );
    let patch = three_way_patch(&installed, &rendered, &current);
    assert_eq!(patched_image(&patch), None, "{patch}");
    assert_eq!(patched_partition(&patch), None, "{patch}");
    apply_helm_patch(&double.url, FLEET, &patch).await;
    // The same upgrade rendered from values (`helm template`, no lookup)
    // would have reverted the image and frozen the walk: the test sees the
    // fight when there is one.
    let plain = documents(&render(Some(VALUES), &upgrade_sets).unwrap());
    let fight = three_way_patch(&installed, find(&plain, "StatefulSet", FLEET), &current);
    assert_eq!(patched_image(&fight), Some(image_a.as_str()), "{fight}");
    if live.1 != 2 {
        assert_eq!(patched_partition(&fight), Some(2), "{fight}");
    }

    let r = wait_rollout(&habd, rollout).await;
    assert_eq!(r["state"], "succeeded", "{r:#}");
    let done = get_sts(&double).await;
    assert_eq!(
        image_and_partition(&done),
        (image_b.clone(), 2),
        "frozen again after the rollout"
    );

    // Afterwards: another helm upgrade changes neither, and no node
    // restarts.
    let uids = pod_uids(&double, 2).await;
    let again = documents(&render_live(&kubeconfig, Some(VALUES), &upgrade_sets).unwrap());
    let again = find(&again, "StatefulSet", FLEET).clone();
    let patch = three_way_patch(&rendered, &again, &done);
    assert_eq!(patched_image(&patch), None, "{patch}");
    assert_eq!(patched_partition(&patch), None, "{patch}");
    apply_helm_patch(&double.url, FLEET, &patch).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(pod_uids(&double, 2).await, uids, "no node restarted");
    let after = get_sts(&double).await;
    assert_eq!(image_and_partition(&after), (image_b, 2));
    assert_eq!(
        after["metadata"]["generation"],
        done["metadata"]["generation"]
    );
    habd.stop().await;
    double.cleanup();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_keeps_every_generated_secret_and_certificate() {
    // What `helm install` made (no Secret to look up yet) is in the cluster;
    // `helm upgrade` renders with lookup and must hand back the same bytes:
    // the nodes' password and config files, the builders' CA and both
    // certificates, btcd's RPC CA and certificate.
    let mut double = KubeDouble::start_api(&format!("helmkeep{}", free_port())).await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = double.kubeconfig(dir.path());
    let kept = [
        (
            "hab-rpc",
            vec!["rpc-password", "bitcoind.conf", "btcd.conf", "bcoin.conf"],
        ),
        (
            "hab-builder-tls",
            vec![
                "ca.pem",
                "cert.pem",
                "key.pem",
                "client-cert.pem",
                "client-key.pem",
            ],
        ),
        ("hab-btcd-rpc-tls", vec!["ca.crt", "tls.crt", "tls.key"]),
    ];
    let install = documents(&render_live(&kubeconfig, None, &[]).unwrap());
    for (name, _) in &kept {
        double.create_secret(find(&install, "Secret", name).clone());
    }
    let upgrade = documents(&render_live(&kubeconfig, None, &["nodes.logLevel=debug"]).unwrap());
    for (name, keys) in &kept {
        let (before, after) = (
            find(&install, "Secret", name),
            find(&upgrade, "Secret", name),
        );
        for key in keys {
            assert_eq!(
                secret_value(before, key),
                secret_value(after, key),
                "{name}: {key} changed across an upgrade"
            );
        }
    }
    // A render without the cluster (nothing to look up) makes new ones.
    let fresh = documents(&render(None, &[]).unwrap());
    assert_ne!(
        secret_value(find(&install, "Secret", "hab-builder-tls"), "ca.pem"),
        secret_value(find(&fresh, "Secret", "hab-builder-tls"), "ca.pem")
    );
    double.cleanup();
}
