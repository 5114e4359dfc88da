//! Server-side apply on the API server: the configuration is merged into the live object by
//! [`crate::managed`] and written as an update (or a create, when nothing is there yet),
//! conditional on the version it was merged into.

use keel_types::ResourceInfo;
use serde_json::Value;

use crate::error::{ApiError, Cause};
use crate::managed::{self, Conflict};
use crate::meta;
use crate::server::{ApiServer, WriteOptions, Written};
use crate::storage::Storage;

/// How many times an apply that lost a race is merged again into the fresh object.
const RETRIES: usize = 5;

/// Kubernetes caps a field manager's name at this many characters.
const MAX_MANAGER_LEN: usize = 128;

/// A successful apply, and whether it created the object.
pub struct Applied {
    pub written: Written,
    pub created: bool,
}

fn conflict_error(conflicts: &[Conflict]) -> ApiError {
    ApiError::ApplyConflict {
        message: managed::conflict_message(conflicts),
        causes: conflicts
            .iter()
            .map(|c| Cause {
                field: managed::display(&c.path),
                reason: "FieldManagerConflict".into(),
                message: format!("conflict with {}", c.manager),
            })
            .collect(),
    }
}

/// Reads an apply body: a JSON object (YAML documents are not read; kubectl and client
/// libraries send JSON).
pub fn parse_config(bytes: &[u8]) -> Result<Value, ApiError> {
    let config: Value = serde_json::from_slice(bytes).map_err(|e| {
        ApiError::BadRequest(format!(
            "error decoding YAML: the apply configuration must be JSON: {e}"
        ))
    })?;
    if !config.is_object() {
        return Err(ApiError::BadRequest(
            "error decoding YAML: the apply configuration is not an object".into(),
        ));
    }
    Ok(config)
}

impl<S: Storage> ApiServer<S> {
    /// Applies `config` to the object `name` as `opts.field_manager`, taking fields from other
    /// managers only if `force`.
    pub async fn apply(
        &self,
        info: &'static ResourceInfo,
        namespace: Option<&str>,
        name: &str,
        config: Value,
        force: bool,
        opts: &WriteOptions,
    ) -> Result<Applied, ApiError> {
        let manager = opts.field_manager.clone().unwrap_or_default();
        if manager.is_empty() {
            return Err(ApiError::BadRequest(
                "PATCH, application/apply-patch+yaml requires fieldManager".into(),
            ));
        }
        if manager.len() > MAX_MANAGER_LEN {
            return Err(ApiError::BadRequest(format!(
                "fieldManager: Too long: may not be more than {MAX_MANAGER_LEN} bytes"
            )));
        }
        crate::admission::check_type(info, &config)?;
        let config_name = meta::name(&config);
        if !config_name.is_empty() && config_name != name {
            return Err(ApiError::BadRequest(format!(
                "the name of the object ({config_name}) does not match the name on the URL ({name})"
            )));
        }
        let opts = WriteOptions {
            applied: true,
            ..opts.clone()
        };
        let now = meta::now();
        let custom = self.custom_version(info);
        let how = managed::Apply {
            manager: &manager,
            force,
            with_status: !info.has_subresource("status"),
            now: &now,
            schema: custom.as_ref().and_then(|v| v.schema.as_ref()),
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let current = match self.get(info, namespace, name).await {
                Ok(current) => Some(current),
                Err(ApiError::NotFound { .. }) => None,
                Err(e) => return Err(e),
            };
            let mut object =
                managed::apply(current.as_ref(), &config, &how).map_err(|c| conflict_error(&c))?;
            let result = match &current {
                None => {
                    if let Some(m) = meta::metadata_mut(&mut object) {
                        m.insert("name".into(), Value::String(name.to_string()));
                    }
                    self.create(info, namespace, object, &opts)
                        .await
                        .map(|written| Applied {
                            written,
                            created: true,
                        })
                }
                Some(current) => {
                    if let Some(m) = meta::metadata_mut(&mut object) {
                        m.insert(
                            "resourceVersion".into(),
                            Value::String(meta::resource_version(current).to_string()),
                        );
                    }
                    self.update(info, namespace, name, None, object, &opts)
                        .await
                        .map(|written| Applied {
                            written,
                            created: false,
                        })
                }
            };
            match result {
                Err(ApiError::Conflict { .. } | ApiError::AlreadyExists { .. })
                    if attempt < RETRIES =>
                {
                    continue
                }
                other => return other,
            }
        }
    }
}
