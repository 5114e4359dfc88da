//! The OpenAPI v3 components of custom kinds, as `kubectl explain` and client-side validation
//! read them: each served version's schema from its definition, with the apiVersion, kind and
//! metadata every object has, and the group-version-kind by which kubectl finds it.

use keel_types::crd::CustomVersion;
use serde_json::{json, Map, Value};

const OBJECT_META: &str = "k8s.io.apimachinery.pkg.apis.meta.v1.ObjectMeta";

/// The component name of a custom kind, as Kubernetes names it: the group's labels reversed,
/// then version and kind (`com.example.v1.Widget`).
pub fn component_name(version: &CustomVersion) -> String {
    let mut labels: Vec<&str> = version.info.group.split('.').collect();
    labels.reverse();
    format!(
        "{}.{}.{}",
        labels.join("."),
        version.info.version,
        version.info.kind
    )
}

/// The components of `versions` (one group version's custom kinds) and of ObjectMeta and what
/// it reaches.
pub fn components(versions: &[&CustomVersion]) -> Map<String, Value> {
    let mut out = crate::rest::openapi_message_components(&[OBJECT_META]);
    for version in versions {
        let mut schema = match &version.schema {
            Some(s) => serde_json::to_value(s).unwrap_or_else(|_| json!({"type": "object"})),
            None => json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}),
        };
        if !schema.get("properties").is_some_and(Value::is_object) {
            schema["properties"] = json!({});
        }
        let props = &mut schema["properties"];
        props["apiVersion"] = json!({"type": "string", "description": "APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources"});
        props["kind"] = json!({"type": "string", "description": "Kind is a string value representing the REST resource this object represents. Servers may infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds"});
        props["metadata"] = json!({
            "allOf": [{"$ref": format!("#/components/schemas/{}", crate::rest::openapi_component_name(OBJECT_META))}],
            "description": "Standard object's metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata"
        });
        schema["x-kubernetes-group-version-kind"] = json!([{
            "group": version.info.group, "version": version.info.version, "kind": version.info.kind,
        }]);
        out.insert(component_name(version), schema);
    }
    out
}
