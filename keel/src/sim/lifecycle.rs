//! A simulated pod's life, as its kubelet would report it: given the pod as the API server
//! holds it and the time, what to do next — start it, end or restart its containers, delete
//! it for good, or wait. Pure: the clock is an argument, and the statuses are built from the
//! pod alone, so every step is specified by tests with explicit times.
//!
//! The life, kept simple on purpose:
//! - A pod bound to a node starts at once: `Running`, every container running and ready,
//!   every init container `Completed` (a sidecar — an init container with restartPolicy
//!   Always — runs alongside the others).
//! - Annotated `keel.dev/sim-run-time: <Go duration>`, its containers exit that long after
//!   they started, with `keel.dev/sim-exit-code` (default 0). Then restartPolicy decides, for
//!   the pod as a whole: `Never` ends it (`Succeeded`, or `Failed` for a non-zero code);
//!   `OnFailure` ends it on 0 and restarts it otherwise; `Always` restarts it. A restart
//!   bumps every container's restartCount, records the exit in lastState and runs them
//!   again at once, with no crash-loop backoff: the pod stays `Running`.
//! - A pod marked for deletion is deleted for good once its deletionTimestamp (marking time
//!   plus grace period) has passed, as if its containers used the whole grace period to stop.
//!
//! Times are read back from the pod, where the API keeps them to the second: a run time is
//! counted from the start as recorded, up to a second before the real one, so that a
//! restarted sim finishes what an earlier one started at the same moment.

use std::net::Ipv4Addr;
use std::time::Duration;

use keel_types::k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStatus,
    HostIP, Pod, PodCondition, PodIP, PodStatus,
};
use keel_types::k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use keel_types::k8s_openapi::chrono::{DateTime, TimeDelta, Utc};

use crate::duration::{self, DurationError};

/// How long the pod's containers run before exiting (absent: for ever).
pub const RUN_TIME: &str = "keel.dev/sim-run-time";
/// The code they exit with (absent: 0).
pub const EXIT_CODE: &str = "keel.dev/sim-exit-code";

/// What a pod's annotations ask of its simulated containers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Script {
    pub run_time: Option<Duration>,
    pub exit_code: i32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScriptError {
    #[error("annotation {RUN_TIME}: {0}")]
    RunTime(#[from] DurationError),
    #[error("annotation {EXIT_CODE}: {0:?} is not an exit code")]
    ExitCode(String),
}

impl Script {
    /// The script `pod`'s annotations spell out.
    pub fn of(pod: &Pod) -> Result<Script, ScriptError> {
        let annotation = |key: &str| {
            pod.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(key))
                .map(|v| v.trim())
        };
        let run_time = annotation(RUN_TIME).map(duration::parse).transpose()?;
        let exit_code = match annotation(EXIT_CODE) {
            Some(code) => code
                .parse()
                .map_err(|_| ScriptError::ExitCode(code.to_string()))?,
            None => 0,
        };
        Ok(Script {
            run_time,
            exit_code,
        })
    }
}

/// Where a starting pod runs: its node's address and the address it was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sandbox {
    pub host_ip: Ipv4Addr,
    pub pod_ip: Ipv4Addr,
}

/// What to do with a pod now.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Nothing to write; look again at that time, or only when the pod changes.
    Wait(Option<DateTime<Utc>>),
    /// Start it: give it an address and post [`started`]'s status.
    Start,
    /// Post this status: its containers exited, and it ended or restarted.
    Post(Box<PodStatus>),
    /// Delete it for good, with grace period 0 and this UID as precondition.
    Delete { uid: String },
}

/// The next step of `pod`'s life at `now`.
pub fn decide(pod: &Pod, script: &Script, now: DateTime<Utc>) -> Decision {
    if let Some(deadline) = &pod.metadata.deletion_timestamp {
        return if now >= deadline.0 {
            Decision::Delete {
                uid: pod.metadata.uid.clone().unwrap_or_default(),
            }
        } else {
            Decision::Wait(Some(deadline.0))
        };
    }
    match phase(pod) {
        "Succeeded" | "Failed" => Decision::Wait(None),
        "Running" => {
            let exits_at = script
                .run_time
                .zip(running_since(pod))
                .and_then(|(run, since)| since.checked_add_signed(TimeDelta::from_std(run).ok()?));
            match exits_at {
                Some(at) if now >= at => Decision::Post(Box::new(exited(pod, script, now))),
                at => Decision::Wait(at),
            }
        }
        _ => Decision::Start,
    }
}

