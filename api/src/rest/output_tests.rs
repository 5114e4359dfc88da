//! What the REST API streams and renders for kubectl: watches as JSON lines, Tables for
//! pods, deployments and watch events, and the OpenAPI documents kubectl validates with.

use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use futures::StreamExt;
use serde_json::{json, Value};
use tower::ServiceExt;

use super::tests::{deployment, get_as, patch, pod, send, server, TABLE};

/// Reads watch lines from `body` until `count` have arrived.
async fn watch_lines(body: Body, count: usize) -> Vec<Value> {
    let mut stream = body.into_data_stream();
    let mut buffer = Vec::new();
    let mut lines = Vec::new();
    while lines.len() < count {
        let chunk = tokio::time::timeout(Duration::from_secs(5), stream.next())
            .await
            .expect("a watch event in time")
            .expect("the stream goes on")
            .expect("a chunk");
        buffer.extend_from_slice(&chunk);
        while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buffer.drain(..=end).collect();
            lines.push(serde_json::from_slice(&line).expect("a JSON line"));
        }
    }
    lines
}

#[tokio::test]
async fn watches_stream_one_json_event_per_line() {
    let app = server().await;
    let base = "/api/v1/namespaces/default/pods";
    send(&app, "POST", base, Some(pod("first"))).await;

    let response = app
        .clone()
        .oneshot(
            Request::get(format!("{base}?watch=true&timeoutSeconds=10"))
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("infallible");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
    send(&app, "POST", base, Some(pod("second"))).await;
    send(&app, "DELETE", &format!("{base}/first"), None).await;

    let lines = watch_lines(response.into_body(), 3).await;
    let seen: Vec<(&Value, &Value)> = lines
        .iter()
        .map(|l| (&l["type"], &l["object"]["metadata"]["name"]))
        .collect();
    assert_eq!(
        seen,
        [
            (&json!("ADDED"), &json!("first")),
            (&json!("ADDED"), &json!("second")),
            (&json!("DELETED"), &json!("first")),
        ]
    );
}

#[tokio::test]
async fn watches_end_after_their_timeout() {
    let app = server().await;
    let response = app
        .clone()
        .oneshot(
            Request::get(
                "/api/v1/namespaces/default/pods?watch=1&timeoutSeconds=1&resourceVersion=1",
            )
            .body(Body::empty())
            .expect("request"),
        )
        .await
        .expect("infallible");
    let body = tokio::time::timeout(
        Duration::from_secs(5),
        axum::body::to_bytes(response.into_body(), usize::MAX),
    )
    .await
    .expect("the watch ends by itself")
    .expect("body");
    assert!(body.is_empty());
}

#[tokio::test]
async fn pod_tables_have_kubectls_columns_and_partial_metadata_rows() {
    let app = server().await;
    let base = "/api/v1/namespaces/default/pods";
    send(&app, "POST", base, Some(pod("web"))).await;
    patch(
        &app,
        &format!("{base}/web/status"),
        "application/merge-patch+json",
        json!({"status": {"phase": "Running", "podIP": "10.0.0.7", "containerStatuses": [
            {"name": "app", "ready": true, "restartCount": 0, "image": "nginx:1.27", "imageID": "",
             "state": {"running": {"startedAt": "2024-01-01T00:00:00Z"}}}
        ]}}),
    )
    .await;

    let table = get_as(&app, base, TABLE).await;
    assert_eq!(table.status, StatusCode::OK);
    assert_eq!(table.body["kind"], "Table");
    assert_eq!(table.body["apiVersion"], "meta.k8s.io/v1");
    let columns: Vec<(&str, i64)> = table.body["columnDefinitions"]
        .as_array()
        .expect("columns")
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap_or_default(),
                c["priority"].as_i64().unwrap_or(-1),
            )
        })
        .collect();
    assert_eq!(
        columns,
        [
            ("Name", 0),
            ("Ready", 0),
            ("Status", 0),
            ("Restarts", 0),
            ("Age", 0),
            ("IP", 1),
            ("Node", 1),
            ("Nominated Node", 1),
            ("Readiness Gates", 1),
        ]
    );
    let row = &table.body["rows"][0];
    assert_eq!(
        row["cells"].as_array().expect("cells")[..4],
        [json!("web"), json!("1/1"), json!("Running"), json!("0")]
    );
    assert_eq!(row["cells"][5], "10.0.0.7");
    assert_eq!(row["cells"][6], "<none>");
    assert_eq!(row["object"]["kind"], "PartialObjectMetadata");
    assert_eq!(row["object"]["metadata"]["name"], "web");
    assert!(row["object"].get("spec").is_none());

    let one = get_as(&app, &format!("{base}/web?includeObject=Object"), TABLE).await;
    assert_eq!(one.body["rows"].as_array().map(Vec::len), Some(1));
    assert_eq!(one.body["rows"][0]["object"]["kind"], "Pod");
}

