//! PodTopologySpread, as kube-scheduler's plugin of that name: a pod's
//! `topologySpreadConstraints` keep the pods they select evenly spread over topology domains:
//! `DoNotSchedule` ones as a filter (how far above the least loaded domain a node's domain may
//! go), `ScheduleAnyway` ones (or the system defaults, for a pod with none) as a score.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use keel_types::selector::{Operator, Requirement};
use keel_types::Selector;

use crate::framework::{
    ClusterEvent, CycleState, Filter, NodeInfo, PodInfo, Rejection, Score, Snapshot, MAX_NODE_SCORE,
};
use crate::memo::{CountKey, DomainCounts};
use crate::plugins::node_selector::RequiredNodeAffinity;
use crate::plugins::taint_toleration::untolerated_scheduling_taint;

pub const NAME: &str = "PodTopologySpread";
const PRE_FILTER_KEY: &str = "PreFilterPodTopologySpread";
const PRE_SCORE_KEY: &str = "PreScorePodTopologySpread";

pub const LABEL_HOSTNAME: &str = "kubernetes.io/hostname";
pub const LABEL_ZONE: &str = "topology.kubernetes.io/zone";

const DO_NOT_SCHEDULE: &str = "DoNotSchedule";
const SCHEDULE_ANYWAY: &str = "ScheduleAnyway";
const HONOR: &str = "Honor";

/// Placing the pod on the node would spread its pods more unevenly than a constraint allows.
pub const REASON_CONSTRAINTS_NOT_MATCH: &str =
    "node(s) didn't match pod topology spread constraints";
/// The node lacks a constraint's topology key, so it is in no domain of it.
pub const REASON_NODE_LABEL_NOT_MATCH: &str =
    "node(s) didn't match pod topology spread constraints (missing required label)";

/// The system default constraints (topology key, maxSkew) kube-scheduler scores a pod without
/// constraints of its own by.
const SYSTEM_DEFAULT_CONSTRAINTS: [(&str, i64); 2] = [(LABEL_HOSTNAME, 3), (LABEL_ZONE, 5)];

/// Which pods a pod without constraints of its own is spread from: in kube-scheduler, the pods
/// selected by every Service, ReplicationController, ReplicaSet and StatefulSet that selects it
/// (their selectors ANDed). The scheduler core has no informers for those, so the caller that
/// has them supplies this; a closure `Fn(&PodInfo) -> Option<Selector>` is one.
///
/// Contract: pure and cheap (called once per pod per cycle, possibly from several threads);
/// `None` or an empty selector means nothing owns the pod and it gets no default constraints.
pub trait OwnerSelector: Send + Sync {
    fn selector(&self, pod: &PodInfo) -> Option<Selector>;
}

impl<F> OwnerSelector for F
where
    F: Fn(&PodInfo) -> Option<Selector> + Send + Sync,
{
    fn selector(&self, pod: &PodInfo) -> Option<Selector> {
        self(pod)
    }
}

/// The plugin. Without an [`OwnerSelector`], pods without constraints are not spread at all.
#[derive(Default)]
pub struct PodTopologySpread {
    owner_selector: Option<Box<dyn OwnerSelector>>,
}

impl PodTopologySpread {
    /// Scores pods without constraints by the system defaults over the pods `owners` selects.
    pub fn with_owner_selector(owners: impl OwnerSelector + 'static) -> Self {
        PodTopologySpread {
            owner_selector: Some(Box::new(owners)),
        }
    }

    /// The system default constraints for a pod without any, if something owns it.
    fn default_constraints(&self, pod: &PodInfo) -> Vec<Constraint> {
        let Some(selector) = self
            .owner_selector
            .as_ref()
            .and_then(|o| o.selector(pod))
            .filter(|s| !s.is_empty())
        else {
            return Vec::new();
        };
        SYSTEM_DEFAULT_CONSTRAINTS
            .iter()
            .map(|&(key, max_skew)| Constraint {
                max_skew,
                topology_key: key.to_string(),
                selector: selector.clone(),
                min_domains: 1,
                honor_node_affinity: true,
                honor_node_taints: false,
            })
            .collect()
    }
}

