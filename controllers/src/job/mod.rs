//! The `job` controller: runs a Job's pods to completion as kube-controller-manager's does
//! (completions and parallelism, NonIndexed and Indexed, backoffLimit with exponential
//! backoff, activeDeadlineSeconds, podFailurePolicy, suspend), tracking finished pods with the
//! `batch.kubernetes.io/job-tracking` finalizer so none is counted twice or lost.
//!
//! [`sync`] decides; this shell reads the caches, guards against acting on a stale view
//! (creation/deletion expectations for pods, and its own last status write for the job), and
//! writes: status first, then finalizer removals, then pod deletions and creations.

pub mod backoff;
pub mod failure_policy;
pub mod indexes;
pub mod sync;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::StreamExt;
use keel_client::k8s_openapi::api::batch::v1::Job;
use keel_client::k8s_openapi::api::core::v1::{
    Container, EnvVar, EnvVarSource, ObjectFieldSelector, Pod,
};
use keel_client::k8s_openapi::chrono::Utc;
use keel_client::runtime::{owner_keys, Action, Controller};
use keel_client::watcher::Event;
use keel_client::{DeleteParams, ObjectKey, Patch};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::context::Context;
use crate::events;
use crate::expectations::Expectations;
use crate::pods::{controller_reference, generate_name, is_controlled_by, pod_from_template};

/// The component name on this controller's Events.
pub const COMPONENT: &str = "job-controller";

/// What one term of the controller remembers between reconciles.
struct State {
    ctx: Arc<Context>,
    expectations: Expectations,
    backoff: Mutex<HashMap<ObjectKey, backoff::Record>>,
    /// The resourceVersion of each job's last status this controller wrote: a cached job
    /// older than that is a stale view to wait out, not a state to act on.
    written: Mutex<HashMap<ObjectKey, u64>>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Api(#[from] keel_client::Error),
}

pub fn start(ctx: Arc<Context>, stop: CancellationToken) -> BoxFuture<'static, ()> {
    Box::pin(async move {
        let state = Arc::new(State {
            ctx: ctx.clone(),
            expectations: Expectations::new(),
            backoff: Mutex::new(HashMap::new()),
            written: Mutex::new(HashMap::new()),
        });
        let jobs = ctx.informers.of::<Job>();
        let pods = ctx.informers.of::<Pod>();
        let forget = state.clone();
        let job_events = jobs.subscribe().inspect(move |event| {
            if let Ok(Event::Deleted(job)) = event {
                forget.forget(&ObjectKey::of(job));
            }
        });
        let observe = state.clone();
        let pod_events = pods.subscribe().inspect(move |event| {
            if let Ok(event) = event {
                observe.expectations.observe(event);
            }
        });
        Controller::for_events(job_events)
            .watches_events(pod_events, owner_keys::<Job, Pod>)
            .run(reconcile, error_policy, state, stop)
            .for_each(|outcome| async move {
                if let Err(error) = outcome {
                    tracing::debug!(%error, "job");
                }
            })
            .await;
    })
}

impl State {
    fn forget(&self, key: &ObjectKey) {
        self.expectations.forget(key);
        self.backoff
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key);
        self.written
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key);
    }
}

fn error_policy(_: &Arc<Job>, _: &Error, _: &State) -> Action {
    Action::requeue(Duration::from_secs(1))
}

fn resource_version(job: &Job) -> Option<u64> {
    job.metadata.resource_version.as_deref()?.parse().ok()
}

