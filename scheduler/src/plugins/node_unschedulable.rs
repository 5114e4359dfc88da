//! NodeUnschedulable: a cordoned node (`spec.unschedulable`) takes no new pods, except those
//! that tolerate the taint the node lifecycle puts on cordoned nodes.

use keel_types::k8s_openapi::api::core::v1::Taint;

use crate::framework::{ClusterEvent, CycleState, Filter, NodeInfo, PodInfo, Rejection};
use crate::plugins::taint_toleration::{pod_tolerations, tolerations_tolerate_taint};

/// The taint a cordoned node carries.
pub const TAINT_NODE_UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";

/// kube-scheduler's `NodeUnschedulable` filter.
#[derive(Debug, Default, Clone, Copy)]
pub struct NodeUnschedulable;

impl NodeUnschedulable {
    pub const NAME: &'static str = "NodeUnschedulable";
    pub const REASON: &'static str = "node(s) were unschedulable";
}

impl Filter for NodeUnschedulable {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<(), Rejection> {
        if !node.unschedulable {
            return Ok(());
        }
        // The flag is checked against the taint rather than the node's actual taints: the taint
        // may not have been added yet, and a pod that tolerates it (DaemonSet pods do) is
        // meant to land on cordoned nodes either way.
        let taint = Taint {
            key: TAINT_NODE_UNSCHEDULABLE.to_string(),
            effect: "NoSchedule".to_string(),
            value: None,
            time_added: None,
        };
        if tolerations_tolerate_taint(pod_tolerations(pod), &taint) {
            return Ok(());
        }
        Err(Rejection::unresolvable(Self::NAME, Self::REASON))
    }

    fn events(&self) -> &'static [ClusterEvent] {
        &[
            ClusterEvent::NodeAdded,
            ClusterEvent::NodeSchedulableChanged,
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{node, pod, NodeBuilder, PodBuilder};

    fn run(pod: PodBuilder, node: NodeBuilder) -> Result<(), Rejection> {
        NodeUnschedulable.filter(&CycleState::default(), &pod.info(), &node.info())
    }

    #[test]
    fn schedulable_node_accepts_every_pod() {
        assert_eq!(run(pod("p"), node("n")), Ok(()));
    }

    #[test]
    fn cordoned_node_rejects_unresolvably() {
        let err = run(pod("p"), node("n").unschedulable()).unwrap_err();
        assert!(err.unresolvable);
        assert_eq!(err.plugin, "NodeUnschedulable");
        assert_eq!(err.reasons, vec!["node(s) were unschedulable"]);
    }

    #[test]
    fn cordoned_node_accepts_pods_tolerating_the_unschedulable_taint() {
        let cases = [
            (
                "exact key and effect",
                TAINT_NODE_UNSCHEDULABLE,
                "Exists",
                "NoSchedule",
            ),
            (
                "key with any effect",
                TAINT_NODE_UNSCHEDULABLE,
                "Exists",
                "",
            ),
            ("empty key with Exists", "", "Exists", ""),
        ];
        for (name, key, op, effect) in cases {
            let p = pod("p").toleration(key, op, "", effect);
            assert_eq!(run(p, node("n").unschedulable()), Ok(()), "{name}");
        }
    }

    #[test]
    fn tolerating_only_no_execute_does_not_get_past_a_cordon() {
        let p = pod("p").toleration(TAINT_NODE_UNSCHEDULABLE, "Exists", "", "NoExecute");
        assert!(run(p, node("n").unschedulable()).is_err());
    }
}