/// One spread constraint with its selector parsed and its defaults applied.
#[derive(Debug, Clone)]
struct Constraint {
    max_skew: i64,
    topology_key: String,
    /// The label selector with the pod's values for `matchLabelKeys` folded in.
    selector: Selector,
    min_domains: i64,
    /// nodeAffinityPolicy Honor (the default): count only nodes the pod's nodeSelector and
    /// required node affinity admit.
    honor_node_affinity: bool,
    /// nodeTaintsPolicy Honor (default Ignore): count only nodes whose taints the pod
    /// tolerates.
    honor_node_taints: bool,
}

fn has_constraints(pod: &PodInfo) -> bool {
    pod.pod
        .spec
        .as_ref()
        .and_then(|s| s.topology_spread_constraints.as_ref())
        .is_some_and(|c| !c.is_empty())
}

/// The pod's constraints with `whenUnsatisfiable` equal to `action`, in order.
fn spread_constraints(pod: &PodInfo, action: &str) -> Result<Vec<Constraint>, String> {
    let specs = pod
        .pod
        .spec
        .as_ref()
        .and_then(|s| s.topology_spread_constraints.as_ref());
    let mut out = Vec::new();
    for spec in specs.into_iter().flatten() {
        if spec.when_unsatisfiable != action {
            continue;
        }
        let mut selector = Selector::from_label_selector(spec.label_selector.as_ref())
            .map_err(|e| e.to_string())?;
        // An absent selector selects nothing, and the pod's own labels cannot widen that.
        if !selector.is_nothing() {
            let mut requirements = selector.requirements().to_vec();
            for key in spec.match_label_keys.iter().flatten() {
                if let Some(value) = pod.labels().get(key) {
                    requirements.push(
                        Requirement::new(key, Operator::In, vec![value.clone()])
                            .map_err(|e| e.to_string())?,
                    );
                }
            }
            selector = Selector::from_requirements(requirements);
        }
        out.push(Constraint {
            max_skew: i64::from(spec.max_skew),
            topology_key: spec.topology_key.clone(),
            selector,
            min_domains: i64::from(spec.min_domains.unwrap_or(1)),
            honor_node_affinity: spec
                .node_affinity_policy
                .as_deref()
                .is_none_or(|p| p == HONOR),
            honor_node_taints: spec.node_taints_policy.as_deref() == Some(HONOR),
        });
    }
    Ok(out)
}

/// Whether the node has every constraint's topology key (a node lacking one is in no domain
/// and counts for none of them).
fn has_every_key(labels: &BTreeMap<String, String>, constraints: &[Constraint]) -> bool {
    constraints
        .iter()
        .all(|c| labels.contains_key(&c.topology_key))
}

/// How many of `pods` a constraint counts: those in `namespace`, not terminating (they are
/// leaving the domain), matching `selector`. An empty selector counts none, as
/// kube-scheduler's `countPodsMatchSelector`.
fn count_matching(pods: &[Arc<PodInfo>], selector: &Selector, namespace: &str) -> i64 {
    if selector.is_empty() {
        return 0;
    }
    pods.iter()
        .filter(|p| !p.terminating() && p.namespace == namespace && selector.matches(p.labels()))
        .count() as i64
}

/// Which nodes a constraint counts pods on, by its node inclusion policies: nodeAffinityPolicy
/// Honor asks NodeAffinity's question (nodeSelector and required node affinity), nodeTaintsPolicy
/// Honor asks TaintToleration's (the NoSchedule and NoExecute taints).
struct NodeInclusion<'a> {
    pod: &'a PodInfo,
    /// Parsed once per cycle, not once per node.
    affinity: RequiredNodeAffinity,
}

