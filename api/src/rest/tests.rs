//! The REST API as kubectl sees it, end to end over an in-memory store: discovery, the verbs
//! with their status codes and bodies, errors as Status objects, scale, authorization and
//! access reviews. The shared helpers live here; streamed and rendered output is in
//! `output_tests`, aggregated discovery in `aggregated_tests`.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, HeaderMap, Request, StatusCode};
use axum::Router;
use serde_json::{json, Value};
use tower::ServiceExt;

use super::router;
use crate::auth::authn::{Authenticator, TokenFile};
use crate::auth::{AuthConfig, AuthorizationMode};
use crate::server::ApiServer;
use crate::storage::memory::MemoryStorage;

pub(super) const TABLE: &str = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";

pub(super) struct Reply {
    pub(super) status: StatusCode,
    pub(super) headers: HeaderMap,
    pub(super) body: Value,
}

/// A server with the system namespaces, everyone allowed everything.
pub(super) async fn server() -> Router {
    let core = Arc::new(ApiServer::new(MemoryStorage::new()));
    crate::bootstrap::ensure_namespaces(&core).await;
    router(core)
}

/// A server with RBAC and its bootstrap policy: token "admin" is in system:masters, token
/// "alice" is only authenticated.
async fn rbac_server() -> Router {
    let tokens = TokenFile::parse("admin,admin,1,system:masters\nalice,alice,2").expect("tokens");
    let auth = AuthConfig {
        authenticator: Authenticator::new(tokens, false),
        mode: AuthorizationMode::RBAC,
        ..Default::default()
    };
    let core = Arc::new(ApiServer::new(MemoryStorage::new()).with_auth(auth));
    crate::bootstrap::ensure_namespaces(&core).await;
    crate::bootstrap::ensure_rbac(&core).await;
    router(core)
}

pub(super) async fn call(app: &Router, request: Request<Body>) -> Reply {
    let response = app.clone().oneshot(request).await.expect("infallible");
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("body");
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    Reply {
        status,
        headers,
        body,
    }
}

fn request(method: &str, uri: &str, body: Option<&Value>) -> axum::http::request::Builder {
    let builder = Request::builder().method(method).uri(uri);
    match body {
        Some(_) => builder.header(header::CONTENT_TYPE, "application/json"),
        None => builder,
    }
}

pub(super) async fn send(app: &Router, method: &str, uri: &str, body: Option<Value>) -> Reply {
    let req = request(method, uri, body.as_ref())
        .body(body.map_or(Body::empty(), |b| Body::from(b.to_string())))
        .expect("request");
    call(app, req).await
}

pub(super) async fn get_as(app: &Router, uri: &str, accept: &str) -> Reply {
    let req = Request::get(uri)
        .header(header::ACCEPT, accept)
        .body(Body::empty())
        .expect("request");
    call(app, req).await
}

pub(super) async fn patch(app: &Router, uri: &str, content_type: &str, body: Value) -> Reply {
    let req = Request::patch(uri)
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from(body.to_string()))
        .expect("request");
    call(app, req).await
}

async fn as_user(app: &Router, token: &str, method: &str, uri: &str, body: Option<Value>) -> Reply {
    let req = request(method, uri, body.as_ref())
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(body.map_or(Body::empty(), |b| Body::from(b.to_string())))
        .expect("request");
    call(app, req).await
}

pub(super) fn pod(name: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]}
    })
}

pub(super) fn deployment(name: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}
            }
        }
    })
}

