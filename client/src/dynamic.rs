//! Objects of any kind, known only at run time: a [`DynamicObject`] keeps its apiVersion, kind
//! and metadata typed and everything else as JSON, and `Api::<DynamicObject>::for_resource`
//! names the resource to reach. With those, the watcher, the cache, fenced writes and deletes
//! work for every kind the server serves, not only the ones compiled in.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::{ListableResource, Metadata, Resource, SubResourceScope};
use keel_types::k8s_openapi;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::api::{Api, DynamicResource};
use crate::client::Client;

/// An object of some kind: its type and metadata, and the rest of its fields as they came.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DynamicObject {
    /// Lists may leave it out of their items; empty then.
    #[serde(
        rename = "apiVersion",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub api_version: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Every other field (spec, status, data, …).
    #[serde(flatten)]
    pub data: Map<String, Value>,
}

// The type-level constants are never read for a dynamic object: its Api carries the
// resource it reaches instead.
impl Resource for DynamicObject {
    const API_VERSION: &'static str = "";
    const GROUP: &'static str = "";
    const KIND: &'static str = "";
    const VERSION: &'static str = "";
    const URL_PATH_SEGMENT: &'static str = "";
    type Scope = SubResourceScope;
}

impl ListableResource for DynamicObject {
    const LIST_KIND: &'static str = "";
}

impl Metadata for DynamicObject {
    type Ty = ObjectMeta;

    fn metadata(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn metadata_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

impl Api<DynamicObject> {
    /// Objects of the resource `plural` in `group`/`version`, in `namespace` ("" for all
    /// namespaces, or for a cluster-scoped resource).
    pub fn for_resource(
        client: Client,
        group: &str,
        version: &str,
        plural: &str,
        namespace: &str,
    ) -> Self {
        Api::namespaced(client, namespace).with_resource(DynamicResource {
            group: group.to_string(),
            version: version.to_string(),
            plural: plural.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_field_survives_a_round_trip() {
        let text = json!({
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": "web", "namespace": "default", "uid": "u1",
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment",
                    "name": "web", "uid": "u0", "blockOwnerDeletion": true}],
                "finalizers": ["foregroundDeletion"]
            },
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}},
            "status": {"replicas": 2}
        });

        let object: DynamicObject = serde_json::from_value(text.clone()).expect("decodes");

        assert_eq!(object.kind, "ReplicaSet");
        assert_eq!(object.metadata.uid.as_deref(), Some("u1"));
        let owners = object.metadata.owner_references.clone().unwrap_or_default();
        assert_eq!(owners[0].uid, "u0");
        assert_eq!(object.data["spec"]["replicas"], 3);
        assert_eq!(serde_json::to_value(&object).expect("encodes"), text);
    }

    #[test]
    fn a_list_item_without_type_fields_decodes_and_encodes_without_them() {
        let text = json!({"metadata": {"name": "c"}, "data": {"k": "v"}});

        let object: DynamicObject = serde_json::from_value(text.clone()).expect("decodes");

        assert!(object.api_version.is_empty() && object.kind.is_empty());
        assert_eq!(object.metadata.name.as_deref(), Some("c"));
        assert_eq!(serde_json::to_value(&object).expect("encodes"), text);
    }
}