impl<'a> NodeInclusion<'a> {
    fn of(pod: &'a PodInfo) -> NodeInclusion<'a> {
        NodeInclusion {
            pod,
            affinity: RequiredNodeAffinity::from_pod(&pod.pod),
        }
    }

    /// Whether the policies admit every node, whatever its labels and taints.
    fn includes_every_node(&self, constraint: &Constraint) -> bool {
        (!constraint.honor_node_affinity || self.affinity.admits_every_node())
            && !constraint.honor_node_taints
    }

    fn includes(&self, constraint: &Constraint, node: &NodeInfo) -> bool {
        (!constraint.honor_node_affinity || self.affinity.matches(&node.node))
            && (!constraint.honor_node_taints
                || untolerated_scheduling_taint(self.pod, node).is_none())
    }
}

/// One filtering constraint and the matching pods per domain of it.
#[derive(Debug)]
struct FilterDomains {
    constraint: Constraint,
    /// Domain value → matching pods, for every eligible domain (zero counts included: an
    /// empty domain is still a domain).
    counts: HashMap<String, i64>,
    /// The least count over `counts`; above any real count when there is no domain.
    min: i64,
}

impl FilterDomains {
    /// The minimum skew is measured from: 0 while fewer domains than `minDomains` exist, as if
    /// the missing ones were empty.
    fn global_min(&self) -> i64 {
        if (self.counts.len() as i64) < self.constraint.min_domains {
            0
        } else {
            self.min
        }
    }
}

struct PreFilterState {
    domains: Vec<FilterDomains>,
}

impl Filter for PodTopologySpread {
    fn name(&self) -> &'static str {
        NAME
    }

    /// Counts matching pods per domain of each `DoNotSchedule` constraint, over the nodes that
    /// have every constraint's key and pass its inclusion policies. A constraint that cannot be
    /// parsed (of either kind: scoring has no way to refuse the pod) rejects the pod.
    fn pre_filter(
        &self,
        pod: &PodInfo,
        snapshot: &Snapshot,
        state: &mut CycleState,
    ) -> Result<(), Rejection> {
        let invalid =
            |e: String| Rejection::unresolvable(NAME, format!("get constraints from pod: {e}"));
        spread_constraints(pod, SCHEDULE_ANYWAY).map_err(invalid)?;
        let constraints = spread_constraints(pod, DO_NOT_SCHEDULE).map_err(invalid)?;
        if constraints.is_empty() {
            return Ok(());
        }
        let inclusion = NodeInclusion::of(pod);
        // Matching pods per node and per domain, kept up to date across cycles.
        let counted: Vec<Arc<DomainCounts>> = constraints
            .iter()
            .map(|c| {
                let key = CountKey {
                    rule: NAME,
                    params: format!("{}\u{0}{:?}", pod.namespace, c.selector),
                    topology_key: c.topology_key.clone(),
                };
                snapshot.memo.domain_counts(snapshot, key, |node| {
                    count_matching(&node.pods, &c.selector, &pod.namespace)
                })
            })
            .collect();
        let mut counts = vec![HashMap::<String, i64>::new(); constraints.len()];
        let every_node_counts = counted.iter().all(|d| d.nodes_missing_key() == 0)
            && constraints.iter().all(|c| inclusion.includes_every_node(c));
        if every_node_counts {
            for (counted, counts) in counted.iter().zip(counts.iter_mut()) {
                counts.extend(counted.domains().map(|(d, n)| (d.to_string(), n)));
            }
        } else {
            for (pos, node) in snapshot.nodes.iter().enumerate() {
                // A node lacking any constraint's key counts for none of them.
                if counted.iter().any(|d| d.domain_at(pos).is_none()) {
                    continue;
                }
                for ((constraint, counted), counts) in
                    constraints.iter().zip(&counted).zip(counts.iter_mut())
                {
                    let Some(value) = counted.domain_at(pos) else {
                        continue;
                    };
                    if inclusion.includes(constraint, node) {
                        let n = counted.count_at(pos);
                        match counts.get_mut(value) {
                            Some(count) => *count += n,
                            None => {
                                counts.insert(value.to_string(), n);
                            }
                        }
                    }
                }
            }
        }
        let domains = constraints
            .into_iter()
            .zip(counts)
            .map(|(constraint, counts)| FilterDomains {
                min: counts
                    .values()
                    .copied()
                    .min()
                    .unwrap_or(i64::from(i32::MAX)),
                constraint,
                counts,
            })
            .collect();
        state.insert(PRE_FILTER_KEY, PreFilterState { domains });
        Ok(())
    }

