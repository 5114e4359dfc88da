//! NodeName: a pod that names its node (`spec.nodeName`) fits only that node.

use crate::framework::{ClusterEvent, CycleState, Filter, NodeInfo, PodInfo, Rejection};

/// kube-scheduler's `NodeName` filter.
#[derive(Debug, Default, Clone, Copy)]
pub struct NodeName;

impl NodeName {
    pub const NAME: &'static str = "NodeName";
    pub const REASON: &'static str = "node(s) didn't match the requested node name";
}

impl Filter for NodeName {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<(), Rejection> {
        let wanted = pod.node_name();
        if wanted.is_empty() || wanted == node.name {
            return Ok(());
        }
        // Evicting pods from another node never makes it become the named one.
        Err(Rejection::unresolvable(Self::NAME, Self::REASON))
    }

    fn events(&self) -> &'static [ClusterEvent] {
        &[ClusterEvent::NodeAdded]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{node, pod};

    fn run(pod: crate::test_support::PodBuilder, node_name: &str) -> Result<(), Rejection> {
        NodeName.filter(&CycleState::default(), &pod.info(), &node(node_name).info())
    }

    #[test]
    fn pod_without_node_name_fits_every_node() {
        assert_eq!(run(pod("p"), "n1"), Ok(()));
    }

    #[test]
    fn pod_naming_the_node_fits_it() {
        assert_eq!(run(pod("p").node_name("n1"), "n1"), Ok(()));
    }

    #[test]
    fn pod_naming_another_node_is_rejected_unresolvably() {
        let err = run(pod("p").node_name("n2"), "n1").unwrap_err();
        assert!(err.unresolvable);
        assert_eq!(err.plugin, "NodeName");
        assert_eq!(
            err.reasons,
            vec!["node(s) didn't match the requested node name"]
        );
    }
}
