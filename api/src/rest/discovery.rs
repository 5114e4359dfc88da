//! Discovery as kubectl reads it: `/version`, `/api` (APIVersions), `/apis` (APIGroupList),
//! `/apis/{group}` (APIGroup) and the APIResourceLists of each group version, all built from
//! `keel_types::kinds`. A request for the aggregated form of `/api` or `/apis` is answered by
//! `aggregated` from the same entries. Health checks live here too.

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, Method, Uri};
use axum::response::Response;
use keel_types::ResourceInfo;
use serde_json::{json, Value};

use super::{aggregated, authorize_path, response, Core};
use crate::auth::{Authenticated, UserInfo};
use crate::crd::CustomKinds;
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

/// Verbs of what is only ever created: a pod's binding, the `bindings` collection.
const CREATE_ONLY: &[&str] = &["create"];

/// Verbs of a subresource that connects to the pod's node (exec, attach, port-forward).
const CONNECT: &[&str] = &["create", "get"];

/// Verbs of a pod's log.
const GET_ONLY: &[&str] = &["get"];

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

/// Every group keel serves but the core one, each once with its versions (preferred first):
/// the built-in groups in the order of `kinds::all()`, then the groups custom kinds define.
pub(super) fn groups(custom: &CustomKinds) -> Vec<(&'static str, Vec<&'static str>)> {
    let mut out: Vec<(&'static str, Vec<&'static str>)> = Vec::new();
    let mut add = |group: &'static str, version: &'static str| match out
        .iter_mut()
        .find(|(g, _)| *g == group)
    {
        Some((_, versions)) if !versions.contains(&version) => versions.push(version),
        Some(_) => {}
        None => out.push((group, vec![version])),
    };
    for (group, version) in keel_types::kinds::group_versions() {
        if !group.is_empty() {
            add(group, version);
        }
    }
    add(AUTHORIZATION_GROUP, "v1");
    for v in custom.all() {
        add(v.info.group, v.info.version);
    }
    for (_, versions) in &mut out {
        versions.sort_by_key(|a| version_priority(a));
    }
    out
}

/// Kubernetes' version priority, highest first: GA before beta before alpha, higher numbers
/// first within each, and versions of no such form last, alphabetically.
fn version_priority(version: &str) -> (u8, std::cmp::Reverse<u64>, std::cmp::Reverse<u64>, String) {
    let parse = || -> Option<(u8, u64, u64)> {
        let rest = version.strip_prefix('v')?;
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        let major: u64 = digits.parse().ok()?;
        let tail = &rest[digits.len()..];
        if tail.is_empty() {
            return Some((0, major, 0));
        }
        let (rank, n) = if let Some(n) = tail.strip_prefix("beta") {
            (1, n)
        } else {
            (2, tail.strip_prefix("alpha")?)
        };
        Some((rank, major, n.parse().ok()?))
    };
    match parse() {
        Some((rank, major, minor)) => (
            rank,
            std::cmp::Reverse(major),
            std::cmp::Reverse(minor),
            String::new(),
        ),
        None => (
            3,
            std::cmp::Reverse(0),
            std::cmp::Reverse(0),
            version.to_string(),
        ),
    }
}

fn api_group(group: &str, versions: &[&str]) -> Value {
    let entry = |v: &str| json!({"groupVersion": format!("{group}/{v}"), "version": v});
    json!({
        "name": group,
        "versions": versions.iter().map(|v| entry(v)).collect::<Vec<_>>(),
        "preferredVersion": versions.first().map(|v| entry(v)).unwrap_or(Value::Null),
    })
}

/// APIGroupList: every non-core group with its versions, the preferred one first.
pub fn group_list_doc(custom: &CustomKinds) -> Value {
    json!({
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": groups(custom).iter().map(|(g, v)| api_group(g, v)).collect::<Vec<_>>(),
    })
}