#[tokio::test]
async fn version_and_group_discovery_have_kubernetes_shapes() {
    let app = server().await;
    let version = send(&app, "GET", "/version", None).await;
    assert_eq!(version.status, StatusCode::OK);
    assert_eq!(version.body["major"], "1");
    assert_eq!(version.body["minor"], "32");
    assert_eq!(version.body["gitVersion"], "v1.32.0-keel");

    let api = send(&app, "GET", "/api", None).await;
    assert_eq!(api.body["kind"], "APIVersions");
    assert_eq!(api.body["versions"], json!(["v1"]));
    assert_eq!(
        api.body["serverAddressByClientCIDRs"][0]["clientCIDR"],
        "0.0.0.0/0"
    );

    let apis = send(&app, "GET", "/apis", None).await;
    assert_eq!(apis.body["kind"], "APIGroupList");
    let groups = apis.body["groups"].as_array().expect("groups");
    let apps = groups
        .iter()
        .find(|g| g["name"] == "apps")
        .expect("apps group");
    assert_eq!(
        apps["preferredVersion"],
        json!({"groupVersion": "apps/v1", "version": "v1"})
    );
    assert!(groups.iter().all(|g| g["name"] != ""), "no core group");
    assert!(groups.iter().any(|g| g["name"] == "authorization.k8s.io"));

    let group = send(&app, "GET", "/apis/batch", None).await;
    assert_eq!(group.body["kind"], "APIGroup");
    assert_eq!(group.body["versions"][0]["groupVersion"], "batch/v1");
}

#[tokio::test]
async fn resource_lists_name_verbs_short_names_and_subresources() {
    let app = server().await;
    let core = send(&app, "GET", "/api/v1", None).await;
    assert_eq!(core.body["kind"], "APIResourceList");
    assert_eq!(core.body["groupVersion"], "v1");
    let resources = core.body["resources"].as_array().expect("resources");
    let pods = resources
        .iter()
        .find(|r| r["name"] == "pods")
        .expect("pods");
    assert_eq!(pods["singularName"], "pod");
    assert_eq!(pods["namespaced"], true);
    assert_eq!(pods["kind"], "Pod");
    assert_eq!(pods["shortNames"], json!(["po"]));
    assert_eq!(pods["categories"], json!(["all"]));
    assert_eq!(
        pods["verbs"],
        json!([
            "create",
            "delete",
            "deletecollection",
            "get",
            "list",
            "patch",
            "update",
            "watch"
        ])
    );
    let status = resources
        .iter()
        .find(|r| r["name"] == "pods/status")
        .expect("pods/status");
    assert_eq!(status["verbs"], json!(["get", "patch", "update"]));
    // Bindings are only created: a pod's subresource, and the older collection.
    let binding = resources
        .iter()
        .find(|r| r["name"] == "pods/binding")
        .expect("pods/binding");
    assert_eq!(binding["kind"], "Binding");
    assert_eq!(binding["verbs"], json!(["create"]));
    let bindings = resources
        .iter()
        .find(|r| r["name"] == "bindings")
        .expect("bindings");
    assert_eq!(bindings["singularName"], "binding");
    assert_eq!(bindings["namespaced"], true);
    assert_eq!(bindings["verbs"], json!(["create"]));
    let nodes = resources
        .iter()
        .find(|r| r["name"] == "nodes")
        .expect("nodes");
    assert_eq!(nodes["namespaced"], false);

    let apps = send(&app, "GET", "/apis/apps/v1", None).await;
    let scale = apps.body["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .find(|r| r["name"] == "deployments/scale")
        .cloned()
        .expect("deployments/scale");
    assert_eq!(scale["kind"], "Scale");
    assert_eq!(scale["group"], "autoscaling");
    assert_eq!(scale["version"], "v1");

    let unknown = send(&app, "GET", "/apis/widgets.example.com/v1", None).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(unknown.body["kind"], "Status");
}

#[tokio::test]
async fn health_checks_answer_ok() {
    let app = server().await;
    for path in ["/healthz", "/livez", "/readyz"] {
        let reply = send(&app, "GET", path, None).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}");
        assert_eq!(reply.body, json!("ok"), "{path}");
    }
}

