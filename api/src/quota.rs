//! ResourceQuota as Kubernetes enforces it, without I/O: what one object counts against quotas
//! ([`usage`]), whether a quota's scopes cover an object ([`scopes_match`]), whether admitting
//! an object keeps a quota within its hard limits and what the quota then has used ([`check`],
//! [`admit`]), and a quota's usage recomputed from the objects it covers ([`recalculate`]).
//!
//! The caller owns the order of things: it lists the quotas of the object's namespace, asks
//! [`handles`] whether the operation can change usage at all, calls [`admit`] for each quota,
//! and writes back every quota whose usage changed only if all of them admitted the object.

mod amount;
mod pod;

use std::collections::{BTreeMap, BTreeSet};

use keel_types::k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, Pod, ResourceQuota, ResourceQuotaSpec, Service,
};
use keel_types::k8s_openapi::apimachinery::pkg::api::resource::Quantity as TypedQuantity;
use keel_types::kinds::{self, ResourceInfo};
use keel_types::{Quantity, QuantityError};
use serde::de::DeserializeOwned;
use serde_json::Value;

pub use amount::{add_lists, pretty, subtract_non_negative, zero, ResourceList};

/// Why an object may not be admitted under a quota; the texts are Kubernetes'.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QuotaError {
    /// Admitting the object would take these resources past the quota's hard limits.
    #[error(
        "exceeded quota: {quota}, requested: {}, used: {}, limited: {}",
        pretty(.requested),
        pretty(.used),
        pretty(.limited)
    )]
    Exceeded {
        quota: String,
        requested: ResourceList,
        used: ResourceList,
        limited: ResourceList,
    },
    /// The quota tracks cpu or memory, and these containers do not state them.
    #[error("failed quota: {quota}: {}", pod::missing_message(.missing))]
    MissingCompute {
        quota: String,
        /// Resource → names of the containers that leave it unset.
        missing: BTreeMap<String, BTreeSet<String>>,
    },
    /// The quota's usage of resources it tracks has not been computed yet.
    #[error("status unknown for quota: {quota}, resources: {}", .resources.join(","))]
    StatusUnknown {
        quota: String,
        resources: Vec<String>,
    },
    /// The object asks for a negative amount of something.
    #[error("quota usage is negative for resource(s): {}", .resources.join(","))]
    NegativeUsage { resources: Vec<String> },
    /// A scope selector of the quota cannot be evaluated.
    #[error("error matching scopes of quota {quota}, err: {source}")]
    Scope { quota: String, source: ScopeError },
    /// A quantity in the quota itself does not parse.
    #[error("quota {quota}: {resource}={value}: {source}")]
    InvalidQuantity {
        quota: String,
        resource: String,
        value: String,
        source: QuantityError,
    },
}

/// Why a scope selector requirement cannot be evaluated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    #[error("failed to parse and convert selector: {} is not a valid pod selector operator", keel_types::field::go_quote(.operator))]
    Operator { operator: String },
    #[error("failed to parse and convert selector: {message}")]
    Selector { message: String },
}

/// The write an admission is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Create,
    Update,
}

/// The evaluators Kubernetes has for particular kinds; every other kind is only counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Evaluator {
    Pods,
    Services,
    PersistentVolumeClaims,
    /// Object counts, with the legacy name some core kinds are also counted under.
    Count(Option<&'static str>),
}

fn evaluator(info: &ResourceInfo) -> Evaluator {
    match (info.group, info.plural) {
        ("", "pods") => Evaluator::Pods,
        ("", "services") => Evaluator::Services,
        ("", "persistentvolumeclaims") => Evaluator::PersistentVolumeClaims,
        ("", "configmaps") => Evaluator::Count(Some("configmaps")),
        ("", "secrets") => Evaluator::Count(Some("secrets")),
        ("", "resourcequotas") => Evaluator::Count(Some("resourcequotas")),
        ("", "replicationcontrollers") => Evaluator::Count(Some("replicationcontrollers")),
        _ => Evaluator::Count(None),
    }
}

const STORAGE_CLASS_SUFFIX: &str = ".storageclass.storage.k8s.io/";

/// `count/<resource>` for the core group, `count/<resource>.<group>` otherwise: the name every
/// kind's object count is quota'd under.
pub fn object_count_name(info: &ResourceInfo) -> String {
    if info.group.is_empty() {
        format!("count/{}", info.plural)
    } else {
        format!("count/{}.{}", info.plural, info.group)
    }
}

