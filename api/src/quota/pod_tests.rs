//! Specification of what a pod charges against quota, which containers a compute quota finds
//! lacking, and which quota scopes a pod falls in.

use super::*;
use crate::quota::amount::pretty;
use serde_json::json;

fn pod(value: serde_json::Value) -> Pod {
    serde_json::from_value(value).unwrap_or_else(|e| panic!("test pod does not decode: {e}"))
}

fn container(
    name: &str,
    requests: serde_json::Value,
    limits: serde_json::Value,
) -> serde_json::Value {
    json!({"name": name, "image": "busybox", "resources": {"requests": requests, "limits": limits}})
}

#[test]
fn requests_and_limits_are_summed_over_containers() {
    let p = pod(json!({"spec": {"containers": [
        container("a", json!({"cpu": "100m", "memory": "64Mi"}), json!({"cpu": "1", "memory": "128Mi"})),
        container("b", json!({"cpu": "200m", "memory": "64Mi"}), json!({"cpu": "500m"})),
    ]}}));
    assert_eq!(
        pretty(&usage(&p)),
        "count/pods=1,cpu=300m,limits.cpu=1500m,limits.memory=128Mi,memory=128Mi,pods=1,requests.cpu=300m,requests.memory=128Mi"
    );
}

#[test]
fn init_containers_count_at_their_peak_when_larger_than_the_app_containers() {
    let p = pod(json!({"spec": {
        "initContainers": [
            container("migrate", json!({"cpu": "1", "memory": "10Mi"}), json!({})),
            container("warm", json!({"cpu": "200m", "memory": "1Gi"}), json!({})),
        ],
        "containers": [
            container("a", json!({"cpu": "250m", "memory": "128Mi"}), json!({})),
            container("b", json!({"cpu": "250m", "memory": "128Mi"}), json!({})),
        ],
    }}));
    let used = usage(&p);
    assert_eq!(used["requests.cpu"].to_string(), "1");
    assert_eq!(used["requests.memory"].to_string(), "1Gi");
}

#[test]
fn sidecars_run_beside_later_init_containers_and_the_app() {
    let mut sidecar = container("proxy", json!({"cpu": "100m"}), json!({}));
    sidecar["restartPolicy"] = json!("Always");
    let p = pod(json!({"spec": {
        "initContainers": [sidecar, container("setup", json!({"cpu": "500m"}), json!({}))],
        "containers": [container("app", json!({"cpu": "200m"}), json!({}))],
    }}));
    // App phase: 200m + 100m; setup phase: 500m + 100m.
    assert_eq!(usage(&p)["requests.cpu"].to_string(), "600m");

    let mut sidecar = container("proxy", json!({"cpu": "100m"}), json!({}));
    sidecar["restartPolicy"] = json!("Always");
    let p = pod(json!({"spec": {
        "initContainers": [sidecar, container("setup", json!({"cpu": "50m"}), json!({}))],
        "containers": [container("app", json!({"cpu": "200m"}), json!({}))],
    }}));
    assert_eq!(usage(&p)["requests.cpu"].to_string(), "300m");
}

#[test]
fn overhead_adds_to_requests_and_only_to_limits_that_are_set() {
    let p = pod(json!({"spec": {
        "overhead": {"cpu": "250m", "memory": "120Mi"},
        "containers": [container("a", json!({"cpu": "1", "memory": "1Gi"}), json!({"cpu": "2"}))],
    }}));
    let used = usage(&p);
    assert_eq!(used["requests.cpu"].to_string(), "1250m");
    assert_eq!(used["requests.memory"].to_string(), "1144Mi");
    assert_eq!(used["limits.cpu"].to_string(), "2250m");
    assert!(!used.contains_key("limits.memory"));
}

#[test]
fn terminal_pods_count_only_as_stored_objects() {
    for phase in ["Succeeded", "Failed"] {
        let p = pod(json!({
            "spec": {"containers": [container("a", json!({"cpu": "1"}), json!({}))]},
            "status": {"phase": phase},
        }));
        assert_eq!(pretty(&usage(&p)), "count/pods=1", "{phase}");
    }
    let running = pod(json!({
        "spec": {"containers": [container("a", json!({"cpu": "1"}), json!({}))]},
        "status": {"phase": "Running"},
    }));
    assert_eq!(usage(&running)["pods"].to_string(), "1");
}

#[test]
fn huge_pages_and_extended_resources_are_charged_as_requests() {
    let p = pod(json!({"spec": {"containers": [container(
        "a",
        json!({"hugepages-2Mi": "4Mi", "example.com/gpu": "2", "ephemeral-storage": "1Gi"}),
        json!({"ephemeral-storage": "2Gi"}),
    )]}}));
    assert_eq!(
        pretty(&usage(&p)),
        "count/pods=1,ephemeral-storage=1Gi,hugepages-2Mi=4Mi,limits.ephemeral-storage=2Gi,pods=1,\
         requests.ephemeral-storage=1Gi,requests.example.com/gpu=2,requests.hugepages-2Mi=4Mi"
    );
}

