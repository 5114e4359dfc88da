//! Objects as the store holds them, and the store's answers as the API speaks them: a storage
//! failure as a Kubernetes error, stored bytes as an object at its revision (and back, without
//! the resourceVersion the revision stands for), a leader's fence as write guards, and when a
//! change is a new generation.

use keel_types::ResourceInfo;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::keys;
use crate::meta;
use crate::server::Fence;
use crate::storage::{Guard, StorageError, Stored};

/// Maps a storage failure on `name` of kind `info` to the Kubernetes error.
pub(crate) fn storage_error(info: &ResourceInfo, name: &str, e: StorageError) -> ApiError {
    let (group, resource, name) = (
        info.group.to_string(),
        info.plural.to_string(),
        name.to_string(),
    );
    match e {
        StorageError::AlreadyExists { .. } => ApiError::AlreadyExists {
            group,
            resource,
            name,
        },
        StorageError::NotFound { .. } => ApiError::NotFound {
            group,
            resource,
            name,
        },
        StorageError::Conflict { .. } => ApiError::Conflict {
            group,
            resource,
            name,
            detail: "the object has been modified; please apply your changes to the latest version and try again".into(),
        },
        StorageError::GuardFailed { key } => ApiError::FenceLost {
            lease: keys::lease_of_fence(&key),
        },
        StorageError::Compacted { compacted } => ApiError::Expired(format!(
            "too old resource version: requested revision has been compacted (compacted at {compacted})"
        )),
        StorageError::FutureRevision => ApiError::Timeout(
            "Too large resource version: the requested revision is not yet known".into(),
        ),
        StorageError::TooLarge => ApiError::TooLarge("Request entity too large".into()),
        StorageError::Unavailable(m) => ApiError::Unavailable(m),
        StorageError::Internal(m) => ApiError::Internal(m),
    }
}

/// A stored object as clients see it: the stored JSON with the revision that wrote it as its
/// resourceVersion (lists, watches and single reads all show objects this way).
pub(crate) fn decode_at(value: &[u8], revision: i64) -> Result<Value, ApiError> {
    let obj: Value = serde_json::from_slice(value)
        .map_err(|e| ApiError::Internal(format!("stored object is not JSON: {e}")))?;
    Ok(with_revision(obj, revision))
}

/// A stored object as [`decode_at`] shows it, as JSON, made without building it: the bytes
/// are checked to be JSON (a parse that keeps nothing) and the resourceVersion is written into
/// their top-level `metadata` object. None when the bytes are not shaped for that (not JSON,
/// no top-level metadata object, a key written with escapes, or a `"resourceVersion"`
/// anywhere already); then decode instead.
pub(crate) fn json_at(value: &[u8], revision: i64) -> Option<Vec<u8>> {
    const VERSION_KEY: &[u8] = b"\"resourceVersion\"";
    if value.windows(VERSION_KEY.len()).any(|w| w == VERSION_KEY)
        || serde_json::from_slice::<serde::de::IgnoredAny>(value).is_err()
    {
        return None;
    }
    let open = metadata_object_start(value)?;
    let empty = value[open..]
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == b'}');
    let field = format!(
        "\"resourceVersion\":\"{revision}\"{}",
        if empty { "" } else { "," }
    );
    let mut out = Vec::with_capacity(value.len() + field.len());
    out.extend_from_slice(&value[..open]);
    out.extend_from_slice(field.as_bytes());
    out.extend_from_slice(&value[open..]);
    Some(out)
}

/// The offset just past the `{` that opens the value of the top-level key `metadata`, found
/// by scanning the document's structure (strings, nesting) without building anything.
fn metadata_object_start(json: &[u8]) -> Option<usize> {
    let mut i = skip_space(json, 0);
    if json.get(i) != Some(&b'{') {
        return None;
    }
    i += 1;
    loop {
        i = skip_space(json, i);
        if *json.get(i)? != b'"' {
            return None;
        }
        let key_end = string_end(json, i)?;
        let key = &json[i + 1..key_end - 1];
        if key.contains(&b'\\') {
            return None;
        }
        i = skip_space(json, key_end);
        if json.get(i) != Some(&b':') {
            return None;
        }
        i = skip_space(json, i + 1);
        if key == b"metadata" {
            return (json.get(i) == Some(&b'{')).then_some(i + 1);
        }
        i = skip_space(json, value_end(json, i)?);
        match json.get(i)? {
            b',' => i += 1,
            _ => return None,
        }
    }
}

fn skip_space(json: &[u8], mut i: usize) -> usize {
    while json.get(i).is_some_and(u8::is_ascii_whitespace) {
        i += 1;
    }
    i
}

/// The offset just past the string that opens at `i` (a `"`).
fn string_end(json: &[u8], i: usize) -> Option<usize> {
    let mut j = i + 1;
    loop {
        match json.get(j)? {
            b'\\' => j += 2,
            b'"' => return Some(j + 1),
            _ => j += 1,
        }
    }
}

