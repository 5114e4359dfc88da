//! Specifications of `plan`: kubelet's computePodActions over a pod and what the runtime holds.

use super::*;
use crate::pods::observed::Sandbox;
use serde_json::json;

fn pod(spec: serde_json::Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": "p", "namespace": "default", "uid": "u1"},
        "spec": spec,
    }))
    .expect("pod")
}

fn app(name: &str) -> serde_json::Value {
    json!({"name": name, "image": "keel.local/busybox:1"})
}

fn sandbox(ready: bool, attempt: u32) -> Sandbox {
    Sandbox {
        id: format!("s{attempt}"),
        attempt,
        ready,
        created_at: i64::from(attempt),
        ip: "10.0.0.2".into(),
    }
}

fn instance(pod: &Pod, name: &str, count: u32, state: State, exit_code: i32) -> Instance {
    let spec = pod.spec.as_ref().expect("spec");
    let container = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .find(|c| c.name == name)
        .expect("container");
    Instance {
        id: format!("{name}-{count}"),
        sandbox_id: "s0".into(),
        name: name.into(),
        restart_count: count,
        state,
        created_at: i64::from(count),
        started_at: 1,
        finished_at: 2,
        exit_code,
        reason: String::new(),
        message: String::new(),
        image: String::new(),
        image_ref: String::new(),
        hash: spec_hash(container),
    }
}

fn run(pod: &Pod, observed: &Observed) -> Plan {
    plan(pod, observed, &|_| false, &mut |_, _| Verdict::Go)
}

fn names(starts: &[Start]) -> Vec<(&str, u32)> {
    starts
        .iter()
        .map(|s| (s.name.as_str(), s.restart_count))
        .collect()
}

#[test]
fn a_new_pod_gets_a_sandbox_and_all_its_containers() {
    let pod = pod(json!({"containers": [app("a"), app("b")]}));
    let plan = run(&pod, &Observed::default());
    assert_eq!(plan.new_sandbox, Some(0));
    assert_eq!(names(&plan.start), [("a", 0), ("b", 0)]);
}

#[test]
fn init_containers_run_one_at_a_time_before_the_app_containers() {
    let pod = pod(json!({"initContainers": [app("i1"), app("i2")], "containers": [app("a")]}));
    let fresh = run(&pod, &Observed::default());
    assert_eq!(names(&fresh.start), [("i1", 0)]);
    let mut observed = Observed {
        sandboxes: vec![sandbox(true, 0)],
        instances: vec![instance(&pod, "i1", 0, State::Running, 0)],
    };
    assert!(run(&pod, &observed).start.is_empty(), "waits for i1");
    observed.instances = vec![instance(&pod, "i1", 0, State::Exited, 0)];
    assert_eq!(names(&run(&pod, &observed).start), [("i2", 0)]);
    observed
        .instances
        .push(instance(&pod, "i2", 0, State::Exited, 0));
    assert_eq!(names(&run(&pod, &observed).start), [("a", 0)]);
}

#[test]
fn a_failed_init_container_is_retried_unless_the_pod_never_restarts() {
    let always = pod(json!({"initContainers": [app("i")], "containers": [app("a")]}));
    let observed = Observed {
        sandboxes: vec![sandbox(true, 0)],
        instances: vec![instance(&always, "i", 0, State::Exited, 1)],
    };
    assert_eq!(names(&run(&always, &observed).start), [("i", 1)]);
    let never = pod(
        json!({"restartPolicy": "Never", "initContainers": [app("i")], "containers": [app("a")]}),
    );
    assert!(run(&never, &observed).start.is_empty());
}

#[test]
fn exited_containers_restart_as_the_restart_policy_says() {
    for (policy, exit_code, restarts) in [
        ("Always", 0, true),
        ("Always", 1, true),
        ("OnFailure", 0, false),
        ("OnFailure", 1, true),
        ("Never", 1, false),
    ] {
        let pod = pod(json!({"restartPolicy": policy, "containers": [app("a")]}));
        let observed = Observed {
            sandboxes: vec![sandbox(true, 0)],
            instances: vec![instance(&pod, "a", 2, State::Exited, exit_code)],
        };
        let plan = run(&pod, &observed);
        let expected: Vec<(&str, u32)> = if restarts { vec![("a", 3)] } else { vec![] };
        assert_eq!(names(&plan.start), expected, "{policy} exit {exit_code}");
    }
}

#[test]
fn a_container_in_back_off_waits_and_the_pod_is_looked_at_when_it_ends() {
    let pod = pod(json!({"containers": [app("a")]}));
    let observed = Observed {
        sandboxes: vec![sandbox(true, 0)],
        instances: vec![instance(&pod, "a", 1, State::Exited, 1)],
    };
    let wait = Verdict::Wait {
        delay: Duration::from_secs(20),
        remaining: Duration::from_secs(7),
    };
    let plan = plan(&pod, &observed, &|_| false, &mut |_, _| wait);
    assert!(plan.start.is_empty());
    assert_eq!(
        plan.backing_off.get("a"),
        Some(&BackingOff {
            delay: Duration::from_secs(20)
        })
    );
    assert_eq!(plan.requeue, Some(Duration::from_secs(7)));
}

#[test]
fn a_container_whose_liveness_failed_is_killed_and_one_whose_spec_changed_replaced() {
    let pod = pod(json!({"containers": [app("a")]}));
    let observed = Observed {
        sandboxes: vec![sandbox(true, 0)],
        instances: vec![instance(&pod, "a", 0, State::Running, 0)],
    };
    let unhealthy = plan(&pod, &observed, &|name| name == "a", &mut |_, _| {
        Verdict::Go
    });
    assert_eq!(unhealthy.kill[0].reason, KillReason::Unhealthy);
    assert!(
        unhealthy.start.is_empty(),
        "restarted once it stopped, behind its back-off"
    );
    let mut changed = observed.clone();
    changed.instances[0].hash = "old".into();
    let plan = run(&pod, &changed);
    assert_eq!(plan.kill[0].reason, KillReason::SpecChanged);
    assert!(
        run(&pod, &observed).kill.is_empty(),
        "a healthy container is left alone"
    );
}

#[test]
fn a_dead_sandbox_is_replaced_with_everything_in_it_unless_the_pod_never_restarts() {
    let pod_always = pod(json!({"containers": [app("a")]}));
    let observed = Observed {
        sandboxes: vec![sandbox(false, 0)],
        instances: vec![instance(&pod_always, "a", 0, State::Running, 0)],
    };
    let plan = run(&pod_always, &observed);
    assert_eq!(plan.new_sandbox, Some(1));
    assert_eq!(plan.kill.len(), 1);
    assert_eq!(names(&plan.start), [("a", 1)]);
    let never = pod(json!({"restartPolicy": "Never", "containers": [app("a")]}));
    let plan = run(&never, &observed);
    assert_eq!(plan.new_sandbox, None);
}