    /// Without `DoNotSchedule` constraints nothing is checked.
    fn skips_filter(&self, _pod: &PodInfo, state: &CycleState) -> bool {
        state.get::<PreFilterState>(PRE_FILTER_KEY).is_none()
    }

    /// Admits the node when, for every constraint, its domain's matching pods plus the pod
    /// itself (if it matches) exceed the global minimum by at most maxSkew.
    fn filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<(), Rejection> {
        let Some(state) = state.get::<PreFilterState>(PRE_FILTER_KEY) else {
            return Ok(());
        };
        for domains in &state.domains {
            let constraint = &domains.constraint;
            let Some(value) = node.labels().get(&constraint.topology_key) else {
                // No eviction gives a node a label.
                return Err(Rejection::unresolvable(NAME, REASON_NODE_LABEL_NOT_MATCH));
            };
            let own = i64::from(constraint.selector.matches(pod.labels()));
            let count = domains.counts.get(value).copied().unwrap_or(0);
            if count + own - domains.global_min() > constraint.max_skew {
                return Err(Rejection::new(NAME, REASON_CONSTRAINTS_NOT_MATCH));
            }
        }
        Ok(())
    }

    fn events(&self) -> &'static [ClusterEvent] {
        EVENTS
    }
}

const EVENTS: &[ClusterEvent] = &[
    ClusterEvent::AssignedPodAdded,
    ClusterEvent::AssignedPodLabelsChanged,
    ClusterEvent::AssignedPodDeleted,
    ClusterEvent::NodeAdded,
    ClusterEvent::NodeLabelsChanged,
    ClusterEvent::NodeTaintsChanged,
];

/// One scoring constraint, the matching pods per domain of it, and its weight.
struct ScoreDomains {
    constraint: Constraint,
    /// Domain value → matching pods, for the domains of feasible nodes. Hostname domains are
    /// counted on the node itself when scoring instead.
    counts: HashMap<String, i64>,
    /// `ln(domains + 2)`: a constraint over many small domains weighs more per pod than one
    /// over a few large ones, so hostname spreading is not drowned by zone spreading.
    weight: f64,
}

struct PreScoreState {
    domains: Vec<ScoreDomains>,
    /// Feasible nodes lacking a key of the pod's own constraints: scored 0.
    ignored: HashSet<String>,
    /// The same, by position in the feasible list (normalisation sees positions only).
    ignored_positions: Vec<bool>,
}

