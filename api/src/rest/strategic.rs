//! Strategic merge patch (what `kubectl apply`, `edit` and `label` send): maps merge as in a
//! JSON merge patch; a list merges as the kind's schema declares it (`patchStrategy: merge`
//! with a `patchMergeKey`: element by element on that key; `merge` on a list of scalars: as a
//! union), and any other list is replaced. Where the schema does not know the object, a list
//! of objects merges on the first key every patch element has among the built-in kinds' merge
//! keys. The directives `$patch: replace|delete`, `$retainKeys`,
//! `$deleteFromPrimitiveList/…` are honoured and `$setElementOrder/…` is accepted (order is not
//! enforced).

use keel_types::schema::Field;
use keel_types::ResourceInfo;
use serde_json::{Map, Value};

use crate::error::ApiError;
use crate::managed::Ctx;
use crate::server::{ApiServer, WriteOptions, Written};
use crate::storage::Storage;

/// The merge keys tried, in order, for objects the schema does not know.
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
    let kind_of = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let (api_version, kind) = match kind_of(current, "kind").as_str() {
        "" => (
            kind_of(&Value::Object(patch.clone()), "apiVersion"),
            kind_of(&Value::Object(patch.clone()), "kind"),
        ),
        k => (kind_of(current, "apiVersion"), k.to_string()),
    };
    let mut doc = current.as_object().cloned().unwrap_or_default();
    merge_map(&mut doc, patch, Ctx::root(&api_version, &kind))?;
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

fn merge_map(
    target: &mut Map<String, Value>,
    patch: &Map<String, Value>,
    ctx: Ctx<'_>,
) -> Result<(), ApiError> {
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
        let (slot, child) = ctx.child(key);
        let how = ListMerge::of(ctx, slot.field(), value);
        match (target.get_mut(key), value) {
            (_, Value::Null) => {
                target.remove(key);
            }
            (Some(Value::Object(t)), Value::Object(p)) => merge_map(t, p, child)?,
            (Some(Value::Array(t)), Value::Array(p)) => merge_list(t, p, how, child)?,
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

/// How a list in a patch merges with the list it patches.
#[derive(Debug, Clone, Copy, PartialEq)]
enum ListMerge {
    ByKey(&'static str),
    Union,
    Replace,
}

impl ListMerge {
    /// As the schema says for `field` of a message it knows; by a guessed key elsewhere.
    fn of(parent: Ctx<'_>, field: Option<&'static Field>, patch: &Value) -> ListMerge {
        if let Ctx::Message(_) = parent {
            return match field {
                Some(f) if f.patch_strategy.is_some_and(|s| s.contains("merge")) => {
                    f.merge_key.map_or(ListMerge::Union, ListMerge::ByKey)
                }
                _ => ListMerge::Replace,
            };
        }
        let elements = patch.as_array().map(Vec::as_slice).unwrap_or_default();
        guess_merge_key(elements).map_or(ListMerge::Replace, ListMerge::ByKey)
    }
}

/// The key a list of patch elements merges on, if every element is an object that has it.
fn guess_merge_key(patch: &[Value]) -> Option<&'static str> {
    if patch.is_empty() || !patch.iter().all(Value::is_object) {
        return None;
    }
    MERGE_KEYS
        .iter()
        .copied()
        .find(|k| patch.iter().all(|e| e.get(*k).is_some()))
}

fn merge_list(
    target: &mut Vec<Value>,
    patch: &[Value],
    how: ListMerge,
    element: Ctx<'_>,
) -> Result<(), ApiError> {
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
    let key = match how {
        ListMerge::ByKey(key) => key,
        ListMerge::Union => {
            for v in patch {
                if !target.contains(v) {
                    target.push(clean(v));
                }
            }
            return Ok(());
        }
        ListMerge::Replace => {
            *target = patch.iter().map(clean).collect();
            return Ok(());
        }
    };
    for element_patch in patch {
        let id = element_patch.get(key);
        let position = target.iter().position(|t| t.get(key) == id);
        let delete = element_patch.get("$patch").and_then(Value::as_str) == Some("delete");
        match (position, delete) {
            (Some(i), true) => {
                target.remove(i);
            }
            (None, true) => {}
            (Some(i), false) => {
                if let (Some(t), Some(p)) = (target[i].as_object_mut(), element_patch.as_object()) {
                    merge_map(t, p, element)?;
                }
            }
            (None, false) => target.push(clean(element_patch)),
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

    #[test]
    fn known_kinds_merge_on_their_schema_keys() {
        let current = json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"finalizers": ["a"]},
            "spec": {"ports": [{"name": "http", "port": 80}]}});
        // A guess would merge on "name"; Service ports merge on "port".
        let patch = json!({"metadata": {"finalizers": ["b"]},
            "spec": {"ports": [{"name": "web", "port": 80}]}});
        let out = apply(&current, &patch).expect("applies");
        assert_eq!(out["spec"]["ports"], json!([{"name": "web", "port": 80}]));
        assert_eq!(
            out["metadata"]["finalizers"],
            json!(["a", "b"]),
            "a merge list of scalars is a union"
        );
    }
}
