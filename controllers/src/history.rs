//! ControllerRevisions: the recorded versions of a workload's pod template (DaemonSets and
//! StatefulSets keep them), which `kubectl rollout history` lists and `rollout undo` reads
//! back. A revision `<owner>-<hash>` holds the template as a replace patch, numbered after the
//! newest; a template that returns to an older revision moves that revision to the front.

use std::sync::Arc;

use keel_client::k8s_openapi::api::apps::v1::ControllerRevision;
use keel_client::k8s_openapi::api::core::v1::PodTemplateSpec;
use keel_client::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use keel_client::k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use keel_client::k8s_openapi::{Metadata, Resource};
use keel_client::store::Store;
use keel_client::{Error, Patch};
use serde_json::json;

use crate::context::Context;
use crate::pods::{controller_reference, is_controlled_by};

/// The label naming the revision of the template a pod or revision was made from.
pub const REVISION_LABEL: &str = "controller-revision-hash";

/// The revisions `owner` controls, from the cache.
pub fn owned_revisions<K: Metadata<Ty = ObjectMeta>>(
    revisions: &Store<ControllerRevision>,
    owner: &K,
) -> Vec<Arc<ControllerRevision>> {
    let meta = owner.metadata();
    let uid = meta.uid.clone().unwrap_or_default();
    revisions
        .state()
        .into_iter()
        .filter(|r| r.metadata.namespace == meta.namespace && is_controlled_by(&r.metadata, &uid))
        .collect()
}

/// The revision's name for `owner` at `hash`.
pub fn revision_name<K: Metadata<Ty = ObjectMeta>>(owner: &K, hash: &str) -> String {
    format!(
        "{}-{hash}",
        owner.metadata().name.clone().unwrap_or_default()
    )
}

/// The pod template a revision records.
pub fn template_of(revision: &ControllerRevision) -> Option<PodTemplateSpec> {
    let mut template = revision.data.as_ref()?.0.pointer("/spec/template")?.clone();
    if let Some(m) = template.as_object_mut() {
        m.remove("$patch");
    }
    serde_json::from_value(template).ok()
}

/// Records `template` as `owner`'s revision `hash` (see the module doc), using the cached
/// `revisions` to number it.
pub async fn ensure_revision<K>(
    ctx: &Context,
    revisions: &Store<ControllerRevision>,
    owner: &K,
    template: &PodTemplateSpec,
    hash: &str,
) -> Result<(), Error>
where
    K: Resource + Metadata<Ty = ObjectMeta>,
{
    let namespace = owner.metadata().namespace.clone().unwrap_or_default();
    let name = revision_name(owner, hash);
    let owned = owned_revisions(revisions, owner);
    let newest = owned.iter().map(|r| r.revision).max().unwrap_or(0);
    let api = ctx.api::<ControllerRevision>(&namespace);
    if let Some(existing) = owned
        .iter()
        .find(|r| r.metadata.name.as_deref() == Some(name.as_str()))
    {
        if existing.revision < newest {
            api.patch(&name, &Patch::Merge(json!({"revision": newest + 1})))
                .await?;
        }
        return Ok(());
    }
    let mut data = serde_json::to_value(template)?;
    data["$patch"] = json!("replace");
    let mut labels = template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    labels.insert(REVISION_LABEL.into(), hash.into());
    let object = ControllerRevision {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: Some(namespace),
            labels: Some(labels),
            annotations: owner.metadata().annotations.clone().map(|a| {
                a.into_iter()
                    .filter(|(k, _)| k == "kubernetes.io/change-cause")
                    .collect()
            }),
            owner_references: Some(vec![controller_reference(owner)]),
            ..Default::default()
        },
        data: Some(RawExtension(json!({"spec": {"template": data}}))),
        revision: newest + 1,
    };
    match api.create(&object).await {
        Ok(_) => Ok(()),
        // Made by a sync whose cache this one has not seen yet.
        Err(e) if e.is_conflict() => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_client::k8s_openapi::api::core::v1::{Container, PodSpec};

    #[test]
    fn a_revision_gives_back_the_template_it_recorded() {
        let template = PodTemplateSpec {
            metadata: None,
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "app".into(),
                    image: Some("nginx:1".into()),
                    ..Default::default()
                }],
                ..Default::default()
            }),
        };
        let mut data = serde_json::to_value(&template).unwrap_or_default();
        data["$patch"] = json!("replace");
        let revision = ControllerRevision {
            data: Some(RawExtension(json!({"spec": {"template": data}}))),
            ..Default::default()
        };
        assert_eq!(template_of(&revision), Some(template));
    }
}
