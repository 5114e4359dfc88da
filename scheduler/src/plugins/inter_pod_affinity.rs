//! InterPodAffinity, as kube-scheduler's plugin of that name: a pod's required affinity and
//! anti-affinity to other pods, and other pods' required anti-affinity to it, as a filter; the
//! preferred terms of both sides (and other pods' required affinity to it) as a score. Every
//! term is counted per topology domain (a topology key and one of its values).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::framework::{
    ClusterEvent, CycleState, Filter, NodeInfo, PodInfo, Rejection, Score, Snapshot, MAX_NODE_SCORE,
};
use crate::memo::CountKey;
use crate::terms::AffinityTerm;

pub const NAME: &str = "InterPodAffinity";
const PRE_FILTER_KEY: &str = "PreFilterInterPodAffinity";
const PRE_SCORE_KEY: &str = "PreScoreInterPodAffinity";

/// The node's domain holds no pod matching every required affinity term of the pod.
pub const REASON_AFFINITY: &str = "node(s) didn't match pod affinity rules";
/// The node's domain holds a pod matching a required anti-affinity term of the pod.
pub const REASON_ANTI_AFFINITY: &str = "node(s) didn't match pod anti-affinity rules";
/// The node's domain holds a pod whose required anti-affinity term matches the pod.
pub const REASON_EXISTING_ANTI_AFFINITY: &str =
    "node(s) didn't satisfy existing pods anti-affinity rules";

/// The weight kube-scheduler gives, when scoring, an existing pod's required affinity term that
/// the incoming pod matches (its `hardPodAffinityWeight` default).
pub const DEFAULT_HARD_POD_AFFINITY_WEIGHT: i64 = 1;

/// The plugin. Its only setting is kube-scheduler's `hardPodAffinityWeight` (0..=100; 0 leaves
/// existing pods' required affinity out of the score).
#[derive(Debug, Clone, Copy)]
pub struct InterPodAffinity {
    pub hard_pod_affinity_weight: i64,
}

impl Default for InterPodAffinity {
    fn default() -> Self {
        InterPodAffinity {
            hard_pod_affinity_weight: DEFAULT_HARD_POD_AFFINITY_WEIGHT,
        }
    }
}

/// Counts per topology domain: topology key → label value → count. Zero counts are not kept,
/// so an empty map means no domain counted anything.
#[derive(Debug, Clone, Default, PartialEq)]
struct TopologyCounts(HashMap<String, HashMap<String, i64>>);

impl TopologyCounts {
    /// Adds `n` to the domain `node` is in for `topology_key`; a node without that label is in
    /// no domain of it and counts nowhere.
    fn add_for_node(&mut self, node: &BTreeMap<String, String>, topology_key: &str, n: i64) {
        let Some(value) = node.get(topology_key) else {
            return;
        };
        self.add(topology_key, value, n);
    }

    /// Adds `n` to the domain `value` of `topology_key`.
    fn add(&mut self, topology_key: &str, value: &str, n: i64) {
        if n == 0 {
            return;
        }
        let values = match self.0.get_mut(topology_key) {
            Some(values) => values,
            None => self.0.entry(topology_key.to_string()).or_default(),
        };
        let count = match values.get_mut(value) {
            Some(count) => count,
            None => values.entry(value.to_string()).or_insert(0),
        };
        *count += n;
        if *count == 0 {
            values.remove(value);
            if values.is_empty() {
                self.0.remove(topology_key);
            }
        }
    }

