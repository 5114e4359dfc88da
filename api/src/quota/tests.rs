//! Specification of ResourceQuota: what objects count, which quotas cover them, when a quota
//! refuses an object and with which message, and what a quota has used afterwards.

use super::*;
use serde_json::json;

fn kind(group: &str, resource: &str) -> &'static ResourceInfo {
    kinds::by_resource(group, resource).unwrap_or_else(|| panic!("no kind {group}/{resource}"))
}

fn q(s: &str) -> Quantity {
    Quantity::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn list(pairs: &[(&str, &str)]) -> ResourceList {
    pairs.iter().map(|(k, v)| (k.to_string(), q(v))).collect()
}

fn typed_list(pairs: &[(&str, &str)]) -> BTreeMap<String, TypedQuantity> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), TypedQuantity(v.to_string())))
        .collect()
}

fn quota(name: &str, hard: &[(&str, &str)], used: &[(&str, &str)], spec: Value) -> ResourceQuota {
    let mut quota: ResourceQuota = serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "team"},
        "spec": spec,
    }))
    .unwrap_or_else(|e| panic!("test quota does not decode: {e}"));
    quota.spec.get_or_insert_with(Default::default).hard = Some(typed_list(hard));
    quota.status = Some(
        keel_types::k8s_openapi::api::core::v1::ResourceQuotaStatus {
            hard: Some(typed_list(hard)),
            used: Some(typed_list(used)),
        },
    );
    quota
}

fn pod_with(requests: Value, limits: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web", "namespace": "team"},
        "spec": {"containers": [{"name": "app", "image": "nginx",
            "resources": {"requests": requests, "limits": limits}}]},
    })
}

fn configmap() -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "team"}})
}

fn service(type_: &str, ports: usize) -> Value {
    let ports: Vec<Value> = (0..ports).map(|i| json!({"port": 80 + i})).collect();
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s", "namespace": "team"},
        "spec": {"type": type_, "ports": ports}})
}

#[test]
fn every_object_counts_under_its_count_name() {
    let deployment =
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}});
    assert_eq!(
        pretty(&usage(kind("apps", "deployments"), &deployment)),
        "count/deployments.apps=1"
    );
    let lease =
        json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "l"}});
    assert_eq!(
        pretty(&usage(kind("coordination.k8s.io", "leases"), &lease)),
        "count/leases.coordination.k8s.io=1"
    );
}

#[test]
fn legacy_core_kinds_also_count_under_their_plain_names() {
    assert_eq!(
        pretty(&usage(kind("", "configmaps"), &configmap())),
        "configmaps=1,count/configmaps=1"
    );
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}});
    assert_eq!(
        pretty(&usage(kind("", "secrets"), &secret)),
        "count/secrets=1,secrets=1"
    );
    let rq = json!({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "q"}});
    assert_eq!(
        pretty(&usage(kind("", "resourcequotas"), &rq)),
        "count/resourcequotas=1,resourcequotas=1"
    );
    // Endpoints have no legacy name.
    let ep = json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "e"}});
    assert_eq!(
        pretty(&usage(kind("", "endpoints"), &ep)),
        "count/endpoints=1"
    );
}

#[test]
fn services_count_load_balancers_and_node_ports() {
    let svc = kind("", "services");
    assert_eq!(
        pretty(&usage(svc, &service("ClusterIP", 2))),
        "count/services=1,services=1,services.loadbalancers=0,services.nodeports=0"
    );
    assert_eq!(
        pretty(&usage(svc, &service("NodePort", 2))),
        "count/services=1,services=1,services.loadbalancers=0,services.nodeports=2"
    );
    assert_eq!(
        pretty(&usage(svc, &service("LoadBalancer", 3))),
        "count/services=1,services=1,services.loadbalancers=1,services.nodeports=3"
    );
    let mut no_node_ports = service("LoadBalancer", 3);
    no_node_ports["spec"]["allocateLoadBalancerNodePorts"] = json!(false);
    assert_eq!(
        pretty(&usage(svc, &no_node_ports)),
        "count/services=1,services=1,services.loadbalancers=1,services.nodeports=0"
    );
    // Without allocation, only ports asking for a node port take one.
    no_node_ports["spec"]["ports"][1]["nodePort"] = json!(30080);
    assert_eq!(usage(svc, &no_node_ports)["services.nodeports"], q("1"));
}

