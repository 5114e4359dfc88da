//! The ReplicaSet controller: keeps `spec.replicas` active pods of each ReplicaSet's template
//! (and of each ReplicationController's, the same controller over the older kind; see [`kind`]),
//! adopting matching orphans and releasing pods that stopped matching, and reports the
//! status Deployments and `kubectl` read.
//!
//! The decisions are pure ([`claim`], [`scale`], [`status`]); this module is the shell: it
//! reads the shared pod cache, makes the writes (fenced), and keeps expectations so a sync
//! never acts again before its cache has seen its own creates and deletes.

pub mod claim;
pub mod kind;
pub mod scale;
pub mod status;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::{join_all, BoxFuture};
use futures::StreamExt;
use keel_client::k8s_openapi::api::apps::v1::ReplicaSet;
use keel_client::k8s_openapi::api::core::v1::Pod;
use keel_client::k8s_openapi::api::core::v1::ReplicationController;
use keel_client::k8s_openapi::chrono::Utc;
use keel_client::runtime::{Action, Controller};
use keel_client::store::Store;
use keel_client::{DeleteParams, Error, ObjectKey, Patch};
use keel_types::selector::Selector;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use crate::context::Context;
use crate::events::{self, error_message, NORMAL, WARNING};
use crate::expectations::Expectations;
use crate::pods::{
    controller_of, controller_reference, generate_name, is_active, pod_from_template,
};

use self::kind::Replicated;

/// The component name on this controller's Events about ReplicaSets.
pub const COMPONENT: &str = <ReplicaSet as Replicated>::COMPONENT;
/// A safety net: look at a ReplicaSet again this often even if nothing changes.
const RESYNC: Duration = Duration::from_secs(300);

struct State<K> {
    ctx: Arc<Context>,
    pods: Store<Pod>,
    sets: Store<K>,
    expectations: Arc<Expectations>,
}

/// Runs the ReplicaSet controller until `stop`.
pub fn start(ctx: Arc<Context>, stop: CancellationToken) -> BoxFuture<'static, ()> {
    run::<ReplicaSet>(ctx, stop)
}

/// Runs the ReplicationController controller until `stop`.
pub fn start_replication_controllers(
    ctx: Arc<Context>,
    stop: CancellationToken,
) -> BoxFuture<'static, ()> {
    run::<ReplicationController>(ctx, stop)
}

fn run<K: Replicated>(ctx: Arc<Context>, stop: CancellationToken) -> BoxFuture<'static, ()> {
    Box::pin(async move {
        let pod_informer = ctx.informers.of::<Pod>();
        let controller = Controller::for_events(ctx.informers.of::<K>().subscribe());
        let sets = controller.store();
        let expectations = Arc::new(Expectations::new());
        let observed = expectations.clone();
        let pod_events = pod_informer.subscribe().inspect(move |event| {
            if let Ok(event) = event {
                observed.observe(event);
            }
        });
        let owners = sets.clone();
        let state = Arc::new(State {
            ctx,
            pods: pod_informer.store(),
            sets: sets.clone(),
            expectations,
        });
        controller
            .watches_events(pod_events, move |pod: &Pod| owners_of(pod, &owners))
            .with_depth_gauge(crate::metrics::of(K::CONTROLLER).depth.clone())
            .run(
                crate::metrics::timed(crate::metrics::of(K::CONTROLLER), reconcile::<K>),
                error_policy::<K>,
                state,
                stop,
            )
            .for_each(|outcome| async move {
                if let Err(error) = outcome {
                    tracing::debug!(%error, "replicaset sync failed");
                }
            })
            .await;
    })
}

/// The ReplicaSets a pod event concerns: its controller if that is a ReplicaSet, else (an
/// orphan) every ReplicaSet of its namespace whose selector matches it, which may adopt it.
fn owners_of<K: Replicated>(pod: &Pod, sets: &Store<K>) -> Vec<ObjectKey> {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    if let Some(owner) = controller_of(&pod.metadata) {
        return if owner.kind == K::KIND && owner.api_version == K::API_VERSION {
            vec![ObjectKey::namespaced(namespace, owner.name.clone())]
        } else {
            Vec::new()
        };
    }
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    sets.state()
        .iter()
        .filter(|rs| rs.metadata().namespace.as_deref() == Some(namespace.as_str()))
        .filter(|rs| {
            selector_of(&rs.as_replica_set()).is_ok_and(|s| !s.is_empty() && s.matches(&labels))
        })
        .map(|rs| ObjectKey::of(rs.as_ref()))
        .collect()
}

fn selector_of(rs: &ReplicaSet) -> Result<Selector, keel_types::selector::SelectorError> {
    Selector::from_label_selector(rs.spec.as_ref().map(|s| &s.selector))
}

fn error_policy<K>(_: &Arc<K>, _: &Error, _: &State<K>) -> Action {
    Action::requeue(Duration::from_secs(1))
}

