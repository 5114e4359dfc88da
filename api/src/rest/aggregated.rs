//! Aggregated discovery (apidiscovery.k8s.io v2 and v2beta1): `/api` and `/apis` answered with
//! one APIGroupDiscoveryList holding every resource of every version, so a client learns the
//! whole API in two requests instead of one per group version. Which form a request gets is
//! decided by its `Accept` header alone, the way kube-apiserver decides it; the documents are
//! built from the same entries as the legacy resource lists.

use std::sync::LazyLock;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};

use super::discovery::{self, ApiResource};
use super::response;
use crate::crd::CustomKinds;
use crate::error::ApiError;

/// The group of the aggregated discovery types.
const GROUP: &str = "apidiscovery.k8s.io";
/// The kind both `/api` and `/apis` answer with.
const LIST_KIND: &str = "APIGroupDiscoveryList";

/// A version of the aggregated discovery types a client can ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    V2,
    V2Beta1,
}

impl Version {
    fn from_param(v: &str) -> Option<Version> {
        match v {
            "v2" => Some(Version::V2),
            "v2beta1" => Some(Version::V2Beta1),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Version::V2 => "v2",
            Version::V2Beta1 => "v2beta1",
        }
    }

    /// The response's `Content-Type`: the JSON media type with the group, version and kind
    /// it holds, which is how client-go tells the aggregated form from the legacy one.
    pub fn content_type(self) -> &'static str {
        match self {
            Version::V2 => "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList",
            Version::V2Beta1 => {
                "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"
            }
        }
    }
}

/// One media range of an `Accept` header.
struct Clause<'a> {
    media_type: &'a str,
    subtype: &'a str,
    q: f32,
    params: Vec<(&'a str, &'a str)>,
}

impl<'a> Clause<'a> {
    fn parse(text: &'a str) -> Option<Clause<'a>> {
        let mut parts = text.split(';');
        let range = parts.next()?.trim();
        let (media_type, subtype) = match range.split_once('/') {
            Some((t, s)) => (t.trim(), s.trim()),
            None if range == "*" => ("*", "*"),
            None => return None,
        };
        let mut q = 1.0;
        let mut params = Vec::new();
        for param in parts {
            let Some((key, value)) = param.split_once('=') else {
                continue;
            };
            let (key, value) = (key.trim(), value.trim());
            if key == "q" {
                // An unreadable weight counts as zero, as Go's parse of it does.
                q = value.parse().unwrap_or(0.0);
            } else {
                params.push((key, value));
            }
        }
        Some(Clause {
            media_type,
            subtype,
            q,
            params,
        })
    }

    fn param(&self, key: &str) -> Option<&'a str> {
        self.params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| *v)
    }

    /// Whether the range covers `application/json`, the only encoding served here.
    fn covers_json(&self) -> bool {
        match (self.media_type, self.subtype) {
            ("*", "*") => true,
            (t, "*") => t.eq_ignore_ascii_case("application"),
            (t, s) => t.eq_ignore_ascii_case("application") && s.eq_ignore_ascii_case("json"),
        }
    }

    /// The aggregated version this range asks for, if it names one.
    fn aggregated(&self) -> Option<Version> {
        if self.param("g")? != GROUP || self.param("as")? != LIST_KIND {
            return None;
        }
        Version::from_param(self.param("v")?)
    }

    /// Sort rank: specific ranges before `type/*`, before `*/*`.
    fn wildcards(&self) -> u8 {
        u8::from(self.media_type == "*") + u8::from(self.subtype == "*")
    }
}

/// The aggregated version an `Accept` header asks for, or `None` for the legacy documents.
///
/// As kube-apiserver does: ranges are taken by weight, then specific before wildcard, then in
/// the order written; the first JSON range naming a served aggregated version wins. Ranges
/// without `g`/`v`/`as` never win: they only make the legacy document acceptable, which is
/// what a request gets when no range names an aggregated version. A weight of zero means
/// "not acceptable" and such ranges are skipped.
pub fn negotiate(accept: &str) -> Option<Version> {
    let mut clauses: Vec<Clause> = accept.split(',').filter_map(Clause::parse).collect();
    // A stable sort keeps the written order among equals.
    clauses.sort_by(|a, b| {
        b.q.total_cmp(&a.q)
            .then_with(|| a.wildcards().cmp(&b.wildcards()))
    });
    clauses
        .iter()
        .filter(|c| c.q > 0.0 && c.covers_json())
        .find_map(Clause::aggregated)
}

