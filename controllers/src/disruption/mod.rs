//! The disruption controller: keeps each PodDisruptionBudget's status — expected pods,
//! desired and current healthy, the disruptions allowed, the evictions still awaited and the
//! DisruptionAllowed condition — which the API server's eviction subresource spends from.
//!
//! The computation is pure ([`budget`]); this module is the shell: it reads the shared pod and
//! workload caches, writes the status (fenced, conditional on the budget's version), and looks
//! again when an awaited eviction times out.

pub mod budget;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::StreamExt;
use keel_client::k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use keel_client::k8s_openapi::api::core::v1::Pod;
use keel_client::k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetStatus};
use keel_client::k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use keel_client::k8s_openapi::chrono::Utc;
use keel_client::k8s_openapi::Metadata;
use keel_client::runtime::{Action, Controller};
use keel_client::store::Store;
use keel_client::{Error, ObjectKey};
use keel_types::selector::Selector;
use tokio_util::sync::CancellationToken;

use crate::context::Context;
use crate::events::{self, error_message, NORMAL, WARNING};
use crate::pods::controller_of;
use budget::Scale;

/// The component name on this controller's Events (kube-controller-manager's for it).
pub const COMPONENT: &str = "controllermanager";
/// A safety net: look at a budget again this often even if nothing changes.
const RESYNC: Duration = Duration::from_secs(300);

/// Which pods each budget selected at its last sync, so a pod that stops matching still
/// brings its old budget back.
type Selected = Arc<Mutex<HashMap<ObjectKey, BTreeSet<String>>>>;

struct State {
    ctx: Arc<Context>,
    pods: Store<Pod>,
    replica_sets: Store<ReplicaSet>,
    deployments: Store<Deployment>,
    stateful_sets: Store<StatefulSet>,
    selected: Selected,
}

/// Runs the controller until `stop`.
pub fn start(ctx: Arc<Context>, stop: CancellationToken) -> BoxFuture<'static, ()> {
    Box::pin(async move {
        let pods = ctx.informers.of::<Pod>();
        let replica_sets = ctx.informers.of::<ReplicaSet>();
        let deployments = ctx.informers.of::<Deployment>();
        let stateful_sets = ctx.informers.of::<StatefulSet>();
        let controller =
            Controller::for_events(ctx.informers.of::<PodDisruptionBudget>().subscribe());
        let budgets = controller.store();
        let selected: Selected = Arc::default();
        let state = Arc::new(State {
            ctx: ctx.clone(),
            pods: pods.store(),
            replica_sets: replica_sets.store(),
            deployments: deployments.store(),
            stateful_sets: stateful_sets.store(),
            selected: selected.clone(),
        });
        let (for_pods, for_rs, for_deploy, for_sts) = (
            budgets.clone(),
            budgets.clone(),
            budgets.clone(),
            budgets.clone(),
        );
        controller
            .watches_events(pods.subscribe(), move |pod: &Pod| {
                budgets_of_pod(pod, &for_pods, &selected)
            })
            .watches_events(replica_sets.subscribe(), move |rs: &ReplicaSet| {
                budgets_in(&rs.metadata, &for_rs)
            })
            .watches_events(deployments.subscribe(), move |d: &Deployment| {
                budgets_in(&d.metadata, &for_deploy)
            })
            .watches_events(stateful_sets.subscribe(), move |s: &StatefulSet| {
                budgets_in(&s.metadata, &for_sts)
            })
            .with_depth_gauge(crate::metrics::of("disruption").depth.clone())
            .run(
                crate::metrics::timed(crate::metrics::of("disruption"), reconcile),
                error_policy,
                state,
                stop,
            )
            .for_each(|outcome| async move {
                if let Err(error) = outcome {
                    tracing::debug!(%error, "disruption sync failed");
                }
            })
            .await;
    })
}

fn selector_of(pdb: &PodDisruptionBudget) -> Result<Selector, keel_types::selector::SelectorError> {
    Selector::from_label_selector(pdb.spec.as_ref().and_then(|s| s.selector.as_ref()))
}

