//! The probe manager: one task per probe of every container of the pods it is told of, each
//! ticking its [`ProbeWorker`] every period and running the check when due. It answers
//! whether a container has started and is ready, sends every change of a verdict to whoever
//! drives the pod (a liveness failure means: kill and restart the container; a readiness
//! change means: post the pod's status), and writes kubelet's `Unhealthy` Events.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use keel_client::events::{reference, Recorder, WARNING};
use keel_client::k8s_openapi::api::core::v1::{ObjectReference, Pod};
use tokio::sync::{mpsc, Notify};
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::check::{self, CheckOutcome, Target};
use super::spec::{ProbeAction, ProbeKind, ProbeTiming};
use super::worker::{self, Observed, ProbeResult, ProbeWorker};
use crate::RuntimeClient;

/// The component name kubelet's Events carry.
const COMPONENT: &str = "kubelet";

/// A probe's verdict on a container instance changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeUpdate {
    pub uid: String,
    pub container: String,
    /// The instance the verdict is about; act on it only if it is still the current one.
    pub container_id: String,
    pub kind: ProbeKind,
    pub result: ProbeResult,
}

/// Runs the probes of the pods on this node. Cheap to clone; clones share the probes.
#[derive(Clone)]
pub struct ProbeManager {
    inner: Arc<Inner>,
}

struct Inner {
    runtime: RuntimeClient,
    recorder: Option<Arc<Recorder>>,
    updates: mpsc::UnboundedSender<ProbeUpdate>,
    tasks: TaskTracker,
    cancel: CancellationToken,
    pods: Mutex<HashMap<String, PodProbes>>,
}

struct PodProbes {
    reference: ObjectReference,
    pod_ip: Option<String>,
    cancel: CancellationToken,
    containers: HashMap<String, ContainerProbes>,
}

struct ContainerProbes {
    instance: Option<Instance>,
    probes: HashMap<ProbeKind, Slot>,
}

#[derive(Clone)]
struct Instance {
    id: String,
    started_at: SystemTime,
    running: bool,
}

struct Slot {
    worker: ProbeWorker,
    action: Arc<ProbeAction>,
    wake: Arc<Notify>,
    cancel: CancellationToken,
}

/// What a task needs to run one check, taken out of the lock.
struct Due {
    action: Arc<ProbeAction>,
    pod_ip: Option<String>,
    container_id: String,
    timeout: Duration,
    reference: ObjectReference,
}

impl ContainerProbes {
    fn started(&self) -> bool {
        let Some(instance) = &self.instance else {
            return false;
        };
        let startup = self.probes.get(&ProbeKind::Startup);
        worker::started(
            instance.running,
            startup.is_some(),
            startup.and_then(|slot| verdict(slot, &instance.id)),
        )
    }

    fn ready(&self) -> bool {
        let Some(instance) = &self.instance else {
            return false;
        };
        let readiness = self.probes.get(&ProbeKind::Readiness);
        worker::ready(
            self.started(),
            readiness.is_some(),
            readiness.and_then(|slot| verdict(slot, &instance.id)),
        )
    }
}

/// A worker's verdict if it is about instance `id`.
fn verdict(slot: &Slot, id: &str) -> Option<ProbeResult> {
    (slot.worker.container_id() == Some(id))
        .then(|| slot.worker.result())
        .flatten()
}

impl ProbeManager {
    /// A manager probing through `runtime` (exec checks), writing Events through `recorder`
    /// when there is one. The receiver yields every change of a verdict.
    pub fn new(
        runtime: RuntimeClient,
        recorder: Option<Arc<Recorder>>,
    ) -> (Self, mpsc::UnboundedReceiver<ProbeUpdate>) {
        let (updates, receiver) = mpsc::unbounded_channel();
        let inner = Inner {
            runtime,
            recorder,
            updates,
            tasks: TaskTracker::new(),
            cancel: CancellationToken::new(),
            pods: Mutex::new(HashMap::new()),
        };
        (
            Self {
                inner: Arc::new(inner),
            },
            receiver,
        )
    }

