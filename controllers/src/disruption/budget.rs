//! A PodDisruptionBudget's status from the pods it selects, as Kubernetes' disruption
//! controller computes it: how many pods are expected (the matching pods for an integer
//! minAvailable, else the summed scale of their controllers), how many must stay healthy, how
//! many are healthy now (ready, not being deleted, not just evicted), the disruptions that
//! leaves, which evictions are still awaited, and the DisruptionAllowed condition. Pure; the
//! clock is an argument and controllers' scales come from a lookup the caller supplies.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use keel_client::k8s_openapi::api::core::v1::Pod;
use keel_client::k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetStatus};
use keel_client::k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    Condition, OwnerReference, Time,
};
use keel_client::k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use keel_client::k8s_openapi::chrono::{DateTime, TimeDelta, Utc};

use crate::pods::{controller_of, is_ready};

/// How long an evicted pod may stay undeleted before the budget counts it again
/// (Kubernetes' DeletionTimeout).
pub const DELETION_TIMEOUT: Duration = Duration::from_secs(120);
/// The condition this controller keeps.
pub const DISRUPTION_ALLOWED: &str = "DisruptionAllowed";
pub const SUFFICIENT_PODS: &str = "SufficientPods";
pub const INSUFFICIENT_PODS: &str = "InsufficientPods";
pub const SYNC_FAILED: &str = "SyncFailed";

/// A controller of pods, found through a pod's controlling ownerReference: its uid (pods of
/// one controller count its scale once) and its desired replicas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scale {
    pub uid: String,
    pub replicas: i32,
}

/// The budget's targets: pods expected, and how many of them must stay healthy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    pub expected_pods: i32,
    pub desired_healthy: i32,
    /// Matching pods without a controller (their scale cannot be known).
    pub unmanaged: Vec<String>,
}

/// Kubernetes' GetScaledValueFromIntOrPercent: an integer as is, a percentage of `total`
/// rounded up or down.
pub fn scaled_value(value: &IntOrString, total: i32, round_up: bool) -> Result<i32, String> {
    match value {
        IntOrString::Int(n) => Ok(*n),
        IntOrString::String(s) => {
            let Some(number) = s.strip_suffix('%') else {
                return Err(
                    "invalid value for IntOrString: invalid type: string is not a percentage"
                        .to_string(),
                );
            };
            let percent: i64 = number
                .parse()
                .map_err(|_| format!("invalid value for IntOrString: invalid value \"{s}\""))?;
            let product = percent * i64::from(total);
            let scaled = if round_up {
                (product + 99).div_euclid(100)
            } else {
                product.div_euclid(100)
            };
            i32::try_from(scaled).map_err(|_| format!("value {s} of {total} is out of range"))
        }
    }
}

/// The summed scale of the controllers of `pods` (each controller once), and the pods that
/// have none. A pod whose controller cannot be found is an error, as in Kubernetes.
pub fn expected_scale(
    pods: &[Arc<Pod>],
    find: &dyn Fn(&OwnerReference, &str) -> Option<Scale>,
) -> Result<(i32, Vec<String>), String> {
    let mut scales: BTreeMap<String, i32> = BTreeMap::new();
    let mut unmanaged = Vec::new();
    for pod in pods {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let Some(owner) = controller_of(&pod.metadata) else {
            unmanaged.push(name);
            continue;
        };
        if scales.contains_key(&owner.uid) {
            continue;
        }
        let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
        match find(owner, namespace) {
            Some(scale) => {
                scales.insert(scale.uid, scale.replicas);
            }
            None => return Err(format!("found no controllers for pod \"{name}\"")),
        }
    }
    Ok((scales.values().sum(), unmanaged))
}

/// What the budget expects of `pods`: for maxUnavailable, the controllers' scale less the
/// unavailable allowance (rounded up); for an integer minAvailable, that many of the matching
/// pods; for a percentage minAvailable, that share of the controllers' scale (rounded up).
pub fn expected(
    pdb: &PodDisruptionBudget,
    pods: &[Arc<Pod>],
    find: &dyn Fn(&OwnerReference, &str) -> Option<Scale>,
) -> Result<Expected, String> {
    let spec = pdb.spec.clone().unwrap_or_default();
    if let Some(max_unavailable) = spec.max_unavailable.as_ref() {
        let (expected_pods, unmanaged) = expected_scale(pods, find)?;
        let unavailable = scaled_value(max_unavailable, expected_pods, true)?;
        return Ok(Expected {
            expected_pods,
            desired_healthy: (expected_pods - unavailable).max(0),
            unmanaged,
        });
    }
    match spec.min_available.as_ref() {
        Some(IntOrString::Int(n)) => Ok(Expected {
            expected_pods: pods.len() as i32,
            desired_healthy: *n,
            unmanaged: Vec::new(),
        }),
        Some(percent @ IntOrString::String(_)) => {
            let (expected_pods, unmanaged) = expected_scale(pods, find)?;
            Ok(Expected {
                expected_pods,
                desired_healthy: scaled_value(percent, expected_pods, true)?,
                unmanaged,
            })
        }
        None => Ok(Expected {
            expected_pods: 0,
            desired_healthy: 0,
            unmanaged: Vec::new(),
        }),
    }
}