#[tokio::test]
async fn objects_go_through_create_get_list_update_patch_and_delete() {
    let app = server().await;
    let base = "/api/v1/namespaces/default/pods";

    let created = send(&app, "POST", base, Some(pod("web"))).await;
    assert_eq!(created.status, StatusCode::CREATED);
    assert_eq!(created.body["metadata"]["namespace"], "default");
    assert!(created.body["metadata"]["uid"]
        .as_str()
        .is_some_and(|u| !u.is_empty()));
    let rv = created.body["metadata"]["resourceVersion"]
        .as_str()
        .expect("resourceVersion")
        .to_string();

    let got = send(&app, "GET", &format!("{base}/web"), None).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.body["metadata"]["uid"], created.body["metadata"]["uid"]);

    let list = send(
        &app,
        "GET",
        &format!("{base}?labelSelector=app%3Dweb"),
        None,
    )
    .await;
    assert_eq!(list.status, StatusCode::OK);
    assert_eq!(list.body["kind"], "PodList");
    assert_eq!(list.body["items"].as_array().map(Vec::len), Some(1));
    let across = send(&app, "GET", "/api/v1/pods?labelSelector=app%3Dother", None).await;
    assert_eq!(across.body["items"], json!([]));

    let mut changed = got.body.clone();
    changed["metadata"]["labels"]["tier"] = json!("front");
    let updated = send(&app, "PUT", &format!("{base}/web"), Some(changed)).await;
    assert_eq!(updated.status, StatusCode::OK);
    assert_eq!(updated.body["metadata"]["labels"]["tier"], "front");
    assert_ne!(updated.body["metadata"]["resourceVersion"], json!(rv));

    let merged = patch(
        &app,
        &format!("{base}/web"),
        "application/merge-patch+json",
        json!({"metadata": {"labels": {"tier": null, "env": "prod"}}}),
    )
    .await;
    assert_eq!(merged.status, StatusCode::OK);
    assert_eq!(
        merged.body["metadata"]["labels"],
        json!({"app": "web", "env": "prod"})
    );

    let json_patched = patch(
        &app,
        &format!("{base}/web"),
        "application/json-patch+json",
        json!([{"op": "replace", "path": "/metadata/labels/env", "value": "dev"}]),
    )
    .await;
    assert_eq!(json_patched.status, StatusCode::OK);
    assert_eq!(json_patched.body["metadata"]["labels"]["env"], "dev");

    let strategic = patch(
        &app,
        &format!("{base}/web"),
        "application/strategic-merge-patch+json",
        json!({"spec": {"containers": [{"name": "app", "image": "nginx:1.28"}]}}),
    )
    .await;
    assert_eq!(strategic.status, StatusCode::OK);
    assert_eq!(
        strategic.body["spec"]["containers"][0]["image"],
        "nginx:1.28"
    );
    assert_eq!(
        strategic.body["spec"]["containers"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );

    let deleted = send(&app, "DELETE", &format!("{base}/web"), None).await;
    assert_eq!(deleted.status, StatusCode::OK);
    assert_eq!(deleted.body["metadata"]["name"], "web");

    let gone = send(&app, "GET", &format!("{base}/web"), None).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    assert_eq!(
        gone.body,
        json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "message": "pods \"web\" not found",
            "reason": "NotFound", "details": {"name": "web", "kind": "pods"}, "code": 404
        })
    );
}

