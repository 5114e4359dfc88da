//! Resource paths, read as kube-apiserver's RequestInfo reads them:
//! `/api/v1[/namespaces/{ns}]/{resource}[/{name}[/{subresource}]]` and the same under
//! `/apis/{group}/{version}`; `/api/v1/namespaces/{name}[/status|/finalize]` is the namespace
//! itself, and `/api/v1/namespaces/{ns}/bindings` binds pods.

use std::sync::Arc;

use keel_types::crd::CustomVersion;
use keel_types::ResourceInfo;

use crate::crd::CustomKinds;
use crate::error::ApiError;

/// The collection whose creates bind pods to nodes.
pub const BINDINGS: &str = "bindings";

/// Subresources of a namespace that follow its name directly.
const NAMESPACE_SUBRESOURCES: &[&str] = &["status", "finalize"];

/// What a resource path names.
#[derive(Debug, Clone)]
pub struct ResourcePath {
    pub info: &'static ResourceInfo,
    /// The resource as the path names it, for authorization: the kind's plural, or
    /// `bindings`, the collection that only binds pods (its `info` is the pods').
    pub resource: &'static str,
    /// The namespace in the path; `None` for cluster-scoped kinds and for requests across all
    /// namespaces.
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
    /// The definition's version, for a kind a CustomResourceDefinition defines.
    pub custom: Option<Arc<CustomVersion>>,
}

impl ResourcePath {
    /// Whether a create here binds a pod: `pods/{name}/binding` or the `bindings`
    /// collection.
    pub fn binds(&self) -> bool {
        self.resource == BINDINGS
            || (self.info.group.is_empty()
                && self.info.kind == "Pod"
                && self.subresource.as_deref() == Some("binding"))
    }

    /// Whether a create here evicts a pod: `pods/{name}/eviction`.
    pub fn evicts(&self) -> bool {
        self.info.group.is_empty()
            && self.info.kind == "Pod"
            && self.name.is_some()
            && self.subresource.as_deref() == Some("eviction")
    }

    /// Shows a stored object at the version the request named: a custom kind's objects are
    /// stored at their definition's storage version and served at every version with the
    /// same fields (the definition's `None` conversion), with that version's defaults applied
    /// as Kubernetes applies them on every read.
    pub fn present(&self, obj: &mut serde_json::Value) {
        if let Some(version) = &self.custom {
            crate::crd::present(version, obj);
        }
    }

    /// The columns of a Table of this resource.
    pub fn columns(&self) -> super::table::Columns {
        super::table::Columns::of(self.info, self.custom.as_ref())
    }

    /// Whether `path` names a group that only a CustomResourceDefinition could define (one
    /// with a dot that no built-in kind uses): a miss there is worth a fresh look at the
    /// stored definitions.
    pub fn may_be_custom(path: &str) -> bool {
        let mut segments = path.trim_matches('/').split('/');
        match (segments.next(), segments.next()) {
            (Some("apis"), Some(group)) => {
                group.contains('.') && !keel_types::kinds::all().iter().any(|k| k.group == group)
            }
            _ => false,
        }
    }

