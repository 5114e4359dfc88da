//! The OpenAPI v2 (Swagger 2.0) document: every served kind's definition, built-in and custom,
//! with the PATCH path of each, as JSON or as gnostic's protobuf `Document` (which kubectl
//! asks for). The definitions are the v3 components rewritten in v2's terms: references point
//! into `#/definitions/`, a reference wrapped in `allOf` is the reference itself, and what v2
//! cannot say (`oneOf`, `anyOf`, `nullable`) is said as Kubernetes says it there (an
//! int-or-string is a string of format `int-or-string`, a quantity a string).

use serde_json::{json, Map, Value};

use super::discovery::GIT_VERSION;
use crate::crd::CustomKinds;

/// The v2 document as JSON.
pub fn document(custom: &CustomKinds) -> Value {
    let builtin: Vec<&keel_types::ResourceInfo> = keel_types::kinds::all().iter().collect();
    let mut components = super::openapi_schema::components(&builtin);
    let versions: Vec<_> = custom.all().iter().map(|v| v.as_ref()).collect();
    if !versions.is_empty() {
        components.extend(crate::crd::openapi::components(&versions));
    }
    let definitions: Map<String, Value> = components
        .into_iter()
        .map(|(name, schema)| (name, to_v2(schema)))
        .collect();
    let kinds = builtin.into_iter().chain(versions.iter().map(|v| v.info));
    let mut paths = Map::new();
    for info in kinds {
        let prefix = super::openapi::prefix(info.group, info.version);
        for (path, item) in super::openapi::patch_paths(&prefix, std::iter::once(info)) {
            paths.insert(path, to_v2_path_item(item));
        }
    }
    json!({
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": GIT_VERSION},
        "paths": paths,
        "definitions": definitions,
    })
}

/// A v3 component schema in v2's terms.
fn to_v2(schema: Value) -> Value {
    let Value::Object(mut m) = schema else {
        return schema;
    };
    if let Some(Value::String(r)) = m.get_mut("$ref") {
        *r = r.replace("#/components/schemas/", "#/definitions/");
    }
    // `allOf` holding one reference, as v3 wraps a reference that has siblings.
    if let Some(Value::Array(all)) = m.get("allOf") {
        if let [Value::Object(only)] = all.as_slice() {
            if let Some(r) = only.get("$ref").cloned() {
                m.remove("allOf");
                m.insert("$ref".into(), r);
                return to_v2(Value::Object(m));
            }
        }
    }
    let alternatives = ["oneOf", "anyOf"].iter().any(|k| m.remove(*k).is_some());
    m.remove("nullable");
    m.remove("not");
    if alternatives && !m.contains_key("type") {
        m.insert("type".into(), json!("string"));
        if m.get("x-kubernetes-int-or-string") == Some(&json!(true)) {
            m.insert("format".into(), json!("int-or-string"));
        }
    }
    for key in ["items", "additionalProperties"] {
        if let Some(v) = m.remove(key) {
            m.insert(key.into(), to_v2(v));
        }
    }
    for key in ["properties", "patternProperties"] {
        if let Some(Value::Object(props)) = m.remove(key) {
            let props = props.into_iter().map(|(k, v)| (k, to_v2(v))).collect();
            m.insert(key.into(), Value::Object(props));
        }
    }
    if let Some(Value::Array(all)) = m.remove("allOf") {
        m.insert("allOf".into(), all.into_iter().map(to_v2).collect());
    }
    Value::Object(m)
}

/// A v3 path item (PATCH only) in v2's terms: query parameters carry their type themselves.
fn to_v2_path_item(item: Value) -> Value {
    let mut item = item;
    if let Some(Value::Array(params)) = item.pointer_mut("/patch/parameters") {
        for p in params.iter_mut() {
            if let Some(Value::Object(schema)) = p.as_object_mut().and_then(|o| o.remove("schema"))
            {
                for (k, v) in schema {
                    p[k] = v;
                }
            }
        }
    }
    item
}

/// The document as gnostic's `openapi.v2.Document` protobuf.
pub fn protobuf(doc: &Value) -> Vec<u8> {
    let mut out = Proto::default();
    out.string(1, doc["swagger"].as_str().unwrap_or("2.0"));
    let mut info = Proto::default();
    info.string(1, doc["info"]["title"].as_str().unwrap_or_default());
    info.string(2, doc["info"]["version"].as_str().unwrap_or_default());
    out.message(2, info);
    let mut paths = Proto::default();
    for (name, item) in doc["paths"].as_object().into_iter().flatten() {
        let mut named = Proto::default();
        named.string(1, name);
        named.message(2, path_item(item));
        paths.message(2, named);
    }
    out.message(8, paths);
    let mut definitions = Proto::default();
    for (name, schema) in doc["definitions"].as_object().into_iter().flatten() {
        definitions.message(1, named_schema(name, schema));
    }
    out.message(9, definitions);
    out.0
}

fn named_schema(name: &str, schema: &Value) -> Proto {
    let mut named = Proto::default();
    named.string(1, name);
    named.message(2, schema_message(schema));
    named
}

