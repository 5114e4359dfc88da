//! Specifications of `configs`: the CRI configuration kubelet would send for a pod.

use super::*;
use serde_json::json;

fn node() -> NodeSettings {
    NodeSettings {
        root_dir: PathBuf::from("/var/lib/keel-agent"),
        logs_dir: PathBuf::from("/var/log/pods"),
        cluster_dns: vec!["10.96.0.10".into()],
        cluster_domain: "cluster.local".into(),
        host_searches: vec!["example.internal".into()],
        oom_score_adj_floor: 0,
        memory_capacity: 8 << 30,
    }
}

fn pod(spec: serde_json::Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": "shop", "uid": "u1", "labels": {"app": "web"}},
        "spec": spec,
    }))
    .expect("pod")
}

#[test]
fn the_sandbox_carries_kubelets_metadata_labels_hostname_and_log_directory() {
    let pod = pod(
        json!({"containers": [{"name": "a", "ports": [{"containerPort": 80, "hostPort": 8080}]}]}),
    );
    let config = sandbox_config(&pod, &node(), 2);
    let meta = config.metadata.clone().expect("metadata");
    assert_eq!(
        (
            meta.name.as_str(),
            meta.namespace.as_str(),
            meta.uid.as_str(),
            meta.attempt
        ),
        ("web", "shop", "u1", 2)
    );
    assert_eq!(config.hostname, "web");
    assert_eq!(config.log_directory, "/var/log/pods/shop_web_u1");
    assert_eq!(
        config.labels.get(labels::POD_UID).map(String::as_str),
        Some("u1")
    );
    assert_eq!(config.labels.get("app").map(String::as_str), Some("web"));
    assert_eq!(config.port_mappings.len(), 1);
    assert_eq!(
        (
            config.port_mappings[0].container_port,
            config.port_mappings[0].host_port
        ),
        (80, 8080)
    );
}

#[test]
fn cluster_first_dns_searches_the_namespace_then_the_cluster_then_the_host() {
    let config = dns_config(&pod(json!({"containers": []})), &node()).expect("dns");
    assert_eq!(config.servers, ["10.96.0.10"]);
    assert_eq!(
        config.searches,
        [
            "shop.svc.cluster.local",
            "svc.cluster.local",
            "cluster.local",
            "example.internal"
        ]
    );
    assert_eq!(config.options, ["ndots:5"]);
    assert!(dns_config(
        &pod(json!({"containers": [], "dnsPolicy": "Default"})),
        &node()
    )
    .is_none());
    let custom = dns_config(
        &pod(json!({"containers": [], "dnsPolicy": "None",
                     "dnsConfig": {"nameservers": ["1.1.1.1"], "options": [{"name": "ndots", "value": "2"}]}})),
        &node(),
    )
    .expect("dns");
    assert_eq!(custom.servers, ["1.1.1.1"]);
    assert_eq!(custom.options, ["ndots:2"]);
}

#[test]
fn cpu_and_memory_become_cgroup_limits_and_oom_scores_follow_the_qos_class() {
    let guaranteed = pod(json!({"containers": [{"name": "a", "resources": {
        "requests": {"cpu": "500m", "memory": "64Mi"}, "limits": {"cpu": "500m", "memory": "64Mi"}}}]}));
    let container = guaranteed.spec.as_ref().expect("spec").containers[0].clone();
    let config = container_config(&guaranteed, &container, 0, Resolved::default(), &node());
    let resources = config.linux.and_then(|l| l.resources).expect("resources");
    assert_eq!(resources.cpu_shares, 512);
    assert_eq!(
        (resources.cpu_quota, resources.cpu_period),
        (50_000, 100_000)
    );
    assert_eq!(resources.memory_limit_in_bytes, 64 << 20);
    assert_eq!(
        resources.oom_score_adj, 0,
        "clamped to what the runtime may set here"
    );
    assert_eq!(qos_class(&guaranteed), "Guaranteed");
    let best_effort = pod(json!({"containers": [{"name": "a"}]}));
    let container = best_effort.spec.as_ref().expect("spec").containers[0].clone();
    let config = container_config(&best_effort, &container, 0, Resolved::default(), &node());
    let resources = config.linux.and_then(|l| l.resources).expect("resources");
    assert_eq!((resources.cpu_shares, resources.oom_score_adj), (2, 1000));
}

#[test]
fn command_and_args_expand_environment_references_as_kubernetes_does() {
    let env = BTreeMap::from([("NAME", "world")]);
    assert_eq!(expand_vars("hello $(NAME)", &env), "hello world");
    assert_eq!(
        expand_vars("$$(NAME) $(MISSING)", &env),
        "$(NAME) $(MISSING)"
    );
    assert_eq!(expand_vars("cost: $5 $(", &env), "cost: $5 $(");
}

#[test]
fn a_container_carries_its_pods_labels_restart_count_and_log_path() {
    let pod = pod(
        json!({"containers": [{"name": "app", "image": "keel.local/busybox:1",
        "securityContext": {"runAsUser": 1000, "readOnlyRootFilesystem": true, "allowPrivilegeEscalation": false,
                            "capabilities": {"add": ["NET_ADMIN"], "drop": ["ALL"]}}}]}),
    );
    let container = pod.spec.as_ref().expect("spec").containers[0].clone();
    let config = container_config(&pod, &container, 3, Resolved::default(), &node());
    assert_eq!(config.log_path, "app/3.log");
    assert_eq!(config.metadata.as_ref().map(|m| m.attempt), Some(3));
    assert_eq!(
        config
            .labels
            .get(labels::CONTAINER_NAME)
            .map(String::as_str),
        Some("app")
    );
    assert_eq!(
        config
            .annotations
            .get(labels::RESTART_COUNT)
            .map(String::as_str),
        Some("3")
    );
    let security = config
        .linux
        .and_then(|l| l.security_context)
        .expect("security");
    assert_eq!(security.run_as_user.map(|u| u.value), Some(1000));
    assert!(security.readonly_rootfs && security.no_new_privs);
    assert_eq!(
        security.capabilities.map(|c| c.add_capabilities),
        Some(vec!["NET_ADMIN".to_owned()])
    );
}

#[test]
fn a_long_name_is_cut_to_a_valid_host_name() {
    let long = "a".repeat(62) + "-b";
    let pod: Pod =
        serde_json::from_value(json!({"metadata": {"name": long}, "spec": {"containers": []}}))
            .expect("pod");
    assert_eq!(hostname(&pod), "a".repeat(62));
}

#[test]
fn the_hosts_search_domains_are_read_from_resolv_conf() {
    assert_eq!(
        resolv_searches("nameserver 1.1.1.1\nsearch a.example b.example.\n"),
        ["a.example", "b.example"]
    );
}

#[test]
fn a_sandbox_is_privileged_when_any_of_its_containers_is() {
    let privileged = |spec| {
        sandbox_config(&pod(spec), &node(), 0)
            .linux
            .and_then(|l| l.security_context)
            .is_some_and(|s| s.privileged)
    };
    let app = |security: serde_json::Value| json!({"name": "app", "image": "busybox", "securityContext": security});
    assert!(!privileged(json!({"containers": [app(json!({}))]})));
    assert!(privileged(
        json!({"containers": [app(json!({})), app(json!({"privileged": true}))]})
    ));
    assert!(privileged(
        json!({"initContainers": [app(json!({"privileged": true}))],
                              "containers": [app(json!({"privileged": false}))]})
    ));
}
