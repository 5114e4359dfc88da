//! Which pods the pod garbage collector removes, as Kubernetes' decides it: finished pods
//! (Succeeded or Failed) beyond the threshold, oldest first; pods bound to a node that no
//! longer exists (once its absence has lasted the quarantine and been confirmed); and pods
//! marked for deletion that were never scheduled, so no kubelet will ever finish them. Pure.

use std::collections::HashSet;
use std::sync::Arc;

use keel_client::k8s_openapi::api::core::v1::Pod;

use crate::pods::phase;

/// Why a pod is collected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    Terminated,
    Orphaned,
    UnscheduledTerminating,
}

fn node_of(pod: &Pod) -> Option<&str> {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .filter(|n| !n.is_empty())
}

/// Finished pods beyond `threshold`, oldest first (none if `threshold` is 0, which turns this
/// off as in Kubernetes).
pub fn terminated(pods: &[Arc<Pod>], threshold: usize) -> Vec<Arc<Pod>> {
    if threshold == 0 {
        return Vec::new();
    }
    let mut finished: Vec<Arc<Pod>> = pods
        .iter()
        .filter(|p| {
            matches!(phase(p), "Succeeded" | "Failed") && p.metadata.deletion_timestamp.is_none()
        })
        .cloned()
        .collect();
    if finished.len() <= threshold {
        return Vec::new();
    }
    finished.sort_by_key(|p| p.metadata.creation_timestamp.as_ref().map(|t| t.0));
    let excess = finished.len() - threshold;
    finished.truncate(excess);
    finished
}

/// The names of nodes pods are bound to that are not among `nodes`.
pub fn missing_nodes(pods: &[Arc<Pod>], nodes: &HashSet<String>) -> HashSet<String> {
    pods.iter()
        .filter_map(|p| node_of(p))
        .filter(|n| !nodes.contains(*n))
        .map(String::from)
        .collect()
}

/// Pods bound to any of `gone` (nodes confirmed absent).
pub fn orphaned(pods: &[Arc<Pod>], gone: &HashSet<String>) -> Vec<Arc<Pod>> {
    pods.iter()
        .filter(|p| node_of(p).is_some_and(|n| gone.contains(n)))
        .cloned()
        .collect()
}

/// Pods marked for deletion that no node was ever given.
pub fn unscheduled_terminating(pods: &[Arc<Pod>]) -> Vec<Arc<Pod>> {
    pods.iter()
        .filter(|p| p.metadata.deletion_timestamp.is_some() && node_of(p).is_none())
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_client::k8s_openapi::api::core::v1::{PodSpec, PodStatus};
    use keel_client::k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
    use keel_client::k8s_openapi::chrono::{TimeDelta, Utc};

    fn pod(name: &str, phase: &str, age: i64, node: Option<&str>, terminating: bool) -> Arc<Pod> {
        let now = Utc::now();
        Arc::new(Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                creation_timestamp: Some(Time(now - TimeDelta::seconds(age))),
                deletion_timestamp: terminating.then_some(Time(now)),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: node.map(String::from),
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: Some(phase.into()),
                ..Default::default()
            }),
        })
    }

    fn names(pods: &[Arc<Pod>]) -> Vec<&str> {
        pods.iter()
            .filter_map(|p| p.metadata.name.as_deref())
            .collect()
    }

    #[test]
    fn the_oldest_finished_pods_beyond_the_threshold_go() {
        let pods = vec![
            pod("old-done", "Succeeded", 300, Some("n"), false),
            pod("running", "Running", 400, Some("n"), false),
            pod("mid-failed", "Failed", 200, Some("n"), false),
            pod("new-done", "Succeeded", 100, Some("n"), false),
        ];
        assert_eq!(names(&terminated(&pods, 1)), vec!["old-done", "mid-failed"]);
        assert!(terminated(&pods, 3).is_empty());
        assert!(terminated(&pods, 0).is_empty(), "0 turns it off");
    }

    #[test]
    fn pods_of_vanished_nodes_and_unscheduled_terminating_pods_are_found() {
        let pods = vec![
            pod("on-live", "Running", 10, Some("live"), false),
            pod("on-gone", "Running", 10, Some("gone"), false),
            pod("pending-deleted", "Pending", 10, None, true),
            pod("pending", "Pending", 10, None, false),
        ];
        let nodes: HashSet<String> = ["live".to_string()].into();
        let missing = missing_nodes(&pods, &nodes);
        assert_eq!(missing, ["gone".to_string()].into());
        assert_eq!(names(&orphaned(&pods, &missing)), vec!["on-gone"]);
        assert_eq!(
            names(&unscheduled_terminating(&pods)),
            vec!["pending-deleted"]
        );
    }
}
