//! OpenAPI v3 component schemas of the built-in kinds, built from the wire schema: every
//! message a group version's kinds reach, its fields with their JSON types, which are
//! required, and the list extensions (`x-kubernetes-list-type`, `-list-map-keys`,
//! `-patch-merge-key`, `-patch-strategy`) that `kubectl explain` shows and clients merge by.
//! The served kinds carry `x-kubernetes-group-version-kind`, by which kubectl finds them.
//! Descriptions come from the kinds' JSON schemas in `k8s-openapi`.

use std::collections::{BTreeMap, BTreeSet};

use keel_types::schema::{self, special, Cardinality, Field, Message};
use keel_types::ResourceInfo;
use serde_json::{json, Map, Value};

/// The OpenAPI name of a wire message: `io.k8s.api.core.v1.Pod`.
pub fn component_name(message: &str) -> String {
    match message.strip_prefix("k8s.io.") {
        Some(rest) => format!("io.k8s.{rest}"),
        None => message.to_string(),
    }
}

fn reference(message: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{}", component_name(message))})
}

/// The schema of one value of type `ty`.
fn type_schema(ty: &str) -> Value {
    match ty {
        "string" => json!({"type": "string"}),
        "bytes" => json!({"type": "string", "format": "byte"}),
        "int32" | "uint32" => json!({"type": "integer", "format": "int32"}),
        "int64" | "uint64" => json!({"type": "integer", "format": "int64"}),
        "bool" => json!({"type": "boolean"}),
        "double" | "float" => json!({"type": "number", "format": "double"}),
        message => json!({"allOf": [reference(message)]}),
    }
}

fn field_schema(field: &Field) -> Value {
    let mut s = match field.cardinality {
        Cardinality::One => type_schema(field.ty),
        Cardinality::Repeated => json!({"type": "array", "items": type_schema(field.ty)}),
        Cardinality::Map { .. } => {
            json!({"type": "object", "additionalProperties": type_schema(field.ty)})
        }
    };
    let extensions = [
        ("x-kubernetes-list-type", field.list_type.map(Value::from)),
        (
            "x-kubernetes-list-map-keys",
            (!field.list_map_keys.is_empty()).then(|| json!(field.list_map_keys)),
        ),
        (
            "x-kubernetes-patch-merge-key",
            field.merge_key.map(Value::from),
        ),
        (
            "x-kubernetes-patch-strategy",
            field.patch_strategy.map(Value::from),
        ),
    ];
    for (name, value) in extensions {
        if let Some(v) = value {
            s[name] = v;
        }
    }
    s
}

/// The schema of a message whose JSON form is not its fields.
fn special_schema(name: &str) -> Option<Value> {
    Some(match name {
        special::TIME | special::MICRO_TIME => json!({"type": "string", "format": "date-time"}),
        special::DURATION => json!({"type": "string"}),
        special::QUANTITY => json!({"oneOf": [{"type": "string"}, {"type": "number"}]}),
        special::INT_OR_STRING => json!({
            "x-kubernetes-int-or-string": true,
            "anyOf": [{"type": "integer"}, {"type": "string"}],
        }),
        special::RAW_EXTENSION | special::FIELDS_V1 => json!({"type": "object"}),
        n if special::STRING_LISTS.contains(&n) => {
            json!({"type": "array", "items": {"type": "string"}})
        }
        _ => return None,
    })
}

fn message_schema(message: &Message, kind: Option<&ResourceInfo>) -> Value {
    if let Some(s) = special_schema(message.name) {
        return s;
    }
    let mut properties = Map::new();
    let mut required = Vec::new();
    if kind.is_some() {
        // TypeMeta is not on the wire, but it is in every kind's JSON.
        properties.insert("apiVersion".into(), json!({"type": "string"}));
        properties.insert("kind".into(), json!({"type": "string"}));
    }
    let name = component_name(message.name);
    let descriptions = schema::descriptions();
    for field in message.json_fields() {
        let mut property = field_schema(field);
        if let Some(d) = descriptions.of_field(&name, field.json) {
            property["description"] = json!(d);
        }
        properties.insert(field.json.to_string(), property);
        if !field.omit_empty && !field.pointer {
            required.push(field.json);
        }
    }
    let mut s = json!({"type": "object", "properties": properties});
    if let Some(d) = descriptions.of_type(&name) {
        s["description"] = json!(d);
    }
    if !required.is_empty() {
        s["required"] = json!(required);
    }
    if let Some(info) = kind {
        s["x-kubernetes-group-version-kind"] =
            json!([{"group": info.group, "version": info.version, "kind": info.kind}]);
    }
    s
}

