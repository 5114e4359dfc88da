//! Patches: JSON merge patch (RFC 7386) and JSON patch (RFC 6902), applied to the stored object
//! and written back with compare-and-swap on the revision that was patched.

use keel_types::ResourceInfo;
use serde_json::Value;

use crate::error::ApiError;
use crate::meta;
use crate::server::{ApiServer, WriteOptions, Written};
use crate::storage::Storage;

/// How many times a patch that lost a race is re-applied.
const RETRIES: usize = 5;

/// The patch formats Kubernetes accepts, by content type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    Merge,
    Json,
}

impl PatchType {
    pub fn from_content_type(content_type: &str) -> Result<Self, ApiError> {
        match content_type.split(';').next().unwrap_or("").trim() {
            "application/merge-patch+json" => Ok(Self::Merge),
            "application/json-patch+json" => Ok(Self::Json),
            other => Err(ApiError::UnsupportedMediaType(format!(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json (got {other:?})"
            ))),
        }
    }
}

/// Applies `patch` to `current`.
pub fn apply(current: &Value, patch_type: PatchType, patch: &[u8]) -> Result<Value, ApiError> {
    let mut doc = current.clone();
    match patch_type {
        PatchType::Merge => {
            let p: Value = serde_json::from_slice(patch)
                .map_err(|e| ApiError::BadRequest(format!("error decoding patch: {e}")))?;
            if !p.is_object() {
                return Err(ApiError::BadRequest(
                    "merge patch must be a JSON object".into(),
                ));
            }
            json_patch::merge(&mut doc, &p);
        }
        PatchType::Json => {
            let p: json_patch::Patch = serde_json::from_slice(patch)
                .map_err(|e| ApiError::BadRequest(format!("error decoding patch: {e}")))?;
            json_patch::patch(&mut doc, &p).map_err(|e| ApiError::Invalid {
                group: String::new(),
                kind: "Patch".into(),
                name: meta::name(current).to_string(),
                causes: vec![crate::error::Cause {
                    field: String::new(),
                    reason: "FieldValueInvalid".into(),
                    message: format!("the patch could not be applied: {e}"),
                }],
            })?;
        }
    }
    Ok(doc)
}

impl<S: Storage> ApiServer<S> {
    /// Patches an object (or its status). A patch that sets resourceVersion must match the
    /// stored one; otherwise a patch that lost a race is re-applied to the fresh object.
    #[allow(clippy::too_many_arguments)]
    pub async fn patch(
        &self,
        info: &'static ResourceInfo,
        namespace: Option<&str>,
        name: &str,
        subresource: Option<&str>,
        patch_type: PatchType,
        patch: &[u8],
        opts: &WriteOptions,
    ) -> Result<Written, ApiError> {
        self.patch_with(info, namespace, name, subresource, opts, |current| {
            apply(current, patch_type, patch)
        })
        .await
    }

    /// Patches with any patch format: `apply` turns the stored object into the patched one.
    /// Without a resourceVersion in the result, the update is conditional on the version it
    /// was applied to, and re-applied to the fresh object if that changed meanwhile.
    pub async fn patch_with(
        &self,
        info: &'static ResourceInfo,
        namespace: Option<&str>,
        name: &str,
        subresource: Option<&str>,
        opts: &WriteOptions,
        apply: impl Fn(&Value) -> Result<Value, ApiError>,
    ) -> Result<Written, ApiError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            // The first attempt starts from the watch cache; the update is conditional on the
            // revision patched, so a stale copy only costs the retry, which reads the store.
            let current = match attempt {
                1 => self.get_cached(info, namespace, name).await?,
                _ => self.get(info, namespace, name).await?,
            };
            let mut body = apply(&current)?;
            let pinned = meta::resource_version(&body) != meta::resource_version(&current);
            if !pinned {
                if let Some(m) = meta::metadata_mut(&mut body) {
                    m.insert(
                        "resourceVersion".into(),
                        Value::String(meta::resource_version(&current).to_string()),
                    );
                }
            }
            match self
                .update(info, namespace, name, subresource, body, opts)
                .await
            {
                Err(ApiError::Conflict { .. }) if !pinned && attempt < RETRIES => continue,
                other => return other,
            }
        }
    }
}
