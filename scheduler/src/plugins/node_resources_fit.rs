//! NodeResourcesFit: a pod fits a node only if the node's allocatable resources, less what the
//! pods counted there request, cover what the pod requests, and the node has room for one more
//! pod. Its score (LeastAllocated) prefers the nodes that would have the most left over.

use crate::framework::{
    ClusterEvent, CycleState, Filter, NodeInfo, PodInfo, Rejection, Score, MAX_NODE_SCORE,
};
use crate::resources::{Resources, CPU, EPHEMERAL_STORAGE, MEMORY, PODS};

/// One resource a node cannot give a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Insufficient {
    pub resource: String,
    /// kube-scheduler's wording: `Too many pods`, `Insufficient cpu`, …
    pub reason: String,
    pub requested: i64,
    pub used: i64,
    pub capacity: i64,
    /// The pod asks for more than the node has at all, so evicting every pod would not help.
    pub unresolvable: bool,
}

/// Every resource `node` lacks for a pod requesting `requests` (empty when it fits), in
/// kube-scheduler's order: pod count, cpu, memory, ephemeral-storage, then extended resources.
///
/// The pod count is always checked. Any other resource is checked only when requested: a
/// request of zero fits even a node that does not have the resource at all, while a positive
/// request for an extended resource the node does not report finds zero there.
pub fn insufficient_resources(requests: &Resources, node: &NodeInfo) -> Vec<Insufficient> {
    let mut out = Vec::new();
    let pods_used = node.pods.len() as i64;
    if pods_used + 1 > node.allocatable.pods {
        out.push(Insufficient {
            resource: PODS.to_string(),
            reason: "Too many pods".to_string(),
            requested: 1,
            used: pods_used,
            capacity: node.allocatable.pods,
            // Kubernetes leaves the pod count resolvable even when the node allows none.
            unresolvable: false,
        });
    }
    let mut check = |resource: &str, want: i64, used: i64, capacity: i64| {
        if want > 0 && want > capacity - used {
            out.push(Insufficient {
                resource: resource.to_string(),
                reason: format!("Insufficient {resource}"),
                requested: want,
                used,
                capacity,
                unresolvable: want > capacity,
            });
        }
    };
    let (alloc, used) = (&node.allocatable, &node.requested);
    check(CPU, requests.milli_cpu, used.milli_cpu, alloc.milli_cpu);
    check(MEMORY, requests.memory, used.memory, alloc.memory);
    check(
        EPHEMERAL_STORAGE,
        requests.ephemeral_storage,
        used.ephemeral_storage,
        alloc.ephemeral_storage,
    );
    for (name, want) in &requests.scalar {
        check(name, *want, used.scalar(name), alloc.scalar(name));
    }
    out
}

/// `(allocatable - requested) * 100 / allocatable`, 0 when over-committed (kube-scheduler's
/// `leastRequestedScore`).
fn least_requested_score(requested: i64, allocatable: i64) -> i64 {
    if allocatable <= 0 || requested > allocatable {
        return 0;
    }
    // i128: memory in bytes times 100 stays far from overflow for any real node.
    let free = i128::from(allocatable - requested);
    (free * i128::from(MAX_NODE_SCORE) / i128::from(allocatable)) as i64
}

/// LeastAllocated over cpu and memory, weight 1 each, on the non-zero requests (a container
/// without a request counts as 100m and 200Mi, so empty pods still spread). A resource the node
/// reports none of is left out of the mean rather than scored 0.
pub fn least_allocated_score(pod: &PodInfo, node: &NodeInfo) -> i64 {
    let resources = [
        (
            node.allocatable.milli_cpu,
            node.non_zero_cpu + pod.non_zero_cpu,
        ),
        (
            node.allocatable.memory,
            node.non_zero_memory + pod.non_zero_memory,
        ),
    ];
    const WEIGHT: i64 = 1;
    let (mut total, mut weights) = (0, 0);
    for (allocatable, requested) in resources {
        if allocatable == 0 {
            continue;
        }
        total += least_requested_score(requested, allocatable) * WEIGHT;
        weights += WEIGHT;
    }
    if weights == 0 {
        0
    } else {
        total / weights
    }
}

/// kube-scheduler's `NodeResourcesFit` filter and score (LeastAllocated strategy).
#[derive(Debug, Default, Clone, Copy)]
pub struct NodeResourcesFit;