/// Every message reachable from `roots`, by name.
fn closure(roots: &[&str]) -> BTreeSet<&'static str> {
    let s = schema::schema();
    let mut seen = BTreeSet::new();
    let mut todo: Vec<String> = roots.iter().map(|r| r.to_string()).collect();
    while let Some(name) = todo.pop() {
        let Some(message) = s.message(&name) else {
            continue;
        };
        if !seen.insert(message.name) || special_schema(message.name).is_some() {
            continue;
        }
        for field in message.json_fields() {
            if !schema::is_scalar(field.ty) {
                todo.push(field.ty.to_string());
            }
        }
    }
    seen
}

/// The component schemas of the kinds in `kinds` and everything they reach.
pub fn components(kinds: &[&ResourceInfo]) -> Map<String, Value> {
    let s = schema::schema();
    let mut roots: BTreeMap<&'static str, Option<&ResourceInfo>> = BTreeMap::new();
    for info in kinds {
        if let Some(m) = s.kind(info.api_version, info.kind) {
            roots.insert(m.name, Some(*info));
        }
    }
    let names: Vec<&str> = roots.keys().copied().collect();
    let mut out = message_components(&names);
    for (name, kind) in roots {
        if let (Some(message), Some(kind)) = (s.message(name), kind) {
            out.insert(component_name(name), message_schema(message, Some(kind)));
        }
    }
    out
}

/// The components of the messages named `roots` and every message they reach.
pub fn message_components(roots: &[&str]) -> Map<String, Value> {
    let s = schema::schema();
    let mut out = Map::new();
    for name in closure(roots) {
        if let Some(message) = s.message(name) {
            out.insert(component_name(name), message_schema(message, None));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod_components() -> Map<String, Value> {
        let pod = keel_types::kinds::by_kind("v1", "Pod").expect("pod");
        components(&[pod])
    }

    #[test]
    fn a_kind_is_found_by_its_group_version_kind_and_reaches_its_fields() {
        let c = pod_components();
        let pod = &c["io.k8s.api.core.v1.Pod"];
        assert_eq!(
            pod["x-kubernetes-group-version-kind"],
            json!([{"group": "", "version": "v1", "kind": "Pod"}])
        );
        assert_eq!(
            pod["properties"]["spec"]["allOf"][0]["$ref"],
            "#/components/schemas/io.k8s.api.core.v1.PodSpec"
        );
        assert!(c.contains_key("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"));
        let container = &c["io.k8s.api.core.v1.Container"];
        assert_eq!(container["required"], json!(["name"]));
        assert!(container["description"]
            .as_str()
            .is_some_and(|d| d.contains("container")));
        assert!(container["properties"]["image"]["description"]
            .as_str()
            .is_some_and(|d| d.contains("Container image name")));
    }

    #[test]
    fn lists_carry_their_merge_keys_and_embedded_fields_are_flattened() {
        let c = pod_components();
        let containers = &c["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
        assert_eq!(containers["type"], "array");
        assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
        assert_eq!(containers["x-kubernetes-patch-strategy"], "merge");
        assert_eq!(containers["x-kubernetes-list-map-keys"], json!(["name"]));
        let volume = &c["io.k8s.api.core.v1.Volume"]["properties"];
        assert!(volume.get("configMap").is_some(), "VolumeSource is inline");
        assert!(volume.get("volumeSource").is_none());
        assert_eq!(
            c["io.k8s.apimachinery.pkg.util.intstr.IntOrString"]["x-kubernetes-int-or-string"],
            true
        );
    }
}
