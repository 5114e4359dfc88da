//! NodeAffinity: a pod fits only nodes that satisfy its `nodeSelector` and required node
//! affinity, and prefers nodes matching its weighted preferred terms.

use std::sync::Arc;

use crate::framework::{
    default_normalize, ClusterEvent, CycleState, Filter, NodeInfo, PodInfo, Rejection, Score,
    Snapshot,
};
pub use crate::plugins::node_selector::pod_matches_node_selector_and_affinity;
use crate::plugins::node_selector::{preferred_terms, PreferredNodeAffinity, RequiredNodeAffinity};

/// kube-scheduler's `NodeAffinity` filter and score.
#[derive(Debug, Default, Clone, Copy)]
pub struct NodeAffinity;

impl NodeAffinity {
    pub const NAME: &'static str = "NodeAffinity";
    pub const REASON: &'static str = "node(s) didn't match Pod's node affinity/selector";
    /// Cycle-state keys: the filter's and the score's parsed terms are different values.
    const PRE_FILTER_KEY: &'static str = "PreFilterNodeAffinity";
    const PRE_SCORE_KEY: &'static str = "PreScoreNodeAffinity";
}

impl Filter for NodeAffinity {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    /// Parses the selector once per cycle instead of once per node.
    fn pre_filter(
        &self,
        pod: &PodInfo,
        _snapshot: &Snapshot,
        state: &mut CycleState,
    ) -> Result<(), Rejection> {
        state.insert(
            Self::PRE_FILTER_KEY,
            RequiredNodeAffinity::from_pod(&pod.pod),
        );
        Ok(())
    }

    /// A pod with neither a nodeSelector nor a required node affinity fits every node.
    fn skips_filter(&self, _pod: &PodInfo, state: &CycleState) -> bool {
        state
            .get::<RequiredNodeAffinity>(Self::PRE_FILTER_KEY)
            .is_some_and(RequiredNodeAffinity::admits_every_node)
    }

    fn filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<(), Rejection> {
        let fits = match state.get::<RequiredNodeAffinity>(Self::PRE_FILTER_KEY) {
            Some(required) => required.matches(&node.node),
            None => pod_matches_node_selector_and_affinity(&pod.pod, &node.node),
        };
        if fits {
            Ok(())
        } else {
            // Labels do not change by evicting pods.
            Err(Rejection::unresolvable(Self::NAME, Self::REASON))
        }
    }

    fn events(&self) -> &'static [ClusterEvent] {
        &[ClusterEvent::NodeAdded, ClusterEvent::NodeLabelsChanged]
    }
}

impl Score for NodeAffinity {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn pre_score(
        &self,
        pod: &PodInfo,
        _snapshot: &Snapshot,
        _feasible: &[Arc<NodeInfo>],
        state: &mut CycleState,
    ) {
        state.insert(
            Self::PRE_SCORE_KEY,
            PreferredNodeAffinity::from_pod(&pod.pod),
        );
    }

    /// Without preferred terms every node scores 0.
    fn skips_score(&self, pod: &PodInfo, _snapshot: &Snapshot) -> bool {
        preferred_terms(&pod.pod).is_empty()
    }

    /// The sum of the weights of the preferred terms the node matches.
    fn score(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> i64 {
        match state.get::<PreferredNodeAffinity>(Self::PRE_SCORE_KEY) {
            Some(preferred) => preferred.score(&node.node),
            None => PreferredNodeAffinity::from_pod(&pod.pod).score(&node.node),
        }
    }

    fn normalize(&self, _: &CycleState, _: &PodInfo, scores: &mut [i64]) {
        default_normalize(scores, false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{labels_term, node, pod, req, NodeBuilder, PodBuilder};

    fn filter_with_and_without_pre_filter(p: PodBuilder, n: NodeBuilder) -> Result<(), Rejection> {
        let pod = p.info();
        let n = Arc::new(n.info());
        let snapshot = Snapshot::new(vec![n.clone()]);
        let mut state = CycleState::default();
        NodeAffinity.pre_filter(&pod, &snapshot, &mut state)?;
        let with = NodeAffinity.filter(&state, &pod, &n);
        let without = NodeAffinity.filter(&CycleState::default(), &pod, &n);
        assert_eq!(with, without, "pre-filter state must not change the answer");
        with
    }

    #[test]
    fn node_matching_the_selector_fits() {
        let p = pod("p").node_selector("zone", "a");
        assert_eq!(
            filter_with_and_without_pre_filter(p, node("n").label("zone", "a")),
            Ok(())
        );
    }

    #[test]
    fn node_missing_the_selector_is_rejected_unresolvably() {
        let p = pod("p").node_selector("zone", "a");
        let err = filter_with_and_without_pre_filter(p, node("n").label("zone", "b")).unwrap_err();
        assert!(err.unresolvable);
        assert_eq!(err.plugin, "NodeAffinity");
        assert_eq!(
            err.reasons,
            vec!["node(s) didn't match Pod's node affinity/selector"]
        );
    }

    #[test]
    fn required_affinity_is_enforced_by_the_filter() {
        let p = || pod("p").required_term(labels_term(vec![req("cores", "Gt", &["8"])]));
        assert_eq!(
            filter_with_and_without_pre_filter(p(), node("n").label("cores", "16")),
            Ok(())
        );
        assert!(filter_with_and_without_pre_filter(p(), node("n").label("cores", "4")).is_err());
    }

    #[test]
    fn preferred_terms_score_by_weight_then_scale_to_the_best_node() {
        let p = pod("p")
            .preferred_term(80, labels_term(vec![req("zone", "In", &["a"])]))
            .preferred_term(20, labels_term(vec![req("disk", "In", &["ssd"])]))
            .info();
        let nodes = [
            node("both").label("zone", "a").label("disk", "ssd"),
            node("zone").label("zone", "a"),
            node("disk").label("disk", "ssd"),
            node("none"),
        ];
        let infos: Vec<Arc<NodeInfo>> = nodes.into_iter().map(|n| Arc::new(n.info())).collect();
        let snapshot = Snapshot::new(infos.clone());
        let mut state = CycleState::default();
        Score::pre_score(&NodeAffinity, &p, &snapshot, &infos, &mut state);
        let mut scores: Vec<i64> = infos
            .iter()
            .map(|n| Score::score(&NodeAffinity, &state, &p, n))
            .collect();
        assert_eq!(scores, vec![100, 80, 20, 0]);
        NodeAffinity.normalize(&state, &p, &mut scores);
        assert_eq!(scores, vec![100, 80, 20, 0]);

        // Normalising scales the best node up to 100.
        let mut raw = vec![20, 0, 10];
        NodeAffinity.normalize(&state, &p, &mut raw);
        assert_eq!(raw, vec![100, 0, 50]);
    }

    #[test]
    fn pod_without_preferences_scores_every_node_zero() {
        let p = pod("p").info();
        let n = node("n").label("zone", "a").info();
        let mut scores = vec![Score::score(&NodeAffinity, &CycleState::default(), &p, &n)];
        NodeAffinity.normalize(&CycleState::default(), &p, &mut scores);
        assert_eq!(scores, vec![0]);
    }
}