/// gnostic's `Any`: the value as YAML text (JSON is YAML).
fn any(value: &Value) -> Proto {
    let mut a = Proto::default();
    a.string(2, &value.to_string());
    a
}

fn vendor_extension(out: &mut Proto, field: u32, name: &str, value: &Value) {
    let mut named = Proto::default();
    named.string(1, name);
    named.message(2, any(value));
    out.message(field, named);
}

/// gnostic's `Schema`, field by field.
fn schema_message(schema: &Value) -> Proto {
    let mut out = Proto::default();
    let Some(m) = schema.as_object() else {
        return out;
    };
    let string = |out: &mut Proto, field, key: &str| {
        if let Some(s) = m.get(key).and_then(Value::as_str) {
            out.string(field, s);
        }
    };
    string(&mut out, 1, "$ref");
    string(&mut out, 2, "format");
    string(&mut out, 3, "title");
    string(&mut out, 4, "description");
    if let Some(d) = m.get("default") {
        out.message(5, any(d));
    }
    for (field, key) in [(6, "multipleOf"), (7, "maximum"), (9, "minimum")] {
        if let Some(n) = m.get(key).and_then(Value::as_f64) {
            out.double(field, n);
        }
    }
    for (field, key) in [
        (8, "exclusiveMaximum"),
        (10, "exclusiveMinimum"),
        (16, "uniqueItems"),
        (27, "readOnly"),
    ] {
        if m.get(key).and_then(Value::as_bool) == Some(true) {
            out.varint(field, 1);
        }
    }
    for (field, key) in [
        (11, "maxLength"),
        (12, "minLength"),
        (14, "maxItems"),
        (15, "minItems"),
        (17, "maxProperties"),
        (18, "minProperties"),
    ] {
        if let Some(n) = m.get(key).and_then(Value::as_i64) {
            // int64 as protobuf writes it: two's complement in ten bytes when negative.
            out.varint(field, n as u64);
        }
    }
    string(&mut out, 13, "pattern");
    for r in m
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(s) = r.as_str() {
            out.string(19, s);
        }
    }
    for e in m
        .get("enum")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        out.message(20, any(e));
    }
    match m.get("additionalProperties") {
        Some(Value::Bool(b)) => {
            let mut item = Proto::default();
            item.varint(2, u64::from(*b));
            out.message(21, item);
        }
        Some(s @ Value::Object(_)) => {
            let mut item = Proto::default();
            item.message(1, schema_message(s));
            out.message(21, item);
        }
        _ => {}
    }
    if let Some(t) = m.get("type") {
        let mut item = Proto::default();
        match t {
            Value::String(s) => item.string(1, s),
            Value::Array(list) => list
                .iter()
                .filter_map(Value::as_str)
                .for_each(|s| item.string(1, s)),
            _ => {}
        }
        out.message(22, item);
    }
    if let Some(items) = m.get("items") {
        let mut item = Proto::default();
        match items {
            Value::Array(list) => list.iter().for_each(|s| item.message(1, schema_message(s))),
            s => item.message(1, schema_message(s)),
        }
        out.message(23, item);
    }
    for s in m
        .get("allOf")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        out.message(24, schema_message(s));
    }
    if let Some(props) = m.get("properties").and_then(Value::as_object) {
        let mut p = Proto::default();
        for (name, s) in props {
            p.message(1, named_schema(name, s));
        }
        out.message(25, p);
    }
    string(&mut out, 26, "discriminator");
    if let Some(e) = m.get("example") {
        out.message(30, any(e));
    }
    for (k, v) in m.iter().filter(|(k, _)| k.starts_with("x-")) {
        vendor_extension(&mut out, 31, k, v);
    }
    out
}

/// gnostic's `PathItem` with its PATCH `Operation`.
fn path_item(item: &Value) -> Proto {
    let mut out = Proto::default();
    let Some(op) = item.get("patch") else {
        return out;
    };
    let mut operation = Proto::default();
    let text = |key: &str| op.get(key).and_then(Value::as_str).unwrap_or_default();
    operation.string(3, text("description"));
    operation.string(5, text("operationId"));
    for p in op["parameters"].as_array().into_iter().flatten() {
        let mut query = Proto::default();
        query.string(2, p["in"].as_str().unwrap_or("query"));
        query.string(3, p["description"].as_str().unwrap_or_default());
        query.string(4, p["name"].as_str().unwrap_or_default());
        query.string(6, p["type"].as_str().unwrap_or("string"));
        if p["uniqueItems"] == json!(true) {
            query.varint(20, 1);
        }
        let mut non_body = Proto::default();
        non_body.message(3, query);
        let mut parameter = Proto::default();
        parameter.message(2, non_body);
        let mut parameters_item = Proto::default();
        parameters_item.message(1, parameter);
        operation.message(8, parameters_item);
    }
    let mut responses = Proto::default();
    for (code, r) in op["responses"].as_object().into_iter().flatten() {
        let mut response = Proto::default();
        response.string(1, r["description"].as_str().unwrap_or_default());
        let mut value = Proto::default();
        value.message(1, response);
        let mut named = Proto::default();
        named.string(1, code);
        named.message(2, value);
        responses.message(1, named);
    }
    operation.message(9, responses);
    for (k, v) in op
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, _)| k.starts_with("x-"))
    {
        vendor_extension(&mut operation, 13, k, v);
    }
    out.message(8, operation);
    out
}