/// `pod`'s status once started in `sandbox` at `now`.
pub fn started(pod: &Pod, sandbox: &Sandbox, now: DateTime<Utc>) -> PodStatus {
    let uid = uid(pod);
    let mut status = pod.status.clone().unwrap_or_default();
    let (init, main) = containers(pod);
    status.phase = Some("Running".into());
    status.host_ip = Some(sandbox.host_ip.to_string());
    status.host_ips = Some(vec![HostIP {
        ip: sandbox.host_ip.to_string(),
    }]);
    status.pod_ip = Some(sandbox.pod_ip.to_string());
    status.pod_ips = Some(vec![PodIP {
        ip: sandbox.pod_ip.to_string(),
    }]);
    status.start_time = status.start_time.or(Some(Time(now)));
    status.init_container_statuses = (!init.is_empty()).then(|| {
        init.iter()
            .map(|c| {
                if is_sidecar(c) {
                    running(uid, c, 0, now)
                } else {
                    completed_init(uid, c, now)
                }
            })
            .collect()
    });
    status.container_statuses = Some(main.iter().map(|c| running(uid, c, 0, now)).collect());
    status.conditions = Some(conditions(
        status.conditions.as_deref(),
        &[
            ("PodReadyToStartContainers", true, None),
            ("Initialized", true, None),
            ("Ready", true, None),
            ("ContainersReady", true, None),
            ("PodScheduled", true, None),
        ],
        now,
    ));
    status
}

/// `pod`'s status once its containers exited at `now`: ended, or restarted as its
/// restartPolicy says.
fn exited(pod: &Pod, script: &Script, now: DateTime<Utc>) -> PodStatus {
    let failed = script.exit_code != 0;
    let policy = pod
        .spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        .unwrap_or("Always");
    let restart = match policy {
        "Never" => false,
        "OnFailure" => failed,
        _ => true,
    };
    let uid = uid(pod);
    let mut status = pod.status.clone().unwrap_or_default();
    let exit = |old: &ContainerStatus| ContainerStateTerminated {
        exit_code: script.exit_code,
        reason: Some(if failed { "Error" } else { "Completed" }.into()),
        started_at: started_at(old),
        finished_at: Some(Time(now)),
        container_id: old.container_id.clone(),
        ..Default::default()
    };
    if restart {
        let (init, main) = containers(pod);
        let restarted = |old: &ContainerStatus, c: &Container| {
            let restarts = old.restart_count.saturating_add(1);
            ContainerStatus {
                last_state: Some(terminated(exit(old))),
                ..running(uid, c, restarts, now)
            }
        };
        status.container_statuses =
            Some(per_container(&status.container_statuses, main, restarted));
        if let Some(old) = &status.init_container_statuses {
            // Sidecars restart with the pod; completed init containers stay completed.
            let init_statuses = old
                .iter()
                .map(
                    |s| match init.iter().find(|c| c.name == s.name && is_sidecar(c)) {
                        Some(c) => restarted(s, c),
                        None => s.clone(),
                    },
                )
                .collect();
            status.init_container_statuses = Some(init_statuses);
        }
        return status;
    }
    let stopped = |old: &ContainerStatus| ContainerStatus {
        ready: false,
        started: Some(false),
        state: Some(terminated(exit(old))),
        ..old.clone()
    };
    status.container_statuses = status
        .container_statuses
        .as_ref()
        .map(|all| all.iter().map(stopped).collect());
    if let Some(old) = &status.init_container_statuses {
        let stop_sidecar = |s: &ContainerStatus| {
            if s.state.as_ref().is_some_and(|st| st.running.is_some()) {
                stopped(s)
            } else {
                s.clone()
            }
        };
        status.init_container_statuses = Some(old.iter().map(stop_sidecar).collect());
    }
    status.phase = Some(if failed { "Failed" } else { "Succeeded" }.into());
    let completed = Some("PodCompleted");
    status.conditions = Some(conditions(
        status.conditions.as_deref(),
        &[
            ("PodReadyToStartContainers", false, None),
            ("Initialized", true, None),
            ("Ready", false, completed),
            ("ContainersReady", false, completed),
            ("PodScheduled", true, None),
        ],
        now,
    ));
    status
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending")
}

