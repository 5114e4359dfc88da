//! Namespace deletion, finished: a deleted namespace is Terminating while it still holds the
//! `kubernetes` finalizer; this loop deletes everything in it, then removes the finalizer, and
//! the namespace goes (as Kubernetes' namespace controller does).
//!
//! While content remains, the namespace's conditions say what (see `namespace_conditions`).
//! Every master runs the loop; the work is idempotent (deleting what is already gone is fine,
//! and finalizing is a compare-and-swap), so several masters doing it at once agree.

use std::time::Duration;

use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use crate::error::ApiError;
use crate::list::ListOptions;
use crate::meta;
use crate::namespace_conditions::{conditions, group_resource, Pass};
use crate::server::{ApiServer, DeleteOptions, WriteOptions};
use crate::storage::Storage;

/// Namespaces that may never be deleted (Kubernetes' NamespaceLifecycle admission keeps these
/// three): the cluster's own objects live in them.
const IMMORTAL: [&str; 3] = ["default", "kube-system", "kube-public"];

/// Refuses the deletion of an immortal namespace, with Kubernetes' message.
pub(crate) fn refuse_immortal_delete(
    info: &keel_types::ResourceInfo,
    name: &str,
) -> Result<(), ApiError> {
    if info.group.is_empty() && info.kind == "Namespace" && IMMORTAL.contains(&name) {
        return Err(ApiError::Forbidden(format!(
            "namespaces \"{name}\" is forbidden: this namespace may not be deleted"
        )));
    }
    Ok(())
}

/// How often terminating namespaces are looked for.
const SWEEP: Duration = Duration::from_millis(500);
const FINALIZER: &str = "kubernetes";

impl<S: Storage> ApiServer<S> {
    /// Finishes the deletion of terminating namespaces until `shutdown`.
    pub async fn run_namespace_finalizer(&self, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(SWEEP) => {}
            }
            if let Err(e) = self.finalize_namespaces().await {
                tracing::debug!(error = %e, "namespace finalization; will retry");
            }
        }
    }

    async fn finalize_namespaces(&self) -> Result<(), ApiError> {
        let Some(ns_info) = keel_types::kinds::by_kind("v1", "Namespace") else {
            return Ok(());
        };
        let list = self.list(ns_info, None, &ListOptions::default()).await?;
        let terminating: Vec<Value> = list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|ns| meta::has_deletion_timestamp(ns))
            .cloned()
            .collect();
        for ns in terminating {
            let name = meta::name(&ns).to_string();
            let pass = self.empty_namespace(&name).await?;
            if pass.remaining.is_empty() && pass.failures.is_empty() {
                self.remove_finalizer(ns_info, &name).await?;
            } else {
                self.report(ns_info, &ns, &pass).await;
            }
        }
        Ok(())
    }

    /// Writes what holds a namespace's deletion up into its conditions, when that changed.
    async fn report(&self, ns_info: &'static keel_types::ResourceInfo, ns: &Value, pass: &Pass) {
        let existing: Vec<Value> = ns
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let next = conditions(&existing, pass, &meta::now());
        if next == existing {
            return;
        }
        let mut updated = ns.clone();
        updated["status"]["conditions"] = json!(next);
        let name = meta::name(ns);
        // A conflict means the namespace changed meanwhile; the next sweep reports again.
        if let Err(e) = self
            .update(
                ns_info,
                None,
                name,
                Some("status"),
                updated,
                &WriteOptions::default(),
            )
            .await
        {
            tracing::debug!(namespace = %name, error = %e, "namespace conditions");
        }
    }

    /// Deletes every object in `namespace`; returns what it found (nothing once it is empty)
    /// and which deletions failed.
    async fn empty_namespace(&self, namespace: &str) -> Result<Pass, ApiError> {
        let mut pass = Pass::default();
        let custom = self.custom_kinds().await?;
        let kinds = keel_types::kinds::all()
            .iter()
            .chain(custom.one_version_each())
            .filter(|k| k.namespaced());
        for info in kinds {
            let list = self
                .list(info, Some(namespace), &ListOptions::default())
                .await?;
            let resource = group_resource(info.group, info.plural);
            for item in list["items"].as_array().into_iter().flatten() {
                pass.found(&resource, item);
                let name = meta::name(item);
                match self
                    .delete(
                        info,
                        Some(namespace),
                        name,
                        &DeleteOptions {
                            grace_period_seconds: Some(0),
                            ..Default::default()
                        },
                    )
                    .await
                {
                    Ok(_) | Err(ApiError::NotFound { .. }) => {}
                    Err(e) => pass.failures.push(e.to_string()),
                }
            }
        }
        Ok(pass)
    }

    async fn remove_finalizer(
        &self,
        ns_info: &'static keel_types::ResourceInfo,
        name: &str,
    ) -> Result<(), ApiError> {
        let ns = self.get(ns_info, None, name).await?;
        let finalizers: Vec<Value> = ns
            .pointer("/spec/finalizers")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|f| f != FINALIZER)
            .collect();
        let mut next = ns.clone();
        next["spec"]["finalizers"] = json!(finalizers);
        match self
            .update(
                ns_info,
                None,
                name,
                Some("finalize"),
                next,
                &WriteOptions::default(),
            )
            .await
        {
            Ok(_) | Err(ApiError::NotFound { .. }) | Err(ApiError::Conflict { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::server::{ApiServer, DeleteOptions, WriteOptions};
    use crate::storage::memory::MemoryStorage;

    fn kind(api_version: &str, kind: &str) -> &'static keel_types::ResourceInfo {
        keel_types::kinds::by_kind(api_version, kind).expect("a served kind")
    }

    #[tokio::test]
    async fn a_create_in_a_terminating_namespace_names_the_object_as_kubernetes_does() {
        let core = ApiServer::new(MemoryStorage::new());
        let opts = WriteOptions::default();
        core.create(
            kind("v1", "Namespace"),
            None,
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "going"}}),
            &opts,
        )
        .await
        .expect("namespace");
        // No finalization loop runs here: the namespace stays Terminating.
        core.delete(
            kind("v1", "Namespace"),
            None,
            "going",
            &DeleteOptions::default(),
        )
        .await
        .expect("marked");
        let config_map =
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}});
        let err = core
            .create(kind("v1", "ConfigMap"), Some("going"), config_map, &opts)
            .await
            .expect_err("terminating");
        assert_eq!(err.code(), 403);
        assert_eq!(
            err.to_string(),
            "configmaps \"settings\" is forbidden: unable to create new content in namespace going because it is being terminated"
        );
        let deployment = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}});
        let err = core
            .create(
                kind("apps/v1", "Deployment"),
                Some("going"),
                deployment,
                &opts,
            )
            .await
            .expect_err("terminating");
        assert!(
            err.to_string()
                .starts_with("deployments.apps \"web\" is forbidden"),
            "{err}"
        );
    }
}
