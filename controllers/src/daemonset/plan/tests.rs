//! Specification of one DaemonSet sync: creation where a pod is missing, removal where it may not stay, and the rolling update by maxUnavailable or maxSurge.

use super::*;
use keel_client::k8s_openapi::api::apps::v1::{
    DaemonSetSpec, DaemonSetUpdateStrategy, RollingUpdateDaemonSet,
};
use keel_client::k8s_openapi::api::core::v1::{PodCondition, PodStatus};
use keel_client::k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use keel_client::k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use keel_client::k8s_openapi::chrono::TimeDelta;

const NEW: &str = "new";
const OLD: &str = "old";

fn ds(max_unavailable: i32, max_surge: i32) -> DaemonSet {
    DaemonSet {
        metadata: ObjectMeta {
            generation: Some(2),
            ..Default::default()
        },
        spec: Some(DaemonSetSpec {
            update_strategy: Some(DaemonSetUpdateStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDaemonSet {
                    max_unavailable: Some(IntOrString::Int(max_unavailable)),
                    max_surge: Some(IntOrString::Int(max_surge)),
                }),
            }),
            ..Default::default()
        }),
        status: None,
    }
}

fn node(name: &str) -> Arc<Node> {
    Arc::new(Node {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        ..Default::default()
    })
}

fn pod(name: &str, revision: &str, ready: bool, phase: &str) -> Arc<Pod> {
    let now = Utc::now();
    Arc::new(Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(BTreeMap::from([(
                super::super::placement::REVISION_LABEL.to_string(),
                revision.to_string(),
            )])),
            creation_timestamp: Some(Time(now - TimeDelta::seconds(60))),
            ..Default::default()
        },
        spec: None,
        status: Some(PodStatus {
            phase: Some(phase.into()),
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: if ready { "True" } else { "False" }.into(),
                last_transition_time: Some(Time(now - TimeDelta::seconds(30))),
                ..Default::default()
            }]),
            ..Default::default()
        }),
    })
}

const RUN: Fit = Fit {
    should_run: true,
    may_stay: true,
};

fn fits(entries: &[(&str, Fit)]) -> HashMap<String, Fit> {
    entries.iter().map(|(n, f)| (n.to_string(), *f)).collect()
}

fn on(entries: Vec<(&str, Vec<Arc<Pod>>)>) -> BTreeMap<String, Vec<Arc<Pod>>> {
    entries
        .into_iter()
        .map(|(n, p)| (n.to_string(), p))
        .collect()
}

fn deleted(plan: &Plan) -> Vec<&str> {
    plan.delete
        .iter()
        .map(|(p, _)| p.metadata.name.as_deref().unwrap_or(""))
        .collect()
}

#[test]
fn a_pod_is_created_on_every_node_that_should_run_one() {
    let nodes = vec![node("a"), node("b"), node("c")];
    let fits = fits(&[
        ("a", RUN),
        ("b", RUN),
        (
            "c",
            Fit {
                should_run: false,
                may_stay: false,
            },
        ),
    ]);
    let pods = on(vec![("a", vec![pod("pa", NEW, true, "Running")])]);
    let plan = plan(&ds(1, 0), &nodes, &fits, &pods, NEW, Utc::now());
    assert_eq!(plan.create, vec!["b"]);
    assert!(plan.delete.is_empty());
}

#[test]
fn pods_leave_nodes_they_may_not_stay_on_but_survive_a_no_schedule_taint() {
    let nodes = vec![node("exec"), node("sched")];
    let fits = fits(&[
        (
            "exec",
            Fit {
                should_run: false,
                may_stay: false,
            },
        ),
        (
            "sched",
            Fit {
                should_run: false,
                may_stay: true,
            },
        ),
    ]);
    let pods = on(vec![
        ("exec", vec![pod("p1", NEW, true, "Running")]),
        ("sched", vec![pod("p2", NEW, true, "Running")]),
    ]);
    let plan = plan(&ds(1, 0), &nodes, &fits, &pods, NEW, Utc::now());
    assert_eq!(deleted(&plan), vec!["p1"]);
    assert!(plan.create.is_empty());
}

