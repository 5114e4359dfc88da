//! The Deployment controller (kube-controller-manager's `deployment`): keeps one ReplicaSet
//! per version of a Deployment's pod template and moves pods from the old versions to the
//! current one as its strategy says — RollingUpdate within maxSurge/maxUnavailable, or
//! Recreate — scaling proportionally when the size changes mid-rollout or while paused,
//! pruning history beyond revisionHistoryLimit, and reporting the status and conditions that
//! `kubectl rollout status` reads.
//!
//! The decisions are pure ([`rolling`], [`recreate`], [`scale`], [`revision`], [`status`],
//! [`hash`], [`surge`]); [`sync`] carries one reconcile's reads and writes; this module wires
//! the controller to the shared informers: Deployments, the ReplicaSets they own or could
//! adopt, and pod deletions (which a Recreate rollout waits for).

pub mod hash;
pub mod recreate;
pub mod revision;
pub mod rolling;
#[cfg(test)]
mod rollout_model;
pub mod scale;
pub mod status;
pub mod surge;
mod sync;
pub mod view;

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::StreamExt;
use keel_client::k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use keel_client::k8s_openapi::api::core::v1::Pod;
use keel_client::runtime::{owner_keys, Action, Controller};
use keel_client::store::Store;
use keel_client::watcher::Event;
use keel_client::ObjectKey;
use keel_types::Selector;
use tokio_util::sync::CancellationToken;

use crate::context::Context;
use crate::expectations::Expectations;
use crate::pods::controller_of;

/// The name events carry as their source, as Kubernetes'.
pub const COMPONENT: &str = "deployment-controller";

/// What every reconcile of this controller shares.
pub struct State {
    pub ctx: Arc<Context>,
    pub replica_sets: Store<ReplicaSet>,
    pub pods: Store<Pod>,
    /// ReplicaSets created and not yet seen in the cache, per Deployment.
    pub expectations: Arc<Expectations>,
}

/// Why a reconcile did not finish; it is retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Api(#[from] keel_client::Error),
    #[error("hash collision with ReplicaSet {0}; collisionCount raised")]
    Collision(String),
}

/// Starts the controller; it runs until `stop`.
pub fn start(ctx: Arc<Context>, stop: CancellationToken) -> BoxFuture<'static, ()> {
    Box::pin(async move {
        let deployments = ctx.informers.of::<Deployment>();
        let replica_sets = ctx.informers.of::<ReplicaSet>();
        let pods = ctx.informers.of::<Pod>();
        let expectations = Arc::new(Expectations::new());
        let controller = Controller::for_events(deployments.subscribe());
        let deployment_store = controller.store();
        let state = Arc::new(State {
            ctx,
            replica_sets: replica_sets.store(),
            pods: pods.store(),
            expectations: expectations.clone(),
        });
        let rs_events = replica_sets.subscribe().inspect(move |event| {
            if let Ok(event) = event {
                expectations.observe(event);
            }
        });
        // Only a pod's disappearance matters here: a Recreate rollout waits for old pods to go.
        let pod_deletions = pods
            .subscribe()
            .filter(|event| futures::future::ready(matches!(event, Ok(Event::Deleted(_)))));
        let rs_store = state.replica_sets.clone();
        controller
            .watches_events(rs_events, move |rs: &ReplicaSet| {
                keys_for_replica_set(&deployment_store, rs)
            })
            .watches_events(pod_deletions, move |pod: &Pod| keys_for_pod(&rs_store, pod))
            .with_depth_gauge(crate::metrics::of("deployment").depth.clone())
            .run(
                crate::metrics::timed(crate::metrics::of("deployment"), reconcile),
                error_policy,
                state,
                stop,
            )
            .for_each(|outcome| async move {
                if let Err(error) = outcome {
                    tracing::debug!(%error, "deployment sync");
                }
            })
            .await;
    })
}

/// The Deployments a ReplicaSet change concerns: its owner, or for an orphan every Deployment
/// of its namespace whose selector matches it (it may be adopted).
fn keys_for_replica_set(deployments: &Store<Deployment>, rs: &ReplicaSet) -> Vec<ObjectKey> {
    if controller_of(&rs.metadata).is_some() {
        return owner_keys::<Deployment, _>(rs);
    }
    let labels = rs.metadata.labels.clone().unwrap_or_default();
    deployments
        .state()
        .iter()
        .filter(|d| d.metadata.namespace == rs.metadata.namespace)
        .filter(|d| {
            let selector = d.spec.as_ref().map(|s| &s.selector);
            Selector::from_label_selector(selector)
                .is_ok_and(|s| !s.is_empty() && s.matches(&labels))
        })
        .map(|d| ObjectKey::of(d.as_ref()))
        .collect()
}

