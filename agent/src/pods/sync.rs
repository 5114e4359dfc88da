//! One sync of one pod: read what the runtime holds, plan, act (sandbox, kills, image pulls,
//! container creates and starts), then post the status kubelet would post. A pod being
//! deleted is terminated instead (containers stopped within its grace period, sandbox and
//! files removed, the Pod object deleted for good); a finished pod has its sandbox stopped.
//!
//! The decisions are [`plan`] and [`status`]; this file is the I/O around them.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::PermissionsExt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, UNIX_EPOCH};

use keel_client::api::Preconditions;
use keel_client::events::Recorder;
use keel_client::runtime::Action;
use keel_client::{Api, Client, DeleteParams, Patch};
use keel_types::k8s_openapi::api::core::v1::{Container, Pod, PodStatus, Secret};
use keel_types::k8s_openapi::chrono::Utc;
use serde_json::json;

use super::backoff::{container_key, now_nanos, Backoffs};
use super::cleanup;
use super::configs::{self, NodeSettings};
use super::events::PodEvents;
use super::hooks::{self, Hook};
use super::images::ImagePuller;
use super::observed::{observe, Observed, State};
use super::plan::{plan, KillReason, Plan};
use super::pull_secrets;
use super::status::{pod_status, Inputs, Waiting};
use super::PodFiles;
use crate::cri::Mount;
use crate::prober::check::Target;
use crate::prober::{ProbeKind, ProbeManager, ProbeResult};
use crate::{labels, Error, RuntimeClient};

/// A pod with nothing pending is synced again this often (kubelet's sync frequency), which
/// also refreshes its projected files.
const RESYNC: Duration = Duration::from_secs(60);
/// Exited instances kept per container: the newest (its status) and the one before (for
/// `kubectl logs --previous`).
const KEEP_EXITED: usize = 2;

/// What a sync needs, shared by all pods.
pub struct Syncer {
    pub client: Client,
    pub runtime: RuntimeClient,
    pub recorder: Arc<Recorder>,
    pub node: NodeSettings,
    pub host_ip: String,
    pub backoffs: Backoffs,
    pub images: ImagePuller,
    pub files: Arc<dyn PodFiles>,
    pub probes: ProbeManager,
    /// The container instances last told to the probes, by pod uid and container name, so
    /// that they hear of each start and exit once.
    pub reported: Mutex<HashMap<(String, String), (String, bool)>>,
}

/// Why a sync failed: it is retried with back-off.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Runtime(#[from] Error),
    #[error(transparent)]
    Api(#[from] keel_client::Error),
    #[error("{0}")]
    Setup(String),
}

fn is_terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

fn find<'a>(pod: &'a Pod, name: &str) -> Option<&'a Container> {
    let spec = pod.spec.as_ref()?;
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .find(|c| c.name == name)
}