async fn reconcile<K: Replicated>(rs: Arc<K>, state: Arc<State<K>>) -> Result<Action, Error> {
    state.pods.wait_until_ready().await?;
    let key = ObjectKey::of(rs.as_ref());
    let namespace = key.namespace.clone().unwrap_or_default();
    let view = rs.as_replica_set();
    let uid = view.metadata.uid.clone().unwrap_or_default();
    let deleting = view.metadata.deletion_timestamp.is_some();
    let selector = match selector_of(&view) {
        Ok(selector) => selector,
        Err(e) => {
            // The API validates selectors; one that does not parse is reported and left.
            state.ctx.recorder.event(
                K::COMPONENT,
                events::reference(rs.as_ref()),
                WARNING,
                "InvalidSelector",
                format!("invalid selector: {e}"),
            );
            return Ok(Action::await_change());
        }
    };
    // Whether the cache has caught up with this controller's own writes: if not, the counts
    // below may be stale and only the status is refreshed.
    let in_sync = state.expectations.satisfied(&key, Instant::now());
    let active: Vec<Arc<Pod>> = state
        .pods
        .state()
        .into_iter()
        .filter(|p| p.metadata.namespace.as_deref() == Some(namespace.as_str()) && is_active(p))
        .collect();
    let claim = claim::claim(&uid, &selector, deleting, &active);
    // As Kubernetes: a failed adoption or release fails the sync (retried with backoff), so
    // an orphan that changed meanwhile is never replaced by a new pod before it is adopted.
    adopt(&state, &rs, &claim.adopt).await?;
    release(&state, &uid, &claim.release).await?;
    let owned = claim.owned;

    let failure = if in_sync && !deleting {
        manage_replicas(&state, rs.as_ref(), &view, &key, &owned).await
    } else {
        None
    };

    let (status, next_available) = status::compute(&view, &owned, failure, Utc::now());
    if status::differs(view.status.as_ref(), &status) {
        let mut body = serde_json::to_value(&status)?;
        if status.conditions.is_none() {
            body["conditions"] = Value::Null;
        }
        state
            .ctx
            .api::<K>(&namespace)
            .patch_status(&key.name, &Patch::Merge(json!({ "status": body })))
            .await?;
    }
    let mut after = next_available.map_or(RESYNC, |d| d + Duration::from_millis(100));
    if !in_sync {
        // Events will bring it back sooner; this bounds the wait if one was lost.
        after = after.min(Duration::from_secs(5));
    }
    Ok(Action::requeue(after))
}

/// Creates or deletes pods towards `spec.replicas`. Returns the failure to report, if any.
async fn manage_replicas<K: Replicated>(
    state: &State<K>,
    rs: &K,
    view: &ReplicaSet,
    key: &ObjectKey,
    owned: &[Arc<Pod>],
) -> Option<status::Failure> {
    let namespace = key.namespace.clone().unwrap_or_default();
    let desired = view
        .spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1)
        .max(0) as usize;
    let diff = scale::diff(owned.len(), desired);
    if diff > 0 {
        create_pods(state, rs, view, key, &namespace, diff as usize).await
    } else if diff < 0 {
        let related = family_pods(state, view, &namespace);
        let victims = scale::pods_to_delete(owned, &related, (-diff) as usize);
        delete_pods(state, rs, key, &namespace, &victims).await
    } else {
        None
    }
}

async fn create_pods<K: Replicated>(
    state: &State<K>,
    rs: &K,
    view: &ReplicaSet,
    key: &ObjectKey,
    namespace: &str,
    count: usize,
) -> Option<status::Failure> {
    // Validation requires a template; without one there is nothing to create.
    let template = view.spec.as_ref().and_then(|s| s.template.as_ref())?;
    let prefix = format!("{}-", key.name);
    let names: Vec<String> = (0..count).map(|_| generate_name(&prefix)).collect();
    let children = |names: &[String]| -> Vec<ObjectKey> {
        names
            .iter()
            .map(|n| ObjectKey::namespaced(namespace, n.clone()))
            .collect()
    };
    state
        .expectations
        .expect_creations(key, children(&names), Instant::now());
    let api = state.ctx.api::<Pod>(namespace);
    let owner = controller_reference(rs);
    let mut remaining: &[String] = &names;
    for batch in scale::slow_start_batches(count) {
        let (now, later) = remaining.split_at(batch.min(remaining.len()));
        remaining = later;
        let results = join_all(now.iter().map(|name| {
            let pod = pod_from_template(template, namespace, name.clone(), owner.clone());
            let api = api.clone();
            async move { (name, api.create(&pod).await) }
        }))
        .await;
        let mut failed = None;
        for (name, result) in results {
            match result {
                Ok(_) => state.ctx.recorder.event(
                    K::COMPONENT,
                    events::reference(rs),
                    NORMAL,
                    "SuccessfulCreate",
                    format!("Created pod: {name}"),
                ),
                Err(error) => {
                    state
                        .expectations
                        .write_failed(key, &ObjectKey::namespaced(namespace, name.clone()));
                    let message = format!("Error creating: {}", error_message(&error));
                    state.ctx.recorder.event(
                        K::COMPONENT,
                        events::reference(rs),
                        WARNING,
                        "FailedCreate",
                        message.clone(),
                    );
                    failed = Some(("FailedCreate", message));
                }
            }
        }
        if failed.is_some() {
            // The rest would most likely fail the same way: do not try them now.
            for name in remaining {
                state
                    .expectations
                    .write_failed(key, &ObjectKey::namespaced(namespace, name.clone()));
            }
            return failed;
        }
    }
    None
}

