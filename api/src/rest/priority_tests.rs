//! PriorityClasses and pod priority over REST, on an in-memory store: the built-in classes,
//! a new pod's priority resolved from its class (or the global default), and the refusals
//! Kubernetes' Priority admission makes.

use std::sync::Arc;

use axum::http::StatusCode;
use axum::Router;
use serde_json::{json, Value};

use super::router;
use super::tests::{pod, send};
use crate::server::ApiServer;
use crate::storage::memory::MemoryStorage;

const CLASSES: &str = "/apis/scheduling.k8s.io/v1/priorityclasses";
const PODS: &str = "/api/v1/namespaces/default/pods";

/// A server with the system namespaces and the built-in PriorityClasses.
async fn server() -> Router {
    let core = Arc::new(ApiServer::new(MemoryStorage::new()));
    crate::bootstrap::ensure_namespaces(&core).await;
    crate::bootstrap::ensure_priority_classes(&core).await;
    router(core)
}

fn class(name: &str, value: i64) -> Value {
    json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
        "metadata": {"name": name}, "value": value})
}

fn pod_with(name: &str, spec: Value) -> Value {
    let mut p = pod(name);
    if let (Some(s), Some(extra)) = (p["spec"].as_object_mut(), spec.as_object()) {
        s.extend(extra.clone());
    }
    p
}

#[tokio::test]
async fn the_built_in_classes_exist_and_cannot_be_deleted() {
    let app = server().await;
    let node = send(
        &app,
        "GET",
        &format!("{CLASSES}/system-node-critical"),
        None,
    )
    .await;
    assert_eq!(node.status, StatusCode::OK);
    assert_eq!(node.body["value"], 2_000_001_000);
    assert_eq!(
        node.body["description"],
        "Used for system critical pods that must not be moved from their current node."
    );
    assert_eq!(node.body["preemptionPolicy"], "PreemptLowerPriority");
    let cluster = send(
        &app,
        "GET",
        &format!("{CLASSES}/system-cluster-critical"),
        None,
    )
    .await;
    assert_eq!(cluster.body["value"], 2_000_000_000);

    let delete = send(
        &app,
        "DELETE",
        &format!("{CLASSES}/system-cluster-critical"),
        None,
    )
    .await;
    assert_eq!(delete.status, StatusCode::FORBIDDEN);
    assert_eq!(
        delete.body["message"],
        "priorityclasses.scheduling.k8s.io \"system-cluster-critical\" is forbidden: this is a system priority class and cannot be deleted"
    );
}