    /// Starts the probes of `pod`'s containers. A pod already known keeps its probes (a
    /// probe's spec cannot change); only its IP is taken from the new status if it has one.
    pub fn add_pod(&self, pod: &Pod) {
        let Some(uid) = pod.metadata.uid.clone() else {
            return;
        };
        let pod_ip = pod
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.clone())
            .filter(|ip| !ip.is_empty());
        let mut pods = self.inner.lock();
        if let Some(known) = pods.get_mut(&uid) {
            if pod_ip.is_some() {
                known.pod_ip = pod_ip;
            }
            return;
        }
        let cancel = self.inner.cancel.child_token();
        let mut containers = HashMap::new();
        for container in pod.spec.iter().flat_map(|spec| &spec.containers) {
            let mut probes = HashMap::new();
            for kind in ProbeKind::ALL {
                let Some(probe) = kind.of(container) else {
                    continue;
                };
                let slot = Slot {
                    worker: ProbeWorker::new(kind, ProbeTiming::of(kind, probe)),
                    action: Arc::new(ProbeAction::of(probe, container)),
                    wake: Arc::new(Notify::new()),
                    cancel: cancel.child_token(),
                };
                self.spawn(&uid, &container.name, &slot);
                probes.insert(kind, slot);
            }
            if !probes.is_empty() {
                containers.insert(
                    container.name.clone(),
                    ContainerProbes {
                        instance: None,
                        probes,
                    },
                );
            }
        }
        pods.insert(
            uid,
            PodProbes {
                reference: reference(pod),
                pod_ip,
                cancel,
                containers,
            },
        );
    }

    fn spawn(&self, uid: &str, container: &str, slot: &Slot) {
        let inner = self.inner.clone();
        let (uid, container) = (uid.to_owned(), container.to_owned());
        let kind = slot.worker.kind();
        let period = slot.worker.timing().period;
        let (wake, cancel) = (slot.wake.clone(), slot.cancel.clone());
        self.inner.tasks.spawn(async move {
            let mut ticks = tokio::time::interval(period);
            ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = cancel.cancelled() => break,
                    _ = ticks.tick() => {}
                    () = wake.notified() => {}
                }
                tokio::select! {
                    () = cancel.cancelled() => break,
                    () = inner.step(&uid, &container, kind) => {}
                }
            }
        });
    }

    /// The pod's IP, the host of httpGet, tcpSocket and grpc checks that name none.
    pub fn set_pod_ip(&self, uid: &str, pod_ip: &str) {
        if let Some(pod) = self.inner.lock().get_mut(uid) {
            pod.pod_ip = Some(pod_ip.to_owned()).filter(|ip| !ip.is_empty());
        }
    }

    /// A new instance of `container` runs (its first start or a restart): its probes judge
    /// it afresh, counting the initial delay from `started_at`, and start probing at once.
    pub fn container_started(
        &self,
        uid: &str,
        container: &str,
        container_id: &str,
        started_at: SystemTime,
    ) {
        self.update_instance(uid, container, |instance| {
            *instance = Some(Instance {
                id: container_id.to_owned(),
                started_at,
                running: true,
            });
        });
    }

    /// The current instance of `container` stopped running: its probes fail (not ready) and
    /// wait for the next instance.
    pub fn container_exited(&self, uid: &str, container: &str) {
        self.update_instance(uid, container, |instance| {
            if let Some(instance) = instance {
                instance.running = false;
            }
        });
    }

    fn update_instance(
        &self,
        uid: &str,
        container: &str,
        change: impl FnOnce(&mut Option<Instance>),
    ) {
        let mut pods = self.inner.lock();
        let Some(probes) = pods
            .get_mut(uid)
            .and_then(|pod| pod.containers.get_mut(container))
        else {
            return;
        };
        change(&mut probes.instance);
        for slot in probes.probes.values() {
            slot.wake.notify_one();
        }
    }

    /// The pod is being deleted: liveness and startup probes stop, settled on success, so
    /// that containers shutting down are neither restarted nor reported for it. Readiness
    /// goes on, as kubelet's does, until the pod is removed.
    pub fn stop_liveness_and_startup(&self, uid: &str) {
        let mut pods = self.inner.lock();
        let Some(pod) = pods.get_mut(uid) else {
            return;
        };
        for (name, container) in &mut pod.containers {
            for (kind, slot) in &mut container.probes {
                if *kind == ProbeKind::Readiness {
                    continue;
                }
                slot.cancel.cancel();
                if let Some(result) = slot.worker.settle_for_shutdown() {
                    self.inner.send(uid, name, &slot.worker, result);
                }
            }
        }
    }

    /// Stops every probe of the pod and forgets it.
    pub fn remove_pod(&self, uid: &str) {
        if let Some(pod) = self.inner.lock().remove(uid) {
            pod.cancel.cancel();
        }
    }

    /// Whether `container` of pod `uid` is ready: it runs, has started, and its readiness
    /// probe (if any) succeeds. False for a container the manager knows no probes of; a
    /// container without probes is ready when it runs, which its pod worker knows.
    pub fn readiness(&self, uid: &str, container: &str) -> bool {
        self.with_container(uid, container, ContainerProbes::ready)
    }

    /// Whether `container` of pod `uid` has started: it runs, and its startup probe (if any)
    /// has succeeded. False for a container the manager knows no probes of.
    pub fn started(&self, uid: &str, container: &str) -> bool {
        self.with_container(uid, container, ContainerProbes::started)
    }

    /// Whether the manager probes `container` of pod `uid` at all.
    pub fn has_probes(&self, uid: &str, container: &str) -> bool {
        self.with_container(uid, container, |_| true)
    }

    /// A probe's current verdict and the instance it is about.
    pub fn result(
        &self,
        uid: &str,
        container: &str,
        kind: ProbeKind,
    ) -> Option<(String, ProbeResult)> {
        let pods = self.inner.lock();
        let slot = pods
            .get(uid)?
            .containers
            .get(container)?
            .probes
            .get(&kind)?;
        Some((
            slot.worker.container_id()?.to_owned(),
            slot.worker.result()?,
        ))
    }

    fn with_container(
        &self,
        uid: &str,
        container: &str,
        query: impl FnOnce(&ContainerProbes) -> bool,
    ) -> bool {
        let pods = self.inner.lock();
        pods.get(uid)
            .and_then(|pod| pod.containers.get(container))
            .is_some_and(query)
    }

    /// Stops every probe and waits for their tasks to end.
    pub async fn shutdown(&self) {
        self.inner.cancel.cancel();
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, PodProbes>> {
        self.pods.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn send(&self, uid: &str, container: &str, worker: &ProbeWorker, result: ProbeResult) {
        let Some(container_id) = worker.container_id() else {
            return;
        };
        // Nobody listening is no reason to stop probing: queries still answer.
        let _ = self.updates.send(ProbeUpdate {
            uid: uid.to_owned(),
            container: container.to_owned(),
            container_id: container_id.to_owned(),
            kind: worker.kind(),
            result,
        });
    }

    /// One tick of one probe: follow the container, and run the check if it is due.
    async fn step(&self, uid: &str, container: &str, kind: ProbeKind) {
        let Some(due) = self.tick(uid, container, kind) else {
            return;
        };
        let target = Target {
            pod_ip: due.pod_ip.as_deref(),
            container_id: &due.container_id,
        };
        let outcome = check::run(&due.action, target, due.timeout, &self.runtime).await;
        if let Some((reason, message)) = outcome.event(kind) {
            tracing::debug!(uid, container, %message, "probe did not succeed");
            if let Some(recorder) = &self.recorder {
                let mut object = due.reference.clone();
                object.field_path = Some(format!("spec.containers{{{container}}}"));
                recorder.event(COMPONENT, object, WARNING, reason, message);
            }
        }
        self.record(uid, container, kind, &due.container_id, &outcome);
    }

    fn tick(&self, uid: &str, container: &str, kind: ProbeKind) -> Option<Due> {
        let mut pods = self.lock();
        let pod = pods.get_mut(uid)?;
        let probes = pod.containers.get_mut(container)?;
        let started = probes.started();
        let now = SystemTime::now();
        let instance = probes.instance.clone();
        let slot = probes.probes.get_mut(&kind)?;
        let observed = Observed {
            container_id: instance.as_ref().map(|i| i.id.as_str()),
            running_for: instance
                .as_ref()
                .filter(|i| i.running)
                .map(|i| now.duration_since(i.started_at).unwrap_or_default()),
            started,
        };
        let tick = slot.worker.tick(observed);
        if let Some(result) = tick.changed {
            self.send(uid, container, &slot.worker, result);
        }
        let needs_pod_ip = !matches!(
            *slot.action,
            ProbeAction::Exec { .. } | ProbeAction::Missing
        );
        // Without the pod's IP there is nothing to aim at yet: wait, as kubelet waits for a
        // status.
        if !tick.probe || (needs_pod_ip && pod.pod_ip.is_none()) {
            return None;
        }
        Some(Due {
            action: slot.action.clone(),
            pod_ip: pod.pod_ip.clone(),
            container_id: instance?.id,
            timeout: slot.worker.timing().timeout,
            reference: pod.reference.clone(),
        })
    }

    fn record(
        &self,
        uid: &str,
        container: &str,
        kind: ProbeKind,
        container_id: &str,
        outcome: &CheckOutcome,
    ) {
        let Some(result) = outcome.result() else {
            return;
        };
        let mut pods = self.lock();
        let Some(slot) = pods
            .get_mut(uid)
            .and_then(|pod| pod.containers.get_mut(container))
            .and_then(|probes| probes.probes.get_mut(&kind))
        else {
            return;
        };
        // A check of an instance that has since been replaced says nothing of the new one.
        if slot.worker.container_id() != Some(container_id) {
            return;
        }
        if let Some(changed) = slot.worker.record(result) {
            self.send(uid, container, &slot.worker, changed);
        }
    }
}