/// The evictions still awaited: entries of `status.disruptedPods` whose pod exists, is not yet
/// being deleted and was evicted less than [`DELETION_TIMEOUT`] ago. Also returns when the
/// earliest of them times out (to look again then) and the pods that timed out (evicted but
/// never deleted).
pub fn awaited_evictions(
    pdb: &PodDisruptionBudget,
    pods: &[Arc<Pod>],
    now: DateTime<Utc>,
) -> (BTreeMap<String, Time>, Option<DateTime<Utc>>, Vec<String>) {
    let recorded = pdb
        .status
        .as_ref()
        .and_then(|s| s.disrupted_pods.clone())
        .unwrap_or_default();
    let mut kept = BTreeMap::new();
    let mut recheck: Option<DateTime<Utc>> = None;
    let mut timed_out = Vec::new();
    let timeout = TimeDelta::from_std(DELETION_TIMEOUT).unwrap_or_default();
    for pod in pods {
        if pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let name = pod.metadata.name.clone().unwrap_or_default();
        let Some(at) = recorded.get(&name) else {
            continue;
        };
        let deadline = at.0 + timeout;
        if deadline < now {
            timed_out.push(name);
        } else {
            recheck = Some(recheck.map_or(deadline, |r| r.min(deadline)));
            kept.insert(name, at.clone());
        }
    }
    (kept, recheck, timed_out)
}

/// The pods that count as healthy: ready, not being deleted, and not awaiting an eviction.
pub fn count_healthy(
    pods: &[Arc<Pod>],
    awaited: &BTreeMap<String, Time>,
    now: DateTime<Utc>,
) -> i32 {
    let timeout = TimeDelta::from_std(DELETION_TIMEOUT).unwrap_or_default();
    pods.iter()
        .filter(|pod| pod.metadata.deletion_timestamp.is_none())
        .filter(|pod| {
            let name = pod.metadata.name.as_deref().unwrap_or_default();
            awaited.get(name).is_none_or(|at| at.0 + timeout <= now)
        })
        .filter(|pod| is_ready(pod))
        .count() as i32
}

/// The status the budget should have, or None when its status already says all of it (so
/// nothing is written).
pub fn next_status(
    pdb: &PodDisruptionBudget,
    current_healthy: i32,
    expected: &Expected,
    awaited: BTreeMap<String, Time>,
    now: DateTime<Utc>,
) -> Option<PodDisruptionBudgetStatus> {
    let mut allowed = current_healthy - expected.desired_healthy;
    // A budget that expects no pods (yet) allows nothing: its first pods may appear before
    // its status is written.
    if expected.expected_pods <= 0 || allowed <= 0 {
        allowed = 0;
    }
    let generation = pdb.metadata.generation.unwrap_or(0);
    let current = pdb.status.clone().unwrap_or_default();
    let unchanged = current.current_healthy == current_healthy
        && current.desired_healthy == expected.desired_healthy
        && current.expected_pods == expected.expected_pods
        && current.disruptions_allowed == allowed
        && current.disrupted_pods.clone().unwrap_or_default() == awaited
        && current.observed_generation == Some(generation)
        && conditions_up_to_date(&current, generation);
    if unchanged {
        return None;
    }
    let mut status = PodDisruptionBudgetStatus {
        current_healthy,
        desired_healthy: expected.desired_healthy,
        expected_pods: expected.expected_pods,
        disruptions_allowed: allowed,
        disrupted_pods: (!awaited.is_empty()).then_some(awaited),
        observed_generation: Some(generation),
        conditions: current.conditions,
    };
    let (state, reason) = if allowed > 0 {
        ("True", SUFFICIENT_PODS)
    } else {
        ("False", INSUFFICIENT_PODS)
    };
    set_condition(&mut status, state, reason, String::new(), now);
    Some(status)
}

/// The status after a failed sync: no disruptions allowed, the condition saying why
/// (Kubernetes' failSafe). The rest of the status is kept.
pub fn fail_safe(
    pdb: &PodDisruptionBudget,
    message: String,
    now: DateTime<Utc>,
) -> PodDisruptionBudgetStatus {
    let mut status = pdb.status.clone().unwrap_or_default();
    status.disruptions_allowed = 0;
    set_condition(&mut status, "False", SYNC_FAILED, message, now);
    status
}

fn conditions_up_to_date(status: &PodDisruptionBudgetStatus, generation: i64) -> bool {
    let Some(condition) = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == DISRUPTION_ALLOWED)
    else {
        return false;
    };
    if status.observed_generation != Some(generation) {
        return false;
    }
    if status.disruptions_allowed > 0 {
        condition.status == "True" && condition.reason == SUFFICIENT_PODS
    } else {
        condition.status == "False" && condition.reason == INSUFFICIENT_PODS
    }
}

/// Kubernetes' SetStatusCondition for DisruptionAllowed: the transition time moves only when
/// the status does.
fn set_condition(
    status: &mut PodDisruptionBudgetStatus,
    state: &str,
    reason: &str,
    message: String,
    now: DateTime<Utc>,
) {
    let observed_generation = status.observed_generation;
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    match conditions
        .iter_mut()
        .find(|c| c.type_ == DISRUPTION_ALLOWED)
    {
        Some(c) => {
            if c.status != state {
                c.last_transition_time = Time(now);
            }
            c.status = state.into();
            c.reason = reason.into();
            c.message = message;
            c.observed_generation = observed_generation;
        }
        None => conditions.push(Condition {
            type_: DISRUPTION_ALLOWED.into(),
            status: state.into(),
            reason: reason.into(),
            message,
            observed_generation,
            last_transition_time: Time(now),
        }),
    }
}

/// The names of `pods`, to notice later when one of them stops matching.
pub fn names(pods: &[Arc<Pod>]) -> BTreeSet<String> {
    pods.iter()
        .filter_map(|p| p.metadata.name.clone())
        .collect()
}

#[cfg(test)]
#[path = "budget_tests.rs"]
mod tests;