/// The budgets a pod event concerns: those selecting it now, and those that selected it at
/// their last sync (it may have stopped matching or gone).
fn budgets_of_pod(
    pod: &Pod,
    budgets: &Store<PodDisruptionBudget>,
    selected: &Selected,
) -> Vec<ObjectKey> {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    let mut keys: Vec<ObjectKey> = budgets
        .state()
        .iter()
        .filter(|b| b.metadata.namespace.as_deref() == Some(namespace.as_str()))
        .filter(|b| selector_of(b).is_ok_and(|s| s.matches(&labels)))
        .map(|b| ObjectKey::of(b.as_ref()))
        .collect();
    let mut selected = selected.lock().unwrap_or_else(PoisonError::into_inner);
    // Budgets deleted since their last sync select nothing any more.
    selected.retain(|key, _| budgets.get(key).is_some());
    for (key, names) in selected.iter() {
        if key.namespace.as_deref() == Some(namespace.as_str())
            && names.contains(&name)
            && !keys.contains(key)
        {
            keys.push(key.clone());
        }
    }
    keys
}

/// Every budget of a workload's namespace: a change of scale may change what they expect.
fn budgets_in(meta: &ObjectMeta, budgets: &Store<PodDisruptionBudget>) -> Vec<ObjectKey> {
    budgets
        .state()
        .iter()
        .filter(|b| b.metadata.namespace == meta.namespace)
        .map(|b| ObjectKey::of(b.as_ref()))
        .collect()
}

fn error_policy(_: &Arc<PodDisruptionBudget>, _: &Error, _: &State) -> Action {
    Action::requeue(Duration::from_secs(1))
}

async fn reconcile(pdb: Arc<PodDisruptionBudget>, state: Arc<State>) -> Result<Action, Error> {
    for store_ready in [
        state.pods.wait_until_ready().await,
        state.replica_sets.wait_until_ready().await,
        state.deployments.wait_until_ready().await,
        state.stateful_sets.wait_until_ready().await,
    ] {
        store_ready?;
    }
    let key = ObjectKey::of(pdb.as_ref());
    if pdb.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    match sync(&state, &pdb, &key).await {
        Ok(action) => Ok(action),
        // Someone else wrote the budget (an eviction): look at it again, without failing safe.
        Err(Failure::Api(error)) if error.is_conflict() => Err(error),
        Err(failure) => {
            let message = failure.to_string();
            let status = budget::fail_safe(&pdb, message, Utc::now());
            write_status(&state, &pdb, &key, status).await?;
            Ok(Action::requeue(Duration::from_secs(5)))
        }
    }
}

/// Why a sync could not complete.
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error("{0}")]
    Compute(String),
    #[error("{}", error_message(.0))]
    Api(Error),
}

