//! A custom object against its definition's OpenAPI v3 schema, as the apiextensions server
//! treats it: fields the schema does not name are pruned (unless it preserves unknown fields),
//! defaults fill what is absent, and the value is validated with Kubernetes' messages
//! (`spec.replicas: Invalid value: "string": spec.replicas in body must be of type integer:
//! "string"`).

use std::collections::BTreeMap;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
};
use serde_json::{Map, Value};

use crate::field::{FieldError, Rendered};
use crate::path::FieldPath;

/// The fields every object has whatever its schema says: never pruned at an object's root (or
/// an embedded resource's).
const TYPE_AND_META: [&str; 3] = ["apiVersion", "kind", "metadata"];

/// The schema of the items of a list, if it has one.
pub fn items(schema: &JSONSchemaProps) -> Option<&JSONSchemaProps> {
    match &schema.items {
        Some(JSONSchemaPropsOrArray::Schema(s)) => Some(s),
        Some(JSONSchemaPropsOrArray::Schemas(list)) => list.first(),
        None => None,
    }
}

/// The schema of the values of a map (`additionalProperties`), if it has one.
pub fn additional(schema: &JSONSchemaProps) -> Option<&JSONSchemaProps> {
    match &schema.additional_properties {
        Some(JSONSchemaPropsOrBool::Schema(s)) => Some(s),
        _ => None,
    }
}

fn properties(schema: &JSONSchemaProps) -> Option<&BTreeMap<String, JSONSchemaProps>> {
    schema.properties.as_ref()
}

/// The schema of `key`'s value in an object `schema` describes: a property's, else the
/// map's value schema.
pub fn field<'a>(schema: &'a JSONSchemaProps, key: &str) -> Option<&'a JSONSchemaProps> {
    properties(schema)
        .and_then(|p| p.get(key))
        .or_else(|| additional(schema))
}

fn preserves_unknown(schema: &JSONSchemaProps) -> bool {
    schema.x_kubernetes_preserve_unknown_fields == Some(true)
}

fn embedded(schema: &JSONSchemaProps) -> bool {
    schema.x_kubernetes_embedded_resource == Some(true)
}

/// Drops every field of `value` the schema does not name, and returns their paths (in
/// document order), as Kubernetes' pruning does; `root` is true for the object itself, whose
/// apiVersion, kind and metadata are kept.
pub fn prune(schema: &JSONSchemaProps, value: &mut Value, root: bool) -> Vec<String> {
    let mut dropped = Vec::new();
    prune_at(schema, value, root, &FieldPath::default(), &mut dropped);
    dropped
}

fn prune_at(
    schema: &JSONSchemaProps,
    value: &mut Value,
    keeps_meta: bool,
    path: &FieldPath,
    dropped: &mut Vec<String>,
) {
    match value {
        Value::Object(map) => {
            let keeps_meta = keeps_meta || embedded(schema);
            let props = properties(schema);
            let values = additional(schema);
            let mut gone = Vec::new();
            for (key, child) in map.iter_mut() {
                let child_path = path.child(key);
                if let Some(s) = props.and_then(|p| p.get(key)) {
                    prune_at(s, child, false, &child_path, dropped);
                } else if let Some(s) = values {
                    prune_at(s, child, false, &child_path, dropped);
                } else if keeps_meta && TYPE_AND_META.contains(&key.as_str()) {
                    // Metadata is the ObjectMeta every object has; pruned as such elsewhere.
                } else if !preserves_unknown(schema)
                    && !matches!(
                        schema.additional_properties,
                        Some(JSONSchemaPropsOrBool::Bool(true))
                    )
                {
                    gone.push(key.clone());
                    dropped.push(child_path.to_string());
                }
            }
            for key in gone {
                map.remove(&key);
            }
        }
        Value::Array(list) => {
            if let Some(s) = items(schema) {
                for (i, child) in list.iter_mut().enumerate() {
                    prune_at(s, child, false, &path.index(i), dropped);
                }
            }
        }
        _ => {}
    }
}

/// Fills every absent field that has a default, as Kubernetes defaults custom objects (after
/// pruning, on every request and on every read).
pub fn default(schema: &JSONSchemaProps, value: &mut Value) {
    match value {
        Value::Object(map) => {
            if let Some(props) = properties(schema) {
                for (key, s) in props {
                    if !map.contains_key(key) {
                        if let Some(d) = &s.default {
                            map.insert(key.clone(), d.0.clone());
                        }
                    }
                    if let Some(child) = map.get_mut(key) {
                        default(s, child);
                    }
                }
            }
            if let Some(s) = additional(schema) {
                let named = properties(schema);
                for (key, child) in map.iter_mut() {
                    if named.is_none_or(|p| !p.contains_key(key)) {
                        default(s, child);
                    }
                }
            }
        }
        Value::Array(list) => {
            if let Some(s) = items(schema) {
                list.iter_mut().for_each(|child| default(s, child));
            }
        }
        _ => {}
    }
}

