//! How a ReplicaSet converges on its replica count: how many pods to create (at most
//! [`BURST`] per sync, in slow-start batches that double while creations succeed), and which
//! pods to delete first, ranked as Kubernetes ranks them. Pure.

use std::collections::HashMap;
use std::sync::Arc;

use keel_client::k8s_openapi::api::core::v1::Pod;
use keel_client::k8s_openapi::chrono::{DateTime, Utc};

use crate::pods::{phase, ready_since};

/// Most creations or deletions one sync starts (kube-controller-manager's burstReplicas).
pub const BURST: usize = 500;
/// The first slow-start batch.
pub const INITIAL_BATCH: usize = 1;

/// Pods to create (positive) or delete (negative) so that `active` becomes `desired`,
/// bounded by [`BURST`].
pub fn diff(active: usize, desired: usize) -> i64 {
    let diff = desired as i64 - active as i64;
    diff.clamp(-(BURST as i64), BURST as i64)
}

/// Batch sizes for creating `count` pods: 1, 2, 4 … until the total is reached. A failed
/// batch stops the rest (a quota or admission error would fail them all).
pub fn slow_start_batches(count: usize) -> Vec<usize> {
    let mut batches = Vec::new();
    let mut remaining = count;
    let mut size = INITIAL_BATCH;
    while remaining > 0 {
        let batch = size.min(remaining);
        batches.push(batch);
        remaining -= batch;
        size *= 2;
    }
    batches
}

/// The pods to delete among `owned` (all active, all this ReplicaSet's) to remove `count`,
/// most expendable first. `related` are the active pods of this ReplicaSet and its siblings
/// (the other ReplicaSets of the same Deployment), used to spread deletions over nodes that
/// hold more than one of them.
///
/// The order, as Kubernetes' ActivePodsWithRanks: unscheduled before scheduled; Pending
/// before Unknown before Running; not ready before ready; lower
/// `controller.kubernetes.io/pod-deletion-cost` first; more pods of the family on the same
/// node first; ready for less time first; more container restarts first; newer first.
pub fn pods_to_delete(owned: &[Arc<Pod>], related: &[Arc<Pod>], count: usize) -> Vec<Arc<Pod>> {
    let mut per_node: HashMap<&str, usize> = HashMap::new();
    for pod in related {
        if let Some(node) = node_of(pod) {
            *per_node.entry(node).or_default() += 1;
        }
    }
    let mut ranked: Vec<(Rank, Arc<Pod>)> = owned
        .iter()
        .map(|pod| {
            let colocated = node_of(pod)
                .and_then(|n| per_node.get(n))
                .copied()
                .unwrap_or(0);
            (Rank::of(pod, colocated), pod.clone())
        })
        .collect();
    ranked.sort_by(|a, b| a.0.cmp(&b.0));
    ranked.into_iter().take(count).map(|(_, p)| p).collect()
}

fn node_of(pod: &Pod) -> Option<&str> {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .filter(|n| !n.is_empty())
}

/// A sort key: smaller is deleted first.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Rank {
    scheduled: bool,
    phase: u8,
    ready: bool,
    deletion_cost: i64,
    /// Negated: more co-located pods sort first.
    colocated: std::cmp::Reverse<usize>,
    /// Later ready-since sorts first (ready for less time).
    ready_since: std::cmp::Reverse<Option<DateTime<Utc>>>,
    restarts: std::cmp::Reverse<i32>,
    /// Later creation sorts first (newer first).
    created: std::cmp::Reverse<Option<DateTime<Utc>>>,
}