async fn sync(
    state: &State,
    pdb: &Arc<PodDisruptionBudget>,
    key: &ObjectKey,
) -> Result<Action, Failure> {
    let namespace = key.namespace.clone().unwrap_or_default();
    let now = Utc::now();
    let selector = selector_of(pdb).map_err(|e| Failure::Compute(e.to_string()))?;
    let pods: Vec<Arc<Pod>> = state
        .pods
        .state()
        .into_iter()
        .filter(|p| p.metadata.namespace.as_deref() == Some(namespace.as_str()))
        .filter(|p| selector.matches(&p.metadata.labels.clone().unwrap_or_default()))
        .collect();
    state
        .selected
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(key.clone(), budget::names(&pods));
    let reference = events::reference(pdb.as_ref());
    if pods.is_empty() {
        state.ctx.recorder.event(
            COMPONENT,
            reference.clone(),
            NORMAL,
            "NoPods",
            "No matching pods found".into(),
        );
    }
    let find = |owner: &OwnerReference, ns: &str| scale_of(state, owner, ns);
    let expected = match budget::expected(pdb, &pods, &find) {
        Ok(expected) => expected,
        Err(e) => {
            state.ctx.recorder.event(
                COMPONENT,
                reference,
                WARNING,
                "CalculateExpectedPodCountFailed",
                format!("Failed to calculate the number of expected pods: {e}"),
            );
            return Err(Failure::Compute(e));
        }
    };
    if !expected.unmanaged.is_empty() {
        let selector = pdb.spec.as_ref().and_then(|s| s.selector.as_ref());
        state.ctx.recorder.event(
            COMPONENT,
            reference,
            WARNING,
            "UnmanagedPods",
            format!(
                "Pods selected by this PodDisruptionBudget (selector: {}) were found to be unmanaged. As a result, the status of the PDB cannot be calculated correctly, which may result in undefined behavior. To account for these pods please set \".spec.minAvailable\" field of the PDB to an integer value.",
                serde_json::to_string(&selector).unwrap_or_default()
            ),
        );
    }
    let (awaited, recheck, timed_out) = budget::awaited_evictions(pdb, &pods, now);
    for name in timed_out {
        if let Some(pod) = pods
            .iter()
            .find(|p| p.metadata.name.as_deref() == Some(name.as_str()))
        {
            state.ctx.recorder.event(
                COMPONENT,
                events::reference(pod.as_ref()),
                WARNING,
                "NotDeleted",
                format!(
                    "Pod was expected by PDB {namespace}/{} to be deleted but it wasn't",
                    key.name
                ),
            );
        }
    }
    let healthy = budget::count_healthy(&pods, &awaited, now);
    if let Some(status) = budget::next_status(pdb, healthy, &expected, awaited, now) {
        write_status(state, pdb, key, status)
            .await
            .map_err(Failure::Api)?;
    }
    let after = recheck
        .and_then(|at| (at - now).to_std().ok())
        .map_or(RESYNC, |d| d + Duration::from_millis(100));
    Ok(Action::requeue(after))
}

/// Writes `status` over the budget as it was read: a budget changed meanwhile (an eviction
/// spent a disruption) is a conflict, and the sync runs again on the fresh one.
async fn write_status(
    state: &State,
    pdb: &PodDisruptionBudget,
    key: &ObjectKey,
    status: PodDisruptionBudgetStatus,
) -> Result<(), Error> {
    let mut next = pdb.clone();
    next.status = Some(status);
    state
        .ctx
        .api::<PodDisruptionBudget>(key.namespace.as_deref().unwrap_or_default())
        .replace_status(&key.name, &next)
        .await
        .map(|_| ())
}

/// The scale of a pod's controller, as Kubernetes' finders look for it: a ReplicaSet not
/// owned by a Deployment, the Deployment owning a ReplicaSet, or a StatefulSet — each only if
/// it is the very object the reference names (same uid).
fn scale_of(state: &State, owner: &OwnerReference, namespace: &str) -> Option<Scale> {
    let apps = |r: &OwnerReference| matches!(group_of(&r.api_version), "apps" | "extensions");
    let named = |r: &OwnerReference| ObjectKey::namespaced(namespace, r.name.clone());
    let same = |meta: &ObjectMeta, r: &OwnerReference| meta.uid.as_deref() == Some(r.uid.as_str());
    match owner.kind.as_str() {
        "ReplicaSet" if apps(owner) => {
            let rs = state
                .replica_sets
                .get(&named(owner))
                .filter(|rs| same(rs.metadata(), owner))?;
            match controller_of(&rs.metadata) {
                Some(parent) if parent.kind == "Deployment" && apps(parent) => {
                    let d = state
                        .deployments
                        .get(&named(parent))
                        .filter(|d| same(d.metadata(), parent))?;
                    Some(Scale {
                        uid: parent.uid.clone(),
                        replicas: d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
                    })
                }
                _ => Some(Scale {
                    uid: owner.uid.clone(),
                    replicas: rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
                }),
            }
        }
        "StatefulSet" if apps(owner) => {
            let s = state
                .stateful_sets
                .get(&named(owner))
                .filter(|s| same(s.metadata(), owner))?;
            Some(Scale {
                uid: owner.uid.clone(),
                replicas: s.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
            })
        }
        _ => None,
    }
}

/// The group of an apiVersion ("" for the core group's "v1").
fn group_of(api_version: &str) -> &str {
    api_version.split_once('/').map_or("", |(group, _)| group)
}