    fn get(&self, topology_key: &str, value: &str) -> i64 {
        self.0
            .get(topology_key)
            .and_then(|values| values.get(value))
            .copied()
            .unwrap_or(0)
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// What the filter checks each node against, computed once per pod.
#[derive(Debug)]
struct PreFilterState {
    /// Existing pods whose required anti-affinity terms match the incoming pod, per domain.
    existing_anti_affinity: TopologyCounts,
    /// Existing pods matching all of the incoming pod's required affinity terms, per domain
    /// of each term.
    affinity: TopologyCounts,
    /// Existing pods matching each of the incoming pod's required anti-affinity terms.
    anti_affinity: TopologyCounts,
    /// Whether the incoming pod matches all its own required affinity terms.
    matches_own_affinity: bool,
}

/// Whether `pod` matches every term of a non-empty list (kube-scheduler's
/// `podMatchesAllAffinityTerms`; an empty list matches nothing).
fn matches_all(
    terms: &[AffinityTerm],
    pod: &PodInfo,
    namespace_labels: &HashMap<String, BTreeMap<String, String>>,
) -> bool {
    !terms.is_empty()
        && terms
            .iter()
            .all(|t| t.matches(&pod.namespace, pod.labels(), namespace_labels))
}

impl InterPodAffinity {
    fn pre_filter_state(pod: &PodInfo, snapshot: &Snapshot) -> PreFilterState {
        let namespace_labels = &snapshot.namespace_labels;
        let mut existing_anti_affinity = TopologyCounts::default();
        // The distinct terms existing pods carry, each asked once whether it repels this pod.
        for carried in snapshot.memo.carried_terms(snapshot).live() {
            let term = &carried.term;
            if term.matches(&pod.namespace, pod.labels(), namespace_labels) {
                for (domain, &n) in &carried.domains {
                    existing_anti_affinity.add(&term.topology_key, domain, n);
                }
            }
        }

        let required = &pod.affinity.required_affinity;
        let required_anti = &pod.affinity.required_anti_affinity;
        let mut affinity = TopologyCounts::default();
        let mut anti_affinity = TopologyCounts::default();
        // Terminating pods count here as in kube-scheduler: they still run where they are.
        if !required.is_empty() {
            let all: Vec<String> = required.iter().map(AffinityTerm::fingerprint).collect();
            for term in required {
                let key = CountKey {
                    rule: "InterPodAffinity/required-affinity",
                    params: all.join("\u{0}"),
                    topology_key: term.topology_key.clone(),
                };
                let counted = snapshot.memo.domain_counts(snapshot, key, |node| {
                    node.pods
                        .iter()
                        .filter(|e| matches_all(required, e, namespace_labels))
                        .count() as i64
                });
                for (domain, n) in counted.domains() {
                    affinity.add(&term.topology_key, domain, n);
                }
            }
        }
        for term in required_anti {
            let key = CountKey {
                rule: "InterPodAffinity/required-anti-affinity",
                params: term.fingerprint(),
                topology_key: term.topology_key.clone(),
            };
            let counted = snapshot.memo.domain_counts(snapshot, key, |node| {
                node.pods
                    .iter()
                    .filter(|e| term.matches(&e.namespace, e.labels(), namespace_labels))
                    .count() as i64
            });
            for (domain, n) in counted.domains() {
                anti_affinity.add(&term.topology_key, domain, n);
            }
        }
        PreFilterState {
            existing_anti_affinity,
            affinity,
            anti_affinity,
            matches_own_affinity: matches_all(required, pod, namespace_labels),
        }
    }

    /// The score contributions of one existing pod on `node`, added into `scores`.
    fn score_existing_pod(
        &self,
        pod: &PodInfo,
        existing: &PodInfo,
        node: &BTreeMap<String, String>,
        namespace_labels: &HashMap<String, BTreeMap<String, String>>,
        scores: &mut TopologyCounts,
    ) {
        let incoming_terms = &pod.affinity;
        for term in &incoming_terms.preferred_affinity {
            if term.matches(&existing.namespace, existing.labels(), namespace_labels) {
                scores.add_for_node(node, &term.topology_key, term.weight);
            }
        }
        for term in &incoming_terms.preferred_anti_affinity {
            if term.matches(&existing.namespace, existing.labels(), namespace_labels) {
                scores.add_for_node(node, &term.topology_key, -term.weight);
            }
        }
        // The existing pod's own terms, seen from its side: the incoming pod is what they
        // select.
        let existing_terms = &existing.affinity;
        let selects_incoming =
            |t: &&AffinityTerm| t.matches(&pod.namespace, pod.labels(), namespace_labels);
        if self.hard_pod_affinity_weight > 0 {
            for term in existing_terms
                .required_affinity
                .iter()
                .filter(selects_incoming)
            {
                scores.add_for_node(node, &term.topology_key, self.hard_pod_affinity_weight);
            }
        }
        for term in existing_terms
            .preferred_affinity
            .iter()
            .filter(selects_incoming)
        {
            scores.add_for_node(node, &term.topology_key, term.weight);
        }
        for term in existing_terms
            .preferred_anti_affinity
            .iter()
            .filter(selects_incoming)
        {
            scores.add_for_node(node, &term.topology_key, -term.weight);
        }
    }
}

/// Whether `node` satisfies the pod's required affinity: every term's domain of the node holds
/// a pod matching all the terms, or, for the first pod of a group, no such pod exists anywhere
/// and the pod matches its own terms. A node lacking a term's topology key never satisfies it.
fn satisfies_affinity(
    state: &PreFilterState,
    pod: &PodInfo,
    node: &BTreeMap<String, String>,
) -> bool {
    let mut pods_exist = true;
    for term in &pod.affinity.required_affinity {
        let Some(value) = node.get(&term.topology_key) else {
            return false;
        };
        if state.affinity.get(&term.topology_key, value) <= 0 {
            pods_exist = false;
        }
    }
    // Without this a group of pods with affinity to each other could never start: the first
    // one would wait forever for a peer.
    pods_exist || (state.affinity.is_empty() && state.matches_own_affinity)
}

/// Whether no domain of `node` named by the pod's required anti-affinity terms holds a pod
/// those terms match.
fn satisfies_anti_affinity(
    state: &PreFilterState,
    pod: &PodInfo,
    node: &BTreeMap<String, String>,
) -> bool {
    state.anti_affinity.is_empty()
        || pod.affinity.required_anti_affinity.iter().all(|term| {
            node.get(&term.topology_key)
                .is_none_or(|value| state.anti_affinity.get(&term.topology_key, value) <= 0)
        })
}

/// Whether no domain of `node` holds an existing pod whose required anti-affinity matches the
/// incoming pod.
fn satisfies_existing_anti_affinity(
    state: &PreFilterState,
    node: &BTreeMap<String, String>,
) -> bool {
    // Few topology keys are counted and a node has many labels: walk the keys.
    state.existing_anti_affinity.0.iter().all(|(key, values)| {
        node.get(key)
            .is_none_or(|v| values.get(v).is_none_or(|&n| n <= 0))
    })
}

impl Filter for InterPodAffinity {
    fn name(&self) -> &'static str {
        NAME
    }

    fn pre_filter(
        &self,
        pod: &PodInfo,
        snapshot: &Snapshot,
        state: &mut CycleState,
    ) -> Result<(), Rejection> {
        if let Some(error) = &pod.affinity.parse_error {
            return Err(Rejection::unresolvable(
                NAME,
                format!("parsing pod: {error}"),
            ));
        }
        state.insert(PRE_FILTER_KEY, Self::pre_filter_state(pod, snapshot));
        Ok(())
    }

    /// Nothing to check when the pod has no required terms and no existing pod's required
    /// anti-affinity term repels it.
    fn skips_filter(&self, pod: &PodInfo, state: &CycleState) -> bool {
        pod.affinity.required_affinity.is_empty()
            && pod.affinity.required_anti_affinity.is_empty()
            && state
                .get::<PreFilterState>(PRE_FILTER_KEY)
                .is_none_or(|s| s.existing_anti_affinity.is_empty())
    }

    /// Without pre-filter state (pre-filter not run) there is nothing to check against, and
    /// the node passes.
    fn filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<(), Rejection> {
        let Some(state) = state.get::<PreFilterState>(PRE_FILTER_KEY) else {
            return Ok(());
        };
        let labels = node.labels();
        // Evicting pods cannot create the peer a required affinity waits for, so preemption
        // need not try; it can remove the pods an anti-affinity objects to.
        if !satisfies_affinity(state, pod, labels) {
            return Err(Rejection::unresolvable(NAME, REASON_AFFINITY));
        }
        if !satisfies_anti_affinity(state, pod, labels) {
            return Err(Rejection::new(NAME, REASON_ANTI_AFFINITY));
        }
        if !satisfies_existing_anti_affinity(state, labels) {
            return Err(Rejection::new(NAME, REASON_EXISTING_ANTI_AFFINITY));
        }
        Ok(())
    }

    fn events(&self) -> &'static [ClusterEvent] {
        &[
            ClusterEvent::AssignedPodAdded,
            ClusterEvent::AssignedPodLabelsChanged,
            ClusterEvent::AssignedPodDeleted,
            ClusterEvent::NodeAdded,
            ClusterEvent::NodeLabelsChanged,
            ClusterEvent::NamespaceLabelsChanged,
        ]
    }
}

