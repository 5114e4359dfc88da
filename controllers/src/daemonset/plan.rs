//! One sync of a DaemonSet, decided: on which nodes to create a daemon pod and which pods to
//! delete, including the rolling update (`maxUnavailable` without surge: replace old pods a
//! few nodes at a time, unavailable ones first; with `maxSurge`: start the new pod beside the
//! old and delete the old once the new is available), and the status. Pure; the clock is an
//! argument.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use keel_client::k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetStatus};
use keel_client::k8s_openapi::api::core::v1::{Node, Pod};
use keel_client::k8s_openapi::chrono::{DateTime, Utc};

use super::placement::{revision_of, Fit};
use crate::pods::{is_available, is_ready, phase};
use crate::revision::scaled;

/// What to write in one sync.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    /// Nodes to start a daemon pod on.
    pub create: Vec<String>,
    /// Pods to delete, with why (an Event's reason).
    pub delete: Vec<(Arc<Pod>, &'static str)>,
}

/// The daemon pods of one node, split by revision.
#[derive(Debug, Default)]
struct OnNode {
    new: Vec<Arc<Pod>>,
    old: Vec<Arc<Pod>>,
    failed: Vec<Arc<Pod>>,
}

fn oldest_first(pods: &mut [Arc<Pod>]) {
    pods.sort_by_key(|p| p.metadata.creation_timestamp.as_ref().map(|t| t.0));
}

/// Decides a sync of `ds` over `nodes`, given its live (not terminating) pods grouped by the
/// node they are for, the current template revision `revision`, and `fits` (each node's
/// [`Fit`] for this DaemonSet's pod).
pub fn plan(
    ds: &DaemonSet,
    nodes: &[Arc<Node>],
    fits: &HashMap<String, Fit>,
    pods_by_node: &BTreeMap<String, Vec<Arc<Pod>>>,
    revision: &str,
    now: DateTime<Utc>,
) -> Plan {
    let spec = ds.spec.clone().unwrap_or_default();
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let mut plan = Plan::default();
    let mut groups: BTreeMap<String, OnNode> = BTreeMap::new();
    for (node, pods) in pods_by_node {
        let group = groups.entry(node.clone()).or_default();
        for pod in pods {
            if phase(pod) == "Failed" {
                group.failed.push(pod.clone());
            } else if revision_of(pod) == Some(revision) {
                group.new.push(pod.clone());
            } else {
                group.old.push(pod.clone());
            }
        }
        oldest_first(&mut group.new);
        oldest_first(&mut group.old);
    }
    let empty = OnNode::default();
    // Nodes that no longer exist: their pods go.
    for (node, group) in &groups {
        if !nodes
            .iter()
            .any(|n| n.metadata.name.as_deref() == Some(node))
        {
            for pod in group.new.iter().chain(&group.old).chain(&group.failed) {
                plan.delete.push((pod.clone(), "SuccessfulDelete"));
            }
        }
    }
    let rolling = spec
        .update_strategy
        .as_ref()
        .and_then(|s| s.type_.as_deref())
        .unwrap_or("RollingUpdate")
        == "RollingUpdate";
    let desired = fits.values().filter(|f| f.should_run).count() as i32;
    let rolling_params = spec
        .update_strategy
        .as_ref()
        .and_then(|s| s.rolling_update.clone())
        .unwrap_or_default();
    let max_surge = if rolling {
        scaled(rolling_params.max_surge.as_ref(), desired, true).max(0)
    } else {
        0
    };
    let mut max_unavailable = scaled(rolling_params.max_unavailable.as_ref(), desired, true).max(0);
    if max_surge == 0 && max_unavailable == 0 {
        max_unavailable = 1;
    }

    // Per node: what must be true whatever the rollout (one pod where it should run, none
    // where it may not stay, failed pods cleared).
    let mut unavailable = 0;
    let mut candidates: Vec<Arc<Pod>> = Vec::new();
    let mut replace_now: Vec<Arc<Pod>> = Vec::new();
    let mut surging = 0;
    let mut surge_candidates: Vec<String> = Vec::new();
    for node in nodes {
        let name = node.metadata.name.clone().unwrap_or_default();
        let Some(fit) = fits.get(&name) else { continue };
        let group = groups.get(&name).unwrap_or(&empty);
        for pod in &group.failed {
            plan.delete.push((pod.clone(), "FailedDaemonPod"));
        }
        if !fit.may_stay {
            for pod in group.new.iter().chain(&group.old) {
                plan.delete.push((pod.clone(), "SuccessfulDelete"));
            }
            continue;
        }
        if !fit.should_run {
            // A new NoSchedule taint: what runs may stay, nothing new starts.
            continue;
        }
        // Duplicates: keep the oldest of each revision (with surge, an old and a new may
        // run side by side for a while).
        for pod in group.new.iter().skip(1).chain(group.old.iter().skip(1)) {
            plan.delete.push((pod.clone(), "SuccessfulDelete"));
        }
        let new = group.new.first();
        let old = group.old.first();
        match (new, old) {
            (None, None) => {
                // A failed pod is replaced on the next sync, after its deletion is seen.
                if group.failed.is_empty() {
                    plan.create.push(name.clone());
                }
                unavailable += 1;
            }
            (Some(new), None) => {
                if !is_available(new, min_ready, now) {
                    unavailable += 1;
                }
            }
            (Some(new), Some(old)) => {
                surging += 1;
                if is_available(new, min_ready, now) || !rolling {
                    plan.delete.push((old.clone(), "SuccessfulDelete"));
                } else if !is_available(old, min_ready, now) {
                    unavailable += 1;
                }
            }
            (None, Some(old)) => {
                if !rolling {
                    continue;
                }
                if !is_available(old, min_ready, now) {
                    unavailable += 1;
                    replace_now.push(old.clone());
                } else if max_surge > 0 {
                    surge_candidates.push(name.clone());
                } else {
                    candidates.push(old.clone());
                }
            }
        }
    }
    if rolling {
        if max_surge > 0 {
            // Old pods that are not available anyway are replaced at once; available ones
            // get a new pod beside them, up to maxSurge at a time.
            for pod in replace_now {
                plan.delete.push((pod, "SuccessfulDelete"));
            }
            let room = (max_surge - surging).max(0) as usize;
            plan.create.extend(surge_candidates.into_iter().take(room));
        } else {
            let room = (max_unavailable - unavailable).max(0) as usize;
            for pod in replace_now {
                plan.delete.push((pod, "SuccessfulDelete"));
            }
            for pod in candidates.into_iter().take(room) {
                plan.delete.push((pod, "SuccessfulDelete"));
            }
        }
    }
    plan
}