/// One APIGroup, or NotFound.
pub fn group_doc(name: &str, custom: &CustomKinds) -> Result<Value, ApiError> {
    let (g, v) = groups(custom)
        .into_iter()
        .find(|(g, _)| *g == name)
        .ok_or(ApiError::UnknownResource)?;
    let mut out = api_group(g, &v);
    out["kind"] = json!("APIGroup");
    out["apiVersion"] = json!("v1");
    Ok(out)
}

/// One entry of a group version's resource list: a resource, or `resource/subresource`.
/// Both discovery forms are built from these, so they cannot disagree.
pub(super) struct ApiResource {
    pub name: String,
    /// Empty for subresources, as Kubernetes lists them.
    pub singular: String,
    pub namespaced: bool,
    pub kind: &'static str,
    /// The kind's group and version where they are not the list's own (the autoscaling/v1
    /// Scale of a scale subresource).
    pub kind_group_version: Option<(&'static str, &'static str)>,
    pub verbs: &'static [&'static str],
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
}

impl ApiResource {
    /// The entry as an APIResourceList lists it.
    fn legacy(&self) -> Value {
        let mut out = json!({
            "name": self.name,
            "singularName": self.singular,
            "namespaced": self.namespaced,
            "kind": self.kind,
            "verbs": self.verbs,
        });
        if let Some((group, version)) = self.kind_group_version {
            out["group"] = json!(group);
            out["version"] = json!(version);
        }
        if !self.short_names.is_empty() {
            out["shortNames"] = json!(self.short_names);
        }
        if !self.categories.is_empty() {
            out["categories"] = json!(self.categories);
        }
        out
    }
}