async fn reconcile(job: Arc<Job>, state: Arc<State>) -> Result<Action, Error> {
    let ctx = &state.ctx;
    let pod_store = ctx.informers.of::<Pod>().store();
    pod_store.wait_until_ready().await?;
    let key = ObjectKey::of(job.as_ref());
    let namespace = job.metadata.namespace.clone().unwrap_or_default();
    let uid = job.metadata.uid.clone().unwrap_or_default();

    let last_written = state
        .written
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&key)
        .copied();
    if let (Some(seen), Some(written)) = (resource_version(&job), last_written) {
        if seen < written {
            // The cache has not caught up with our own write; its event will bring us back.
            return Ok(Action::requeue(Duration::from_secs(5)));
        }
    }

    let owned: Vec<Arc<Pod>> = pod_store
        .state()
        .into_iter()
        .filter(|p| p.metadata.namespace.as_deref() == Some(namespace.as_str()))
        .filter(|p| is_controlled_by(&p.metadata, &uid))
        .collect();
    let pods: Vec<&Pod> = owned.iter().map(|p| p.as_ref()).collect();
    let pod_api = ctx.api::<Pod>(&namespace);

    if job.metadata.deletion_timestamp.is_some() {
        // A job on its way out counts nothing more; its pods must not be held.
        for pod in &pods {
            release(&pod_api, pod).await?;
        }
        return Ok(Action::await_change());
    }

    let now = Instant::now();
    if !state.expectations.satisfied(&key, now) {
        return Ok(Action::requeue(Duration::from_secs(30)));
    }

    let record = state
        .backoff
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&key)
        .copied()
        .unwrap_or_default();
    let plan = sync::plan(&job, &pods, Utc::now(), record);
    state
        .backoff
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(key.clone(), plan.backoff);

    let job_api = ctx.api::<Job>(&namespace);
    let name = job.metadata.name.clone().unwrap_or_default();
    if job.status.as_ref() != Some(&plan.status) {
        let mut updated = (*job).clone();
        updated.status = Some(plan.status.clone());
        let written = job_api.replace_status(&name, &updated).await?;
        if let Some(rv) = resource_version(&written) {
            state
                .written
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(key.clone(), rv);
        }
    }
    for (type_, reason, message) in &plan.events {
        ctx.recorder.event(
            COMPONENT,
            events::reference(job.as_ref()),
            type_,
            reason,
            message.clone(),
        );
    }

    // Only now that the status holds their accounting may the pods go.
    for pod in pods.iter().filter(|p| {
        plan.release
            .contains(&p.metadata.name.clone().unwrap_or_default())
    }) {
        release(&pod_api, pod).await?;
    }

    let mut failure: Option<keel_client::Error> = None;
    if !plan.delete.is_empty() {
        let children: Vec<ObjectKey> = plan
            .delete
            .iter()
            .map(|n| ObjectKey::namespaced(&namespace, n))
            .collect();
        state.expectations.expect_deletions(&key, children, now);
        for pod_name in &plan.delete {
            match pod_api.delete(pod_name, &DeleteParams::default()).await {
                Ok(_) => ctx.recorder.event(
                    COMPONENT,
                    events::reference(job.as_ref()),
                    events::NORMAL,
                    "SuccessfulDelete",
                    format!("Deleted pod: {pod_name}"),
                ),
                Err(e) if e.is_not_found() => {}
                Err(e) => {
                    state
                        .expectations
                        .write_failed(&key, &ObjectKey::namespaced(&namespace, pod_name));
                    ctx.recorder.event(
                        COMPONENT,
                        events::reference(job.as_ref()),
                        events::WARNING,
                        "FailedDelete",
                        format!("Error deleting: {e}"),
                    );
                    failure.get_or_insert(e);
                }
            }
        }
    }

    if !plan.create.is_empty() {
        let new_pods: Vec<Pod> = plan.create.iter().map(|ix| new_pod(&job, *ix)).collect();
        let children: Vec<ObjectKey> = new_pods.iter().map(ObjectKey::of).collect();
        state.expectations.expect_creations(&key, children, now);
        for pod in &new_pods {
            let pod_name = pod.metadata.name.clone().unwrap_or_default();
            match pod_api.create(pod).await {
                Ok(_) => ctx.recorder.event(
                    COMPONENT,
                    events::reference(job.as_ref()),
                    events::NORMAL,
                    "SuccessfulCreate",
                    format!("Created pod: {pod_name}"),
                ),
                Err(e) => {
                    state.expectations.write_failed(&key, &ObjectKey::of(pod));
                    ctx.recorder.event(
                        COMPONENT,
                        events::reference(job.as_ref()),
                        events::WARNING,
                        "FailedCreate",
                        format!("Error creating: {e}"),
                    );
                    failure.get_or_insert(e);
                    // Kubernetes stops a batch at its first failure.
                    break;
                }
            }
        }
    }
    if let Some(e) = failure {
        return Err(e.into());
    }
    Ok(plan
        .requeue_after
        .map_or_else(Action::await_change, |after| {
            Action::requeue(after.max(Duration::from_millis(100)))
        }))
}

