//! The DaemonSet controller: one pod of each DaemonSet on every node that should run it (its
//! nodeSelector, affinity and tolerations, with the tolerations every daemon pod gets), none
//! where it may not stay, new nodes served as they join, rolling updates by `maxUnavailable`
//! or `maxSurge`, ControllerRevisions for `kubectl rollout history`, and the status
//! `kubectl rollout status` reads.
//!
//! Decisions are pure ([`placement`], [`plan`]); this module reads the shared caches, writes
//! (fenced) and keeps expectations, as the ReplicaSet controller does.

pub mod placement;
pub mod plan;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::{join_all, BoxFuture};
use futures::StreamExt;
use keel_client::k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use keel_client::k8s_openapi::api::core::v1::{Node, Pod};
use keel_client::k8s_openapi::chrono::Utc;
use keel_client::runtime::{Action, Controller};
use keel_client::store::Store;
use keel_client::{DeleteParams, Error, ObjectKey, Patch};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::context::Context;
use crate::events::{self, error_message, NORMAL, WARNING};
use crate::expectations::Expectations;
use crate::history;
use crate::pods::{controller_key, generate_name, is_controlled_by, until_available};
use crate::revision::template_hash;

/// The component name on this controller's Events.
pub const COMPONENT: &str = "daemonset-controller";
const RESYNC: Duration = Duration::from_secs(300);

struct State {
    ctx: Arc<Context>,
    pods: Store<Pod>,
    nodes: Store<Node>,
    revisions: Store<ControllerRevision>,
    expectations: Arc<Expectations>,
}

/// Runs the controller until `stop`.
pub fn start(ctx: Arc<Context>, stop: CancellationToken) -> BoxFuture<'static, ()> {
    Box::pin(async move {
        let pod_informer = ctx.informers.of::<Pod>();
        let node_informer = ctx.informers.of::<Node>();
        let controller = Controller::for_events(ctx.informers.of::<DaemonSet>().subscribe());
        let sets = controller.store();
        let expectations = Arc::new(Expectations::new());
        let observed = expectations.clone();
        let pod_events = pod_informer.subscribe().inspect(move |event| {
            if let Ok(event) = event {
                observed.observe(event);
            }
        });
        let state = Arc::new(State {
            pods: pod_informer.store(),
            nodes: node_informer.store(),
            revisions: ctx.informers.of::<ControllerRevision>().store(),
            ctx,
            expectations,
        });
        // Any node change may change where every DaemonSet belongs.
        let all = sets.clone();
        controller
            .watches_events(pod_events, |pod: &Pod| {
                controller_key::<DaemonSet>(&pod.metadata)
            })
            .watches_events(node_informer.subscribe(), move |_: &Node| {
                all.state()
                    .iter()
                    .map(|ds| ObjectKey::of(ds.as_ref()))
                    .collect::<Vec<_>>()
            })
            .with_depth_gauge(crate::metrics::of("daemonset").depth.clone())
            .run(
                crate::metrics::timed(crate::metrics::of("daemonset"), reconcile),
                error_policy,
                state,
                stop,
            )
            .for_each(|outcome| async move {
                if let Err(error) = outcome {
                    tracing::debug!(%error, "daemonset sync failed");
                }
            })
            .await;
    })
}

fn error_policy(_: &Arc<DaemonSet>, _: &Error, _: &State) -> Action {
    Action::requeue(Duration::from_secs(1))
}

async fn reconcile(ds: Arc<DaemonSet>, state: Arc<State>) -> Result<Action, Error> {
    state.pods.wait_until_ready().await?;
    state.nodes.wait_until_ready().await?;
    state.revisions.wait_until_ready().await?;
    if ds.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let key = ObjectKey::of(ds.as_ref());
    let namespace = key.namespace.clone().unwrap_or_default();
    let uid = ds.metadata.uid.clone().unwrap_or_default();
    let Some(spec) = ds.spec.as_ref() else {
        return Ok(Action::await_change());
    };
    let collision_count = ds.status.as_ref().and_then(|s| s.collision_count);
    let revision = template_hash(&spec.template, collision_count);
    history::ensure_revision(
        &state.ctx,
        &state.revisions,
        ds.as_ref(),
        &spec.template,
        &revision,
    )
    .await?;

    let Some(template_pod) = placement::template_pod(&ds, String::new(), &revision) else {
        return Ok(Action::await_change());
    };
    let nodes = state.nodes.state();
    let fits: HashMap<String, placement::Fit> = nodes
        .iter()
        .map(|n| {
            (
                n.metadata.name.clone().unwrap_or_default(),
                placement::fit(&template_pod, n),
            )
        })
        .collect();
    let mut by_node: BTreeMap<String, Vec<Arc<Pod>>> = BTreeMap::new();
    for pod in state.pods.state() {
        if pod.metadata.namespace.as_deref() != Some(namespace.as_str())
            || pod.metadata.deletion_timestamp.is_some()
            || !is_controlled_by(&pod.metadata, &uid)
        {
            continue;
        }
        if let Some(node) = placement::target_node(&pod) {
            by_node.entry(node).or_default().push(pod);
        }
    }
    let now = Utc::now();
    let in_sync = state.expectations.satisfied(&key, Instant::now());
    if in_sync {
        let plan = plan::plan(&ds, &nodes, &fits, &by_node, &revision, now);
        execute(&state, &ds, &key, &template_pod, plan).await;
    }
    let status = plan::status(&ds, &fits, &by_node, &revision, now);
    if ds.status.as_ref() != Some(&status) {
        state
            .ctx
            .api::<DaemonSet>(&namespace)
            .patch_status(&key.name, &Patch::Merge(json!({ "status": status })))
            .await?;
    }
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let next = by_node
        .values()
        .flatten()
        .filter_map(|p| until_available(p, min_ready, now))
        .min();
    let mut after = next.map_or(RESYNC, |d| d + Duration::from_millis(100));
    if !in_sync {
        after = after.min(Duration::from_secs(5));
    }
    Ok(Action::requeue(after))
}