    /// Reads `path`, with the kinds `custom` defines served beside the built-in ones. Paths
    /// outside the API, kinds keel does not serve and shapes Kubernetes does not have are
    /// NotFound.
    pub fn parse(path: &str, custom: &CustomKinds) -> Result<Self, ApiError> {
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let (group, version, rest) = match segments.as_slice() {
            ["api", version, rest @ ..] => ("", *version, rest),
            ["apis", group, version, rest @ ..] => (*group, *version, rest),
            _ => return Err(ApiError::UnknownResource),
        };
        if rest.iter().any(|s| s.is_empty()) {
            return Err(ApiError::UnknownResource);
        }
        let mut namespace = None;
        let mut parts = rest;
        if let ["namespaces", ns, after @ ..] = rest {
            namespace = Some(ns.to_string());
            if let Some(first) = after.first() {
                if !NAMESPACE_SUBRESOURCES.contains(first) {
                    parts = after;
                }
            }
        }
        let (resource, name, subresource) = match parts {
            [resource] => (*resource, None, None),
            [resource, name] => (*resource, Some(name.to_string()), None),
            [resource, name, sub] => (*resource, Some(name.to_string()), Some(sub.to_string())),
            _ => return Err(ApiError::UnknownResource),
        };
        let mut custom_version = None;
        let (info, resource) = match (group, version, resource, &name) {
            // Bindings are not stored; creating one binds the pod it names.
            ("", "v1", "bindings", None) => (
                keel_types::kinds::by_kind("v1", "Pod").ok_or(ApiError::UnknownResource)?,
                BINDINGS,
            ),
            _ => match keel_types::kinds::by_resource(group, resource) {
                Some(info) if info.version == version => (info, info.plural),
                Some(_) => return Err(ApiError::UnknownResource),
                None => {
                    let version = custom
                        .by_resource(group, version, resource)
                        .ok_or(ApiError::UnknownResource)?;
                    custom_version = Some(version.clone());
                    (version.info, version.info.plural)
                }
            },
        };
        if !info.namespaced() {
            // `/api/v1/namespaces/{name}` names a namespace, not a namespace to look in.
            let names_itself = info.kind == "Namespace" && parts.first() == Some(&"namespaces");
            if namespace.is_some() && !names_itself {
                return Err(ApiError::UnknownResource);
            }
            namespace = None;
        }
        if resource == BINDINGS && namespace.is_none() {
            return Err(ApiError::UnknownResource);
        }
        if let Some(sub) = &subresource {
            let known = info.has_subresource(sub)
                || (info.kind == "Namespace" && sub == "finalize")
                || (info.kind == "ServiceAccount" && sub == "token");
            if !known {
                return Err(ApiError::UnknownResource);
            }
        }
        Ok(Self {
            info,
            resource,
            namespace,
            name,
            subresource,
            custom: custom_version,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(path: &str) -> ResourcePath {
        ResourcePath::parse(path, &CustomKinds::default()).expect(path)
    }

    #[test]
    fn namespaced_paths_name_namespace_resource_name_and_subresource() {
        let p = parse("/api/v1/namespaces/default/pods/web/status");
        assert_eq!(p.info.plural, "pods");
        assert_eq!(p.namespace.as_deref(), Some("default"));
        assert_eq!(p.name.as_deref(), Some("web"));
        assert_eq!(p.subresource.as_deref(), Some("status"));

        let all = parse("/apis/apps/v1/deployments");
        assert_eq!(all.info.kind, "Deployment");
        assert_eq!(all.namespace, None);
        assert_eq!(all.name, None);
    }

    #[test]
    fn the_namespaces_path_names_the_namespace_itself() {
        let ns = parse("/api/v1/namespaces/team-a");
        assert_eq!(ns.info.kind, "Namespace");
        assert_eq!(ns.namespace, None);
        assert_eq!(ns.name.as_deref(), Some("team-a"));
        let finalize = parse("/api/v1/namespaces/team-a/finalize");
        assert_eq!(finalize.name.as_deref(), Some("team-a"));
        assert_eq!(finalize.subresource.as_deref(), Some("finalize"));
        assert_eq!(parse("/api/v1/nodes/n1").name.as_deref(), Some("n1"));
    }

    #[test]
    fn bindings_are_a_pod_subresource_and_a_namespaced_collection() {
        let sub = parse("/api/v1/namespaces/default/pods/web/binding");
        assert!(sub.binds());
        assert_eq!(sub.resource, "pods");
        assert_eq!(sub.subresource.as_deref(), Some("binding"));
        let legacy = parse("/api/v1/namespaces/default/bindings");
        assert!(legacy.binds());
        assert_eq!(legacy.resource, "bindings");
        assert_eq!(legacy.info.kind, "Pod");
        assert_eq!(legacy.name, None);
        assert!(!parse("/api/v1/namespaces/default/pods/web/status").binds());
        for path in [
            "/api/v1/bindings",
            "/api/v1/namespaces/default/bindings/web",
            "/apis/apps/v1/namespaces/default/bindings",
            "/api/v1/namespaces/default/configmaps/x/binding",
        ] {
            assert_eq!(
                ResourcePath::parse(path, &CustomKinds::default())
                    .expect_err(path)
                    .code(),
                404,
                "{path}"
            );
        }
    }

    #[test]
    fn unknown_kinds_versions_and_shapes_are_not_found() {
        for path in [
            "/api/v2/pods",
            "/apis/apps/v1beta1/deployments",
            "/api/v1/widgets",
            "/api/v1/namespaces/default/nodes",
            "/api/v1/namespaces/default/pods/a/b/c",
            "/api/v1/namespaces/default/pods/a/scale",
            "/metrics",
        ] {
            let err = ResourcePath::parse(path, &CustomKinds::default()).expect_err(path);
            assert_eq!(err.code(), 404, "{path}");
        }
    }
}