impl Syncer {
    /// Brings the runtime in line with `pod` and reports its status.
    pub async fn sync(&self, pod: Arc<Pod>) -> Result<Action, SyncError> {
        let (_, _, uid) = configs::identity(&pod);
        if uid.is_empty() {
            return Ok(Action::await_change());
        }
        let events = PodEvents::new(self.recorder.clone(), pod.clone());
        if pod.metadata.deletion_timestamp.is_some() {
            self.probes.stop_liveness_and_startup(&uid);
            self.terminate(&pod, &events).await?;
            self.forget_probes(&uid);
            return Ok(Action::await_change());
        }
        let observed = observe(&self.runtime, &uid).await?;
        if is_terminal(&pod) {
            self.forget_probes(&uid);
            self.stop_all(&pod, &observed, &events, Duration::ZERO)
                .await?;
            return Ok(Action::await_change());
        }
        self.probes.add_pod(&pod);
        self.tell_probes(&uid, &observed);
        let now = now_nanos();
        let mut backoff = |name: &str, failed_at: i64| {
            self.backoffs
                .check(&container_key(&uid, name), failed_at, now)
        };
        let liveness_failed = |name: &str| {
            let Some(running) = observed.latest(name).filter(|i| i.state == State::Running) else {
                return false;
            };
            // A startup probe reports Failure only once it has reached its failure
            // threshold: then, as a failed liveness probe does, it kills the container.
            [ProbeKind::Liveness, ProbeKind::Startup]
                .iter()
                .any(|kind| {
                    self.probes.result(&uid, name, *kind)
                        == Some((running.id.clone(), ProbeResult::Failure))
                })
        };
        let plan = plan(&pod, &observed, &liveness_failed, &mut backoff);
        let mut waiting = BTreeMap::new();
        let acted = self
            .act(&pod, &observed, &plan, &events, &mut waiting)
            .await?;
        let observed = if acted {
            let fresh = observe(&self.runtime, &uid).await?;
            self.tell_probes(&uid, &fresh);
            fresh
        } else {
            observed
        };
        for (name, backing_off) in &plan.backing_off {
            let (namespace, pod_name, _) = configs::identity(&pod);
            let delay = backing_off.delay.as_secs();
            waiting.insert(
                name.clone(),
                Waiting {
                    reason: "CrashLoopBackOff".into(),
                    message: format!(
                        "back-off {delay}s restarting failed container={name} pod={pod_name}_{namespace}({uid})"
                    ),
                },
            );
            events.warning(
                find(&pod, name),
                "BackOff",
                format!("Back-off restarting failed container {name} in pod {pod_name}_{namespace}({uid})"),
            );
        }
        self.collect_exited(&pod, &observed).await;
        let status = pod_status(
            &pod,
            &Inputs {
                observed: &observed,
                waiting: &waiting,
                ready: &|name| {
                    !self.probes.has_probes(&uid, name) || self.probes.readiness(&uid, name)
                },
                started: &|name| {
                    !self.probes.has_probes(&uid, name) || self.probes.started(&uid, name)
                },
                host_ip: &self.host_ip,
                now: Utc::now(),
            },
        );
        self.post_status(&pod, status).await?;
        let mut after = plan.requeue.unwrap_or(RESYNC);
        if waiting.values().any(|w| w.reason != "CrashLoopBackOff") {
            // An image or configuration problem may clear by itself: look again soon.
            after = after.min(super::backoff::INITIAL);
        }
        Ok(Action::requeue(after))
    }

