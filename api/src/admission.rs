//! What happens to an object between the request and the store: its type is checked, it is
//! decoded as its kind (fields the kind lacks are refused, warned about or dropped, as the
//! request's fieldValidation says), defaulted, and validated. Admission that must read other
//! objects (quotas, PriorityClasses) runs around this, in the server.

use keel_types::crd::CustomVersion;
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

/// Fills in the apiVersion and kind a body leaves out from the endpoint it was sent to, as
/// Kubernetes' decoder does (clients such as the Python one send neither).
pub fn default_type(info: &ResourceInfo, body: &mut Value) {
    default_type_as(info.api_version, info.kind, body);
}

/// [`default_type`] for a kind outside the kinds table (a subresource's body).
pub fn default_type_as(api_version: &str, kind: &str, body: &mut Value) {
    let Some(m) = body.as_object_mut() else {
        return;
    };
    let missing = |v: Option<&Value>| v.and_then(Value::as_str).is_none_or(str::is_empty);
    if missing(m.get("kind")) {
        m.insert("kind".into(), Value::String(kind.to_string()));
    }
    if missing(m.get("apiVersion")) {
        m.insert("apiVersion".into(), Value::String(api_version.to_string()));
    }
}

/// The body must be an object of the kind the request is about.
pub fn check_type(info: &ResourceInfo, body: &Value) -> Result<(), ApiError> {
    check_type_as(info.api_version, info.kind, body)
}

/// [`check_type`] for a kind outside the kinds table (a subresource's body).
pub fn check_type_as(
    expected_version: &str,
    expected_kind: &str,
    body: &Value,
) -> Result<(), ApiError> {
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
    // A kind mismatch reads differently from a version mismatch.
    if kind != expected_kind {
        return Err(ApiError::BadRequest(format!(
            "the kind in the data ({kind}) does not match the expected kind ({expected_kind})"
        )));
    }
    if api_version != expected_version {
        return Err(ApiError::BadRequest(format!(
            "the API version in the data ({api_version}) does not match the expected API version ({expected_version})"
        )));
    }
    Ok(())
}

/// What a new object starts with that the client does not choose: its status (set by the
/// server), and kind-specific starting state (a namespace's finalizer).
pub fn prepare_create(info: &ResourceInfo, obj: &mut Value) -> Result<(), ApiError> {
    keel_types::prepare_for_create(info, obj).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    if !info.has_subresource("status") {
        return Ok(());
    }
    if info.custom {
        // A custom object's status is written through its status subresource only.
        if let Some(m) = obj.as_object_mut() {
            m.remove("status");
        }
        return Ok(());
    }
    let status = match (info.group, info.kind) {
        ("", "Namespace") => json!({"phase": "Active"}),
        ("", "Pod") => json!({"phase": "Pending"}),
        _ => json!({}),
    };
    if let Some(m) = obj.as_object_mut() {
        m.insert("status".into(), status);
    }
    Ok(())
}

/// Decodes, defaults and validates `obj` as its kind (`old` is the stored object on update).
/// Returns the object to store and warnings for the client.
pub fn admit(
    info: &'static ResourceInfo,
    obj: Value,
    old: Option<&Value>,
    field_validation: FieldValidation,
) -> Result<(Value, Vec<String>), ApiError> {
    let name = meta::name(&obj).to_string();
    let decoded = keel_types::decode(info, obj).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let warnings = unknown_fields(&decoded.unknown_field_messages(), field_validation)?;
    let mut object = decoded.object;
    keel_types::default_object(info, &mut object)
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    if let Some(old) = old {
        // What an update may leave out and keep: a pod's priority, a Service's cluster IP
        // and node ports.
        if let ("", "Pod") = (info.group, info.kind) {
            crate::priority_admission::keep_on_update(&mut object, old);
        }
        crate::services::carry_over(info, &mut object, old);
    }
    let errors = keel_types::validate(info, &object, old);
    if !errors.is_empty() {
        return Err(invalid(info, name, &errors));
    }
    Ok((object, warnings))
}

