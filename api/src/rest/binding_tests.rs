//! Binding pods to nodes over REST, on an in-memory store: `pods/{name}/binding` and the
//! `bindings` collection as kube-apiserver serves them, who may bind, and the fence that
//! stops a deposed scheduler's bind in the store.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use serde_json::{json, Value};

use super::router;
use super::tests::{call, pod, send, server, Reply};
use crate::auth::authn::{Authenticator, TokenFile};
use crate::auth::{AuthConfig, AuthorizationMode};
use crate::error::ApiError;
use crate::server::{ApiServer, Fence, WriteOptions};
use crate::storage::memory::MemoryStorage;

const PODS: &str = "/api/v1/namespaces/default/pods";

fn binding(pod: &str, node: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Binding",
        "metadata": {"name": pod}, "target": {"apiVersion": "v1", "kind": "Node", "name": node}})
}

async fn create_pod(app: &Router, name: &str) -> Value {
    let created = send(app, "POST", PODS, Some(pod(name))).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    created.body
}

async fn bind(app: &Router, pod: &str, body: Value) -> Reply {
    send(app, "POST", &format!("{PODS}/{pod}/binding"), Some(body)).await
}

#[tokio::test]
async fn binding_a_pod_sets_its_node_and_answers_a_success_status() {
    let app = server().await;
    create_pod(&app, "web").await;
    let mut body = binding("web", "node-1");
    body["metadata"]["annotations"] = json!({"scheduled-by": "keel"});
    let bound = bind(&app, "web", body).await;
    assert_eq!(bound.status, StatusCode::CREATED, "{}", bound.body);
    assert_eq!(
        bound.body,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201})
    );
    let pod = send(&app, "GET", &format!("{PODS}/web"), None).await.body;
    assert_eq!(pod["spec"]["nodeName"], "node-1");
    assert_eq!(pod["metadata"]["annotations"]["scheduled-by"], "keel");
    assert_eq!(pod["status"]["conditions"][0]["type"], "PodScheduled");
    assert_eq!(pod["status"]["conditions"][0]["status"], "True");
}

#[tokio::test]
async fn a_bound_pod_cannot_be_bound_again() {
    let app = server().await;
    create_pod(&app, "web").await;
    assert_eq!(
        bind(&app, "web", binding("web", "node-1")).await.status,
        StatusCode::CREATED
    );
    let again = bind(&app, "web", binding("web", "node-2")).await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert_eq!(again.body["reason"], "Conflict");
    assert_eq!(
        again.body["message"],
        "Operation cannot be fulfilled on pods/binding \"web\": pod web is already assigned to node \"node-1\""
    );
    assert_eq!(
        again.body["details"],
        json!({"name": "web", "kind": "pods/binding"})
    );
    let pod = send(&app, "GET", &format!("{PODS}/web"), None).await.body;
    assert_eq!(pod["spec"]["nodeName"], "node-1", "the first bind stands");
}

#[tokio::test]
async fn the_bindings_collection_binds_the_pod_its_binding_names() {
    let app = server().await;
    create_pod(&app, "web").await;
    let bound = send(
        &app,
        "POST",
        "/api/v1/namespaces/default/bindings",
        Some(binding("web", "node-3")),
    )
    .await;
    assert_eq!(bound.status, StatusCode::CREATED, "{}", bound.body);
    let pod = send(&app, "GET", &format!("{PODS}/web"), None).await.body;
    assert_eq!(pod["spec"]["nodeName"], "node-3");
}

#[tokio::test]
async fn bindings_are_refused_as_kubernetes_refuses_them() {
    let app = server().await;
    let created = create_pod(&app, "web").await;

    let missing = bind(&app, "ghost", binding("ghost", "node-1")).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.body["message"], "pods \"ghost\" not found");

    let no_node = bind(&app, "web", binding("web", "")).await;
    assert_eq!(no_node.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(no_node.body["details"]["causes"][0]["field"], "target.name");

    let mut not_a_node = binding("web", "node-1");
    not_a_node["target"]["kind"] = json!("Pod");
    let wrong_kind = bind(&app, "web", not_a_node).await;
    assert_eq!(wrong_kind.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        wrong_kind.body["details"]["causes"][0]["field"],
        "target.kind"
    );

    let other_name = bind(&app, "web", binding("other", "node-1")).await;
    assert_eq!(other_name.status, StatusCode::BAD_REQUEST);

    let mut stale = binding("web", "node-1");
    stale["metadata"]["uid"] = json!("not-the-pods-uid");
    let refused = bind(&app, "web", stale).await;
    assert_eq!(refused.status, StatusCode::CONFLICT);
    assert_eq!(
        refused.body["message"],
        format!(
            "Operation cannot be fulfilled on pods \"web\": Precondition failed: UID in precondition: not-the-pods-uid, UID in object meta: {}",
            created["metadata"]["uid"].as_str().unwrap_or_default()
        )
    );

    // A binding is only ever created.
    for method in ["GET", "PUT", "DELETE"] {
        let reply = send(&app, method, &format!("{PODS}/web/binding"), None).await;
        assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED, "{method}");
    }
    let pod = send(&app, "GET", &format!("{PODS}/web"), None).await.body;
    assert!(pod["spec"].get("nodeName").is_none(), "{pod}");
}

