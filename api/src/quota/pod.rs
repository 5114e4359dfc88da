//! What a pod charges against quota, as Kubernetes' pod evaluator measures it: the compute
//! resources of its containers (init containers taken at their peak, sidecars for the whole
//! life of the pod, plus the pod's overhead), the constraint that a quota tracking cpu or
//! memory forces every container to state them, and the quota scopes a pod falls in.

use std::collections::{BTreeMap, BTreeSet};

use keel_types::k8s_openapi::api::core::v1::{Container, Pod, PodAffinityTerm};
use keel_types::selector::{Operator, Requirement};
use keel_types::{Quantity, Selector};

use super::amount::{add_into, max_into, ResourceList};
use super::ScopeError;

/// The resources the pod evaluator counts, besides the prefixed ones.
pub(super) const POD_RESOURCES: &[&str] = &[
    "count/pods",
    "cpu",
    "memory",
    "ephemeral-storage",
    "requests.cpu",
    "requests.memory",
    "requests.ephemeral-storage",
    "limits.cpu",
    "limits.memory",
    "limits.ephemeral-storage",
    "pods",
];

/// A quota on any of these makes every container state it. Kubernetes calls this a mistake
/// kept for compatibility, and adds nothing to the list.
const MUST_BE_SPECIFIED: &[&str] = &[
    "cpu",
    "memory",
    "requests.cpu",
    "requests.memory",
    "limits.cpu",
    "limits.memory",
];

const HUGE_PAGES_PREFIX: &str = "hugepages-";
const REQUESTS_PREFIX: &str = "requests.";

/// Whether the pod evaluator counts `name`.
pub(super) fn tracks(name: &str) -> bool {
    POD_RESOURCES.contains(&name)
        || name.starts_with(HUGE_PAGES_PREFIX)
        || name.starts_with("requests.hugepages-")
        || (!is_native(name) && name.starts_with(REQUESTS_PREFIX))
}

/// Kubernetes' native resources: unprefixed names, or names under `kubernetes.io/`.
fn is_native(name: &str) -> bool {
    !name.contains('/') || name.contains("kubernetes.io/")
}

/// Extended resources (`example.com/gpu`) can be quota'd only as `requests.<name>`.
fn is_extended(name: &str) -> bool {
    !is_native(name) && !name.starts_with(REQUESTS_PREFIX)
}

/// Terminal pods (Succeeded, Failed) no longer hold compute resources.
fn is_terminal(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    matches!(phase, Some("Succeeded") | Some("Failed"))
}

/// What a pod charges. `count/pods` is charged for every stored pod; the rest only while the
/// pod is not terminal.
///
/// Kubernetes also stops charging a pod whose deletion grace period has run out; that needs a
/// clock, and is left to the caller (a pod being deleted is about to leave storage anyway).
pub(super) fn usage(pod: &Pod) -> ResourceList {
    let mut out = ResourceList::from([("count/pods".to_string(), Quantity::from_i64(1))]);
    if is_terminal(pod) {
        return out;
    }
    let requests = pod_requests(pod);
    let limits = pod_limits(pod);
    add_into(&mut out, &compute_usage(&requests, &limits));
    out
}

/// The quota names requests and limits are charged under (Kubernetes'
/// `podComputeUsageHelper`); `pods` is always 1.
fn compute_usage(requests: &ResourceList, limits: &ResourceList) -> ResourceList {
    let mut out = ResourceList::from([("pods".to_string(), Quantity::from_i64(1))]);
    for base in ["cpu", "memory", "ephemeral-storage"] {
        if let Some(q) = requests.get(base) {
            out.insert(base.to_string(), q.clone());
            out.insert(format!("{REQUESTS_PREFIX}{base}"), q.clone());
        }
        if let Some(q) = limits.get(base) {
            out.insert(format!("limits.{base}"), q.clone());
        }
    }
    for (name, q) in requests {
        if name.starts_with(HUGE_PAGES_PREFIX) {
            out.insert(name.clone(), q.clone());
            out.insert(format!("{REQUESTS_PREFIX}{name}"), q.clone());
        }
        if is_extended(name) {
            out.insert(format!("{REQUESTS_PREFIX}{name}"), q.clone());
        }
    }
    out
}

