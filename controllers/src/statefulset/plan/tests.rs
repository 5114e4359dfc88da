//! Specification of one StatefulSet sync: ordered or parallel creation and removal, and the rolling update down to the partition.

use super::*;
use keel_client::k8s_openapi::api::apps::v1::{
    RollingUpdateStatefulSetStrategy, StatefulSetSpec, StatefulSetUpdateStrategy,
};
use keel_client::k8s_openapi::api::core::v1::{PodCondition, PodStatus};
use keel_client::k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use keel_client::k8s_openapi::chrono::TimeDelta;

fn set(replicas: i32, parallel: bool, partition: i32) -> StatefulSet {
    StatefulSet {
        metadata: ObjectMeta {
            name: Some("web".into()),
            generation: Some(3),
            ..Default::default()
        },
        spec: Some(StatefulSetSpec {
            replicas: Some(replicas),
            pod_management_policy: Some(if parallel { "Parallel" } else { "OrderedReady" }.into()),
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateStatefulSetStrategy {
                    partition: Some(partition),
                    max_unavailable: None,
                }),
            }),
            ..Default::default()
        }),
        status: None,
    }
}

fn pod(ordinal: i32, revision: &str, ready: bool, terminating: bool) -> Arc<Pod> {
    let now = Utc::now();
    Arc::new(Pod {
        metadata: ObjectMeta {
            name: Some(format!("web-{ordinal}")),
            labels: Some(BTreeMap::from([(
                REVISION_LABEL.to_string(),
                revision.to_string(),
            )])),
            deletion_timestamp: terminating.then_some(Time(now)),
            ..Default::default()
        },
        spec: None,
        status: Some(PodStatus {
            phase: Some("Running".into()),
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: if ready { "True" } else { "False" }.into(),
                last_transition_time: Some(Time(now - TimeDelta::seconds(10))),
                ..Default::default()
            }]),
            ..Default::default()
        }),
    })
}

fn pods(list: Vec<Arc<Pod>>) -> BTreeMap<i32, Arc<Pod>> {
    by_ordinal(&set(0, false, 0), &list)
}

fn summary(steps: &[Step]) -> Vec<String> {
    steps
        .iter()
        .map(|s| match s {
            Step::Create { ordinal, from } => format!("create {ordinal} {from:?}"),
            Step::Delete { pod, reason } => format!(
                "delete {} {reason:?}",
                pod.metadata.name.as_deref().unwrap_or("")
            ),
        })
        .collect()
}

#[test]
fn ordered_creation_goes_one_pod_at_a_time_and_waits_for_readiness() {
    let s = set(3, false, 0);
    let now = Utc::now();
    assert_eq!(
        summary(&plan(&s, &pods(vec![]), "r1", now)),
        vec!["create 0 Update"]
    );
    let not_ready = pods(vec![pod(0, "r1", false, false)]);
    assert!(
        plan(&s, &not_ready, "r1", now).is_empty(),
        "web-0 is not ready yet"
    );
    let ready = pods(vec![pod(0, "r1", true, false)]);
    assert_eq!(
        summary(&plan(&s, &ready, "r1", now)),
        vec!["create 1 Update"]
    );
}

#[test]
fn parallel_creation_and_deletion_happen_at_once() {
    let s = set(3, true, 0);
    let now = Utc::now();
    assert_eq!(
        summary(&plan(&s, &pods(vec![]), "r1", now)),
        vec!["create 0 Update", "create 1 Update", "create 2 Update"]
    );
    let s = set(1, true, 0);
    let three = pods(vec![
        pod(0, "r1", true, false),
        pod(1, "r1", true, false),
        pod(2, "r1", true, false),
    ]);
    assert_eq!(
        summary(&plan(&s, &three, "r1", now)),
        vec!["delete web-2 ScaledDown", "delete web-1 ScaledDown"]
    );
}

#[test]
fn ordered_scale_down_removes_the_highest_first_and_waits_for_it_to_go() {
    let s = set(1, false, 0);
    let now = Utc::now();
    let three = pods(vec![
        pod(0, "r1", true, false),
        pod(1, "r1", true, false),
        pod(2, "r1", true, false),
    ]);
    assert_eq!(
        summary(&plan(&s, &three, "r1", now)),
        vec!["delete web-2 ScaledDown"]
    );
    let going = pods(vec![
        pod(0, "r1", true, false),
        pod(1, "r1", true, false),
        pod(2, "r1", true, true),
    ]);
    assert!(plan(&s, &going, "r1", now).is_empty());
}

#[test]
fn a_rolling_update_replaces_from_the_top_down_to_the_partition_one_at_a_time() {
    let now = Utc::now();
    let old = pods(vec![
        pod(0, "r1", true, false),
        pod(1, "r1", true, false),
        pod(2, "r1", true, false),
    ]);
    let s = set(3, false, 1);
    assert_eq!(
        summary(&plan(&s, &old, "r2", now)),
        vec!["delete web-2 Rolling"]
    );
    // web-2 was recreated at r2 but is not ready: wait.
    let waiting = pods(vec![
        pod(0, "r1", true, false),
        pod(1, "r1", true, false),
        pod(2, "r2", false, false),
    ]);
    assert!(plan(&s, &waiting, "r2", now).is_empty());
    let next = pods(vec![
        pod(0, "r1", true, false),
        pod(1, "r1", true, false),
        pod(2, "r2", true, false),
    ]);
    assert_eq!(
        summary(&plan(&s, &next, "r2", now)),
        vec!["delete web-1 Rolling"]
    );
    // Below the partition nothing is touched, and a missing pod there keeps its revision.
    let done = pods(vec![
        pod(0, "r1", true, false),
        pod(1, "r2", true, false),
        pod(2, "r2", true, false),
    ]);
    assert!(plan(&s, &done, "r2", now).is_empty());
    let lost = pods(vec![pod(1, "r2", true, false), pod(2, "r2", true, false)]);
    assert_eq!(
        summary(&plan(&s, &lost, "r2", now)),
        vec!["create 0 Current"]
    );
}

#[test]
fn the_rollout_completes_in_the_status_once_every_pod_is_updated_and_ready() {
    let now = Utc::now();
    let s = set(2, false, 0);
    let midway = pods(vec![pod(0, "r1", true, false), pod(1, "r2", true, false)]);
    let st = status(&s, &midway, "r1", "r2", now);
    assert_eq!(
        (
            st.replicas,
            st.ready_replicas,
            st.current_replicas,
            st.updated_replicas
        ),
        (2, Some(2), Some(1), Some(1))
    );
    assert_eq!(st.current_revision.as_deref(), Some("r1"));
    let done = pods(vec![pod(0, "r2", true, false), pod(1, "r2", true, false)]);
    let st = status(&s, &done, "r1", "r2", now);
    assert_eq!(st.current_revision.as_deref(), Some("r2"));
    assert_eq!(st.current_replicas, Some(2));
    assert_eq!(st.observed_generation, Some(3));
}