/// Makes the planned creates and deletes, with expectations and Events.
async fn execute(state: &State, ds: &DaemonSet, key: &ObjectKey, template: &Pod, plan: plan::Plan) {
    let namespace = key.namespace.clone().unwrap_or_default();
    let api = state.ctx.api::<Pod>(&namespace);
    let prefix = format!("{}-", key.name);
    let creates: Vec<(String, Pod)> = plan
        .create
        .iter()
        .map(|node| {
            let name = generate_name(&prefix);
            let mut pod = placement::for_node(template.clone(), node);
            pod.metadata.name = Some(name.clone());
            (name, pod)
        })
        .collect();
    let deletes: Vec<(Arc<Pod>, &'static str)> = plan.delete;
    state.expectations.expect_creations(
        key,
        creates
            .iter()
            .map(|(n, _)| ObjectKey::namespaced(namespace.clone(), n.clone())),
        Instant::now(),
    );
    state.expectations.expect_deletions(
        key,
        deletes.iter().map(|(p, _)| ObjectKey::of(p.as_ref())),
        Instant::now(),
    );
    let created = join_all(creates.iter().map(|(name, pod)| {
        let api = api.clone();
        async move { (name, api.create(pod).await) }
    }));
    let deleted = join_all(deletes.iter().map(|(pod, reason)| {
        let api = api.clone();
        let params = DeleteParams {
            preconditions: Some(keel_client::api::Preconditions {
                uid: pod.metadata.uid.clone(),
                resource_version: None,
            }),
            ..Default::default()
        };
        async move {
            let name = pod.metadata.name.clone().unwrap_or_default();
            let result = api.delete(&name, &params).await;
            (pod, *reason, name, result)
        }
    }));
    let (created, deleted) = futures::join!(created, deleted);
    for (name, result) in created {
        match result {
            Ok(_) => state.ctx.recorder.event(
                COMPONENT,
                events::reference(ds),
                NORMAL,
                "SuccessfulCreate",
                format!("Created pod: {name}"),
            ),
            Err(error) => {
                state
                    .expectations
                    .write_failed(key, &ObjectKey::namespaced(namespace.clone(), name.clone()));
                state.ctx.recorder.event(
                    COMPONENT,
                    events::reference(ds),
                    WARNING,
                    "FailedCreate",
                    format!("Error creating: {}", error_message(&error)),
                );
            }
        }
    }
    for (pod, reason, name, result) in deleted {
        match result {
            Ok(_) if reason == "FailedDaemonPod" => state.ctx.recorder.event(
                COMPONENT,
                events::reference(ds),
                WARNING,
                "FailedDaemonPod",
                format!(
                    "Found failed daemon pod {namespace}/{name} on node {}, will try to kill it",
                    placement::target_node(pod).unwrap_or_default()
                ),
            ),
            Ok(_) => state.ctx.recorder.event(
                COMPONENT,
                events::reference(ds),
                NORMAL,
                "SuccessfulDelete",
                format!("Deleted pod: {name}"),
            ),
            Err(error) => {
                state
                    .expectations
                    .write_failed(key, &ObjectKey::of(pod.as_ref()));
                if !error.is_not_found() {
                    state.ctx.recorder.event(
                        COMPONENT,
                        events::reference(ds),
                        WARNING,
                        "FailedDelete",
                        format!("Error deleting: {}", error_message(&error)),
                    );
                }
            }
        }
    }
}
