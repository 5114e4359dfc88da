//! Events as Kubernetes' components write them (a controller's `SuccessfulCreate`, a node
//! agent's `Pulled` …), so `kubectl describe` and `kubectl get events` read as on
//! Kubernetes. Before it is written, each goes through client-go's correlation
//! ([`correlator`]): repeats bump the count of the Event written first, many similar ones are
//! combined, and a source's Events about one object are rate-limited.
//!
//! Best effort, in the background: a controller never waits for its events, and when too many
//! are in flight new ones are dropped rather than slowing reconciles. A recorder of an elected
//! component fences its writes like every other write of the term.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use crate::k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use crate::k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use crate::k8s_openapi::chrono::Utc;
use crate::k8s_openapi::{Metadata, Resource};
use crate::{Api, Client, Fence, Patch};
use serde_json::json;
use tokio::sync::oneshot;
use tokio_util::task::TaskTracker;

use correlator::{Correlator, Draft, Source};

pub mod correlator;

/// Events in flight beyond this are dropped.
const MAX_IN_FLIGHT: usize = 1000;
/// Names of Events written, for the repeats that bump their count; cleared when full.
const MAX_NAMED: usize = 4096;

pub const NORMAL: &str = "Normal";
pub const WARNING: &str = "Warning";

/// The reference an Event makes to the object it is about.
pub fn reference<K: Resource + Metadata<Ty = ObjectMeta>>(object: &K) -> ObjectReference {
    let meta = object.metadata();
    ObjectReference {
        api_version: Some(K::API_VERSION.into()),
        kind: Some(K::KIND.into()),
        name: meta.name.clone(),
        namespace: meta.namespace.clone(),
        uid: meta.uid.clone(),
        resource_version: meta.resource_version.clone(),
        ..Default::default()
    }
}

/// The Event a correlation key was first written as.
#[derive(Debug)]
struct Named {
    namespace: String,
    name: String,
    first: Time,
    /// Resolves when the latest write of this Event is done: the next one waits for it, so an
    /// Event's create and its count bumps reach the API in the order they were recorded, as
    /// client-go writes them from one queue.
    last_write: Option<oneshot::Receiver<()>>,
}

/// Writes Events for one component instance (one term of an elected one).
pub struct Recorder {
    client: Client,
    fence: Option<Fence>,
    host: Option<String>,
    instance: String,
    tasks: TaskTracker,
    in_flight: Arc<AtomicUsize>,
    correlator: Arc<Mutex<Correlator>>,
    named: Arc<Mutex<HashMap<u64, Named>>>,
}

impl Recorder {
    /// A recorder whose events name `instance` as their reporting instance, written by tasks
    /// on `tasks`.
    pub fn new(client: Client, instance: String, tasks: TaskTracker) -> Self {
        Self {
            client,
            fence: None,
            host: None,
            instance,
            tasks,
            in_flight: Arc::new(AtomicUsize::new(0)),
            correlator: Default::default(),
            named: Default::default(),
        }
    }

    /// The same recorder with every write fenced by `fence` (an elected component's term).
    pub fn with_fence(mut self, fence: Fence) -> Self {
        self.fence = Some(fence);
        self
    }

    /// The same recorder naming `host` as its events' source host, as kubelet names its node.
    pub fn with_host(mut self, host: String) -> Self {
        self.host = Some(host);
        self
    }

