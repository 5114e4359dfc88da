//! Preemption, as kube-scheduler's DefaultPreemption: when no node fits a pod, find nodes where
//! evicting lower-priority pods would make room, keep as many of those pods as still leaves
//! room (the most important first), and choose the node whose evictions cost least. Pure: the
//! caller deletes the victims and nominates the node.

use std::sync::Arc;

use crate::cycle::{Algorithm, Diagnosis, Nominated};
use crate::framework::{CycleState, NodeInfo, PodInfo, Rejection, Snapshot};

/// At least this share of the nodes is dry-run for candidates (`minCandidateNodesPercentage`)…
pub const MIN_CANDIDATE_NODES_PERCENTAGE: usize = 10;
/// …and at least this many (`minCandidateNodesAbsolute`).
pub const MIN_CANDIDATE_NODES_ABSOLUTE: usize = 100;

const NOT_HELPFUL: &str = "Preemption is not helpful for scheduling";
const NO_VICTIMS: &str = "No preemption victims found for incoming pod";

/// Pods to evict from `node` so the preemptor fits there.
#[derive(Debug, Clone)]
pub struct Victims {
    pub node: String,
    pub pods: Vec<Arc<PodInfo>>,
}

/// What preemption decided.
#[derive(Debug, Clone)]
pub enum Preemption {
    /// Evict these pods and nominate their node.
    Evict(Victims),
    /// Nothing to do; the message continues the FailedScheduling event
    /// (`preemption: 0/3 nodes are available: …`).
    NotPossible(String),
}

/// How many candidates to look for among `nodes` potential ones.
pub fn candidates_to_find(nodes: usize) -> usize {
    (nodes * MIN_CANDIDATE_NODES_PERCENTAGE / 100)
        .max(MIN_CANDIDATE_NODES_ABSOLUTE)
        .min(nodes)
}

/// Whether the pod's own terms let it preempt at all, and why not.
fn eligible(pod: &PodInfo, snapshot: &Snapshot) -> Result<(), String> {
    let spec = pod.pod.spec.as_ref();
    if spec.and_then(|s| s.preemption_policy.as_deref()) == Some("Never") {
        return Err("not eligible due to preemptionPolicy=Never.".into());
    }
    // A pod that already preempted waits for its victims to leave instead of preempting again.
    let nominated = pod
        .pod
        .status
        .as_ref()
        .and_then(|s| s.nominated_node_name.as_deref())
        .unwrap_or("");
    if let Some(node) = snapshot.get(nominated) {
        if node
            .pods
            .iter()
            .any(|p| p.terminating() && p.priority < pod.priority)
        {
            return Err("not eligible due to a terminating pod on the nominated node.".into());
        }
    }
    Ok(())
}

/// `a` is more important than `b`: higher priority, then started earlier.
fn more_important(a: &PodInfo, b: &PodInfo) -> std::cmp::Ordering {
    let start = |p: &PodInfo| {
        p.pod
            .status
            .as_ref()
            .and_then(|s| s.start_time.as_ref())
            .map(|t| t.0)
    };
    b.priority
        .cmp(&a.priority)
        .then_with(|| match (start(a), start(b)) {
            (Some(x), Some(y)) => x.cmp(&y),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => std::cmp::Ordering::Equal,
        })
}

impl Algorithm {
    /// Whether `pod` fits on node `position` of `snapshot` once `node` replaces it.
    fn fits_with(
        &self,
        pod: &PodInfo,
        snapshot: &Snapshot,
        position: usize,
        node: NodeInfo,
        nominated: &Nominated,
    ) -> Result<(), Rejection> {
        let node = Arc::new(node);
        let changed = snapshot.with_node(position, node.clone());
        let mut state = CycleState::default();
        self.pre_filter(pod, &changed, &mut state)?;
        self.filter_with_nominated(&state, pod, &node, nominated)
    }