/// Removes the tracking finalizer from `pod`, keeping any others; the resourceVersion makes
/// a concurrent change to the list a conflict rather than a lost update.
async fn release(api: &keel_client::Api<Pod>, pod: &Pod) -> Result<(), Error> {
    let finalizers = pod.metadata.finalizers.clone().unwrap_or_default();
    if !finalizers.iter().any(|f| f == sync::TRACKING_FINALIZER) {
        return Ok(());
    }
    let rest: Vec<String> = finalizers
        .into_iter()
        .filter(|f| f != sync::TRACKING_FINALIZER)
        .collect();
    let patch = json!({"metadata": {
        "finalizers": rest,
        "resourceVersion": pod.metadata.resource_version,
    }});
    let name = pod.metadata.name.clone().unwrap_or_default();
    match api.patch(&name, &Patch::Merge(patch)).await {
        Ok(_) => Ok(()),
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// A new pod for `job`: its template, the tracking finalizer, and for an Indexed job the
/// completion index (annotation, label, hostname and `JOB_COMPLETION_INDEX`).
fn new_pod(job: &Job, index: Option<i32>) -> Pod {
    let job_name = job.metadata.name.clone().unwrap_or_default();
    let namespace = job.metadata.namespace.clone().unwrap_or_default();
    let template = job
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let prefix = match index {
        Some(ix) => format!("{job_name}-{ix}-"),
        None => format!("{job_name}-"),
    };
    let mut pod = pod_from_template(
        &template,
        &namespace,
        generate_name(&prefix),
        controller_reference(job),
    );
    pod.metadata
        .finalizers
        .get_or_insert_with(Vec::new)
        .push(sync::TRACKING_FINALIZER.into());
    let manual = job.spec.as_ref().and_then(|s| s.manual_selector) == Some(true);
    if !manual {
        // The API server puts these on the template at creation; a job stored without them
        // (written before that, or restored) still labels its pods as Kubernetes' do.
        let uid = job.metadata.uid.clone().unwrap_or_default();
        let labels = pod.metadata.labels.get_or_insert_with(Default::default);
        for (key, value) in [
            ("batch.kubernetes.io/controller-uid", &uid),
            ("batch.kubernetes.io/job-name", &job_name),
            ("controller-uid", &uid),
            ("job-name", &job_name),
        ] {
            labels
                .entry(key.to_string())
                .or_insert_with(|| value.clone());
        }
    }
    if let Some(ix) = index {
        pod.metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(indexes::COMPLETION_INDEX.into(), ix.to_string());
        pod.metadata
            .labels
            .get_or_insert_with(Default::default)
            .insert(indexes::COMPLETION_INDEX.into(), ix.to_string());
        if let Some(spec) = pod.spec.as_mut() {
            if spec.hostname.as_deref().unwrap_or("").is_empty() {
                spec.hostname = Some(format!("{job_name}-{ix}"));
            }
            for container in spec
                .containers
                .iter_mut()
                .chain(spec.init_containers.iter_mut().flatten())
            {
                add_index_env(container);
            }
        }
    }
    pod
}

fn add_index_env(container: &mut Container) {
    let env = container.env.get_or_insert_with(Vec::new);
    if env.iter().any(|e| e.name == "JOB_COMPLETION_INDEX") {
        return;
    }
    env.push(EnvVar {
        name: "JOB_COMPLETION_INDEX".into(),
        value: None,
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                api_version: None,
                field_path: format!("metadata.annotations['{}']", indexes::COMPLETION_INDEX),
            }),
            ..Default::default()
        }),
    });
}