/// A protobuf message being written: fields in the order they are added.
#[derive(Default)]
struct Proto(Vec<u8>);

impl Proto {
    fn raw_varint(&mut self, mut n: u64) {
        while n >= 0x80 {
            self.0.push((n as u8 & 0x7f) | 0x80);
            n >>= 7;
        }
        self.0.push(n as u8);
    }

    fn tag(&mut self, field: u32, wire_type: u8) {
        self.raw_varint(u64::from(field) << 3 | u64::from(wire_type));
    }

    fn varint(&mut self, field: u32, n: u64) {
        self.tag(field, 0);
        self.raw_varint(n);
    }

    fn double(&mut self, field: u32, n: f64) {
        self.tag(field, 1);
        self.0.extend_from_slice(&n.to_le_bytes());
    }

    fn bytes(&mut self, field: u32, bytes: &[u8]) {
        self.tag(field, 2);
        self.raw_varint(bytes.len() as u64);
        self.0.extend_from_slice(bytes);
    }

    fn string(&mut self, field: u32, s: &str) {
        self.bytes(field, s.as_bytes());
    }

    fn message(&mut self, field: u32, m: Proto) {
        self.bytes(field, &m.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rest::protobuf::wire;

    #[test]
    fn definitions_are_v3_components_in_v2_terms() {
        let doc = document(&CustomKinds::default());
        let defs = &doc["definitions"];
        let pod = &defs["io.k8s.api.core.v1.Pod"];
        assert_eq!(
            pod["properties"]["spec"]["$ref"],
            "#/definitions/io.k8s.api.core.v1.PodSpec"
        );
        assert!(pod["properties"]["spec"].get("allOf").is_none());
        assert_eq!(
            pod["x-kubernetes-group-version-kind"],
            json!([{"group": "", "version": "v1", "kind": "Pod"}])
        );
        let ios = &defs["io.k8s.apimachinery.pkg.util.intstr.IntOrString"];
        assert_eq!(ios["type"], "string");
        assert_eq!(ios["format"], "int-or-string");
        assert!(ios.get("anyOf").is_none());
        assert_eq!(
            defs["io.k8s.apimachinery.pkg.api.resource.Quantity"]["type"],
            "string"
        );
        let text = doc.to_string();
        assert!(!text.contains("#/components/"), "every reference is v2's");
        let patch =
            &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
        let validation = patch["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["name"] == "fieldValidation")
            .expect("fieldValidation");
        assert_eq!(validation["type"], "string");
        assert!(validation.get("schema").is_none());
    }

    #[test]
    fn the_protobuf_document_carries_swagger_info_paths_and_definitions() {
        let doc = document(&CustomKinds::default());
        let bytes = protobuf(&doc);
        let fields = wire::fields(&bytes).expect("decodes");
        assert_eq!(wire::bytes_of(&fields, 1), Some(&b"2.0"[..]));
        let info = wire::fields(wire::bytes_of(&fields, 2).expect("info")).expect("info");
        assert_eq!(wire::bytes_of(&info, 1), Some(&b"Kubernetes"[..]));
        let definitions =
            wire::fields(wire::bytes_of(&fields, 9).expect("definitions")).expect("decodes");
        let count = doc["definitions"].as_object().map_or(0, Map::len);
        assert!(count > 100);
        assert_eq!(definitions.len(), count, "one NamedSchema per definition");
        // The Pod's definition: its name, then a Schema whose vendor extension (field 31,
        // a two-byte tag) names its group, version and kind.
        let pod = definitions
            .iter()
            .filter_map(|f| match f.raw {
                wire::Raw::Bytes(b) => wire::fields(b).ok(),
                _ => None,
            })
            .find(|named| wire::bytes_of(named, 1) == Some(&b"io.k8s.api.core.v1.Pod"[..]))
            .expect("pod");
        let schema = wire::fields(wire::bytes_of(&pod, 2).expect("schema")).expect("schema");
        let extension =
            wire::fields(wire::bytes_of(&schema, 31).expect("extension")).expect("named any");
        assert_eq!(
            wire::bytes_of(&extension, 1),
            Some(&b"x-kubernetes-group-version-kind"[..])
        );
        let ty = wire::fields(wire::bytes_of(&schema, 22).expect("type")).expect("type");
        assert_eq!(wire::bytes_of(&ty, 1), Some(&b"object"[..]));
        let paths = wire::fields(wire::bytes_of(&fields, 8).expect("paths")).expect("paths");
        assert_eq!(
            paths.len(),
            doc["paths"].as_object().map_or(0, Map::len),
            "one NamedPathItem per path"
        );
    }
}
