//! What happens to an object between the request and the store: its type is checked, it is
//! decoded as its kind (fields the kind lacks are refused, warned about or dropped, as the
//! request's fieldValidation says), defaulted, and validated.

use keel_types::ResourceInfo;
use serde_json::{json, Value};

use crate::error::{ApiError, Cause};
use crate::meta;

/// Kubernetes' `fieldValidation`: what to do about fields the kind does not have.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FieldValidation {
    /// Refuse the request.
    Strict,
    /// Drop the fields and tell the client (the server default).
    #[default]
    Warn,
    /// Drop the fields silently.
    Ignore,
}

impl FieldValidation {
    pub fn parse(s: &str) -> Result<Self, ApiError> {
        match s {
            "" | "Warn" => Ok(Self::Warn),
            "Strict" => Ok(Self::Strict),
            "Ignore" => Ok(Self::Ignore),
            other => Err(ApiError::BadRequest(format!(
                "fieldValidation parameter unsupported: {other}"
            ))),
        }
    }
}

/// The body must be an object of the kind the request is about.
pub fn check_type(info: &ResourceInfo, body: &Value) -> Result<(), ApiError> {
    if !body.is_object() {
        return Err(ApiError::BadRequest(
            "the body of the request was in an unknown format - accepted media types include: application/json".into(),
        ));
    }
    let kind = meta::str_field(body, &["kind"]).unwrap_or("");
    let api_version = meta::str_field(body, &["apiVersion"]).unwrap_or("");
    if kind.is_empty() {
        return Err(ApiError::BadRequest(format!(
            "Object 'Kind' is missing in '{}'",
            body
        )));
    }
    if kind != info.kind || api_version != info.api_version {
        return Err(ApiError::BadRequest(format!(
            "the API version in the data ({api_version}) does not match the expected API version ({})",
            info.api_version
        ))
        .or_kind(kind, info));
    }
    Ok(())
}

trait OrKind {
    fn or_kind(self, kind: &str, info: &ResourceInfo) -> ApiError;
}

impl OrKind for ApiError {
    /// A kind mismatch reads differently from a version mismatch.
    fn or_kind(self, kind: &str, info: &ResourceInfo) -> ApiError {
        if kind != info.kind {
            ApiError::BadRequest(format!(
                "the kind in the data ({kind}) does not match the expected kind ({})",
                info.kind
            ))
        } else {
            self
        }
    }
}

/// The status a new object starts with: set by the server, not the client.
pub fn prepare_create(info: &ResourceInfo, obj: &mut Value) {
    if !info.has_subresource("status") {
        return;
    }
    let status = match (info.group, info.kind) {
        ("", "Namespace") => json!({"phase": "Active"}),
        ("", "Pod") => json!({"phase": "Pending"}),
        _ => json!({}),
    };
    if let Some(m) = obj.as_object_mut() {
        m.insert("status".into(), status);
    }
}

/// Decodes, defaults and validates `obj` as its kind (`old` is the stored object on update).
/// Returns the object to store and warnings for the client.
pub fn admit(
    info: &'static ResourceInfo,
    obj: Value,
    old: Option<&Value>,
    field_validation: FieldValidation,
) -> Result<(Value, Vec<String>), ApiError> {
    let _ = old;
    let name = meta::name(&obj).to_string();
    let decoded = info
        .round_trip(obj.clone())
        .map_err(|e| ApiError::BadRequest(format!("{} in body: {e}", info.kind)))?;
    let unknown = unknown_fields(&obj, &decoded, "");
    let mut warnings = Vec::new();
    if !unknown.is_empty() {
        match field_validation {
            FieldValidation::Strict => {
                let list: Vec<String> = unknown
                    .iter()
                    .map(|f| format!("unknown field \"{f}\""))
                    .collect();
                return Err(ApiError::BadRequest(format!(
                    "strict decoding error: {}",
                    list.join(", ")
                )));
            }
            FieldValidation::Warn => {
                warnings.extend(unknown.iter().map(|f| format!("unknown field \"{f}\"")))
            }
            FieldValidation::Ignore => {}
        }
    }
    if name.is_empty() {
        return Err(ApiError::Invalid {
            group: info.group.to_string(),
            kind: info.kind.to_string(),
            name,
            causes: vec![Cause {
                field: "metadata.name".into(),
                reason: "FieldValueRequired".into(),
                message: "Required value: name or generateName is required".into(),
            }],
        });
    }
    Ok((decoded, warnings))
}

/// Paths of fields present (and not null) in `input` but missing from `decoded`.
fn unknown_fields(input: &Value, decoded: &Value, path: &str) -> Vec<String> {
    let mut out = Vec::new();
    match (input, decoded) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                if v.is_null() {
                    continue;
                }
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match b.get(k) {
                    Some(d) => out.extend(unknown_fields(v, d, &p)),
                    None => out.push(p),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for (i, (v, d)) in a.iter().zip(b).enumerate() {
                out.extend(unknown_fields(v, d, &format!("{path}[{i}]")));
            }
        }
        _ => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_are_named_by_path() {
        let input = json!({"spec": {"containers": [{"name": "a", "imagePullPolcy": "x"}], "bogus": 1, "nil": null}});
        let decoded = json!({"spec": {"containers": [{"name": "a"}]}});
        assert_eq!(
            unknown_fields(&input, &decoded, ""),
            ["spec.bogus", "spec.containers[0].imagePullPolcy"]
        );
    }
}