#[tokio::test]
async fn a_pod_gets_the_priority_and_preemption_policy_of_its_class() {
    let app = server().await;
    let mut batch = class("batch", 100);
    batch["preemptionPolicy"] = json!("Never");
    assert_eq!(
        send(&app, "POST", CLASSES, Some(batch)).await.status,
        StatusCode::CREATED
    );
    let created = send(
        &app,
        "POST",
        PODS,
        Some(pod_with("job", json!({"priorityClassName": "batch"}))),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(created.body["spec"]["priority"], 100);
    assert_eq!(created.body["spec"]["preemptionPolicy"], "Never");

    let critical = send(
        &app,
        "POST",
        PODS,
        Some(pod_with(
            "dns",
            json!({"priorityClassName": "system-cluster-critical"}),
        )),
    )
    .await;
    assert_eq!(critical.body["spec"]["priority"], 2_000_000_000);
}

#[tokio::test]
async fn a_pod_without_a_class_gets_the_global_default_or_zero() {
    let app = server().await;
    let plain = send(&app, "POST", PODS, Some(pod("before"))).await;
    assert_eq!(plain.body["spec"]["priority"], 0);
    assert_eq!(
        plain.body["spec"]["preemptionPolicy"],
        "PreemptLowerPriority"
    );
    assert!(plain.body["spec"].get("priorityClassName").is_none());

    let mut default = class("everyday", 50);
    default["globalDefault"] = json!(true);
    assert_eq!(
        send(&app, "POST", CLASSES, Some(default)).await.status,
        StatusCode::CREATED
    );
    let defaulted = send(&app, "POST", PODS, Some(pod("after"))).await;
    assert_eq!(defaulted.body["spec"]["priorityClassName"], "everyday");
    assert_eq!(defaulted.body["spec"]["priority"], 50);
}

#[tokio::test]
async fn an_unknown_class_or_a_claimed_priority_is_forbidden() {
    let app = server().await;
    let unknown = send(
        &app,
        "POST",
        PODS,
        Some(pod_with("x", json!({"priorityClassName": "foo"}))),
    )
    .await;
    assert_eq!(unknown.status, StatusCode::FORBIDDEN);
    assert_eq!(unknown.body["reason"], "Forbidden");
    assert_eq!(
        unknown.body["message"],
        "pods \"x\" is forbidden: no PriorityClass with name foo was found"
    );

    let claimed = send(
        &app,
        "POST",
        PODS,
        Some(pod_with(
            "y",
            json!({"priorityClassName": "system-node-critical", "priority": 7}),
        )),
    )
    .await;
    assert_eq!(claimed.status, StatusCode::FORBIDDEN);
    assert_eq!(
        claimed.body["message"],
        "pods \"y\" is forbidden: the integer value of priority (7) must not be provided in pod spec; priority admission controller computed 2000001000 from the given PriorityClass name"
    );
    for name in ["x", "y"] {
        let get = send(&app, "GET", &format!("{PODS}/{name}"), None).await;
        assert_eq!(get.status, StatusCode::NOT_FOUND, "{name} was stored");
    }
}

#[tokio::test]
async fn replacing_a_pod_from_its_manifest_keeps_its_priority() {
    let app = server().await;
    let created = send(
        &app,
        "POST",
        PODS,
        Some(pod_with(
            "web",
            json!({"priorityClassName": "system-cluster-critical"}),
        )),
    )
    .await;
    // The manifest as the client wrote it, with a new label: no priority in it.
    let mut manifest = pod_with(
        "web",
        json!({"priorityClassName": "system-cluster-critical"}),
    );
    manifest["metadata"]["labels"]["tier"] = json!("front");
    manifest["metadata"]["resourceVersion"] = created.body["metadata"]["resourceVersion"].clone();
    manifest["spec"] = created.body["spec"].clone();
    if let Some(spec) = manifest["spec"].as_object_mut() {
        spec.remove("priority");
        spec.remove("preemptionPolicy");
    }
    let replaced = send(&app, "PUT", &format!("{PODS}/web"), Some(manifest)).await;
    assert_eq!(replaced.status, StatusCode::OK, "{}", replaced.body);
    assert_eq!(replaced.body["spec"]["priority"], 2_000_000_000);
    assert_eq!(replaced.body["metadata"]["labels"]["tier"], "front");
}

#[tokio::test]
async fn only_one_class_is_the_global_default() {
    let app = server().await;
    let mut first = class("first", 10);
    first["globalDefault"] = json!(true);
    assert_eq!(
        send(&app, "POST", CLASSES, Some(first)).await.status,
        StatusCode::CREATED
    );
    let mut second = class("second", 20);
    second["globalDefault"] = json!(true);
    let refused = send(&app, "POST", CLASSES, Some(second)).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(
        refused.body["message"],
        "priorityclasses.scheduling.k8s.io \"second\" is forbidden: PriorityClass first is already marked as default. Only one default can exist"
    );
    // Marking another existing class as default is refused the same way.
    assert_eq!(
        send(&app, "POST", CLASSES, Some(class("third", 30)))
            .await
            .status,
        StatusCode::CREATED
    );
    let patch = super::tests::patch(
        &app,
        &format!("{CLASSES}/third"),
        "application/merge-patch+json",
        json!({"globalDefault": true}),
    )
    .await;
    assert_eq!(patch.status, StatusCode::FORBIDDEN, "{}", patch.body);
}

#[tokio::test]
async fn priority_class_values_are_immutable_and_bounded() {
    let app = server().await;
    let too_high = send(&app, "POST", CLASSES, Some(class("huge", 1_000_000_001))).await;
    assert_eq!(too_high.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(too_high.body["details"]["causes"][0]["field"], "value");

    assert_eq!(
        send(&app, "POST", CLASSES, Some(class("fixed", 5)))
            .await
            .status,
        StatusCode::CREATED
    );
    let changed = super::tests::patch(
        &app,
        &format!("{CLASSES}/fixed"),
        "application/merge-patch+json",
        json!({"value": 6}),
    )
    .await;
    assert_eq!(changed.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        changed.body["details"]["causes"][0],
        json!({"field": "value", "reason": "FieldValueForbidden", "message": "Forbidden: may not be changed in an update."})
    );
}

#[tokio::test]
async fn kubectl_get_shows_value_default_and_preemption_policy() {
    let app = server().await;
    let table = super::tests::get_as(
        &app,
        &format!("{CLASSES}/system-node-critical"),
        super::tests::TABLE,
    )
    .await;
    let names: Vec<&str> = table.body["columnDefinitions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(
        names,
        ["Name", "Value", "Global-Default", "Age", "PreemptionPolicy"]
    );
    let cells = &table.body["rows"][0]["cells"];
    assert_eq!(cells[0], "system-node-critical");
    assert_eq!(cells[1], 2_000_001_000);
    assert_eq!(cells[2], false);
    assert_eq!(cells[4], "PreemptLowerPriority");
}
