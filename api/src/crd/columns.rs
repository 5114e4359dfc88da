//! A custom kind's Table columns: Name, then the definition's additionalPrinterColumns (or Age
//! when it names none), each cell read from the object by the column's JSONPath as Kubernetes'
//! apiextensions server reads it: `date` columns shown as an age, integers and numbers as
//! numbers, anything else as text.

use chrono::{DateTime, Utc};
use keel_types::crd::CustomVersion;
use serde_json::{json, Value};

/// The column definitions of `version`'s Table.
pub fn definitions(version: &CustomVersion) -> Vec<Value> {
    let mut out = vec![json!({
        "name": "Name", "type": "string", "format": "name", "priority": 0,
        "description": "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names"
    })];
    if version.columns.is_empty() {
        out.push(json!({
            "name": "Age", "type": "date", "format": "", "priority": 0,
            "description": "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC."
        }));
    }
    for c in &version.columns {
        out.push(json!({
            "name": c.name,
            "type": c.type_,
            "format": c.format.clone().unwrap_or_default(),
            "description": c.description.clone().unwrap_or_default(),
            "priority": c.priority.unwrap_or(0),
        }));
    }
    out
}

/// The cells of `obj`'s row.
pub fn cells(version: &CustomVersion, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let mut out = vec![obj.pointer("/metadata/name").cloned().unwrap_or(json!(""))];
    if version.columns.is_empty() {
        let created = obj
            .pointer("/metadata/creationTimestamp")
            .and_then(Value::as_str);
        out.push(json!(crate::rest::table_age(created, now)));
    }
    for c in &version.columns {
        let found = find(obj, &c.json_path);
        out.push(match (c.type_.as_str(), found) {
            (_, None) => Value::Null,
            ("date", Some(Value::String(t))) => json!(crate::rest::table_age(Some(t), now)),
            ("integer" | "number" | "boolean", Some(v)) if !v.is_string() => v.clone(),
            (_, Some(Value::String(s))) => json!(s),
            (_, Some(v)) => json!(v.to_string()),
        });
    }
    out
}

/// The value at a simple JSONPath (`.spec.replicas`, `{.status.conditions[0].type}`,
/// `.metadata.labels['app.kubernetes.io/name']`, `.items[*].name` for the first match);
/// None where nothing is.
pub fn find<'a>(obj: &'a Value, path: &str) -> Option<&'a Value> {
    let path = path.trim();
    let path = path
        .strip_prefix('{')
        .and_then(|p| p.strip_suffix('}'))
        .unwrap_or(path);
    let mut at = obj;
    let mut rest = path.strip_prefix('.').unwrap_or(path);
    while !rest.is_empty() {
        if let Some(inner) = rest.strip_prefix('[') {
            let end = inner.find(']')?;
            let index = inner[..end].trim();
            rest = &inner[end + 1..];
            at = if let Some(key) = quoted(index) {
                at.get(key)?
            } else if index == "*" {
                at.as_array()?.first()?
            } else {
                at.get(index.parse::<usize>().ok()?)?
            };
        } else {
            let rest_trimmed = rest.strip_prefix('.').unwrap_or(rest);
            let end = rest_trimmed.find(['.', '[']).unwrap_or(rest_trimmed.len());
            let key = &rest_trimmed[..end];
            rest = &rest_trimmed[end..];
            if !key.is_empty() {
                at = at.get(key)?;
            }
        }
    }
    Some(at)
}

fn quoted(s: &str) -> Option<&str> {
    s.strip_prefix('\'')
        .and_then(|s| s.strip_suffix('\''))
        .or_else(|| s.strip_prefix('"').and_then(|s| s.strip_suffix('"')))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_find_fields_indices_quoted_keys_and_wildcards() {
        let obj = json!({"spec": {"replicas": 3, "ports": [{"name": "http"}]},
            "metadata": {"labels": {"app.kubernetes.io/name": "web"}}});
        assert_eq!(find(&obj, ".spec.replicas"), Some(&json!(3)));
        assert_eq!(find(&obj, "{.spec.ports[0].name}"), Some(&json!("http")));
        assert_eq!(find(&obj, ".spec.ports[*].name"), Some(&json!("http")));
        assert_eq!(
            find(&obj, ".metadata.labels['app.kubernetes.io/name']"),
            Some(&json!("web"))
        );
        assert_eq!(find(&obj, ".spec.missing"), None);
        assert_eq!(find(&obj, ".spec.ports[4]"), None);
    }
}