#[test]
fn a_rolling_update_replaces_at_most_max_unavailable_available_pods_at_a_time() {
    let nodes = vec![node("a"), node("b"), node("c")];
    let fits = fits(&[("a", RUN), ("b", RUN), ("c", RUN)]);
    let all_old = on(vec![
        ("a", vec![pod("pa", OLD, true, "Running")]),
        ("b", vec![pod("pb", OLD, true, "Running")]),
        ("c", vec![pod("pc", OLD, true, "Running")]),
    ]);
    let first = plan(&ds(1, 0), &nodes, &fits, &all_old, NEW, Utc::now());
    assert_eq!(deleted(&first), vec!["pa"]);
    // Node a is now without a pod (unavailable): nothing more is deleted until it has one.
    let one_missing = on(vec![
        ("b", vec![pod("pb", OLD, true, "Running")]),
        ("c", vec![pod("pc", OLD, true, "Running")]),
    ]);
    let second = plan(&ds(1, 0), &nodes, &fits, &one_missing, NEW, Utc::now());
    assert_eq!(second.create, vec!["a"]);
    assert!(second.delete.is_empty());
    // An old pod that is not available anyway is replaced regardless of the budget.
    let broken = on(vec![
        ("a", vec![pod("pa", NEW, false, "Running")]),
        ("b", vec![pod("pb", OLD, false, "Running")]),
        ("c", vec![pod("pc", OLD, true, "Running")]),
    ]);
    let third = plan(&ds(1, 0), &nodes, &fits, &broken, NEW, Utc::now());
    assert_eq!(deleted(&third), vec!["pb"]);
}

#[test]
fn with_max_surge_the_new_pod_starts_beside_the_old_which_goes_once_it_is_available() {
    let nodes = vec![node("a"), node("b")];
    let fits = fits(&[("a", RUN), ("b", RUN)]);
    let all_old = on(vec![
        ("a", vec![pod("pa", OLD, true, "Running")]),
        ("b", vec![pod("pb", OLD, true, "Running")]),
    ]);
    let first = plan(&ds(0, 1), &nodes, &fits, &all_old, NEW, Utc::now());
    assert_eq!(first.create, vec!["a"]);
    assert!(first.delete.is_empty());
    let surging = on(vec![
        (
            "a",
            vec![
                pod("pa", OLD, true, "Running"),
                pod("pa2", NEW, false, "Running"),
            ],
        ),
        ("b", vec![pod("pb", OLD, true, "Running")]),
    ]);
    let waiting = plan(&ds(0, 1), &nodes, &fits, &surging, NEW, Utc::now());
    assert!(waiting.create.is_empty(), "the surge budget is in use");
    assert!(waiting.delete.is_empty());
    let ready = on(vec![
        (
            "a",
            vec![
                pod("pa", OLD, true, "Running"),
                pod("pa2", NEW, true, "Running"),
            ],
        ),
        ("b", vec![pod("pb", OLD, true, "Running")]),
    ]);
    let done = plan(&ds(0, 1), &nodes, &fits, &ready, NEW, Utc::now());
    assert_eq!(deleted(&done), vec!["pa"]);
}

#[test]
fn a_failed_daemon_pod_is_deleted_and_replaced_on_the_next_sync() {
    let nodes = vec![node("a")];
    let fits = fits(&[("a", RUN)]);
    let pods = on(vec![("a", vec![pod("dead", NEW, false, "Failed")])]);
    let plan = plan(&ds(1, 0), &nodes, &fits, &pods, NEW, Utc::now());
    assert_eq!(plan.delete.len(), 1);
    assert_eq!(plan.delete[0].1, "FailedDaemonPod");
    assert!(plan.create.is_empty());
}

#[test]
fn the_status_counts_nodes_as_kubernetes_does() {
    let fits = fits(&[
        ("a", RUN),
        ("b", RUN),
        ("c", RUN),
        (
            "x",
            Fit {
                should_run: false,
                may_stay: true,
            },
        ),
    ]);
    let pods = on(vec![
        ("a", vec![pod("pa", NEW, true, "Running")]),
        ("b", vec![pod("pb", OLD, false, "Running")]),
        ("x", vec![pod("px", NEW, true, "Running")]),
    ]);
    let s = status(&ds(1, 0), &fits, &pods, NEW, Utc::now());
    assert_eq!(s.desired_number_scheduled, 3);
    assert_eq!(s.current_number_scheduled, 2);
    assert_eq!(s.number_misscheduled, 1);
    assert_eq!(s.number_ready, 1);
    assert_eq!(s.number_available, Some(1));
    assert_eq!(s.updated_number_scheduled, Some(1));
    assert_eq!(s.number_unavailable, Some(2));
    assert_eq!(s.observed_generation, Some(2));
}