fn kind_entries(info: &ResourceInfo) -> Vec<ApiResource> {
    let mut out = vec![ApiResource {
        name: info.plural.to_string(),
        singular: info.singular(),
        namespaced: info.namespaced(),
        kind: info.kind,
        kind_group_version: None,
        verbs: VERBS,
        short_names: info.short_names,
        categories: info.categories,
    }];
    for sub in info.subresources {
        let (kind, kind_group_version, verbs) = match *sub {
            "scale" => ("Scale", Some(("autoscaling", "v1")), SUBRESOURCE_VERBS),
            "binding" => ("Binding", None, CREATE_ONLY),
            "eviction" => ("Eviction", Some(("policy", "v1")), CREATE_ONLY),
            _ => (info.kind, None, SUBRESOURCE_VERBS),
        };
        out.push(ApiResource {
            name: format!("{}/{sub}", info.plural),
            singular: String::new(),
            namespaced: info.namespaced(),
            kind,
            kind_group_version,
            verbs,
            short_names: &[],
            categories: &[],
        });
    }
    if info.kind == "Pod" && info.group.is_empty() {
        // Served by the pod's node agent through the API server, not stored.
        for (sub, kind, verbs) in [
            ("attach", "PodAttachOptions", CONNECT),
            ("exec", "PodExecOptions", CONNECT),
            ("log", "Pod", GET_ONLY),
            ("portforward", "PodPortForwardOptions", CONNECT),
        ] {
            out.push(ApiResource {
                name: format!("pods/{sub}"),
                singular: String::new(),
                namespaced: true,
                kind,
                kind_group_version: None,
                verbs,
                short_names: &[],
                categories: &[],
            });
        }
    }
    if info.kind == "Namespace" && info.group.is_empty() {
        out.push(ApiResource {
            name: "namespaces/finalize".into(),
            singular: String::new(),
            namespaced: false,
            kind: "Namespace",
            kind_group_version: None,
            verbs: &["update"],
            short_names: &[],
            categories: &[],
        });
    }
    // kube-apiserver lists a kind's subresources in name order.
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// The resources and subresources served in one group version; empty if it is not served.
pub(super) fn resources(group: &str, version: &str, custom: &CustomKinds) -> Vec<ApiResource> {
    if group == AUTHORIZATION_GROUP && version == "v1" {
        return vec![ApiResource {
            name: "selfsubjectaccessreviews".into(),
            singular: "selfsubjectaccessreview".into(),
            namespaced: false,
            kind: "SelfSubjectAccessReview",
            kind_group_version: None,
            verbs: &["create"],
            short_names: &[],
            categories: &[],
        }];
    }
    let mut out: Vec<ApiResource> = Vec::new();
    if group.is_empty() && version == "v1" {
        // Bindings are only created (they bind a pod and are not stored), first in the core
        // list as Kubernetes' alphabetical one has them.
        out.push(ApiResource {
            name: "bindings".into(),
            singular: "binding".into(),
            namespaced: true,
            kind: "Binding",
            kind_group_version: None,
            verbs: CREATE_ONLY,
            short_names: &[],
            categories: &[],
        });
    }
    out.extend(
        keel_types::kinds::all()
            .iter()
            .chain(custom.all().iter().map(|v| v.info))
            .filter(|k| k.group == group && k.version == version)
            .flat_map(kind_entries),
    );
    out
}

/// The APIResourceList of one group version, or NotFound.
pub fn resource_list(group: &str, version: &str, custom: &CustomKinds) -> Result<Value, ApiError> {
    let group_version = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    let resources: Vec<Value> = resources(group, version, custom)
        .iter()
        .map(ApiResource::legacy)
        .collect();
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

/// The aggregated form `headers` ask for, if any.
fn aggregated_version(headers: &HeaderMap) -> Option<aggregated::Version> {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .and_then(aggregated::negotiate)
}

/// Answers `/api` or `/apis` in the aggregated form when the request asks for one.
async fn serve_root<S: Storage>(
    core: &Core<S>,
    user: &UserInfo,
    uri: &Uri,
    headers: &HeaderMap,
    root: aggregated::Root,
    legacy: impl FnOnce() -> Value,
) -> Response {
    let Some(version) = aggregated_version(headers) else {
        return serve(core, user, uri, || Ok(legacy())).await;
    };
    match authorize_path(core, user, &Method::GET, uri.path()).await {
        Ok(_) => aggregated::respond(root, version, headers, &core.custom_kinds_now()),
        Err(e) => response::error(&e),
    }
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
    let legacy = || api_versions_doc(&host);
    serve_root(&core, &user, &uri, &headers, aggregated::Root::Core, legacy).await
}

pub async fn group_list<S: Storage>(
    State(core): State<Core<S>>,
    headers: HeaderMap,
    Extension(Authenticated(user)): Extension<Authenticated>,
    uri: Uri,
) -> Response {
    let root = aggregated::Root::Groups;
    let custom = core.custom_kinds_now();
    serve_root(&core, &user, &uri, &headers, root, || {
        group_list_doc(&custom)
    })
    .await
}

pub async fn group<S: Storage>(
    State(core): State<Core<S>>,
    Path(name): Path<String>,
    Extension(Authenticated(user)): Extension<Authenticated>,
    uri: Uri,
) -> Response {
    let custom = core.custom_kinds().await;
    serve(&core, &user, &uri, || group_doc(&name, &*custom?)).await
}

pub async fn core_resources<S: Storage>(
    State(core): State<Core<S>>,
    Extension(Authenticated(user)): Extension<Authenticated>,
    uri: Uri,
) -> Response {
    serve(&core, &user, &uri, || {
        resource_list("", "v1", &CustomKinds::default())
    })
    .await
}

pub async fn group_resources<S: Storage>(
    State(core): State<Core<S>>,
    Path((group, version)): Path<(String, String)>,
    Extension(Authenticated(user)): Extension<Authenticated>,
    uri: Uri,
) -> Response {
    let custom = core.custom_kinds().await;
    serve(&core, &user, &uri, || {
        resource_list(&group, &version, &*custom?)
    })
    .await
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
