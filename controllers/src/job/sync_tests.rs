//! Specifications of one job pass, over explicit pods and times.

use super::*;
use keel_client::k8s_openapi::api::batch::v1::JobSpec;
use keel_client::k8s_openapi::api::core::v1::{PodCondition, PodSpec, PodStatus, PodTemplateSpec};
use keel_client::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use keel_client::k8s_openapi::chrono::TimeDelta;

fn t(seconds: i64) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp(1_700_000_000 + seconds, 0).unwrap_or_default()
}

fn job(completions: Option<i32>, parallelism: i32) -> Job {
    Job {
        metadata: ObjectMeta {
            name: Some("pi".into()),
            namespace: Some("ns".into()),
            uid: Some("job-uid".into()),
            ..Default::default()
        },
        spec: Some(JobSpec {
            completions,
            parallelism: Some(parallelism),
            backoff_limit: Some(6),
            completion_mode: Some("NonIndexed".into()),
            pod_replacement_policy: Some("TerminatingOrFailed".into()),
            template: PodTemplateSpec {
                spec: Some(PodSpec {
                    restart_policy: Some("Never".into()),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        }),
        status: None,
    }
}

fn indexed(mut job: Job) -> Job {
    if let Some(spec) = job.spec.as_mut() {
        spec.completion_mode = Some("Indexed".into());
    }
    job
}

fn pod(name: &str, phase: &str) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("ns".into()),
            uid: Some(format!("uid-{name}")),
            finalizers: Some(vec![TRACKING_FINALIZER.into()]),
            ..Default::default()
        },
        spec: Some(PodSpec::default()),
        status: Some(PodStatus {
            phase: Some(phase.into()),
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: if phase == "Running" { "True" } else { "False" }.into(),
                ..Default::default()
            }]),
            ..Default::default()
        }),
    }
}

fn with_index(mut pod: Pod, ix: i32) -> Pod {
    pod.metadata.annotations = Some([(indexes::COMPLETION_INDEX.into(), ix.to_string())].into());
    pod
}

fn released(mut pod: Pod) -> Pod {
    pod.metadata.finalizers = Some(vec![]);
    pod
}

/// Applies a plan's status to the job, as the shell's write does.
fn stored(mut job: Job, plan: &Plan) -> Job {
    job.status = Some(plan.status.clone());
    job
}

fn run(job: &Job, pods: &[Pod], now: DateTime<Utc>) -> Plan {
    let refs: Vec<&Pod> = pods.iter().collect();
    plan(job, &refs, now, backoff::Record::default())
}

#[test]
fn a_new_job_starts_parallelism_pods_and_its_clock() {
    let p = run(&job(Some(5), 2), &[], t(0));
    assert_eq!(p.create, vec![None, None]);
    assert_eq!(p.status.active, Some(2));
    assert_eq!(p.status.start_time, Some(Time(t(0))));
}

#[test]
fn never_more_pods_than_completions_still_need() {
    let mut j = job(Some(5), 2);
    j.status = Some(JobStatus {
        succeeded: Some(4),
        ..Default::default()
    });
    let p = run(&j, &[pod("a", "Running")], t(0));
    assert!(
        p.create.is_empty(),
        "one running covers the last completion"
    );
    assert_eq!(p.status.active, Some(1));
}

#[test]
fn a_finished_pod_is_recorded_before_its_finalizer_goes_and_counted_once() {
    let j = job(Some(2), 1);
    let done = pod("a", "Succeeded");
    let first = run(&j, std::slice::from_ref(&done), t(0));
    let uncounted = first
        .status
        .uncounted_terminated_pods
        .clone()
        .unwrap_or_default();
    assert_eq!(uncounted.succeeded, Some(vec!["uid-a".to_string()]));
    assert_eq!(
        first.status.succeeded,
        Some(0),
        "counted only once released"
    );
    assert_eq!(first.release, vec!["a".to_string()]);
    assert_eq!(first.create, vec![None], "the next completion starts");

    // The same pod seen again before the finalizer removal shows: not recorded twice.
    let j = stored(j, &first);
    let again = run(&j, std::slice::from_ref(&done), t(1));
    assert_eq!(
        again.status.uncounted_terminated_pods,
        first.status.uncounted_terminated_pods
    );

    // Released and then deleted: moved into succeeded exactly once.
    let gone = run(&j, &[], t(2));
    assert_eq!(gone.status.succeeded, Some(1));
    let j = stored(j, &gone);
    let later = run(&j, &[released(done)], t(3));
    assert_eq!(
        later.status.succeeded,
        Some(1),
        "a released pod is never counted again"
    );
}