/// Every way `value` breaks `schema`, with paths from the object's root.
pub fn validate(schema: &JSONSchemaProps, value: &Value) -> Vec<FieldError> {
    let mut errors = Vec::new();
    validate_at(schema, value, &FieldPath::default(), &mut errors);
    errors
}

/// The JSON type of a value as OpenAPI names it.
pub(crate) fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if is_integer(n) => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn is_integer(n: &serde_json::Number) -> bool {
    n.is_i64()
        || n.is_u64()
        || n.as_f64()
            .is_some_and(|f| f.fract() == 0.0 && f.is_finite())
}

fn type_matches(schema: &JSONSchemaProps, value: &Value) -> bool {
    if value.is_null() {
        return schema.nullable == Some(true);
    }
    if schema.x_kubernetes_int_or_string == Some(true) {
        return matches!(type_name(value), "integer" | "string");
    }
    match schema.type_.as_deref() {
        None | Some("") => true,
        Some("number") => value.is_number(),
        Some(t) => type_name(value) == t,
    }
}

fn validate_at(
    schema: &JSONSchemaProps,
    value: &Value,
    path: &FieldPath,
    errors: &mut Vec<FieldError>,
) {
    let here = if path.as_str().is_empty() {
        "body".to_string()
    } else {
        format!("{path} in body")
    };
    if !type_matches(schema, value) {
        let wanted = if schema.x_kubernetes_int_or_string == Some(true) {
            "integer,string".to_string()
        } else {
            schema.type_.clone().unwrap_or_default()
        };
        let actual = type_name(value);
        errors.push(FieldError::type_invalid(
            path,
            actual,
            format!(
                "{here} must be of type {wanted}: {}",
                crate::field::go_quote(actual)
            ),
        ));
        return;
    }
    if value.is_null() {
        return;
    }
    if let Some(allowed) = &schema.enum_ {
        if !allowed.iter().any(|a| &a.0 == value) {
            let rendered: Vec<String> = allowed
                .iter()
                .map(|a| match &a.0 {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect();
            let supported: Vec<&str> = rendered.iter().map(String::as_str).collect();
            errors.push(FieldError::not_supported(path, value, &supported));
        }
    }
    match value {
        Value::Number(n) => number(schema, n, path, &here, errors),
        Value::String(s) => string(schema, s, path, &here, errors),
        Value::Array(list) => array(schema, list, path, &here, errors),
        Value::Object(map) => object(schema, map, path, &here, errors),
        _ => {}
    }
    for sub in schema.all_of.iter().flatten() {
        validate_at(sub, value, path, errors);
    }
}

fn number(
    schema: &JSONSchemaProps,
    n: &serde_json::Number,
    path: &FieldPath,
    here: &str,
    errors: &mut Vec<FieldError>,
) {
    let Some(x) = n.as_f64() else {
        return;
    };
    let shown = Rendered(n.to_string());
    if let Some(max) = schema.maximum {
        let exclusive = schema.exclusive_maximum == Some(true);
        if x > max || (exclusive && x == max) {
            let bound = if exclusive {
                "less than"
            } else {
                "less than or equal to"
            };
            errors.push(FieldError::invalid(
                path,
                shown.clone(),
                format!("{here} should be {bound} {}", float(max)),
            ));
        }
    }
    if let Some(min) = schema.minimum {
        let exclusive = schema.exclusive_minimum == Some(true);
        if x < min || (exclusive && x == min) {
            let bound = if exclusive {
                "greater than"
            } else {
                "greater than or equal to"
            };
            errors.push(FieldError::invalid(
                path,
                shown.clone(),
                format!("{here} should be {bound} {}", float(min)),
            ));
        }
    }
    if let Some(m) = schema.multiple_of.filter(|m| *m > 0.0) {
        if (x / m).fract() != 0.0 {
            errors.push(FieldError::invalid(
                path,
                shown,
                format!("{here} should be a multiple of {}", float(m)),
            ));
        }
    }
    if schema.format.as_deref() == Some("int32")
        && is_integer(n)
        && (x > i32::MAX as f64 || x < i32::MIN as f64)
    {
        errors.push(FieldError::invalid(
            path,
            Rendered(n.to_string()),
            format!(
                "{here} must be of type int32: {}",
                crate::field::go_quote(&n.to_string())
            ),
        ));
    }
}

/// A bound as Go's `%v` prints a float64: no trailing `.0` for whole numbers.
fn float(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        x.to_string()
    }
}

fn string(
    schema: &JSONSchemaProps,
    s: &str,
    path: &FieldPath,
    here: &str,
    errors: &mut Vec<FieldError>,
) {
    let chars = s.chars().count() as i64;
    if let Some(max) = schema.max_length {
        if chars > max {
            errors.push(FieldError::too_long(path, max.max(0) as usize));
        }
    }
    if let Some(min) = schema.min_length {
        if chars < min {
            errors.push(FieldError::invalid(
                path,
                s,
                format!("{here} should be at least {min} chars long"),
            ));
        }
    }
    if let Some(pattern) = &schema.pattern {
        match regex::Regex::new(pattern) {
            Ok(re) if !re.is_match(s) => {
                errors.push(FieldError::invalid(
                    path,
                    s,
                    format!("{here} should match '{pattern}'"),
                ));
            }
            _ => {}
        }
    }
    if let Some(format) = schema.format.as_deref() {
        if !format_holds(format, s) {
            errors.push(FieldError::invalid(
                path,
                s,
                format!(
                    "{here} must be of type {format}: {}",
                    crate::field::go_quote(s)
                ),
            ));
        }
    }
}

/// The string formats Kubernetes checks; other formats are accepted as any string, as the
/// apiextensions server does for formats it does not know.
fn format_holds(format: &str, s: &str) -> bool {
    match format {
        "date-time" | "datetime" => chrono::DateTime::parse_from_rfc3339(s).is_ok(),
        "date" => chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok(),
        "uuid" => {
            let hex: String = s.chars().filter(|c| *c != '-').collect();
            s.len() == 36 && hex.len() == 32 && hex.chars().all(|c| c.is_ascii_hexdigit())
        }
        "ipv4" => s.parse::<std::net::Ipv4Addr>().is_ok(),
        "ipv6" => s.parse::<std::net::Ipv6Addr>().is_ok(),
        "cidr" => s.split_once('/').is_some_and(|(ip, bits)| {
            ip.parse::<std::net::IpAddr>().is_ok() && bits.parse::<u8>().is_ok()
        }),
        "byte" => {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.decode(s).is_ok()
        }
        _ => true,
    }
}

fn array(
    schema: &JSONSchemaProps,
    list: &[Value],
    path: &FieldPath,
    here: &str,
    errors: &mut Vec<FieldError>,
) {
    let n = list.len() as i64;
    if let Some(max) = schema.max_items {
        if n > max {
            errors.push(FieldError::too_many(path, list.len(), max.max(0) as usize));
        }
    }
    if let Some(min) = schema.min_items {
        if n < min {
            errors.push(FieldError::invalid(
                path,
                Rendered(n.to_string()),
                format!("{here} should have at least {min} items"),
            ));
        }
    }
    let set = schema.unique_items == Some(true)
        || schema.x_kubernetes_list_type.as_deref() == Some("set");
    if set {
        for (i, item) in list.iter().enumerate() {
            if list[..i].contains(item) {
                errors.push(FieldError::duplicate(&path.index(i), item));
            }
        }
    }
    if schema.x_kubernetes_list_type.as_deref() == Some("map") {
        let keys = schema
            .x_kubernetes_list_map_keys
            .clone()
            .unwrap_or_default();
        let key_of = |item: &Value| -> Vec<Value> {
            keys.iter()
                .map(|k| item.get(k).cloned().unwrap_or(Value::Null))
                .collect()
        };
        for (i, item) in list.iter().enumerate() {
            let key = key_of(item);
            if list[..i].iter().any(|other| key_of(other) == key) {
                let shown: Map<String, Value> =
                    keys.iter().cloned().zip(key.iter().cloned()).collect();
                errors.push(FieldError::duplicate(
                    &path.index(i),
                    Rendered(Value::Object(shown).to_string()),
                ));
            }
        }
    }
    if let Some(s) = items(schema) {
        for (i, item) in list.iter().enumerate() {
            validate_at(s, item, &path.index(i), errors);
        }
    }
}

fn object(
    schema: &JSONSchemaProps,
    map: &Map<String, Value>,
    path: &FieldPath,
    here: &str,
    errors: &mut Vec<FieldError>,
) {
    for required in schema.required.iter().flatten() {
        if !map.contains_key(required) {
            errors.push(FieldError::required(&path.child(required), ""));
        }
    }
    let n = map.len() as i64;
    if let Some(max) = schema.max_properties {
        if n > max {
            errors.push(FieldError::too_many(path, map.len(), max.max(0) as usize));
        }
    }
    if let Some(min) = schema.min_properties {
        if n < min {
            errors.push(FieldError::invalid(
                path,
                Rendered(n.to_string()),
                format!("{here} should have at least {min} properties"),
            ));
        }
    }
    let props = properties(schema);
    for (key, child) in map {
        let child_path = path.child(key);
        if let Some(s) = props.and_then(|p| p.get(key)) {
            validate_at(s, child, &child_path, errors);
        } else if let Some(s) = additional(schema) {
            validate_at(s, child, &child_path, errors);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema(v: Value) -> JSONSchemaProps {
        serde_json::from_value(v).expect("schema")
    }

    fn widget_schema() -> JSONSchemaProps {
        schema(json!({
            "type": "object",
            "properties": {
                "spec": {
                    "type": "object",
                    "required": ["size"],
                    "properties": {
                        "size": {"type": "integer", "minimum": 1, "maximum": 10},
                        "color": {"type": "string", "enum": ["red", "blue"], "default": "red"},
                        "name": {"type": "string", "maxLength": 5, "pattern": "^[a-z]+$"},
                        "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 2},
                        "port": {"x-kubernetes-int-or-string": true},
                        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                        "raw": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                        "ports": {"type": "array", "x-kubernetes-list-type": "map",
                            "x-kubernetes-list-map-keys": ["name"],
                            "items": {"type": "object", "properties": {"name": {"type": "string"},
                                "number": {"type": "integer", "default": 80}}}}
                    }
                },
                "status": {"type": "object", "properties": {"ready": {"type": "boolean"}}}
            }
        }))
    }

    fn messages(errors: &[FieldError]) -> Vec<String> {
        let mut out: Vec<String> = errors.iter().map(ToString::to_string).collect();
        out.sort();
        out
    }

    #[test]
    fn unknown_fields_are_pruned_except_under_preserved_or_open_maps_and_type_meta() {
        let mut obj = json!({"apiVersion": "example.com/v1", "kind": "Widget",
            "metadata": {"name": "w"},
            "spec": {"size": 1, "bogus": 1, "labels": {"a": "b"}, "raw": {"anything": {"x": 1}},
                "ports": [{"name": "http", "extra": true}]},
            "other": 2});
        let dropped = prune(&widget_schema(), &mut obj, true);
        assert_eq!(dropped, ["other", "spec.bogus", "spec.ports[0].extra"]);
        assert_eq!(obj["metadata"]["name"], "w");
        assert_eq!(obj["spec"]["labels"]["a"], "b");
        assert_eq!(obj["spec"]["raw"]["anything"]["x"], 1);
        assert!(obj["spec"].get("bogus").is_none());
    }

    #[test]
    fn defaults_fill_absent_fields_at_every_depth() {
        let mut obj =
            json!({"spec": {"size": 1, "ports": [{"name": "http"}, {"name": "x", "number": 8}]}});
        default(&widget_schema(), &mut obj);
        assert_eq!(obj["spec"]["color"], "red");
        assert_eq!(obj["spec"]["ports"][0]["number"], 80);
        assert_eq!(obj["spec"]["ports"][1]["number"], 8);
        assert!(obj.get("status").is_none(), "no default, not made");
    }

    #[test]
    fn errors_read_as_kubernetes_writes_them() {
        let s = widget_schema();
        let errs = validate(&s, &json!({"spec": {"size": "big"}}));
        assert_eq!(
            messages(&errs),
            [
                r#"spec.size: Invalid value: "string": spec.size in body must be of type integer: "string""#
            ]
        );
        let errs = validate(
            &s,
            &json!({"spec": {"size": 11, "color": "pink", "name": "Abcdefg",
            "tags": ["a", "b", "c"], "port": true}}),
        );
        assert_eq!(
            messages(&errs),
            [
                r#"spec.color: Unsupported value: "pink": supported values: "red", "blue""#,
                r#"spec.name: Invalid value: "Abcdefg": spec.name in body should match '^[a-z]+$'"#,
                r#"spec.name: Too long: may not be more than 5 bytes"#,
                r#"spec.port: Invalid value: "boolean": spec.port in body must be of type integer,string: "boolean""#,
                r#"spec.size: Invalid value: 11: spec.size in body should be less than or equal to 10"#,
                r#"spec.tags: Too many: 3: must have at most 2 items"#,
            ]
        );
        let errs = validate(&s, &json!({"spec": {}}));
        assert_eq!(messages(&errs), ["spec.size: Required value"]);
        let errs = validate(
            &s,
            &json!({"spec": {"size": 2, "ports": [{"name": "a"}, {"name": "a"}]}}),
        );
        assert_eq!(
            messages(&errs),
            [r#"spec.ports[1]: Duplicate value: {"name":"a"}"#]
        );
        assert!(validate(
            &s,
            &json!({"spec": {"size": 2, "port": "http", "raw": {"k": [1]}}})
        )
        .is_empty());
        assert!(
            validate(&s, &json!({"spec": {"size": 2.0}})).is_empty(),
            "2.0 is an integer"
        );
    }
}
