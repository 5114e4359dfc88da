//! The kinds the ReplicaSet controller keeps replicas of: ReplicaSets, and the
//! ReplicationControllers that came before them (as kube-controller-manager does, one
//! controller serves both; a ReplicationController is seen as the ReplicaSet whose selector
//! is its label map).

use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetSpec, ReplicaSetStatus};
use k8s_openapi::api::core::v1::ReplicationController;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::{ListableResource, Metadata, NamespaceResourceScope, Resource};
use keel_client::k8s_openapi;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// A kind whose objects keep `spec.replicas` pods of a template.
pub trait Replicated:
    Resource<Scope = NamespaceResourceScope>
    + ListableResource
    + Metadata<Ty = ObjectMeta>
    + Clone
    + Serialize
    + DeserializeOwned
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
{
    /// The component on Events, as kube-controller-manager names it.
    const COMPONENT: &'static str;
    /// The controller's name, for metrics and `--controllers`.
    const CONTROLLER: &'static str;

    /// The object seen as a ReplicaSet: what the controller's decisions read.
    fn as_replica_set(&self) -> ReplicaSet;
}

impl Replicated for ReplicaSet {
    const COMPONENT: &'static str = "replicaset-controller";
    const CONTROLLER: &'static str = "replicaset";

    fn as_replica_set(&self) -> ReplicaSet {
        self.clone()
    }
}

impl Replicated for ReplicationController {
    const COMPONENT: &'static str = "replication-controller";
    const CONTROLLER: &'static str = "replicationcontroller";

    fn as_replica_set(&self) -> ReplicaSet {
        let spec = self.spec.clone().unwrap_or_default();
        ReplicaSet {
            metadata: self.metadata.clone(),
            spec: Some(ReplicaSetSpec {
                replicas: spec.replicas,
                min_ready_seconds: spec.min_ready_seconds,
                selector: LabelSelector {
                    match_labels: spec.selector.filter(|s| !s.is_empty()),
                    match_expressions: None,
                },
                template: spec.template,
            }),
            // The two statuses have the same fields under the same names.
            status: self
                .status
                .as_ref()
                .and_then(|s| serde_json::to_value(s).ok())
                .and_then(|v| serde_json::from_value::<ReplicaSetStatus>(v).ok()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_replication_controller_reads_as_the_replica_set_of_its_label_map() {
        let rc: ReplicationController = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "u1"},
            "spec": {"replicas": 3, "selector": {"app": "web"},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}},
            "status": {"replicas": 2, "readyReplicas": 1, "observedGeneration": 4}
        }))
        .expect("rc");
        let rs = rc.as_replica_set();
        let spec = rs.spec.expect("spec");
        assert_eq!(spec.replicas, Some(3));
        assert_eq!(spec.selector.match_labels.expect("labels")["app"], "web");
        assert!(spec.template.is_some());
        let status = rs.status.expect("status");
        assert_eq!(
            (
                status.replicas,
                status.ready_replicas,
                status.observed_generation
            ),
            (2, Some(1), Some(4))
        );
    }
}