    /// Carries out `plan`; returns whether anything was done to the runtime.
    async fn act(
        &self,
        pod: &Arc<Pod>,
        observed: &Observed,
        plan: &Plan,
        events: &PodEvents,
        waiting: &mut BTreeMap<String, Waiting>,
    ) -> Result<bool, SyncError> {
        let mut acted = false;
        let grace = grace_period(pod);
        for kill in &plan.kill {
            acted = true;
            let container = find(pod, &kill.name);
            let message = match kill.reason {
                KillReason::SpecChanged => {
                    format!(
                        "Container {} definition changed, will be restarted",
                        kill.name
                    )
                }
                KillReason::Unhealthy => {
                    format!(
                        "Container {} failed liveness probe, will be restarted",
                        kill.name
                    )
                }
                KillReason::SandboxChanged | KillReason::NeverStarted => {
                    format!("Stopping container {}", kill.name)
                }
            };
            events.normal(container, "Killing", message);
            ignore_missing(self.runtime.stop_container(&kill.id, grace).await)?;
            if kill.reason == KillReason::NeverStarted {
                ignore_missing(self.runtime.remove_container(&kill.id).await)?;
            }
        }
        let (namespace, name, uid) = configs::identity(pod);
        // Volumes first, as kubelet mounts them before it runs the sandbox; again on every
        // sync, which refreshes their contents. A failure holds back only new containers.
        let mounted = self.files.setup(pod).await;
        if let Err(messages) = &mounted {
            for message in messages {
                events.warning(None, "FailedMount", message.clone());
            }
        }
        let mut sandbox_id = observed.sandbox().filter(|s| s.ready).map(|s| s.id.clone());
        let mut sandbox_ip = observed
            .sandbox()
            .filter(|s| s.ready)
            .map(|s| s.ip.clone())
            .unwrap_or_default();
        let attempt = match plan.new_sandbox {
            Some(attempt) => {
                acted = true;
                for old in &observed.sandboxes {
                    ignore_missing(self.runtime.stop_pod_sandbox(&old.id).await)?;
                }
                let config = configs::sandbox_config(pod, &self.node, attempt);
                let log_dir = labels::pod_log_dir(&self.node.logs_dir, &namespace, &name, &uid);
                std::fs::create_dir_all(&log_dir).map_err(|e| {
                    SyncError::Runtime(Error::io(format!("creating {}", log_dir.display()), e))
                })?;
                match self.runtime.run_pod_sandbox(config, "").await {
                    Ok(id) => {
                        sandbox_ip = match self.runtime.pod_sandbox_status(&id).await {
                            Ok(status) => status.network.map(|n| n.ip).unwrap_or_default(),
                            Err(_) => String::new(),
                        };
                        sandbox_id = Some(id);
                    }
                    Err(error) => {
                        events.warning(
                            None,
                            "FailedCreatePodSandBox",
                            format!("Failed to create pod sandbox: {error}"),
                        );
                        return Err(error.into());
                    }
                }
                attempt
            }
            None => observed.sandbox().map_or(0, |s| s.attempt),
        };
        let Some(sandbox_id) = sandbox_id else {
            return Ok(acted);
        };
        if plan.start.is_empty() {
            return Ok(acted);
        }
        if let Err(messages) = mounted {
            return Err(SyncError::Setup(messages.join("; ")));
        }
        let sandbox_config = configs::sandbox_config(pod, &self.node, attempt);
        let pull_secrets = self.pull_secrets(pod, events).await;
        for start in &plan.start {
            let Some(container) = find(pod, &start.name) else {
                continue;
            };
            acted = true;
            let image_ref = match self
                .images
                .ensure(
                    &self.runtime,
                    events,
                    &uid,
                    container,
                    &pull_secrets::credentials_for(
                        container.image.as_deref().unwrap_or_default(),
                        &pull_secrets,
                    ),
                )
                .await
            {
                Ok(image_ref) => image_ref,
                Err(why) => {
                    waiting.insert(start.name.clone(), why);
                    continue;
                }
            };
            let resolved = match self.files.resolve(pod, container, &sandbox_ip).await {
                Ok(mut resolved) => {
                    resolved.image_ref = image_ref;
                    match self.termination_message_mount(&uid, container, start.restart_count) {
                        Ok(mount) => resolved.mounts.push(mount),
                        Err(error) => return Err(error.into()),
                    }
                    resolved
                }
                Err(message) => {
                    events.warning(Some(container), "Failed", format!("Error: {message}"));
                    waiting.insert(
                        start.name.clone(),
                        Waiting {
                            reason: "CreateContainerConfigError".into(),
                            message,
                        },
                    );
                    continue;
                }
            };
            let config = configs::container_config(
                pod,
                container,
                start.restart_count,
                resolved,
                &self.node,
            );
            let id = match self
                .runtime
                .create_container(&sandbox_id, config, sandbox_config.clone())
                .await
            {
                Ok(id) => id,
                Err(error) => {
                    let message = error.to_string();
                    events.warning(Some(container), "Failed", format!("Error: {message}"));
                    waiting.insert(
                        start.name.clone(),
                        Waiting {
                            reason: "CreateContainerError".into(),
                            message,
                        },
                    );
                    continue;
                }
            };
            events.normal(
                Some(container),
                "Created",
                format!("Created container {}", start.name),
            );
            if let Err(error) = self.runtime.start_container(&id).await {
                let message = error.to_string();
                events.warning(
                    Some(container),
                    "Failed",
                    format!(
                        "Error: failed to start container \"{}\": {message}",
                        start.name
                    ),
                );
                waiting.insert(
                    start.name.clone(),
                    Waiting {
                        reason: "RunContainerError".into(),
                        message,
                    },
                );
                continue;
            }
            events.normal(
                Some(container),
                "Started",
                format!("Started container {}", start.name),
            );
            let (_, pod_name, _) = configs::identity(pod);
            let hooked = hooks::run(
                &self.runtime,
                events,
                &pod_name,
                container,
                Target {
                    pod_ip: Some(sandbox_ip.as_str()).filter(|ip| !ip.is_empty()),
                    container_id: &id,
                },
                Hook::PostStart,
                grace_period(pod),
            )
            .await;
            if !hooked {
                // As kubelet: a container whose postStart hook failed is killed, and restarts
                // by its policy.
                events.normal(
                    Some(container),
                    "Killing",
                    format!("FailedPostStartHook: stopping container {}", start.name),
                );
                ignore_missing(self.runtime.stop_container(&id, Duration::ZERO).await)?;
            }
        }
        Ok(acted)
    }

