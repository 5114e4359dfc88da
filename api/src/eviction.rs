//! Evicting a pod, as kube-apiserver's EvictionREST does for `pods/{name}/eviction`: a pod
//! that is pending, finished or already terminating goes without looking at budgets; one that
//! is covered by a PodDisruptionBudget goes only if the budget allows a disruption, and then
//! the budget is spent (disruptionsAllowed decremented, the pod recorded in disruptedPods) in
//! the same store transaction that marks the pod deleted. Two evictions racing for the last
//! disruption therefore cannot both succeed: the loser's compare-and-swap on the budget fails,
//! it reads the budget again and is refused with 429.
//!
//! Reading the Eviction and judging a budget are plain functions; [`ApiServer::evict`] reads
//! the pod and its budgets and makes the one write.

use chrono::{DateTime, Utc};
use keel_types::k8s_openapi::api::policy::v1::PodDisruptionBudget;
use keel_types::selector::Selector;
use serde_json::{json, Map, Value};

use crate::admission;
use crate::binding::success_status;
use crate::error::{ApiError, Cause};
use crate::keys;
use crate::meta;
use crate::server::{
    decode_stored, encode_for_store, guards, storage_error, ApiServer, DeleteOptions, WriteOptions,
    RETRIES,
};
use crate::storage::{prefix_end, Change, Expect, Storage, StorageError, WriteOp};

/// How many evicted pods a budget may list as disrupted before the controller has confirmed
/// them (Kubernetes' MaxDisruptedPodSize).
pub const MAX_DISRUPTED_PODS: usize = 2000;
/// The message of every refusal that a retry may overcome.
pub const TOO_MANY_MESSAGE: &str =
    "Cannot evict pod as it would violate the pod's disruption budget.";
/// The answer when a pod is covered by several budgets.
pub const SEVERAL_BUDGETS_MESSAGE: &str =
    "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.";
/// The cause reason of a budget refusal (policy/v1 DisruptionBudgetCause).
pub const DISRUPTION_BUDGET_CAUSE: &str = "DisruptionBudget";

/// The Eviction's API versions: policy/v1, and the older policy/v1beta1 kubectl falls back to.
const EVICTION_VERSIONS: &[&str] = &["policy/v1", "policy/v1beta1"];

/// An Eviction, read and checked: which pod, and how to delete it.
#[derive(Debug, Clone, Default)]
pub struct EvictRequest {
    pub pod: String,
    pub delete: DeleteOptions,
}

/// Reads an Eviction sent to `pods/{url_name}/eviction` in `namespace`.
pub fn read_eviction(
    mut body: Value,
    url_name: &str,
    namespace: &str,
) -> Result<EvictRequest, ApiError> {
    admission::default_type_as("policy/v1", "Eviction", &mut body);
    let version = meta::str_field(&body, &["apiVersion"]).unwrap_or("");
    let version = if EVICTION_VERSIONS.contains(&version) {
        version.to_string()
    } else {
        "policy/v1".to_string()
    };
    admission::check_type_as(&version, "Eviction", &body)?;
    let body_namespace = meta::namespace(&body);
    if !body_namespace.is_empty() && body_namespace != namespace {
        return Err(ApiError::BadRequest(
            "the namespace of the provided object does not match the namespace sent on the request"
                .into(),
        ));
    }
    if meta::name(&body) != url_name {
        return Err(ApiError::BadRequest(
            "name in URL does not match name in Eviction object".into(),
        ));
    }
    Ok(EvictRequest {
        pod: url_name.to_string(),
        delete: delete_options(body.get("deleteOptions")),
    })
}

