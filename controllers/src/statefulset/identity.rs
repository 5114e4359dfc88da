//! A StatefulSet pod's stable identity, as Kubernetes gives it: the name `<set>-<ordinal>`,
//! the hostname of the same name in the subdomain of the set's governing Service, the labels
//! `statefulset.kubernetes.io/pod-name` and `apps.kubernetes.io/pod-index`, and one
//! PersistentVolumeClaim per claim template, `<template>-<set>-<ordinal>`, mounted by the
//! template's name. Pure.

use std::collections::BTreeMap;

use keel_client::k8s_openapi::api::apps::v1::StatefulSet;
use keel_client::k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, PodTemplateSpec, Volume,
};
use keel_client::k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use crate::history::REVISION_LABEL;
use crate::pods::{controller_reference, pod_from_template};

pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";

/// The set's name.
fn set_name(set: &StatefulSet) -> String {
    set.metadata.name.clone().unwrap_or_default()
}

/// The name of the pod with `ordinal`.
pub fn pod_name(set: &StatefulSet, ordinal: i32) -> String {
    format!("{}-{ordinal}", set_name(set))
}

/// The ordinal in a pod's name, if it is one of `set`'s names.
pub fn ordinal_of(set: &StatefulSet, pod: &Pod) -> Option<i32> {
    let name = pod.metadata.name.as_deref()?;
    let rest = name.strip_prefix(&set_name(set))?.strip_prefix('-')?;
    if rest.is_empty() || (rest.len() > 1 && rest.starts_with('0')) {
        return None;
    }
    rest.parse::<i32>().ok().filter(|n| *n >= 0)
}

/// The first ordinal (`spec.ordinals.start`, 0 by default).
pub fn start_ordinal(set: &StatefulSet) -> i32 {
    set.spec
        .as_ref()
        .and_then(|s| s.ordinals.as_ref())
        .and_then(|o| o.start)
        .unwrap_or(0)
}

/// The name of the claim from `template` for the pod with `ordinal`.
pub fn claim_name(set: &StatefulSet, template: &PersistentVolumeClaim, ordinal: i32) -> String {
    format!(
        "{}-{}",
        template.metadata.name.clone().unwrap_or_default(),
        pod_name(set, ordinal)
    )
}

/// The claims the pod with `ordinal` needs, owned by the set when the retention policy says
/// `whenDeleted: Delete` (so the garbage collector removes them with it). `whenScaled` is not
/// applied: claims of pods removed by scaling down are kept, as with `Retain`.
pub fn claims(set: &StatefulSet, ordinal: i32) -> Vec<PersistentVolumeClaim> {
    let Some(spec) = set.spec.as_ref() else {
        return Vec::new();
    };
    let selector_labels = spec.selector.match_labels.clone().unwrap_or_default();
    let delete_with_set = spec
        .persistent_volume_claim_retention_policy
        .as_ref()
        .and_then(|p| p.when_deleted.as_deref())
        == Some("Delete");
    spec.volume_claim_templates
        .iter()
        .flatten()
        .map(|template| {
            let mut labels = template.metadata.labels.clone().unwrap_or_default();
            labels.extend(selector_labels.clone());
            let owners: Option<Vec<OwnerReference>> = delete_with_set.then(|| {
                let mut owner = controller_reference(set);
                owner.controller = Some(false);
                vec![owner]
            });
            PersistentVolumeClaim {
                metadata: ObjectMeta {
                    name: Some(claim_name(set, template, ordinal)),
                    namespace: set.metadata.namespace.clone(),
                    labels: Some(labels),
                    annotations: template.metadata.annotations.clone(),
                    owner_references: owners,
                    ..Default::default()
                },
                spec: template.spec.clone(),
                status: None,
            }
        })
        .collect()
}

