//! A pod's status as kubelet reports it, computed from what the runtime holds: the phase
//! (kubelet's getPhase), the conditions (PodReadyToStartContainers, Initialized,
//! ContainersReady, Ready, with the scheduler's PodScheduled and others' conditions kept),
//! one status per container (state, lastState, restartCount, ready, started, image and ids),
//! the pod's and host's IPs, startTime and qosClass.
//!
//! Pure: everything that is not in the runtime (why a container waits, what the probes say)
//! is passed in.

use std::collections::BTreeMap;

use keel_types::k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, HostIP, Pod, PodCondition, PodIP, PodStatus,
};
use keel_types::k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use keel_types::k8s_openapi::chrono::{DateTime, Utc};

use super::configs::qos_class;
use super::observed::{Instance, Observed, State};

/// Why a container that does not run is waiting, when the runtime cannot say: the reasons
/// kubelet reports (ContainerCreating, PodInitializing, CrashLoopBackOff, ErrImagePull,
/// ImagePullBackOff, CreateContainerConfigError, …) with their messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    pub reason: String,
    pub message: String,
}

/// What the status is computed from besides the runtime.
pub struct Inputs<'a> {
    pub observed: &'a Observed,
    /// Containers held back this sync, by name.
    pub waiting: &'a BTreeMap<String, Waiting>,
    /// Whether a running container passes its readiness probe (true without one).
    pub ready: &'a dyn Fn(&str) -> bool,
    /// Whether a running container passed its startup probe (true without one).
    pub started: &'a dyn Fn(&str) -> bool,
    pub host_ip: &'a str,
    pub now: DateTime<Utc>,
}

/// The status kubelet would post for `pod` now.
pub fn pod_status(pod: &Pod, inputs: &Inputs<'_>) -> PodStatus {
    let spec = pod.spec.clone().unwrap_or_default();
    let old = pod.status.clone().unwrap_or_default();
    let sandbox = inputs.observed.sandbox();
    let init_statuses: Vec<ContainerStatus> = spec
        .init_containers
        .iter()
        .flatten()
        .map(|c| container_status(c, inputs, true, false, &old))
        .collect();
    let initialized = init_statuses.iter().all(|s| {
        s.state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .is_some_and(|t| t.exit_code == 0)
    });
    let statuses: Vec<ContainerStatus> = spec
        .containers
        .iter()
        .map(|c| container_status(c, inputs, false, !initialized, &old))
        .collect();
    let restart_policy = spec.restart_policy.as_deref().unwrap_or("Always");
    let phase = phase(&init_statuses, &statuses, initialized, restart_policy);
    let pod_ip = sandbox
        .filter(|s| s.ready)
        .map(|s| s.ip.clone())
        .filter(|ip| !ip.is_empty())
        .or_else(|| {
            // Host-network pods have the node's address.
            spec.host_network
                .unwrap_or(false)
                .then(|| inputs.host_ip.to_owned())
        })
        // Kubernetes keeps the last IP of a pod whose sandbox is gone.
        .or_else(|| old.pod_ip.clone());
    let unready: Vec<&str> = statuses
        .iter()
        .filter(|s| !s.ready)
        .map(|s| s.name.as_str())
        .collect();
    let incomplete: Vec<&str> = init_statuses
        .iter()
        .filter(|s| {
            s.state
                .as_ref()
                .and_then(|s| s.terminated.as_ref())
                .is_none_or(|t| t.exit_code != 0)
        })
        .map(|s| s.name.as_str())
        .collect();
    let now = Time(inputs.now);
    let mut conditions: Vec<PodCondition> = Vec::new();
    let sandbox_ready = sandbox.is_some_and(|s| s.ready);
    conditions.push(condition(
        &old,
        "PodReadyToStartContainers",
        sandbox_ready,
        None,
        &now,
    ));
    conditions.push(condition(
        &old,
        "Initialized",
        initialized,
        (!initialized).then(|| {
            (
                "ContainersNotInitialized",
                format!(
                    "containers with incomplete status: [{}]",
                    incomplete.join(" ")
                ),
            )
        }),
        &now,
    ));
    // A finished pod is not ready, whatever its containers were.
    let terminal = matches!(phase, "Succeeded" | "Failed");
    let all_ready = unready.is_empty() && !terminal;
    let why_not = || {
        if terminal {
            ("PodCompleted", String::new())
        } else {
            (
                "ContainersNotReady",
                format!("containers with unready status: [{}]", unready.join(" ")),
            )
        }
    };
    conditions.push(condition(
        &old,
        "ContainersReady",
        all_ready,
        (!all_ready).then(why_not),
        &now,
    ));
    conditions.push(condition(
        &old,
        "Ready",
        all_ready,
        (!all_ready).then(why_not),
        &now,
    ));
    // Conditions others own (PodScheduled, DisruptionTarget, readiness gates) are kept.
    let ours = [
        "PodReadyToStartContainers",
        "Initialized",
        "ContainersReady",
        "Ready",
    ];
    for other in old.conditions.iter().flatten() {
        if !ours.contains(&other.type_.as_str()) {
            conditions.push(other.clone());
        }
    }
    PodStatus {
        phase: Some(phase.to_owned()),
        conditions: Some(conditions),
        host_ip: Some(inputs.host_ip.to_owned()).filter(|ip| !ip.is_empty()),
        host_ips: Some(vec![HostIP {
            ip: inputs.host_ip.to_owned(),
        }])
        .filter(|_| !inputs.host_ip.is_empty()),
        pod_ips: pod_ip.clone().map(|ip| vec![PodIP { ip }]),
        pod_ip,
        start_time: old.start_time.clone().or_else(|| Some(now.clone())),
        init_container_statuses: (!init_statuses.is_empty()).then_some(init_statuses),
        container_statuses: Some(statuses),
        qos_class: Some(qos_class(pod).to_owned()),
        nominated_node_name: old.nominated_node_name.clone(),
        ..Default::default()
    }
}

