//! The `scale` subresource (deployments, replicasets, statefulsets): the object seen as an
//! `autoscaling/v1` Scale, and writes to it turned into a change of `spec.replicas` on the
//! object, conditional on the version the Scale was read at.

use axum::http::StatusCode;
use axum::response::Response;
use keel_types::ResourceInfo;
use serde_json::{json, Value};

use super::columns::format_selector;
use super::handlers::{PatchKind, Verb};
use super::path::ResourcePath;
use super::query::Query;
use super::{response, strategic};
use crate::error::ApiError;
use crate::patch::{self, PatchType};
use crate::server::ApiServer;
use crate::storage::Storage;

/// What a scale request carries.
pub enum Body {
    None,
    Scale(Value),
    Patch(PatchKind, Vec<u8>),
}

/// The Scale of `obj`.
pub fn to_scale(obj: &Value) -> Value {
    let meta = |f: &str| obj.pointer(&format!("/metadata/{f}")).cloned();
    let mut metadata = serde_json::Map::new();
    for field in [
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "creationTimestamp",
    ] {
        if let Some(v) = meta(field) {
            metadata.insert(field.into(), v);
        }
    }
    let selector = format_selector(obj.pointer("/spec/selector"));
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": metadata,
        "spec": {"replicas": obj.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(1)},
        "status": {
            "replicas": obj.pointer("/status/replicas").and_then(Value::as_i64).unwrap_or(0),
            "selector": if selector == "<none>" { String::new() } else { selector },
        },
    })
}

fn replicas_of(scale: &Value) -> Result<i64, ApiError> {
    let replicas = scale
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    if replicas < 0 {
        return Err(ApiError::Invalid {
            group: "autoscaling".into(),
            kind: "Scale".into(),
            name: scale
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .into(),
            causes: vec![crate::error::Cause {
                field: "spec.replicas".into(),
                reason: "FieldValueInvalid".into(),
                message: format!("Invalid value: {replicas}: must be greater than or equal to 0"),
            }],
        });
    }
    Ok(replicas)
}

/// Serves get, update and patch of `target`'s scale.
pub async fn handle<S: Storage>(
    core: &ApiServer<S>,
    verb: Verb,
    target: &ResourcePath,
    query: &Query,
    body: Body,
) -> Result<Response, ApiError> {
    let info: &'static ResourceInfo = target.info;
    let ns = target.namespace.as_deref();
    let name = target.name.as_deref().unwrap_or_default();
    let opts = query.write_options()?;
    let current = core.get(info, ns, name).await?;
    let scale = to_scale(&current);
    let wanted = match (verb, body) {
        (Verb::Get, _) => return Ok(response::ok(&scale)),
        (Verb::Update, Body::Scale(s)) => s,
        (Verb::Patch, Body::Patch(PatchKind::Core(t), bytes)) => patch::apply(&scale, t, &bytes)?,
        (Verb::Patch, Body::Patch(PatchKind::Strategic, bytes)) => {
            strategic::apply_bytes(&scale, &bytes)?
        }
        _ => return Err(ApiError::MethodNotAllowed),
    };
    let replicas = replicas_of(&wanted)?;
    // The write is conditional on the version the Scale showed (or the one the client sent).
    let rv = wanted
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .filter(|rv| !rv.is_empty())
        .or_else(|| {
            current
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
        })
        .unwrap_or_default()
        .to_string();
    let change = json!({"metadata": {"resourceVersion": rv}, "spec": {"replicas": replicas}});
    let bytes = serde_json::to_vec(&change).map_err(|e| ApiError::Internal(e.to_string()))?;
    let written = core
        .patch(info, ns, name, None, PatchType::Merge, &bytes, &opts)
        .await?;
    Ok(response::json(
        StatusCode::OK,
        &to_scale(&written.object),
        &written.warnings,
    ))
}
