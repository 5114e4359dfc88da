//! The kinds served without a controller of their own (HorizontalPodAutoscaler, storage
//! classes and attachments, CSI drivers, IngressClasses, webhook configurations, APIServices)
//! are refused with Kubernetes' field paths and messages.

use serde_json::{json, Value};

use super::tests::{errors, update_errors};

fn hpa(spec: Value) -> Value {
    json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "web", "namespace": "default"}, "spec": spec})
}

fn target() -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"})
}

#[test]
fn an_hpa_is_defaulted_to_cpu_at_80_percent_and_its_behaviour_completed() {
    let valid = hpa(json!({"scaleTargetRef": target(), "maxReplicas": 5,
        "behavior": {"scaleDown": {"stabilizationWindowSeconds": 60}}}));
    assert_eq!(
        errors("autoscaling/v2", "HorizontalPodAutoscaler", valid.clone()),
        Vec::<String>::new()
    );
    let mut defaulted = valid;
    let info = crate::kinds::by_kind("autoscaling/v2", "HorizontalPodAutoscaler").expect("hpa");
    crate::defaults::default_object(info, &mut defaulted).expect("defaults");
    assert_eq!(defaulted["spec"]["minReplicas"], 1);
    assert_eq!(
        defaulted["spec"]["metrics"][0]["resource"],
        json!({"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}})
    );
    let down = &defaulted["spec"]["behavior"]["scaleDown"];
    assert_eq!(
        down["stabilizationWindowSeconds"], 60,
        "what was given is kept"
    );
    assert_eq!(
        down["policies"],
        json!([{"type": "Percent", "value": 100, "periodSeconds": 15}])
    );
    assert_eq!(
        defaulted["spec"]["behavior"]["scaleUp"]["policies"][0],
        json!({"type": "Pods", "value": 4, "periodSeconds": 15})
    );
}

#[test]
fn hpa_bounds_targets_and_metrics_are_checked_as_kubernetes_checks_them() {
    let bad = hpa(json!({
        "scaleTargetRef": {"kind": "", "name": "web"},
        "minReplicas": 5, "maxReplicas": 2,
        "metrics": [
            {"type": "Resource", "resource": {"name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": 0}}},
            {"type": "Pods"},
            {"type": "Sideways"}
        ],
        "behavior": {"scaleUp": {"selectPolicy": "Most",
            "policies": [{"type": "Pods", "value": 0, "periodSeconds": 1801}]}}
    }));
    assert_eq!(
        errors("autoscaling/v2", "HorizontalPodAutoscaler", bad),
        [
            "spec.maxReplicas: Invalid value: 2: must be greater than or equal to `minReplicas`",
            "spec.scaleTargetRef.kind: Required value",
            "spec.metrics[0].resource.target.averageUtilization: Invalid value: 0: must be greater than 0",
            "spec.metrics[1].pods: Required value: must populate information for the given metric source",
            "spec.metrics[2].type: Unsupported value: \"Sideways\": supported values: \"ContainerResource\", \"External\", \"Object\", \"Pods\", \"Resource\"",
            "spec.behavior.scaleUp.selectPolicy: Unsupported value: \"Most\": supported values: \"Disabled\", \"Max\", \"Min\"",
            "spec.behavior.scaleUp.policies[0].value: Invalid value: 0: must be greater than zero",
            "spec.behavior.scaleUp.policies[0].periodSeconds: Invalid value: 1801: must be less than or equal to 1800",
        ]
    );
}

fn storage_class(extra: Value) -> Value {
    let mut sc = json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": "fast"}, "provisioner": "example.com/disk",
        "parameters": {"type": "ssd"}});
    for (k, v) in extra.as_object().into_iter().flatten() {
        sc[k] = v.clone();
    }
    sc
}

#[test]
fn a_storage_class_needs_a_provisioner_and_never_changes_it() {
    let sc = "StorageClass";
    assert!(errors("storage.k8s.io/v1", sc, storage_class(json!({}))).is_empty());
    assert_eq!(
        errors(
            "storage.k8s.io/v1",
            sc,
            storage_class(json!({"provisioner": "", "reclaimPolicy": "Recycle",
                "volumeBindingMode": "Later"}))
        ),
        [
            "provisioner: Required value",
            "reclaimPolicy: Unsupported value: \"Recycle\": supported values: \"Delete\", \"Retain\"",
            "volumeBindingMode: Unsupported value: \"Later\": supported values: \"Immediate\", \"WaitForFirstConsumer\"",
        ]
    );
    assert_eq!(
        update_errors(
            "storage.k8s.io/v1",
            sc,
            storage_class(json!({})),
            storage_class(json!({"provisioner": "example.com/other", "parameters": {}}))
        ),
        [
            "parameters: Forbidden: updates to parameters are forbidden.",
            "provisioner: Forbidden: updates to provisioner are forbidden.",
        ]
    );
}

#[test]
fn a_volume_attachment_names_attacher_volume_and_node_and_its_spec_is_immutable() {
    let va = |node: &str| {
        json!({"apiVersion": "storage.k8s.io/v1", "kind": "VolumeAttachment",
            "metadata": {"name": "va"},
            "spec": {"attacher": "example.com/disk", "nodeName": node,
                "source": {"persistentVolumeName": "pv1"}}})
    };
    assert!(errors("storage.k8s.io/v1", "VolumeAttachment", va("n1")).is_empty());
    let empty = json!({"metadata": {"name": "va"},
        "spec": {"attacher": "", "nodeName": "n1", "source": {}}});
    assert_eq!(
        errors("storage.k8s.io/v1", "VolumeAttachment", empty),
        [
            "spec.attacher: Required value",
            "spec.source: Required value"
        ]
    );
    let moved = update_errors("storage.k8s.io/v1", "VolumeAttachment", va("n1"), va("n2"));
    assert_eq!(moved.len(), 1);
    assert!(moved[0].starts_with("spec: Invalid value: "), "{moved:?}");
    assert!(moved[0].ends_with(": field is immutable"), "{moved:?}");
}

