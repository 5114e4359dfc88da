//! The StatefulSet controller: pods with stable names, hostnames and claims, created and
//! removed in ordinal order (or all at once under `Parallel`), rolled from the highest ordinal
//! down to the partition, with ControllerRevisions and the status `kubectl rollout status`
//! reads.
//!
//! Decisions are pure ([`identity`], [`plan`]); this module reads the shared caches, writes
//! (fenced) and keeps expectations, as the other workload controllers do.

pub mod identity;
pub mod plan;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::StreamExt;
use keel_client::k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet};
use keel_client::k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, PodTemplateSpec};
use keel_client::k8s_openapi::chrono::Utc;
use keel_client::runtime::{Action, Controller};
use keel_client::store::Store;
use keel_client::{DeleteParams, Error, ObjectKey, Patch};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::context::Context;
use crate::events::{self, error_message, NORMAL, WARNING};
use crate::expectations::Expectations;
use crate::history::{self, owned_revisions, revision_name, template_of};
use crate::pods::{controller_key, is_controlled_by, until_available};
use crate::revision::template_hash;
use plan::{Reason, Step, Which};

/// The component name on this controller's Events.
pub const COMPONENT: &str = "statefulset-controller";
const RESYNC: Duration = Duration::from_secs(300);

struct State {
    ctx: Arc<Context>,
    pods: Store<Pod>,
    revisions: Store<ControllerRevision>,
    expectations: Arc<Expectations>,
}

/// Runs the controller until `stop`.
pub fn start(ctx: Arc<Context>, stop: CancellationToken) -> BoxFuture<'static, ()> {
    Box::pin(async move {
        let pod_informer = ctx.informers.of::<Pod>();
        let controller = Controller::for_events(ctx.informers.of::<StatefulSet>().subscribe());
        let expectations = Arc::new(Expectations::new());
        let observed = expectations.clone();
        let pod_events = pod_informer.subscribe().inspect(move |event| {
            if let Ok(event) = event {
                observed.observe(event);
            }
        });
        let state = Arc::new(State {
            pods: pod_informer.store(),
            revisions: ctx.informers.of::<ControllerRevision>().store(),
            ctx,
            expectations,
        });
        controller
            .watches_events(pod_events, |pod: &Pod| {
                controller_key::<StatefulSet>(&pod.metadata)
            })
            .with_depth_gauge(crate::metrics::of("statefulset").depth.clone())
            .run(
                crate::metrics::timed(crate::metrics::of("statefulset"), reconcile),
                error_policy,
                state,
                stop,
            )
            .for_each(|outcome| async move {
                if let Err(error) = outcome {
                    tracing::debug!(%error, "statefulset sync failed");
                }
            })
            .await;
    })
}

fn error_policy(_: &Arc<StatefulSet>, _: &Error, _: &State) -> Action {
    Action::requeue(Duration::from_secs(1))
}

async fn reconcile(set: Arc<StatefulSet>, state: Arc<State>) -> Result<Action, Error> {
    state.pods.wait_until_ready().await?;
    state.revisions.wait_until_ready().await?;
    if set.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let Some(spec) = set.spec.as_ref() else {
        return Ok(Action::await_change());
    };
    let key = ObjectKey::of(set.as_ref());
    let namespace = key.namespace.clone().unwrap_or_default();
    let uid = set.metadata.uid.clone().unwrap_or_default();
    let collision_count = set.status.as_ref().and_then(|s| s.collision_count);
    let update_revision = template_hash(&spec.template, collision_count);
    history::ensure_revision(
        &state.ctx,
        &state.revisions,
        set.as_ref(),
        &spec.template,
        &update_revision,
    )
    .await?;
    // The current revision is the one the status names, while it is still recorded.
    let revisions = owned_revisions(&state.revisions, set.as_ref());
    let recorded = |hash: &str| {
        let name = revision_name(set.as_ref(), hash);
        revisions
            .iter()
            .find(|r| r.metadata.name.as_deref() == Some(name.as_str()))
            .cloned()
    };
    let (current_revision, current_template) = set
        .status
        .as_ref()
        .and_then(|s| s.current_revision.clone())
        .and_then(|hash| {
            recorded(&hash)
                .and_then(|r| template_of(&r))
                .map(|t| (hash, t))
        })
        .unwrap_or_else(|| (update_revision.clone(), spec.template.clone()));

    let live: Vec<Arc<Pod>> = state
        .pods
        .state()
        .into_iter()
        .filter(|p| {
            p.metadata.namespace.as_deref() == Some(namespace.as_str())
                && is_controlled_by(&p.metadata, &uid)
        })
        .collect();
    let pods = plan::by_ordinal(&set, &live);
    let now = Utc::now();
    let in_sync = state.expectations.satisfied(&key, Instant::now());
    if in_sync {
        let steps = plan::plan(&set, &pods, &update_revision, now);
        let templates = Templates {
            current: (&current_revision, &current_template),
            update: (&update_revision, &spec.template),
        };
        execute(&state, &set, &key, steps, templates).await;
    }
    let status = plan::status(&set, &pods, &current_revision, &update_revision, now);
    if set.status.as_ref() != Some(&status) {
        state
            .ctx
            .api::<StatefulSet>(&namespace)
            .patch_status(&key.name, &Patch::Merge(json!({ "status": status })))
            .await?;
    }
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let next = pods
        .values()
        .filter_map(|p| until_available(p, min_ready, now))
        .min();
    let mut after = next.map_or(RESYNC, |d| d + Duration::from_millis(100));
    if !in_sync {
        after = after.min(Duration::from_secs(5));
    }
    Ok(Action::requeue(after))
}