#[test]
fn a_job_completes_once_every_pod_is_accounted_for() {
    let mut j = job(Some(2), 2);
    j.status = Some(JobStatus {
        succeeded: Some(1),
        ..Default::default()
    });
    let last = pod("b", "Succeeded");
    let target = run(&j, std::slice::from_ref(&last), t(5));
    let met = true_condition(&target.status, "SuccessCriteriaMet").cloned();
    assert_eq!(met.and_then(|c| c.reason), Some(SUCCESS_REASON.to_string()));
    assert!(!is_finished(&target.status), "b still holds its finalizer");
    assert!(target.create.is_empty());

    let j = stored(j, &target);
    let done = run(&j, &[], t(6));
    let complete = true_condition(&done.status, "Complete")
        .cloned()
        .unwrap_or_default();
    assert_eq!(complete.message.as_deref(), Some(SUCCESS_MESSAGE));
    assert_eq!(done.status.succeeded, Some(2));
    assert_eq!(done.status.completion_time, Some(Time(t(6))));
    assert_eq!(
        done.events,
        vec![(
            crate::events::NORMAL,
            "Completed",
            "Job completed".to_string()
        )]
    );
}

#[test]
fn failures_beyond_the_backoff_limit_fail_the_job_and_stop_its_pods() {
    let mut j = job(Some(3), 2);
    if let Some(spec) = j.spec.as_mut() {
        spec.backoff_limit = Some(1);
    }
    j.status = Some(JobStatus {
        failed: Some(1),
        ..Default::default()
    });
    let p = run(&j, &[pod("x", "Failed"), pod("r", "Running")], t(0));
    let target = true_condition(&p.status, "FailureTarget")
        .cloned()
        .unwrap_or_default();
    assert_eq!(target.reason.as_deref(), Some(BACKOFF_REASON));
    assert_eq!(p.delete, vec!["r".to_string()]);
    assert!(p.create.is_empty());

    let j = stored(j, &p);
    let mut dying = pod("r", "Running");
    dying.metadata.deletion_timestamp = Some(Time(t(1)));
    let p = run(&j, &[dying], t(1));
    assert_eq!(
        p.release,
        vec!["r".to_string()],
        "a deleted pod counts as failed"
    );
    let j = stored(j, &p);
    let p = run(&j, &[], t(2));
    let failed = true_condition(&p.status, "Failed")
        .cloned()
        .unwrap_or_default();
    assert_eq!(failed.message.as_deref(), Some(BACKOFF_MESSAGE));
    assert_eq!(p.status.failed, Some(3));
    assert_eq!(
        p.events,
        vec![(
            crate::events::WARNING,
            BACKOFF_REASON,
            BACKOFF_MESSAGE.to_string()
        )]
    );
}

#[test]
fn a_failed_pod_is_replaced_only_after_its_backoff() {
    let j = job(Some(1), 1);
    let p = run(&j, &[pod("x", "Failed")], t(0));
    assert!(p.create.is_empty());
    assert_eq!(p.requeue_after, Some(Duration::from_secs(10)));
    let j = stored(j, &p);
    let refs: Vec<&Pod> = Vec::new();
    let later = plan(&j, &refs, t(10), p.backoff);
    assert_eq!(later.create, vec![None]);
}

#[test]
fn the_active_deadline_fails_a_running_job() {
    let mut j = job(Some(1), 1);
    if let Some(spec) = j.spec.as_mut() {
        spec.active_deadline_seconds = Some(30);
    }
    j.status = Some(JobStatus {
        start_time: Some(Time(t(0))),
        ..Default::default()
    });
    let early = run(&j, &[pod("a", "Running")], t(10));
    assert_eq!(early.requeue_after, Some(Duration::from_secs(20)));
    let late = run(&j, &[pod("a", "Running")], t(30));
    let target = true_condition(&late.status, "FailureTarget")
        .cloned()
        .unwrap_or_default();
    assert_eq!(target.reason.as_deref(), Some(DEADLINE_REASON));
    assert_eq!(target.message.as_deref(), Some(DEADLINE_MESSAGE));
    assert_eq!(late.delete, vec!["a".to_string()]);
}