/// Whether objects of this kind count against the quota resource `name`.
pub fn tracks(info: &ResourceInfo, name: &str) -> bool {
    match evaluator(info) {
        Evaluator::Pods => pod::tracks(name),
        Evaluator::Services => matches!(
            name,
            "count/services" | "services" | "services.loadbalancers" | "services.nodeports"
        ),
        Evaluator::PersistentVolumeClaims => {
            matches!(
                name,
                "count/persistentvolumeclaims" | "persistentvolumeclaims" | "requests.storage"
            ) || ["requests.storage", "persistentvolumeclaims"]
                .iter()
                .any(|r| name.ends_with(&format!("{STORAGE_CLASS_SUFFIX}{r}")))
        }
        Evaluator::Count(alias) => name == object_count_name(info) || Some(name) == alias,
    }
}

/// Whether a write can change what objects of this kind use (Kubernetes' `Handles`): pods
/// only when created (or resized), services and claims when created or updated, everything
/// else only when created.
pub fn handles(info: &ResourceInfo, operation: Operation, subresource: &str) -> bool {
    match evaluator(info) {
        Evaluator::Pods => match subresource {
            "" => operation == Operation::Create,
            "resize" => operation == Operation::Update,
            _ => false,
        },
        Evaluator::Services | Evaluator::PersistentVolumeClaims => true,
        Evaluator::Count(_) => operation == Operation::Create,
    }
}

fn one() -> Quantity {
    Quantity::from_i64(1)
}

fn typed<T: DeserializeOwned>(obj: &Value) -> Option<T> {
    serde_json::from_value(obj.clone()).ok()
}

/// What one object counts against quotas, as Kubernetes' evaluators measure it. Every object
/// counts 1 under [`object_count_name`]; pods, services and claims count more (see the
/// module's evaluators). An object that does not decode as its kind counts only itself.
pub fn usage(info: &ResourceInfo, obj: &Value) -> ResourceList {
    let count = ResourceList::from([(object_count_name(info), one())]);
    match evaluator(info) {
        Evaluator::Pods => typed::<Pod>(obj).map(|p| pod::usage(&p)).unwrap_or(count),
        Evaluator::Services => typed::<Service>(obj)
            .map(|s| service_usage(&s))
            .unwrap_or(count),
        Evaluator::PersistentVolumeClaims => typed::<PersistentVolumeClaim>(obj)
            .map(|c| claim_usage(&c))
            .unwrap_or(count),
        Evaluator::Count(alias) => {
            let mut out = count;
            if let Some(alias) = alias {
                out.insert(alias.to_string(), one());
            }
            out
        }
    }
}

/// A service counts 1, plus a load balancer if it is one, plus the node ports it opens.
fn service_usage(svc: &Service) -> ResourceList {
    let spec = svc.spec.clone().unwrap_or_default();
    let ports = i64::try_from(spec.ports.as_ref().map_or(0, Vec::len)).unwrap_or(i64::MAX);
    let mut out = ResourceList::from([
        ("count/services".to_string(), one()),
        ("services".to_string(), one()),
        ("services.loadbalancers".to_string(), amount::zero()),
        ("services.nodeports".to_string(), amount::zero()),
    ]);
    match spec.type_.as_deref() {
        Some("NodePort") => {
            out.insert("services.nodeports".into(), Quantity::from_i64(ports));
        }
        Some("LoadBalancer") => {
            // Node ports are not allocated yet, so the intent counts: every port, or only the
            // ports that ask for a node port when allocation is turned off.
            let node_ports = if spec.allocate_load_balancer_node_ports == Some(false) {
                let explicit = spec
                    .ports
                    .iter()
                    .flatten()
                    .filter(|p| p.node_port.is_some_and(|n| n != 0))
                    .count();
                i64::try_from(explicit).unwrap_or(i64::MAX)
            } else {
                ports
            };
            out.insert("services.nodeports".into(), Quantity::from_i64(node_ports));
            out.insert("services.loadbalancers".into(), one());
        }
        _ => {}
    }
    out
}