impl NodeResourcesFit {
    pub const NAME: &'static str = "NodeResourcesFit";
}

impl Filter for NodeResourcesFit {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<(), Rejection> {
        let missing = insufficient_resources(&pod.requests, node);
        if missing.is_empty() {
            return Ok(());
        }
        Err(Rejection {
            plugin: Self::NAME,
            // Preemption frees what other pods use; it cannot grow the node.
            unresolvable: missing.iter().any(|m| m.unresolvable),
            reasons: missing.into_iter().map(|m| m.reason).collect(),
        })
    }

    fn events(&self) -> &'static [ClusterEvent] {
        &[
            ClusterEvent::NodeAdded,
            ClusterEvent::NodeAllocatableChanged,
            ClusterEvent::AssignedPodDeleted,
        ]
    }
}

impl Score for NodeResourcesFit {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn score(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> i64 {
        least_allocated_score(pod, node)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{node, pod, NodeBuilder, PodBuilder};

    fn filter(incoming: PodBuilder, n: NodeInfo) -> Result<(), Rejection> {
        NodeResourcesFit.filter(&CycleState::default(), &incoming.info(), &n)
    }

    /// 4 cpu, 8Gi memory, 10Gi ephemeral storage, 2 gpus, room for 3 pods.
    fn medium() -> NodeBuilder {
        node("n").allocatable(&[
            ("cpu", "4"),
            ("memory", "8Gi"),
            ("ephemeral-storage", "10Gi"),
            ("example.com/gpu", "2"),
            ("pods", "3"),
        ])
    }

    fn reasons(r: Result<(), Rejection>) -> Vec<String> {
        match r {
            Ok(()) => vec![],
            Err(e) => e.reasons,
        }
    }

    #[test]
    fn each_resource_is_checked_against_what_is_left() {
        type Requests = &'static [(&'static str, &'static str)];
        // (name, incoming pod's container requests, existing pod's requests, reasons)
        let cases: [(&str, Requests, Requests, &[&str]); 9] = [
            (
                "fits an empty node",
                &[("cpu", "4"), ("memory", "8Gi")],
                &[],
                &[],
            ),
            (
                "fits exactly what is left",
                &[("cpu", "1")],
                &[("cpu", "3")],
                &[],
            ),
            (
                "cpu over what is left",
                &[("cpu", "1500m")],
                &[("cpu", "3")],
                &["Insufficient cpu"],
            ),
            (
                "memory over what is left",
                &[("memory", "5Gi")],
                &[("memory", "4Gi")],
                &["Insufficient memory"],
            ),
            (
                "ephemeral storage over what is left",
                &[("ephemeral-storage", "6Gi")],
                &[("ephemeral-storage", "5Gi")],
                &["Insufficient ephemeral-storage"],
            ),
            (
                "extended resource over what is left",
                &[("example.com/gpu", "2")],
                &[("example.com/gpu", "1")],
                &["Insufficient example.com/gpu"],
            ),
            (
                "extended resource the node lacks",
                &[("example.com/fpga", "1")],
                &[],
                &["Insufficient example.com/fpga"],
            ),
            (
                "extended resource the node lacks, requested as zero",
                &[("example.com/fpga", "0")],
                &[],
                &[],
            ),
            (
                "every shortfall reported in order",
                &[("cpu", "5"), ("memory", "9Gi"), ("example.com/gpu", "3")],
                &[],
                &[
                    "Insufficient cpu",
                    "Insufficient memory",
                    "Insufficient example.com/gpu",
                ],
            ),
        ];
        for (name, want, used, expected) in cases {
            let n = medium().with_pods(vec![pod("old").container(used)]);
            assert_eq!(
                reasons(filter(pod("in").container(want), n)),
                expected,
                "{name}"
            );
        }
    }

    #[test]
    fn full_node_has_too_many_pods() {
        let n = medium().with_pods(vec![pod("a"), pod("b"), pod("c")]);
        let err = filter(pod("in").container(&[("cpu", "1")]), n).unwrap_err();
        assert_eq!(err.reasons, vec!["Too many pods"]);
        assert!(!err.unresolvable);
    }

    #[test]
    fn pod_requesting_nothing_only_checks_the_pod_count() {
        let bare = node("n").allocatable(&[("pods", "1")]);
        assert_eq!(
            filter(pod("in").container(&[]), bare.clone().info()),
            Ok(())
        );
        let full = bare.with_pods(vec![pod("old")]);
        assert_eq!(
            reasons(filter(pod("in").container(&[]), full)),
            vec!["Too many pods"]
        );
    }

    #[test]
    fn node_without_a_pods_allocatable_takes_no_pods() {
        let n = node("n").allocatable(&[("cpu", "4")]).info();
        assert_eq!(reasons(filter(pod("in"), n)), vec!["Too many pods"]);
    }

    #[test]
    fn init_container_larger_than_the_app_containers_sets_the_request() {
        let n = medium().info();
        let p = pod("in")
            .container(&[("cpu", "1")])
            .container(&[("cpu", "1")])
            .init_container(&[("cpu", "5")]);
        assert_eq!(reasons(filter(p, n.clone())), vec!["Insufficient cpu"]);
        let p = pod("in")
            .container(&[("cpu", "3")])
            .container(&[("cpu", "1")])
            .init_container(&[("cpu", "2")]);
        assert_eq!(
            filter(p, n),
            Ok(()),
            "init containers run one at a time, before the app"
        );
    }

    #[test]
    fn sidecar_runs_beside_the_app_containers() {
        let p = pod("in")
            .container(&[("cpu", "3")])
            .sidecar(&[("cpu", "1500m")]);
        assert_eq!(
            reasons(filter(p, medium().info())),
            vec!["Insufficient cpu"]
        );
    }

    #[test]
    fn overhead_counts_toward_the_request() {
        let p = pod("in")
            .container(&[("memory", "7Gi")])
            .overhead(&[("memory", "2Gi")]);
        assert_eq!(
            reasons(filter(p, medium().info())),
            vec!["Insufficient memory"]
        );
    }

    #[test]
    fn shortfall_is_resolvable_when_evicting_pods_could_make_room() {
        let n = medium().with_pods(vec![pod("old").container(&[("cpu", "3")])]);
        let err = filter(pod("in").container(&[("cpu", "2")]), n).unwrap_err();
        assert!(!err.unresolvable);
    }

    #[test]
    fn request_beyond_the_node_allocatable_is_unresolvable() {
        let err = filter(pod("in").container(&[("cpu", "5")]), medium().info()).unwrap_err();
        assert!(err.unresolvable);
        let err = filter(
            pod("in").container(&[("example.com/fpga", "1")]),
            medium().info(),
        )
        .unwrap_err();
        assert!(
            err.unresolvable,
            "an extended resource the node lacks entirely"
        );
    }

    fn score(incoming: PodBuilder, n: &NodeInfo) -> i64 {
        Score::score(
            &NodeResourcesFit,
            &CycleState::default(),
            &incoming.info(),
            n,
        )
    }

    #[test]
    fn least_allocated_favours_the_emptier_node() {
        let incoming = || pod("in").container(&[("cpu", "1"), ("memory", "1Gi")]);
        let shape = || node("n").allocatable(&[("cpu", "4"), ("memory", "4Gi"), ("pods", "10")]);
        let empty = shape().info();
        let busy = shape().with_pods(vec![
            pod("old").container(&[("cpu", "2"), ("memory", "2Gi")])
        ]);
        assert_eq!(score(incoming(), &empty), 75);
        assert_eq!(score(incoming(), &busy), 25);
    }

    #[test]
    fn least_allocated_counts_missing_requests_as_the_non_zero_defaults() {
        // 100m of 1 cpu leaves 90; 200Mi of 1000Mi leaves 80; the mean is 85.
        let n = node("n")
            .allocatable(&[("cpu", "1"), ("memory", "1000Mi")])
            .info();
        assert_eq!(score(pod("in").container(&[]), &n), 85);
    }

    #[test]
    fn least_allocated_leaves_out_a_resource_the_node_reports_none_of() {
        let n = node("n").allocatable(&[("memory", "1000Mi")]).info();
        assert_eq!(score(pod("in").container(&[]), &n), 80);
        assert_eq!(score(pod("in"), &node("n").info()), 0);
    }

    #[test]
    fn least_allocated_scores_an_overcommitted_resource_zero() {
        let n = node("n")
            .allocatable(&[("cpu", "1"), ("memory", "1Gi")])
            .info();
        let p = pod("in").container(&[("cpu", "2"), ("memory", "512Mi")]);
        assert_eq!(score(p, &n), 25);
    }
}
