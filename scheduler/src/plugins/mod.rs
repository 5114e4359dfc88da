//! The filter and score plugins of kube-scheduler's default profile, each a small type over a
//! [`Snapshot`](crate::framework::Snapshot), and the profile that orders and weighs them.

use crate::framework::{Filter, Score};

pub mod inter_pod_affinity;
pub mod pod_topology_spread;
#[cfg(test)]
mod test_pods;

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
            Box::new(PodTopologySpread::default()),
            Box::new(InterPodAffinity::default()),
        ],
        scores: vec![
            (Box::new(PodTopologySpread::default()), 2),
            (Box::new(InterPodAffinity::default()), 2),
        ],
    }
}