fn parse_list(
    list: Option<
        &BTreeMap<String, keel_types::k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
    >,
) -> ResourceList {
    // Quantities were validated when the pod was admitted; an unparsable one charges nothing.
    list.into_iter()
        .flatten()
        .filter_map(|(name, q)| Quantity::parse(&q.0).ok().map(|q| (name.clone(), q)))
        .collect()
}

fn container_requests(c: &Container) -> ResourceList {
    parse_list(c.resources.as_ref().and_then(|r| r.requests.as_ref()))
}

fn container_limits(c: &Container) -> ResourceList {
    parse_list(c.resources.as_ref().and_then(|r| r.limits.as_ref()))
}

/// Sidecars are init containers that keep running (`restartPolicy: Always`).
fn is_sidecar(c: &Container) -> bool {
    c.restart_policy.as_deref() == Some("Always")
}

/// A pod's effective requests or limits (Kubernetes' `PodRequests`/`PodLimits`): the sum over
/// app containers and sidecars, or, if larger, the peak during initialisation, when each init
/// container runs beside the sidecars started before it.
fn effective(pod: &Pod, of: fn(&Container) -> ResourceList) -> ResourceList {
    let Some(spec) = pod.spec.as_ref() else {
        return ResourceList::new();
    };
    let mut total = ResourceList::new();
    for c in &spec.containers {
        add_into(&mut total, &of(c));
    }
    let mut sidecars = ResourceList::new();
    let mut init_peak = ResourceList::new();
    for c in spec.init_containers.iter().flatten() {
        let own = of(c);
        let running = if is_sidecar(c) {
            add_into(&mut total, &own);
            add_into(&mut sidecars, &own);
            sidecars.clone()
        } else {
            let mut with_sidecars = own;
            add_into(&mut with_sidecars, &sidecars);
            with_sidecars
        };
        max_into(&mut init_peak, &running);
    }
    max_into(&mut total, &init_peak);
    total
}

fn pod_requests(pod: &Pod) -> ResourceList {
    let mut requests = effective(pod, container_requests);
    let overhead = overhead(pod);
    add_into(&mut requests, &overhead);
    requests
}

fn pod_limits(pod: &Pod) -> ResourceList {
    let mut limits = effective(pod, container_limits);
    // Overhead raises only limits that are set: an unlimited resource stays unlimited.
    for (name, q) in overhead(pod) {
        if let Some(limit) = limits.get(&name) {
            let raised = super::amount::add(limit, &q);
            limits.insert(name, raised);
        }
    }
    limits
}

fn overhead(pod: &Pod) -> ResourceList {
    parse_list(pod.spec.as_ref().and_then(|s| s.overhead.as_ref()))
}

/// For each required resource some container does not state, the names of those containers
/// (Kubernetes' pod `Constraints`). `required` is what the quota tracks; only cpu and memory
/// in their three spellings are enforced.
pub(super) fn missing_compute(
    pod: &Pod,
    required: &BTreeSet<String>,
) -> BTreeMap<String, BTreeSet<String>> {
    let required: BTreeSet<&str> = required
        .iter()
        .map(String::as_str)
        .filter(|r| MUST_BE_SPECIFIED.contains(r))
        .collect();
    let mut missing: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let Some(spec) = pod.spec.as_ref() else {
        return missing;
    };
    for c in spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
    {
        let stated = compute_usage(&container_requests(c), &container_limits(c));
        for resource in &required {
            if !stated.contains_key(*resource) {
                missing
                    .entry((*resource).to_string())
                    .or_default()
                    .insert(c.name.clone());
            }
        }
    }
    missing
}