async fn delete_pods<K: Replicated>(
    state: &State<K>,
    rs: &K,
    key: &ObjectKey,
    namespace: &str,
    victims: &[Arc<Pod>],
) -> Option<status::Failure> {
    state.expectations.expect_deletions(
        key,
        victims.iter().map(|p| ObjectKey::of(p.as_ref())),
        Instant::now(),
    );
    let api = state.ctx.api::<Pod>(namespace);
    let results = join_all(victims.iter().map(|pod| {
        let api = api.clone();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let params = DeleteParams {
            preconditions: Some(keel_client::api::Preconditions {
                uid: pod.metadata.uid.clone(),
                resource_version: None,
            }),
            ..Default::default()
        };
        async move {
            let result = api.delete(&name, &params).await;
            (name, result)
        }
    }))
    .await;
    let mut failure = None;
    for (name, result) in results {
        match result {
            Ok(_) => state.ctx.recorder.event(
                K::COMPONENT,
                events::reference(rs),
                NORMAL,
                "SuccessfulDelete",
                format!("Deleted pod: {name}"),
            ),
            Err(error) => {
                state
                    .expectations
                    .write_failed(key, &ObjectKey::namespaced(namespace, name.clone()));
                if error.is_not_found() {
                    continue;
                }
                let message = format!("Error deleting: {}", error_message(&error));
                state.ctx.recorder.event(
                    K::COMPONENT,
                    events::reference(rs),
                    WARNING,
                    "FailedDelete",
                    message.clone(),
                );
                failure = Some(("FailedDelete", message));
            }
        }
    }
    failure
}

/// The active pods of `rs` and of its siblings (the ReplicaSets sharing its controller, i.e.
/// one Deployment's), for spreading deletions over crowded nodes.
fn family_pods<K: Replicated>(state: &State<K>, rs: &ReplicaSet, namespace: &str) -> Vec<Arc<Pod>> {
    let mut family: Vec<String> = vec![rs.metadata.uid.clone().unwrap_or_default()];
    if let Some(parent) = controller_of(&rs.metadata) {
        family.extend(
            state
                .sets
                .state()
                .iter()
                .filter(|s| s.metadata().namespace.as_deref() == Some(namespace))
                .filter(|s| controller_of(s.metadata()).is_some_and(|c| c.uid == parent.uid))
                .filter_map(|s| s.metadata().uid.clone()),
        );
    }
    state
        .pods
        .state()
        .into_iter()
        .filter(|p| p.metadata.namespace.as_deref() == Some(namespace) && is_active(p))
        .filter(|p| controller_of(&p.metadata).is_some_and(|c| family.contains(&c.uid)))
        .collect()
}

/// Makes `rs` the controller of each orphan. Fails if any of them changed or went meanwhile
/// (the next sync sees them as they are now).
async fn adopt<K: Replicated>(state: &State<K>, rs: &K, orphans: &[Arc<Pod>]) -> Result<(), Error> {
    let owner = controller_reference(rs);
    let results = join_all(orphans.iter().map(|pod| {
        let mut references = pod.metadata.owner_references.clone().unwrap_or_default();
        references.push(owner.clone());
        set_owner_references(state, pod, references)
    }))
    .await;
    results.into_iter().collect()
}

/// Drops `rs` as controller of pods that no longer match its selector. A pod gone meanwhile
/// needs no release.
async fn release<K>(state: &State<K>, uid: &str, pods: &[Arc<Pod>]) -> Result<(), Error> {
    let results = join_all(pods.iter().map(|pod| {
        let references: Vec<_> = pod
            .metadata
            .owner_references
            .iter()
            .flatten()
            .filter(|r| r.uid != uid)
            .cloned()
            .collect();
        set_owner_references(state, pod, references)
    }))
    .await;
    results
        .into_iter()
        .filter(|r| !matches!(r, Err(e) if e.is_not_found()))
        .collect()
}

/// Replaces a pod's ownerReferences, only if it is still the same pod at the same version
/// (a JSON patch whose tests fail changes nothing).
async fn set_owner_references<K>(
    state: &State<K>,
    pod: &Pod,
    references: Vec<keel_client::k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference>,
) -> Result<(), Error> {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let patch = json!([
        {"op": "test", "path": "/metadata/uid", "value": pod.metadata.uid},
        {"op": "test", "path": "/metadata/resourceVersion", "value": pod.metadata.resource_version},
        {"op": "add", "path": "/metadata/ownerReferences", "value": references},
    ]);
    let result = state
        .ctx
        .api::<Pod>(&namespace)
        .patch(&name, &Patch::Json(patch))
        .await;
    if let Err(error) = &result {
        tracing::debug!(pod = %name, %error, "changing a pod's owner");
    }
    result.map(|_| ())
}
