//! Aggregated discovery over HTTP as client-go asks for it: which requests get it, its
//! content type and caching headers, and that it lists exactly what the legacy resource
//! lists do, resource by resource.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use serde_json::{json, Value};

use super::tests::{call, get_as, send, server, Reply};

/// What kubectl 1.32 sends to `/api` and `/apis`.
const KUBECTL: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
const V2: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";
const V2BETA1: &str = "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList";

fn items(reply: &Reply) -> &Vec<Value> {
    reply.body["items"].as_array().expect("items")
}

/// The legacy APIResourceList of `group_version`, as served at its own path.
async fn legacy_list(app: &Router, group_version: &str) -> Vec<Value> {
    let path = if group_version == "v1" {
        "/api/v1".to_string()
    } else {
        format!("/apis/{group_version}")
    };
    let reply = send(app, "GET", &path, None).await;
    assert_eq!(reply.status, StatusCode::OK, "{path}");
    reply.body["resources"]
        .as_array()
        .expect("resources")
        .clone()
}

/// Checks that `version` (an APIVersionDiscovery) holds every entry of the legacy list of
/// `group_version`, with the same scope, verbs, names, categories and kind, and nothing else.
fn assert_matches_legacy(group_version: &str, version: &Value, legacy: &[Value]) {
    let resources = version["resources"].as_array().expect("resources");
    let top_level = legacy
        .iter()
        .filter(|r| !r["name"].as_str().unwrap_or_default().contains('/'));
    assert_eq!(
        resources.len(),
        top_level.clone().count(),
        "{group_version}: {resources:?}"
    );
    for entry in legacy {
        let name = entry["name"].as_str().expect("name");
        let scope = if entry["namespaced"] == true {
            "Namespaced"
        } else {
            "Cluster"
        };
        let (parent, sub) = match name.split_once('/') {
            Some((parent, sub)) => (parent, Some(sub)),
            None => (name, None),
        };
        let resource = resources
            .iter()
            .find(|r| r["resource"] == parent)
            .unwrap_or_else(|| panic!("{group_version}: {parent} missing"));
        assert_eq!(resource["scope"], scope, "{group_version} {name}");
        let kind = json!({
            "group": entry.get("group").cloned().unwrap_or(json!("")),
            "version": entry.get("version").cloned().unwrap_or(json!("")),
            "kind": entry["kind"],
        });
        match sub {
            None => {
                assert_eq!(resource["responseKind"], kind, "{group_version} {name}");
                assert_eq!(resource["singularResource"], entry["singularName"]);
                assert_eq!(resource["verbs"], entry["verbs"], "{group_version} {name}");
                for field in ["shortNames", "categories"] {
                    assert_eq!(
                        resource.get(field),
                        entry.get(field),
                        "{group_version} {name} {field}"
                    );
                }
            }
            Some(sub) => {
                let found = resource["subresources"]
                    .as_array()
                    .and_then(|subs| subs.iter().find(|s| s["subresource"] == sub))
                    .unwrap_or_else(|| panic!("{group_version}: {name} missing"));
                assert_eq!(found["responseKind"], kind, "{group_version} {name}");
                assert_eq!(found["verbs"], entry["verbs"], "{group_version} {name}");
            }
        }
    }
}

