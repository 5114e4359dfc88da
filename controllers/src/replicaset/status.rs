//! A ReplicaSet's status from the pods it owns, as Kubernetes computes it: replicas,
//! fullyLabeledReplicas, readyReplicas, availableReplicas, observedGeneration, and the
//! ReplicaFailure condition while creating or deleting pods fails. Pure; the clock is an
//! argument.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use keel_client::k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetCondition, ReplicaSetStatus};
use keel_client::k8s_openapi::api::core::v1::Pod;
use keel_client::k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use keel_client::k8s_openapi::chrono::{DateTime, Utc};

use crate::pods::{is_available, is_ready, until_available};

/// Why the last sync could not create or delete pods: (reason, message), e.g.
/// ("FailedCreate", "pods \"web-x\" is forbidden: exceeded quota").
pub type Failure = (&'static str, String);

/// The status `rs` should have given its `owned` active pods at `now`, and how long until a
/// ready pod becomes available (so the caller can look again then).
pub fn compute(
    rs: &ReplicaSet,
    owned: &[Arc<Pod>],
    failure: Option<Failure>,
    now: DateTime<Utc>,
) -> (ReplicaSetStatus, Option<Duration>) {
    let spec = rs.spec.as_ref();
    let min_ready = spec.and_then(|s| s.min_ready_seconds).unwrap_or(0);
    let template_labels: BTreeMap<String, String> = spec
        .and_then(|s| s.template.as_ref())
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let fully_labeled = owned
        .iter()
        .filter(|p| {
            let labels = p.metadata.labels.as_ref();
            template_labels
                .iter()
                .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
        })
        .count();
    let ready = owned.iter().filter(|p| is_ready(p)).count();
    let available = owned
        .iter()
        .filter(|p| is_available(p, min_ready, now))
        .count();
    let next_available = owned
        .iter()
        .filter_map(|p| until_available(p, min_ready, now))
        .min();
    let previous = rs.status.clone().unwrap_or_default();
    let conditions = failure_condition(previous.conditions.unwrap_or_default(), failure, now);
    let status = ReplicaSetStatus {
        replicas: owned.len() as i32,
        fully_labeled_replicas: Some(fully_labeled as i32),
        ready_replicas: Some(ready as i32),
        available_replicas: Some(available as i32),
        observed_generation: rs.metadata.generation,
        conditions: (!conditions.is_empty()).then_some(conditions),
    };
    (status, next_available)
}

/// The conditions with ReplicaFailure set from `failure`, or removed when the sync worked.
fn failure_condition(
    mut conditions: Vec<ReplicaSetCondition>,
    failure: Option<Failure>,
    now: DateTime<Utc>,
) -> Vec<ReplicaSetCondition> {
    let existing = conditions.iter().position(|c| c.type_ == "ReplicaFailure");
    match (failure, existing) {
        (Some((reason, message)), Some(i)) => {
            let c = &mut conditions[i];
            if c.status != "True" {
                c.last_transition_time = Some(Time(now));
            }
            c.status = "True".into();
            c.reason = Some(reason.into());
            c.message = Some(message);
        }
        (Some((reason, message)), None) => conditions.push(ReplicaSetCondition {
            type_: "ReplicaFailure".into(),
            status: "True".into(),
            reason: Some(reason.into()),
            message: Some(message),
            last_transition_time: Some(Time(now)),
        }),
        (None, Some(i)) => {
            conditions.remove(i);
        }
        (None, None) => {}
    }
    conditions
}

/// Whether two statuses differ in anything but the conditions' timestamps (so an unchanged
/// status is not written again).
pub fn differs(current: Option<&ReplicaSetStatus>, next: &ReplicaSetStatus) -> bool {
    let Some(current) = current else { return true };
    let strip = |s: &ReplicaSetStatus| {
        let mut s = s.clone();
        for c in s.conditions.iter_mut().flatten() {
            c.last_transition_time = None;
        }
        if s.fully_labeled_replicas == Some(0) {
            s.fully_labeled_replicas = None;
        }
        if s.ready_replicas == Some(0) {
            s.ready_replicas = None;
        }
        if s.available_replicas == Some(0) {
            s.available_replicas = None;
        }
        s
    };
    strip(current) != strip(next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_client::k8s_openapi::api::apps::v1::ReplicaSetSpec;
    use keel_client::k8s_openapi::api::core::v1::{PodCondition, PodStatus, PodTemplateSpec};
    use keel_client::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use keel_client::k8s_openapi::chrono::TimeDelta;

    fn rs(min_ready: i32) -> ReplicaSet {
        ReplicaSet {
            metadata: ObjectMeta {
                generation: Some(4),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                min_ready_seconds: Some(min_ready),
                template: Some(PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(BTreeMap::from([
                            ("app".to_string(), "web".to_string()),
                            ("tier".to_string(), "front".to_string()),
                        ])),
                        ..Default::default()
                    }),
                    spec: None,
                }),
                ..Default::default()
            }),
            status: None,
        }
    }

    fn pod(labels: &[(&str, &str)], ready_ago: Option<i64>, now: DateTime<Utc>) -> Arc<Pod> {
        Arc::new(Pod {
            metadata: ObjectMeta {
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ..Default::default()
            },
            spec: None,
            status: Some(PodStatus {
                conditions: ready_ago.map(|ago| {
                    vec![PodCondition {
                        type_: "Ready".into(),
                        status: "True".into(),
                        last_transition_time: Some(Time(now - TimeDelta::seconds(ago))),
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            }),
        })
    }

    #[test]
    fn counts_follow_labels_readiness_and_min_ready_seconds() {
        let now = Utc::now();
        let full = [("app", "web"), ("tier", "front")];
        let pods = vec![
            pod(&full, Some(60), now),
            pod(&full, Some(5), now),
            pod(&[("app", "web")], None, now),
        ];
        let (status, next) = compute(&rs(10), &pods, None, now);
        assert_eq!(status.replicas, 3);
        assert_eq!(status.fully_labeled_replicas, Some(2));
        assert_eq!(status.ready_replicas, Some(2));
        assert_eq!(status.available_replicas, Some(1));
        assert_eq!(status.observed_generation, Some(4));
        assert_eq!(next, Some(Duration::from_secs(5)));
        assert!(status.conditions.is_none());
    }

    #[test]
    fn a_failed_create_sets_replica_failure_and_a_good_sync_clears_it() {
        let now = Utc::now();
        let mut set = rs(0);
        let failure = (
            "FailedCreate",
            "pods \"web-x\" is forbidden: quota".to_string(),
        );
        let (status, _) = compute(&set, &[], Some(failure), now);
        let conditions = status.conditions.clone().unwrap_or_default();
        assert_eq!(conditions.len(), 1);
        assert_eq!(conditions[0].type_, "ReplicaFailure");
        assert_eq!(conditions[0].reason.as_deref(), Some("FailedCreate"));
        set.status = Some(status);
        let (status, _) = compute(&set, &[], None, now);
        assert!(status.conditions.is_none());
    }

    #[test]
    fn an_unchanged_status_is_not_rewritten() {
        let now = Utc::now();
        let (status, _) = compute(&rs(0), &[], None, now);
        assert!(!differs(Some(&status), &status));
        let mut more = status.clone();
        more.replicas = 1;
        assert!(differs(Some(&status), &more));
        assert!(differs(None, &status));
    }
}