fn uid(pod: &Pod) -> &str {
    pod.metadata.uid.as_deref().unwrap_or_default()
}

/// The pod's init containers and its containers.
fn containers(pod: &Pod) -> (&[Container], &[Container]) {
    match &pod.spec {
        Some(spec) => (
            spec.init_containers.as_deref().unwrap_or_default(),
            &spec.containers,
        ),
        None => (&[], &[]),
    }
}

fn is_sidecar(c: &Container) -> bool {
    c.restart_policy.as_deref() == Some("Always")
}

/// When the containers last started: the latest start of a running container, else the
/// pod's start time.
fn running_since(pod: &Pod) -> Option<DateTime<Utc>> {
    let status = pod.status.as_ref()?;
    status
        .container_statuses
        .iter()
        .flatten()
        .filter_map(|s| s.state.as_ref()?.running.as_ref()?.started_at.as_ref())
        .map(|t| t.0)
        .max()
        .or_else(|| status.start_time.as_ref().map(|t| t.0))
}

fn started_at(status: &ContainerStatus) -> Option<Time> {
    status.state.as_ref()?.running.as_ref()?.started_at.clone()
}

/// A container's ID in the simulated runtime; each restart is a new container.
fn container_id(uid: &str, name: &str, restarts: i32) -> String {
    match restarts {
        0 => format!("sim://{uid}-{name}"),
        n => format!("sim://{uid}-{name}-{n}"),
    }
}