#[tokio::test]
async fn kubectls_request_to_api_gets_the_core_group_aggregated() {
    let app = server().await;
    let reply = get_as(&app, "/api", KUBECTL).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.headers[header::CONTENT_TYPE], V2);
    assert_eq!(reply.headers[header::VARY], "Accept");
    assert_eq!(reply.body["kind"], "APIGroupDiscoveryList");
    assert_eq!(reply.body["apiVersion"], "apidiscovery.k8s.io/v2");
    assert_eq!(reply.body["metadata"], json!({}));

    let items = items(&reply);
    assert_eq!(items.len(), 1, "only the core group");
    assert!(
        items[0]["metadata"].get("name").is_none(),
        "the core group's name is empty: {}",
        items[0]
    );
    let versions = items[0]["versions"].as_array().expect("versions");
    assert_eq!(versions.len(), 1);
    assert_eq!(versions[0]["version"], "v1");
    assert_eq!(versions[0]["freshness"], "Current");

    let pods = versions[0]["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .find(|r| r["resource"] == "pods")
        .expect("pods");
    assert_eq!(
        pods,
        &json!({
            "resource": "pods",
            "responseKind": {"group": "", "version": "", "kind": "Pod"},
            "scope": "Namespaced",
            "singularResource": "pod",
            "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
            "shortNames": ["po"],
            "categories": ["all"],
            "subresources": [{
                "subresource": "attach",
                "responseKind": {"group": "", "version": "", "kind": "PodAttachOptions"},
                "verbs": ["create", "get"],
            }, {
                "subresource": "binding",
                "responseKind": {"group": "", "version": "", "kind": "Binding"},
                "verbs": ["create"],
            }, {
                "subresource": "eviction",
                "responseKind": {"group": "policy", "version": "v1", "kind": "Eviction"},
                "verbs": ["create"],
            }, {
                "subresource": "exec",
                "responseKind": {"group": "", "version": "", "kind": "PodExecOptions"},
                "verbs": ["create", "get"],
            }, {
                "subresource": "log",
                "responseKind": {"group": "", "version": "", "kind": "Pod"},
                "verbs": ["get"],
            }, {
                "subresource": "portforward",
                "responseKind": {"group": "", "version": "", "kind": "PodPortForwardOptions"},
                "verbs": ["create", "get"],
            }, {
                "subresource": "status",
                "responseKind": {"group": "", "version": "", "kind": "Pod"},
                "verbs": ["get", "patch", "update"],
            }],
        })
    );
    let bindings = versions[0]["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .find(|r| r["resource"] == "bindings")
        .expect("bindings");
    assert_eq!(
        bindings,
        &json!({
            "resource": "bindings",
            "responseKind": {"group": "", "version": "", "kind": "Binding"},
            "scope": "Namespaced",
            "singularResource": "binding",
            "verbs": ["create"],
        })
    );
    let legacy = legacy_list(&app, "v1").await;
    assert_matches_legacy("v1", &versions[0], &legacy);
}

#[tokio::test]
async fn kubectls_request_to_apis_gets_every_other_group_aggregated() {
    let app = server().await;
    let reply = get_as(&app, "/apis", KUBECTL).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.headers[header::CONTENT_TYPE], V2);
    assert_eq!(reply.headers[header::VARY], "Accept");
    assert_eq!(reply.body["kind"], "APIGroupDiscoveryList");
    assert_eq!(reply.body["apiVersion"], "apidiscovery.k8s.io/v2");

    // The same groups, in the same order, as the legacy APIGroupList.
    let legacy_groups = send(&app, "GET", "/apis", None).await;
    let legacy_names: Vec<&Value> = legacy_groups.body["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .map(|g| &g["name"])
        .collect();
    let names: Vec<&Value> = items(&reply)
        .iter()
        .map(|i| &i["metadata"]["name"])
        .collect();
    assert_eq!(names, legacy_names);
    assert!(names.contains(&&json!("apps")) && names.contains(&&json!("authorization.k8s.io")));

    for item in items(&reply) {
        let group = item["metadata"]["name"].as_str().expect("group name");
        let versions = item["versions"].as_array().expect("versions");
        let preferred = legacy_groups.body["groups"]
            .as_array()
            .and_then(|gs| gs.iter().find(|g| g["name"] == group))
            .map(|g| g["preferredVersion"]["version"].clone());
        assert_eq!(Some(versions[0]["version"].clone()), preferred, "{group}");
        for version in versions {
            assert_eq!(version["freshness"], "Current");
            let group_version = format!("{group}/{}", version["version"].as_str().unwrap_or(""));
            let legacy = legacy_list(&app, &group_version).await;
            assert_matches_legacy(&group_version, version, &legacy);
        }
    }

    let apps = items(&reply)
        .iter()
        .find(|i| i["metadata"]["name"] == "apps")
        .expect("apps");
    let deployments = apps["versions"][0]["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .find(|r| r["resource"] == "deployments")
        .expect("deployments");
    assert_eq!(deployments["shortNames"], json!(["deploy"]));
    assert_eq!(deployments["scope"], "Namespaced");
    let scale = deployments["subresources"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["subresource"] == "scale"))
        .expect("scale");
    assert_eq!(
        scale["responseKind"],
        json!({"group": "autoscaling", "version": "v1", "kind": "Scale"})
    );

    let authorization = items(&reply)
        .iter()
        .find(|i| i["metadata"]["name"] == "authorization.k8s.io")
        .expect("authorization.k8s.io");
    assert_eq!(
        authorization["versions"][0]["resources"],
        json!([{
            "resource": "selfsubjectaccessreviews",
            "responseKind": {"group": "", "version": "", "kind": "SelfSubjectAccessReview"},
            "scope": "Cluster",
            "singularResource": "selfsubjectaccessreview",
            "verbs": ["create"],
        }])
    );
}

#[tokio::test]
async fn a_client_asking_only_for_v2beta1_gets_v2beta1() {
    let app = server().await;
    for path in ["/api", "/apis"] {
        let reply = get_as(&app, path, &format!("{V2BETA1},application/json")).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}");
        assert_eq!(reply.headers[header::CONTENT_TYPE], V2BETA1, "{path}");
        assert_eq!(reply.body["apiVersion"], "apidiscovery.k8s.io/v2beta1");
        assert_eq!(reply.body["kind"], "APIGroupDiscoveryList");
        assert!(!items(&reply).is_empty(), "{path}");
    }
}

