//! The CustomResourceDefinition object itself: what Kubernetes 1.32 refuses in one (with its
//! paths and messages), and the status the server keeps on it (accepted names, the
//! NamesAccepted, Established and Terminating conditions, stored versions).

use std::collections::BTreeMap;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
};
use serde_json::{json, Value};

use crate::field::FieldError;
use crate::names;
use crate::path::FieldPath;

/// Checks a definition on create (`old` None) and update.
pub fn validate(obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let crd: CustomResourceDefinition = match serde_json::from_value(obj.clone()) {
        Ok(c) => c,
        Err(e) => {
            return vec![FieldError::invalid(
                &FieldPath::new("spec"),
                crate::field::Rendered("<object>".into()),
                e.to_string(),
            )]
        }
    };
    let mut errs = Vec::new();
    let spec_path = FieldPath::new("spec");
    let spec = &crd.spec;
    let name = crd.metadata.name.clone().unwrap_or_default();
    let expected = format!("{}.{}", spec.names.plural, spec.group);
    if name != expected {
        errs.push(FieldError::invalid(
            &FieldPath::new("metadata").child("name"),
            name.as_str(),
            "must be spec.names.plural+\".\"+spec.group",
        ));
    }
    let group = spec_path.child("group");
    if spec.group.is_empty() {
        errs.push(FieldError::required(&group, ""));
    } else {
        for m in names::dns1123_subdomain(&spec.group) {
            errs.push(FieldError::invalid(&group, spec.group.as_str(), m));
        }
        if !spec.group.contains('.') {
            errs.push(FieldError::invalid(
                &group,
                spec.group.as_str(),
                "should be a domain with at least one dot",
            ));
        }
    }
    let scope = spec_path.child("scope");
    if !matches!(spec.scope.as_str(), "Namespaced" | "Cluster") {
        errs.push(FieldError::not_supported(
            &scope,
            spec.scope.as_str(),
            &["Cluster", "Namespaced"],
        ));
    }
    errs.extend(validate_names(&spec.names, &spec_path.child("names")));
    let versions = spec_path.child("versions");
    if spec.versions.is_empty() {
        errs.push(FieldError::invalid(
            &versions,
            crate::field::Rendered("null".into()),
            "must have exactly one version marked as storage version",
        ));
    }
    let storage = spec.versions.iter().filter(|v| v.storage).count();
    if !spec.versions.is_empty() && storage != 1 {
        errs.push(FieldError::invalid(
            &versions,
            crate::field::Rendered(format!("{storage}")),
            "must have exactly one version marked as storage version",
        ));
    }
    let mut seen = Vec::new();
    for (i, v) in spec.versions.iter().enumerate() {
        let at = versions.index(i);
        if seen.contains(&v.name) {
            errs.push(FieldError::duplicate(&at.child("name"), v.name.as_str()));
        }
        seen.push(v.name.clone());
        for m in names::dns1035_label(&v.name) {
            errs.push(FieldError::invalid(&at.child("name"), v.name.as_str(), m));
        }
        let schema_at = at.child("schema").child("openAPIV3Schema");
        match v
            .schema
            .as_ref()
            .and_then(|s| s.open_api_v3_schema.as_ref())
        {
            None => errs.push(FieldError::required(&schema_at, "schemas are required")),
            Some(schema) => errs.extend(structural(schema, &schema_at, true)),
        }
        for (j, c) in v.additional_printer_columns.iter().flatten().enumerate() {
            let col = at.child("additionalPrinterColumns").index(j);
            if c.name.is_empty() {
                errs.push(FieldError::required(&col.child("name"), ""));
            }
            if !matches!(
                c.type_.as_str(),
                "integer" | "number" | "string" | "boolean" | "date"
            ) {
                errs.push(FieldError::not_supported(
                    &col.child("type"),
                    c.type_.as_str(),
                    &["boolean", "date", "integer", "number", "string"],
                ));
            }
            if c.json_path.is_empty() {
                errs.push(FieldError::required(&col.child("jsonPath"), ""));
            }
        }
    }
    if !spec.versions.iter().any(|v| v.served) && !spec.versions.is_empty() {
        errs.push(FieldError::invalid(
            &versions,
            crate::field::Rendered("[]".into()),
            "must have at least one served version",
        ));
    }
    if let Some(old) =
        old.and_then(|o| serde_json::from_value::<CustomResourceDefinition>(o.clone()).ok())
    {
        if old.spec.scope != spec.scope {
            errs.push(FieldError::invalid(
                &scope,
                spec.scope.as_str(),
                crate::validation::FIELD_IMMUTABLE,
            ));
        }
        if old.spec.group != spec.group {
            errs.push(FieldError::invalid(
                &group,
                spec.group.as_str(),
                crate::validation::FIELD_IMMUTABLE,
            ));
        }
    }
    errs
}

