//! The pods on simulated nodes, moved through their life as their kubelets would report it.
//!
//! One watch over every pod bound to a node (`spec.nodeName!=`), through the SDK's watcher,
//! feeds the controller runtime's cache and queue; the address book ([`Ipam`]) follows the
//! same events. Each pod on one of this fleet's nodes is reconciled one at a time: the pure
//! [`lifecycle::decide`] says what it needs, and this writes it — the `pods/status`
//! subresource for a status, a delete with grace period 0 and a UID precondition for a pod
//! whose grace period is over — then asks to be woken when the pod's next step is due.
//!
//! Writes are bounded by the shared [`WriteLimit`] and the runtime's concurrency. A status
//! write that conflicts is decided again from the fresh pod; any other error goes to the
//! runtime's backoff for that pod alone, and is logged.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use anyhow::anyhow;
use futures::StreamExt;
use keel_client::api::Preconditions;
use keel_client::runtime::{Action, Backoff, Config, Controller, ReconcileError};
use keel_client::{watcher, Api, Client, DeleteParams, Error, WatchParams};
use keel_types::k8s_openapi::api::core::v1::Pod;
use keel_types::k8s_openapi::chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use super::ipam::Ipam;
use super::lifecycle::{self, Decision, Sandbox, Script};
use super::limit::WriteLimit;
use super::nodes::Fleet;
use super::stats::Stats;

/// Conflicting status writes decided again from the fresh pod before backing off.
const CONFLICT_RETRIES: usize = 5;
/// The soonest a pod that restarted is looked at again: a floor on restart loops of pods
/// whose run time is zero (kubelet's crash-loop backoff, much simplified).
const RESTART_FLOOR: Duration = Duration::from_secs(1);
/// Retry delays of a pod whose writes keep failing.
const BACKOFF: Backoff = Backoff {
    initial: Duration::from_millis(200),
    max: Duration::from_secs(30),
};

pub struct Pods {
    client: Client,
    fleet: Arc<Fleet>,
    writes: WriteLimit,
    stats: Arc<Stats>,
    ipam: Mutex<Ipam>,
}

impl Pods {
    pub fn new(client: Client, fleet: Arc<Fleet>, writes: WriteLimit, stats: Arc<Stats>) -> Self {
        Self {
            client,
            fleet,
            writes,
            stats,
            ipam: Mutex::new(Ipam::default()),
        }
    }

    /// Runs the pods of this fleet's nodes until `shutdown`, `concurrency` pods at a time.
    /// Returns once the reconciles in flight at shutdown have finished.
    pub async fn run(self: Arc<Self>, concurrency: usize, shutdown: CancellationToken) {
        let params = WatchParams {
            field_selector: "spec.nodeName!=".into(),
            ..Default::default()
        };
        let books = self.clone();
        let events =
            watcher::watcher(Api::<Pod>::all(self.client.clone()), params).inspect(move |event| {
                if let Ok(event) = event {
                    books.ipam().observe(&books.fleet, event);
                }
            });
        let config = Config {
            concurrency,
            backoff: BACKOFF,
        };
        Controller::for_events(events)
            .with_config(config)
            .run(
                |pod, pods: Arc<Pods>| async move { pods.reconcile(pod).await },
                |_, _, _| Action::requeue(BACKOFF.initial),
                self,
                shutdown,
            )
            .for_each(|outcome| async move {
                match outcome {
                    Ok(_) => {}
                    Err(ReconcileError::Watch(error)) => {
                        tracing::warn!(%error, "pod watch failed; it resumes by itself");
                    }
                    Err(error) => tracing::warn!(%error, "a pod's step failed; retrying it"),
                }
            })
            .await;
    }

    fn ipam(&self) -> MutexGuard<'_, Ipam> {
        // Every critical section is one call on the books, which leaves them whole even if
        // it panicked; a poisoned lock is still sound.
        self.ipam.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes `pod` one step along its life, if it runs on one of this fleet's nodes.
    async fn reconcile(&self, pod: Arc<Pod>) -> anyhow::Result<Action> {
        let node = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .and_then(|n| self.fleet.index_of(n));
        let Some(node) = node else {
            return Ok(Action::await_change());
        };
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
        let mut current = (*pod).clone();
        let mut conflicts = 0;
        loop {
            let script = Script::of(&current).unwrap_or_else(|error| {
                tracing::warn!(pod = %format!("{namespace}/{name}"), %error, "ignoring a malformed annotation");
                Script::default()
            });
            let now = Utc::now();
            let status = match lifecycle::decide(&current, &script, now) {
                Decision::Wait(at) => return Ok(wake_at(at, now)),
                Decision::Delete { uid } => {
                    self.delete(&api, &name, uid).await?;
                    return Ok(Action::await_change());
                }
                Decision::Start => {
                    let uid = current.metadata.uid.as_deref().unwrap_or_default();
                    let host = self.ipam().assign(node, uid).ok_or_else(|| {
                        anyhow!("node {} has no pod address left", self.fleet.name(node))
                    })?;
                    let sandbox = Sandbox {
                        host_ip: self.fleet.node_ip(node),
                        pod_ip: self.fleet.pod_ip(node, host),
                    };
                    lifecycle::started(&current, &sandbox, now)
                }
                Decision::Post(status) => *status,
            };
            let next = Pod {
                status: Some(status),
                ..current.clone()
            };
            match self.writes.run(api.replace_status(&name, &next)).await {
                Ok(written) => {
                    Stats::count(&self.stats.pod_statuses);
                    return Ok(match lifecycle::decide(&written, &script, Utc::now()) {
                        Decision::Wait(at) => wake_at(at, Utc::now()),
                        _ => Action::requeue(RESTART_FLOOR),
                    });
                }
                Err(e) if e.is_conflict() && conflicts < CONFLICT_RETRIES => {
                    conflicts += 1;
                    current = match api.get(&name).await {
                        Ok(fresh) => fresh,
                        Err(e) if e.is_not_found() => return Ok(Action::await_change()),
                        Err(e) => return Err(e.into()),
                    };
                }
                // Deleted meanwhile: nothing left to report.
                Err(e) if e.is_not_found() => return Ok(Action::await_change()),
                Err(e) => {
                    Stats::count(&self.stats.failed_writes);
                    return Err(e.into());
                }
            }
        }
    }

    /// Deletes the pod for good, if it is still the one with `uid`.
    async fn delete(&self, api: &Api<Pod>, name: &str, uid: String) -> Result<(), Error> {
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(uid),
                resource_version: None,
            }),
            ..Default::default()
        };
        match self.writes.run(api.delete(name, &params)).await {
            Ok(_) => {
                Stats::count(&self.stats.pod_deletions);
                Ok(())
            }
            // Gone already, or the name now belongs to a new pod (the UID precondition
            // failed), which has a life of its own.
            Err(e) if e.is_not_found() || e.is_conflict() => Ok(()),
            Err(e) => {
                Stats::count(&self.stats.failed_writes);
                Err(e)
            }
        }
    }
}

/// Look again at `at`, or when the pod changes.
fn wake_at(at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Action {
    match at {
        Some(at) => Action::requeue((at - now).to_std().unwrap_or(Duration::ZERO)),
        None => Action::await_change(),
    }
}