#[tokio::test]
async fn a_client_that_only_accepts_json_gets_the_legacy_documents() {
    let app = server().await;
    for (path, kind) in [("/api", "APIVersions"), ("/apis", "APIGroupList")] {
        for accept in ["application/json", "application/json, */*", ""] {
            let reply = get_as(&app, path, accept).await;
            assert_eq!(reply.status, StatusCode::OK, "{path} {accept}");
            assert_eq!(
                reply.headers[header::CONTENT_TYPE],
                "application/json",
                "{path} {accept}"
            );
            assert_eq!(reply.body["kind"], kind, "{path} {accept}");
        }
        let plain = send(&app, "GET", path, None).await;
        assert_eq!(plain.body["kind"], kind, "{path} without Accept");
    }
}

#[tokio::test]
async fn a_current_entity_tag_gets_not_modified() {
    let app = server().await;
    let first = get_as(&app, "/apis", KUBECTL).await;
    let etag = first.headers[header::ETAG].clone();
    assert!(etag.to_str().is_ok_and(|t| t.starts_with('"')), "{etag:?}");
    assert_eq!(first.headers[header::CACHE_CONTROL], "public");

    let revalidate = |tag: &str| {
        Request::get("/apis")
            .header(header::ACCEPT, KUBECTL)
            .header(header::IF_NONE_MATCH, tag)
            .body(Body::empty())
            .expect("request")
    };
    let cached = call(&app, revalidate(etag.to_str().unwrap_or_default())).await;
    assert_eq!(cached.status, StatusCode::NOT_MODIFIED);
    assert_eq!(cached.body, json!(""));
    assert_eq!(cached.headers[header::ETAG], etag);

    let stale = call(&app, revalidate("\"0\"")).await;
    assert_eq!(stale.status, StatusCode::OK);
    assert_eq!(stale.body["kind"], "APIGroupDiscoveryList");

    // `/api` is a different document with a different tag.
    let core = get_as(&app, "/api", KUBECTL).await;
    assert_ne!(core.headers[header::ETAG], etag);
}