/// The APIResourceDiscovery entries of one group version, from its resource list entries:
/// each resource with its subresources folded in, as kube-apiserver converts them.
fn resource_discovery(entries: &[ApiResource]) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    let mut index: Vec<&str> = Vec::new();
    for entry in entries.iter().filter(|e| !e.name.contains('/')) {
        let mut resource = json!({
            "resource": entry.name,
            "responseKind": response_kind(entry),
            "scope": scope(entry.namespaced),
            "singularResource": entry.singular,
            "verbs": entry.verbs,
        });
        if !entry.short_names.is_empty() {
            resource["shortNames"] = json!(entry.short_names);
        }
        if !entry.categories.is_empty() {
            resource["categories"] = json!(entry.categories);
        }
        out.push(resource);
        index.push(&entry.name);
    }
    for entry in entries {
        let Some((parent, sub)) = entry.name.split_once('/') else {
            continue;
        };
        let at = match index.iter().position(|p| *p == parent) {
            Some(at) => at,
            None => {
                // A subresource whose parent is not listed still gets a parent, with an
                // empty kind, as Kubernetes gives it one.
                out.push(json!({
                    "resource": parent,
                    "responseKind": {"group": "", "version": "", "kind": ""},
                    "scope": scope(entry.namespaced),
                    "singularResource": "",
                    "verbs": [],
                }));
                index.push(parent);
                out.len() - 1
            }
        };
        let subresource = json!({
            "subresource": sub,
            "responseKind": response_kind(entry),
            "verbs": entry.verbs,
        });
        match out[at]["subresources"].as_array_mut() {
            Some(list) => list.push(subresource),
            None => out[at]["subresources"] = json!([subresource]),
        }
    }
    out
}

/// The kind an entry answers with. Group and version are empty where they are the group
/// version's own, exactly as the legacy list leaves them out.
fn response_kind(entry: &ApiResource) -> Value {
    let (group, version) = entry.kind_group_version.unwrap_or(("", ""));
    json!({"group": group, "version": version, "kind": entry.kind})
}

fn scope(namespaced: bool) -> &'static str {
    if namespaced {
        "Namespaced"
    } else {
        "Cluster"
    }
}

/// One APIGroupDiscovery: the group's versions, preferred first.
fn group_discovery(group: &str, versions: &[&str], custom: &CustomKinds) -> Value {
    let mut metadata = json!({"creationTimestamp": null});
    if !group.is_empty() {
        metadata["name"] = json!(group);
    }
    let versions: Vec<Value> = versions
        .iter()
        .map(|version| {
            json!({
                "version": version,
                "resources": resource_discovery(&discovery::resources(group, version, custom)),
                "freshness": "Current",
            })
        })
        .collect();
    json!({"metadata": metadata, "versions": versions})
}

fn list(version: Version, items: Vec<Value>) -> Value {
    json!({
        "kind": LIST_KIND,
        "apiVersion": format!("{GROUP}/{}", version.as_str()),
        "metadata": {},
        "items": items,
    })
}

/// The aggregated document of `/api`: the core group, named "", with its one version.
pub fn core_doc(version: Version) -> Value {
    list(
        version,
        vec![group_discovery("", &["v1"], &CustomKinds::default())],
    )
}

/// The aggregated document of `/apis`: every other group, in the order of the legacy list.
pub fn groups_doc(version: Version, custom: &CustomKinds) -> Value {
    let items = discovery::groups(custom)
        .iter()
        .map(|(group, versions)| group_discovery(group, versions, custom))
        .collect();
    list(version, items)
}

/// Which document a request is for.
#[derive(Clone, Copy)]
pub enum Root {
    /// `/api`
    Core,
    /// `/apis`
    Groups,
}

/// A document encoded once, with the entity tag of its content.
struct Encoded {
    v2: Vec<u8>,
    v2beta1: Vec<u8>,
    etag: String,
}

impl Encoded {
    fn new(build: impl Fn(Version) -> Value) -> Result<Encoded, String> {
        let v2 = serde_json::to_vec(&build(Version::V2)).map_err(|e| e.to_string())?;
        let v2beta1 = serde_json::to_vec(&build(Version::V2Beta1)).map_err(|e| e.to_string())?;
        // One tag for both versions, hashed from the content as Kubernetes hashes it; `Vary:
        // Accept` keeps caches from mixing the two.
        let digest = ring::digest::digest(&ring::digest::SHA512, &v2);
        let hex: String = digest.as_ref().iter().map(|b| format!("{b:02X}")).collect();
        Ok(Encoded {
            v2,
            v2beta1,
            etag: format!("\"{hex}\""),
        })
    }
}

/// The documents of the built-in kinds never change while the process runs: they are
/// compiled in. Custom kinds change `/apis`, which is then encoded for the request.
static CORE: LazyLock<Result<Encoded, String>> = LazyLock::new(|| Encoded::new(core_doc));
static GROUPS: LazyLock<Result<Encoded, String>> =
    LazyLock::new(|| Encoded::new(|v| groups_doc(v, &CustomKinds::default())));