#[test]
fn an_indexed_job_runs_each_index_once_and_records_completed_indexes() {
    let j = indexed(job(Some(4), 2));
    let p = run(&j, &[], t(0));
    assert_eq!(p.create, vec![Some(0), Some(1)]);

    let pods = [
        with_index(pod("a", "Succeeded"), 0),
        with_index(pod("b", "Running"), 1),
        with_index(pod("dup", "Running"), 1),
    ];
    let p = run(&j, &pods, t(1));
    assert_eq!(p.status.completed_indexes.as_deref(), Some("0"));
    assert_eq!(p.status.succeeded, Some(1));
    assert_eq!(p.delete.len(), 1, "one pod per index");
    assert_eq!(p.create, vec![Some(2)]);

    let mut j = j;
    j.status = Some(JobStatus {
        completed_indexes: Some("0-3".into()),
        ..Default::default()
    });
    let p = run(&j, &[], t(2));
    assert!(true_condition(&p.status, "SuccessCriteriaMet").is_some());
}

#[test]
fn a_suspended_job_stops_its_pods_and_a_resumed_one_restarts_its_clock() {
    let mut j = job(Some(3), 2);
    if let Some(spec) = j.spec.as_mut() {
        spec.suspend = Some(true);
    }
    let p = run(&j, &[pod("a", "Running")], t(0));
    assert_eq!(p.delete, vec!["a".to_string()]);
    assert!(true_condition(&p.status, "Suspended").is_some());
    assert_eq!(p.events[0].1, "Suspended");

    let mut j = stored(j, &p);
    if let Some(spec) = j.spec.as_mut() {
        spec.suspend = Some(false);
    }
    let p = run(&j, &[], t(50));
    assert!(true_condition(&p.status, "Suspended").is_none());
    assert_eq!(p.status.start_time, Some(Time(t(50))));
    assert_eq!(p.create.len(), 2);
    assert_eq!(p.events[0].1, "Resumed");
}

#[test]
fn a_fail_job_rule_fails_the_job_at_once() {
    use keel_client::k8s_openapi::api::batch::v1::{
        PodFailurePolicy, PodFailurePolicyOnExitCodesRequirement, PodFailurePolicyRule,
    };
    use keel_client::k8s_openapi::api::core::v1::{
        ContainerState, ContainerStateTerminated, ContainerStatus,
    };
    let mut j = job(Some(3), 1);
    if let Some(spec) = j.spec.as_mut() {
        spec.pod_failure_policy = Some(PodFailurePolicy {
            rules: vec![PodFailurePolicyRule {
                action: "FailJob".into(),
                on_exit_codes: Some(PodFailurePolicyOnExitCodesRequirement {
                    container_name: None,
                    operator: "In".into(),
                    values: vec![42],
                }),
                on_pod_conditions: None,
            }],
        });
    }
    let mut failed = pod("x", "Failed");
    if let Some(status) = failed.status.as_mut() {
        status.container_statuses = Some(vec![ContainerStatus {
            name: "main".into(),
            state: Some(ContainerState {
                terminated: Some(ContainerStateTerminated {
                    exit_code: 42,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }]);
    }
    let p = run(&j, &[failed], t(0));
    let target = true_condition(&p.status, "FailureTarget")
        .cloned()
        .unwrap_or_default();
    assert_eq!(target.reason.as_deref(), Some(POLICY_REASON));
    assert_eq!(
        target.message.as_deref(),
        Some(
            "Container main for pod ns/x failed with exit code 42 matching FailJob rule at index 0"
        )
    );
    let _ = TimeDelta::zero();
}

#[test]
fn a_finished_job_only_releases_leftover_pods() {
    let mut j = job(Some(1), 1);
    j.status = Some(JobStatus {
        conditions: Some(vec![condition(
            "Complete",
            "True",
            SUCCESS_REASON,
            SUCCESS_MESSAGE,
            t(0),
        )]),
        succeeded: Some(1),
        ..Default::default()
    });
    let p = run(&j, &[pod("stray", "Running")], t(1));
    assert!(p.create.is_empty() && p.delete.is_empty());
    assert_eq!(p.release, vec!["stray".to_string()]);
    assert_eq!(Some(p.status), j.status);
}
