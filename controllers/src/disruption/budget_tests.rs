//! Specification of a budget's status: expected pods by bound kind, rounding of percentages,
//! healthy counts, awaited evictions and their timeout, and the DisruptionAllowed condition.

use keel_client::k8s_openapi::api::core::v1::{PodCondition, PodStatus};
use keel_client::k8s_openapi::api::policy::v1::PodDisruptionBudgetSpec;
use keel_client::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::*;

fn now() -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp(1_735_689_600, 0).unwrap_or_default()
}

fn pod(name: &str, ready: bool, owner: Option<&str>) -> Arc<Pod> {
    Arc::new(Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            owner_references: owner.map(|uid| {
                vec![OwnerReference {
                    api_version: "apps/v1".into(),
                    kind: "ReplicaSet".into(),
                    name: format!("rs-{uid}"),
                    uid: uid.into(),
                    controller: Some(true),
                    block_owner_deletion: Some(true),
                }]
            }),
            ..Default::default()
        },
        spec: None,
        status: Some(PodStatus {
            phase: Some("Running".into()),
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: if ready { "True" } else { "False" }.into(),
                ..Default::default()
            }]),
            ..Default::default()
        }),
    })
}

fn budget(min: Option<IntOrString>, max: Option<IntOrString>) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: ObjectMeta {
            name: Some("web".into()),
            namespace: Some("default".into()),
            generation: Some(1),
            ..Default::default()
        },
        spec: Some(PodDisruptionBudgetSpec {
            min_available: min,
            max_unavailable: max,
            ..Default::default()
        }),
        status: None,
    }
}

/// Every ReplicaSet wants `replicas`.
fn scale_of(replicas: i32) -> impl Fn(&OwnerReference, &str) -> Option<Scale> {
    move |owner, _| {
        Some(Scale {
            uid: owner.uid.clone(),
            replicas,
        })
    }
}

fn three_ready() -> Vec<Arc<Pod>> {
    vec![
        pod("a", true, Some("rs1")),
        pod("b", true, Some("rs1")),
        pod("c", true, Some("rs1")),
    ]
}

#[test]
fn percentages_round_up_or_down_as_asked() {
    let half = IntOrString::String("50%".into());
    assert_eq!(scaled_value(&half, 3, true), Ok(2));
    assert_eq!(scaled_value(&half, 3, false), Ok(1));
    assert_eq!(scaled_value(&IntOrString::Int(4), 3, true), Ok(4));
    assert!(scaled_value(&IntOrString::String("half".into()), 3, true).is_err());
}

#[test]
fn an_integer_min_available_expects_the_matching_pods() {
    let pods = three_ready();
    let got = expected(
        &budget(Some(IntOrString::Int(2)), None),
        &pods,
        &scale_of(10),
    )
    .expect("computes");
    assert_eq!((got.expected_pods, got.desired_healthy), (3, 2));
}

#[test]
fn a_percentage_min_available_rounds_up_over_the_controllers_scale() {
    let pods = three_ready();
    let got = expected(
        &budget(Some(IntOrString::String("34%".into())), None),
        &pods,
        &scale_of(5),
    )
    .expect("computes");
    // One ReplicaSet of 5 counted once; 34% of 5 is 1.7, rounded up.
    assert_eq!((got.expected_pods, got.desired_healthy), (5, 2));
}

#[test]
fn max_unavailable_subtracts_from_the_summed_scale_of_each_controller() {
    let pods = vec![
        pod("a", true, Some("rs1")),
        pod("b", true, Some("rs2")),
        pod("c", true, Some("rs2")),
    ];
    let got = expected(
        &budget(None, Some(IntOrString::Int(1))),
        &pods,
        &scale_of(2),
    )
    .expect("computes");
    assert_eq!((got.expected_pods, got.desired_healthy), (4, 3));
    let all = expected(
        &budget(None, Some(IntOrString::String("100%".into()))),
        &pods,
        &scale_of(2),
    )
    .expect("computes");
    assert_eq!(all.desired_healthy, 0);
}

#[test]
fn pods_without_a_controller_are_reported_and_a_missing_controller_fails() {
    let pods = vec![pod("a", true, Some("rs1")), pod("loose", true, None)];
    let got = expected(
        &budget(None, Some(IntOrString::Int(1))),
        &pods,
        &scale_of(1),
    )
    .expect("computes");
    assert_eq!(got.unmanaged, ["loose"]);
    let none = |_: &OwnerReference, _: &str| None;
    assert_eq!(
        expected(&budget(None, Some(IntOrString::Int(1))), &pods, &none),
        Err("found no controllers for pod \"a\"".to_string())
    );
}

