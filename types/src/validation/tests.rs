//! Specification of validation: the errors Kubernetes reports, with their paths and texts.

use super::*;
use crate::defaults::default_object;
use crate::kinds::by_kind;
use serde_json::json;

fn info(api_version: &str, kind: &str) -> &'static ResourceInfo {
    by_kind(api_version, kind).expect("kind is served")
}

/// Validates `obj` after defaulting it, as the API server does.
pub(super) fn errors(api_version: &str, kind: &str, mut obj: Value) -> Vec<String> {
    let info = info(api_version, kind);
    default_object(info, &mut obj).expect("defaults");
    validate(info, &obj, None)
        .iter()
        .map(|e| e.to_string())
        .collect()
}

pub(super) fn update_errors(
    api_version: &str,
    kind: &str,
    mut old: Value,
    mut new: Value,
) -> Vec<String> {
    let info = info(api_version, kind);
    default_object(info, &mut old).expect("defaults");
    default_object(info, &mut new).expect("defaults");
    validate(info, &new, Some(&old))
        .iter()
        .map(|e| e.to_string())
        .collect()
}

fn pod(spec: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "namespace": "default"}, "spec": spec})
}

fn container() -> Value {
    json!({"name": "web", "image": "nginx:1.27"})
}

#[test]
fn a_valid_pod_has_no_errors() {
    assert_eq!(
        errors("v1", "Pod", pod(json!({"containers": [container()]}))),
        Vec::<String>::new()
    );
}

#[test]
fn names_must_be_dns_subdomains_and_are_required() {
    let mut p = pod(json!({"containers": [container()]}));
    p["metadata"]["name"] = json!("A_b");
    assert_eq!(
        errors("v1", "Pod", p),
        ["metadata.name: Invalid value: \"A_b\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"]
    );
    let mut p = pod(json!({"containers": [container()]}));
    p["metadata"] = json!({"namespace": "default"});
    assert_eq!(
        errors("v1", "Pod", p),
        ["metadata.name: Required value: name or generateName is required"]
    );
    let mut p = pod(json!({"containers": [container()]}));
    p["metadata"] = json!({"generateName": "web-", "namespace": "default", "name": "web-x1"});
    assert!(errors("v1", "Pod", p).is_empty());
}

#[test]
fn namespaces_and_services_use_label_grammars_and_rbac_uses_path_segments() {
    let ns = json!({"metadata": {"name": "a.b"}});
    assert_eq!(
        errors("v1", "Namespace", ns),
        ["metadata.name: Invalid value: \"a.b\": must not contain dots"]
    );
    let svc =
        json!({"metadata": {"name": "1web", "namespace": "d"}, "spec": {"ports": [{"port": 80}]}});
    assert!(errors("v1", "Service", svc)[0].contains("a DNS-1035 label must consist of"));
    let role = json!({"metadata": {"name": "system:reader", "namespace": "d"}, "rules": []});
    assert!(errors("rbac.authorization.k8s.io/v1", "Role", role).is_empty());
    let role = json!({"metadata": {"name": "a/b", "namespace": "d"}});
    assert_eq!(
        errors("rbac.authorization.k8s.io/v1", "Role", role),
        ["metadata.name: Invalid value: \"a/b\": may not contain '/'"]
    );
}

#[test]
fn namespace_presence_follows_the_scope() {
    let mut p = pod(json!({"containers": [container()]}));
    p["metadata"] = json!({"name": "web"});
    assert_eq!(
        errors("v1", "Pod", p),
        ["metadata.namespace: Required value"]
    );
    let node = json!({"metadata": {"name": "n1", "namespace": "default"}});
    assert_eq!(
        errors("v1", "Node", node),
        ["metadata.namespace: Forbidden: not allowed on this type"]
    );
}

