//! The `kube-root-ca.crt` ConfigMap a namespace should hold, as Kubernetes'
//! root-ca-cert-publisher writes it: key `ca.crt` with the cluster's CA certificate and the
//! `kubernetes.io/description` annotation. An existing ConfigMap is rewritten only when its
//! data differ or the annotation is missing; other annotations and labels are kept. Pure.

use std::collections::BTreeMap;

use keel_client::k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use keel_client::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::namespaces;

pub const NAME: &str = "kube-root-ca.crt";
pub const KEY: &str = "ca.crt";
pub const DESCRIPTION_ANNOTATION: &str = "kubernetes.io/description";
pub const DESCRIPTION: &str = "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters.";

/// What to write in a namespace.
#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    Nothing,
    Create(ConfigMap),
    /// Replace the current ConfigMap with this (it carries its resourceVersion).
    Update(ConfigMap),
}

/// What `namespace` needs so that its ConfigMap (now `current`) holds `ca`.
pub fn reconcile(namespace: &Namespace, current: Option<&ConfigMap>, ca: &str) -> Write {
    if !namespaces::is_active(namespace) {
        return Write::Nothing;
    }
    let data: BTreeMap<String, String> = [(KEY.to_string(), ca.to_string())].into();
    let Some(current) = current else {
        return Write::Create(ConfigMap {
            metadata: ObjectMeta {
                name: Some(NAME.into()),
                namespace: namespace.metadata.name.clone(),
                annotations: Some([(DESCRIPTION_ANNOTATION.into(), DESCRIPTION.into())].into()),
                ..Default::default()
            },
            data: Some(data),
            ..Default::default()
        });
    };
    let annotations = current.metadata.annotations.clone().unwrap_or_default();
    let described = annotations
        .get(DESCRIPTION_ANNOTATION)
        .is_some_and(|d| !d.is_empty());
    if current.data.as_ref() == Some(&data) && described {
        return Write::Nothing;
    }
    let mut updated = current.clone();
    updated.data = Some(data);
    let mut annotations = annotations;
    annotations
        .entry(DESCRIPTION_ANNOTATION.into())
        .or_insert_with(|| DESCRIPTION.into());
    updated.metadata.annotations = Some(annotations);
    Write::Update(updated)
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

    fn written(w: Write) -> ConfigMap {
        match w {
            Write::Create(c) | Write::Update(c) => c,
            Write::Nothing => ConfigMap::default(),
        }
    }

    #[test]
    fn a_namespace_without_the_config_map_gets_it_with_the_ca_and_description() {
        let w = reconcile(&namespace("Active"), None, "PEM");
        assert!(matches!(w, Write::Create(_)));
        let cm = written(w);
        assert_eq!(cm.metadata.name.as_deref(), Some(NAME));
        assert_eq!(cm.metadata.namespace.as_deref(), Some("team"));
        assert_eq!(
            cm.data.unwrap_or_default().get(KEY).map(String::as_str),
            Some("PEM")
        );
        assert_eq!(
            cm.metadata
                .annotations
                .unwrap_or_default()
                .get(DESCRIPTION_ANNOTATION)
                .map(String::as_str),
            Some(DESCRIPTION)
        );
    }

    #[test]
    fn a_current_config_map_is_left_alone_and_a_changed_one_restored() {
        let cm = written(reconcile(&namespace("Active"), None, "PEM"));
        assert_eq!(
            reconcile(&namespace("Active"), Some(&cm), "PEM"),
            Write::Nothing
        );
        let mut edited = cm.clone();
        edited.data = Some([(KEY.to_string(), "other".to_string())].into());
        edited.metadata.annotations = Some([("keep".to_string(), "me".to_string())].into());
        let fixed = written(reconcile(&namespace("Active"), Some(&edited), "PEM"));
        assert_eq!(fixed.data, cm.data);
        let annotations = fixed.metadata.annotations.unwrap_or_default();
        assert!(annotations.contains_key("keep"));
        assert!(annotations.contains_key(DESCRIPTION_ANNOTATION));
    }

    #[test]
    fn a_terminating_namespace_gets_nothing() {
        assert_eq!(
            reconcile(&namespace("Terminating"), None, "PEM"),
            Write::Nothing
        );
    }
}
