//! What every cluster has from its first start: the namespaces Kubernetes creates itself.

use std::time::Duration;

use serde_json::json;

use crate::error::ApiError;
use crate::server::{ApiServer, WriteOptions};
use crate::storage::Storage;

pub const SYSTEM_NAMESPACES: [&str; 4] =
    ["default", "kube-system", "kube-public", "kube-node-lease"];

/// Creates the system namespaces that do not exist yet, retrying while the store is not
/// serving. Every master runs this; creation is idempotent (AlreadyExists is success).
pub async fn ensure_namespaces<S: Storage>(api: &ApiServer<S>) {
    let Some(info) = keel_types::kinds::by_kind("v1", "Namespace") else {
        return;
    };
    for name in SYSTEM_NAMESPACES {
        loop {
            let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
            match api.create(info, None, ns, &WriteOptions::default()).await {
                Ok(_) | Err(ApiError::AlreadyExists { .. }) => break,
                Err(e) => {
                    tracing::debug!(namespace = name, error = %e, "creating system namespace; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }
}