#[tokio::test]
async fn a_binding_with_the_pods_uid_and_version_binds_it() {
    let app = server().await;
    let created = create_pod(&app, "web").await;
    let mut exact = binding("web", "node-1");
    exact["metadata"]["uid"] = created["metadata"]["uid"].clone();
    exact["metadata"]["resourceVersion"] = created["metadata"]["resourceVersion"].clone();
    let bound = bind(&app, "web", exact).await;
    assert_eq!(bound.status, StatusCode::CREATED, "{}", bound.body);
}

#[tokio::test]
async fn a_pod_being_deleted_is_not_bound() {
    let app = server().await;
    let mut p = pod("web");
    p["metadata"]["finalizers"] = json!(["example.com/hold"]);
    send(&app, "POST", PODS, Some(p)).await;
    let deleted = send(&app, "DELETE", &format!("{PODS}/web"), None).await;
    assert_eq!(deleted.status, StatusCode::OK, "{}", deleted.body);
    let refused = bind(&app, "web", binding("web", "node-1")).await;
    assert_eq!(refused.status, StatusCode::CONFLICT);
    assert_eq!(
        refused.body["message"],
        "Operation cannot be fulfilled on pods/binding \"web\": pod web is being deleted, cannot be assigned to a host"
    );
}

#[tokio::test]
async fn a_dry_run_binding_changes_nothing() {
    let app = server().await;
    create_pod(&app, "web").await;
    let dry = send(
        &app,
        "POST",
        &format!("{PODS}/web/binding?dryRun=All"),
        Some(binding("web", "node-1")),
    )
    .await;
    assert_eq!(dry.status, StatusCode::CREATED);
    let pod = send(&app, "GET", &format!("{PODS}/web"), None).await.body;
    assert!(pod["spec"].get("nodeName").is_none(), "{pod}");
}

async fn as_user(app: &Router, token: &str, uri: &str, body: &Value) -> Reply {
    let req = Request::post(uri)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::from(body.to_string()))
        .expect("request");
    call(app, req).await
}

#[tokio::test]
async fn only_those_granted_pods_binding_may_bind() {
    let tokens = TokenFile::parse(
        "admin,admin,1,system:masters\nscheduler,system:kube-scheduler,2\nalice,alice,3",
    )
    .expect("tokens");
    let auth = AuthConfig {
        authenticator: Authenticator::new(tokens, false),
        mode: AuthorizationMode::RBAC,
        ..Default::default()
    };
    let core = Arc::new(ApiServer::new(MemoryStorage::new()).with_auth(auth));
    crate::bootstrap::ensure_namespaces(&core).await;
    crate::bootstrap::ensure_rbac(&core).await;
    let app = router(core);
    let created = as_user(&app, "admin", PODS, &pod("web")).await;
    assert_eq!(created.status, StatusCode::CREATED);

    let uri = format!("{PODS}/web/binding");
    let alice = as_user(&app, "alice", &uri, &binding("web", "node-1")).await;
    assert_eq!(alice.status, StatusCode::FORBIDDEN);
    assert_eq!(
        alice.body["message"],
        "pods \"web\" is forbidden: User \"alice\" cannot create resource \"pods/binding\" in API group \"\" in the namespace \"default\""
    );
    let scheduler = as_user(&app, "scheduler", &uri, &binding("web", "node-1")).await;
    assert_eq!(scheduler.status, StatusCode::CREATED, "{}", scheduler.body);
}

/// A server whose Lease `kube-system/scheduler` is held by `holder`.
async fn server_with_lease(holder: &str) -> ApiServer<MemoryStorage> {
    let core = ApiServer::new(MemoryStorage::new());
    crate::bootstrap::ensure_namespaces(&core).await;
    let lease = keel_types::kinds::by_kind("coordination.k8s.io/v1", "Lease").expect("leases");
    core.create(
        lease,
        Some("kube-system"),
        json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": "scheduler"},
            "spec": {"holderIdentity": holder, "leaseTransitions": 1}}),
        &WriteOptions::default(),
    )
    .await
    .expect("lease");
    let pods = keel_types::kinds::by_kind("v1", "Pod").expect("pods");
    core.create(pods, Some("default"), pod("web"), &WriteOptions::default())
        .await
        .expect("pod");
    core
}

fn fenced(holder: &str) -> WriteOptions {
    WriteOptions {
        fence: Some(Fence {
            lease_namespace: "kube-system".into(),
            lease_name: "scheduler".into(),
            holder: holder.into(),
            transitions: 1,
        }),
        ..WriteOptions::default()
    }
}

#[tokio::test]
async fn a_scheduler_that_lost_its_lease_cannot_bind() {
    let core = server_with_lease("scheduler-b").await;
    let refused = core
        .bind(
            "default",
            Some("web"),
            binding("web", "node-1"),
            &fenced("scheduler-a"),
        )
        .await;
    assert_eq!(
        refused,
        Err(ApiError::FenceLost {
            lease: "kube-system/scheduler".into()
        })
    );
    let pods = keel_types::kinds::by_kind("v1", "Pod").expect("pods");
    let pod = core.get(pods, Some("default"), "web").await.expect("pod");
    assert!(pod["spec"].get("nodeName").is_none(), "{pod}");

    let bound = core
        .bind(
            "default",
            Some("web"),
            binding("web", "node-1"),
            &fenced("scheduler-b"),
        )
        .await;
    assert!(bound.is_ok(), "{bound:?}");
    let pod = core.get(pods, Some("default"), "web").await.expect("pod");
    assert_eq!(pod["spec"]["nodeName"], "node-1");
}