/// The pod with `ordinal` made from `template` (the template of revision `revision`).
pub fn pod(set: &StatefulSet, template: &PodTemplateSpec, ordinal: i32, revision: &str) -> Pod {
    let name = pod_name(set, ordinal);
    let namespace = set.metadata.namespace.clone().unwrap_or_default();
    let mut pod = pod_from_template(
        template,
        &namespace,
        name.clone(),
        controller_reference(set),
    );
    let labels = pod.metadata.labels.get_or_insert_with(BTreeMap::new);
    labels.insert(POD_NAME_LABEL.into(), name.clone());
    labels.insert(POD_INDEX_LABEL.into(), ordinal.to_string());
    labels.insert(REVISION_LABEL.into(), revision.into());
    let service = set
        .spec
        .as_ref()
        .and_then(|s| s.service_name.clone())
        .unwrap_or_default();
    let claim_templates: Vec<PersistentVolumeClaim> = set
        .spec
        .as_ref()
        .and_then(|s| s.volume_claim_templates.clone())
        .unwrap_or_default();
    let spec = pod.spec.get_or_insert_with(Default::default);
    spec.hostname = Some(name);
    if !service.is_empty() {
        spec.subdomain = Some(service);
    }
    let volumes = spec.volumes.get_or_insert_with(Vec::new);
    for template in &claim_templates {
        let volume_name = template.metadata.name.clone().unwrap_or_default();
        let source = PersistentVolumeClaimVolumeSource {
            claim_name: claim_name(set, template, ordinal),
            read_only: None,
        };
        // A claim template replaces a pod volume of the same name, as Kubernetes does.
        volumes.retain(|v| v.name != volume_name);
        volumes.push(Volume {
            name: volume_name,
            persistent_volume_claim: Some(source),
            ..Default::default()
        });
    }
    if volumes.is_empty() {
        spec.volumes = None;
    }
    pod
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_client::k8s_openapi::api::apps::v1::{
        StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec,
    };
    use keel_client::k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

    fn set(delete_claims: bool) -> StatefulSet {
        StatefulSet {
            metadata: ObjectMeta {
                name: Some("db".into()),
                namespace: Some("prod".into()),
                uid: Some("u".into()),
                ..Default::default()
            },
            spec: Some(StatefulSetSpec {
                service_name: Some("db-headless".into()),
                selector: LabelSelector {
                    match_labels: Some(BTreeMap::from([("app".into(), "db".into())])),
                    ..Default::default()
                },
                volume_claim_templates: Some(vec![PersistentVolumeClaim {
                    metadata: ObjectMeta {
                        name: Some("data".into()),
                        ..Default::default()
                    },
                    ..Default::default()
                }]),
                persistent_volume_claim_retention_policy: Some(
                    StatefulSetPersistentVolumeClaimRetentionPolicy {
                        when_deleted: Some(if delete_claims { "Delete" } else { "Retain" }.into()),
                        when_scaled: Some("Retain".into()),
                    },
                ),
                ..Default::default()
            }),
            status: None,
        }
    }

    #[test]
    fn a_pod_gets_its_ordinal_name_hostname_subdomain_labels_and_claim() {
        let s = set(false);
        let p = pod(&s, &PodTemplateSpec::default(), 2, "rev1");
        assert_eq!(p.metadata.name.as_deref(), Some("db-2"));
        let labels = p.metadata.labels.clone().unwrap_or_default();
        assert_eq!(labels.get(POD_NAME_LABEL).map(String::as_str), Some("db-2"));
        assert_eq!(labels.get(POD_INDEX_LABEL).map(String::as_str), Some("2"));
        assert_eq!(labels.get(REVISION_LABEL).map(String::as_str), Some("rev1"));
        let spec = p.spec.unwrap_or_default();
        assert_eq!(spec.hostname.as_deref(), Some("db-2"));
        assert_eq!(spec.subdomain.as_deref(), Some("db-headless"));
        let volumes = spec.volumes.unwrap_or_default();
        assert_eq!(volumes.len(), 1);
        assert_eq!(volumes[0].name, "data");
        assert_eq!(
            volumes[0]
                .persistent_volume_claim
                .as_ref()
                .map(|c| c.claim_name.as_str()),
            Some("data-db-2")
        );
    }

    #[test]
    fn ordinals_are_read_back_only_from_the_sets_own_names() {
        let s = set(false);
        let named = |n: &str| Pod {
            metadata: ObjectMeta {
                name: Some(n.into()),
                ..Default::default()
            },
            ..Default::default()
        };
        assert_eq!(ordinal_of(&s, &named("db-0")), Some(0));
        assert_eq!(ordinal_of(&s, &named("db-12")), Some(12));
        assert_eq!(ordinal_of(&s, &named("db-01")), None);
        assert_eq!(ordinal_of(&s, &named("db-x")), None);
        assert_eq!(ordinal_of(&s, &named("dbx-1")), None);
    }

    #[test]
    fn claims_are_owned_by_the_set_only_when_they_go_with_it() {
        let kept = claims(&set(false), 0);
        assert_eq!(kept[0].metadata.name.as_deref(), Some("data-db-0"));
        assert!(kept[0].metadata.owner_references.is_none());
        assert_eq!(
            kept[0]
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("app"))
                .map(String::as_str),
            Some("db")
        );
        let owned = claims(&set(true), 0);
        let owner = owned[0]
            .metadata
            .owner_references
            .clone()
            .unwrap_or_default();
        assert_eq!(owner.len(), 1);
        assert_eq!(owner[0].kind, "StatefulSet");
    }
}
