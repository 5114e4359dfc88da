//! Strategic merge patch (what `kubectl apply`, `edit` and `label` send), without the Go
//! struct tags Kubernetes reads merge keys from: maps merge as in a JSON merge patch; a list
//! of objects merges element by element on the first key every patch element has among
//! `name`, `containerPort`, `port`, `mountPath`, `devicePath`, `type`, `uid`, `ip` (the merge
//! keys of the built-in kinds' lists); any other list is replaced. The directives
//! `$patch: replace|delete`, `$retainKeys`, `$deleteFromPrimitiveList/…` are honoured and
//! `$setElementOrder/…` is accepted (order is not enforced).

use keel_types::ResourceInfo;
use serde_json::{Map, Value};

use crate::error::ApiError;
use crate::server::{ApiServer, WriteOptions, Written};
use crate::storage::Storage;

/// The merge keys tried, in order.
const MERGE_KEYS: &[&str] = &[
    "name",
    "containerPort",
    "port",
    "mountPath",
    "devicePath",
    "type",
    "uid",
    "ip",
];

fn bad(message: String) -> ApiError {
    ApiError::BadRequest(message)
}

/// Applies the strategic merge patch in `bytes` to `current`.
pub fn apply_bytes(current: &Value, bytes: &[u8]) -> Result<Value, ApiError> {
    let patch: Value =
        serde_json::from_slice(bytes).map_err(|e| bad(format!("error decoding patch: {e}")))?;
    apply(current, &patch)
}

/// Applies `patch` (a JSON object) to `current`.
pub fn apply(current: &Value, patch: &Value) -> Result<Value, ApiError> {
    let Some(patch) = patch.as_object() else {
        return Err(bad("strategic merge patch must be a JSON object".into()));
    };
    let mut doc = current.as_object().cloned().unwrap_or_default();
    merge_map(&mut doc, patch)?;
    Ok(Value::Object(doc))
}

/// A patch value with its directives removed, for where it replaces what was there.
fn clean(value: &Value) -> Value {
    match value {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !k.starts_with('$'))
                .map(|(k, v)| (k.clone(), clean(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(clean).collect()),
        other => other.clone(),
    }
}

fn merge_map(target: &mut Map<String, Value>, patch: &Map<String, Value>) -> Result<(), ApiError> {
    if let Some(directive) = patch.get("$patch").and_then(Value::as_str) {
        match directive {
            "replace" => {
                *target = clean(&Value::Object(patch.clone()))
                    .as_object()
                    .cloned()
                    .unwrap_or_default();
                return Ok(());
            }
            "delete" => {
                target.clear();
                return Ok(());
            }
            "merge" => {}
            other => return Err(bad(format!("unknown patch type: {other}"))),
        }
    }
    for (key, value) in patch {
        if let Some(field) = key.strip_prefix("$deleteFromPrimitiveList/") {
            let remove = value.as_array().cloned().unwrap_or_default();
            if let Some(Value::Array(list)) = target.get_mut(field) {
                list.retain(|v| !remove.contains(v));
            }
            continue;
        }
        if key.starts_with('$') {
            continue;
        }
        match (target.get_mut(key), value) {
            (_, Value::Null) => {
                target.remove(key);
            }
            (Some(Value::Object(t)), Value::Object(p)) => merge_map(t, p)?,
            (Some(Value::Array(t)), Value::Array(p)) => merge_list(t, p)?,
            (_, v) => {
                target.insert(key.clone(), clean(v));
            }
        }
    }
    if let Some(keep) = patch.get("$retainKeys").and_then(Value::as_array) {
        target.retain(|k, _| keep.iter().any(|r| r.as_str() == Some(k)));
    }
    Ok(())
}

/// The key a list of patch elements merges on, if every element is an object that has it.
fn merge_key(patch: &[Value]) -> Option<&'static str> {
    if patch.is_empty() || !patch.iter().all(Value::is_object) {
        return None;
    }
    MERGE_KEYS
        .iter()
        .copied()
        .find(|k| patch.iter().all(|e| e.get(*k).is_some()))
}

fn merge_list(target: &mut Vec<Value>, patch: &[Value]) -> Result<(), ApiError> {
    if patch
        .iter()
        .any(|e| e.get("$patch").and_then(Value::as_str) == Some("replace"))
    {
        *target = patch
            .iter()
            .filter(|e| e.get("$patch").is_none())
            .map(clean)
            .collect();
        return Ok(());
    }
    let Some(key) = merge_key(patch) else {
        *target = patch.iter().map(clean).collect();
        return Ok(());
    };
    for element in patch {
        let id = element.get(key);
        let position = target.iter().position(|t| t.get(key) == id);
        let delete = element.get("$patch").and_then(Value::as_str) == Some("delete");
        match (position, delete) {
            (Some(i), true) => {
                target.remove(i);
            }
            (None, true) => {}
            (Some(i), false) => {
                if let (Some(t), Some(p)) = (target[i].as_object_mut(), element.as_object()) {
                    merge_map(t, p)?;
                }
            }
            (None, false) => target.push(clean(element)),
        }
    }
    Ok(())
}

/// Patches an object (or its status) with a strategic merge patch: applied to the stored
/// object and written back conditional on the version it was applied to; a write that lost
/// a race is re-applied to the fresh object unless the patch itself named a resourceVersion.
#[allow(clippy::too_many_arguments)]
pub async fn patch<S: Storage>(
    core: &ApiServer<S>,
    info: &'static ResourceInfo,
    namespace: Option<&str>,
    name: &str,
    subresource: Option<&str>,
    bytes: &[u8],
    opts: &WriteOptions,
) -> Result<Written, ApiError> {
    core.patch_with(info, namespace, name, subresource, opts, |current| {
        apply_bytes(current, bytes)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn containers_merge_by_name_and_keep_what_the_patch_does_not_mention() {
        let current = json!({"spec": {"containers": [
            {"name": "app", "image": "app:1", "ports": [{"containerPort": 80}]},
            {"name": "sidecar", "image": "proxy:1"}
        ]}});
        let patch = json!({"spec": {
            "$setElementOrder/containers": [{"name": "app"}, {"name": "sidecar"}],
            "containers": [{"name": "app", "image": "app:2"}]
        }});
        let out = apply(&current, &patch).expect("applies");
        assert_eq!(
            out,
            json!({"spec": {"containers": [
                {"name": "app", "image": "app:2", "ports": [{"containerPort": 80}]},
                {"name": "sidecar", "image": "proxy:1"}
            ]}})
        );
    }

    #[test]
    fn directives_delete_elements_and_primitive_values() {
        let current = json!({"metadata": {"finalizers": ["a", "b"], "labels": {"x": "1", "y": "2"}},
            "spec": {"volumes": [{"name": "v1"}, {"name": "v2"}]}});
        let patch = json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"], "labels": {"x": null}},
            "spec": {"volumes": [{"name": "v1", "$patch": "delete"}]}});
        let out = apply(&current, &patch).expect("applies");
        assert_eq!(
            out,
            json!({"metadata": {"finalizers": ["b"], "labels": {"y": "2"}},
                "spec": {"volumes": [{"name": "v2"}]}})
        );
    }

    #[test]
    fn lists_without_a_merge_key_are_replaced() {
        let current = json!({"spec": {"args": ["a", "b"], "tolerations": [{"key": "k1"}]}});
        let patch = json!({"spec": {"args": ["c"], "tolerations": [{"key": "k2"}]}});
        let out = apply(&current, &patch).expect("applies");
        assert_eq!(
            out,
            json!({"spec": {"args": ["c"], "tolerations": [{"key": "k2"}]}})
        );
    }
}