#[test]
fn labels_and_annotations_are_checked() {
    let mut p = pod(json!({"containers": [container()]}));
    p["metadata"]["labels"] = json!({"app": "-bad"});
    let errs = errors("v1", "Pod", p);
    assert_eq!(errs.len(), 1);
    assert!(
        errs[0].starts_with(
            "metadata.labels: Invalid value: \"-bad\": a valid label must be an empty string"
        ),
        "{errs:?}"
    );
    let mut p = pod(json!({"containers": [container()]}));
    p["metadata"]["annotations"] = json!({"big": "x".repeat(262_142)});
    assert_eq!(
        errors("v1", "Pod", p),
        ["metadata.annotations: Too long: may not be more than 262144 bytes"]
    );
}

#[test]
fn pod_specs_need_containers_with_names_and_images() {
    assert_eq!(
        errors("v1", "Pod", pod(json!({"containers": []}))),
        ["spec.containers: Required value"]
    );
    let errs = errors(
        "v1",
        "Pod",
        pod(
            json!({"containers": [{"name": "web"}, {"name": "web", "image": "x"}, {"name": "Bad", "image": "x"}]}),
        ),
    );
    assert_eq!(errs[0], "spec.containers[0].image: Required value");
    assert_eq!(errs[1], "spec.containers[1].name: Duplicate value: \"web\"");
    assert!(errs[2].starts_with(
        "spec.containers[2].name: Invalid value: \"Bad\": a lowercase RFC 1123 label"
    ));
}

#[test]
fn ports_protocols_and_port_names_are_checked() {
    let c = json!({"name": "web", "image": "x", "ports": [
        {"containerPort": 70000}, {"containerPort": 80, "protocol": "HTTP"}, {"containerPort": 81, "name": "HTTP"}
    ]});
    let errs = errors("v1", "Pod", pod(json!({"containers": [c]})));
    assert_eq!(
        errs,
        [
            "spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
            "spec.containers[0].ports[1].protocol: Unsupported value: \"HTTP\": supported values: \"SCTP\", \"TCP\", \"UDP\"",
            "spec.containers[0].ports[2].name: Invalid value: \"HTTP\": must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)",
            "spec.containers[0].ports[2].name: Invalid value: \"HTTP\": must contain at least one letter (a-z)",
        ]
    );
}

#[test]
fn requests_may_not_exceed_limits() {
    let c = json!({"name": "web", "image": "x", "resources": {"limits": {"cpu": "500m"}, "requests": {"cpu": "1"}}});
    assert_eq!(
        errors("v1", "Pod", pod(json!({"containers": [c]}))),
        ["spec.containers[0].resources.requests[cpu]: Invalid value: \"1\": must be less than or equal to cpu limit of 500m"]
    );
    let c = json!({"name": "web", "image": "x", "resources": {"requests": {"memory": "lots"}}});
    assert!(errors("v1", "Pod", pod(json!({"containers": [c]})))[0]
        .starts_with("spec.containers[0].resources.requests[memory]: Invalid value: \"lots\": quantities must match"));
}

#[test]
fn restart_and_dns_policies_are_enumerations() {
    let errs = errors(
        "v1",
        "Pod",
        pod(
            json!({"containers": [container()], "restartPolicy": "Sometimes", "dnsPolicy": "Google"}),
        ),
    );
    assert_eq!(
        errs,
        [
            "spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\"",
            "spec.dnsPolicy: Unsupported value: \"Google\": supported values: \"ClusterFirstWithHostNet\", \"ClusterFirst\", \"Default\", \"None\"",
        ]
    );
}

#[test]
fn volumes_are_unique_and_mounts_must_name_one() {
    let c = json!({"name": "web", "image": "x", "volumeMounts": [{"name": "data", "mountPath": "/d"}, {"name": "cfg", "mountPath": "/d"}]});
    let errs = errors(
        "v1",
        "Pod",
        pod(
            json!({"containers": [c], "volumes": [{"name": "cfg", "emptyDir": {}}, {"name": "cfg", "emptyDir": {}}]}),
        ),
    );
    assert_eq!(
        errs,
        [
            "spec.volumes[1].name: Duplicate value: \"cfg\"",
            "spec.containers[0].volumeMounts[0].name: Not found: \"data\"",
            "spec.containers[0].volumeMounts[1].mountPath: Invalid value: \"/d\": must be unique",
        ]
    );
}

