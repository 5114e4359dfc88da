//! The OpenAPI documents kubectl reads. `/openapi/v3/{group-version}` carries each kind's
//! schema (for `kubectl explain`, which reads v3) and a PATCH operation per kind that takes
//! the `fieldValidation` query parameter, from which kubectl's default `--validate=strict`
//! learns that the server validates fields itself (keel's admission does). `/openapi/v2`
//! carries the same schemas in Swagger 2.0's terms ([`super::openapi_v2`]).

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, Uri};
use axum::response::Response;
use keel_types::ResourceInfo;
use serde_json::{json, Map, Value};

use super::discovery::GIT_VERSION;
use super::{authorize_path, response, Core};
use crate::auth::Authenticated;
use crate::crd::CustomKinds;
use crate::error::ApiError;
use crate::storage::Storage;
use axum::Extension;

/// The media type of the protobuf OpenAPI v2 document, as kube-apiserver labels its reply.
/// kubectl asks for it by this name or by an older one with `@v1.0`, but a Content-Type with
/// `@` is not a valid media type: Go's mime parser (and so kubectl) rejects it.
pub const V2_PROTOBUF: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

/// Stands in for a content hash: the documents change only with the server's version.
const HASH: &str = "keel-v1-32-0";

/// The `/openapi/v3` index: one document per group version.
pub fn v3_index(custom: &CustomKinds) -> Value {
    let mut paths = Map::new();
    let mut prefixes = group_version_prefixes();
    for v in custom.all() {
        let p = prefix(v.info.group, v.info.version);
        if !prefixes.contains(&p) {
            prefixes.push(p);
        }
    }
    for prefix in prefixes {
        paths.insert(
            prefix.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{prefix}?hash={HASH}")}),
        );
    }
    json!({ "paths": paths })
}

/// "api/v1", "apis/apps/v1", …
fn group_version_prefixes() -> Vec<String> {
    keel_types::kinds::group_versions()
        .into_iter()
        .map(|(g, v)| prefix(g, v))
        .collect()
}

pub(crate) fn prefix(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

fn query_parameter(name: &str, description: &str) -> Value {
    json!({"name": name, "in": "query", "description": description,
        "schema": {"type": "string", "uniqueItems": true}})
}

/// The PATCH operation of one kind's item path.
pub(crate) fn patch_operation(info: &ResourceInfo) -> Value {
    json!({
        "description": format!("partially update the specified {}", info.kind),
        "operationId": format!("patch{}", info.kind),
        "parameters": [
            query_parameter("dryRun", "When present, indicates that modifications should not be persisted."),
            query_parameter("fieldManager", "fieldManager is a name associated with the actor or entity that is making these changes."),
            query_parameter("fieldValidation", "fieldValidation instructs the server on how to handle objects in the request containing unknown or duplicate fields."),
        ],
        "responses": {"200": {"description": "OK"}},
        "x-kubernetes-action": "patch",
        "x-kubernetes-group-version-kind": {
            "group": info.group, "version": info.version, "kind": info.kind,
        },
    })
}

/// The PATCH path of each kind, in the group version at `path`.
pub(crate) fn patch_paths<'a>(
    path: &str,
    kinds: impl Iterator<Item = &'a ResourceInfo>,
) -> Map<String, Value> {
    let mut paths = Map::new();
    for info in kinds {
        let item = if info.namespaced() {
            format!("/{path}/namespaces/{{namespace}}/{}/{{name}}", info.plural)
        } else {
            format!("/{path}/{}/{{name}}", info.plural)
        };
        paths.insert(item, json!({ "patch": patch_operation(info) }));
    }
    paths
}

/// The document of one group version (`api/v1`, `apis/apps/v1`, a custom kind's): a PATCH
/// operation and a schema per kind.
pub fn v3_document(path: &str, custom: &CustomKinds) -> Result<Value, ApiError> {
    let kinds: Vec<&ResourceInfo> = keel_types::kinds::all()
        .iter()
        .filter(|k| prefix(k.group, k.version) == path)
        .collect();
    let (paths, schemas) = if kinds.is_empty() {
        let versions: Vec<_> = custom
            .all()
            .iter()
            .filter(|v| prefix(v.info.group, v.info.version) == path)
            .map(|v| v.as_ref())
            .collect();
        if versions.is_empty() {
            return Err(ApiError::UnknownResource);
        }
        (
            patch_paths(path, versions.iter().map(|v| v.info)),
            crate::crd::openapi::components(&versions),
        )
    } else {
        (
            patch_paths(path, kinds.iter().copied()),
            super::openapi_schema::components(&kinds),
        )
    };
    Ok(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": GIT_VERSION},
        "paths": paths,
        "components": {"schemas": schemas},
    }))
}

pub async fn v2<S: Storage>(
    State(core): State<Core<S>>,
    headers: HeaderMap,
    Extension(Authenticated(user)): Extension<Authenticated>,
    uri: Uri,
) -> Response {
    if let Err(e) = authorize_path(&core, &user, &Method::GET, uri.path()).await {
        return response::error(&e);
    }
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let doc = super::openapi_v2::document(&core.custom_kinds_now());
    if !accept.contains("protobuf") {
        return response::ok(&doc);
    }
    let mut reply = Response::new(Body::from(super::openapi_v2::protobuf(&doc)));
    reply
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(V2_PROTOBUF));
    reply
}

pub async fn v3<S: Storage>(
    State(core): State<Core<S>>,
    Extension(Authenticated(user)): Extension<Authenticated>,
    uri: Uri,
) -> Response {
    match authorize_path(&core, &user, &Method::GET, uri.path()).await {
        Ok(_) => response::ok(&v3_index(&core.custom_kinds_now())),
        Err(e) => response::error(&e),
    }
}

pub async fn v3_group_version<S: Storage>(
    State(core): State<Core<S>>,
    Path(path): Path<String>,
    Extension(Authenticated(user)): Extension<Authenticated>,
    uri: Uri,
) -> Response {
    let result = async {
        authorize_path(&core, &user, &Method::GET, uri.path()).await?;
        v3_document(&path, &*core.custom_kinds().await?)
    }
    .await;
    match result {
        Ok(v) => response::ok(&v),
        Err(e) => response::error(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_a_patch_operation_that_takes_field_validation() {
        let index = v3_index(&CustomKinds::default());
        assert_eq!(
            index["paths"]["apis/apps/v1"]["serverRelativeURL"],
            format!("/openapi/v3/apis/apps/v1?hash={HASH}")
        );
        let apps = v3_document("apis/apps/v1", &CustomKinds::default()).expect("apps/v1");
        let patch =
            &apps["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
        assert_eq!(
            patch["x-kubernetes-group-version-kind"],
            json!({"group": "apps", "version": "v1", "kind": "Deployment"})
        );
        let params = patch["parameters"].as_array().expect("parameters");
        assert!(params
            .iter()
            .any(|p| p["name"] == "fieldValidation" && p["in"] == "query"));
        let core = v3_document("api/v1", &CustomKinds::default()).expect("v1");
        assert!(core["paths"]["/api/v1/nodes/{name}"]["patch"].is_object());
        assert_eq!(
            v3_document("apis/nope/v1", &CustomKinds::default())
                .expect_err("unknown")
                .code(),
            404
        );
    }
}