#[tokio::test]
async fn conflicts_and_invalid_objects_are_status_errors() {
    let app = server().await;
    let base = "/api/v1/namespaces/default/pods";
    send(&app, "POST", base, Some(pod("web"))).await;

    let again = send(&app, "POST", base, Some(pod("web"))).await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert_eq!(again.body["reason"], "AlreadyExists");
    assert_eq!(again.body["code"], 409);

    let mut stale = send(&app, "GET", &format!("{base}/web"), None).await.body;
    stale["metadata"]["resourceVersion"] = json!("1");
    let conflict = send(&app, "PUT", &format!("{base}/web"), Some(stale)).await;
    assert_eq!(conflict.status, StatusCode::CONFLICT);
    assert_eq!(conflict.body["reason"], "Conflict");

    let mut invalid = pod("Bad_Name");
    invalid["spec"]["containers"] = json!([]);
    let rejected = send(&app, "POST", base, Some(invalid)).await;
    assert_eq!(rejected.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(rejected.body["reason"], "Invalid");
    assert_eq!(rejected.body["details"]["kind"], "Pod");
    assert!(!rejected.body["details"]["causes"]
        .as_array()
        .expect("causes")
        .is_empty());
}

#[tokio::test]
async fn bodies_in_unknown_formats_or_too_large_are_refused_and_yaml_is_accepted() {
    let app = server().await;
    let base = "/api/v1/namespaces/default/configmaps";
    let yaml = Request::post(base)
        .header(header::CONTENT_TYPE, "application/yaml")
        .body(Body::from(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: from-yaml\ndata:\n  n: \"1\"\n",
        ))
        .expect("request");
    let created = call(&app, yaml).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(created.body["data"]["n"], "1");
    let broken = Request::post(base)
        .header(header::CONTENT_TYPE, "application/yaml")
        .body(Body::from("kind: [unclosed"))
        .expect("request");
    assert_eq!(call(&app, broken).await.status, StatusCode::BAD_REQUEST);
    let xml = Request::post(base)
        .header(header::CONTENT_TYPE, "application/xml")
        .body(Body::from("<ConfigMap/>"))
        .expect("request");
    assert_eq!(
        call(&app, xml).await.status,
        StatusCode::UNSUPPORTED_MEDIA_TYPE
    );

    let huge = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "big"},
        "data": {"blob": "x".repeat(super::MAX_BODY_BYTES)}});
    let too_large = send(&app, "POST", base, Some(huge)).await;
    assert_eq!(too_large.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(too_large.body["reason"], "RequestEntityTooLarge");

    let apply = patch(
        &app,
        &format!("{base}/any"),
        "application/apply-patch+yaml",
        json!({}),
    )
    .await;
    assert_eq!(apply.status, StatusCode::BAD_REQUEST, "no fieldManager");
    assert_eq!(
        apply.body["message"],
        "PATCH, application/apply-patch+yaml requires fieldManager"
    );
}

#[tokio::test]
async fn dry_run_creates_nothing_and_warnings_become_headers() {
    let app = server().await;
    let base = "/api/v1/namespaces/default/configmaps";
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"},
        "data": {"k": "v"}, "surprise": 1});
    let dry = send(
        &app,
        "POST",
        &format!("{base}?dryRun=All"),
        Some(cm.clone()),
    )
    .await;
    assert_eq!(dry.status, StatusCode::CREATED);
    let warning = dry.headers["warning"].to_str().expect("ascii");
    assert!(warning.starts_with("299 - \""), "{warning}");
    assert!(warning.contains("surprise"), "{warning}");
    assert_eq!(
        send(&app, "GET", &format!("{base}/c"), None).await.status,
        StatusCode::NOT_FOUND
    );

    let strict = send(
        &app,
        "POST",
        &format!("{base}?fieldValidation=Strict"),
        Some(cm),
    )
    .await;
    assert_eq!(strict.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn delete_collection_removes_what_the_selector_matches() {
    let app = server().await;
    let base = "/api/v1/namespaces/default/pods";
    send(&app, "POST", base, Some(pod("a"))).await;
    let mut other = pod("b");
    other["metadata"]["labels"] = json!({"app": "db"});
    send(&app, "POST", base, Some(other)).await;

    let deleted = send(
        &app,
        "DELETE",
        &format!("{base}?labelSelector=app%3Dweb"),
        None,
    )
    .await;
    assert_eq!(deleted.status, StatusCode::OK);
    assert_eq!(deleted.body["kind"], "PodList");
    assert_eq!(deleted.body["items"][0]["metadata"]["name"], "a");
    let left = send(&app, "GET", base, None).await;
    let names: Vec<&Value> = left.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| &i["metadata"]["name"])
        .collect();
    assert_eq!(names, [&json!("b")]);
}