impl Rank {
    fn of(pod: &Pod, colocated: usize) -> Rank {
        let phase = match phase(pod) {
            "Pending" | "" => 0,
            "Unknown" => 1,
            _ => 2,
        };
        let since = ready_since(pod);
        let deletion_cost = pod
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("controller.kubernetes.io/pod-deletion-cost"))
            .and_then(|v| v.parse::<i32>().ok())
            .map(i64::from)
            .unwrap_or(0);
        let restarts = pod
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .map(|cs| cs.iter().map(|c| c.restart_count).max().unwrap_or(0))
            .unwrap_or(0);
        Rank {
            scheduled: node_of(pod).is_some(),
            phase,
            ready: since.is_some(),
            deletion_cost,
            colocated: std::cmp::Reverse(colocated),
            ready_since: std::cmp::Reverse(since),
            restarts: std::cmp::Reverse(restarts),
            created: std::cmp::Reverse(pod.metadata.creation_timestamp.as_ref().map(|t| t.0)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_client::k8s_openapi::api::core::v1::{
        ContainerStatus, PodCondition, PodSpec, PodStatus,
    };
    use keel_client::k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
    use keel_client::k8s_openapi::chrono::TimeDelta;
    use std::collections::BTreeMap;

    struct P {
        name: &'static str,
        node: Option<&'static str>,
        phase: &'static str,
        ready_ago: Option<i64>,
        age: i64,
        restarts: i32,
        cost: Option<&'static str>,
    }

    impl Default for P {
        fn default() -> Self {
            P {
                name: "p",
                node: Some("n1"),
                phase: "Running",
                ready_ago: Some(100),
                age: 200,
                restarts: 0,
                cost: None,
            }
        }
    }

    fn pod(p: P) -> Arc<Pod> {
        let now = Utc::now();
        Arc::new(Pod {
            metadata: ObjectMeta {
                name: Some(p.name.into()),
                creation_timestamp: Some(Time(now - TimeDelta::seconds(p.age))),
                annotations: p.cost.map(|c| {
                    BTreeMap::from([(
                        "controller.kubernetes.io/pod-deletion-cost".to_string(),
                        c.to_string(),
                    )])
                }),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: p.node.map(String::from),
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: Some(p.phase.into()),
                conditions: p.ready_ago.map(|ago| {
                    vec![PodCondition {
                        type_: "Ready".into(),
                        status: "True".into(),
                        last_transition_time: Some(Time(now - TimeDelta::seconds(ago))),
                        ..Default::default()
                    }]
                }),
                container_statuses: Some(vec![ContainerStatus {
                    restart_count: p.restarts,
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        })
    }

    fn order(pods: &[Arc<Pod>]) -> Vec<&str> {
        let chosen = pods_to_delete(pods, pods, pods.len());
        chosen
            .iter()
            .map(|p| match p.metadata.name.as_deref() {
                Some("unscheduled") => "unscheduled",
                Some("pending") => "pending",
                Some("unready") => "unready",
                Some("cheap") => "cheap",
                Some("recent") => "recent",
                Some("restarty") => "restarty",
                Some("newer") => "newer",
                Some("old") => "old",
                _ => "?",
            })
            .collect()
    }

    #[test]
    fn deletion_prefers_unscheduled_then_pending_then_unready_then_cheap() {
        let pods = vec![
            pod(P {
                name: "old",
                ..P::default()
            }),
            pod(P {
                name: "cheap",
                cost: Some("-10"),
                ..P::default()
            }),
            pod(P {
                name: "unready",
                ready_ago: None,
                ..P::default()
            }),
            pod(P {
                name: "pending",
                phase: "Pending",
                ready_ago: None,
                ..P::default()
            }),
            pod(P {
                name: "unscheduled",
                node: None,
                phase: "Pending",
                ready_ago: None,
                ..P::default()
            }),
        ];
        assert_eq!(
            order(&pods),
            vec!["unscheduled", "pending", "unready", "cheap", "old"]
        );
    }

    #[test]
    fn among_equals_the_most_recently_ready_then_most_restarted_then_newest_go_first() {
        let pods = vec![
            pod(P {
                name: "old",
                ..P::default()
            }),
            pod(P {
                name: "newer",
                age: 150,
                ..P::default()
            }),
            pod(P {
                name: "restarty",
                restarts: 3,
                ..P::default()
            }),
            pod(P {
                name: "recent",
                ready_ago: Some(10),
                ..P::default()
            }),
        ];
        assert_eq!(order(&pods), vec!["recent", "restarty", "newer", "old"]);
    }

    #[test]
    fn pods_doubled_up_on_a_node_go_before_lone_ones() {
        let pods = vec![
            pod(P {
                name: "old",
                node: Some("alone"),
                ..P::default()
            }),
            pod(P {
                name: "newer",
                node: Some("crowded"),
                age: 300,
                ..P::default()
            }),
            pod(P {
                name: "restarty",
                node: Some("crowded"),
                age: 300,
                ..P::default()
            }),
        ];
        let chosen = pods_to_delete(&pods, &pods, 1);
        assert_eq!(
            chosen[0].spec.as_ref().and_then(|s| s.node_name.as_deref()),
            Some("crowded")
        );
    }

    #[test]
    fn the_diff_is_bounded_by_the_burst() {
        assert_eq!(diff(0, 3), 3);
        assert_eq!(diff(5, 3), -2);
        assert_eq!(diff(0, 3000), BURST as i64);
        assert_eq!(diff(3000, 0), -(BURST as i64));
    }

    #[test]
    fn slow_start_doubles_until_the_count_is_reached() {
        assert_eq!(slow_start_batches(0), Vec::<usize>::new());
        assert_eq!(slow_start_batches(1), vec![1]);
        assert_eq!(slow_start_batches(10), vec![1, 2, 4, 3]);
        assert_eq!(slow_start_batches(500).iter().sum::<usize>(), 500);
    }
}