/// Score contributions per topology domain, summed over every pod in the cluster.
struct PreScoreState {
    scores: TopologyCounts,
}

impl Score for InterPodAffinity {
    fn name(&self) -> &'static str {
        NAME
    }

    /// Sums, per topology domain, over every existing pod (not only those on feasible nodes:
    /// a domain spans nodes that may be full).
    fn pre_score(
        &self,
        pod: &PodInfo,
        snapshot: &Snapshot,
        feasible: &[Arc<NodeInfo>],
        state: &mut CycleState,
    ) {
        if feasible.is_empty() {
            return;
        }
        let namespace_labels = &snapshot.namespace_labels;
        let has_preferred = !pod.affinity.preferred_affinity.is_empty()
            || !pod.affinity.preferred_anti_affinity.is_empty();
        let mut scores = TopologyCounts::default();
        let mut score_node = |node: &NodeInfo| {
            if node.labels().is_empty() {
                return;
            }
            for existing in &node.pods {
                // Without preferred terms of its own, the pod is only scored by other pods'
                // terms.
                if has_preferred || existing.affinity.scores_others() {
                    self.score_existing_pod(
                        pod,
                        existing,
                        node.labels(),
                        namespace_labels,
                        &mut scores,
                    );
                }
            }
        };
        if has_preferred {
            snapshot.nodes.iter().for_each(|n| score_node(n));
        } else {
            snapshot
                .have_pods_scoring_others
                .iter()
                .filter_map(|&i| snapshot.nodes.get(i))
                .for_each(|n| score_node(n));
        }
        if !scores.is_empty() {
            state.insert(PRE_SCORE_KEY, PreScoreState { scores });
        }
    }

    /// Every node scores 0 when the pod has no preferred terms and no existing pod has terms
    /// that score others.
    fn skips_score(&self, pod: &PodInfo, snapshot: &Snapshot) -> bool {
        pod.affinity.preferred_affinity.is_empty()
            && pod.affinity.preferred_anti_affinity.is_empty()
            && snapshot.have_pods_scoring_others.is_empty()
    }

    /// The sum of the contributions of every domain the node is in; may be negative.
    fn score(&self, state: &CycleState, _pod: &PodInfo, node: &NodeInfo) -> i64 {
        let Some(state) = state.get::<PreScoreState>(PRE_SCORE_KEY) else {
            return 0;
        };
        let labels = node.labels();
        state
            .scores
            .0
            .iter()
            .filter_map(|(key, values)| values.get(labels.get(key)?))
            .sum()
    }

    /// Min-max scaling onto 0..=MAX_NODE_SCORE (all 0 when every node scored the same), in
    /// floating point and truncated as kube-scheduler computes it, so equal inputs give equal
    /// scores in both.
    fn normalize(&self, state: &CycleState, _pod: &PodInfo, scores: &mut [i64]) {
        if state.get::<PreScoreState>(PRE_SCORE_KEY).is_none() {
            return;
        }
        let (Some(&min), Some(&max)) = (scores.iter().min(), scores.iter().max()) else {
            return;
        };
        let spread = max - min;
        for score in scores.iter_mut() {
            *score = if spread > 0 {
                (MAX_NODE_SCORE as f64 * ((*score - min) as f64 / spread as f64)) as i64
            } else {
                0
            };
        }
    }
}

#[cfg(test)]
mod tests;