#[tokio::test]
async fn deployment_tables_show_ready_up_to_date_and_available() {
    let app = server().await;
    let base = "/apis/apps/v1/namespaces/default/deployments";
    send(&app, "POST", base, Some(deployment("web"))).await;
    patch(
        &app,
        &format!("{base}/web/status"),
        "application/merge-patch+json",
        json!({"status": {"replicas": 3, "readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}}),
    )
    .await;
    let table = get_as(&app, base, TABLE).await;
    let names: Vec<&str> = table.body["columnDefinitions"]
        .as_array()
        .expect("columns")
        .iter()
        .filter(|c| c["priority"] == 0)
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(names, ["Name", "Ready", "Up-to-date", "Available", "Age"]);
    let cells = &table.body["rows"][0]["cells"];
    assert_eq!(cells[0], "web");
    assert_eq!(cells[1], "2/3");
    assert_eq!(cells[2], 3);
    assert_eq!(cells[3], 2);
    assert_eq!(cells[5], "web");
    assert_eq!(cells[6], "nginx:1.27");
    assert_eq!(cells[7], "app=web");
}

#[tokio::test]
async fn table_watches_send_one_row_tables() {
    let app = server().await;
    let base = "/api/v1/namespaces/default/configmaps";
    let response = app
        .clone()
        .oneshot(
            Request::get(format!("{base}?watch=true&timeoutSeconds=10"))
                .header(header::ACCEPT, TABLE)
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("infallible");
    send(
        &app,
        "POST",
        base,
        Some(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1", "b": "2"}})),
    )
    .await;
    let lines = watch_lines(response.into_body(), 1).await;
    assert_eq!(lines[0]["type"], "ADDED");
    let object = &lines[0]["object"];
    assert_eq!(object["kind"], "Table");
    assert_eq!(object["columnDefinitions"][1]["name"], "Data");
    assert_eq!(object["rows"][0]["cells"][0], "c");
    assert_eq!(object["rows"][0]["cells"][1], 2);
}

#[tokio::test]
async fn openapi_documents_let_kubectl_leave_validation_to_the_server() {
    let app = server().await;
    let v2 = get_as(&app, "/openapi/v2", super::openapi::V2_PROTOBUF).await;
    assert_eq!(v2.status, StatusCode::OK);
    assert_eq!(
        v2.headers[header::CONTENT_TYPE],
        super::openapi::V2_PROTOBUF
    );

    let index = send(&app, "GET", "/openapi/v3", None).await;
    let url = index.body["paths"]["api/v1"]["serverRelativeURL"]
        .as_str()
        .expect("api/v1 document")
        .to_string();
    let doc = send(&app, "GET", &url, None).await;
    assert_eq!(doc.status, StatusCode::OK);
    let patch = &doc.body["paths"]["/api/v1/namespaces/{namespace}/pods/{name}"]["patch"];
    assert_eq!(patch["x-kubernetes-group-version-kind"]["kind"], "Pod");
}
