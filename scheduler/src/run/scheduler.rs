//! The scheduling loop: one task owns the cache, the queue and the algorithm. It applies what
//! the informers report, and while this scheduler leads (and both the pod and node caches have
//! been filled once) pops pods, decides, assumes and hands them to the binder.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use keel_client::k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use keel_client::watcher::Event;
use keel_client::Fence;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::binder::{BindOutcome, Binder};
use super::informer::Update;
use super::recorder::Recorder;
use crate::cache::Cache;
use crate::cycle::{Algorithm, Nominated};
use crate::framework::{ClusterEvent, PodInfo, Snapshot};
use crate::preemption::Preemption;
use crate::queue::{QueuedPod, SchedulingQueue};

/// Pods decided per turn before the loop looks at new events again.
const BATCH: usize = 64;
/// The longest the loop sleeps with nothing to do (so leftovers are flushed).
const IDLE: Duration = Duration::from_secs(1);

/// Counters the loop keeps (read by logs and tests).
#[derive(Debug, Default, Clone, Copy)]
pub struct Stats {
    pub scheduled: u64,
    pub unschedulable: u64,
    pub bind_failures: u64,
    pub preemptions: u64,
}

pub struct Scheduler {
    pub(crate) cache: Cache,
    pub(crate) queue: SchedulingQueue,
    pub(crate) algorithm: Algorithm,
    snapshot: Snapshot,
    /// Pods nominated to a node by preemption and not yet bound: node → pods, and pod → node.
    nominated: Nominated,
    nominated_of: HashMap<String, String>,
    scheduler_name: String,
    binder: Binder,
    recorder: Recorder,
    pods_synced: bool,
    nodes_synced: bool,
    pub stats: Stats,
}

fn key_of(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or(""),
        pod.metadata.name.as_deref().unwrap_or("")
    )
}

fn node_name(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or("")
}

