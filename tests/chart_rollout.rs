//! The chart's node StatefulSet, as `helm template` renders it, rolled by
//! habd through kube-rs against the Kubernetes API double (no kube-apiserver
//! can be installed here; the double runs each pod as a real fixture-node
//! container). Then the rendered Role is compared with every request habd
//! made: it must allow each, and grant nothing habd did not use.

mod common;

use std::{collections::BTreeSet, time::Duration};

use common::*;

/// (API group, resource, verb) of a request, as RBAC names them.
fn rbac(method: &str, path: &str, query: &str) -> (String, String, String) {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, rest) = match parts.as_slice() {
        ["api", "v1", rest @ ..] => ("", rest),
        ["apis", group, _version, rest @ ..] => (*group, rest),
        _ => panic!("not an API path: {path}"),
    };
    let (resource, named) = match rest {
        ["namespaces", _, resource] => (*resource, false),
        ["namespaces", _, resource, _name] => (*resource, true),
        _ => panic!("not a namespaced resource: {path}"),
    };
    let verb = match (method, named) {
        ("GET", true) => "get",
        ("GET", false) if query.contains("watch=true") => "watch",
        ("GET", false) => "list",
        ("PATCH", _) => "patch",
        ("PUT", _) => "update",
        ("POST", _) => "create",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        other => panic!("unexpected request {other:?} {path}"),
    };
    (group.to_string(), resource.to_string(), verb.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rendered_statefulset_rolls_and_the_role_is_exactly_what_habd_uses() {
    let bw = BuildWorld::with_node_releases();
    let registry = TestRegistry::start(&bw.world.path("registry"), None, None);
    let fleet = "hab-bitcoind";
    let mut double = KubeDouble::start(&format!("chart{}", free_port()), 90).await;
    bw.write_hab(&registry.url(), None);
    // habd's fleet is the chart's StatefulSet; its gates read the password
    // from the chart's Secret (written below, once rendered).
    let mut hab = std::fs::read_to_string(bw.world.path("hab.toml")).unwrap();
    hab.push_str(&format!(
        "[[target]]\nname = \"cluster\"\nkind = \"kubernetes\"\nendpoint = \"{}\"\nnamespace = \"default\"\n\
         [[fleet]]\nname = \"{fleet}\"\npipeline = \"node\"\nchannel = \"stable\"\ntarget = \"cluster\"\nnodes = 2\n\
         network = \"regtest\"\nrpc_user = \"hab\"\nrpc_password_file = \"rpc-password\"\nrpc_port = 18443\n\
         [fleet.gates]\nsoak = \"1s\"\nready_timeout = \"8s\"\n",
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

    // Build the releases first: the chart is installed on release A.
    let habd = Habd::start_config(bw.load()).await;
    let (s, r) = call(habd.api(reqwest::Method::POST, "/pipelines/node/sync")).await;
    assert_eq!(s, 200, "{r}");
    let a = build_of(&habd, "node", "v1.0.0").await;
    let b = build_of(&habd, "node", "v1.1.0").await;
    let never = build_of(&habd, "node", "v1.2.0").await;
    let digest_a = a["index_digest"].as_str().unwrap();

    // helm template, regtest with two bitcoind nodes on release A.
    let rendered = render(
        Some("regtest-single-values.yaml"),
        &[
            &format!("registry.pullHost={}", registry.host()),
            &one_set(
                "bitcoind",
                &format!(
                    r#""replicas": 2, "image": {{"repository": "hab/node", "digest": "{digest_a}"}}"#
                ),
            ),
        ],
    )
    .unwrap();
    let docs = documents(&rendered);
    let sts = find(&docs, "StatefulSet", fleet).clone();
    let secret = find(&docs, "Secret", "hab-rpc").clone();
    let rpc_port = sts["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"]
        .as_u64()
        .unwrap();
    assert_eq!(
        rpc_port, 18443,
        "bitcoind's regtest RPC port, as the fleet says"
    );
    assert_eq!(
        sts["spec"]["template"]["spec"]["containers"][0]["image"], a["reference"],
        "installed on A by digest"
    );
    double.create_secret(secret.clone());
    double.create_statefulset(sts);

    std::fs::write(
        bw.world.path("rpc-password"),
        secret_value(&secret, "rpc-password"),
    )
    .unwrap();

    // The controller brings both pods up on A (the chart's partition is
    // `replicas`, so nothing rolls by itself).
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let (_, sts) = call(client().get(format!(
            "{}/apis/apps/v1/namespaces/default/statefulsets/{fleet}",
            double.url
        )))
        .await;
        if sts["status"]["readyReplicas"] == 2 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "pods never ready: {sts}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    double.state.lock().unwrap().requests.clear();

    let r = promote_and_wait(&habd, &b).await;
    assert_eq!(r["state"], "succeeded", "{r:#}");
    let (_, sts) = call(client().get(format!(
        "{}/apis/apps/v1/namespaces/default/statefulsets/{fleet}",
        double.url
    )))
    .await;
    assert_eq!(
        sts["spec"]["template"]["spec"]["containers"][0]["image"],
        b["reference"]
    );
    assert_eq!(
        sts["spec"]["updateStrategy"]["rollingUpdate"]["partition"], 2,
        "frozen again once the rollout is done"
    );
    // A release that never gets ready: stopped at the first node, that
    // pod deleted so the controller recreates it on B.
    let r = promote_and_wait(&habd, &never).await;
    assert_eq!(r["state"], "failed", "{r:#}");
    assert!(
        !double.state.lock().unwrap().deleted.is_empty(),
        "the stuck pod was deleted"
    );
    habd.stop().await;

    // Every request habd made, as RBAC sees it, against the rendered Role.
    let used: BTreeSet<(String, String, String)> = double
        .state
        .lock()
        .unwrap()
        .requests
        .iter()
        .map(|(m, p, q)| rbac(m, p, q))
        .collect();
    let role = find(&docs, "Role", "hab-habd");
    let mut granted = BTreeSet::new();
    for rule in role["rules"].as_array().unwrap() {
        for g in rule["apiGroups"].as_array().unwrap() {
            for r in rule["resources"].as_array().unwrap() {
                for v in rule["verbs"].as_array().unwrap() {
                    let (g, r, v) = (
                        g.as_str().unwrap(),
                        r.as_str().unwrap(),
                        v.as_str().unwrap(),
                    );
                    assert!(g != "*" && r != "*" && v != "*", "no wildcards: {rule}");
                    granted.insert((g.to_string(), r.to_string(), v.to_string()));
                }
            }
        }
    }
    assert_eq!(
        used, granted,
        "the Role grants exactly what habd's Kubernetes client calls"
    );
    let binding = find(&docs, "RoleBinding", "hab-habd");
    assert_eq!(binding["roleRef"]["name"], "hab-habd");
    let deployment = find(&docs, "Deployment", "hab-habd");
    assert_eq!(
        binding["subjects"][0]["name"],
        deployment["spec"]["template"]["spec"]["serviceAccountName"]
    );
    double.cleanup();
}

/// Waits until StatefulSet `name` in the double has `ready` ready replicas.
async fn wait_ready(double: &KubeDouble, name: &str, ready: u64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let (_, sts) = call(client().get(format!(
            "{}/apis/apps/v1/namespaces/default/statefulsets/{name}",
            double.url
        )))
        .await;
        if sts["status"]["readyReplicas"] == ready {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{name}: pods never ready: {sts}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Two node sets of one implementation on two networks in one release
/// (`nodeSets`), each its own StatefulSet and habd fleet: promoting a build
/// to the channel one set follows rolls that set and never touches the
/// other, and the budget of one node out of service spans both sets: with
/// a node of the other set down, the rollout does not take one of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sets_of_one_implementation_roll_apart_within_one_budget() {
    let bw = BuildWorld::with_node_releases();
    let registry = TestRegistry::start(&bw.world.path("registry"), None, None);
    let prefix = format!("sets{}", free_port());
    let mut double = KubeDouble::start(&prefix, 92).await;
    bw.write_hab(&registry.url(), None);
    bw.write_pipeline(
        "node",
        &fixture_recipe(),
        AMD64,
        r#"["fixture-node", "--version"]"#,
        "[[channel]]\nname = \"stable\"\n[[channel]]\nname = \"side\"\n",
    );
    // bitcoind twice: two nodes on regtest following stable, one on signet
    // following a channel of its own.
    let sets = |digest: &str| {
        let image = format!(r#"{{"repository": "hab/node", "digest": "{digest}"}}"#);
        format!(
            r#"json:nodeSets=[{{"name": "main", "implementation": "bitcoind", "network": "regtest", "replicas": 2, "image": {image}}}, {{"name": "side", "implementation": "bitcoind", "network": "signet", "channel": "side", "image": {image}}}]"#
        )
    };
    let render_with = |digest: &str| {
        documents(
            &render(
                Some("regtest-single-values.yaml"),
                &[
                    &format!("registry.pullHost={}", registry.host()),
                    &sets(digest),
                ],
            )
            .unwrap(),
        )
    };
    // habd's fleets as the chart configures them (on the double's API, the
    // password in a file here, short gates), before habd first starts: one
    // habd, one rollout engine, on the store.
    let docs = render_with(&format!("sha256:{}", "0".repeat(64)));
    let config: toml::Table = find(&docs, "ConfigMap", "hab-habd-config")["data"]["hab.toml"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let mut hab = std::fs::read_to_string(bw.world.path("hab.toml")).unwrap();
    hab.push_str(&format!(
        "[[target]]\nname = \"cluster\"\nkind = \"kubernetes\"\nendpoint = \"{}\"\nnamespace = \"default\"\n",
        double.url
    ));
    let fleets = config["fleet"].as_array().unwrap();
    assert_eq!(fleets.len(), 2, "one fleet per set: {fleets:?}");
    for f in fleets {
        hab.push_str(&format!(
            "[[fleet]]\nname = \"{}\"\npipeline = \"node\"\nchannel = \"{}\"\ntarget = \"cluster\"\nnodes = {}\n\
             network = \"{}\"\nrpc_user = \"hab\"\nrpc_password_file = \"rpc-password\"\nrpc_port = {}\n\
             [fleet.gates]\nsoak = \"1s\"\nready_timeout = \"8s\"\n",
            f["name"].as_str().unwrap(),
            f["channel"].as_str().unwrap(),
            f["nodes"],
            f["network"].as_str().unwrap(),
            f["rpc_port"],
        ));
    }
    assert_eq!(fleets[0]["name"].as_str(), Some("hab-main"));
    assert_eq!(fleets[0]["channel"].as_str(), Some("stable"));
    assert_eq!(fleets[0]["rpc_port"].as_integer(), Some(18443));
    assert_eq!(fleets[1]["name"].as_str(), Some("hab-side"));
    assert_eq!(fleets[1]["channel"].as_str(), Some("side"));
    assert_eq!(fleets[1]["rpc_port"].as_integer(), Some(38332));
    std::fs::write(bw.world.path("hab.toml"), hab).unwrap();
    let habd = Habd::start_config(bw.load()).await;
    let (s, r) = call(habd.api(reqwest::Method::POST, "/pipelines/node/sync")).await;
    assert_eq!(s, 200, "{r}");
    let a = build_of(&habd, "node", "v1.0.0").await;
    let b = build_of(&habd, "node", "v1.1.0").await;
    // Installed on A.
    let docs = render_with(a["index_digest"].as_str().unwrap());
    let secret = find(&docs, "Secret", "hab-rpc").clone();
    std::fs::write(
        bw.world.path("rpc-password"),
        secret_value(&secret, "rpc-password"),
    )
    .unwrap();
    double.create_secret(secret);
    double.create_statefulset(find(&docs, "StatefulSet", "hab-main").clone());
    double.create_statefulset(find(&docs, "StatefulSet", "hab-side").clone());
    wait_ready(&double, "hab-main", 2).await;
    wait_ready(&double, "hab-side", 1).await;
    let side_pods = double.pods_of("hab-side");
    let side_image = |double: &KubeDouble| {
        double.statefulset("hab-side")["spec"]["template"]["spec"]["containers"][0]["image"].clone()
    };
    let side_before = side_image(&double);

    // stable moves to B: the main set rolls, the side set is not touched.
    let r = promote_and_wait(&habd, &b).await;
    assert_eq!(r["state"], "succeeded", "{r:#}");
    assert_eq!(r["fleet"], "hab-main", "{r:#}");
    assert_eq!(
        double.statefulset("hab-main")["spec"]["template"]["spec"]["containers"][0]["image"],
        b["reference"]
    );
    assert_eq!(side_image(&double), side_before, "the side set's image");
    assert_eq!(
        double.pods_of("hab-side"),
        side_pods,
        "no pod of the side set replaced"
    );

    // The side set's node goes down (its container frozen): one node of
    // the release is out of service, so the main set may not take one of
    // its own. stable moves back to A: the rollout ends without touching a
    // node, naming the side set's node.
    let names = docker(&[
        "ps",
        "--filter",
        &format!("name={prefix}-hab-side-0"),
        "--format",
        "{{.Names}}",
    ]);
    let side = names
        .lines()
        .next()
        .expect("the side set's container")
        .to_string();
    docker(&["pause", &side]);
    let main_pods = double.pods_of("hab-main");
    let r = promote_and_wait(&habd, &a).await;
    docker(&["unpause", &side]);
    assert_eq!(r["state"], "failed", "{r:#}");
    let reason = r["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("node 0 of fleet hab-side is out of service")
            && reason.contains("no node was touched"),
        "{reason}"
    );
    assert_eq!(
        double.pods_of("hab-main"),
        main_pods,
        "no main node replaced"
    );
    assert_eq!(
        double.statefulset("hab-main")["spec"]["template"]["spec"]["containers"][0]["image"],
        b["reference"],
        "the main set still on B"
    );
    assert_eq!(side_image(&double), side_before);
    habd.stop().await;
    double.cleanup();
}