fn deployment(selector: Value, labels: Value) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "d"},
           "spec": {"selector": selector, "template": {"metadata": {"labels": labels}, "spec": {"containers": [container()]}}}})
}

#[test]
fn a_workload_selector_is_required_non_empty_and_must_match_its_template() {
    assert!(errors(
        "apps/v1",
        "Deployment",
        deployment(
            json!({"matchLabels": {"app": "web"}}),
            json!({"app": "web"})
        )
    )
    .is_empty());
    let mut missing = deployment(json!(null), json!({"app": "web"}));
    missing["spec"]
        .as_object_mut()
        .map(|s| s.remove("selector"));
    assert_eq!(
        errors("apps/v1", "Deployment", missing),
        ["spec.selector: Required value"]
    );
    let empty = errors(
        "apps/v1",
        "Deployment",
        deployment(json!({}), json!({"app": "web"})),
    );
    assert_eq!(empty.len(), 1);
    assert!(
        empty[0].ends_with("empty selector is invalid for deployment"),
        "{empty:?}"
    );
    assert_eq!(
        errors("apps/v1", "Deployment", deployment(json!({"matchLabels": {"app": "db"}}), json!({"app": "web"}))),
        ["spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"web\"}: `selector` does not match template `labels`"]
    );
}

#[test]
fn replicas_may_not_be_negative_and_templates_must_restart_always() {
    let mut d = deployment(
        json!({"matchLabels": {"app": "web"}}),
        json!({"app": "web"}),
    );
    d["spec"]["replicas"] = json!(-1);
    d["spec"]["template"]["spec"]["restartPolicy"] = json!("Never");
    assert_eq!(
        errors("apps/v1", "Deployment", d),
        [
            "spec.replicas: Invalid value: -1: must be greater than or equal to 0",
            "spec.template.spec.restartPolicy: Unsupported value: \"Never\": supported values: \"Always\"",
        ]
    );
}

#[test]
fn jobs_require_on_failure_or_never() {
    let job = |policy: &str| json!({"metadata": {"name": "j", "namespace": "d"}, "spec": {"template": {"spec": {"restartPolicy": policy, "containers": [container()]}}}});
    assert!(errors("batch/v1", "Job", job("Never")).is_empty());
    assert_eq!(
        errors("batch/v1", "Job", job("Always")),
        ["spec.template.spec.restartPolicy: Unsupported value: \"Always\": supported values: \"OnFailure\", \"Never\""]
    );
}

