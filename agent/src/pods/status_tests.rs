//! Specifications of `status`: kubelet's phase, conditions and container statuses.

use super::*;
use crate::pods::configs::spec_hash;
use crate::pods::observed::Sandbox;
use keel_types::k8s_openapi::api::core::v1::Container;
use serde_json::json;

fn pod(spec: serde_json::Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": "p", "namespace": "default", "uid": "u1"},
        "spec": spec,
        "status": {"conditions": [{"type": "PodScheduled", "status": "True"}]},
    }))
    .expect("pod")
}

fn app(name: &str) -> serde_json::Value {
    json!({"name": name, "image": "keel.local/busybox:1"})
}

fn instance(name: &str, count: u32, state: State, exit_code: i32) -> Instance {
    Instance {
        id: format!("{name}-{count}"),
        sandbox_id: "s".into(),
        name: name.into(),
        restart_count: count,
        state,
        created_at: i64::from(count) + 1,
        started_at: 1_000_000_000,
        finished_at: if state == State::Exited {
            2_000_000_000
        } else {
            0
        },
        exit_code,
        reason: String::new(),
        message: String::new(),
        image: String::new(),
        image_ref: "sha256:abc".into(),
        hash: spec_hash(&Container::default()),
    }
}

fn observed(instances: Vec<Instance>) -> Observed {
    Observed {
        sandboxes: vec![Sandbox {
            id: "s".into(),
            attempt: 0,
            ready: true,
            created_at: 1,
            ip: "10.1.0.5".into(),
        }],
        instances,
    }
}

fn status_of(pod: &Pod, observed: &Observed, waiting: &BTreeMap<String, Waiting>) -> PodStatus {
    pod_status(
        pod,
        &Inputs {
            observed,
            waiting,
            ready: &|_| true,
            started: &|_| true,
            host_ip: "192.168.1.2",
            now: Utc::now(),
        },
    )
}

fn condition<'a>(status: &'a PodStatus, type_: &str) -> &'a PodCondition {
    status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == type_)
        .expect("condition")
}

#[test]
fn a_pod_whose_containers_run_is_running_and_ready_with_its_addresses() {
    let pod = pod(json!({"containers": [app("a")]}));
    let status = status_of(
        &pod,
        &observed(vec![instance("a", 0, State::Running, 0)]),
        &BTreeMap::new(),
    );
    assert_eq!(status.phase.as_deref(), Some("Running"));
    assert_eq!(status.pod_ip.as_deref(), Some("10.1.0.5"));
    assert_eq!(status.host_ip.as_deref(), Some("192.168.1.2"));
    assert_eq!(condition(&status, "Ready").status, "True");
    assert_eq!(
        condition(&status, "PodScheduled").status,
        "True",
        "others' conditions are kept"
    );
    let container = &status.container_statuses.as_ref().expect("statuses")[0];
    assert!(container.ready);
    assert_eq!(container.container_id.as_deref(), Some("containerd://a-0"));
}

#[test]
fn a_container_not_yet_started_is_creating_and_the_pod_pending() {
    let pod = pod(json!({"containers": [app("a")]}));
    let status = status_of(&pod, &observed(vec![]), &BTreeMap::new());
    assert_eq!(status.phase.as_deref(), Some("Pending"));
    let waiting = status.container_statuses.as_ref().expect("statuses")[0]
        .state
        .clone()
        .and_then(|s| s.waiting)
        .expect("waiting");
    assert_eq!(waiting.reason.as_deref(), Some("ContainerCreating"));
    let ready = condition(&status, "Ready");
    assert_eq!(ready.status, "False");
    assert_eq!(ready.reason.as_deref(), Some("ContainersNotReady"));
    assert_eq!(
        ready.message.as_deref(),
        Some("containers with unready status: [a]")
    );
}

#[test]
fn app_containers_wait_with_pod_initializing_while_init_containers_run() {
    let pod = pod(json!({"initContainers": [app("i")], "containers": [app("a")]}));
    let status = status_of(
        &pod,
        &observed(vec![instance("i", 0, State::Running, 0)]),
        &BTreeMap::new(),
    );
    assert_eq!(status.phase.as_deref(), Some("Pending"));
    assert_eq!(condition(&status, "Initialized").status, "False");
    let waiting = status.container_statuses.as_ref().expect("statuses")[0]
        .state
        .clone()
        .and_then(|s| s.waiting)
        .and_then(|w| w.reason);
    assert_eq!(waiting.as_deref(), Some("PodInitializing"));
}

#[test]
fn a_crash_looping_container_waits_with_its_last_exit_and_the_pod_stays_running() {
    let pod = pod(json!({"containers": [app("a")]}));
    let waiting = BTreeMap::from([(
        "a".to_owned(),
        Waiting {
            reason: "CrashLoopBackOff".into(),
            message: "back-off 10s".into(),
        },
    )]);
    let status = status_of(
        &pod,
        &observed(vec![instance("a", 1, State::Exited, 2)]),
        &waiting,
    );
    assert_eq!(status.phase.as_deref(), Some("Running"));
    let container = &status.container_statuses.as_ref().expect("statuses")[0];
    assert_eq!(container.restart_count, 1);
    let last = container
        .last_state
        .clone()
        .and_then(|s| s.terminated)
        .expect("last state");
    assert_eq!((last.exit_code, last.reason.as_deref()), (2, Some("Error")));
    assert_eq!(
        container
            .state
            .clone()
            .and_then(|s| s.waiting)
            .and_then(|w| w.reason)
            .as_deref(),
        Some("CrashLoopBackOff")
    );
}

#[test]
fn pods_that_never_restart_end_succeeded_or_failed_by_their_exit_codes() {
    let pod = pod(json!({"restartPolicy": "Never", "containers": [app("a"), app("b")]}));
    let done = observed(vec![
        instance("a", 0, State::Exited, 0),
        instance("b", 0, State::Exited, 0),
    ]);
    assert_eq!(
        status_of(&pod, &done, &BTreeMap::new()).phase.as_deref(),
        Some("Succeeded")
    );
    let failed = observed(vec![
        instance("a", 0, State::Exited, 0),
        instance("b", 0, State::Exited, 1),
    ]);
    let status = status_of(&pod, &failed, &BTreeMap::new());
    assert_eq!(status.phase.as_deref(), Some("Failed"));
    assert_eq!(
        condition(&status, "Ready").reason.as_deref(),
        Some("PodCompleted")
    );
}

#[test]
fn transition_times_are_kept_while_a_condition_holds() {
    let mut pod = pod(json!({"containers": [app("a")]}));
    let running = observed(vec![instance("a", 0, State::Running, 0)]);
    let first = status_of(&pod, &running, &BTreeMap::new());
    pod.status = Some(first.clone());
    let second = pod_status(
        &pod,
        &Inputs {
            observed: &running,
            waiting: &BTreeMap::new(),
            ready: &|_| true,
            started: &|_| true,
            host_ip: "192.168.1.2",
            now: Utc::now() + keel_types::k8s_openapi::chrono::Duration::seconds(30),
        },
    );
    assert_eq!(
        condition(&first, "Ready").last_transition_time,
        condition(&second, "Ready").last_transition_time
    );
    assert_eq!(first.start_time, second.start_time);
}