    /// Records that `component` did something to `object`: `type_` is [`NORMAL`] or
    /// [`WARNING`], `reason` is Kubernetes' CamelCase reason.
    pub fn event(
        &self,
        component: &'static str,
        object: ObjectReference,
        type_: &'static str,
        reason: &str,
        message: String,
    ) {
        if self.in_flight.fetch_add(1, Ordering::SeqCst) >= MAX_IN_FLIGHT {
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            tracing::debug!(reason, "too many events in flight; dropped");
            return;
        }
        let namespace = object
            .namespace
            .clone()
            .filter(|ns| !ns.is_empty())
            .unwrap_or_else(|| "default".into());
        let draft = Draft {
            source: Source {
                component: component.to_string(),
                host: self.host.clone().unwrap_or_default(),
                kind: object.kind.clone().unwrap_or_default(),
                namespace: namespace.clone(),
                name: object.name.clone().unwrap_or_default(),
                uid: object.uid.clone().unwrap_or_default(),
                api_version: object.api_version.clone().unwrap_or_default(),
            },
            type_: type_.to_string(),
            reason: reason.to_string(),
            reporting_instance: self.instance.clone(),
            message,
        };
        let decided = self
            .correlator
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .correlate(draft, Instant::now());
        let Some(decided) = decided else {
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            tracing::debug!(reason, "event dropped by the spam filter");
            return;
        };
        let now = Time(Utc::now());
        let (done, next_write) = oneshot::channel();
        let (seen, previous_write) = {
            let mut named = self.named.lock().unwrap_or_else(PoisonError::into_inner);
            let known = named.get_mut(&decided.key).filter(|_| !decided.new);
            let n = match known {
                Some(n) => n,
                None => {
                    if named.len() >= MAX_NAMED {
                        named.clear();
                    }
                    let nanos = now.0.timestamp_nanos_opt().unwrap_or_default();
                    let n = Named {
                        namespace: namespace.clone(),
                        name: format!("{}.{nanos:x}", object.name.clone().unwrap_or_default()),
                        first: now.clone(),
                        last_write: None,
                    };
                    named.entry(decided.key).insert_entry(n).into_mut()
                }
            };
            let previous = n.last_write.replace(next_write);
            let seen = (n.namespace.clone(), n.name.clone(), n.first.clone());
            (seen, previous)
        };
        let (seen_namespace, seen_name, seen_first) = seen;
        let message = decided.message;
        let count = decided.count;
        let mut api: Api<Event> = Api::namespaced(self.client.clone(), &seen_namespace);
        if let Some(fence) = &self.fence {
            api = api.with_fence(fence.clone());
        }
        let in_flight = self.in_flight.clone();
        let event = Event {
            metadata: ObjectMeta {
                name: Some(seen_name.clone()),
                namespace: Some(seen_namespace),
                ..Default::default()
            },
            involved_object: object,
            reason: Some(reason.to_string()),
            message: Some(message),
            type_: Some(type_.into()),
            source: Some(EventSource {
                component: Some(component.into()),
                host: self.host.clone(),
            }),
            reporting_component: Some(component.into()),
            reporting_instance: Some(self.instance.clone()),
            first_timestamp: Some(seen_first),
            last_timestamp: Some(now.clone()),
            count: Some(count),
            ..Default::default()
        };
        self.tasks.spawn(async move {
            if let Some(previous) = previous_write {
                // An error only says the previous write's task is gone: go on.
                let _ = previous.await;
            }
            let result = if count == 1 {
                api.create(&event).await.map(|_| ())
            } else {
                // The message too: an aggregate Event shows the latest of its messages.
                let patch = json!({"count": count, "lastTimestamp": now, "message": event.message});
                match api.patch(&seen_name, &Patch::Merge(patch)).await {
                    // The first write was dropped or the Event expired: write it whole.
                    Err(e) if e.is_not_found() => api.create(&event).await.map(|_| ()),
                    other => other.map(|_| ()),
                }
            };
            if let Err(error) = result {
                tracing::debug!(%error, "writing an event");
            }
            // Nobody waits when no later write of this Event was recorded.
            let _ = done.send(());
            in_flight.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

/// What an Event says about a failed request: the server's own message when it sent one (as
/// kube-controller-manager quotes the API error), the error otherwise.
pub fn error_message(error: &crate::Error) -> String {
    match error {
        crate::Error::Api(status) if !status.message.is_empty() => status.message.clone(),
        other => other.to_string(),
    }
}