#[test]
fn cron_jobs_check_schedule_time_zone_and_name_length() {
    let cj = |schedule: &str, tz: Value, name: &str| {
        json!({"metadata": {"name": name, "namespace": "d"}, "spec": {"schedule": schedule, "timeZone": tz,
               "jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "OnFailure", "containers": [container()]}}}}}})
    };
    assert!(errors(
        "batch/v1",
        "CronJob",
        cj("*/5 * * * *", json!("Europe/Paris"), "backup")
    )
    .is_empty());
    assert!(errors("batch/v1", "CronJob", cj("@daily", json!(null), "backup")).is_empty());
    assert_eq!(
        errors("batch/v1", "CronJob", cj("* * *", json!(null), "backup")),
        ["spec.schedule: Invalid value: \"* * *\": expected exactly 5 fields, found 3: [* * *]"]
    );
    assert_eq!(
        errors("batch/v1", "CronJob", cj("* * * * *", json!("Local"), "backup")),
        ["spec.timeZone: Invalid value: \"Local\": timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones"]
    );
    assert_eq!(
        errors(
            "batch/v1",
            "CronJob",
            cj("* * * * *", json!(null), &"a".repeat(53))
        ),
        [format!(
            "metadata.name: Invalid value: \"{}\": must be no more than 52 characters",
            "a".repeat(53)
        )]
    );
}

#[test]
fn services_need_ports_with_names_when_several() {
    let svc = |spec: Value| json!({"metadata": {"name": "web", "namespace": "d"}, "spec": spec});
    assert_eq!(
        errors("v1", "Service", svc(json!({"selector": {"a": "b"}}))),
        ["spec.ports: Required value"]
    );
    assert!(
        errors("v1", "Service", svc(json!({"clusterIP": "None"}))).is_empty(),
        "headless services need no ports"
    );
    assert!(errors(
        "v1",
        "Service",
        svc(json!({"type": "ExternalName", "externalName": "db.example.com"}))
    )
    .is_empty());
    assert_eq!(
        errors(
            "v1",
            "Service",
            svc(json!({"ports": [{"port": 80}, {"port": 0, "name": "b"}]}))
        ),
        [
            "spec.ports[0].name: Required value",
            "spec.ports[1].port: Invalid value: 0: must be between 1 and 65535, inclusive",
            "spec.ports[1].targetPort: Invalid value: 0: must be between 1 and 65535, inclusive",
        ]
    );
    assert_eq!(
        errors("v1", "Service", svc(json!({"type": "Magic", "ports": [{"port": 80}]}))),
        ["spec.type: Unsupported value: \"Magic\": supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\""]
    );
}

#[test]
fn config_map_and_secret_keys_and_sizes_are_limited() {
    let cm = json!({"metadata": {"name": "c", "namespace": "d"}, "data": {"a/b": "x"}});
    assert_eq!(
        errors("v1", "ConfigMap", cm),
        ["data[a/b]: Invalid value: \"a/b\": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"]
    );
    let big = json!({"metadata": {"name": "c", "namespace": "d"}, "data": {"a": "x".repeat(1024 * 1024 + 1)}});
    assert_eq!(
        errors("v1", "ConfigMap", big),
        [": Too long: may not be more than 1048576 bytes"]
    );
    let tls = json!({"metadata": {"name": "s", "namespace": "d"}, "type": "kubernetes.io/tls", "stringData": {"tls.crt": "c"}});
    assert_eq!(
        errors("v1", "Secret", tls),
        ["data[tls.key]: Required value"]
    );
}

#[test]
fn rbac_rules_need_verbs_and_leases_non_negative_fields() {
    let role = json!({"metadata": {"name": "r", "namespace": "d"}, "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": []}]});
    assert_eq!(
        errors("rbac.authorization.k8s.io/v1", "Role", role),
        ["rules[0].verbs: Required value: verbs must contain at least one value"]
    );
    let lease = json!({"metadata": {"name": "l", "namespace": "d"}, "spec": {"leaseDurationSeconds": 0, "leaseTransitions": -1}});
    assert_eq!(
        errors("coordination.k8s.io/v1", "Lease", lease),
        [
            "spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0",
            "spec.leaseTransitions: Invalid value: -1: must be greater than or equal to 0",
        ]
    );
    let quota =
        json!({"metadata": {"name": "q", "namespace": "d"}, "spec": {"hard": {"cpu": "-1"}}});
    assert_eq!(
        errors("v1", "ResourceQuota", quota),
        ["spec.hard[cpu]: Invalid value: \"-1\": must be greater than or equal to 0"]
    );
}

#[test]
fn ingresses_need_rules_or_a_default_backend_and_typed_paths() {
    let ing = |spec: Value| json!({"metadata": {"name": "i", "namespace": "d"}, "spec": spec});
    assert_eq!(
        errors("networking.k8s.io/v1", "Ingress", ing(json!({}))),
        ["spec: Invalid value: []: either `defaultBackend` or `rules` must be specified"]
    );
    let rule = json!({"rules": [{"host": "example.com", "http": {"paths": [
        {"path": "/", "backend": {"service": {"name": "web", "port": {"number": 80}}}}
    ]}}]});
    assert_eq!(
        errors("networking.k8s.io/v1", "Ingress", ing(rule)),
        ["spec.rules[0].http.paths[0].pathType: Required value: pathType must be specified"]
    );
}

#[test]
fn updates_may_not_change_names_or_workload_selectors() {
    let old = deployment(
        json!({"matchLabels": {"app": "web"}}),
        json!({"app": "web", "v": "1"}),
    );
    let mut new = deployment(
        json!({"matchLabels": {"app": "web", "v": "1"}}),
        json!({"app": "web", "v": "1"}),
    );
    new["metadata"]["name"] = json!("web2");
    let errs = update_errors("apps/v1", "Deployment", old, new);
    assert_eq!(errs.len(), 2, "{errs:?}");
    assert_eq!(
        errs[0],
        "metadata.name: Invalid value: \"web2\": field is immutable"
    );
    assert!(
        errs[1].starts_with("spec.selector: Invalid value: ")
            && errs[1].ends_with(": field is immutable")
    );
}

#[test]
fn pod_updates_may_change_images_but_not_other_fields() {
    let old = pod(json!({"containers": [container()]}));
    let mut new_image = old.clone();
    new_image["spec"]["containers"][0]["image"] = json!("nginx:1.28");
    assert!(update_errors("v1", "Pod", old.clone(), new_image).is_empty());
    let mut new_port = old.clone();
    new_port["spec"]["containers"][0]["ports"] = json!([{"containerPort": 80}]);
    assert_eq!(
        update_errors("v1", "Pod", old, new_port),
        [format!("spec: Forbidden: {POD_UPDATE_FORBIDDEN}")]
    );
}

#[test]
fn job_templates_are_immutable() {
    let job = |image: &str| {
        json!({"metadata": {"name": "j", "namespace": "d"}, "spec": {"template": {"spec": {"restartPolicy": "Never",
               "containers": [{"name": "c", "image": image}]}}}})
    };
    let errs = update_errors("batch/v1", "Job", job("a"), job("b"));
    assert_eq!(errs.len(), 1);
    assert!(
        errs[0].starts_with("spec.template: Invalid value: ")
            && errs[0].ends_with("field is immutable")
    );
}

mod generated_names {
    use super::*;
    use proptest::prelude::*;

    fn config_map(name: &str) -> Value {
        json!({"metadata": {"name": name, "namespace": "default"}})
    }

    proptest! {
        #[test]
        fn valid_subdomain_names_are_accepted(name in "[a-z0-9]([-a-z0-9]{0,30}[a-z0-9])?(\\.[a-z0-9]{1,10}){0,3}") {
            prop_assert!(errors("v1", "ConfigMap", config_map(&name)).is_empty());
        }

        #[test]
        fn names_with_invalid_characters_are_rejected(
            head in "[a-z0-9]{1,10}", bad in "[A-Z_ !@:/]", tail in "[a-z0-9]{1,10}"
        ) {
            let name = format!("{head}{bad}{tail}");
            let errs = errors("v1", "ConfigMap", config_map(&name));
            prop_assert!(errs.iter().any(|e| e.starts_with("metadata.name: Invalid value")), "{:?}", errs);
        }

        #[test]
        fn overlong_names_are_rejected(name in "[a-z]{254,300}") {
            let errs = errors("v1", "ConfigMap", config_map(&name));
            prop_assert!(errs.iter().any(|e| e.ends_with("must be no more than 253 characters")), "{:?}", errs);
        }

        #[test]
        fn namespace_names_longer_than_a_label_are_rejected(name in "[a-z]{64,80}") {
            let errs = errors("v1", "Namespace", json!({"metadata": {"name": name}}));
            prop_assert!(errs.iter().any(|e| e.ends_with("must be no more than 63 characters")), "{:?}", errs);
        }
    }
}

fn priority_class(name: &str, value: i64) -> Value {
    json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
        "metadata": {"name": name}, "value": value})
}

