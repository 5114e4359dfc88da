//! One scheduling decision, as kube-scheduler's `schedulePod`: pre-filter, filter nodes from a
//! rotating start until enough feasible ones are found (percentageOfNodesToScore, adaptive as
//! Kubernetes'), score them with the weighted plugins, and pick the best (ties at random). When
//! no node fits, the [`Diagnosis`] says why in Kubernetes' words.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use crate::framework::{CycleState, NodeInfo, PodInfo, Rejection, Snapshot};
use crate::plugins::Profile;

/// Below this many nodes every node is evaluated (`minFeasibleNodesToFind`).
pub const MIN_FEASIBLE_NODES_TO_FIND: usize = 100;
/// The adaptive percentage never drops below this (`minFeasibleNodesPercentageToFind`).
pub const MIN_FEASIBLE_NODES_PERCENTAGE: usize = 5;
/// The adaptive percentage at zero nodes (`DefaultPercentageOfNodesToScore` is adaptive from 50).
pub const BASE_PERCENTAGE_OF_NODES_TO_SCORE: usize = 50;

/// How many feasible nodes to look for among `all` before scoring. `percentage` 0 means
/// adaptive: 50 % minus one point per 125 nodes, at least 5 %; never fewer than 100 nodes.
pub fn feasible_nodes_to_find(all: usize, percentage: u32) -> usize {
    if all < MIN_FEASIBLE_NODES_TO_FIND {
        return all;
    }
    let mut pct = percentage as usize;
    if pct == 0 {
        pct = BASE_PERCENTAGE_OF_NODES_TO_SCORE.saturating_sub(all / 125);
        pct = pct.max(MIN_FEASIBLE_NODES_PERCENTAGE);
    }
    if pct >= 100 {
        return all;
    }
    (all * pct / 100).max(MIN_FEASIBLE_NODES_TO_FIND)
}

/// Where a pod goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub node: String,
    /// Nodes filtered, and how many of them fit.
    pub evaluated: usize,
    pub feasible: usize,
}

/// Why no node fits.
#[derive(Debug, Clone, Default)]
pub struct Diagnosis {
    pub nodes: usize,
    /// A pre-filter turned every node down.
    pub pre_filter: Option<Rejection>,
    /// Each rejected node (by snapshot position) and why.
    pub rejections: Vec<(usize, Rejection)>,
    /// Every plugin that rejected something (queueing hints wake the pod on their events).
    pub plugins: HashSet<&'static str>,
}

/// kube-scheduler's message when there are no nodes at all.
pub const NO_NODES_AVAILABLE: &str = "no nodes available to schedule pods";

impl Diagnosis {
    /// The FailedScheduling message, as kube-scheduler's FitError:
    /// `0/5 nodes are available: 2 Insufficient cpu, 3 node(s) had untolerated taint {k: v}.`
    /// followed by ` <post_filter>` (the preemption outcome) if given.
    pub fn message(&self, post_filter: Option<&str>) -> String {
        if self.nodes == 0 {
            return NO_NODES_AVAILABLE.to_string();
        }
        let mut msg = format!("0/{} nodes are available:", self.nodes);
        if let Some(pre) = &self.pre_filter {
            msg.push_str(&format!(" {}.", pre.reasons.join(", ")));
        } else {
            let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
            for (_, r) in &self.rejections {
                for reason in &r.reasons {
                    *counts.entry(reason.as_str()).or_insert(0) += 1;
                }
            }
            let mut parts: Vec<String> = counts
                .into_iter()
                .map(|(reason, n)| format!("{n} {reason}"))
                .collect();
            // Kubernetes sorts the "count reason" strings themselves.
            parts.sort();
            if !parts.is_empty() {
                msg.push_str(&format!(" {}.", parts.join(", ")));
            }
        }
        if let Some(post) = post_filter {
            msg.push(' ');
            msg.push_str(post);
        }
        msg
    }

    /// Whether evicting pods could help on node `position` (it was rejected, but only for
    /// resolvable reasons).
    pub fn resolvable(&self, position: usize) -> bool {
        self.pre_filter.as_ref().is_none_or(|r| !r.unresolvable)
            && self
                .rejections
                .iter()
                .find(|(p, _)| *p == position)
                .is_some_and(|(_, r)| !r.unresolvable)
    }
}

/// Pods nominated to nodes by preemption, which lower- or equal-priority pods must leave room
/// for: node name → pods.
pub type Nominated = HashMap<String, Vec<Arc<PodInfo>>>;

/// The decision-maker: a profile, and where the next search starts.
pub struct Algorithm {
    pub profile: Profile,
    /// percentageOfNodesToScore; 0 = adaptive.
    pub percentage_of_nodes_to_score: u32,
    next_start: usize,
    rng: u64,
}

impl Algorithm {
    pub fn new(profile: Profile, percentage_of_nodes_to_score: u32, seed: u64) -> Algorithm {
        Algorithm {
            profile,
            percentage_of_nodes_to_score,
            next_start: 0,
            rng: seed | 1,
        }
    }

