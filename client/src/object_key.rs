//! The name of one object of a known kind: its namespace (none for cluster-scoped kinds) and
//! its name. Caches and work queues are keyed by it.

use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::Metadata;
use keel_types::k8s_openapi;

/// Which object, within one kind. Two objects with equal keys are the same object (perhaps at
/// different resourceVersions).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    /// `None` for cluster-scoped objects. An empty namespace is normalised to `None` so that
    /// keys built from objects and keys built by hand agree.
    pub namespace: Option<String>,
    pub name: String,
}

impl ObjectKey {
    /// The key of a cluster-scoped object.
    pub fn cluster(name: impl Into<String>) -> Self {
        Self {
            namespace: None,
            name: name.into(),
        }
    }

    /// The key of a namespaced object.
    pub fn namespaced(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        let namespace = namespace.into();
        Self {
            namespace: (!namespace.is_empty()).then_some(namespace),
            name: name.into(),
        }
    }

    /// The key of `object`, from its metadata. Objects read from the server always have a
    /// name; one without is keyed by the empty name.
    pub fn of<K: Metadata<Ty = ObjectMeta>>(object: &K) -> Self {
        let meta = object.metadata();
        Self {
            namespace: meta.namespace.clone().filter(|ns| !ns.is_empty()),
            name: meta.name.clone().unwrap_or_default(),
        }
    }
}

/// `namespace/name`, or `name` for cluster-scoped objects, as kubectl prints them.
impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{ns}/{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ConfigMap, Namespace};

    #[test]
    fn key_of_a_namespaced_object_carries_its_namespace() {
        let cm = ConfigMap {
            metadata: ObjectMeta {
                namespace: Some("prod".into()),
                name: Some("settings".into()),
                ..Default::default()
            },
            ..Default::default()
        };

        let key = ObjectKey::of(&cm);

        assert_eq!(key, ObjectKey::namespaced("prod", "settings"));
        assert_eq!(key.to_string(), "prod/settings");
    }

    #[test]
    fn empty_namespace_means_cluster_scoped() {
        let ns = Namespace {
            metadata: ObjectMeta {
                namespace: Some(String::new()),
                name: Some("prod".into()),
                ..Default::default()
            },
            ..Default::default()
        };

        assert_eq!(ObjectKey::of(&ns), ObjectKey::cluster("prod"));
        assert_eq!(
            ObjectKey::namespaced("", "prod"),
            ObjectKey::cluster("prod")
        );
        assert_eq!(ObjectKey::cluster("prod").to_string(), "prod");
    }
}