    /// The fewest lower-priority pods to evict from node `position` for `pod` to fit, or why
    /// evicting cannot help there.
    fn victims_on(
        &self,
        pod: &PodInfo,
        snapshot: &Snapshot,
        position: usize,
        nominated: &Nominated,
    ) -> Result<Vec<Arc<PodInfo>>, String> {
        let node = &snapshot.nodes[position];
        let mut potential: Vec<Arc<PodInfo>> = node
            .pods
            .iter()
            .filter(|p| p.priority < pod.priority)
            .cloned()
            .collect();
        if potential.is_empty() {
            return Err(NO_VICTIMS.into());
        }
        let mut without = NodeInfo::clone(node);
        for p in &potential {
            without.remove_pod(&p.uid);
        }
        if let Err(r) = self.fits_with(pod, snapshot, position, without.clone(), nominated) {
            return Err(r.reasons.join(", "));
        }
        // Keep (reprieve) the most important pods first, as long as the preemptor still fits.
        potential.sort_by(|a, b| more_important(a, b));
        let mut victims = Vec::new();
        for p in potential {
            let mut with = without.clone();
            with.add_pod(p.clone());
            if self
                .fits_with(pod, snapshot, position, with.clone(), nominated)
                .is_ok()
            {
                without = with;
            } else {
                victims.push(p);
            }
        }
        Ok(victims)
    }

    /// Finds pods to evict so `pod` fits, after `diagnosis` found no node for it.
    pub fn preempt(
        &mut self,
        pod: &PodInfo,
        snapshot: &Snapshot,
        diagnosis: &Diagnosis,
        nominated: &Nominated,
    ) -> Preemption {
        if let Err(why) = eligible(pod, snapshot) {
            return Preemption::NotPossible(format!("preemption: {why}"));
        }
        let n = snapshot.len();
        let mut statuses: Vec<(usize, Rejection)> = Vec::new();
        let potential: Vec<usize> = (0..n).filter(|&p| diagnosis.resolvable(p)).collect();
        for p in (0..n).filter(|p| !potential.contains(p)) {
            statuses.push((p, Rejection::unresolvable("DefaultPreemption", NOT_HELPFUL)));
        }
        let want = candidates_to_find(potential.len());
        let offset = if potential.is_empty() {
            0
        } else {
            (self.random() as usize) % potential.len()
        };
        let mut candidates: Vec<Victims> = Vec::new();
        for i in 0..potential.len() {
            if candidates.len() >= want {
                break;
            }
            let position = potential[(offset + i) % potential.len()];
            match self.victims_on(pod, snapshot, position, nominated) {
                Ok(pods) => candidates.push(Victims {
                    node: snapshot.nodes[position].name.clone(),
                    pods,
                }),
                Err(reason) => {
                    statuses.push((position, Rejection::new("DefaultPreemption", reason)))
                }
            }
        }
        match pick(candidates) {
            Some(v) => Preemption::Evict(v),
            None => {
                let d = Diagnosis {
                    nodes: n,
                    pre_filter: None,
                    rejections: statuses,
                    plugins: Default::default(),
                };
                Preemption::NotPossible(format!("preemption: {}", d.message(None)))
            }
        }
    }
}

/// kube-scheduler's pickOneNodeForPreemption: no victims at all; else the lowest
/// highest-victim priority; the lowest sum of victim priorities; the fewest victims; the
/// latest-started most important victim; the first.
fn pick(mut candidates: Vec<Victims>) -> Option<Victims> {
    if let Some(i) = candidates.iter().position(|c| c.pods.is_empty()) {
        return Some(candidates.swap_remove(i));
    }
    let highest = |c: &Victims| c.pods.iter().map(|p| p.priority).max().unwrap_or(i32::MIN);
    // Offsetting by 2^31 keeps negative priorities from making a sum smaller.
    let sum = |c: &Victims| {
        c.pods
            .iter()
            .map(|p| i64::from(p.priority) + i64::from(i32::MAX) + 1)
            .sum::<i64>()
    };
    let latest_start = |c: &Victims| {
        let top = highest(c);
        c.pods
            .iter()
            .filter(|p| p.priority == top)
            .filter_map(|p| p.pod.status.as_ref()?.start_time.as_ref().map(|t| t.0))
            .min()
    };
    let mut best: Option<usize> = None;
    for (i, c) in candidates.iter().enumerate() {
        let Some(b) = best else {
            best = Some(i);
            continue;
        };
        let bc = &candidates[b];
        let better = (highest(c), sum(c), c.pods.len())
            .cmp(&(highest(bc), sum(bc), bc.pods.len()))
            .then_with(|| latest_start(bc).cmp(&latest_start(c)));
        if better == std::cmp::Ordering::Less {
            best = Some(i);
        }
    }
    best.map(|i| candidates.swap_remove(i))
}

#[cfg(test)]
mod tests;