#[test]
fn csi_drivers_and_ingress_classes_take_only_known_values() {
    let driver = json!({"metadata": {"name": "disk.example.com"},
        "spec": {"fsGroupPolicy": "Sometimes", "volumeLifecycleModes": ["Persistent", "Forever"]}});
    assert_eq!(
        errors("storage.k8s.io/v1", "CSIDriver", driver),
        [
            "spec.fsGroupPolicy: Unsupported value: \"Sometimes\": supported values: \"File\", \"None\", \"ReadWriteOnceWithFSType\"",
            "spec.volumeLifecycleModes[1]: Unsupported value: \"Forever\": supported values: \"Ephemeral\", \"Persistent\"",
        ]
    );
    let class = |controller: &str| {
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
            "metadata": {"name": "nginx"}, "spec": {"controller": controller}})
    };
    let ic = "IngressClass";
    assert!(errors("networking.k8s.io/v1", ic, class("k8s.io/ingress-nginx")).is_empty());
    assert_eq!(
        errors("networking.k8s.io/v1", ic, class("nginx")),
        ["spec.controller: Invalid value: \"nginx\": must be a domain-prefixed path (such as \"acme.io/foo\")"]
    );
    assert_eq!(
        update_errors(
            "networking.k8s.io/v1",
            ic,
            class("k8s.io/ingress-nginx"),
            class("example.com/other")
        ),
        ["spec.controller: Invalid value: \"example.com/other\": field is immutable"]
    );
}

fn webhook(hook: Value) -> Value {
    json!({"apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": "checks"}, "webhooks": [hook]})
}

fn good_hook() -> Value {
    json!({"name": "check.example.com", "sideEffects": "None",
        "admissionReviewVersions": ["v1"],
        "clientConfig": {"service": {"namespace": "system", "name": "checker"}},
        "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"],
            "resources": ["pods"]}]})
}

#[test]
fn webhook_configurations_are_checked_as_kubernetes_checks_them() {
    let kind = "ValidatingWebhookConfiguration";
    let group = "admissionregistration.k8s.io/v1";
    assert!(errors(group, kind, webhook(good_hook())).is_empty());
    let mut bad = good_hook();
    bad["name"] = json!("check");
    bad["sideEffects"] = json!("Some");
    bad["timeoutSeconds"] = json!(31);
    bad["admissionReviewVersions"] = json!(["v2"]);
    bad["clientConfig"] = json!({"url": "http://checker.example.com/check?x=1"});
    bad["rules"][0]["operations"] = json!(["PATCH"]);
    assert_eq!(
        errors(group, kind, webhook(bad)),
        [
            "webhooks[0].name: Invalid value: \"check\": should be a domain with at least three segments separated by dots",
            "webhooks[0].rules[0].operations[0]: Unsupported value: \"PATCH\": supported values: \"*\", \"CONNECT\", \"CREATE\", \"DELETE\", \"UPDATE\"",
            "webhooks[0].sideEffects: Unsupported value: \"Some\": supported values: \"None\", \"NoneOnDryRun\"",
            "webhooks[0].timeoutSeconds: Invalid value: 31: the timeout value must be between 1 and 30 seconds",
            "webhooks[0].admissionReviewVersions: Invalid value: [\"v2\"]: must include at least one of v1, v1beta1",
            "webhooks[0].clientConfig.url: Invalid value: \"http://checker.example.com/check?x=1\": 'https' is the only allowed URL scheme",
            "webhooks[0].clientConfig.url: Invalid value: \"http://checker.example.com/check?x=1\": \"x=1\": query parameters are not permitted",
        ]
    );
    let mut twice = webhook(good_hook());
    twice["webhooks"] = json!([good_hook(), good_hook()]);
    assert_eq!(
        errors(group, kind, twice),
        ["webhooks[1].name: Duplicate value: \"check.example.com\""]
    );
    let mut neither = good_hook();
    neither["clientConfig"] = json!({});
    assert_eq!(
        errors(group, kind, webhook(neither)),
        ["webhooks[0].clientConfig: Required value: exactly one of url or service is required"]
    );
}

#[test]
fn an_api_service_is_named_for_its_group_version_with_priorities_in_range() {
    let service = |name: &str, priority: i64| {
        json!({"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
            "metadata": {"name": name},
            "spec": {"group": "metrics.k8s.io", "version": "v1beta1",
                "groupPriorityMinimum": priority, "versionPriority": 100,
                "insecureSkipTLSVerify": true,
                "service": {"namespace": "kube-system", "name": "metrics-server"}}})
    };
    let group = "apiregistration.k8s.io/v1";
    assert!(errors(group, "APIService", service("v1beta1.metrics.k8s.io", 100)).is_empty());
    assert_eq!(
        errors(group, "APIService", service("metrics", 0)),
        [
            "metadata.name: Invalid value: \"metrics\": must be `spec.version+\".\"+spec.group`",
            "spec.groupPriorityMinimum: Invalid value: 0: must be positive and less than 20000",
        ]
    );
}