/// A claim counts 1 and the storage it requests (or has been given, if more), also under its
/// storage class.
fn claim_usage(claim: &PersistentVolumeClaim) -> ResourceList {
    let mut out = ResourceList::from([
        ("count/persistentvolumeclaims".to_string(), one()),
        ("persistentvolumeclaims".to_string(), one()),
    ]);
    let class = claim
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("volume.beta.kubernetes.io/storage-class"))
        .cloned()
        .or_else(|| claim.spec.as_ref()?.storage_class_name.clone())
        .unwrap_or_default();
    if !class.is_empty() {
        out.insert(
            format!("{class}{STORAGE_CLASS_SUFFIX}persistentvolumeclaims"),
            one(),
        );
    }
    let parse = |q: Option<&TypedQuantity>| q.and_then(|q| Quantity::parse(&q.0).ok());
    let requested = parse(
        claim
            .spec
            .as_ref()
            .and_then(|s| s.resources.as_ref())
            .and_then(|r| r.requests.as_ref())
            .and_then(|r| r.get("storage")),
    );
    let allocated = parse(
        claim
            .status
            .as_ref()
            .and_then(|s| s.allocated_resources.as_ref())
            .and_then(|r| r.get("storage")),
    );
    // Storage is charged in whole bytes. A failed expansion can leave more allocated than is
    // now requested; the larger is held. Nothing is charged for a claim requesting nothing.
    let storage = requested
        .map(|r| amount::round_up_to_whole(&r))
        .map(|r| match allocated {
            Some(a) if a > r => a,
            _ => r,
        });
    if let Some(storage) = storage {
        if !class.is_empty() {
            out.insert(
                format!("{class}{STORAGE_CLASS_SUFFIX}requests.storage"),
                storage.clone(),
            );
        }
        out.insert("requests.storage".into(), storage);
    }
    out
}

/// A quota's resource list (`spec.hard`, `status.used`, …) as quantities.
pub fn resource_list(
    quota: &str,
    list: Option<&BTreeMap<String, TypedQuantity>>,
) -> Result<ResourceList, QuotaError> {
    list.into_iter()
        .flatten()
        .map(|(name, q)| {
            Quantity::parse(&q.0)
                .map(|parsed| (name.clone(), parsed))
                .map_err(|source| QuotaError::InvalidQuantity {
                    quota: quota.to_string(),
                    resource: name.clone(),
                    value: q.0.clone(),
                    source,
                })
        })
        .collect()
}

/// The quota's scopes as selector requirements: each listed scope as `Exists`, then the scope
/// selector's expressions.
fn scope_requirements(spec: &ResourceQuotaSpec) -> Vec<(String, String, Vec<String>)> {
    let listed = spec
        .scopes
        .iter()
        .flatten()
        .map(|s| (s.clone(), "Exists".to_string(), Vec::new()));
    let selected = spec
        .scope_selector
        .iter()
        .flat_map(|s| s.match_expressions.iter().flatten())
        .map(|r| {
            (
                r.scope_name.clone(),
                r.operator.clone(),
                r.values.clone().unwrap_or_default(),
            )
        });
    listed.chain(selected).collect()
}