/// The parts of an Eviction's meta/v1 DeleteOptions that a delete acts on.
fn delete_options(value: Option<&Value>) -> DeleteOptions {
    let mut opts = DeleteOptions::default();
    let Some(v) = value.filter(|v| v.is_object()) else {
        return opts;
    };
    let s = |p: &str| v.pointer(p).and_then(Value::as_str).map(str::to_string);
    opts.uid = s("/preconditions/uid").filter(|u| !u.is_empty());
    opts.resource_version = s("/preconditions/resourceVersion").filter(|r| !r.is_empty());
    opts.propagation_policy = s("/propagationPolicy");
    opts.grace_period_seconds = v.pointer("/gracePeriodSeconds").and_then(Value::as_i64);
    opts.dry_run = v
        .pointer("/dryRun")
        .and_then(Value::as_array)
        .is_some_and(|d| d.iter().any(|x| x == "All"));
    opts
}

/// Whether the pod can go without consulting budgets: it has not started (Pending), has
/// finished, or is already being deleted — it disrupts nothing that is not disrupted already.
pub fn can_ignore_budgets(pod: &Value) -> bool {
    matches!(
        meta::str_field(pod, &["status", "phase"]),
        Some("Pending" | "Succeeded" | "Failed")
    ) || meta::has_deletion_timestamp(pod)
}