#[test]
fn claims_count_their_storage_also_under_their_storage_class() {
    let claim = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data"},
        "spec": {"storageClassName": "fast", "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "10Gi"}}}});
    assert_eq!(
        pretty(&usage(kind("", "persistentvolumeclaims"), &claim)),
        "count/persistentvolumeclaims=1,fast.storageclass.storage.k8s.io/persistentvolumeclaims=1,\
         fast.storageclass.storage.k8s.io/requests.storage=10Gi,persistentvolumeclaims=1,requests.storage=10Gi"
    );
    let mut expanded = claim.clone();
    expanded["status"] = json!({"allocatedResources": {"storage": "20Gi"}});
    assert_eq!(
        usage(kind("", "persistentvolumeclaims"), &expanded)["requests.storage"],
        q("20Gi")
    );
    let mut fractional = claim.clone();
    fractional["spec"]["resources"]["requests"]["storage"] = json!("1500m");
    let charged = usage(kind("", "persistentvolumeclaims"), &fractional);
    assert_eq!(charged["requests.storage"].to_string(), "2");
    let mut unrequested = claim.clone();
    unrequested["spec"]["resources"] = json!({});
    unrequested["status"] = json!({"allocatedResources": {"storage": "20Gi"}});
    let charged = usage(kind("", "persistentvolumeclaims"), &unrequested);
    assert!(!charged.contains_key("requests.storage"));
}

#[test]
fn a_pod_counts_its_compute_resources() {
    let pod = pod_with(
        json!({"cpu": "500m", "memory": "256Mi"}),
        json!({"cpu": "1", "memory": "512Mi"}),
    );
    assert_eq!(
        pretty(&usage(kind("", "pods"), &pod)),
        "count/pods=1,cpu=500m,limits.cpu=1,limits.memory=512Mi,memory=256Mi,pods=1,requests.cpu=500m,requests.memory=256Mi"
    );
}

#[test]
fn exceeding_a_count_is_refused_with_kubernetes_message() {
    let pods = kind("", "pods");
    let pod = pod_with(json!({}), json!({}));
    let err = check(
        "pod-count",
        &list(&[("pods", "2")]),
        &list(&[("pods", "2")]),
        &usage(pods, &pod),
        pods,
        &pod,
    );
    let Err(err) = err else {
        panic!("a third pod must not fit a quota of two");
    };
    assert_eq!(
        err.to_string(),
        "exceeded quota: pod-count, requested: pods=1, used: pods=2, limited: pods=2"
    );
    assert!(matches!(err, QuotaError::Exceeded { ref quota, .. } if quota == "pod-count"));
}

#[test]
fn every_exceeded_resource_is_listed_in_name_order() {
    let pods = kind("", "pods");
    let pod = pod_with(
        json!({"cpu": "600m", "memory": "600Mi"}),
        json!({"cpu": "600m", "memory": "600Mi"}),
    );
    let hard = list(&[
        ("requests.cpu", "1"),
        ("requests.memory", "1Gi"),
        ("limits.cpu", "4"),
        ("pods", "10"),
    ]);
    let used = list(&[
        ("requests.cpu", "500m"),
        ("requests.memory", "512Mi"),
        ("limits.cpu", "500m"),
        ("pods", "1"),
    ]);
    let err = check("compute", &hard, &used, &usage(pods, &pod), pods, &pod);
    assert_eq!(
        err.map_err(|e| e.to_string()),
        Err("exceeded quota: compute, requested: requests.cpu=600m,requests.memory=600Mi, \
             used: requests.cpu=500m,requests.memory=512Mi, limited: requests.cpu=1,requests.memory=1Gi"
            .to_string())
    );
}

#[test]
fn admitting_returns_the_new_usage_of_what_the_quota_tracks() {
    let pods = kind("", "pods");
    let pod = pod_with(json!({"cpu": "250m", "memory": "512Mi"}), json!({}));
    let hard = list(&[("requests.memory", "2Gi"), ("pods", "10")]);
    let used = list(&[("requests.memory", "512Mi"), ("pods", "1")]);
    let new_used = check("compute", &hard, &used, &usage(pods, &pod), pods, &pod);
    assert_eq!(
        new_used.map(|u| pretty(&u)),
        Ok("pods=2,requests.memory=1Gi".to_string())
    );
}

#[test]
fn filling_a_quota_exactly_is_allowed() {
    let pods = kind("", "pods");
    let pod = pod_with(json!({}), json!({}));
    let new_used = check(
        "q",
        &list(&[("pods", "2")]),
        &list(&[("pods", "1")]),
        &usage(pods, &pod),
        pods,
        &pod,
    );
    assert_eq!(new_used.map(|u| pretty(&u)), Ok("pods=2".to_string()));
}

#[test]
fn resources_the_quota_does_not_name_are_not_enforced() {
    let pods = kind("", "pods");
    let pod = pod_with(json!({"cpu": "64"}), json!({}));
    let hard = list(&[("configmaps", "1")]);
    let used = list(&[("configmaps", "1")]);
    assert_eq!(
        check("cm", &hard, &used, &usage(pods, &pod), pods, &pod),
        Ok(used.clone())
    );
    let cms = kind("", "configmaps");
    let refused = check(
        "cm",
        &hard,
        &used,
        &usage(cms, &configmap()),
        cms,
        &configmap(),
    );
    assert_eq!(
        refused.map_err(|e| e.to_string()),
        Err("exceeded quota: cm, requested: configmaps=1, used: configmaps=1, limited: configmaps=1".to_string())
    );
}

#[test]
fn a_compute_quota_refuses_pods_that_do_not_state_it() {
    let pods = kind("", "pods");
    let pod = json!({"metadata": {"name": "web"}, "spec": {"containers": [
        {"name": "app", "image": "nginx", "resources": {"requests": {"memory": "1Gi"}}},
        {"name": "log", "image": "fluentd", "resources": {"requests": {"cpu": "100m"}, "limits": {"cpu": "100m"}}},
    ]}});
    let hard = list(&[
        ("requests.cpu", "4"),
        ("limits.cpu", "8"),
        ("requests.memory", "8Gi"),
    ]);
    let used = list(&[
        ("requests.cpu", "0"),
        ("limits.cpu", "0"),
        ("requests.memory", "0"),
    ]);
    let err = check("compute", &hard, &used, &usage(pods, &pod), pods, &pod);
    assert_eq!(
        err.map_err(|e| e.to_string()),
        Err("failed quota: compute: must specify limits.cpu for: app; requests.cpu for: app; requests.memory for: log".to_string())
    );
}

#[test]
fn a_quota_without_recorded_usage_refuses_until_it_has_some() {
    let pods = kind("", "pods");
    let pod = pod_with(json!({}), json!({}));
    let hard = list(&[("pods", "10"), ("count/pods", "10"), ("services", "2")]);
    let err = check(
        "new",
        &hard,
        &list(&[("pods", "0")]),
        &usage(pods, &pod),
        pods,
        &pod,
    );
    assert_eq!(
        err.map_err(|e| e.to_string()),
        Err("status unknown for quota: new, resources: count/pods,pods".to_string())
    );
}

#[test]
fn negative_requests_are_refused() {
    let pods = kind("", "pods");
    let pod = pod_with(json!({"cpu": "-1"}), json!({}));
    let err = check(
        "q",
        &list(&[("pods", "10")]),
        &list(&[("pods", "0")]),
        &usage(pods, &pod),
        pods,
        &pod,
    );
    assert_eq!(
        err.map_err(|e| e.to_string()),
        Err("quota usage is negative for resource(s): cpu,requests.cpu".to_string())
    );
}

#[test]
fn best_effort_scoped_quotas_cover_only_best_effort_pods() {
    let pods = kind("", "pods");
    let best_effort = quota(
        "be",
        &[("pods", "1")],
        &[("pods", "1")],
        json!({"scopes": ["BestEffort"]}),
    );
    let burstable = pod_with(json!({"cpu": "100m"}), json!({}));
    let plain = pod_with(json!({}), json!({}));
    assert_eq!(admit(&best_effort, pods, &burstable, None), Ok(None));
    assert!(matches!(
        admit(&best_effort, pods, &plain, None),
        Err(QuotaError::Exceeded { .. })
    ));

    let not_best_effort = quota(
        "nbe",
        &[("pods", "1")],
        &[("pods", "1")],
        json!({"scopes": ["NotBestEffort"]}),
    );
    assert_eq!(admit(&not_best_effort, pods, &plain, None), Ok(None));
    assert!(admit(&not_best_effort, pods, &burstable, None).is_err());
}

#[test]
fn terminating_scoped_quotas_cover_only_pods_with_a_deadline() {
    let pods = kind("", "pods");
    let terminating = quota(
        "t",
        &[("pods", "5")],
        &[("pods", "0")],
        json!({"scopes": ["Terminating"]}),
    );
    let not_terminating = quota(
        "nt",
        &[("pods", "5")],
        &[("pods", "0")],
        json!({"scopeSelector":
        {"matchExpressions": [{"scopeName": "NotTerminating", "operator": "Exists"}]}}),
    );
    let mut job_pod = pod_with(json!({}), json!({}));
    job_pod["spec"]["activeDeadlineSeconds"] = json!(600);
    let server = pod_with(json!({}), json!({}));
    assert_eq!(
        admit(&terminating, pods, &job_pod, None).map(|u| u.map(|u| pretty(&u))),
        Ok(Some("pods=1".into()))
    );
    assert_eq!(admit(&terminating, pods, &server, None), Ok(None));
    assert_eq!(admit(&not_terminating, pods, &job_pod, None), Ok(None));
    assert!(admit(&not_terminating, pods, &server, None).is_ok_and(|u| u.is_some()));
}

#[test]
fn scoped_quotas_cover_nothing_but_pods() {
    let scoped = quota(
        "s",
        &[("configmaps", "0")],
        &[("configmaps", "0")],
        json!({"scopes": ["NotTerminating"]}),
    );
    assert_eq!(
        scopes_match(
            "s",
            &scoped.spec.clone().unwrap_or_default(),
            kind("", "configmaps"),
            &configmap()
        ),
        Ok(false)
    );
    assert_eq!(
        admit(&scoped, kind("", "configmaps"), &configmap(), None),
        Ok(None)
    );
}

#[test]
fn an_invalid_scope_operator_is_an_error_naming_the_quota() {
    let bad = quota(
        "prio",
        &[("pods", "5")],
        &[("pods", "0")],
        json!({"scopeSelector":
        {"matchExpressions": [{"scopeName": "PriorityClass", "operator": "Gt", "values": ["1"]}]}}),
    );
    let err = admit(
        &bad,
        kind("", "pods"),
        &pod_with(json!({}), json!({})),
        None,
    );
    assert_eq!(
        err.map_err(|e| e.to_string()),
        Err(r#"error matching scopes of quota prio, err: failed to parse and convert selector: "Gt" is not a valid pod selector operator"#.to_string())
    );
}

#[test]
fn a_quota_limiting_nothing_the_kind_uses_does_not_apply() {
    let q = quota(
        "storage",
        &[("requests.storage", "1Gi")],
        &[("requests.storage", "0")],
        json!({}),
    );
    assert_eq!(
        admit(&q, kind("", "pods"), &pod_with(json!({}), json!({})), None),
        Ok(None)
    );
}

#[test]
fn an_update_is_charged_only_for_what_it_adds() {
    let svc = kind("", "services");
    let q = quota(
        "lb",
        &[("services.nodeports", "3"), ("services", "1")],
        &[("services.nodeports", "0"), ("services", "1")],
        json!({}),
    );
    // The service already counts under `services`; becoming a NodePort adds two node ports.
    let updated = admit(
        &q,
        svc,
        &service("NodePort", 2),
        Some(&service("ClusterIP", 2)),
    );
    assert_eq!(
        updated.map(|u| u.map(|u| pretty(&u))),
        Ok(Some("services=1,services.nodeports=2".into()))
    );
    // Created afresh, it would also need a second service.
    let created = admit(&q, svc, &service("NodePort", 2), None);
    assert_eq!(
        created.map_err(|e| e.to_string()),
        Err(
            "exceeded quota: lb, requested: services=1, used: services=1, limited: services=1"
                .to_string()
        )
    );
}

#[test]
fn handles_follows_each_kinds_evaluator() {
    let (pods, svc, cms) = (
        kind("", "pods"),
        kind("", "services"),
        kind("", "configmaps"),
    );
    assert!(handles(pods, Operation::Create, ""));
    assert!(!handles(pods, Operation::Update, ""));
    assert!(!handles(pods, Operation::Create, "binding"));
    assert!(handles(pods, Operation::Update, "resize"));
    assert!(handles(svc, Operation::Update, ""));
    assert!(handles(cms, Operation::Create, ""));
    assert!(!handles(cms, Operation::Update, ""));
}

#[test]
fn recalculating_sums_covered_objects_for_every_counted_resource() {
    let q = quota(
        "compute",
        &[
            ("pods", "10"),
            ("requests.memory", "4Gi"),
            ("count/configmaps", "5"),
            ("services", "3"),
            ("example.com/unknown", "1"),
        ],
        &[],
        json!({"scopes": ["NotTerminating"]}),
    );
    let a = pod_with(json!({"memory": "512Mi"}), json!({}));
    let b = pod_with(json!({"memory": "1Gi"}), json!({}));
    let mut job_pod = pod_with(json!({"memory": "1Gi"}), json!({}));
    job_pod["spec"]["activeDeadlineSeconds"] = json!(60);
    let cm = configmap();
    let objects = [
        (kind("", "pods"), &a),
        (kind("", "pods"), &b),
        (kind("", "pods"), &job_pod),
        (kind("", "configmaps"), &cm),
    ];
    // The scoped quota counts only non-terminating pods; configmaps are outside any scope.
    assert_eq!(
        recalculate(&q, objects).map(|u| pretty(&u)),
        Ok("count/configmaps=0,pods=2,requests.memory=1536Mi,services=0".to_string())
    );
    let unscoped = quota(
        "all",
        &[("count/configmaps", "5"), ("requests.memory", "4Gi")],
        &[],
        json!({}),
    );
    assert_eq!(
        recalculate(&unscoped, objects).map(|u| pretty(&u)),
        Ok("count/configmaps=1,requests.memory=2560Mi".to_string())
    );
}

#[test]
fn an_unparsable_quota_quantity_is_an_error() {
    let bad = BTreeMap::from([("pods".to_string(), TypedQuantity("lots".into()))]);
    assert!(matches!(
        resource_list("q", Some(&bad)),
        Err(QuotaError::InvalidQuantity { ref resource, .. }) if resource == "pods"
    ));
}
