//! The filter and score plugins of kube-scheduler's default profile, each a small type over a
//! [`Snapshot`](crate::framework::Snapshot), and the profile that orders and weighs them.

pub mod balanced_allocation;
pub mod image_locality;
pub mod node_affinity;
pub mod node_name;
pub mod node_ports;
pub mod node_resources_fit;
pub mod node_selector;
pub mod node_unschedulable;
pub mod taint_toleration;

#[cfg(test)]
mod filters_agree;

use crate::framework::{Filter, Score};
use balanced_allocation::BalancedAllocation;
use image_locality::ImageLocality;
use node_affinity::NodeAffinity;
use node_name::NodeName;
use node_ports::NodePorts;
use node_resources_fit::NodeResourcesFit;
use node_unschedulable::NodeUnschedulable;
use taint_toleration::TaintToleration;

pub mod inter_pod_affinity;
pub mod pod_topology_spread;

use inter_pod_affinity::InterPodAffinity;
use pod_topology_spread::PodTopologySpread;

/// The plugins one scheduler runs: filters in order (the cheapest and most often failing
/// first), scores with their weights.
pub struct Profile {
    pub filters: Vec<Box<dyn Filter>>,
    pub scores: Vec<(Box<dyn Score>, i64)>,
}

/// kube-scheduler's default profile (weights as in its v1 defaults: TaintToleration 3,
/// NodeAffinity 2, PodTopologySpread 2, InterPodAffinity 2, NodeResourcesFit 1,
/// NodeResourcesBalancedAllocation 1, ImageLocality 1).
pub fn default_profile() -> Profile {
    Profile {
        filters: vec![
            Box::new(NodeUnschedulable),
            Box::new(NodeName),
            Box::new(TaintToleration),
            Box::new(NodeAffinity),
            Box::new(NodePorts),
            Box::new(NodeResourcesFit),
            // They look beyond the node, so they run last.
            Box::new(PodTopologySpread::default()),
            Box::new(InterPodAffinity::default()),
        ],
        scores: vec![
            (Box::new(TaintToleration), 3),
            (Box::new(NodeAffinity), 2),
            (Box::new(NodeResourcesFit), 1),
            (Box::new(PodTopologySpread::default()), 2),
            (Box::new(InterPodAffinity::default()), 2),
            (Box::new(BalancedAllocation), 1),
            (Box::new(ImageLocality), 1),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The node-local plugins, in kube-scheduler's order; other plugins may sit between them.
    #[test]
    fn default_profile_keeps_kubernetes_order_and_weights() {
        let profile = default_profile();
        let ours = [
            "NodeUnschedulable",
            "NodeName",
            "TaintToleration",
            "NodeAffinity",
            "NodePorts",
            "NodeResourcesFit",
        ];
        let filters: Vec<&str> = profile
            .filters
            .iter()
            .map(|f| f.name())
            .filter(|n| ours.contains(n))
            .collect();
        assert_eq!(filters, ours);

        let ours = [
            ("TaintToleration", 3),
            ("NodeAffinity", 2),
            ("NodeResourcesFit", 1),
            ("NodeResourcesBalancedAllocation", 1),
            ("ImageLocality", 1),
        ];
        let scores: Vec<(&str, i64)> = profile
            .scores
            .iter()
            .map(|(s, w)| (s.name(), *w))
            .filter(|(n, _)| ours.iter().any(|(o, _)| o == n))
            .collect();
        assert_eq!(scores, ours);
    }
}