fn validate_names(
    n: &k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinitionNames,
    at: &FieldPath,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let label = |field: &str, value: &str, errs: &mut Vec<FieldError>| {
        let p = at.child(field);
        if value.is_empty() {
            errs.push(FieldError::required(&p, ""));
        } else {
            for m in names::dns1035_label(value) {
                errs.push(FieldError::invalid(&p, value, m));
            }
        }
    };
    label("plural", &n.plural, &mut errs);
    if let Some(s) = n.singular.as_deref().filter(|s| !s.is_empty()) {
        label("singular", s, &mut errs);
    }
    for (i, s) in n.short_names.iter().flatten().enumerate() {
        for m in names::dns1035_label(s) {
            errs.push(FieldError::invalid(
                &at.child("shortNames").index(i),
                s.as_str(),
                m,
            ));
        }
    }
    for (field, value) in [
        ("kind", Some(n.kind.as_str())),
        ("listKind", n.list_kind.as_deref()),
    ] {
        let p = at.child(field);
        match value {
            Some("") if field == "kind" => errs.push(FieldError::required(&p, "")),
            Some(v) if !v.is_empty() && !is_kind_name(v) => errs.push(FieldError::invalid(
                &p,
                v,
                "may have mixed case, but should otherwise match: ^[a-z]([-a-z0-9]*[a-z0-9])?$ (e.g. 'MyName',  or 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')",
            )),
            _ => {}
        }
    }
    if !n.kind.is_empty() && n.list_kind.as_deref() == Some(n.kind.as_str()) {
        errs.push(FieldError::invalid(
            &at.child("listKind"),
            n.kind.as_str(),
            "kind and listKind may not be the same",
        ));
    }
    errs
}

/// A kind name: a DNS-1035 label once lower-cased.
fn is_kind_name(kind: &str) -> bool {
    names::dns1035_label(&kind.to_ascii_lowercase()).is_empty()
}

/// The structural-schema rules Kubernetes enforces on a v1 definition: every field says its
/// type (unless it is int-or-string or preserves unknown fields), the root is an object, and
/// the root's metadata may constrain only name and generateName.
fn structural(schema: &JSONSchemaProps, at: &FieldPath, root: bool) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let typed = schema.type_.as_deref().is_some_and(|t| !t.is_empty());
    let open = schema.x_kubernetes_int_or_string == Some(true)
        || schema.x_kubernetes_preserve_unknown_fields == Some(true);
    if root && schema.type_.as_deref() != Some("object") {
        match &schema.type_ {
            Some(t) if !t.is_empty() => errs.push(FieldError::invalid(
                &at.child("type"),
                t.as_str(),
                "must be object at the root",
            )),
            _ => errs.push(FieldError::required(
                &at.child("type"),
                "must not be empty at the root",
            )),
        }
    } else if !typed && !open {
        errs.push(FieldError::required(
            &at.child("type"),
            "must not be empty for specified object fields",
        ));
    }
    if let Some(t) = schema.type_.as_deref().filter(|t| !t.is_empty()) {
        if !matches!(
            t,
            "object" | "array" | "string" | "integer" | "number" | "boolean"
        ) {
            errs.push(FieldError::not_supported(
                &at.child("type"),
                t,
                &["array", "boolean", "integer", "number", "object", "string"],
            ));
        }
    }
    if schema.type_.as_deref() == Some("array") && schema.items.is_none() {
        errs.push(FieldError::required(
            &at.child("items"),
            "must be specified",
        ));
    }
    if schema.properties.is_some()
        && matches!(
            schema.additional_properties,
            Some(JSONSchemaPropsOrBool::Schema(_))
        )
    {
        errs.push(FieldError::forbidden(
            &at.child("additionalProperties"),
            "additionalProperties and properties are mutual exclusive",
        ));
    }
    let props: &BTreeMap<String, JSONSchemaProps> = match &schema.properties {
        Some(p) => p,
        None => &BTreeMap::new(),
    };
    for (key, child) in props {
        let child_at = at.child("properties").key(key);
        if root && key == "metadata" {
            errs.extend(root_metadata(child, &child_at));
            continue;
        }
        errs.extend(structural(child, &child_at, false));
    }
    if let Some(JSONSchemaPropsOrArray::Schema(items)) = &schema.items {
        errs.extend(structural(items, &at.child("items"), false));
    }
    if let Some(JSONSchemaPropsOrBool::Schema(values)) = &schema.additional_properties {
        errs.extend(structural(values, &at.child("additionalProperties"), false));
    }
    for (i, rule) in schema.x_kubernetes_validations.iter().flatten().enumerate() {
        if let Some(e) = super::cel::compile_error(&rule.rule) {
            errs.push(FieldError::invalid(
                &at.child("x-kubernetes-validations").index(i).child("rule"),
                rule.rule.as_str(),
                format!("compilation failed: {e}"),
            ));
        }
    }
    if let Some(default) = &schema.default {
        let mut problems = super::structural::validate(schema, &default.0);
        problems.retain(|e| e.kind != crate::field::ErrorKind::Required);
        for p in problems {
            errs.push(FieldError::invalid(
                &at.child("default"),
                &default.0,
                p.to_string(),
            ));
        }
    }
    errs
}