/// The aggregated document of `root` in `version`, with kube-apiserver's caching headers:
/// `ETag`, `Vary: Accept` and `Cache-Control: public`; a request whose `If-None-Match`
/// holds the current tag gets 304 Not Modified and no body.
pub fn respond(
    root: Root,
    version: Version,
    headers: &HeaderMap,
    custom: &CustomKinds,
) -> Response {
    let fresh;
    let encoded = match root {
        Root::Core => &*CORE,
        Root::Groups if custom.all().is_empty() => &*GROUPS,
        Root::Groups => {
            fresh = Encoded::new(|v| groups_doc(v, custom));
            &fresh
        }
    };
    let encoded = match encoded {
        Ok(e) => e,
        Err(e) => {
            return response::error(&ApiError::Internal(format!(
                "encoding aggregated discovery: {e}"
            )))
        }
    };
    let not_modified = headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == encoded.etag.as_bytes());
    let mut reply = if not_modified {
        let mut reply = Response::new(Body::empty());
        *reply.status_mut() = StatusCode::NOT_MODIFIED;
        reply
    } else {
        let body = match version {
            Version::V2 => encoded.v2.clone(),
            Version::V2Beta1 => encoded.v2beta1.clone(),
        };
        let mut reply = Response::new(Body::from(body));
        reply.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(version.content_type()),
        );
        reply
    };
    let h = reply.headers_mut();
    if let Ok(tag) = HeaderValue::from_str(&encoded.etag) {
        h.insert(header::ETAG, tag);
    }
    h.insert(header::VARY, HeaderValue::from_static("Accept"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("public"));
    reply
}

#[cfg(test)]
mod tests {
    use super::*;

    const KUBECTL: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";

    #[test]
    fn kubectls_accept_header_gets_v2() {
        assert_eq!(negotiate(KUBECTL), Some(Version::V2));
    }

    #[test]
    fn plain_json_and_empty_headers_get_the_legacy_documents() {
        assert_eq!(negotiate("application/json"), None);
        assert_eq!(negotiate(""), None);
        assert_eq!(negotiate("*/*"), None);
        assert_eq!(negotiate("application/json, application/yaml;q=0.9"), None);
    }

    #[test]
    fn the_first_aggregated_range_in_written_order_wins() {
        let beta_first = "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";
        assert_eq!(negotiate(beta_first), Some(Version::V2Beta1));
    }

    #[test]
    fn weights_outrank_the_written_order() {
        let weighted = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList;q=0.5, application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList";
        assert_eq!(negotiate(weighted), Some(Version::V2Beta1));
        let refused = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList;q=0, application/json";
        assert_eq!(negotiate(refused), None);
    }

    #[test]
    fn unknown_versions_kinds_and_encodings_are_passed_over() {
        assert_eq!(
            negotiate("application/json;g=apidiscovery.k8s.io;v=v3;as=APIGroupDiscoveryList"),
            None
        );
        assert_eq!(
            negotiate("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupList"),
            None
        );
        assert_eq!(
            negotiate("application/json;g=meta.k8s.io;v=v2;as=APIGroupDiscoveryList"),
            None
        );
        // Protobuf is not served here, so its aggregated range gives way to the JSON one.
        let proto_first = "application/vnd.kubernetes.protobuf;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList";
        assert_eq!(negotiate(proto_first), Some(Version::V2Beta1));
        assert_eq!(
            negotiate("*/*;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"),
            Some(Version::V2)
        );
    }

    #[test]
    fn a_plain_range_listed_first_does_not_shut_out_the_aggregated_form() {
        // kube-apiserver only lets a range that names an aggregated kind choose it, so a
        // plain range ahead of one does not stop it being chosen.
        let plain_first = "application/json, application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";
        assert_eq!(negotiate(plain_first), Some(Version::V2));
    }

    #[test]
    fn subresources_fold_into_their_resource() {
        let entries = discovery::resources("apps", "v1", &CustomKinds::default());
        let resources = resource_discovery(&entries);
        let deployments = resources
            .iter()
            .find(|r| r["resource"] == "deployments")
            .expect("deployments");
        assert_eq!(
            deployments["subresources"],
            // In name order, as kube-apiserver lists them.
            json!([
                {"subresource": "scale",
                 "responseKind": {"group": "autoscaling", "version": "v1", "kind": "Scale"},
                 "verbs": ["get", "patch", "update"]},
                {"subresource": "status",
                 "responseKind": {"group": "", "version": "", "kind": "Deployment"},
                 "verbs": ["get", "patch", "update"]},
            ])
        );
        assert!(
            resources
                .iter()
                .all(|r| !r["resource"].as_str().unwrap_or_default().contains('/')),
            "no subresource is listed as a resource"
        );
        let top_level = entries.iter().filter(|e| !e.name.contains('/')).count();
        assert_eq!(resources.len(), top_level);
    }
}
