//! One sync of a StatefulSet, decided as Kubernetes' stateful set control decides it: fill the
//! ordinals `[start, start + replicas)` and remove pods beyond them; under `OrderedReady` one
//! pod at a time, each only once every lower one is running and ready (and removal from the
//! highest ordinal down, each only once the previous is gone); under `Parallel` all at once;
//! then a rolling update from the highest ordinal down to the partition, one pod at a time,
//! only while every pod is healthy. Pure; the clock is an argument.

use std::collections::BTreeMap;
use std::sync::Arc;

use keel_client::k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetStatus};
use keel_client::k8s_openapi::api::core::v1::Pod;
use keel_client::k8s_openapi::chrono::{DateTime, Utc};

use super::identity::{ordinal_of, start_ordinal};
use crate::history::REVISION_LABEL;
use crate::pods::{is_available, is_ready, is_terminating, phase};

/// Which recorded template a new pod is made from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    Current,
    Update,
}

/// One write of a sync.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    Create {
        ordinal: i32,
        from: Which,
    },
    /// Delete a pod; `reason` says why (a finished pod, one beyond the replicas, or one of
    /// an old revision being rolled).
    Delete {
        pod: Arc<Pod>,
        reason: Reason,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Finished,
    ScaledDown,
    Rolling,
}

fn revision_of(pod: &Pod) -> Option<&str> {
    pod.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(REVISION_LABEL))
        .map(String::as_str)
}

fn replicas(set: &StatefulSet) -> i32 {
    set.spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1)
        .max(0)
}

fn ordered(set: &StatefulSet) -> bool {
    set.spec
        .as_ref()
        .and_then(|s| s.pod_management_policy.as_deref())
        != Some("Parallel")
}

fn rolling_partition(set: &StatefulSet) -> Option<i32> {
    let strategy = set.spec.as_ref()?.update_strategy.as_ref();
    match strategy.and_then(|s| s.type_.as_deref()) {
        Some("OnDelete") => None,
        _ => Some(
            strategy
                .and_then(|s| s.rolling_update.as_ref())
                .and_then(|r| r.partition)
                .unwrap_or(0),
        ),
    }
}

/// Running, ready and (with minReadySeconds) available: what lets an ordered set go on.
fn healthy(pod: &Pod, min_ready: i32, now: DateTime<Utc>) -> bool {
    !is_terminating(pod) && phase(pod) == "Running" && is_available(pod, min_ready, now)
}

/// The set's pods by ordinal (pods whose names are not the set's are ignored).
pub fn by_ordinal(set: &StatefulSet, pods: &[Arc<Pod>]) -> BTreeMap<i32, Arc<Pod>> {
    pods.iter()
        .filter_map(|p| ordinal_of(set, p).map(|o| (o, p.clone())))
        .collect()
}

/// The writes of one sync, in order.
pub fn plan(
    set: &StatefulSet,
    pods: &BTreeMap<i32, Arc<Pod>>,
    update_revision: &str,
    now: DateTime<Utc>,
) -> Vec<Step> {
    let start = start_ordinal(set);
    let end = start.saturating_add(replicas(set));
    let ordered = ordered(set);
    let partition = rolling_partition(set);
    let min_ready = set
        .spec
        .as_ref()
        .and_then(|s| s.min_ready_seconds)
        .unwrap_or(0);
    let mut steps = Vec::new();
    let mut all_healthy = true;
    for ordinal in start..end {
        let from = match partition {
            Some(p) if ordinal < p => Which::Current,
            _ => Which::Update,
        };
        match pods.get(&ordinal) {
            None => {
                steps.push(Step::Create { ordinal, from });
                all_healthy = false;
                if ordered {
                    return steps;
                }
            }
            Some(pod) if is_terminating(pod) => {
                all_healthy = false;
                if ordered {
                    return steps;
                }
            }
            Some(pod) if matches!(phase(pod), "Failed" | "Succeeded") => {
                steps.push(Step::Delete {
                    pod: pod.clone(),
                    reason: Reason::Finished,
                });
                all_healthy = false;
                if ordered {
                    return steps;
                }
            }
            Some(pod) if !healthy(pod, min_ready, now) => {
                all_healthy = false;
                if ordered {
                    return steps;
                }
            }
            Some(_) => {}
        }
    }
    // Beyond the replicas, highest first.
    for (_, pod) in pods.range(..start).chain(pods.range(end..)).rev() {
        if is_terminating(pod) {
            all_healthy = false;
            if ordered {
                return steps;
            }
            continue;
        }
        steps.push(Step::Delete {
            pod: pod.clone(),
            reason: Reason::ScaledDown,
        });
        all_healthy = false;
        if ordered {
            return steps;
        }
    }
    // The rolling update: one pod at a time, from the top, while everything is healthy.
    if let Some(partition) = partition {
        if !all_healthy || !steps.is_empty() {
            return steps;
        }
        for ordinal in (partition.max(start)..end).rev() {
            if let Some(pod) = pods.get(&ordinal) {
                if revision_of(pod) != Some(update_revision) {
                    steps.push(Step::Delete {
                        pod: pod.clone(),
                        reason: Reason::Rolling,
                    });
                    return steps;
                }
            }
        }
    }
    steps
}

/// The set's status from its pods, as Kubernetes computes it: a rolling update is complete
/// (the current revision becomes the update revision) once every pod is updated and ready.
pub fn status(
    set: &StatefulSet,
    pods: &BTreeMap<i32, Arc<Pod>>,
    current_revision: &str,
    update_revision: &str,
    now: DateTime<Utc>,
) -> StatefulSetStatus {
    let min_ready = set
        .spec
        .as_ref()
        .and_then(|s| s.min_ready_seconds)
        .unwrap_or(0);
    let mut status = StatefulSetStatus {
        observed_generation: set.metadata.generation,
        collision_count: set.status.as_ref().and_then(|s| s.collision_count),
        current_revision: Some(current_revision.to_string()),
        update_revision: Some(update_revision.to_string()),
        ..Default::default()
    };
    let (mut ready, mut available, mut current, mut updated) = (0, 0, 0, 0);
    for pod in pods.values() {
        status.replicas += 1;
        if phase(pod) == "Running" && is_ready(pod) {
            ready += 1;
            if is_available(pod, min_ready, now) {
                available += 1;
            }
        }
        if !is_terminating(pod) {
            if revision_of(pod) == Some(current_revision) {
                current += 1;
            }
            if revision_of(pod) == Some(update_revision) {
                updated += 1;
            }
        }
    }
    status.ready_replicas = Some(ready);
    status.available_replicas = Some(available);
    status.current_replicas = Some(current);
    status.updated_replicas = Some(updated);
    let rolling = rolling_partition(set).is_some();
    if rolling && updated == status.replicas && ready == status.replicas {
        status.current_replicas = Some(updated);
        status.current_revision = Some(update_revision.to_string());
    }
    status
}

#[cfg(test)]
mod tests;