/// At the root, `metadata` may be typed object and constrain only name and generateName.
fn root_metadata(schema: &JSONSchemaProps, at: &FieldPath) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if schema.type_.as_deref().is_some_and(|t| t != "object") {
        errs.push(FieldError::invalid(
            &at.child("type"),
            schema.type_.as_deref().unwrap_or(""),
            "must be object",
        ));
    }
    for key in schema.properties.iter().flat_map(|p| p.keys()) {
        if key != "name" && key != "generateName" {
            errs.push(FieldError::forbidden(
                &at.child("properties").key(key),
                "must not be specified",
            ));
        }
    }
    errs
}

/// Whether the definition's names are accepted and its kind served.
pub fn is_established(obj: &Value) -> bool {
    condition(obj, "Established") == Some("True")
}

fn condition<'a>(obj: &'a Value, kind: &str) -> Option<&'a str> {
    obj.pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(kind))?
        .get("status")?
        .as_str()
}

/// The names another definition (or a built-in kind) already holds in a group.
#[derive(Debug, Default, Clone)]
pub struct TakenNames {
    pub plurals: Vec<String>,
    pub singulars: Vec<String>,
    pub short_names: Vec<String>,
    pub kinds: Vec<String>,
    pub list_kinds: Vec<String>,
}

impl TakenNames {
    /// Adds the accepted names of a stored definition.
    pub fn add_definition(&mut self, other: &Value) {
        let Some(accepted) = other.pointer("/status/acceptedNames") else {
            return;
        };
        let s = |f: &str| {
            accepted
                .get(f)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        self.plurals.push(s("plural"));
        self.singulars.push(s("singular"));
        self.kinds.push(s("kind"));
        self.list_kinds.push(s("listKind"));
        for n in accepted
            .get("shortNames")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            self.short_names.push(n.as_str().unwrap_or("").to_string());
        }
    }
}

