//! Object metadata checks shared by every kind: name or generateName, namespace presence,
//! labels, annotations, finalizers, and what an update may not change.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::field::FieldError;
use crate::names;
use crate::path::FieldPath;

/// The most bytes all annotation keys and values of one object may add up to.
pub const TOTAL_ANNOTATION_SIZE_LIMIT: usize = 256 * 1024;
pub const FIELD_IMMUTABLE: &str = "field is immutable";

/// Checks a name (or, with `prefix`, a generateName) and returns Kubernetes' messages.
pub type NameFn = fn(&str, bool) -> Vec<String>;

pub fn validate_object_meta(
    meta: &ObjectMeta,
    namespaced: bool,
    name_fn: NameFn,
    path: &FieldPath,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let generate_name = meta.generate_name.as_deref().unwrap_or("");
    if !generate_name.is_empty() {
        for msg in name_fn(generate_name, true) {
            errs.push(FieldError::invalid(
                &path.child("generateName"),
                generate_name,
                msg,
            ));
        }
    }
    let name = meta.name.as_deref().unwrap_or("");
    if name.is_empty() {
        errs.push(FieldError::required(
            &path.child("name"),
            "name or generateName is required",
        ));
    } else {
        for msg in name_fn(name, false) {
            errs.push(FieldError::invalid(&path.child("name"), name, msg));
        }
    }
    let namespace = meta.namespace.as_deref().unwrap_or("");
    if namespaced {
        if namespace.is_empty() {
            errs.push(FieldError::required(&path.child("namespace"), ""));
        } else {
            for msg in names::name_is_dns_label(namespace, false) {
                errs.push(FieldError::invalid(
                    &path.child("namespace"),
                    namespace,
                    msg,
                ));
            }
        }
    } else if !namespace.is_empty() {
        errs.push(FieldError::forbidden(
            &path.child("namespace"),
            "not allowed on this type",
        ));
    }
    if let Some(generation) = meta.generation {
        errs.extend(nonnegative(&path.child("generation"), generation));
    }
    errs.extend(validate_labels(meta.labels.as_ref(), &path.child("labels")));
    errs.extend(validate_annotations(
        meta.annotations.as_ref(),
        &path.child("annotations"),
    ));
    for finalizer in meta.finalizers.iter().flatten() {
        for msg in names::qualified_name(finalizer) {
            errs.push(FieldError::invalid(
                &path.child("finalizers"),
                finalizer,
                msg,
            ));
        }
    }
    errs
}

/// Label keys must be qualified names and values valid label values.
pub fn validate_labels(
    labels: Option<&BTreeMap<String, String>>,
    path: &FieldPath,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (k, v) in labels.into_iter().flatten() {
        for msg in names::qualified_name(k) {
            errs.push(FieldError::invalid(path, k, msg));
        }
        for msg in names::label_value(v) {
            errs.push(FieldError::invalid(path, v, msg));
        }
    }
    errs
}

fn validate_annotations(
    annotations: Option<&BTreeMap<String, String>>,
    path: &FieldPath,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut total = 0usize;
    for (k, v) in annotations.into_iter().flatten() {
        for msg in names::qualified_name(&k.to_lowercase()) {
            errs.push(FieldError::invalid(path, k, msg));
        }
        total += k.len() + v.len();
    }
    if total > TOTAL_ANNOTATION_SIZE_LIMIT {
        errs.push(FieldError::too_long(path, TOTAL_ANNOTATION_SIZE_LIMIT));
    }
    errs
}

/// What an update may not change in metadata: name, namespace, uid, creation time.
pub fn validate_object_meta_update(
    new: &ObjectMeta,
    old: &ObjectMeta,
    path: &FieldPath,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let pairs = [
        ("name", &new.name, &old.name),
        ("namespace", &new.namespace, &old.namespace),
        ("uid", &new.uid, &old.uid),
    ];
    for (field, n, o) in pairs {
        let n = n.as_deref().unwrap_or("");
        let o = o.as_deref().unwrap_or("");
        if n != o {
            errs.push(FieldError::invalid(&path.child(field), n, FIELD_IMMUTABLE));
        }
    }
    if new.creation_timestamp != old.creation_timestamp && new.creation_timestamp.is_some() {
        errs.push(FieldError::invalid(
            &path.child("creationTimestamp"),
            new.creation_timestamp
                .as_ref()
                .map(|t| t.0.to_rfc3339())
                .unwrap_or_default(),
            FIELD_IMMUTABLE,
        ));
    }
    if let (Some(n), Some(o)) = (new.generation, old.generation) {
        if n < o {
            errs.push(FieldError::invalid(
                &path.child("generation"),
                n,
                "must not be decremented",
            ));
        }
    }
    errs
}

/// "must be greater than or equal to 0"
pub fn nonnegative(path: &FieldPath, value: i64) -> Vec<FieldError> {
    if value < 0 {
        return vec![FieldError::invalid(
            path,
            value,
            "must be greater than or equal to 0",
        )];
    }
    Vec::new()
}

/// Go's `%#v` of a `map[string]string`, as Kubernetes prints template labels.
pub fn go_string_map(map: Option<&BTreeMap<String, String>>) -> String {
    let Some(map) = map else {
        return "map[string]string(nil)".to_string();
    };
    let items: Vec<String> = map
        .iter()
        .map(|(k, v)| {
            format!(
                "{}:{}",
                crate::field::go_quote(k),
                crate::field::go_quote(v)
            )
        })
        .collect();
    format!("map[string]string{{{}}}", items.join(", "))
}
