//! What the scheduler tells the world besides bindings: Events (`Scheduled`,
//! `FailedScheduling`, `Preempted`), the `PodScheduled=False` condition of unschedulable pods,
//! the nominated node of a preemptor, and the graceful deletion of preemption victims. Each
//! write runs in its own task, fenced like binds. Events are best effort, as client-go's
//! broadcaster: when too many are waiting, new ones are dropped rather than slowing scheduling.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use keel_client::k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference, Pod};
use keel_client::k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use keel_client::k8s_openapi::chrono::Utc;
use keel_client::{Api, Client, DeleteParams, Fence, Patch};
use serde_json::{json, Value};
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;

use crate::framework::PodInfo;

/// kube-scheduler's component name on Events.
pub const COMPONENT: &str = "default-scheduler";
/// Events waiting beyond this are dropped.
const MAX_PENDING_EVENTS: usize = 1000;

/// Writes events and statuses in the background.
pub struct Recorder {
    client: Client,
    identity: String,
    tasks: TaskTracker,
    slots: Arc<Semaphore>,
    pending_events: Arc<AtomicUsize>,
}

/// The Event kube-scheduler would write about `pod`.
pub fn event(pod: &PodInfo, kind: &str, reason: &str, message: &str, instance: &str) -> Event {
    let now = Utc::now();
    let nanos = now.timestamp_nanos_opt().unwrap_or_default();
    Event {
        metadata: ObjectMeta {
            name: Some(format!("{}.{nanos:x}", pod.name)),
            namespace: Some(pod.namespace.clone()),
            ..Default::default()
        },
        involved_object: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            name: Some(pod.name.clone()),
            namespace: Some(pod.namespace.clone()),
            uid: Some(pod.uid.clone()),
            resource_version: pod.pod.metadata.resource_version.clone(),
            ..Default::default()
        },
        reason: Some(reason.into()),
        message: Some(message.into()),
        type_: Some(kind.into()),
        source: Some(EventSource {
            component: Some(COMPONENT.into()),
            host: None,
        }),
        reporting_component: Some(COMPONENT.into()),
        reporting_instance: Some(instance.into()),
        first_timestamp: Some(Time(now)),
        last_timestamp: Some(Time(now)),
        count: Some(1),
        action: Some(
            if reason == "Scheduled" {
                "Binding"
            } else {
                "Scheduling"
            }
            .into(),
        ),
        ..Default::default()
    }
}

/// The merge patch giving `pod` the condition PodScheduled=False (reason Unschedulable), or
/// None if it already has exactly that condition. The whole conditions list is written (a
/// merge patch replaces lists), from the pod as the scheduler last saw it.
pub fn unschedulable_patch(pod: &Pod, message: &str) -> Option<Value> {
    let conditions = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let same = conditions.iter().any(|c| {
        c.type_ == "PodScheduled"
            && c.status == "False"
            && c.reason.as_deref() == Some("Unschedulable")
            && c.message.as_deref() == Some(message)
    });
    if same {
        return None;
    }
    let mut list: Vec<Value> = conditions
        .iter()
        .filter(|c| c.type_ != "PodScheduled")
        .filter_map(|c| serde_json::to_value(c).ok())
        .collect();
    list.push(json!({
        "type": "PodScheduled",
        "status": "False",
        "reason": "Unschedulable",
        "message": message,
        "lastProbeTime": null,
        "lastTransitionTime": Utc::now(),
    }));
    Some(json!({"status": {"conditions": list}}))
}

impl Recorder {
    pub fn new(
        client: Client,
        identity: String,
        tasks: TaskTracker,
        concurrency: usize,
    ) -> Recorder {
        Recorder {
            client,
            identity,
            tasks,
            slots: Arc::new(Semaphore::new(concurrency.max(1))),
            pending_events: Arc::new(AtomicUsize::new(0)),
        }
    }

    fn spawn<F>(&self, what: &'static str, write: F)
    where
        F: std::future::Future<Output = Result<(), keel_client::Error>> + Send + 'static,
    {
        let slots = self.slots.clone();
        self.tasks.spawn(async move {
            let Ok(_permit) = slots.acquire_owned().await else {
                return;
            };
            if let Err(e) = write.await {
                tracing::debug!(error = %e, "scheduler: {what} failed");
            }
        });
    }

    /// Records an Event about `pod` (dropped if too many are waiting).
    pub fn event(&self, fence: &Fence, pod: &PodInfo, kind: &str, reason: &str, message: &str) {
        if self.pending_events.fetch_add(1, Ordering::Relaxed) >= MAX_PENDING_EVENTS {
            self.pending_events.fetch_sub(1, Ordering::Relaxed);
            tracing::debug!(pod = %pod.key(), reason, "scheduler: event dropped, too many waiting");
            return;
        }
        let api: Api<Event> =
            Api::namespaced(self.client.clone(), &pod.namespace).with_fence(fence.clone());
        let ev = event(pod, kind, reason, message, &self.identity);
        let pending = self.pending_events.clone();
        self.spawn("recording an event", async move {
            let r = api.create(&ev).await.map(|_| ());
            pending.fetch_sub(1, Ordering::Relaxed);
            r
        });
    }

    /// Marks `pod` unschedulable with `message` (condition and FailedScheduling event).
    pub fn unschedulable(&self, fence: &Fence, pod: &PodInfo, message: &str) {
        if let Some(patch) = unschedulable_patch(&pod.pod, message) {
            let api: Api<Pod> =
                Api::namespaced(self.client.clone(), &pod.namespace).with_fence(fence.clone());
            let name = pod.name.clone();
            self.spawn("setting PodScheduled=False", async move {
                match api.patch_status(&name, &Patch::Merge(patch)).await {
                    Ok(_) => Ok(()),
                    // Gone or bound meanwhile: nothing to say any more.
                    Err(e) if e.is_not_found() => Ok(()),
                    Err(e) => Err(e),
                }
            });
        }
        self.event(fence, pod, "Warning", "FailedScheduling", message);
    }

    /// Nominates `node` for the preemptor and deletes the victims gracefully.
    pub fn preempt(
        &self,
        fence: &Fence,
        preemptor: &PodInfo,
        node: &str,
        victims: &[Arc<PodInfo>],
    ) {
        for victim in victims {
            let api: Api<Pod> =
                Api::namespaced(self.client.clone(), &victim.namespace).with_fence(fence.clone());
            let name = victim.name.clone();
            let uid = victim.uid.clone();
            self.spawn("deleting a preemption victim", async move {
                let params = DeleteParams {
                    preconditions: Some(keel_client::api::Preconditions {
                        uid: Some(uid),
                        resource_version: None,
                    }),
                    ..Default::default()
                };
                match api.delete(&name, &params).await {
                    Ok(_) => Ok(()),
                    Err(e) if e.is_not_found() => Ok(()),
                    Err(e) => Err(e),
                }
            });
            let message = format!("Preempted by pod {} on node {node}", preemptor.uid);
            self.event(fence, victim, "Normal", "Preempted", &message);
        }
        let api: Api<Pod> =
            Api::namespaced(self.client.clone(), &preemptor.namespace).with_fence(fence.clone());
        let name = preemptor.name.clone();
        let patch = json!({"status": {"nominatedNodeName": node}});
        self.spawn("nominating a node", async move {
            api.patch_status(&name, &Patch::Merge(patch))
                .await
                .map(|_| ())
        });
    }
}
