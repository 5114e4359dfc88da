//! Server-side apply over REST: create on apply, a repeated apply that writes nothing,
//! conflicts as 409 with a cause per field, and `force=true` taking the field.

use axum::http::StatusCode;
use serde_json::json;

use super::tests::{patch, send, server};

const APPLY: &str = "application/apply-patch+yaml";
const CM: &str = "/api/v1/namespaces/default/configmaps/settings";

fn config(value: &str) -> serde_json::Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "settings"}, "data": {"mode": value}})
}

#[tokio::test]
async fn apply_creates_then_repeats_without_writing() {
    let app = server().await;
    let created = patch(&app, &format!("{CM}?fieldManager=ops"), APPLY, config("a")).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(created.body["data"]["mode"], "a");
    let managed = &created.body["metadata"]["managedFields"][0];
    assert_eq!(managed["manager"], "ops");
    assert_eq!(managed["operation"], "Apply");
    assert_eq!(
        managed["fieldsV1"],
        json!({"f:data": {".": {}, "f:mode": {}}})
    );

    let again = patch(&app, &format!("{CM}?fieldManager=ops"), APPLY, config("a")).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(
        again.body["metadata"]["resourceVersion"], created.body["metadata"]["resourceVersion"],
        "nothing changed, nothing written"
    );
}

#[tokio::test]
async fn another_manager_conflicts_until_it_forces() {
    let app = server().await;
    patch(&app, &format!("{CM}?fieldManager=ops"), APPLY, config("a")).await;
    let refused = patch(&app, &format!("{CM}?fieldManager=dev"), APPLY, config("b")).await;
    assert_eq!(refused.status, StatusCode::CONFLICT);
    assert_eq!(refused.body["reason"], "Conflict");
    assert_eq!(
        refused.body["message"],
        "Apply failed with 1 conflict: conflict with \"ops\": .data.mode"
    );
    assert_eq!(
        refused.body["details"]["causes"],
        json!([{"reason": "FieldManagerConflict", "message": "conflict with \"ops\"", "field": ".data.mode"}])
    );
    let stored = send(&app, "GET", CM, None).await;
    assert_eq!(stored.body["data"]["mode"], "a", "nothing stored");

    let forced = patch(
        &app,
        &format!("{CM}?fieldManager=dev&force=true"),
        APPLY,
        config("b"),
    )
    .await;
    assert_eq!(forced.status, StatusCode::OK, "{}", forced.body);
    assert_eq!(forced.body["data"]["mode"], "b");
}

#[tokio::test]
async fn updates_record_their_manager_from_the_query_or_user_agent() {
    let app = server().await;
    let body = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "plain"}, "data": {"k": "v"}});
    let created = send(
        &app,
        "POST",
        "/api/v1/namespaces/default/configmaps?fieldManager=kubectl-create",
        Some(body),
    )
    .await;
    let managed = &created.body["metadata"]["managedFields"][0];
    assert_eq!(managed["manager"], "kubectl-create");
    assert_eq!(managed["operation"], "Update");
    assert_eq!(managed["fieldsV1"], json!({"f:data": {".": {}, "f:k": {}}}));
}