#[test]
fn user_priority_classes_stay_at_or_below_one_billion() {
    let pc = |name, value| {
        errors(
            "scheduling.k8s.io/v1",
            "PriorityClass",
            priority_class(name, value),
        )
    };
    assert_eq!(pc("high", 1_000_000_000), Vec::<String>::new());
    assert_eq!(pc("low", -5), Vec::<String>::new());
    assert_eq!(
        pc("too-high", 1_000_000_001),
        ["value: Forbidden: maximum allowed value of a user defined priority is 1000000000"]
    );
}

#[test]
fn system_prefixed_priority_class_names_are_reserved_for_the_built_in_classes() {
    let pc = |name, value| {
        errors(
            "scheduling.k8s.io/v1",
            "PriorityClass",
            priority_class(name, value),
        )
    };
    assert_eq!(
        pc("system-node-critical", 2_000_001_000),
        Vec::<String>::new()
    );
    assert_eq!(
        pc("system-cluster-critical", 2_000_000_000),
        Vec::<String>::new()
    );
    assert_eq!(
        pc("system-mine", 10),
        ["metadata.name: Forbidden: priority class names with 'system-' prefix are reserved for system use only. error: system-mine is not a known system priority class"]
    );
    assert_eq!(
        pc("system-cluster-critical", 5),
        ["metadata.name: Forbidden: priority class names with 'system-' prefix are reserved for system use only. error: value of system-cluster-critical PriorityClass must be 2000000000"]
    );
    let mut default = priority_class("system-node-critical", 2_000_001_000);
    default["globalDefault"] = json!(true);
    assert_eq!(
        errors("scheduling.k8s.io/v1", "PriorityClass", default),
        ["metadata.name: Forbidden: priority class names with 'system-' prefix are reserved for system use only. error: globalDefault of system-node-critical PriorityClass must be false"]
    );
}