fn finished(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

impl Scheduler {
    pub fn new(
        algorithm: Algorithm,
        queue: SchedulingQueue,
        scheduler_name: String,
        binder: Binder,
        recorder: Recorder,
    ) -> Scheduler {
        Scheduler {
            cache: Cache::new(),
            queue,
            algorithm,
            snapshot: Snapshot::default(),
            nominated: Nominated::new(),
            nominated_of: HashMap::new(),
            scheduler_name,
            binder,
            recorder,
            pods_synced: false,
            nodes_synced: false,
            stats: Stats::default(),
        }
    }

    fn ours(&self, pod: &Pod) -> bool {
        let name = pod
            .spec
            .as_ref()
            .and_then(|s| s.scheduler_name.as_deref())
            .unwrap_or("default-scheduler");
        name == self.scheduler_name
    }

    fn unnominate(&mut self, key: &str) {
        if let Some(node) = self.nominated_of.remove(key) {
            if let Some(list) = self.nominated.get_mut(&node) {
                list.retain(|p| p.key() != key);
                if list.is_empty() {
                    self.nominated.remove(&node);
                }
            }
        }
    }

    fn nominate(&mut self, info: &Arc<PodInfo>, node: &str) {
        self.unnominate(&info.key());
        if node.is_empty() {
            return;
        }
        self.nominated
            .entry(node.to_string())
            .or_default()
            .push(info.clone());
        self.nominated_of.insert(info.key(), node.to_string());
    }

    // ----- informer updates -----

    pub fn apply(&mut self, update: Update) {
        let now = Instant::now();
        match update {
            Update::Pod(e) => self.pod_event(*e, now),
            Update::Node(e) => self.node_event(*e, now),
            Update::Namespace(e) => self.namespace_event(*e, now),
        }
    }

    fn pod_event(&mut self, event: Event<Pod>, now: Instant) {
        match event {
            Event::Applied(pod) => self.pod_changed(pod, now),
            Event::Deleted(pod) => self.pod_gone(&key_of(&pod), now),
            Event::Restarted(pods) => {
                let present: std::collections::HashSet<String> = pods.iter().map(key_of).collect();
                let known: Vec<String> = self
                    .cache
                    .pod_keys()
                    .chain(self.queue.pods().map(|p| p.info.key()))
                    .filter(|k| !present.contains(k))
                    .collect();
                for key in known {
                    self.pod_gone(&key, now);
                }
                for pod in pods {
                    self.pod_changed(pod, now);
                }
                self.pods_synced = true;
            }
        }
    }

    fn node_event(&mut self, event: Event<Node>, now: Instant) {
        match event {
            Event::Applied(node) => self.node_changed(node, now),
            Event::Deleted(node) => {
                self.cache
                    .remove_node(node.metadata.name.as_deref().unwrap_or(""));
            }
            Event::Restarted(nodes) => {
                let present: std::collections::HashSet<&str> = nodes
                    .iter()
                    .filter_map(|n| n.metadata.name.as_deref())
                    .collect();
                let gone: Vec<String> = self
                    .cache
                    .node_names()
                    .filter(|n| !present.contains(n.as_str()))
                    .cloned()
                    .collect();
                for name in gone {
                    self.cache.remove_node(&name);
                }
                for node in nodes {
                    self.node_changed(node, now);
                }
                self.nodes_synced = true;
            }
        }
    }

    fn namespace_event(&mut self, event: Event<Namespace>, now: Instant) {
        match event {
            Event::Applied(ns) => self.namespace_changed(&ns, now),
            Event::Deleted(ns) => {
                self.cache
                    .remove_namespace(ns.metadata.name.as_deref().unwrap_or(""));
            }
            Event::Restarted(list) => {
                for ns in &list {
                    self.namespace_changed(ns, now);
                }
            }
        }
    }

    fn pod_changed(&mut self, pod: Pod, now: Instant) {
        let key = key_of(&pod);
        if finished(&pod) {
            self.pod_gone(&key, now);
            return;
        }
        let node = node_name(&pod).to_string();
        let before = self.cache.pod_info(&key).cloned();
        let info = Arc::new(PodInfo::new(Arc::new(pod)));
        if !node.is_empty() {
            self.queue.delete(&key);
            self.unnominate(&key);
            self.cache.set_bound_pod(info.clone(), &node);
            let event = match before {
                Some(b) if b.labels() != info.labels() => ClusterEvent::AssignedPodLabelsChanged,
                Some(_) => return,
                None => ClusterEvent::AssignedPodAdded,
            };
            self.queue.on_event(event, now);
            return;
        }
        if !self.ours(&info.pod) || info.terminating() {
            self.queue.delete(&key);
            self.unnominate(&key);
            return;
        }
        if self.cache.placement(&key).is_some() {
            // Assumed by this scheduler and being bound; the bind's outcome decides.
            return;
        }
        let nominated = info
            .pod
            .status
            .as_ref()
            .and_then(|s| s.nominated_node_name.clone())
            .unwrap_or_default();
        self.nominate(&info, &nominated);
        self.queue.update(info, now);
    }

    fn pod_gone(&mut self, key: &str, now: Instant) {
        self.queue.delete(key);
        self.unnominate(key);
        if self.cache.placement(key).is_some() {
            self.cache.remove_pod(key);
            self.queue.on_event(ClusterEvent::AssignedPodDeleted, now);
        }
    }

    fn node_changed(&mut self, node: Node, now: Instant) {
        let name = node.metadata.name.clone().unwrap_or_default();
        let before = self.cache.node(&name).map(|n| n.node.clone());
        let node = Arc::new(node);
        self.cache.set_node(node.clone());
        let Some(before) = before else {
            self.queue.on_event(ClusterEvent::NodeAdded, now);
            return;
        };
        // Compared in place: a node's status (images, conditions) is large, and nodes report
        // it all the time.
        use keel_client::k8s_openapi::api::core::v1::ContainerImage;
        use keel_client::k8s_openapi::api::core::v1::Taint;
        use keel_client::k8s_openapi::apimachinery::pkg::api::resource::Quantity;
        fn allocatable(n: &Node) -> Option<&std::collections::BTreeMap<String, Quantity>> {
            n.status.as_ref().and_then(|s| s.allocatable.as_ref())
        }
        fn images(n: &Node) -> Option<&Vec<ContainerImage>> {
            n.status.as_ref().and_then(|s| s.images.as_ref())
        }
        fn taints(n: &Node) -> Option<&Vec<Taint>> {
            n.spec.as_ref().and_then(|s| s.taints.as_ref())
        }
        fn cordoned(n: &Node) -> Option<bool> {
            n.spec.as_ref().and_then(|s| s.unschedulable)
        }
        if allocatable(&before) != allocatable(&node) {
            self.queue
                .on_event(ClusterEvent::NodeAllocatableChanged, now);
        }
        if before.metadata.labels != node.metadata.labels {
            self.queue.on_event(ClusterEvent::NodeLabelsChanged, now);
        }
        if taints(&before) != taints(&node) {
            self.queue.on_event(ClusterEvent::NodeTaintsChanged, now);
        }
        if cordoned(&before) != cordoned(&node) {
            self.queue
                .on_event(ClusterEvent::NodeSchedulableChanged, now);
        }
        if images(&before) != images(&node) {
            self.queue.on_event(ClusterEvent::NodeImagesChanged, now);
        }
    }

    fn namespace_changed(&mut self, ns: &Namespace, now: Instant) {
        let name = ns.metadata.name.clone().unwrap_or_default();
        let labels = ns.metadata.labels.clone().unwrap_or_default();
        let before = self.cache.namespace_labels(&name).cloned();
        self.cache.set_namespace(&name, labels.clone());
        if before.is_some_and(|b| b != labels) {
            self.queue
                .on_event(ClusterEvent::NamespaceLabelsChanged, now);
        }
    }

    // ----- scheduling -----

    /// Whether both caches have been filled once: before that, a decision could overcommit a
    /// node whose pods the cache has not seen.
    pub fn synced(&self) -> bool {
        self.pods_synced && self.nodes_synced
    }

    /// Decides up to [`BATCH`] pods; returns how many were popped.
    pub fn schedule_batch(&mut self, fence: &Fence) -> usize {
        let mut n = 0;
        while n < BATCH {
            let Some(pod) = self.queue.pop(Instant::now()) else {
                break;
            };
            n += 1;
            self.schedule_one(pod, fence);
        }
        n
    }

    fn schedule_one(&mut self, pod: QueuedPod, fence: &Fence) {
        let key = pod.info.key();
        if self.cache.placement(&key).is_some() {
            self.queue.done(&key);
            return;
        }
        self.cache.update_snapshot(&mut self.snapshot);
        match self
            .algorithm
            .schedule(&pod.info, &self.snapshot, &self.nominated)
        {
            Ok(placement) => {
                if let Err(e) = self.cache.assume(pod.info.clone(), &placement.node) {
                    tracing::warn!(pod = %key, error = %e, "scheduler: cannot assume");
                    self.queue.retry(pod, Instant::now());
                    return;
                }
                self.unnominate(&key);
                self.binder.bind(pod, placement.node, fence.clone());
            }
            Err(diagnosis) => {
                let mut post = None;
                match self
                    .algorithm
                    .preempt(&pod.info, &self.snapshot, &diagnosis, &self.nominated)
                {
                    Preemption::Evict(victims) => {
                        self.stats.preemptions += 1;
                        self.recorder
                            .preempt(fence, &pod.info, &victims.node, &victims.pods);
                        self.nominate(&pod.info, &victims.node);
                    }
                    Preemption::NotPossible(message) => post = Some(message),
                }
                let message = diagnosis.message(post.as_deref());
                self.stats.unschedulable += 1;
                tracing::debug!(pod = %key, %message, "scheduler: unschedulable");
                self.recorder.unschedulable(fence, &pod.info, &message);
                self.queue
                    .unschedulable(pod, diagnosis.plugins.clone(), Instant::now());
            }
        }
    }

    /// A bind finished.
    pub fn bound(&mut self, outcome: BindOutcome, fence: Option<&Fence>) {
        let key = outcome.pod.info.key();
        match outcome.result {
            Ok(()) => {
                self.stats.scheduled += 1;
                self.queue.done(&key);
                if let Some(fence) = fence {
                    let message = format!("Successfully assigned {key} to {}", outcome.node);
                    self.recorder
                        .event(fence, &outcome.pod.info, "Normal", "Scheduled", &message);
                }
            }
            Err(e) => {
                self.stats.bind_failures += 1;
                self.cache.forget(&key);
                self.queue
                    .on_event(ClusterEvent::AssignedPodDeleted, Instant::now());
                if e.is_fence_lost() {
                    // Another scheduler leads now; keep the pod for when this one leads again.
                    tracing::info!(pod = %key, "scheduler: bind refused, leadership lost");
                    self.queue.retry(outcome.pod, Instant::now());
                } else if e.is_not_found() || e.is_conflict() {
                    // Deleted, or bound by someone else: the informer will tell.
                    tracing::debug!(pod = %key, error = %e, "scheduler: bind refused");
                    self.queue.done(&key);
                } else {
                    tracing::info!(pod = %key, node = %outcome.node, error = %e, "scheduler: bind failed; retrying");
                    self.queue.retry(outcome.pod, Instant::now());
                }
            }
        }
    }

    /// Runs until `shutdown`: applies updates, decides while leading, handles bind outcomes.
    pub async fn run(
        mut self,
        mut updates: mpsc::Receiver<Update>,
        mut outcomes: mpsc::UnboundedReceiver<BindOutcome>,
        mut leader: watch::Receiver<Option<Fence>>,
        shutdown: CancellationToken,
    ) -> Stats {
        loop {
            while let Ok(u) = updates.try_recv() {
                self.apply(u);
            }
            let fence = leader.borrow().clone();
            while let Ok(o) = outcomes.try_recv() {
                self.bound(o, fence.as_ref());
            }
            if let Some(fence) = fence.as_ref().filter(|_| self.synced()) {
                if self.schedule_batch(fence) > 0 {
                    tokio::task::yield_now().await;
                    continue;
                }
            }
            let wake = self
                .queue
                .next_backoff()
                .unwrap_or_else(|| Instant::now() + IDLE)
                .min(Instant::now() + IDLE);
            tokio::select! {
                _ = shutdown.cancelled() => break,
                u = updates.recv() => match u {
                    Some(u) => self.apply(u),
                    None => break,
                },
                Some(o) = outcomes.recv() => {
                    let fence = leader.borrow().clone();
                    self.bound(o, fence.as_ref());
                }
                changed = leader.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    let leading = leader.borrow().is_some();
                    tracing::info!(leading, "scheduler: leadership changed");
                }
                _ = tokio::time::sleep_until(wake.into()) => {}
            }
        }
        self.stats
    }
}