/// Whether the pod's Ready condition is True (how a budget counts a pod healthy).
pub fn is_ready(pod: &Value) -> bool {
    pod.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|conditions| {
            conditions
                .iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

/// Whether budget `pdb` covers a pod with `labels`. A budget without a selector covers
/// nothing; an empty selector covers every pod of its namespace (policy/v1).
pub fn covers(
    pdb: &PodDisruptionBudget,
    labels: &std::collections::BTreeMap<String, String>,
) -> bool {
    let selector = pdb.spec.as_ref().and_then(|s| s.selector.as_ref());
    Selector::from_label_selector(selector).is_ok_and(|s| s.matches(labels))
}

/// What a budget says about evicting one of its pods.
#[derive(Debug, Clone, PartialEq)]
pub enum Judgement {
    /// The pod is not ready and the budget lets it go without spending a disruption.
    Unhealthy,
    /// The pod may go; the budget is to be written as given.
    Spend(Value),
}

/// Judges evicting `pod_name` (ready: `ready`) against `pdb` at `now`, as Kubernetes'
/// eviction does: a not-ready pod may go for free while the budget is satisfied (or always,
/// with `unhealthyPodEvictionPolicy: AlwaysAllow`); otherwise a disruption must be allowed
/// by an up-to-date status, and is spent.
pub fn judge(
    pdb: &Value,
    pod_name: &str,
    ready: bool,
    now: DateTime<Utc>,
) -> Result<Judgement, ApiError> {
    let name = meta::name(pdb);
    let status = |field: &str| {
        pdb.pointer(&format!("/status/{field}"))
            .and_then(Value::as_i64)
            .unwrap_or(0)
    };
    if !ready {
        let policy = meta::str_field(pdb, &["spec", "unhealthyPodEvictionPolicy"]);
        let (current, desired) = (status("currentHealthy"), status("desiredHealthy"));
        if policy == Some("AlwaysAllow") || (current >= desired && desired > 0) {
            return Ok(Judgement::Unhealthy);
        }
    }
    let generation = pdb
        .pointer("/metadata/generation")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    if status("observedGeneration") < generation {
        return Err(still_processing(name));
    }
    let allowed = status("disruptionsAllowed");
    if allowed < 0 {
        return Err(forbidden(name, "pdb disruptions allowed is negative"));
    }
    let disrupted = pdb
        .pointer("/status/disruptedPods")
        .and_then(Value::as_object)
        .map_or(0, Map::len);
    if disrupted > MAX_DISRUPTED_PODS {
        return Err(forbidden(
            name,
            "DisruptedPods map too big - too many evictions not confirmed by PDB controller",
        ));
    }
    if allowed == 0 {
        return Err(too_many(format!(
            "The disruption budget {name} needs {} healthy pods and has {} currently",
            status("desiredHealthy"),
            status("currentHealthy")
        )));
    }
    let mut next = pdb.clone();
    let stamp = now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let Some(status_map) = next
        .as_object_mut()
        .map(|m| m.entry("status").or_insert_with(|| json!({})))
        .and_then(Value::as_object_mut)
    else {
        return Err(ApiError::Internal(format!(
            "poddisruptionbudget {name} has a status that is not an object"
        )));
    };
    status_map.insert("disruptionsAllowed".into(), json!(allowed - 1));
    if allowed - 1 == 0 {
        let observed = status("observedGeneration");
        let conditions = status_map.entry("conditions").or_insert_with(|| json!([]));
        set_insufficient(conditions, observed, &stamp);
    }
    let disrupted = status_map
        .entry("disruptedPods")
        .or_insert_with(|| json!({}));
    if !disrupted.is_object() {
        *disrupted = json!({});
    }
    disrupted[pod_name] = json!(stamp);
    Ok(Judgement::Spend(next))
}

/// Sets the DisruptionAllowed condition to False/InsufficientPods, as Kubernetes'
/// SetStatusCondition does: the transition time moves only when the status changes.
fn set_insufficient(conditions: &mut Value, observed_generation: i64, now: &str) {
    if !conditions.is_array() {
        *conditions = json!([]);
    }
    let Some(list) = conditions.as_array_mut() else {
        return;
    };
    let existing = list.iter_mut().find(|c| c["type"] == "DisruptionAllowed");
    match existing {
        Some(c) => {
            if c["status"] != "False" {
                c["lastTransitionTime"] = json!(now);
            }
            c["status"] = json!("False");
            c["reason"] = json!("InsufficientPods");
            c["message"] = json!("");
            c["observedGeneration"] = json!(observed_generation);
        }
        None => list.push(json!({
            "type": "DisruptionAllowed",
            "status": "False",
            "reason": "InsufficientPods",
            "message": "",
            "observedGeneration": observed_generation,
            "lastTransitionTime": now,
        })),
    }
}

/// The pod marked as the eviction API marks it before deleting it: a DisruptionTarget
/// condition (reason EvictionByEvictionAPI).
pub fn with_disruption_target(mut pod: Value, now: &str) -> Value {
    let condition = json!({
        "type": "DisruptionTarget",
        "status": "True",
        "reason": "EvictionByEvictionAPI",
        "message": "Eviction API: evicting",
        "lastProbeTime": null,
        "lastTransitionTime": now,
    });
    if !pod["status"].is_object() {
        pod["status"] = json!({});
    }
    let conditions = &mut pod["status"]["conditions"];
    if !conditions.is_array() {
        *conditions = json!([]);
    }
    if let Some(list) = conditions.as_array_mut() {
        match list.iter_mut().find(|c| c["type"] == "DisruptionTarget") {
            Some(c) if c["status"] == "True" => {}
            Some(c) => *c = condition,
            None => list.push(condition),
        }
    }
    pod
}

fn too_many(message: String) -> ApiError {
    ApiError::TooManyRequests {
        message: TOO_MANY_MESSAGE.into(),
        causes: vec![Cause {
            field: String::new(),
            reason: DISRUPTION_BUDGET_CAUSE.into(),
            message,
        }],
        retry_after_seconds: 0,
    }
}

/// A budget whose status does not yet reflect its spec, or that changed under every retry.
fn still_processing(name: &str) -> ApiError {
    too_many(format!(
        "The disruption budget {name} is still being processed by the server."
    ))
}

fn forbidden(name: &str, why: &str) -> ApiError {
    ApiError::Forbidden(format!(
        "poddisruptionbudget.policy \"{name}\" is forbidden: {why}"
    ))
}

impl<S: Storage> ApiServer<S> {
    /// Evicts pod `url_name` of `namespace` as the Eviction `body` says. Returns the Status to
    /// answer.
    pub async fn evict(
        &self,
        namespace: &str,
        url_name: &str,
        body: Value,
        opts: &WriteOptions,
    ) -> Result<Value, ApiError> {
        let pods = keel_types::kinds::by_kind("v1", "Pod").ok_or(ApiError::UnknownResource)?;
        let budgets = keel_types::kinds::by_kind("policy/v1", "PodDisruptionBudget")
            .ok_or(ApiError::UnknownResource)?;
        let request = read_eviction(body, url_name, namespace)?;
        let name = request.pod.as_str();
        let mut delete = request.delete;
        delete.dry_run |= opts.dry_run;
        delete.fence = opts.fence.clone();
        // A caller that pinned the pod's version wants its own conflicts, not our retries.
        let pinned = delete.resource_version.is_some();
        let mut spent_budget: Option<String> = None;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (pod, pod_rev) = self.current(pods, Some(namespace), name).await?;
            crate::delete::check_preconditions(
                pods,
                name,
                &pod,
                pod_rev,
                delete.uid.as_deref(),
                delete.resource_version.as_deref(),
            )?;
            let mut budget_write = None;
            if !can_ignore_budgets(&pod) {
                let covering = self.budgets_covering(budgets, namespace, &pod).await?;
                if covering.len() > 1 {
                    return Err(ApiError::Internal(SEVERAL_BUDGETS_MESSAGE.into()));
                }
                if let Some((pdb, pdb_rev)) = covering.into_iter().next() {
                    spent_budget = Some(meta::name(&pdb).to_string());
                    match judge(&pdb, name, is_ready(&pod), Utc::now())? {
                        Judgement::Unhealthy => {}
                        Judgement::Spend(next) => {
                            budget_write = Some(WriteOp {
                                key: keys::object(budgets, Some(namespace), meta::name(&pdb)),
                                change: Change::Put(encode_for_store(&next)?),
                                expect: Expect::Revision(pdb_rev),
                            })
                        }
                    }
                }
            }
            if delete.dry_run {
                return Ok(success_status());
            }
            let marked = with_disruption_target(pod, &meta::now());
            let plan = self
                .plan_delete(pods, Some(namespace), name, marked, pod_rev, &delete)
                .await?;
            if plan.ops.is_empty() {
                return Ok(success_status());
            }
            let mut ops = plan.ops;
            ops.extend(budget_write);
            match self.storage.write(ops, guards(delete.fence.as_ref())).await {
                Ok(_) => return Ok(success_status()),
                // The pod or its budget changed since they were read: judge them afresh.
                Err(StorageError::Conflict { .. }) if !pinned && attempt < RETRIES => continue,
                Err(StorageError::Conflict { .. }) if !pinned => {
                    return Err(match &spent_budget {
                        Some(budget) => still_processing(budget),
                        None => storage_error(
                            pods,
                            name,
                            StorageError::Conflict {
                                key: vec![],
                                expected: pod_rev,
                                found: 0,
                            },
                        ),
                    })
                }
                Err(e) => return Err(storage_error(pods, name, e)),
            }
        }
    }

    /// The budgets of `namespace` that cover `pod`, each with its stored revision, read from
    /// the store itself (not a cache) so a budget created a moment ago is never missed.
    async fn budgets_covering(
        &self,
        info: &'static keel_types::ResourceInfo,
        namespace: &str,
        pod: &Value,
    ) -> Result<Vec<(Value, i64)>, ApiError> {
        let start = keys::collection(info, Some(namespace));
        let end = prefix_end(&start);
        let page = self
            .storage
            .list(&start, &end, 0, 0)
            .await
            .map_err(|e| storage_error(info, "", e))?;
        let labels = meta::labels(pod);
        let mut out = Vec::new();
        for stored in &page.items {
            let object = decode_stored(stored)?;
            let Ok(typed) = serde_json::from_value::<PodDisruptionBudget>(object.clone()) else {
                continue;
            };
            if covers(&typed, &labels) {
                out.push((object, stored.mod_revision));
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
#[path = "eviction_tests.rs"]
mod tests;
