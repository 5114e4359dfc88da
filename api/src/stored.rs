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
