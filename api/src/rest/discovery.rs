//! Discovery as kubectl reads it: `/version`, `/api` (APIVersions), `/apis` (APIGroupList),
//! `/apis/{group}` (APIGroup) and the APIResourceLists of each group version, all built from
//! `keel_types::kinds`. The aggregated form (apidiscovery.k8s.io/v2) is not served: a request
//! for it gets the legacy document as `application/json`, and client-go then reads the legacy
//! endpoints. Health checks live here too.

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, Method, Uri};
use axum::response::Response;
use keel_types::ResourceInfo;
use serde_json::{json, Value};

use super::{authorize_path, response, Core};
use crate::auth::{Authenticated, UserInfo};
use crate::error::ApiError;
use crate::storage::Storage;
use axum::Extension;

/// The Kubernetes version keel's API answers as.
pub const MAJOR: &str = "1";
pub const MINOR: &str = "32";
pub const GIT_VERSION: &str = "v1.32.0-keel";

/// Verbs of every kind's main resource.
const VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// Verbs of a status or scale subresource.
const SUBRESOURCE_VERBS: &[&str] = &["get", "patch", "update"];

/// The group served besides the kinds in storage, for `kubectl auth can-i`.
pub const AUTHORIZATION_GROUP: &str = "authorization.k8s.io";

/// version.Info.
pub fn version_info() -> Value {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    json!({
        "major": MAJOR,
        "minor": MINOR,
        "gitVersion": GIT_VERSION,
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "1970-01-01T00:00:00Z",
        "goVersion": "",
        "compiler": "rustc",
        "platform": format!("{}/{arch}", std::env::consts::OS),
    })
}

/// APIVersions of the core group; `server_address` is where the client reached us.
pub fn api_versions_doc(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [
            {"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}
        ],
    })
}

/// Every group keel serves but the core one, each once, in the order of `kinds::all()`.
fn groups() -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&str, &str)> = keel_types::kinds::group_versions()
        .into_iter()
        .filter(|(group, _)| !group.is_empty())
        .collect();
    out.push((AUTHORIZATION_GROUP, "v1"));
    out
}

fn api_group(group: &str, version: &str) -> Value {
    let gv = json!({"groupVersion": format!("{group}/{version}"), "version": version});
    json!({
        "name": group,
        "versions": [gv.clone()],
        "preferredVersion": gv,
    })
}

/// APIGroupList: every non-core group with its version, preferred.
pub fn group_list_doc() -> Value {
    json!({
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": groups().into_iter().map(|(g, v)| api_group(g, v)).collect::<Vec<_>>(),
    })
}

/// One APIGroup, or NotFound.
pub fn group_doc(name: &str) -> Result<Value, ApiError> {
    let (g, v) = groups()
        .into_iter()
        .find(|(g, _)| *g == name)
        .ok_or(ApiError::UnknownResource)?;
    let mut out = api_group(g, v);
    out["kind"] = json!("APIGroup");
    out["apiVersion"] = json!("v1");
    Ok(out)
}

fn resource_entries(info: &ResourceInfo) -> Vec<Value> {
    let mut main = json!({
        "name": info.plural,
        "singularName": info.singular(),
        "namespaced": info.namespaced(),
        "kind": info.kind,
        "verbs": VERBS,
    });
    if !info.short_names.is_empty() {
        main["shortNames"] = json!(info.short_names);
    }
    if !info.categories.is_empty() {
        main["categories"] = json!(info.categories);
    }
    let mut out = vec![main];
    for sub in info.subresources {
        let mut entry = json!({
            "name": format!("{}/{sub}", info.plural),
            "singularName": "",
            "namespaced": info.namespaced(),
            "kind": info.kind,
            "verbs": SUBRESOURCE_VERBS,
        });
        if *sub == "scale" {
            entry["group"] = json!("autoscaling");
            entry["version"] = json!("v1");
            entry["kind"] = json!("Scale");
        }
        out.push(entry);
    }
    if info.kind == "Namespace" && info.group.is_empty() {
        out.push(json!({
            "name": "namespaces/finalize",
            "singularName": "",
            "namespaced": false,
            "kind": "Namespace",
            "verbs": ["update"],
        }));
    }
    out
}

/// The APIResourceList of one group version, or NotFound.
pub fn resource_list(group: &str, version: &str) -> Result<Value, ApiError> {
    let group_version = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    let resources: Vec<Value> = if group == AUTHORIZATION_GROUP && version == "v1" {
        vec![json!({
            "name": "selfsubjectaccessreviews",
            "singularName": "selfsubjectaccessreview",
            "namespaced": false,
            "kind": "SelfSubjectAccessReview",
            "verbs": ["create"],
        })]
    } else {
        keel_types::kinds::all()
            .iter()
            .filter(|k| k.group == group && k.version == version)
            .flat_map(resource_entries)
            .collect()
    };
    if resources.is_empty() {
        return Err(ApiError::UnknownResource);
    }
    Ok(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": resources,
    }))
}

/// Answers a discovery request: authorized as a non-resource request, then `build`.
async fn serve<S: Storage>(
    core: &Core<S>,
    user: &UserInfo,
    uri: &Uri,
    build: impl FnOnce() -> Result<Value, ApiError>,
) -> Response {
    let result = async {
        authorize_path(core, user, &Method::GET, uri.path()).await?;
        build()
    }
    .await;
    match result {
        Ok(v) => response::ok(&v),
        Err(e) => response::error(&e),
    }
}

pub async fn version<S: Storage>(
    State(core): State<Core<S>>,
    Extension(Authenticated(user)): Extension<Authenticated>,
    uri: Uri,
) -> Response {
    serve(&core, &user, &uri, || Ok(version_info())).await
}

pub async fn api_versions<S: Storage>(
    State(core): State<Core<S>>,
    headers: HeaderMap,
    Extension(Authenticated(user)): Extension<Authenticated>,
    uri: Uri,
) -> Response {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()))
        .unwrap_or_default()
        .to_string();
    serve(&core, &user, &uri, || Ok(api_versions_doc(&host))).await
}

pub async fn group_list<S: Storage>(
    State(core): State<Core<S>>,
    Extension(Authenticated(user)): Extension<Authenticated>,
    uri: Uri,
) -> Response {
    serve(&core, &user, &uri, || Ok(group_list_doc())).await
}

pub async fn group<S: Storage>(
    State(core): State<Core<S>>,
    Path(name): Path<String>,
    Extension(Authenticated(user)): Extension<Authenticated>,
    uri: Uri,
) -> Response {
    serve(&core, &user, &uri, || group_doc(&name)).await
}

pub async fn core_resources<S: Storage>(
    State(core): State<Core<S>>,
    Extension(Authenticated(user)): Extension<Authenticated>,
    uri: Uri,
) -> Response {
    serve(&core, &user, &uri, || resource_list("", "v1")).await
}

pub async fn group_resources<S: Storage>(
    State(core): State<Core<S>>,
    Path((group, version)): Path<(String, String)>,
    Extension(Authenticated(user)): Extension<Authenticated>,
    uri: Uri,
) -> Response {
    serve(&core, &user, &uri, || resource_list(&group, &version)).await
}

/// `/healthz`, `/livez`, `/readyz`: "ok" to whoever may read them.
pub async fn health<S: Storage>(
    State(core): State<Core<S>>,
    Extension(Authenticated(user)): Extension<Authenticated>,
    uri: Uri,
) -> Response {
    match authorize_path(&core, &user, &Method::GET, uri.path()).await {
        Ok(_) => response::text("ok"),
        Err(e) => response::error(&e),
    }
}