#[test]
fn the_pod_evaluator_tracks_compute_and_prefixed_resources_only() {
    for name in [
        "pods",
        "count/pods",
        "cpu",
        "limits.memory",
        "requests.ephemeral-storage",
        "hugepages-1Gi",
        "requests.hugepages-1Gi",
        "requests.example.com/gpu",
    ] {
        assert!(tracks(name), "{name}");
    }
    for name in [
        "services",
        "requests.storage",
        "example.com/gpu",
        "limits.example.com/gpu",
        "count/services",
    ] {
        assert!(!tracks(name), "{name}");
    }
}

#[test]
fn a_compute_quota_names_the_containers_that_leave_its_resources_unset() {
    let p = pod(json!({"spec": {
        "initContainers": [container("init", json!({"cpu": "1"}), json!({"cpu": "1"}))],
        "containers": [
            container("app", json!({}), json!({"memory": "1Gi"})),
            container("proxy", json!({"cpu": "100m"}), json!({})),
        ],
    }}));
    let required: BTreeSet<String> = ["requests.cpu", "limits.cpu", "pods", "requests.storage"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let missing = missing_compute(&p, &required);
    assert_eq!(
        missing_message(&missing),
        "must specify limits.cpu for: app,proxy; requests.cpu for: app"
    );
}

#[test]
fn quotas_on_other_resources_require_nothing_of_containers() {
    let p = pod(json!({"spec": {"containers": [container("app", json!({}), json!({}))]}}));
    let required: BTreeSet<String> = ["pods", "count/pods", "requests.ephemeral-storage"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert!(missing_compute(&p, &required).is_empty());
}

fn scope(p: &Pod, name: &str) -> bool {
    matches_scope(p, name, "Exists", &[]).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn terminating_pods_have_an_active_deadline() {
    let job_pod = pod(json!({"spec": {"activeDeadlineSeconds": 60, "containers": []}}));
    let server = pod(json!({"spec": {"containers": []}}));
    assert!(scope(&job_pod, "Terminating"));
    assert!(!scope(&job_pod, "NotTerminating"));
    assert!(!scope(&server, "Terminating"));
    assert!(scope(&server, "NotTerminating"));
}

#[test]
fn best_effort_pods_ask_for_no_cpu_or_memory() {
    let best_effort = pod(json!({"spec": {"containers": [
        container("a", json!({"ephemeral-storage": "1Gi"}), json!({})),
    ]}}));
    let burstable = pod(json!({"spec": {
        "initContainers": [container("i", json!({}), json!({"memory": "1Gi"}))],
        "containers": [container("a", json!({}), json!({}))],
    }}));
    let zero_requests =
        pod(json!({"spec": {"containers": [container("a", json!({"cpu": "0"}), json!({}))]}}));
    assert!(scope(&best_effort, "BestEffort"));
    assert!(!scope(&best_effort, "NotBestEffort"));
    assert!(!scope(&burstable, "BestEffort"));
    assert!(scope(&burstable, "NotBestEffort"));
    assert!(scope(&zero_requests, "BestEffort"));
}

#[test]
fn a_recorded_qos_class_decides_best_effort() {
    let p = pod(json!({
        "spec": {"containers": [container("a", json!({"cpu": "1"}), json!({}))]},
        "status": {"qosClass": "BestEffort"},
    }));
    assert!(scope(&p, "BestEffort"));
}

#[test]
fn priority_class_scopes_select_by_class_name() {
    let high = pod(json!({"spec": {"priorityClassName": "high", "containers": []}}));
    let none = pod(json!({"spec": {"containers": []}}));
    let values = vec!["high".to_string(), "critical".to_string()];
    assert_eq!(
        matches_scope(&high, "PriorityClass", "In", &values),
        Ok(true)
    );
    assert_eq!(
        matches_scope(&none, "PriorityClass", "In", &values),
        Ok(false)
    );
    assert_eq!(
        matches_scope(&high, "PriorityClass", "NotIn", &values),
        Ok(false)
    );
    assert_eq!(
        matches_scope(&none, "PriorityClass", "NotIn", &values),
        Ok(true)
    );
    assert_eq!(
        matches_scope(&high, "PriorityClass", "Exists", &[]),
        Ok(true)
    );
    assert_eq!(
        matches_scope(&none, "PriorityClass", "Exists", &[]),
        Ok(false)
    );
    assert_eq!(
        matches_scope(&none, "PriorityClass", "DoesNotExist", &[]),
        Ok(true)
    );
    assert_eq!(
        matches_scope(&high, "PriorityClass", "Gt", &values),
        Err(ScopeError::Operator {
            operator: "Gt".into()
        })
    );
}

#[test]
fn cross_namespace_affinity_names_namespaces_or_selects_them() {
    let term = json!({"topologyKey": "kubernetes.io/hostname", "namespaces": ["other"]});
    let p = pod(
        json!({"spec": {"containers": [], "affinity": {"podAntiAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 1, "podAffinityTerm": term}]
        }}}}),
    );
    let local = pod(
        json!({"spec": {"containers": [], "affinity": {"podAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [{"topologyKey": "kubernetes.io/hostname"}]
        }}}}),
    );
    assert!(scope(&p, "CrossNamespacePodAffinity"));
    assert!(!scope(&local, "CrossNamespacePodAffinity"));
}
