//! The `scale` subresource (deployments, replicasets, statefulsets, and custom kinds whose
//! definition enables it): the object seen as an `autoscaling/v1` Scale, and writes to it
//! turned into a change of the object's replicas, conditional on the version the Scale was
//! read at. A custom kind's replicas and selector are where its definition's scale paths say.

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

/// Where an object keeps what its Scale shows, as JSON pointers.
struct Paths {
    spec_replicas: String,
    status_replicas: String,
    /// A label selector object (built-in kinds) or, for custom kinds, a selector string.
    selector: Option<String>,
    selector_is_text: bool,
}

impl Paths {
    fn of(target: &ResourcePath) -> Paths {
        match target.custom.as_ref().and_then(|v| v.scale.as_ref()) {
            Some(scale) => Paths {
                spec_replicas: pointer(&scale.spec_replicas),
                status_replicas: pointer(&scale.status_replicas),
                selector: scale.label_selector.as_deref().map(pointer),
                selector_is_text: true,
            },
            None => Paths {
                spec_replicas: "/spec/replicas".into(),
                status_replicas: "/status/replicas".into(),
                selector: Some("/spec/selector".into()),
                selector_is_text: false,
            },
        }
    }
}

/// A definition's JSON path (`.spec.replicas`) as a JSON pointer (`/spec/replicas`).
fn pointer(path: &str) -> String {
    path.trim_start_matches('.')
        .split('.')
        .fold(String::new(), |out, step| format!("{out}/{step}"))
}

/// The Scale of `obj`.
fn to_scale(obj: &Value, paths: &Paths) -> Value {
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
    let found = paths.selector.as_deref().and_then(|p| obj.pointer(p));
    let selector = if paths.selector_is_text {
        found
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    } else {
        match format_selector(found) {
            s if s == "<none>" => String::new(),
            s => s,
        }
    };
    // A custom object without replicas yet scales from 0, as Kubernetes reads it.
    let default = if paths.selector_is_text { 0 } else { 1 };
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": metadata,
        "spec": {"replicas": obj.pointer(&paths.spec_replicas).and_then(Value::as_i64).unwrap_or(default)},
        "status": {
            "replicas": obj.pointer(&paths.status_replicas).and_then(Value::as_i64).unwrap_or(0),
            "selector": selector,
        },
    })
}

/// A merge patch setting the value at `pointer` to `value`.
fn patch_at(pointer: &str, value: Value) -> Value {
    pointer
        .split('/')
        .filter(|s| !s.is_empty())
        .rev()
        .fold(value, |inner, step| json!({ step: inner }))
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
    let paths = Paths::of(target);
    let current = core.get(info, ns, name).await?;
    let scale = to_scale(&current, &paths);
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
    let mut change = patch_at(&paths.spec_replicas, json!(replicas));
    change["metadata"] = json!({"resourceVersion": rv});
    let bytes = serde_json::to_vec(&change).map_err(|e| ApiError::Internal(e.to_string()))?;
    let written = core
        .patch(info, ns, name, None, PatchType::Merge, &bytes, &opts)
        .await?;
    Ok(response::json(
        StatusCode::OK,
        &to_scale(&written.object, &paths),
        &written.warnings,
    ))
}