/// The offset just past the JSON value that starts at `i`.
fn value_end(json: &[u8], i: usize) -> Option<usize> {
    match json.get(i)? {
        b'"' => string_end(json, i),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = i;
            loop {
                match json.get(j)? {
                    b'"' => {
                        j = string_end(json, j)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
        }
        _ => {
            // A number, true, false or null: up to the next delimiter.
            let mut j = i;
            while json
                .get(j)
                .is_some_and(|b| !matches!(b, b',' | b'}' | b']') && !b.is_ascii_whitespace())
            {
                j += 1;
            }
            (j > i).then_some(j)
        }
    }
}

pub(crate) fn decode_stored(stored: &Stored) -> Result<Value, ApiError> {
    decode_at(&stored.value, stored.mod_revision)
}

/// The bytes to store: the object without its resourceVersion (the store's revision is it).
pub(crate) fn encode_for_store(obj: &Value) -> Result<Vec<u8>, ApiError> {
    let mut obj = obj.clone();
    if let Some(m) = meta::metadata_mut(&mut obj) {
        m.remove("resourceVersion");
    }
    serde_json::to_vec(&obj).map_err(|e| ApiError::Internal(format!("encoding object: {e}")))
}

pub(crate) fn with_revision(mut obj: Value, revision: i64) -> Value {
    if let Some(m) = meta::metadata_mut(&mut obj) {
        m.insert(
            "resourceVersion".into(),
            Value::String(revision.to_string()),
        );
    }
    obj
}

pub(crate) fn without_version(obj: &Value) -> Value {
    let mut obj = obj.clone();
    if let Some(m) = meta::metadata_mut(&mut obj) {
        m.remove("resourceVersion");
    }
    obj
}

pub(crate) fn guards(fence: Option<&Fence>) -> Vec<Guard> {
    fence
        .map(|f| Guard {
            key: keys::fence(&f.lease_namespace, &f.lease_name),
            value: keys::fence_token(&f.holder, f.transitions),
        })
        .into_iter()
        .collect()
}

/// The part of an object a main-resource update may change: everything but status.
/// Sets `next`'s `metadata.generation`: none for kinds that keep none, else the current one,
/// plus one when anything outside metadata and status changed.
pub(crate) fn next_generation(info: &ResourceInfo, current: &Value, next: &mut Value) {
    let current_generation = current
        .pointer("/metadata/generation")
        .and_then(Value::as_i64);
    let bumped = spec_of(current) != spec_of(next);
    let Some(m) = meta::metadata_mut(next) else {
        return;
    };
    match (info.tracks_generation, bumped, current_generation) {
        (false, _, _) | (true, false, None) => {
            m.remove("generation");
        }
        (true, true, g) => {
            m.insert("generation".into(), json!(g.unwrap_or(0) + 1));
        }
        (true, false, Some(g)) => {
            m.insert("generation".into(), json!(g));
        }
    }
}

fn spec_of(obj: &Value) -> Value {
    let mut o = obj.clone();
    if let Some(m) = o.as_object_mut() {
        m.remove("metadata");
        m.remove("status");
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            (-1e9f64..1e9).prop_map(|f| json!(f)),
            "[ -~\\\\\"{}\\[\\],:é\\n]{0,12}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 40, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map("[a-z\"{}:,\\\\]{0,8}", inner, 0..5)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// An object as it could be stored: some top-level fields, and usually a metadata object.
    fn stored_object() -> impl Strategy<Value = Value> {
        (
            prop::collection::btree_map("[a-z]{1,8}", json_value(), 0..4),
            prop::option::of(prop::collection::btree_map(
                "[a-zA-Z]{1,10}",
                json_value(),
                0..4,
            )),
        )
            .prop_map(|(fields, metadata)| {
                let mut obj: serde_json::Map<String, Value> = fields.into_iter().collect();
                if let Some(m) = metadata {
                    obj.insert("metadata".into(), Value::Object(m.into_iter().collect()));
                }
                Value::Object(obj)
            })
    }

    proptest! {
        #[test]
        fn the_json_made_without_decoding_is_the_decoded_object(
            obj in stored_object(),
            revision in 1i64..i64::MAX,
            pretty in any::<bool>(),
        ) {
            let bytes = if pretty {
                serde_json::to_vec_pretty(&obj).expect("encodes")
            } else {
                encode_for_store(&obj).expect("encodes")
            };
            let decoded = decode_at(&bytes, revision).expect("decodes");
            match json_at(&bytes, revision) {
                Some(json) => {
                    let spliced: Value = serde_json::from_slice(&json).expect("still JSON");
                    prop_assert_eq!(spliced, decoded);
                }
                // Only when the shortcut cannot hold: no metadata object, or the key's text
                // is somewhere in the object already.
                None => prop_assert!(
                    !obj.get("metadata").is_some_and(Value::is_object)
                        || String::from_utf8_lossy(&bytes).contains("\"resourceVersion\"")
                ),
            }
        }
    }

    #[test]
    fn a_stored_pod_gets_its_revision_without_being_decoded() {
        let stored = br#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","namespace":"d"},"spec":{}}"#;
        let json = json_at(stored, 42).expect("spliced");
        assert_eq!(
            std::str::from_utf8(&json).expect("utf-8"),
            r#"{"apiVersion":"v1","kind":"Pod","metadata":{"resourceVersion":"42","name":"p","namespace":"d"},"spec":{}}"#
        );
        let empty = json_at(br#"{ "metadata" : { } }"#, 7).expect("spliced");
        assert_eq!(
            serde_json::from_slice::<Value>(&empty).expect("json"),
            json!({"metadata": {"resourceVersion": "7"}})
        );
        // Not JSON, no metadata, or not an object: decode instead (and fail there).
        assert_eq!(json_at(b"not json", 1), None);
        assert_eq!(json_at(br#"{"kind":"Pod"}"#, 1), None);
        assert_eq!(json_at(br#"{"metadata":"x"}"#, 1), None);
        assert_eq!(json_at(br#"{"metadata":{"resourceVersion":"3"}}"#, 1), None);
        assert_eq!(json_at(br#"{"a":{"b":"}"#, 1), None);
    }
}
