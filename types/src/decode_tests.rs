//! Specification of decoding: real manifests decode cleanly, unknown fields are named by
//! path, type errors say where they are.

use super::*;
use crate::kinds::by_kind;
use serde_json::json;

fn info(api_version: &str, kind: &str) -> &'static ResourceInfo {
    by_kind(api_version, kind).unwrap_or_else(|| panic!("{api_version} {kind} is served"))
}

fn assert_clean(api_version: &str, kind: &str, manifest: Value) -> Value {
    let decoded = decode(info(api_version, kind), manifest.clone())
        .unwrap_or_else(|e| panic!("{kind} decodes: {e}"));
    assert_eq!(decoded.unknown_fields, Vec::<String>::new(), "{kind}");
    decoded.object
}

#[test]
fn a_deployment_decodes_without_unknown_fields() {
    let object = assert_clean(
        "apps/v1",
        "Deployment",
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "prod", "labels": {"app": "web"}, "creationTimestamp": null},
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": {"app": "web"}},
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": "25%"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {
                        "containers": [{
                            "name": "web", "image": "nginx:1.27",
                            "ports": [{"containerPort": 80, "name": "http"}],
                            "env": [{"name": "MODE", "value": "prod"},
                                    {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                            "resources": {"requests": {"cpu": "250m", "memory": "64Mi"}, "limits": {"memory": "128Mi"}},
                            "readinessProbe": {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 5},
                            "volumeMounts": [{"name": "cfg", "mountPath": "/etc/web"}]
                        }],
                        "volumes": [{"name": "cfg", "configMap": {"name": "web-config"}}]
                    }
                }
            }
        }),
    );
    assert_eq!(object["spec"]["strategy"]["rollingUpdate"]["maxSurge"], 1);
    assert_eq!(
        object["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"],
        "250m"
    );
}

#[test]
fn a_service_configmap_and_secret_decode_without_unknown_fields() {
    assert_clean(
        "v1",
        "Service",
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web"},
            "spec": {"type": "NodePort", "selector": {"app": "web"},
                     "ports": [{"name": "http", "port": 80, "targetPort": "http", "nodePort": 30080, "protocol": "TCP"}]}
        }),
    );
    assert_clean(
        "v1",
        "ConfigMap",
        json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "web-config"},
            "data": {"app.properties": "a=b\n"},
            "binaryData": {"logo.png": "iVBORw0KGgo="}
        }),
    );
    let secret = assert_clean(
        "v1",
        "Secret",
        json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "creds"},
            "type": "Opaque",
            "data": {"user": "YWRtaW4="},
            "stringData": {"password": "s3cret"}
        }),
    );
    assert_eq!(secret["stringData"]["password"], "s3cret");
    assert_eq!(secret["data"]["user"], "YWRtaW4=");
}

#[test]
fn batch_rbac_networking_and_statefulsets_decode_without_unknown_fields() {
    assert_clean(
        "batch/v1",
        "CronJob",
        json!({
            "apiVersion": "batch/v1", "kind": "CronJob",
            "metadata": {"name": "backup"},
            "spec": {
                "schedule": "*/5 * * * *", "timeZone": "Etc/UTC", "concurrencyPolicy": "Forbid",
                "jobTemplate": {"spec": {"backoffLimit": 2, "template": {"spec": {
                    "restartPolicy": "OnFailure",
                    "containers": [{"name": "backup", "image": "busybox", "command": ["sh", "-c", "date"]}]
                }}}}
            }
        }),
    );
    assert_clean(
        "rbac.authorization.k8s.io/v1",
        "Role",
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": "pod-reader", "namespace": "prod"},
            "rules": [{"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get", "list", "watch"]}]
        }),
    );
    assert_clean(
        "networking.k8s.io/v1",
        "Ingress",
        json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": "web", "annotations": {"nginx.ingress.kubernetes.io/rewrite-target": "/"}},
            "spec": {
                "ingressClassName": "nginx",
                "tls": [{"hosts": ["example.com"], "secretName": "web-tls"}],
                "rules": [{"host": "example.com", "http": {"paths": [{
                    "path": "/", "pathType": "Prefix",
                    "backend": {"service": {"name": "web", "port": {"number": 80}}}
                }]}}]
            }
        }),
    );
    assert_clean(
        "apps/v1",
        "StatefulSet",
        json!({
            "apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": "db"},
            "spec": {
                "serviceName": "db", "replicas": 3,
                "selector": {"matchLabels": {"app": "db"}},
                "template": {"metadata": {"labels": {"app": "db"}}, "spec": {"containers": [{
                    "name": "db", "image": "postgres:16",
                    "volumeMounts": [{"name": "data", "mountPath": "/var/lib/postgresql/data"}]
                }]}},
                "volumeClaimTemplates": [{
                    "metadata": {"name": "data"},
                    "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "10Gi"}}}
                }]
            }
        }),
    );
}