/// Whether the object falls in every scope of the quota (a quota without scopes covers
/// everything). Only pods have scopes (`Terminating`, `NotTerminating`, `BestEffort`,
/// `NotBestEffort`, `PriorityClass`, `CrossNamespacePodAffinity`); a scoped quota covers no
/// other kind.
pub fn scopes_match(
    quota: &str,
    spec: &ResourceQuotaSpec,
    info: &ResourceInfo,
    obj: &Value,
) -> Result<bool, QuotaError> {
    let requirements = scope_requirements(spec);
    if requirements.is_empty() {
        return Ok(true);
    }
    if evaluator(info) != Evaluator::Pods {
        return Ok(false);
    }
    let Some(pod) = typed::<Pod>(obj) else {
        return Ok(false);
    };
    for (scope, operator, values) in &requirements {
        let matched = pod::matches_scope(&pod, scope, operator, values).map_err(|source| {
            QuotaError::Scope {
                quota: quota.to_string(),
                source,
            }
        })?;
        if !matched {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Decides one quota for one object: `hard` is what the quota allows, `used` what it has
/// recorded as used, `delta` what admitting the object adds ([`usage`] of the object, or for
/// an update [`subtract_non_negative`] of the new and old usage). Only resources the quota
/// names are enforced. Returns what the quota has used once the object is admitted.
///
/// The caller has checked that the quota's scopes cover the object ([`scopes_match`]) and
/// that the write is not to the status subresource, which is charged but never refused.
pub fn check(
    quota_name: &str,
    hard: &ResourceList,
    used: &ResourceList,
    delta: &ResourceList,
    obj_info: &ResourceInfo,
    obj: &Value,
) -> Result<ResourceList, QuotaError> {
    let tracked: BTreeSet<String> = hard
        .keys()
        .filter(|name| tracks(obj_info, name))
        .cloned()
        .collect();

    if evaluator(obj_info) == Evaluator::Pods {
        if let Some(pod) = typed::<Pod>(obj) {
            let missing = pod::missing_compute(&pod, &tracked);
            if !missing.is_empty() {
                return Err(QuotaError::MissingCompute {
                    quota: quota_name.to_string(),
                    missing,
                });
            }
        }
    }

    if tracked.iter().any(|name| !used.contains_key(name)) {
        return Err(QuotaError::StatusUnknown {
            quota: quota_name.to_string(),
            resources: tracked.into_iter().collect(),
        });
    }

    let negative: Vec<String> = usage(obj_info, obj)
        .into_iter()
        .filter(|(_, q)| q.is_negative())
        .map(|(name, _)| name)
        .collect();
    if !negative.is_empty() {
        return Err(QuotaError::NegativeUsage {
            resources: negative,
        });
    }

    let requested = amount::mask(&amount::remove_zeros(delta), hard.keys());
    if requested.is_empty() {
        return Ok(used.clone());
    }
    let new_used = add_lists(used, &requested);
    let exceeded: Vec<&String> = requested
        .keys()
        .filter(
            |name| matches!((new_used.get(*name), hard.get(*name)), (Some(u), Some(h)) if u > h),
        )
        .collect();
    if !exceeded.is_empty() {
        return Err(QuotaError::Exceeded {
            quota: quota_name.to_string(),
            requested: amount::mask(&requested, exceeded.iter().copied()),
            used: amount::mask(used, exceeded.iter().copied()),
            limited: amount::mask(hard, exceeded.iter().copied()),
        });
    }
    Ok(new_used)
}

/// [`check`] for a stored quota and a write: `Ok(None)` when the quota does not apply (its
/// scopes do not cover the object, or it limits nothing this kind uses), else the quota's new
/// usage. `old` is the object an update replaces; what it already used is charged again only
/// if the quota covered it too.
///
/// As in Kubernetes, the limits are the quota's `status.hard` and the usage its
/// `status.used`, which the quota's controller keeps (see [`recalculate`]): until they are
/// written the quota limits nothing.
pub fn admit(
    quota: &ResourceQuota,
    info: &ResourceInfo,
    obj: &Value,
    old: Option<&Value>,
) -> Result<Option<ResourceList>, QuotaError> {
    let name = quota.metadata.name.as_deref().unwrap_or_default();
    let spec = quota.spec.clone().unwrap_or_default();
    let status = quota.status.clone().unwrap_or_default();
    let hard = resource_list(name, status.hard.as_ref())?;
    if !hard.keys().any(|r| tracks(info, r)) || !scopes_match(name, &spec, info, obj)? {
        return Ok(None);
    }
    let used = resource_list(name, status.used.as_ref())?;
    let mut delta = usage(info, obj);
    if let Some(old) = old {
        if scopes_match(name, &spec, info, old)? {
            delta = subtract_non_negative(&delta, &usage(info, old));
        }
    }
    check(name, &hard, &used, &delta, info, obj).map(Some)
}

/// What the quota has used: the sum of [`usage`] over the objects of its namespace that its
/// scopes cover, for every resource of `spec.hard` some kind is counted under (zero when no
/// object uses it). This is what Kubernetes' quota controller writes to `status.used`, with
/// `spec.hard` copied to `status.hard`.
pub fn recalculate<'a>(
    quota: &ResourceQuota,
    objects: impl IntoIterator<Item = (&'a ResourceInfo, &'a Value)>,
) -> Result<ResourceList, QuotaError> {
    let name = quota.metadata.name.as_deref().unwrap_or_default();
    let spec = quota.spec.clone().unwrap_or_default();
    let hard = resource_list(name, spec.hard.as_ref())?;
    let counted: BTreeSet<&String> = hard
        .keys()
        .filter(|r| kinds::all().iter().any(|info| tracks(info, r)))
        .collect();
    let mut used: ResourceList = counted
        .iter()
        .map(|r| ((*r).clone(), amount::zero()))
        .collect();
    for (info, obj) in objects {
        if !counted.iter().any(|r| tracks(info, r)) || !scopes_match(name, &spec, info, obj)? {
            continue;
        }
        let charged = amount::mask(&usage(info, obj), counted.iter().copied());
        amount::add_into(&mut used, &charged);
    }
    Ok(used)
}

#[cfg(test)]
mod tests;