/// The two templates a sync may create pods from, with their revision hashes.
struct Templates<'a> {
    current: (&'a str, &'a PodTemplateSpec),
    update: (&'a str, &'a PodTemplateSpec),
}

async fn execute(
    state: &State,
    set: &StatefulSet,
    key: &ObjectKey,
    steps: Vec<Step>,
    templates: Templates<'_>,
) {
    let namespace = key.namespace.clone().unwrap_or_default();
    let pods = state.ctx.api::<Pod>(&namespace);
    let set_name = key.name.clone();
    // Steps are independent only under Parallel; under OrderedReady there is at most one.
    let writes = steps.into_iter().map(|step| {
        let pods = pods.clone();
        let namespace = namespace.clone();
        let set_name = set_name.clone();
        let templates = &templates;
        async move {
            match step {
                Step::Create { ordinal, from } => {
                    let (revision, template) = match from {
                        Which::Current => templates.current,
                        Which::Update => templates.update,
                    };
                    let pod = identity::pod(set, template, ordinal, revision);
                    let name = pod.metadata.name.clone().unwrap_or_default();
                    if let Err(error) = create_claims(state, set, ordinal, &name).await {
                        state.ctx.recorder.event(
                            COMPONENT,
                            events::reference(set),
                            WARNING,
                            "FailedCreate",
                            format!(
                                "create Claim for Pod {name} in StatefulSet {set_name} failed error: {}",
                                error_message(&error)
                            ),
                        );
                        return;
                    }
                    let child = ObjectKey::namespaced(namespace.clone(), name.clone());
                    state
                        .expectations
                        .expect_creations(key, [child.clone()], Instant::now());
                    match pods.create(&pod).await {
                        Ok(_) => state.ctx.recorder.event(
                            COMPONENT,
                            events::reference(set),
                            NORMAL,
                            "SuccessfulCreate",
                            format!("create Pod {name} in StatefulSet {set_name} successful"),
                        ),
                        Err(error) => {
                            state.expectations.write_failed(key, &child);
                            state.ctx.recorder.event(
                                COMPONENT,
                                events::reference(set),
                                WARNING,
                                "FailedCreate",
                                format!(
                                    "create Pod {name} in StatefulSet {set_name} failed error: {}",
                                    error_message(&error)
                                ),
                            );
                        }
                    }
                }
                Step::Delete { pod, reason } => {
                    let name = pod.metadata.name.clone().unwrap_or_default();
                    let child = ObjectKey::of(pod.as_ref());
                    state
                        .expectations
                        .expect_deletions(key, [child.clone()], Instant::now());
                    let params = DeleteParams {
                        preconditions: Some(keel_client::api::Preconditions {
                            uid: pod.metadata.uid.clone(),
                            resource_version: None,
                        }),
                        ..Default::default()
                    };
                    match pods.delete(&name, &params).await {
                        Ok(_) => {
                            let why = match reason {
                                Reason::Finished => "finished ",
                                Reason::ScaledDown | Reason::Rolling => "",
                            };
                            state.ctx.recorder.event(
                                COMPONENT,
                                events::reference(set),
                                NORMAL,
                                "SuccessfulDelete",
                                format!("delete {why}Pod {name} in StatefulSet {set_name} successful"),
                            );
                        }
                        Err(error) => {
                            state.expectations.write_failed(key, &child);
                            if !error.is_not_found() {
                                state.ctx.recorder.event(
                                    COMPONENT,
                                    events::reference(set),
                                    WARNING,
                                    "FailedDelete",
                                    format!(
                                        "delete Pod {name} in StatefulSet {set_name} failed error: {}",
                                        error_message(&error)
                                    ),
                                );
                            }
                        }
                    }
                }
            }
        }
    });
    futures::future::join_all(writes).await;
}

/// Creates the claims the pod `pod_name` needs that do not exist yet.
async fn create_claims(
    state: &State,
    set: &StatefulSet,
    ordinal: i32,
    pod_name: &str,
) -> Result<(), Error> {
    let namespace = set.metadata.namespace.clone().unwrap_or_default();
    let api = state.ctx.api::<PersistentVolumeClaim>(&namespace);
    let set_name = set.metadata.name.clone().unwrap_or_default();
    for claim in identity::claims(set, ordinal) {
        let name = claim.metadata.name.clone().unwrap_or_default();
        match api.create(&claim).await {
            Ok(_) => state.ctx.recorder.event(
                COMPONENT,
                events::reference(set),
                NORMAL,
                "SuccessfulCreate",
                format!("create Claim {name} Pod {pod_name} in StatefulSet {set_name} success"),
            ),
            // Claims outlive their pods: one made for an earlier pod of this ordinal is reused.
            Err(e) if e.is_conflict() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
