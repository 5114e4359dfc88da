//! Deleting a CustomResourceDefinition, finished: a deleted definition is Terminating while it
//! holds the clean-up finalizer; this loop deletes every object of its kind, then removes the
//! finalizer, and the definition goes (as Kubernetes' apiextensions server does).
//!
//! Every master runs the loop; the work is idempotent (deleting what is already gone is fine,
//! and the finalizer comes off by compare-and-swap), so several masters at once agree.

use std::time::Duration;

use keel_types::crd::CLEANUP_FINALIZER;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use crate::error::ApiError;
use crate::list::ListOptions;
use crate::meta;
use crate::server::{ApiServer, DeleteOptions, WriteOptions};
use crate::storage::Storage;

/// How often terminating definitions are looked for.
const SWEEP: Duration = Duration::from_millis(500);

impl<S: Storage> ApiServer<S> {
    /// Finishes the deletion of terminating CustomResourceDefinitions until `shutdown`.
    pub async fn run_definition_cleanup(&self, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(SWEEP) => {}
            }
            if let Err(e) = self.clean_up_definitions().await {
                tracing::debug!(error = %e, "custom resource clean-up; will retry");
            }
        }
    }

    async fn clean_up_definitions(&self) -> Result<(), ApiError> {
        let Some(crd_info) =
            keel_types::kinds::by_kind("apiextensions.k8s.io/v1", "CustomResourceDefinition")
        else {
            return Ok(());
        };
        let list = self.list(crd_info, None, &ListOptions::default()).await?;
        let terminating: Vec<Value> = list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|d| meta::has_deletion_timestamp(d))
            .filter(|d| meta::finalizers(d).iter().any(|f| f == CLEANUP_FINALIZER))
            .cloned()
            .collect();
        if terminating.is_empty() {
            return Ok(());
        }
        let custom = self.custom_kinds().await?;
        for definition in terminating {
            let name = meta::name(&definition).to_string();
            let mut remaining = 0;
            if let Some(version) = custom.of_definition(&name).next() {
                let info = version.info;
                let objects = self.list(info, None, &ListOptions::default()).await?;
                for item in objects["items"].as_array().into_iter().flatten() {
                    remaining += 1;
                    let namespace = Some(meta::namespace(item)).filter(|ns| !ns.is_empty());
                    match self
                        .delete(info, namespace, meta::name(item), &DeleteOptions::default())
                        .await
                    {
                        Ok(_) | Err(ApiError::NotFound { .. }) => {}
                        Err(e) => {
                            tracing::debug!(definition = %name, error = %e, "deleting a custom object")
                        }
                    }
                }
            }
            if remaining == 0 {
                self.remove_cleanup_finalizer(crd_info, &definition).await?;
            }
        }
        Ok(())
    }

    async fn remove_cleanup_finalizer(
        &self,
        crd_info: &'static keel_types::ResourceInfo,
        definition: &Value,
    ) -> Result<(), ApiError> {
        let finalizers: Vec<String> = meta::finalizers(definition)
            .into_iter()
            .filter(|f| f != CLEANUP_FINALIZER)
            .collect();
        let mut next = definition.clone();
        next["metadata"]["finalizers"] = json!(finalizers);
        match self
            .update(
                crd_info,
                None,
                meta::name(definition),
                None,
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