#[test]
fn unknown_fields_are_named_by_their_path() {
    let decoded = decode(
        info("v1", "Pod"),
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "a", "labelz": {"x": "y"}},
            "spec": {
                "bogus": 1,
                "containers": [
                    {"name": "c", "image": "busybox"},
                    {"name": "d", "image": "busybox", "imagePullPolcy": "Always"}
                ]
            },
            "extra": null
        }),
    )
    .expect("decodes");
    assert_eq!(
        decoded.unknown_fields,
        vec![
            "metadata.labelz",
            "spec.bogus",
            "spec.containers[1].imagePullPolcy"
        ]
    );
    assert_eq!(
        decoded.unknown_field_messages()[2],
        "unknown field \"spec.containers[1].imagePullPolcy\""
    );
    assert!(decoded.object["spec"].get("bogus").is_none());
}

#[test]
fn field_names_are_case_sensitive() {
    let decoded = decode(
        info("v1", "ConfigMap"),
        json!({"metadata": {"name": "a"}, "Data": {"k": "v"}}),
    )
    .expect("decodes");
    assert_eq!(decoded.unknown_fields, vec!["Data"]);
}

#[test]
fn missing_api_version_and_kind_are_filled_in() {
    let decoded =
        decode(info("v1", "ConfigMap"), json!({"metadata": {"name": "a"}})).expect("decodes");
    assert_eq!(decoded.object["apiVersion"], "v1");
    assert_eq!(decoded.object["kind"], "ConfigMap");
}

#[test]
fn a_different_api_version_or_kind_is_rejected() {
    let err = decode(
        info("v1", "Pod"),
        json!({"apiVersion": "apps/v1", "kind": "Pod"}),
    )
    .expect_err("wrong version");
    assert_eq!(
        err.to_string(),
        "the API version in the data (apps/v1) does not match the expected API version (v1)"
    );
    let err = decode(
        info("v1", "Pod"),
        json!({"apiVersion": "v1", "kind": "Service"}),
    )
    .expect_err("wrong kind");
    assert_eq!(
        err,
        DecodeError::KindMismatch {
            found: "Service".into(),
            expected: "Pod"
        }
    );
    let err = decode(info("v1", "Pod"), json!([1])).expect_err("not an object");
    assert!(matches!(err, DecodeError::NotAnObject { kind: "Pod", .. }));
}

#[test]
fn type_errors_name_the_field() {
    let err = decode(
        info("v1", "Pod"),
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a"}, "spec": {"containers": "no"}}),
    )
    .expect_err("wrong type");
    let DecodeError::Type { path, message, .. } = &err else {
        panic!("type error expected, got {err}");
    };
    assert_eq!(path, "spec.containers");
    assert!(message.contains("invalid type: string \"no\""), "{message}");
    assert!(
        err.to_string().starts_with(
            "Pod in version \"v1\" cannot be handled as a Pod: spec.containers: invalid type"
        ),
        "{err}"
    );

    let err = decode(
        info("apps/v1", "Deployment"),
        json!({"spec": {"replicas": 1, "template": {"spec": {"containers": [
            {"name": "a", "image": "x"},
            {"name": "b", "image": "y", "ports": [{"containerPort": "eighty"}]}
        ]}}}}),
    )
    .expect_err("wrong type");
    assert!(
        matches!(&err, DecodeError::Type { path, .. } if path == "spec.template.spec.containers[1].ports[0].containerPort"),
        "{err:?}"
    );
}

#[test]
fn quantities_are_read_from_numbers_and_stored_in_canonical_form() {
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "q"},
        "spec": {
            "containers": [{"name": "c", "image": "busybox", "resources": {
                "requests": {"cpu": 0.5, "memory": "2000Mi", "example.com/gpu": 2},
                "limits": {"cpu": "2000m", "memory": "1Gi"}}}],
            "overhead": {"cpu": "0.1"},
            "volumes": [{"name": "v", "emptyDir": {"sizeLimit": 1e3}}]}});
    let decoded = decode(info("v1", "Pod"), pod).expect("decodes");
    let resources = &decoded.object["spec"]["containers"][0]["resources"];
    assert_eq!(resources["requests"]["cpu"], "500m");
    assert_eq!(resources["requests"]["memory"], "2000Mi");
    assert_eq!(resources["requests"]["example.com/gpu"], "2");
    assert_eq!(resources["limits"]["cpu"], "2");
    assert_eq!(resources["limits"]["memory"], "1Gi");
    assert_eq!(decoded.object["spec"]["overhead"]["cpu"], "100m");
    assert_eq!(
        decoded.object["spec"]["volumes"][0]["emptyDir"]["sizeLimit"],
        "1k"
    );
    assert!(
        decoded.unknown_fields.is_empty(),
        "{:?}",
        decoded.unknown_fields
    );
    // Text that is no quantity stays for validation to name.
    let bad = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "q"},
        "spec": {"containers": [{"name": "c", "image": "busybox",
            "resources": {"requests": {"cpu": "lots"}}}]}});
    let decoded = decode(info("v1", "Pod"), bad).expect("decodes");
    assert_eq!(
        decoded.object["spec"]["containers"][0]["resources"]["requests"]["cpu"],
        "lots"
    );
}