#[tokio::test]
async fn the_scale_subresource_reads_and_sets_replicas() {
    let app = server().await;
    let base = "/apis/apps/v1/namespaces/default/deployments";
    send(&app, "POST", base, Some(deployment("web"))).await;

    let scale = send(&app, "GET", &format!("{base}/web/scale"), None).await;
    assert_eq!(scale.status, StatusCode::OK);
    assert_eq!(scale.body["kind"], "Scale");
    assert_eq!(scale.body["apiVersion"], "autoscaling/v1");
    assert_eq!(scale.body["spec"]["replicas"], 3);
    assert_eq!(scale.body["status"]["selector"], "app=web");

    let scaled = patch(
        &app,
        &format!("{base}/web/scale"),
        "application/merge-patch+json",
        json!({"spec": {"replicas": 5}}),
    )
    .await;
    assert_eq!(scaled.status, StatusCode::OK);
    assert_eq!(scaled.body["spec"]["replicas"], 5);
    let deploy = send(&app, "GET", &format!("{base}/web"), None).await;
    assert_eq!(deploy.body["spec"]["replicas"], 5);
}

#[tokio::test]
async fn self_subject_access_reviews_answer_for_the_caller() {
    let app = rbac_server().await;
    let review = |attrs: Value| {
        json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
            "spec": attrs})
    };
    let path = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews";
    let list_pods = review(json!({"resourceAttributes":
        {"namespace": "default", "verb": "list", "resource": "pods"}}));

    let alice = as_user(&app, "alice", "POST", path, Some(list_pods.clone())).await;
    assert_eq!(alice.status, StatusCode::CREATED);
    assert_eq!(alice.body["status"]["allowed"], false);
    assert_eq!(alice.body["spec"], list_pods["spec"]);

    let admin = as_user(&app, "admin", "POST", path, Some(list_pods)).await;
    assert_eq!(admin.body["status"]["allowed"], true);

    let version = review(json!({"nonResourceAttributes": {"path": "/version", "verb": "get"}}));
    let alice_version = as_user(&app, "alice", "POST", path, Some(version)).await;
    assert_eq!(alice_version.body["status"]["allowed"], true);
}

#[tokio::test]
async fn requests_are_authenticated_and_authorized_with_kubernetes_verbs() {
    let app = rbac_server().await;
    let anonymous = send(&app, "GET", "/api/v1/namespaces/default/pods", None).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);

    let denied = as_user(
        &app,
        "alice",
        "GET",
        "/api/v1/namespaces/default/pods",
        None,
    )
    .await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    assert_eq!(
        denied.body["message"],
        "pods is forbidden: User \"alice\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\""
    );
    let watch = as_user(
        &app,
        "alice",
        "GET",
        "/api/v1/namespaces/default/pods?watch=true",
        None,
    )
    .await;
    assert!(watch.body["message"]
        .as_str()
        .is_some_and(|m| m.contains("cannot watch resource")));

    let discovery = as_user(&app, "alice", "GET", "/api/v1", None).await;
    assert_eq!(
        discovery.status,
        StatusCode::OK,
        "discovery is public to users"
    );
    let admin = as_user(
        &app,
        "admin",
        "GET",
        "/api/v1/namespaces/default/pods",
        None,
    )
    .await;
    assert_eq!(admin.status, StatusCode::OK);
}