#[test]
fn priority_class_preemption_policy_is_an_enumeration() {
    let mut pc = priority_class("high", 10);
    pc["preemptionPolicy"] = json!("Sometimes");
    assert_eq!(
        errors("scheduling.k8s.io/v1", "PriorityClass", pc),
        ["preemptionPolicy: Unsupported value: \"Sometimes\": supported values: \"PreemptLowerPriority\", \"Never\""]
    );
}

#[test]
fn priority_class_value_and_preemption_policy_are_immutable() {
    let old = priority_class("high", 10);
    let mut new = priority_class("high", 11);
    new["preemptionPolicy"] = json!("Never");
    new["description"] = json!("descriptions may change");
    assert_eq!(
        update_errors("scheduling.k8s.io/v1", "PriorityClass", old.clone(), new),
        [
            "value: Forbidden: may not be changed in an update.",
            "preemptionPolicy: Invalid value: \"Never\": field is immutable",
        ]
    );
    let mut described = old.clone();
    described["description"] = json!("now described");
    described["globalDefault"] = json!(true);
    assert_eq!(
        update_errors("scheduling.k8s.io/v1", "PriorityClass", old, described),
        Vec::<String>::new()
    );
}

#[test]
fn a_stateful_set_may_mount_its_claim_templates_by_name() {
    let set = |mount: &str| {
        json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db", "namespace": "d"},
            "spec": {"serviceName": "db", "selector": {"matchLabels": {"app": "db"}},
                "template": {"metadata": {"labels": {"app": "db"}},
                    "spec": {"containers": [{"name": "db", "image": "postgres",
                        "volumeMounts": [{"name": mount, "mountPath": "/data"}]}]}},
                "volumeClaimTemplates": [{"metadata": {"name": "data"},
                    "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]}})
    };
    assert_eq!(
        errors("apps/v1", "StatefulSet", set("data")),
        Vec::<String>::new()
    );
    assert_eq!(
        errors("apps/v1", "StatefulSet", set("other")),
        vec![
            "spec.template.spec.containers[0].volumeMounts[0].name: Not found: \"other\""
                .to_string()
        ]
    );
}