    pub(crate) fn random(&mut self) -> u64 {
        // xorshift64: enough to break ties without a dependency.
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        x
    }

    /// Runs every pre-filter; a rejection turns all nodes down.
    pub fn pre_filter(
        &self,
        pod: &PodInfo,
        snapshot: &Snapshot,
        state: &mut CycleState,
    ) -> Result<(), Rejection> {
        for (position, f) in self.profile.filters.iter().enumerate() {
            f.pre_filter(pod, snapshot, state)?;
            if f.skips_filter(pod, state) {
                state.skip_filter(position);
            }
        }
        Ok(())
    }

    /// Runs every filter on one node, stopping at the first rejection.
    pub fn filter(
        &self,
        state: &CycleState,
        pod: &PodInfo,
        node: &NodeInfo,
    ) -> Result<(), Rejection> {
        for (position, f) in self.profile.filters.iter().enumerate() {
            if !state.filter_skipped(position) {
                f.filter(state, pod, node)?;
            }
        }
        Ok(())
    }

    /// Filters one node, with the pods nominated to it that outrank (or equal) `pod` counted
    /// as if they were already there.
    pub(crate) fn filter_with_nominated(
        &self,
        state: &CycleState,
        pod: &PodInfo,
        node: &NodeInfo,
        nominated: &Nominated,
    ) -> Result<(), Rejection> {
        let ahead: Vec<&Arc<PodInfo>> = nominated
            .get(&node.name)
            .into_iter()
            .flatten()
            .filter(|p| p.priority >= pod.priority && p.uid != pod.uid)
            .collect();
        if ahead.is_empty() {
            return self.filter(state, pod, node);
        }
        let mut with = node.clone();
        for p in ahead {
            with.add_pod(p.clone());
        }
        self.filter(state, pod, &with)
    }

    /// Chooses a node for `pod`, or says why none fits.
    pub fn schedule(
        &mut self,
        pod: &PodInfo,
        snapshot: &Snapshot,
        nominated: &Nominated,
    ) -> Result<Placement, Box<Diagnosis>> {
        let n = snapshot.len();
        let mut diagnosis = Box::new(Diagnosis {
            nodes: n,
            ..Default::default()
        });
        if n == 0 {
            return Err(diagnosis);
        }
        let mut state = CycleState::default();
        if let Err(r) = self.pre_filter(pod, snapshot, &mut state) {
            diagnosis.plugins.insert(r.plugin);
            diagnosis.pre_filter = Some(r);
            return Err(diagnosis);
        }
        let want = feasible_nodes_to_find(n, self.percentage_of_nodes_to_score);
        let start = self.next_start % n;
        let mut feasible: Vec<Arc<NodeInfo>> = Vec::with_capacity(want.min(n));
        let mut evaluated = 0;
        for i in 0..n {
            if feasible.len() >= want {
                break;
            }
            let pos = (start + i) % n;
            evaluated += 1;
            let node = &snapshot.nodes[pos];
            match self.filter_with_nominated(&state, pod, node, nominated) {
                Ok(()) => feasible.push(node.clone()),
                Err(r) => {
                    diagnosis.plugins.insert(r.plugin);
                    diagnosis.rejections.push((pos, r));
                }
            }
        }
        self.next_start = (start + evaluated) % n;
        if feasible.is_empty() {
            return Err(diagnosis);
        }
        let node = if feasible.len() == 1 {
            feasible[0].name.clone()
        } else {
            let totals = self.score(pod, snapshot, &feasible, &mut state);
            self.select(&feasible, &totals)
        };
        Ok(Placement {
            node,
            evaluated,
            feasible: feasible.len(),
        })
    }

    /// The weighted, normalised total of every score plugin for each feasible node.
    pub fn score(
        &self,
        pod: &PodInfo,
        snapshot: &Snapshot,
        feasible: &[Arc<NodeInfo>],
        state: &mut CycleState,
    ) -> Vec<i64> {
        let mut totals = vec![0i64; feasible.len()];
        for (plugin, weight) in &self.profile.scores {
            if plugin.skips_score(pod, snapshot) {
                continue;
            }
            plugin.pre_score(pod, snapshot, feasible, state);
            let mut scores: Vec<i64> = feasible
                .iter()
                .map(|node| plugin.score(state, pod, node))
                .collect();
            plugin.normalize(state, pod, &mut scores);
            for (t, s) in totals.iter_mut().zip(scores) {
                *t += s * weight;
            }
        }
        totals
    }

    /// The highest total; among equals, one chosen uniformly at random.
    fn select(&mut self, feasible: &[Arc<NodeInfo>], totals: &[i64]) -> String {
        let mut best = 0;
        let mut ties = 0u64;
        for (i, &t) in totals.iter().enumerate() {
            if t > totals[best] {
                best = i;
                ties = 1;
            } else if t == totals[best] {
                ties += 1;
                if self.random().is_multiple_of(ties) {
                    best = i;
                }
            }
        }
        feasible[best].name.clone()
    }
}

#[cfg(test)]
mod tests;
