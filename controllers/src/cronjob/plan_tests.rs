//! Specifications of one CronJob pass, over explicit jobs and times.

use super::*;
use keel_client::k8s_openapi::api::batch::v1::{
    CronJobSpec, JobCondition, JobStatus, JobTemplateSpec,
};
use keel_client::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_default()
}

fn cronjob(schedule: &str, policy: &str, created: &str) -> CronJob {
    CronJob {
        metadata: ObjectMeta {
            name: Some("tick".into()),
            namespace: Some("ns".into()),
            uid: Some("cj-uid".into()),
            creation_timestamp: Some(Time(at(created))),
            ..Default::default()
        },
        spec: Some(CronJobSpec {
            schedule: schedule.into(),
            concurrency_policy: Some(policy.into()),
            successful_jobs_history_limit: Some(3),
            failed_jobs_history_limit: Some(1),
            suspend: Some(false),
            job_template: JobTemplateSpec::default(),
            ..Default::default()
        }),
        status: None,
    }
}

fn job(name: &str, ended: Option<(&str, &str)>) -> Job {
    Job {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("ns".into()),
            uid: Some(format!("uid-{name}")),
            ..Default::default()
        },
        spec: None,
        status: Some(JobStatus {
            start_time: ended.map(|(_, t)| Time(at(t))),
            completion_time: ended
                .filter(|(c, _)| *c == "Complete")
                .map(|(_, t)| Time(at(t))),
            conditions: ended.map(|(c, _)| {
                vec![JobCondition {
                    type_: c.into(),
                    status: "True".into(),
                    ..Default::default()
                }]
            }),
            ..Default::default()
        }),
    }
}

fn with_active(mut cj: CronJob, jobs: &[&Job], last: &str) -> CronJob {
    cj.status = Some(CronJobStatus {
        active: Some(jobs.iter().map(|j| reference(j)).collect()),
        last_schedule_time: Some(Time(at(last))),
        ..Default::default()
    });
    cj
}