/// The DaemonSet's status: how many nodes should run it, do, run it where they should not,
/// and how many of its pods are ready, available and of the current revision.
pub fn status(
    ds: &DaemonSet,
    fits: &HashMap<String, Fit>,
    pods_by_node: &BTreeMap<String, Vec<Arc<Pod>>>,
    revision: &str,
    now: DateTime<Utc>,
) -> DaemonSetStatus {
    let min_ready = ds
        .spec
        .as_ref()
        .and_then(|s| s.min_ready_seconds)
        .unwrap_or(0);
    let mut status = DaemonSetStatus {
        observed_generation: ds.metadata.generation,
        collision_count: ds.status.as_ref().and_then(|s| s.collision_count),
        ..Default::default()
    };
    let mut ready = 0;
    let mut available = 0;
    let mut updated = 0;
    for (node, fit) in fits {
        let pods: Vec<&Arc<Pod>> = pods_by_node
            .get(node)
            .into_iter()
            .flatten()
            .filter(|p| phase(p) != "Failed")
            .collect();
        if fit.should_run {
            status.desired_number_scheduled += 1;
            if !pods.is_empty() {
                status.current_number_scheduled += 1;
                if pods.iter().any(|p| is_ready(p)) {
                    ready += 1;
                }
                if pods.iter().any(|p| is_available(p, min_ready, now)) {
                    available += 1;
                }
                if pods.iter().any(|p| revision_of(p) == Some(revision)) {
                    updated += 1;
                }
            }
        } else if !pods.is_empty() {
            status.number_misscheduled += 1;
        }
    }
    // Pods for nodes that are gone are misscheduled too.
    status.number_misscheduled += pods_by_node
        .keys()
        .filter(|n| !fits.contains_key(*n))
        .count() as i32;
    status.number_ready = ready;
    status.number_available = Some(available);
    status.updated_number_scheduled = Some(updated);
    status.number_unavailable = Some(status.desired_number_scheduled - available);
    status
}

#[cfg(test)]
mod tests;