/// `must specify limits.cpu for: a,b; requests.cpu for: a`, resources and containers in name
/// order.
pub(super) fn missing_message(missing: &BTreeMap<String, BTreeSet<String>>) -> String {
    let parts: Vec<String> = missing
        .iter()
        .map(|(resource, containers)| {
            let names: Vec<&str> = containers.iter().map(String::as_str).collect();
            format!("{resource} for: {}", names.join(","))
        })
        .collect();
    format!("must specify {}", parts.join("; "))
}

/// A pod with an active deadline ends by itself: it is "terminating" for quota scopes.
fn is_terminating(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.active_deadline_seconds)
        .is_some_and(|d| d >= 0)
}

/// BestEffort: no container, init containers included, requests or limits any cpu or memory.
fn is_best_effort(pod: &Pod) -> bool {
    if let Some(class) = pod.status.as_ref().and_then(|s| s.qos_class.as_deref()) {
        if !class.is_empty() {
            return class == "BestEffort";
        }
    }
    let Some(spec) = pod.spec.as_ref() else {
        return true;
    };
    let positive = |list: ResourceList| {
        list.iter().any(|(name, q)| {
            (name == "cpu" || name == "memory") && !q.is_zero() && !q.is_negative()
        })
    };
    !spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .any(|c| positive(container_requests(c)) || positive(container_limits(c)))
}

fn cross_namespace(term: &PodAffinityTerm) -> bool {
    term.namespaces.as_ref().is_some_and(|n| !n.is_empty()) || term.namespace_selector.is_some()
}

/// Pod (anti-)affinity that reaches into other namespaces.
fn uses_cross_namespace_affinity(pod: &Pod) -> bool {
    let Some(affinity) = pod.spec.as_ref().and_then(|s| s.affinity.as_ref()) else {
        return false;
    };
    let affinity_terms = affinity.pod_affinity.as_ref().map(|a| {
        (
            a.required_during_scheduling_ignored_during_execution
                .as_ref(),
            a.preferred_during_scheduling_ignored_during_execution
                .as_ref(),
        )
    });
    let anti_terms = affinity.pod_anti_affinity.as_ref().map(|a| {
        (
            a.required_during_scheduling_ignored_during_execution
                .as_ref(),
            a.preferred_during_scheduling_ignored_during_execution
                .as_ref(),
        )
    });
    affinity_terms
        .into_iter()
        .chain(anti_terms)
        .any(|(required, preferred)| {
            required.into_iter().flatten().any(cross_namespace)
                || preferred
                    .into_iter()
                    .flatten()
                    .any(|w| cross_namespace(&w.pod_affinity_term))
        })
}

/// Whether the pod falls in one scope selector requirement of a quota.
pub(super) fn matches_scope(
    pod: &Pod,
    scope: &str,
    operator: &str,
    values: &[String],
) -> Result<bool, ScopeError> {
    Ok(match scope {
        "Terminating" => is_terminating(pod),
        "NotTerminating" => !is_terminating(pod),
        "BestEffort" => is_best_effort(pod),
        "NotBestEffort" => !is_best_effort(pod),
        "CrossNamespacePodAffinity" => uses_cross_namespace_affinity(pod),
        "PriorityClass" => {
            let class = pod
                .spec
                .as_ref()
                .and_then(|s| s.priority_class_name.as_deref())
                .unwrap_or_default();
            if operator == "Exists" {
                return Ok(!class.is_empty());
            }
            let op = match operator {
                "In" => Operator::In,
                "NotIn" => Operator::NotIn,
                "DoesNotExist" => Operator::DoesNotExist,
                other => {
                    return Err(ScopeError::Operator {
                        operator: other.to_string(),
                    })
                }
            };
            let requirement =
                Requirement::new(scope, op, values.to_vec()).map_err(|e| ScopeError::Selector {
                    message: e.to_string(),
                })?;
            let mut labels = BTreeMap::new();
            if !class.is_empty() {
                labels.insert(scope.to_string(), class.to_string());
            }
            Selector::from_requirements(vec![requirement]).matches(&labels)
        }
        _ => false,
    })
}

#[cfg(test)]
#[path = "pod_tests.rs"]
mod tests;