    /// Tells the probes of each container instance that started or stopped since they last
    /// heard, and of the pod's IP.
    fn tell_probes(&self, uid: &str, observed: &Observed) {
        if let Some(sandbox) = observed.sandbox().filter(|s| s.ready && !s.ip.is_empty()) {
            self.probes.set_pod_ip(uid, &sandbox.ip);
        }
        let mut reported = self.reported.lock().unwrap_or_else(PoisonError::into_inner);
        let names: std::collections::BTreeSet<&str> =
            observed.instances.iter().map(|i| i.name.as_str()).collect();
        for name in names {
            let Some(latest) = observed.latest(name) else {
                continue;
            };
            let running = latest.state == State::Running;
            let key = (uid.to_owned(), name.to_owned());
            if reported.get(&key) == Some(&(latest.id.clone(), running)) {
                continue;
            }
            if running {
                let started = UNIX_EPOCH
                    + Duration::from_nanos(u64::try_from(latest.started_at).unwrap_or_default());
                self.probes
                    .container_started(uid, name, &latest.id, started);
            } else {
                self.probes.container_exited(uid, name);
            }
            reported.insert(key, (latest.id.clone(), running));
        }
    }

    /// Forgets pod `uid`'s probes.
    pub fn forget_probes(&self, uid: &str) {
        self.probes.remove_pod(uid);
        self.reported
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|(pod, _), _| pod != uid);
    }

    /// The pod's imagePullSecrets that can be read; those that cannot are named in a warning,
    /// as kubelet does, and the pull is tried without them.
    async fn pull_secrets(&self, pod: &Pod, events: &PodEvents) -> Vec<Secret> {
        let (namespace, _, _) = configs::identity(pod);
        let names: Vec<String> = pod
            .spec
            .as_ref()
            .and_then(|s| s.image_pull_secrets.clone())
            .unwrap_or_default()
            .into_iter()
            .map(|r| r.name)
            .filter(|n| !n.is_empty())
            .collect();
        if names.is_empty() {
            return Vec::new();
        }
        let api: Api<Secret> = Api::namespaced(self.client.clone(), &namespace);
        let mut found = Vec::new();
        let mut missing = Vec::new();
        for name in names {
            match api.get(&name).await {
                Ok(secret) => found.push(secret),
                Err(_) => missing.push(format!("{namespace}/{name}")),
            }
        }
        if !missing.is_empty() {
            events.warning(
                None,
                "FailedToRetrieveImagePullSecret",
                format!(
                    "Unable to retrieve some image pull secrets ({}); attempting to pull the image may not succeed.",
                    missing.join(", ")
                ),
            );
        }
        found
    }

    /// The file instance `restart_count` of `container` may leave a termination message in,
    /// created empty and mounted at its terminationMessagePath as kubelet does.
    fn termination_message_mount(
        &self,
        uid: &str,
        container: &Container,
        restart_count: u32,
    ) -> Result<Mount, Error> {
        let file = labels::termination_message_file(
            &self.node.root_dir,
            uid,
            &container.name,
            restart_count,
        );
        let io = |e| Error::io(format!("creating {}", file.display()), e);
        if let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        std::fs::write(&file, b"").map_err(io)?;
        // Any user the container runs as may write its message.
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o666)).map_err(io)?;
        Ok(Mount {
            container_path: container
                .termination_message_path
                .clone()
                .unwrap_or_else(|| "/dev/termination-log".into()),
            host_path: file.display().to_string(),
            ..Default::default()
        })
    }

    /// Stops every running container of the pod (within `grace`) and its sandboxes.
    async fn stop_all(
        &self,
        pod: &Pod,
        observed: &Observed,
        events: &PodEvents,
        grace: Duration,
    ) -> Result<(), SyncError> {
        let (_, pod_name, _) = configs::identity(pod);
        let stops = observed.running().map(|instance| {
            let container = find(pod, &instance.name);
            events.normal(
                container,
                "Killing",
                format!("Stopping container {}", instance.name),
            );
            let pod_name = pod_name.clone();
            async move {
                // The preStop hook first, within the grace period; the stop gets the rest.
                let mut remaining = grace;
                if let Some(container) = container.filter(|_| !grace.is_zero()) {
                    let started = std::time::Instant::now();
                    hooks::run(
                        &self.runtime,
                        events,
                        &pod_name,
                        container,
                        Target {
                            pod_ip: observed
                                .sandbox()
                                .map(|s| s.ip.as_str())
                                .filter(|ip| !ip.is_empty()),
                            container_id: &instance.id,
                        },
                        Hook::PreStop,
                        grace,
                    )
                    .await;
                    remaining = hooks::grace_after_hook(grace, started.elapsed());
                }
                self.runtime.stop_container(&instance.id, remaining).await
            }
        });
        for result in futures::future::join_all(stops).await {
            ignore_missing(result)?;
        }
        for sandbox in observed.sandboxes.iter().filter(|s| s.ready) {
            ignore_missing(self.runtime.stop_pod_sandbox(&sandbox.id).await)?;
        }
        Ok(())
    }

    /// A pod being deleted: containers stopped within its grace period, its final status
    /// posted, sandboxes and files removed, and the Pod object deleted for good.
    async fn terminate(&self, pod: &Arc<Pod>, events: &PodEvents) -> Result<(), SyncError> {
        let (namespace, name, uid) = configs::identity(pod);
        let observed = observe(&self.runtime, &uid).await?;
        self.stop_all(pod, &observed, events, grace_period(pod))
            .await?;
        for sandbox in &observed.sandboxes {
            ignore_missing(self.runtime.remove_pod_sandbox(&sandbox.id).await)?;
        }
        self.files.teardown(&uid).await;
        cleanup::remove(&labels::pod_dir(&self.node.root_dir, &uid));
        cleanup::remove(&labels::pod_log_dir(
            &self.node.logs_dir,
            &namespace,
            &name,
            &uid,
        ));
        self.backoffs.forget_pod(&uid);
        self.images.forget_pod(&uid);
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(uid),
                resource_version: None,
            }),
            ..Default::default()
        };
        match api.delete(&name, &params).await {
            Ok(_) => Ok(()),
            // Gone already, or the name belongs to a new pod now.
            Err(e) if e.is_not_found() || e.is_conflict() => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Removes exited instances beyond the newest few of each container.
    async fn collect_exited(&self, pod: &Pod, observed: &Observed) {
        let Some(spec) = pod.spec.as_ref() else {
            return;
        };
        let names = spec
            .containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
            .map(|c| c.name.as_str());
        for name in names {
            let old = observed
                .instances_of(name)
                .skip(KEEP_EXITED)
                .filter(|i| i.state == State::Exited);
            for instance in old {
                if let Err(error) = self.runtime.remove_container(&instance.id).await {
                    tracing::debug!(%error, container = %instance.id, "removing an old container");
                }
            }
        }
    }

    /// Posts `status` unless the pod already says so.
    async fn post_status(&self, pod: &Pod, status: PodStatus) -> Result<(), SyncError> {
        if pod.status.as_ref() == Some(&status) {
            return Ok(());
        }
        let (namespace, name, uid) = configs::identity(pod);
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
        // The uid in the patch makes it fail on a new pod that took the name.
        let patch = json!({"metadata": {"uid": uid}, "status": status});
        match api.patch_status(&name, &Patch::Merge(patch)).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// The pod's grace period: what its deletion set, else its spec's (30 s by default).
fn grace_period(pod: &Pod) -> Duration {
    let seconds = pod
        .metadata
        .deletion_grace_period_seconds
        .or_else(|| {
            pod.spec
                .as_ref()
                .and_then(|s| s.termination_grace_period_seconds)
        })
        .unwrap_or(30);
    Duration::from_secs(u64::try_from(seconds).unwrap_or(0))
}

fn ignore_missing(result: Result<(), Error>) -> Result<(), Error> {
    match result {
        Err(e) if e.is_not_found() => Ok(()),
        other => other,
    }
}