#[test]
fn healthy_pods_are_ready_not_deleting_and_not_just_evicted() {
    let mut pods = three_ready();
    pods.push(pod("unready", false, Some("rs1")));
    let mut deleting = (*pod("deleting", true, Some("rs1"))).clone();
    deleting.metadata.deletion_timestamp = Some(Time(now()));
    pods.push(Arc::new(deleting));
    let awaited = BTreeMap::from([("a".to_string(), Time(now()))]);
    assert_eq!(count_healthy(&pods, &awaited, now()), 2);
    assert_eq!(count_healthy(&pods, &BTreeMap::new(), now()), 3);
}

#[test]
fn evictions_are_awaited_until_the_pod_terminates_or_two_minutes_pass() {
    let mut pdb = budget(Some(IntOrString::Int(1)), None);
    let just = Time(now() - TimeDelta::seconds(10));
    let long_ago = Time(now() - TimeDelta::seconds(121));
    pdb.status = Some(PodDisruptionBudgetStatus {
        disrupted_pods: Some(BTreeMap::from([
            ("a".to_string(), just.clone()),
            ("b".to_string(), long_ago),
            ("gone".to_string(), just.clone()),
        ])),
        ..Default::default()
    });
    let (kept, recheck, timed_out) = awaited_evictions(&pdb, &three_ready(), now());
    assert_eq!(kept, BTreeMap::from([("a".to_string(), just)]));
    assert_eq!(recheck, Some(now() + TimeDelta::seconds(110)));
    assert_eq!(timed_out, ["b"]);
}

#[test]
fn disruptions_allowed_are_the_healthy_pods_beyond_the_desired_ones() {
    let pdb = budget(Some(IntOrString::Int(2)), None);
    let exp = Expected {
        expected_pods: 3,
        desired_healthy: 2,
        unmanaged: vec![],
    };
    let status = next_status(&pdb, 3, &exp, BTreeMap::new(), now()).expect("changes");
    assert_eq!(status.disruptions_allowed, 1);
    assert_eq!(status.observed_generation, Some(1));
    let condition = &status.conditions.clone().unwrap_or_default()[0];
    assert_eq!(
        (
            condition.type_.as_str(),
            condition.status.as_str(),
            condition.reason.as_str()
        ),
        ("DisruptionAllowed", "True", "SufficientPods")
    );
    // Written once, the same status is not written again.
    let mut written = pdb.clone();
    written.status = Some(status);
    assert_eq!(next_status(&written, 3, &exp, BTreeMap::new(), now()), None);
    // Too few healthy pods: nothing allowed, and the condition says so.
    let short = next_status(&written, 1, &exp, BTreeMap::new(), now()).expect("changes");
    assert_eq!(short.disruptions_allowed, 0);
    let condition = &short.conditions.unwrap_or_default()[0];
    assert_eq!(
        (condition.status.as_str(), condition.reason.as_str()),
        ("False", "InsufficientPods")
    );
}

#[test]
fn a_budget_expecting_no_pods_allows_nothing() {
    let pdb = budget(Some(IntOrString::Int(0)), None);
    let exp = Expected {
        expected_pods: 0,
        desired_healthy: 0,
        unmanaged: vec![],
    };
    let status = next_status(&pdb, 0, &exp, BTreeMap::new(), now()).expect("changes");
    assert_eq!(status.disruptions_allowed, 0);
}

#[test]
fn a_failed_sync_allows_nothing_and_says_why() {
    let mut pdb = budget(None, Some(IntOrString::Int(1)));
    pdb.status = Some(PodDisruptionBudgetStatus {
        disruptions_allowed: 2,
        current_healthy: 3,
        ..Default::default()
    });
    let status = fail_safe(&pdb, "found no controllers for pod \"a\"".into(), now());
    assert_eq!(status.disruptions_allowed, 0);
    assert_eq!(status.current_healthy, 3);
    let condition = &status.conditions.unwrap_or_default()[0];
    assert_eq!(condition.reason, "SyncFailed");
    assert_eq!(condition.message, "found no controllers for pod \"a\"");
}