/// Writes the status the server keeps on a definition: its names accepted unless `taken`
/// (the group's other definitions) holds one of them, then Established; the storage version
/// added to `storedVersions`; Terminating while it is being deleted. `now` stamps
/// conditions that change.
pub fn set_status(obj: &mut Value, taken: &TakenNames, now: &str) {
    let names = obj.pointer("/spec/names").cloned().unwrap_or(json!({}));
    let s = |f: &str| {
        names
            .get(f)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let plural = s("plural");
    let kind = s("kind");
    let singular = match s("singular") {
        x if x.is_empty() => kind.to_ascii_lowercase(),
        x => x,
    };
    let list_kind = match s("listKind") {
        x if x.is_empty() => format!("{kind}List"),
        x => x,
    };
    let short: Vec<String> = names
        .get("shortNames")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    let conflict = if taken.plurals.contains(&plural) || taken.singulars.contains(&plural) {
        Some(("PluralConflict", format!("\"{plural}\" is already in use")))
    } else if taken.plurals.contains(&singular) || taken.singulars.contains(&singular) {
        Some((
            "SingularConflict",
            format!("\"{singular}\" is already in use"),
        ))
    } else if let Some(n) = short
        .iter()
        .find(|n| taken.short_names.contains(n) || taken.plurals.contains(n))
    {
        Some(("ShortNamesConflict", format!("\"{n}\" is already in use")))
    } else if taken.kinds.contains(&kind) {
        Some(("KindConflict", format!("\"{kind}\" is already in use")))
    } else if taken.list_kinds.contains(&list_kind) {
        Some((
            "ListKindConflict",
            format!("\"{list_kind}\" is already in use"),
        ))
    } else {
        None
    };
    let mut status = obj.get("status").cloned().unwrap_or(json!({}));
    if !status.is_object() {
        status = json!({});
    }
    let already_established = condition(obj, "Established") == Some("True");
    let (names_accepted, established) = match &conflict {
        None => {
            let mut accepted = json!({"plural": plural, "singular": singular, "kind": kind, "listKind": list_kind});
            if !short.is_empty() {
                accepted["shortNames"] = json!(short);
            }
            if let Some(c) = names
                .get("categories")
                .filter(|c| c.as_array().is_some_and(|a| !a.is_empty()))
            {
                accepted["categories"] = c.clone();
            }
            status["acceptedNames"] = accepted;
            (
                ("True", "NoConflicts", "no conflicts found".to_string()),
                (
                    "True",
                    "InitialNamesAccepted",
                    "the initial names have been accepted".to_string(),
                ),
            )
        }
        Some((reason, message)) => {
            if status.get("acceptedNames").is_none() {
                status["acceptedNames"] = json!({"plural": "", "kind": ""});
            }
            (
                ("False", *reason, message.clone()),
                if already_established {
                    (
                        "True",
                        "InitialNamesAccepted",
                        "the initial names have been accepted".to_string(),
                    )
                } else {
                    (
                        "False",
                        "NotAccepted",
                        "not all names are accepted".to_string(),
                    )
                },
            )
        }
    };
    let mut conditions: Vec<Value> = status
        .get("conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    put_condition(&mut conditions, "NamesAccepted", names_accepted, now);
    put_condition(&mut conditions, "Established", established, now);
    status["conditions"] = json!(conditions);
    let mut stored: Vec<Value> = status
        .get("storedVersions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let storage = obj
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
        .and_then(|v| v.get("name").cloned());
    if let Some(v) = storage {
        if !stored.contains(&v) {
            stored.push(v);
        }
    }
    status["storedVersions"] = json!(stored);
    obj["status"] = status;
}

/// Marks a definition being deleted: Terminating, while its objects are deleted.
pub fn mark_terminating(obj: &mut Value, now: &str) {
    let mut conditions: Vec<Value> = obj
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    put_condition(
        &mut conditions,
        "Terminating",
        (
            "True",
            "InstanceDeletionInProgress",
            "CustomResource deletion is in progress".to_string(),
        ),
        now,
    );
    if !obj.get("status").is_some_and(Value::is_object) {
        obj["status"] = json!({});
    }
    obj["status"]["conditions"] = json!(conditions);
}

/// Sets a condition, keeping its transition time when its status does not change.
fn put_condition(
    conditions: &mut Vec<Value>,
    kind: &str,
    (status, reason, message): (&str, &str, String),
    now: &str,
) {
    let fresh = json!({"type": kind, "status": status, "reason": reason, "message": message, "lastTransitionTime": now});
    match conditions
        .iter_mut()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(kind))
    {
        Some(c) => {
            let same = c.get("status").and_then(Value::as_str) == Some(status);
            let since = c.get("lastTransitionTime").cloned();
            *c = fresh;
            if same {
                if let Some(t) = since {
                    c["lastTransitionTime"] = t;
                }
            }
        }
        None => conditions.push(fresh),
    }
}
