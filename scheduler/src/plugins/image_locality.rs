//! ImageLocality: prefers nodes that already hold the pod's images, weighing each image by its
//! size and by how widely it has spread, so one node holding a popular image does not attract
//! every pod that uses it.

use std::collections::HashMap;
use std::sync::Arc;

use crate::framework::{
    normalized_image_name, CycleState, NodeInfo, PodInfo, Score, Snapshot, MAX_NODE_SCORE,
};

const MIB: i64 = 1024 * 1024;
/// Below this much (scaled) image on the node, the node scores 0: small images pull fast anyway.
pub const MIN_THRESHOLD: i64 = 23 * MIB;
/// Per container: at or above this much (scaled) image, the node scores the maximum.
pub const MAX_CONTAINER_THRESHOLD: i64 = 1000 * MIB;

/// What the score needs from the whole snapshot, computed once per pod.
#[derive(Debug, Clone, Default)]
struct PreScore {
    /// The pod's images, normalised, one entry per container (init containers included).
    images: Vec<String>,
    /// How many nodes hold each of those images.
    nodes_with_image: HashMap<String, usize>,
    total_nodes: usize,
}

/// Maps the summed, spread-scaled size of the pod's images present on a node into
/// 0..=[`MAX_NODE_SCORE`] between [`MIN_THRESHOLD`] and `MAX_CONTAINER_THRESHOLD × containers`.
pub fn image_score(sum: i64, containers: usize) -> i64 {
    let max = MAX_CONTAINER_THRESHOLD.saturating_mul(containers as i64);
    if max <= MIN_THRESHOLD {
        return 0;
    }
    let clamped = sum.clamp(MIN_THRESHOLD, max);
    MAX_NODE_SCORE * (clamped - MIN_THRESHOLD) / (max - MIN_THRESHOLD)
}

/// An image's size scaled by the share of nodes that hold it.
fn spread_size(size: i64, nodes_with_image: usize, total_nodes: usize) -> i64 {
    if total_nodes == 0 {
        return 0;
    }
    let spread = nodes_with_image as f64 / total_nodes as f64;
    (size as f64 * spread) as i64
}

/// kube-scheduler's `ImageLocality` score.
#[derive(Debug, Default, Clone, Copy)]
pub struct ImageLocality;

impl ImageLocality {
    pub const NAME: &'static str = "ImageLocality";
}

impl Score for ImageLocality {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn pre_score(
        &self,
        pod: &PodInfo,
        snapshot: &Snapshot,
        _feasible: &[Arc<NodeInfo>],
        state: &mut CycleState,
    ) {
        let images: Vec<String> = pod
            .pod
            .spec
            .iter()
            .flat_map(|s| {
                s.init_containers
                    .iter()
                    .flatten()
                    .chain(s.containers.iter())
            })
            .map(|c| normalized_image_name(c.image.as_deref().unwrap_or("")))
            .collect();
        let nodes_with_image = images
            .iter()
            .filter_map(|i| snapshot.image_nodes.get(i).map(|n| (i.clone(), *n)))
            .collect();
        state.insert(
            Self::NAME,
            PreScore {
                images,
                nodes_with_image,
                // The spread is over every node in the cluster, not only the feasible ones.
                total_nodes: snapshot.len(),
            },
        );
    }

    /// Without the pre-score state the spread is unknown, and every node scores 0 rather than
    /// a guess that favours one of them.
    fn score(&self, state: &CycleState, _pod: &PodInfo, node: &NodeInfo) -> i64 {
        let Some(pre) = state.get::<PreScore>(Self::NAME) else {
            return 0;
        };
        let sum: i64 = pre
            .images
            .iter()
            .filter_map(|image| {
                let size = *node.images.get(image)?;
                let holders = pre.nodes_with_image.get(image).copied().unwrap_or(1);
                Some(spread_size(size, holders, pre.total_nodes))
            })
            .sum();
        image_score(sum, pre.images.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{node, pod, NodeBuilder, PodBuilder};

    /// Scores of `incoming` on every node of a snapshot of `nodes`.
    fn scores(incoming: PodBuilder, nodes: Vec<NodeBuilder>) -> Vec<i64> {
        let infos: Vec<Arc<NodeInfo>> = nodes.into_iter().map(|n| Arc::new(n.info())).collect();
        let snapshot = Snapshot::new(infos.clone());
        let pod = incoming.info();
        let mut state = CycleState::default();
        ImageLocality.pre_score(&pod, &snapshot, &infos, &mut state);
        infos
            .iter()
            .map(|n| ImageLocality.score(&state, &pod, n))
            .collect()
    }

    #[test]
    fn node_with_no_image_of_the_pod_scores_zero() {
        let got = scores(pod("p").image("nginx"), vec![node("a"), node("b")]);
        assert_eq!(got, vec![0, 0]);
    }

    #[test]
    fn image_on_every_node_scores_by_its_full_size() {
        // 523Mi on every node: (523 - 23) / (1000 - 23) of 100 = 51.
        let size = 523 * MIB;
        let got = scores(
            pod("p").image("nginx:1.27"),
            vec![
                node("a").image(&["docker.io/library/nginx:1.27"], size),
                node("b").image(&["nginx:1.27"], size),
            ],
        );
        assert_eq!(got, vec![51, 51]);
    }

    #[test]
    fn image_on_few_nodes_is_scaled_down_by_its_spread() {
        // 1000Mi on one of two nodes counts as 500Mi: (500 - 23) / 977 of 100 = 48.
        let got = scores(
            pod("p").image("redis"),
            vec![node("a").image(&["redis:latest"], 1000 * MIB), node("b")],
        );
        assert_eq!(got, vec![48, 0]);
    }

    #[test]
    fn images_smaller_than_the_minimum_threshold_score_zero() {
        let got = scores(
            pod("p").image("pause"),
            vec![node("a").image(&["pause"], 20 * MIB)],
        );
        assert_eq!(got, vec![0]);
    }

    #[test]
    fn the_maximum_threshold_grows_with_the_number_of_containers() {
        // One 1000Mi image for a pod of two containers: (1000 - 23) / (2000 - 23) of 100 = 49.
        let got = scores(
            pod("p").image("big").image("small"),
            vec![node("a").image(&["big"], 1000 * MIB)],
        );
        assert_eq!(got, vec![49]);
        let got = scores(
            pod("p").image("big"),
            vec![node("a").image(&["big"], 3000 * MIB)],
        );
        assert_eq!(got, vec![100], "clamped at the maximum");
    }

    #[test]
    fn untagged_and_latest_name_the_same_image() {
        let got = scores(
            pod("p").image("busybox:latest"),
            vec![node("a").image(&["docker.io/library/busybox"], 500 * MIB)],
        );
        assert!(got[0] > 0);
    }

    #[test]
    fn image_score_formula() {
        assert_eq!(image_score(0, 1), 0);
        assert_eq!(image_score(MIN_THRESHOLD, 1), 0);
        assert_eq!(image_score(MAX_CONTAINER_THRESHOLD, 1), 100);
        assert_eq!(image_score(i64::MAX, 3), 100);
        assert_eq!(image_score(MAX_CONTAINER_THRESHOLD, 0), 0, "no containers");
    }
}
