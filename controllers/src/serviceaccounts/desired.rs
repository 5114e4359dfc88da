//! Which ServiceAccounts a namespace is missing: `default`, in every active namespace. Pure.

use keel_client::k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use keel_client::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::namespaces;

/// The ServiceAccounts every namespace gets.
pub const MANAGED: &[&str] = &["default"];

/// The managed ServiceAccounts `namespace` lacks, given which exist.
pub fn missing(namespace: &Namespace, exists: impl Fn(&str) -> bool) -> Vec<ServiceAccount> {
    if !namespaces::is_active(namespace) {
        return Vec::new();
    }
    MANAGED
        .iter()
        .filter(|name| !exists(name))
        .map(|name| ServiceAccount {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                namespace: namespace.metadata.name.clone(),
                ..Default::default()
            },
            ..Default::default()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_client::k8s_openapi::api::core::v1::NamespaceStatus;

    fn namespace(phase: &str) -> Namespace {
        Namespace {
            metadata: ObjectMeta {
                name: Some("team".into()),
                ..Default::default()
            },
            status: Some(NamespaceStatus {
                phase: Some(phase.into()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn an_active_namespace_without_a_default_service_account_gets_one() {
        let wanted = missing(&namespace("Active"), |_| false);
        assert_eq!(wanted.len(), 1);
        assert_eq!(wanted[0].metadata.name.as_deref(), Some("default"));
        assert_eq!(wanted[0].metadata.namespace.as_deref(), Some("team"));
        assert!(missing(&namespace("Active"), |name| name == "default").is_empty());
    }

    #[test]
    fn a_terminating_namespace_gets_nothing() {
        assert!(missing(&namespace("Terminating"), |_| false).is_empty());
    }
}