impl Score for PodTopologySpread {
    fn name(&self) -> &'static str {
        NAME
    }

    /// Counts, for the domains of the feasible nodes, matching pods over every node of the
    /// snapshot that passes the inclusion policies.
    fn pre_score(
        &self,
        pod: &PodInfo,
        snapshot: &Snapshot,
        feasible: &[Arc<NodeInfo>],
        state: &mut CycleState,
    ) {
        if snapshot.is_empty() {
            return;
        }
        let own = has_constraints(pod);
        // Parse errors were refused in pre-filter.
        let constraints = if own {
            spread_constraints(pod, SCHEDULE_ANYWAY).unwrap_or_default()
        } else {
            self.default_constraints(pod)
        };
        if constraints.is_empty() {
            return;
        }
        // Only the pod's own constraints need every key: with the defaults, nodes without a
        // zone label still spread by hostname.
        let require_all_keys = own;

        let mut ignored = HashSet::new();
        let mut ignored_positions = Vec::with_capacity(feasible.len());
        let mut counts = vec![HashMap::<String, i64>::new(); constraints.len()];
        for node in feasible {
            let labels = node.labels();
            let skip = require_all_keys && !has_every_key(labels, &constraints);
            ignored_positions.push(skip);
            if skip {
                ignored.insert(node.name.clone());
                continue;
            }
            for (constraint, counts) in constraints.iter().zip(counts.iter_mut()) {
                if constraint.topology_key != LABEL_HOSTNAME {
                    // A node without the key lands in the "" domain, as in kube-scheduler,
                    // where it only widens the domain count.
                    let value = labels.get(&constraint.topology_key).cloned();
                    counts.entry(value.unwrap_or_default()).or_insert(0);
                }
            }
        }
        let scored_nodes = feasible.len() - ignored.len();

        let inclusion = NodeInclusion::of(pod);
        for node in &snapshot.nodes {
            let labels = node.labels();
            if require_all_keys && !has_every_key(labels, &constraints) {
                continue;
            }
            for (constraint, counts) in constraints.iter().zip(counts.iter_mut()) {
                if constraint.topology_key == LABEL_HOSTNAME
                    || !inclusion.includes(constraint, node)
                {
                    continue;
                }
                let value = labels
                    .get(&constraint.topology_key)
                    .map(String::as_str)
                    .unwrap_or("");
                // Domains without a feasible node are never asked about.
                if let Some(count) = counts.get_mut(value) {
                    *count += count_matching(&node.pods, &constraint.selector, &pod.namespace);
                }
            }
        }

        let domains = constraints
            .into_iter()
            .zip(counts)
            .map(|(constraint, counts)| {
                let size = if constraint.topology_key == LABEL_HOSTNAME {
                    scored_nodes
                } else {
                    counts.len()
                };
                ScoreDomains {
                    weight: ((size + 2) as f64).ln(),
                    constraint,
                    counts,
                }
            })
            .collect();
        state.insert(
            PRE_SCORE_KEY,
            PreScoreState {
                domains,
                ignored,
                ignored_positions,
            },
        );
    }

    /// The weighted count of matching pods in the node's domains, each constraint adding
    /// `maxSkew - 1` so that larger tolerated skews flatten the differences. Fewer is better;
    /// normalisation flips it.
    fn score(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> i64 {
        let Some(state) = state.get::<PreScoreState>(PRE_SCORE_KEY) else {
            return 0;
        };
        if state.ignored.contains(&node.name) {
            return 0;
        }
        let labels = node.labels();
        let mut score = 0.0;
        for domains in &state.domains {
            let constraint = &domains.constraint;
            let Some(value) = labels.get(&constraint.topology_key) else {
                continue;
            };
            let count = if constraint.topology_key == LABEL_HOSTNAME {
                count_matching(&node.pods, &constraint.selector, &pod.namespace)
            } else {
                domains.counts.get(value).copied().unwrap_or(0)
            };
            score += count as f64 * domains.weight + (constraint.max_skew - 1) as f64;
        }
        score.round() as i64
    }

    /// `MAX * (max + min - score) / max` over the scored nodes, so the least crowded gets the
    /// most; every scored node gets MAX when all scored 0, and ignored nodes get 0.
    fn normalize(&self, state: &CycleState, _pod: &PodInfo, scores: &mut [i64]) {
        let Some(state) = state.get::<PreScoreState>(PRE_SCORE_KEY) else {
            return;
        };
        let ignored = |i: usize| state.ignored_positions.get(i).copied().unwrap_or(false);
        let mut min = i64::MAX;
        let mut max = 0;
        for (i, &score) in scores.iter().enumerate() {
            if !ignored(i) {
                min = min.min(score);
                max = max.max(score);
            }
        }
        for (i, score) in scores.iter_mut().enumerate() {
            *score = if ignored(i) {
                0
            } else if max == 0 {
                MAX_NODE_SCORE
            } else {
                MAX_NODE_SCORE * (max + min - *score) / max
            };
        }
    }
}

#[cfg(test)]
mod tests;