fn every_minute() -> Schedule {
    Schedule::parse("* * * * *", None).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn a_due_schedule_creates_the_job_named_for_its_minute() {
    let cj = cronjob("* * * * *", "Allow", "2024-05-01T10:00:30Z");
    let p = plan(
        &cj,
        &[],
        &BTreeSet::new(),
        &every_minute(),
        at("2024-05-01T10:01:05Z"),
    );
    assert_eq!(p.create, Some(at("2024-05-01T10:01:00Z")));
    assert_eq!(
        job_name("tick", at("2024-05-01T10:01:00Z")),
        "tick-28575961"
    );
    assert_eq!(
        p.status.last_schedule_time,
        Some(Time(at("2024-05-01T10:01:00Z")))
    );
    assert_eq!(
        p.requeue_after,
        Some(Duration::from_secs(55) + NEXT_SCHEDULE_DELTA)
    );
}

#[test]
fn nothing_is_due_before_the_first_schedule_time() {
    let cj = cronjob("* * * * *", "Allow", "2024-05-01T10:00:30Z");
    let p = plan(
        &cj,
        &[],
        &BTreeSet::new(),
        &every_minute(),
        at("2024-05-01T10:00:50Z"),
    );
    assert_eq!(p.create, None);
    assert_eq!(
        p.requeue_after,
        Some(Duration::from_secs(10) + NEXT_SCHEDULE_DELTA)
    );
}

#[test]
fn forbid_skips_a_run_while_one_is_active() {
    let running = job("tick-28575961", None);
    let cj = with_active(
        cronjob("* * * * *", "Forbid", "2024-05-01T10:00:00Z"),
        &[&running],
        "2024-05-01T10:01:00Z",
    );
    let p = plan(
        &cj,
        &[&running],
        &BTreeSet::new(),
        &every_minute(),
        at("2024-05-01T10:02:01Z"),
    );
    assert_eq!(p.create, None);
    assert_eq!(p.events[0].1, "JobAlreadyActive");
    assert_eq!(p.status.active.map(|a| a.len()), Some(1));
    assert_eq!(
        p.status.last_schedule_time,
        Some(Time(at("2024-05-01T10:01:00Z")))
    );
}

#[test]
fn replace_deletes_the_active_job_and_starts_the_next() {
    let running = job("tick-28575961", None);
    let cj = with_active(
        cronjob("* * * * *", "Replace", "2024-05-01T10:00:00Z"),
        &[&running],
        "2024-05-01T10:01:00Z",
    );
    let p = plan(
        &cj,
        &[&running],
        &BTreeSet::new(),
        &every_minute(),
        at("2024-05-01T10:02:01Z"),
    );
    assert_eq!(p.delete, vec!["tick-28575961".to_string()]);
    assert_eq!(p.create, Some(at("2024-05-01T10:02:00Z")));
    assert_eq!(p.status.active, None);
}

#[test]
fn a_finished_job_leaves_the_active_list_and_sets_last_successful_time() {
    let done = job("tick-28575961", Some(("Complete", "2024-05-01T10:01:10Z")));
    let cj = with_active(
        cronjob("* * * * *", "Forbid", "2024-05-01T10:00:00Z"),
        &[&done],
        "2024-05-01T10:01:00Z",
    );
    let p = plan(
        &cj,
        &[&done],
        &BTreeSet::new(),
        &every_minute(),
        at("2024-05-01T10:01:30Z"),
    );
    assert_eq!(p.status.active, None);
    assert_eq!(
        p.status.last_successful_time,
        Some(Time(at("2024-05-01T10:01:10Z")))
    );
    assert_eq!(
        p.events,
        vec![(
            NORMAL,
            "SawCompletedJob",
            "Saw completed job: tick-28575961, condition: Complete".to_string()
        )]
    );
}

#[test]
fn a_start_later_than_the_deadline_is_missed() {
    let mut cj = cronjob("0 * * * *", "Allow", "2024-05-01T09:30:00Z");
    if let Some(spec) = cj.spec.as_mut() {
        spec.starting_deadline_seconds = Some(60);
    }
    let hourly = Schedule::parse("0 * * * *", None).unwrap_or_else(|e| panic!("{e}"));
    let p = plan(
        &cj,
        &[],
        &BTreeSet::new(),
        &hourly,
        at("2024-05-01T10:00:30Z"),
    );
    assert_eq!(p.create, Some(at("2024-05-01T10:00:00Z")));
    let late = plan(
        &cj,
        &[],
        &BTreeSet::new(),
        &hourly,
        at("2024-05-01T10:05:00Z"),
    );
    assert_eq!(
        late.create, None,
        "the deadline window holds no schedule time"
    );
    assert!(late.events.is_empty());
}

#[test]
fn only_the_latest_of_many_missed_times_runs_and_too_many_are_reported() {
    let cj = cronjob("* * * * *", "Allow", "2024-05-01T00:00:00Z");
    let p = plan(
        &cj,
        &[],
        &BTreeSet::new(),
        &every_minute(),
        at("2024-05-01T10:00:30Z"),
    );
    assert_eq!(p.create, Some(at("2024-05-01T10:00:00Z")));
    assert_eq!(p.events[0].1, "TooManyMissedTimes");
    let recent = cronjob("* * * * *", "Allow", "2024-05-01T09:55:00Z");
    let p = plan(
        &recent,
        &[],
        &BTreeSet::new(),
        &every_minute(),
        at("2024-05-01T10:00:30Z"),
    );
    assert_eq!(p.create, Some(at("2024-05-01T10:00:00Z")));
    assert!(p.events.is_empty());
}

#[test]
fn a_suspended_cronjob_starts_nothing() {
    let mut cj = cronjob("* * * * *", "Allow", "2024-05-01T10:00:00Z");
    if let Some(spec) = cj.spec.as_mut() {
        spec.suspend = Some(true);
    }
    let p = plan(
        &cj,
        &[],
        &BTreeSet::new(),
        &every_minute(),
        at("2024-05-01T10:05:00Z"),
    );
    assert_eq!(p.create, None);
}

#[test]
fn finished_jobs_beyond_the_history_limits_are_deleted_oldest_first() {
    let jobs = [
        job("s1", Some(("Complete", "2024-05-01T10:01:00Z"))),
        job("s2", Some(("Complete", "2024-05-01T10:02:00Z"))),
        job("s3", Some(("Complete", "2024-05-01T10:03:00Z"))),
        job("s4", Some(("Complete", "2024-05-01T10:04:00Z"))),
        job("f1", Some(("Failed", "2024-05-01T10:01:30Z"))),
        job("f2", Some(("Failed", "2024-05-01T10:02:30Z"))),
        job("running", None),
    ];
    let refs: Vec<&Job> = jobs.iter().collect();
    let mut cj = cronjob("* * * * *", "Allow", "2024-05-01T10:00:00Z");
    if let Some(spec) = cj.spec.as_mut() {
        spec.suspend = Some(true);
    }
    let p = plan(
        &cj,
        &refs,
        &BTreeSet::new(),
        &every_minute(),
        at("2024-05-01T10:05:00Z"),
    );
    assert_eq!(p.delete, vec!["s1".to_string(), "f1".to_string()]);
}

#[test]
fn an_active_job_confirmed_gone_is_dropped() {
    let lost = job("tick-1", None);
    let cj = with_active(
        cronjob("* * * * *", "Forbid", "2024-05-01T10:00:00Z"),
        &[&lost],
        "2024-05-01T10:01:00Z",
    );
    let missing: BTreeSet<String> = ["uid-tick-1".to_string()].into();
    let p = plan(
        &cj,
        &[],
        &missing,
        &every_minute(),
        at("2024-05-01T10:01:30Z"),
    );
    assert_eq!(p.status.active, None);
    assert_eq!(p.events[0].1, "MissingJob");
}