/// The Deployment owning the ReplicaSet that controlled a pod.
fn keys_for_pod(replica_sets: &Store<ReplicaSet>, pod: &Pod) -> Vec<ObjectKey> {
    let Some(owner) = controller_of(&pod.metadata).filter(|o| o.kind == "ReplicaSet") else {
        return Vec::new();
    };
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    replica_sets
        .get(&ObjectKey::namespaced(namespace, owner.name.clone()))
        .map(|rs| owner_keys::<Deployment, _>(rs.as_ref()))
        .unwrap_or_default()
}

async fn reconcile(d: Arc<Deployment>, state: Arc<State>) -> Result<Action, SyncError> {
    state.replica_sets.wait_until_ready().await?;
    state.pods.wait_until_ready().await?;
    let key = ObjectKey::of(d.as_ref());
    if !state
        .expectations
        .satisfied(&key, std::time::Instant::now())
    {
        // The ReplicaSet it created is not in the cache yet; its arrival requeues this.
        return Ok(Action::requeue(Duration::from_secs(5)));
    }
    sync::Sync::new(&state, Deployment::clone(&d)).run().await
}

fn error_policy(d: &Arc<Deployment>, error: &SyncError, _: &State) -> Action {
    tracing::debug!(deployment = ?d.metadata.name, %error, "deployment sync failed; retrying");
    Action::requeue(Duration::from_millis(200))
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_client::k8s_openapi::api::apps::v1::DeploymentSpec;
    use keel_client::k8s_openapi::apimachinery::pkg::apis::meta::v1::{
        LabelSelector, ObjectMeta, OwnerReference,
    };
    use keel_client::store::store;
    use std::collections::BTreeMap;

    fn labels(app: &str) -> Option<BTreeMap<String, String>> {
        Some(BTreeMap::from([("app".to_string(), app.to_string())]))
    }

    fn deployment(name: &str, app: &str) -> Deployment {
        Deployment {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                ..Default::default()
            },
            spec: Some(DeploymentSpec {
                selector: LabelSelector {
                    match_labels: labels(app),
                    ..Default::default()
                },
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn owned_by(kind: &str, name: &str) -> Option<Vec<OwnerReference>> {
        Some(vec![OwnerReference {
            api_version: "apps/v1".into(),
            kind: kind.into(),
            name: name.into(),
            uid: format!("uid-{name}"),
            controller: Some(true),
            ..Default::default()
        }])
    }

    fn replica_set(name: &str, app: &str, owner: Option<&str>) -> ReplicaSet {
        ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                labels: labels(app),
                owner_references: owner.and_then(|o| owned_by("Deployment", o)),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn a_replica_set_concerns_its_owner_or_for_an_orphan_every_deployment_selecting_it() {
        let (deployments, mut writer) = store();
        writer.apply(&Event::Restarted(vec![
            deployment("web", "web"),
            deployment("web-too", "web"),
            deployment("api", "api"),
        ]));
        let owned = replica_set("web-abc", "web", Some("web"));
        assert_eq!(
            keys_for_replica_set(&deployments, &owned),
            [ObjectKey::namespaced("ns", "web")]
        );
        let mut orphan = replica_set("stray", "web", None);
        let mut keys = keys_for_replica_set(&deployments, &orphan);
        keys.sort_by_key(|k| k.name.clone());
        assert_eq!(
            keys,
            [
                ObjectKey::namespaced("ns", "web"),
                ObjectKey::namespaced("ns", "web-too")
            ]
        );
        orphan.metadata.namespace = Some("elsewhere".into());
        assert!(keys_for_replica_set(&deployments, &orphan).is_empty());
    }

    #[test]
    fn a_pod_concerns_the_deployment_of_its_replica_set() {
        let (sets, mut writer) = store();
        writer.apply(&Event::Restarted(vec![replica_set(
            "web-abc",
            "web",
            Some("web"),
        )]));
        let pod = |owner: Option<Vec<OwnerReference>>| Pod {
            metadata: ObjectMeta {
                name: Some("web-abc-x".into()),
                namespace: Some("ns".into()),
                owner_references: owner,
                ..Default::default()
            },
            ..Default::default()
        };
        assert_eq!(
            keys_for_pod(&sets, &pod(owned_by("ReplicaSet", "web-abc"))),
            [ObjectKey::namespaced("ns", "web")]
        );
        assert!(keys_for_pod(&sets, &pod(owned_by("ReplicaSet", "unknown"))).is_empty());
        assert!(keys_for_pod(&sets, &pod(owned_by("StatefulSet", "web-abc"))).is_empty());
        assert!(keys_for_pod(&sets, &pod(None)).is_empty());
    }
}
