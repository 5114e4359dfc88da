//! What every cluster has from its first start: the namespaces Kubernetes creates itself, its
//! bootstrap RBAC policy (cluster-admin for system:masters, admin/edit/view, discovery for
//! every authenticated user, the scheduler's role), and the built-in PriorityClasses.

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

/// Creates the bootstrap ClusterRoles and ClusterRoleBindings that do not exist yet (existing
/// ones are left as an operator may have changed them).
pub async fn ensure_rbac<S: Storage>(api: &ApiServer<S>) {
    let roles = crate::auth::bootstrap_roles::cluster_roles()
        .into_iter()
        .filter_map(|r| serde_json::to_value(r).ok())
        .map(|v| ("ClusterRole", v));
    let bindings = crate::auth::bootstrap_roles::cluster_role_bindings()
        .into_iter()
        .filter_map(|b| serde_json::to_value(b).ok())
        .map(|v| ("ClusterRoleBinding", v));
    for (kind, object) in roles.chain(bindings) {
        let Some(info) = keel_types::kinds::by_kind("rbac.authorization.k8s.io/v1", kind) else {
            continue;
        };
        loop {
            match api
                .create(info, None, object.clone(), &WriteOptions::default())
                .await
            {
                Ok(_) | Err(ApiError::AlreadyExists { .. }) => break,
                Err(ApiError::Invalid { causes, .. }) => {
                    tracing::error!(kind, ?causes, "bootstrap RBAC object is invalid");
                    break;
                }
                Err(e) => {
                    tracing::debug!(kind, error = %e, "creating bootstrap RBAC; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }
}

/// The built-in PriorityClass objects, as Kubernetes creates them.
pub fn system_priority_classes() -> Vec<serde_json::Value> {
    keel_types::validation::SYSTEM_PRIORITY_CLASSES
        .iter()
        .map(|c| {
            json!({
                "apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
                "metadata": {"name": c.name},
                "value": c.value,
                "description": c.description,
            })
        })
        .collect()
}

/// Creates the built-in PriorityClasses that do not exist yet, retrying while the store is
/// not serving.
pub async fn ensure_priority_classes<S: Storage>(api: &ApiServer<S>) {
    let Some(info) = keel_types::kinds::by_kind("scheduling.k8s.io/v1", "PriorityClass") else {
        return;
    };
    for class in system_priority_classes() {
        loop {
            match api
                .create(info, None, class.clone(), &WriteOptions::default())
                .await
            {
                Ok(_) | Err(ApiError::AlreadyExists { .. }) => break,
                Err(ApiError::Invalid { causes, .. }) => {
                    tracing::error!(?causes, "built-in PriorityClass is invalid");
                    break;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "creating built-in PriorityClass; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }
}

/// Waits until the watch cache holds everything written so far: after the bootstrap above, so
/// that the first request (authorized from the cache) never meets an RBAC policy without its
/// default bindings, and a new master does not refuse discovery to users it will allow a
/// moment later.
pub async fn wait_for_cache<S: Storage>(api: &ApiServer<S>) {
    let Some(cache) = api.cache.as_ref() else {
        return;
    };
    loop {
        match api.storage().revision().await {
            Ok(revision) if cache.wait_for(revision, Duration::from_secs(10)).await => return,
            Ok(_) => tracing::debug!("the watch cache is behind the store; waiting"),
            Err(e) => tracing::debug!(error = %e, "reading the store's revision; retrying"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