/// A condition of ours, its transition time kept while its status does not change.
fn condition(
    old: &PodStatus,
    type_: &str,
    ok: bool,
    why_not: Option<(&str, String)>,
    now: &Time,
) -> PodCondition {
    let status = if ok { "True" } else { "False" };
    let previous = old
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == type_ && c.status == status);
    let (reason, message) = match why_not {
        Some((reason, message)) => (
            Some(reason.to_owned()),
            Some(message).filter(|m| !m.is_empty()),
        ),
        None => (None, None),
    };
    PodCondition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        last_transition_time: previous
            .and_then(|p| p.last_transition_time.clone())
            .or_else(|| Some(now.clone())),
        last_probe_time: None,
        reason,
        message,
    }
}

/// kubelet's phase: Pending until initialized and every container has run; Running while any
/// runs (or all stopped but will restart); Succeeded or Failed once all stopped for good.
fn phase(
    inits: &[ContainerStatus],
    containers: &[ContainerStatus],
    initialized: bool,
    restart_policy: &str,
) -> &'static str {
    let failed_init = inits.iter().any(|s| {
        s.state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .is_some_and(|t| t.exit_code != 0)
    });
    if failed_init && restart_policy == "Never" {
        return "Failed";
    }
    if !initialized {
        return "Pending";
    }
    let (mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0);
    for status in containers {
        let state = status.state.clone().unwrap_or_default();
        if state.running.is_some() {
            running += 1;
        } else if let Some(terminated) = state.terminated {
            stopped += 1;
            if terminated.exit_code == 0 {
                succeeded += 1;
            }
        } else if status
            .last_state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .is_some()
        {
            // Waiting to run again after having run: it counts as stopped.
            stopped += 1;
            if status
                .last_state
                .as_ref()
                .and_then(|s| s.terminated.as_ref())
                .is_some_and(|t| t.exit_code == 0)
            {
                succeeded += 1;
            }
        } else {
            waiting += 1;
        }
    }
    if waiting > 0 {
        return "Pending";
    }
    if running > 0 {
        return "Running";
    }
    if stopped == containers.len() && !containers.is_empty() {
        return match restart_policy {
            "Always" => "Running",
            "OnFailure" if succeeded == stopped => "Succeeded",
            "OnFailure" => "Running",
            _ if succeeded == stopped => "Succeeded",
            _ => "Failed",
        };
    }
    "Pending"
}