/// [`admit`] for a custom kind: pruned, defaulted and validated against its definition's
/// schema, its metadata checked as every object's.
pub fn admit_custom(
    version: &CustomVersion,
    obj: Value,
    old: Option<&Value>,
    field_validation: FieldValidation,
) -> Result<(Value, Vec<String>), ApiError> {
    let info = version.info;
    let name = meta::name(&obj).to_string();
    let (mut object, unknown, mut errors) = match keel_types::crd::admit(version, obj.clone(), old)
    {
        Ok(admitted) => (admitted.object, admitted.unknown_fields, Vec::new()),
        Err(errors) => (obj, Vec::new(), errors),
    };
    let messages: Vec<String> = unknown
        .iter()
        .map(|f| format!("unknown field \"{f}\""))
        .collect();
    let mut warnings = unknown_fields(&messages, field_validation)?;
    errors.extend(keel_types::validate(info, &object, old));
    if !errors.is_empty() {
        return Err(invalid(info, name, &errors));
    }
    warnings.extend(version.deprecation_warning.clone());
    // Stored at the definition's storage version; served at any (the `None` conversion).
    object["apiVersion"] = Value::from(version.storage_api_version.as_str());
    Ok((object, warnings))
}

/// What the request's fieldValidation makes of fields the kind does not have: an error
/// (Strict), warnings (Warn) or nothing (Ignore).
fn unknown_fields(
    messages: &[String],
    field_validation: FieldValidation,
) -> Result<Vec<String>, ApiError> {
    if messages.is_empty() {
        return Ok(Vec::new());
    }
    match field_validation {
        FieldValidation::Strict => Err(ApiError::BadRequest(format!(
            "strict decoding error: {}",
            messages.join(", ")
        ))),
        FieldValidation::Warn => Ok(messages.to_vec()),
        FieldValidation::Ignore => Ok(Vec::new()),
    }
}

/// Kubernetes' 422 for `errors` in the object `name` of `info`'s kind.
fn invalid(info: &ResourceInfo, name: String, errors: &[keel_types::FieldError]) -> ApiError {
    ApiError::Invalid {
        group: info.group.to_string(),
        kind: info.kind.to_string(),
        name,
        causes: errors
            .iter()
            .map(|e| Cause {
                field: e.field.clone(),
                reason: e.reason().to_string(),
                message: e.message_without_field(),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod_info() -> &'static ResourceInfo {
        keel_types::kinds::by_kind("v1", "Pod").expect("pods")
    }

    #[test]
    fn unknown_fields_are_refused_under_strict_and_warned_about_otherwise() {
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"},
            "spec": {"containers": [{"name": "c", "image": "busybox", "imagePullPolcy": "x"}]}});
        let strict = admit(pod_info(), pod.clone(), None, FieldValidation::Strict);
        assert_eq!(
            strict.expect_err("strict").to_string(),
            "strict decoding error: unknown field \"spec.containers[0].imagePullPolcy\""
        );
        let (obj, warnings) = admit(pod_info(), pod, None, FieldValidation::Warn).expect("warn");
        assert_eq!(
            warnings,
            ["unknown field \"spec.containers[0].imagePullPolcy\""]
        );
        assert_eq!(obj["spec"]["restartPolicy"], "Always", "defaulted");
    }

    #[test]
    fn invalid_objects_name_every_field() {
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "Bad_Name"},
            "spec": {"containers": []}});
        let err = admit(pod_info(), pod, None, FieldValidation::Warn).expect_err("invalid");
        let ApiError::Invalid { causes, .. } = &err else {
            panic!("{err:?}")
        };
        let fields: Vec<&str> = causes.iter().map(|c| c.field.as_str()).collect();
        assert!(fields.contains(&"metadata.name"), "{fields:?}");
        assert!(fields.contains(&"spec.containers"), "{fields:?}");
        assert_eq!(err.code(), 422);
    }
}