#[tokio::test]
async fn unknown_paths_and_methods_are_404_and_405() {
    let app = server().await;
    let missing = send(&app, "GET", "/api/v1/namespaces/default/widgets", None).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.body["reason"], "NotFound");
    let post_named = send(
        &app,
        "POST",
        "/api/v1/namespaces/default/pods/web",
        Some(pod("web")),
    )
    .await;
    assert_eq!(post_named.status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn rbac_writers_cannot_grant_what_they_do_not_hold() {
    let app = rbac_server().await;
    let rbac = "/apis/rbac.authorization.k8s.io/v1";
    // Alice may write Roles and RoleBindings in default, and read pods there; nothing more.
    let grant = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
    "metadata": {"name": "rbac-writer", "namespace": "default"},
    "rules": [
        {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles", "rolebindings"], "verbs": ["create", "update", "get"]},
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}
    ]});
    let made = as_user(
        &app,
        "admin",
        "POST",
        &format!("{rbac}/namespaces/default/roles"),
        Some(grant),
    )
    .await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
    let binding = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "alice-writes", "namespace": "default"},
        "subjects": [{"kind": "User", "name": "alice", "apiGroup": "rbac.authorization.k8s.io"}],
        "roleRef": {"kind": "Role", "name": "rbac-writer", "apiGroup": "rbac.authorization.k8s.io"}});
    let bound = as_user(
        &app,
        "admin",
        "POST",
        &format!("{rbac}/namespaces/default/rolebindings"),
        Some(binding),
    )
    .await;
    assert_eq!(bound.status, StatusCode::CREATED, "{}", bound.body);

    // Binding herself to cluster-admin is refused, with what she lacks.
    let escalate = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "alice-admin", "namespace": "default"},
        "subjects": [{"kind": "User", "name": "alice", "apiGroup": "rbac.authorization.k8s.io"}],
        "roleRef": {"kind": "ClusterRole", "name": "cluster-admin", "apiGroup": "rbac.authorization.k8s.io"}});
    let refused = as_user(
        &app,
        "alice",
        "POST",
        &format!("{rbac}/namespaces/default/rolebindings"),
        Some(escalate),
    )
    .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    let message = refused.body["message"].as_str().unwrap_or("");
    assert!(
        message.starts_with("rolebindings.rbac.authorization.k8s.io \"alice-admin\" is forbidden: user \"alice\" (groups=[\"system:authenticated\"]) is attempting to grant RBAC permissions not currently held:\n"),
        "{message}"
    );
    // Binding to the aggregated `view` role is refused too: its rules are the aggregated ones.
    let view = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "alice-view", "namespace": "default"},
        "subjects": [{"kind": "User", "name": "alice", "apiGroup": "rbac.authorization.k8s.io"}],
        "roleRef": {"kind": "ClusterRole", "name": "view", "apiGroup": "rbac.authorization.k8s.io"}});
    let refused = as_user(
        &app,
        "alice",
        "POST",
        &format!("{rbac}/namespaces/default/rolebindings"),
        Some(view.clone()),
    )
    .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);

    // A Role reaching beyond her own rules is refused; one within them is fine.
    let secrets = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": "secret-reader", "namespace": "default"},
        "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]});
    let refused = as_user(
        &app,
        "alice",
        "POST",
        &format!("{rbac}/namespaces/default/roles"),
        Some(secrets),
    )
    .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    assert!(refused.body["message"].as_str().is_some_and(
        |m| m.ends_with("{APIGroups:[\"\"], Resources:[\"secrets\"], Verbs:[\"get\"]}")
    ));
    let pods = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": "pod-reader", "namespace": "default"},
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]});
    let allowed = as_user(
        &app,
        "alice",
        "POST",
        &format!("{rbac}/namespaces/default/roles"),
        Some(pods),
    )
    .await;
    assert_eq!(allowed.status, StatusCode::CREATED, "{}", allowed.body);

    // With `bind` on the `view` ClusterRole she may bind it without holding it.
    let bind = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": "view-binder", "namespace": "default"},
        "rules": [{"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["clusterroles"], "verbs": ["bind"], "resourceNames": ["view"]}]});
    as_user(
        &app,
        "admin",
        "POST",
        &format!("{rbac}/namespaces/default/roles"),
        Some(bind),
    )
    .await;
    let binder = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "alice-binds-view", "namespace": "default"},
        "subjects": [{"kind": "User", "name": "alice", "apiGroup": "rbac.authorization.k8s.io"}],
        "roleRef": {"kind": "Role", "name": "view-binder", "apiGroup": "rbac.authorization.k8s.io"}});
    as_user(
        &app,
        "admin",
        "POST",
        &format!("{rbac}/namespaces/default/rolebindings"),
        Some(binder),
    )
    .await;
    let allowed = as_user(
        &app,
        "alice",
        "POST",
        &format!("{rbac}/namespaces/default/rolebindings"),
        Some(view),
    )
    .await;
    assert_eq!(allowed.status, StatusCode::CREATED, "{}", allowed.body);
}