fn running(uid: &str, c: &Container, restarts: i32, now: DateTime<Utc>) -> ContainerStatus {
    let image = c.image.clone().unwrap_or_default();
    ContainerStatus {
        name: c.name.clone(),
        image_id: format!("sim://{image}"),
        image,
        container_id: Some(container_id(uid, &c.name, restarts)),
        ready: true,
        started: Some(true),
        restart_count: restarts,
        state: Some(ContainerState {
            running: Some(ContainerStateRunning {
                started_at: Some(Time(now)),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn completed_init(uid: &str, c: &Container, now: DateTime<Utc>) -> ContainerStatus {
    let image = c.image.clone().unwrap_or_default();
    let id = container_id(uid, &c.name, 0);
    ContainerStatus {
        name: c.name.clone(),
        image_id: format!("sim://{image}"),
        image,
        container_id: Some(id.clone()),
        ready: true,
        started: Some(false),
        restart_count: 0,
        state: Some(terminated(ContainerStateTerminated {
            exit_code: 0,
            reason: Some("Completed".into()),
            started_at: Some(Time(now)),
            finished_at: Some(Time(now)),
            container_id: Some(id),
            ..Default::default()
        })),
        ..Default::default()
    }
}

fn terminated(t: ContainerStateTerminated) -> ContainerState {
    ContainerState {
        terminated: Some(t),
        ..Default::default()
    }
}

/// Maps each container of `spec` through `f` with its current status (an empty one if it
/// has none yet).
fn per_container(
    statuses: &Option<Vec<ContainerStatus>>,
    spec: &[Container],
    f: impl Fn(&ContainerStatus, &Container) -> ContainerStatus,
) -> Vec<ContainerStatus> {
    spec.iter()
        .map(|c| {
            let old = statuses
                .iter()
                .flatten()
                .find(|s| s.name == c.name)
                .cloned()
                .unwrap_or_default();
            f(&old, c)
        })
        .collect()
}

/// The pod conditions `wanted` (type, status, reason), in that order, after any others:
/// a condition whose status does not change keeps its transition time, as kubelet keeps it.
fn conditions(
    current: Option<&[PodCondition]>,
    wanted: &[(&str, bool, Option<&str>)],
    now: DateTime<Utc>,
) -> Vec<PodCondition> {
    let current = current.unwrap_or_default();
    let mut out: Vec<PodCondition> = current
        .iter()
        .filter(|c| !wanted.iter().any(|(t, _, _)| *t == c.type_))
        .cloned()
        .collect();
    for (type_, on, reason) in wanted {
        let status = if *on { "True" } else { "False" };
        let old = current.iter().find(|c| c.type_ == *type_);
        let since = match old {
            Some(c) if c.status == status => c.last_transition_time.clone(),
            _ => Some(Time(now)),
        };
        out.push(PodCondition {
            type_: type_.to_string(),
            status: status.into(),
            reason: reason.map(str::to_string),
            last_transition_time: since,
            ..Default::default()
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_types::k8s_openapi::api::core::v1::PodSpec;
    use keel_types::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use keel_types::k8s_openapi::chrono::TimeZone;
    use std::collections::BTreeMap;

    const SANDBOX: Sandbox = Sandbox {
        host_ip: Ipv4Addr::new(10, 1, 0, 1),
        pod_ip: Ipv4Addr::new(10, 64, 0, 2),
    };

    fn at(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 + secs, 0).unwrap()
    }

    fn container(name: &str) -> Container {
        Container {
            name: name.into(),
            image: Some(format!("registry.example/{name}:1")),
            ..Default::default()
        }
    }

    fn pod(annotations: &[(&str, &str)], restart_policy: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("default".into()),
                uid: Some("u-1".into()),
                annotations: Some(
                    annotations
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect::<BTreeMap<_, _>>(),
                ),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: Some("sim-node-0000".into()),
                restart_policy: Some(restart_policy.into()),
                containers: vec![container("app"), container("log")],
                init_containers: Some(vec![container("setup")]),
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: Some("Pending".into()),
                qos_class: Some("BestEffort".into()),
                conditions: Some(vec![PodCondition {
                    type_: "PodScheduled".into(),
                    status: "True".into(),
                    last_transition_time: Some(Time(at(-5))),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        }
    }

    fn script(pod: &Pod) -> Script {
        Script::of(pod).unwrap()
    }

    /// `pod` as it reads after the sim started it at `t`.
    fn started_at_time(mut pod: Pod, t: DateTime<Utc>) -> Pod {
        pod.status = Some(started(&pod, &SANDBOX, t));
        pod
    }

    fn condition<'a>(status: &'a PodStatus, type_: &str) -> &'a PodCondition {
        status
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == type_)
            .unwrap()
    }

    fn posted(decision: Decision) -> PodStatus {
        match decision {
            Decision::Post(status) => *status,
            other => panic!("expected a status to post, got {other:?}"),
        }
    }

    #[test]
    fn a_pending_pod_is_started() {
        let pod = pod(&[], "Always");

        assert_eq!(decide(&pod, &script(&pod), at(0)), Decision::Start);
    }

    #[test]
    fn a_started_pod_is_running_and_ready_with_its_addresses() {
        let pod = pod(&[], "Always");

        let status = started(&pod, &SANDBOX, at(0));

        assert_eq!(status.phase.as_deref(), Some("Running"));
        assert_eq!(status.host_ip.as_deref(), Some("10.1.0.1"));
        assert_eq!(status.pod_ip.as_deref(), Some("10.64.0.2"));
        assert_eq!(status.pod_ips.as_ref().unwrap()[0].ip, "10.64.0.2");
        assert_eq!(status.host_ips.as_ref().unwrap()[0].ip, "10.1.0.1");
        assert_eq!(status.start_time, Some(Time(at(0))));
        assert_eq!(status.qos_class.as_deref(), Some("BestEffort"), "kept");
        for type_ in ["PodScheduled", "Initialized", "ContainersReady", "Ready"] {
            assert_eq!(condition(&status, type_).status, "True", "{type_}");
        }
        assert_eq!(
            condition(&status, "PodScheduled").last_transition_time,
            Some(Time(at(-5))),
            "the scheduler's condition keeps its time"
        );
        assert_eq!(
            condition(&status, "Ready").last_transition_time,
            Some(Time(at(0)))
        );
    }

    #[test]
    fn every_container_runs_and_every_init_container_completed() {
        let pod = pod(&[], "Always");

        let status = started(&pod, &SANDBOX, at(0));

        let containers = status.container_statuses.unwrap();
        assert_eq!(containers.len(), 2);
        let app = &containers[0];
        assert_eq!(app.name, "app");
        assert!(app.ready);
        assert_eq!(app.started, Some(true));
        assert_eq!(app.restart_count, 0);
        assert_eq!(app.image, "registry.example/app:1");
        assert_eq!(app.image_id, "sim://registry.example/app:1");
        assert_eq!(app.container_id.as_deref(), Some("sim://u-1-app"));
        let running = app.state.as_ref().unwrap().running.as_ref().unwrap();
        assert_eq!(running.started_at, Some(Time(at(0))));
        let init = status.init_container_statuses.unwrap();
        let done = init[0].state.as_ref().unwrap().terminated.as_ref().unwrap();
        assert_eq!(done.reason.as_deref(), Some("Completed"));
        assert_eq!(done.exit_code, 0);
    }

    #[test]
    fn a_sidecar_init_container_keeps_running() {
        let mut pod = pod(&[], "Always");
        if let Some(spec) = pod.spec.as_mut() {
            spec.init_containers = Some(vec![Container {
                restart_policy: Some("Always".into()),
                ..container("proxy")
            }]);
        }

        let status = started(&pod, &SANDBOX, at(0));

        let proxy = &status.init_container_statuses.unwrap()[0];
        assert!(proxy.state.as_ref().unwrap().running.is_some());
        assert!(proxy.ready);
    }

    #[test]
    fn a_running_pod_without_a_run_time_runs_for_ever() {
        let pod = started_at_time(pod(&[], "Never"), at(0));

        assert_eq!(
            decide(&pod, &script(&pod), at(1_000_000)),
            Decision::Wait(None)
        );
    }

    #[test]
    fn a_running_pod_waits_until_its_run_time_is_up() {
        let pod = started_at_time(pod(&[(RUN_TIME, "5s")], "Never"), at(0));

        assert_eq!(
            decide(&pod, &script(&pod), at(4)),
            Decision::Wait(Some(at(5)))
        );
    }

    #[test]
    fn after_its_run_time_a_never_restarting_pod_succeeds() {
        let pod = started_at_time(pod(&[(RUN_TIME, "5s")], "Never"), at(0));

        let status = posted(decide(&pod, &script(&pod), at(5)));

        assert_eq!(status.phase.as_deref(), Some("Succeeded"));
        let app = &status.container_statuses.as_ref().unwrap()[0];
        let exit = app.state.as_ref().unwrap().terminated.as_ref().unwrap();
        assert_eq!(exit.exit_code, 0);
        assert_eq!(exit.reason.as_deref(), Some("Completed"));
        assert_eq!(exit.started_at, Some(Time(at(0))));
        assert_eq!(exit.finished_at, Some(Time(at(5))));
        assert_eq!(exit.container_id.as_deref(), Some("sim://u-1-app"));
        assert!(!app.ready);
        let ready = condition(&status, "Ready");
        assert_eq!(ready.status, "False");
        assert_eq!(ready.reason.as_deref(), Some("PodCompleted"));
        assert_eq!(status.pod_ip.as_deref(), Some("10.64.0.2"), "kept");
    }

    #[test]
    fn a_non_zero_exit_code_fails_the_pod_with_reason_error() {
        let pod = started_at_time(pod(&[(RUN_TIME, "1s"), (EXIT_CODE, "1")], "Never"), at(0));

        let status = posted(decide(&pod, &script(&pod), at(2)));

        assert_eq!(status.phase.as_deref(), Some("Failed"));
        let exit = status.container_statuses.as_ref().unwrap()[1]
            .state
            .as_ref()
            .unwrap()
            .terminated
            .clone()
            .unwrap();
        assert_eq!(exit.exit_code, 1);
        assert_eq!(exit.reason.as_deref(), Some("Error"));
    }

    #[test]
    fn an_always_restarting_pod_restarts_its_containers_and_stays_running() {
        let pod = started_at_time(pod(&[(RUN_TIME, "5s")], "Always"), at(0));

        let status = posted(decide(&pod, &script(&pod), at(6)));

        assert_eq!(status.phase.as_deref(), Some("Running"));
        assert_eq!(condition(&status, "Ready").status, "True");
        let app = &status.container_statuses.as_ref().unwrap()[0];
        assert_eq!(app.restart_count, 1);
        assert!(app.ready);
        assert_eq!(app.container_id.as_deref(), Some("sim://u-1-app-1"));
        let running = app.state.as_ref().unwrap().running.as_ref().unwrap();
        assert_eq!(running.started_at, Some(Time(at(6))));
        let last = app
            .last_state
            .as_ref()
            .unwrap()
            .terminated
            .as_ref()
            .unwrap();
        assert_eq!(last.exit_code, 0);
        assert_eq!(last.finished_at, Some(Time(at(6))));
        assert_eq!(last.container_id.as_deref(), Some("sim://u-1-app"));
    }

    #[test]
    fn a_restarted_pod_runs_its_run_time_again_from_the_restart() {
        let pod = started_at_time(pod(&[(RUN_TIME, "5s")], "Always"), at(0));
        let restarted = Pod {
            status: Some(posted(decide(&pod, &script(&pod), at(6)))),
            ..pod
        };

        assert_eq!(
            decide(&restarted, &script(&restarted), at(7)),
            Decision::Wait(Some(at(11)))
        );
        let again = posted(decide(&restarted, &script(&restarted), at(11)));
        assert_eq!(again.container_statuses.unwrap()[0].restart_count, 2);
    }

    #[test]
    fn on_failure_ends_on_success_and_restarts_on_failure() {
        let ok = started_at_time(pod(&[(RUN_TIME, "1s")], "OnFailure"), at(0));
        let bad = started_at_time(
            pod(&[(RUN_TIME, "1s"), (EXIT_CODE, "3")], "OnFailure"),
            at(0),
        );

        let ok = posted(decide(&ok, &script(&ok), at(1)));
        let bad = posted(decide(&bad, &script(&bad), at(1)));

        assert_eq!(ok.phase.as_deref(), Some("Succeeded"));
        assert_eq!(bad.phase.as_deref(), Some("Running"));
        assert_eq!(bad.container_statuses.unwrap()[0].restart_count, 1);
    }

    #[test]
    fn an_ended_pod_is_left_alone() {
        let pod = started_at_time(pod(&[(RUN_TIME, "1s")], "Never"), at(0));
        let ended = Pod {
            status: Some(posted(decide(&pod, &script(&pod), at(1)))),
            ..pod
        };

        assert_eq!(
            decide(&ended, &script(&ended), at(100)),
            Decision::Wait(None)
        );
    }

    #[test]
    fn a_pod_marked_for_deletion_is_deleted_once_its_grace_period_has_passed() {
        let mut pod = started_at_time(pod(&[], "Always"), at(0));
        // Marked at 10 with a 30 s grace period.
        pod.metadata.deletion_timestamp = Some(Time(at(40)));
        pod.metadata.deletion_grace_period_seconds = Some(30);

        assert_eq!(
            decide(&pod, &script(&pod), at(39)),
            Decision::Wait(Some(at(40)))
        );
        assert_eq!(
            decide(&pod, &script(&pod), at(40)),
            Decision::Delete { uid: "u-1".into() }
        );
    }

    #[test]
    fn a_pod_marked_with_no_grace_is_deleted_at_once_even_before_it_started() {
        let mut pod = pod(&[], "Always");
        pod.metadata.deletion_timestamp = Some(Time(at(10)));
        pod.metadata.deletion_grace_period_seconds = Some(0);

        assert_eq!(
            decide(&pod, &script(&pod), at(10)),
            Decision::Delete { uid: "u-1".into() }
        );
    }

    #[test]
    fn scripts_come_from_the_annotations() {
        let plain = pod(&[], "Always");
        let timed = pod(&[(RUN_TIME, "1m30s"), (EXIT_CODE, "2")], "Always");

        assert_eq!(script(&plain), Script::default());
        assert_eq!(
            script(&timed),
            Script {
                run_time: Some(Duration::from_secs(90)),
                exit_code: 2
            }
        );
        assert!(Script::of(&pod(&[(RUN_TIME, "soon")], "Always")).is_err());
        assert!(Script::of(&pod(&[(EXIT_CODE, "one")], "Always")).is_err());
    }
}
