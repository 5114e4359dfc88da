//! Which keys a watch event makes worth reconciling: the object itself for the controller's
//! own kind, and its owners (or whatever a mapper says) for related kinds. Pure functions.

use std::any::TypeId;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::{Metadata, NamespaceResourceScope, Resource};
use keel_types::k8s_openapi;

use crate::error::Error;
use crate::object_key::ObjectKey;
use crate::watcher::Event;

/// Keys to reconcile for an event about the controller's own kind.
///
/// A deleted object yields nothing: it is gone from the cache, and the controller only
/// reconciles objects it can read. (An object with finalizers is not gone: its deletion shows
/// up as an update setting `deletionTimestamp`.) A restart yields every listed object, since
/// changes may have been missed.
pub(crate) fn own_keys<K>(event: Result<Event<K>, Error>) -> Vec<Result<ObjectKey, Error>>
where
    K: Metadata<Ty = ObjectMeta>,
{
    match event {
        Ok(Event::Applied(object)) => vec![Ok(ObjectKey::of(&object))],
        Ok(Event::Deleted(_)) => Vec::new(),
        Ok(Event::Restarted(objects)) => objects.iter().map(|o| Ok(ObjectKey::of(o))).collect(),
        Err(error) => vec![Err(error)],
    }
}

/// Keys to reconcile for an event about a related kind: whatever `map` says for each object
/// the event names, deleted ones included (an owner usually wants to recreate a lost child).
pub(crate) fn related_keys<C, F, I>(
    event: Result<Event<C>, Error>,
    map: &F,
) -> Vec<Result<ObjectKey, Error>>
where
    F: Fn(&C) -> I,
    I: IntoIterator<Item = ObjectKey>,
{
    match event {
        Ok(Event::Applied(object)) | Ok(Event::Deleted(object)) => {
            map(&object).into_iter().map(Ok).collect()
        }
        Ok(Event::Restarted(objects)) => objects.iter().flat_map(map).map(Ok).collect(),
        Err(error) => vec![Err(error)],
    }
}

/// The keys of `child`'s owners of kind `K`: every ownerReference whose apiVersion and kind
/// are `K`'s, whether or not it is the controlling one. A namespaced owner lives in its
/// child's namespace (Kubernetes allows no other); a cluster-scoped owner has none.
pub fn owner_keys<K, C>(child: &C) -> Vec<ObjectKey>
where
    K: Resource + 'static,
    C: Metadata<Ty = ObjectMeta>,
{
    let meta = child.metadata();
    let namespace = if TypeId::of::<K::Scope>() == TypeId::of::<NamespaceResourceScope>() {
        meta.namespace.clone().filter(|ns| !ns.is_empty())
    } else {
        None
    };
    meta.owner_references
        .iter()
        .flatten()
        .filter(|owner| owner.api_version == K::API_VERSION && owner.kind == K::KIND)
        .map(|owner| ObjectKey {
            namespace: namespace.clone(),
            name: owner.name.clone(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
    use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

    fn owner(api_version: &str, kind: &str, name: &str) -> OwnerReference {
        OwnerReference {
            api_version: api_version.into(),
            kind: kind.into(),
            name: name.into(),
            uid: format!("uid-{name}"),
            ..Default::default()
        }
    }

    fn child(namespace: &str, name: &str, owners: Vec<OwnerReference>) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                namespace: Some(namespace.into()),
                name: Some(name.into()),
                owner_references: Some(owners),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn ok_keys(keys: Vec<Result<ObjectKey, Error>>) -> Vec<String> {
        keys.into_iter()
            .map(|k| k.map_or_else(|e| format!("error: {e}"), |k| k.to_string()))
            .collect()
    }

    #[test]
    fn owner_keys_keep_only_owners_of_the_kind_in_the_childs_namespace() {
        let cm = child(
            "shop",
            "web-config",
            vec![
                owner("apps/v1", "Deployment", "web"),
                owner("apps/v1", "ReplicaSet", "web-123"),
                owner("example.com/v1", "Deployment", "not-apps"),
                owner("apps/v1", "Deployment", "api"),
            ],
        );

        let keys = owner_keys::<Deployment, _>(&cm);

        assert_eq!(
            keys,
            [
                ObjectKey::namespaced("shop", "web"),
                ObjectKey::namespaced("shop", "api")
            ]
        );
        assert_eq!(
            owner_keys::<ReplicaSet, _>(&cm),
            [ObjectKey::namespaced("shop", "web-123")]
        );
    }

    #[test]
    fn a_cluster_scoped_owner_has_no_namespace() {
        let cm = child("shop", "quota", vec![owner("v1", "Namespace", "shop")]);

        assert_eq!(
            owner_keys::<Namespace, _>(&cm),
            [ObjectKey::cluster("shop")]
        );
    }

    #[test]
    fn an_object_without_owners_maps_to_nothing() {
        let cm = ConfigMap::default();

        assert!(owner_keys::<Deployment, _>(&cm).is_empty());
    }

    #[test]
    fn own_events_name_the_object_except_deletions() {
        let a = child("ns", "a", vec![]);
        let b = child("ns", "b", vec![]);

        assert_eq!(ok_keys(own_keys(Ok(Event::Applied(a.clone())))), ["ns/a"]);
        assert!(own_keys(Ok(Event::Deleted(a.clone()))).is_empty());
        assert_eq!(
            ok_keys(own_keys(Ok(Event::Restarted(vec![a, b])))),
            ["ns/a", "ns/b"]
        );
        assert_eq!(
            ok_keys(own_keys::<ConfigMap>(Err(Error::Transport("down".into())))),
            ["error: transport: down"]
        );
    }

    #[test]
    fn related_events_name_the_mapped_keys_deletions_included() {
        let owned = |name: &str| child("ns", name, vec![owner("apps/v1", "Deployment", "web")]);
        let map = |c: &ConfigMap| owner_keys::<Deployment, _>(c);

        assert_eq!(
            ok_keys(related_keys(Ok(Event::Deleted(owned("x"))), &map)),
            ["ns/web"]
        );
        assert_eq!(
            ok_keys(related_keys(
                Ok(Event::Restarted(vec![owned("x"), owned("y")])),
                &map
            )),
            ["ns/web", "ns/web"]
        );
    }
}
