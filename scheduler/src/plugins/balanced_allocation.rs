//! NodeResourcesBalancedAllocation: prefers nodes where, with the pod placed, cpu and memory
//! would be used in equal proportion, so neither is stranded by the other running out.

use crate::framework::{CycleState, NodeInfo, PodInfo, Score, MAX_NODE_SCORE};

/// `(1 - standard deviation of the requested fractions) * 100` (kube-scheduler's
/// `balancedResourceScorer`). Each pair is `(requested, allocatable)`; a resource the node
/// reports none of is left out, and a fraction over 1 counts as 1.
pub fn balanced_score(resources: &[(i64, i64)]) -> i64 {
    let fractions: Vec<f64> = resources
        .iter()
        .filter(|(_, allocatable)| *allocatable != 0)
        .map(|&(requested, allocatable)| (requested as f64 / allocatable as f64).min(1.0))
        .collect();
    let std = match fractions.as_slice() {
        [a, b] => ((a - b) / 2.0).abs(),
        [_, _, _, ..] => {
            let n = fractions.len() as f64;
            let mean = fractions.iter().sum::<f64>() / n;
            (fractions
                .iter()
                .map(|f| (f - mean) * (f - mean))
                .sum::<f64>()
                / n)
                .sqrt()
        }
        // One resource (or none) is always balanced with itself.
        _ => 0.0,
    };
    // Truncates toward zero, as Go's int64() conversion does.
    ((1.0 - std) * MAX_NODE_SCORE as f64) as i64
}

/// kube-scheduler's `NodeResourcesBalancedAllocation` score over cpu and memory.
#[derive(Debug, Default, Clone, Copy)]
pub struct BalancedAllocation;

impl BalancedAllocation {
    pub const NAME: &'static str = "NodeResourcesBalancedAllocation";
}

impl Score for BalancedAllocation {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    /// Uses the actual requests, not the non-zero defaults LeastAllocated uses: a pod with no
    /// cpu and memory requests (best-effort) is not scored at all, as kube-scheduler skips it,
    /// since counting it would pile such pods on whichever node looks balanced.
    fn score(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> i64 {
        let (cpu, memory) = (pod.requests.milli_cpu, pod.requests.memory);
        if cpu == 0 && memory == 0 {
            return 0;
        }
        balanced_score(&[
            (node.requested.milli_cpu + cpu, node.allocatable.milli_cpu),
            (node.requested.memory + memory, node.allocatable.memory),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{node, pod, NodeBuilder, PodBuilder};

    fn score(incoming: PodBuilder, n: &NodeInfo) -> i64 {
        BalancedAllocation.score(&CycleState::default(), &incoming.info(), n)
    }

    fn shape() -> NodeBuilder {
        node("n").allocatable(&[("cpu", "4"), ("memory", "4Gi"), ("pods", "10")])
    }

    #[test]
    fn equal_fractions_score_the_most() {
        let p = pod("in").container(&[("cpu", "1"), ("memory", "1Gi")]);
        assert_eq!(score(p, &shape().info()), 100);
    }

    #[test]
    fn std_of_two_fractions_is_half_their_difference() {
        // cpu 1/4 = 0.25, memory 2/4 = 0.5: std 0.125, score 87.5 truncated.
        let p = pod("in").container(&[("cpu", "1"), ("memory", "2Gi")]);
        assert_eq!(score(p, &shape().info()), 87);
    }

    #[test]
    fn pods_already_on_the_node_count_with_their_actual_requests() {
        // The existing pod requests no memory, so it adds nothing there (no 200Mi default):
        // cpu (2+1)/4 = 0.75, memory 1/4 = 0.25, std 0.25.
        let n = shape().with_pods(vec![pod("old").container(&[("cpu", "2")])]);
        let p = pod("in").container(&[("cpu", "1"), ("memory", "1Gi")]);
        assert_eq!(score(p, &n), 75);
    }

    #[test]
    fn a_fraction_over_one_counts_as_one() {
        // cpu 8/4 capped at 1, memory 0: std 0.5.
        let p = pod("in").container(&[("cpu", "8")]);
        assert_eq!(score(p, &shape().info()), 50);
    }

    #[test]
    fn best_effort_pod_is_not_scored() {
        assert_eq!(score(pod("in").container(&[]), &shape().info()), 0);
    }

    #[test]
    fn node_reporting_one_resource_is_balanced() {
        let n = node("n").allocatable(&[("cpu", "4")]).info();
        assert_eq!(
            score(pod("in").container(&[("cpu", "1"), ("memory", "3Gi")]), &n),
            100
        );
    }

    #[test]
    fn three_fractions_use_the_population_std() {
        // 0, 0.5, 1: mean 0.5, variance 1/6, std 0.408…: score 59.
        assert_eq!(balanced_score(&[(0, 10), (5, 10), (10, 10)]), 59);
    }
}
