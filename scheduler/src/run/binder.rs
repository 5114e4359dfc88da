//! Binding: each decided pod is bound through the `pods/binding` subresource in its own task,
//! a bounded number at a time, so the loop goes on deciding while binds are in flight. Every
//! bind carries the leader's fence: once another scheduler holds the Lease, the store refuses
//! it in the same transaction. The outcome goes back to the loop.

use std::sync::Arc;
use std::time::Instant;

use keel_client::k8s_openapi::api::core::v1::Pod;
use keel_client::{Api, Client, Error, Fence};
use tokio::sync::{mpsc, Semaphore};
use tokio_util::task::TaskTracker;

use crate::queue::QueuedPod;

/// How a bind ended.
#[derive(Debug)]
pub struct BindOutcome {
    pub pod: QueuedPod,
    pub node: String,
    pub result: Result<(), Error>,
    /// When the decision was made (bind latency starts here).
    pub decided: Instant,
}

/// Binds pods, a bounded number at a time.
pub struct Binder {
    client: Client,
    slots: Arc<Semaphore>,
    tasks: TaskTracker,
    results: mpsc::UnboundedSender<BindOutcome>,
}

impl Binder {
    pub fn new(
        client: Client,
        concurrency: usize,
        tasks: TaskTracker,
        results: mpsc::UnboundedSender<BindOutcome>,
    ) -> Binder {
        Binder {
            client,
            slots: Arc::new(Semaphore::new(concurrency.max(1))),
            tasks,
            results,
        }
    }

    /// Starts binding `pod` to `node` under `fence`.
    pub fn bind(&self, pod: QueuedPod, node: String, fence: Fence) {
        let api: Api<Pod> =
            Api::namespaced(self.client.clone(), &pod.info.namespace).with_fence(fence);
        let slots = self.slots.clone();
        let results = self.results.clone();
        let decided = Instant::now();
        self.tasks.spawn(async move {
            let result = match slots.acquire_owned().await {
                // The pod's uid is a precondition: a pod deleted and created again under the
                // same name is not bound by a decision about the old one.
                Ok(_permit) => api.bind_pod(&pod.info.pod, &node).await,
                // Closed only at shutdown: report the pod unbound.
                Err(_) => Err(Error::Transport("scheduler shutting down".into())),
            };
            let _ = results.send(BindOutcome {
                pod,
                node,
                result,
                decided,
            });
        });
    }
}