fn nanos_time(nanos: i64) -> Option<Time> {
    (nanos > 0).then(|| Time(DateTime::from_timestamp_nanos(nanos)))
}

fn container_id(instance: &Instance) -> String {
    format!("containerd://{}", instance.id)
}

/// A stopped instance as a terminated state, with kubelet's reasons.
fn terminated(instance: &Instance) -> ContainerStateTerminated {
    let reason = if !instance.reason.is_empty() {
        instance.reason.clone()
    } else if instance.exit_code == 0 {
        "Completed".into()
    } else {
        "Error".into()
    };
    ContainerStateTerminated {
        exit_code: instance.exit_code,
        reason: Some(reason),
        message: Some(instance.message.clone()).filter(|m| !m.is_empty()),
        started_at: nanos_time(instance.started_at),
        finished_at: nanos_time(instance.finished_at),
        container_id: Some(container_id(instance)),
        signal: None,
    }
}

fn container_status(
    container: &Container,
    inputs: &Inputs<'_>,
    init: bool,
    pending_init: bool,
    old: &PodStatus,
) -> ContainerStatus {
    let mut instances = inputs.observed.instances_of(&container.name);
    let latest = instances.next();
    let previous = instances.next();
    let waiting = inputs.waiting.get(&container.name);
    let image = container.image.clone().unwrap_or_default();
    let mut status = ContainerStatus {
        name: container.name.clone(),
        image: image.clone(),
        image_id: String::new(),
        restart_count: latest.map_or(0, |l| i32::try_from(l.restart_count).unwrap_or(i32::MAX)),
        ready: false,
        started: Some(false),
        ..Default::default()
    };
    // A restart count survives in the status after the runtime lost the instances (a new
    // sandbox); never report fewer restarts than before.
    let old_count = old
        .container_statuses
        .iter()
        .chain(old.init_container_statuses.iter())
        .flatten()
        .find(|s| s.name == container.name)
        .map_or(0, |s| s.restart_count);
    status.restart_count = status.restart_count.max(old_count);
    let waiting_state = |w: &Waiting| ContainerState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(w.reason.clone()),
            message: Some(w.message.clone()).filter(|m| !m.is_empty()),
        }),
        ..Default::default()
    };
    match latest {
        Some(instance) => {
            status.container_id = Some(container_id(instance));
            status.image_id.clone_from(&instance.image_ref);
            if !instance.image.is_empty() {
                status.image.clone_from(&instance.image);
            }
            match instance.state {
                State::Running => {
                    let started = (inputs.started)(&container.name);
                    status.started = Some(started);
                    status.ready = !init && started && (inputs.ready)(&container.name);
                    status.state = Some(ContainerState {
                        running: Some(ContainerStateRunning {
                            started_at: nanos_time(instance.started_at),
                        }),
                        ..Default::default()
                    });
                    status.last_state = previous.map(|p| ContainerState {
                        terminated: Some(terminated(p)),
                        ..Default::default()
                    });
                }
                State::Exited => {
                    let last = ContainerState {
                        terminated: Some(terminated(instance)),
                        ..Default::default()
                    };
                    match waiting {
                        // About to run again (or held back): waiting, with the exit as its
                        // last state.
                        Some(w) => {
                            status.state = Some(waiting_state(w));
                            status.last_state = Some(last);
                        }
                        None => {
                            status.state = Some(last);
                            status.last_state = previous.map(|p| ContainerState {
                                terminated: Some(terminated(p)),
                                ..Default::default()
                            });
                        }
                    }
                }
                State::Created | State::Unknown => {
                    status.state = Some(waiting_state(waiting.unwrap_or(&Waiting {
                        reason: "ContainerCreating".into(),
                        message: String::new(),
                    })));
                }
            }
        }
        None => {
            let fallback = Waiting {
                reason: if !init && pending_init {
                    "PodInitializing".into()
                } else {
                    "ContainerCreating".into()
                },
                message: String::new(),
            };
            status.state = Some(waiting_state(waiting.unwrap_or(&fallback)));
        }
    }
    status
}

#[cfg(test)]
#[path = "status_tests.rs"]
mod tests;
