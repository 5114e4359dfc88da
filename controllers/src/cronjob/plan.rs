//! One CronJob's decisions, as kube-controller-manager 1.32's cronjob controller makes them:
//! which jobs have left the active list, the most recent unmet schedule time (and whether it
//! is too late, too many, or blocked by concurrencyPolicy), the job to create for it, and
//! which finished jobs exceed the history limits. Pure over the CronJob, its jobs and the
//! clock.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use keel_client::k8s_openapi::api::batch::v1::{CronJob, CronJobStatus, Job};
use keel_client::k8s_openapi::api::core::v1::ObjectReference;
use keel_client::k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::schedule::Schedule;
use crate::events::{NORMAL, WARNING};

/// The annotation holding the time a job was scheduled for (RFC 3339, in the schedule's zone).
pub const SCHEDULED_TIMESTAMP: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";
/// More missed start times than this are reported and only the latest is run.
pub const TOO_MANY_MISSED: i64 = 100;
/// Kubernetes requeues this long past the next schedule time, so the time has surely come.
pub const NEXT_SCHEDULE_DELTA: Duration = Duration::from_millis(100);

pub type Note = (&'static str, &'static str, String);

/// What to do for one CronJob.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub status: CronJobStatus,
    /// The job to create for this scheduled time.
    pub create: Option<DateTime<Utc>>,
    /// Jobs to delete (Replace policy first, then beyond the history limits).
    pub delete: Vec<String>,
    pub events: Vec<Note>,
    pub requeue_after: Option<Duration>,
}

/// How a job ended, if it has: its Complete or Failed condition.
pub fn finished(job: &Job) -> Option<&'static str> {
    let conditions = job.status.as_ref()?.conditions.as_ref()?;
    conditions
        .iter()
        .filter(|c| c.status == "True")
        .find_map(|c| match c.type_.as_str() {
            "Complete" => Some("Complete"),
            "Failed" => Some("Failed"),
            _ => None,
        })
}

/// The name of the job for `scheduled`: the CronJob's name and the time in minutes since the
/// epoch.
pub fn job_name(cronjob: &str, scheduled: DateTime<Utc>) -> String {
    format!("{cronjob}-{}", scheduled.timestamp().div_euclid(60))
}

/// A reference to `job` for `status.active`.
pub fn reference(job: &Job) -> ObjectReference {
    ObjectReference {
        api_version: Some("batch/v1".into()),
        kind: Some("Job".into()),
        name: job.metadata.name.clone(),
        namespace: job.metadata.namespace.clone(),
        uid: job.metadata.uid.clone(),
        resource_version: job.metadata.resource_version.clone(),
        ..Default::default()
    }
}

/// Where the search for unmet times started, the most recent one (if any), and roughly how
/// many there were.
type Unmet = (DateTime<Utc>, Option<DateTime<Utc>>, i64);

/// The most recent schedule time in (earliest, now], with how many were missed; Err when the
/// schedule yields times less than a second apart (an impossible date).
fn most_recent(
    cj: &CronJob,
    schedule: &Schedule,
    now: DateTime<Utc>,
    with_deadline: bool,
) -> Result<Unmet, String> {
    let created = cj.metadata.creation_timestamp.as_ref().map_or(now, |t| t.0);
    let status = cj.status.clone().unwrap_or_default();
    let mut earliest = status.last_schedule_time.map_or(created, |t| t.0);
    let deadline = cj.spec.as_ref().and_then(|s| s.starting_deadline_seconds);
    if let (true, Some(seconds)) = (with_deadline, deadline) {
        let limit = now - TimeDelta::seconds(seconds);
        if limit > earliest {
            earliest = limit;
        }
    }
    let Some(t1) = schedule.next(earliest) else {
        return Ok((earliest, None, 0));
    };
    if now < t1 {
        return Ok((earliest, None, 0));
    }
    let Some(t2) = schedule.next(t1) else {
        return Ok((earliest, Some(t1), 0));
    };
    if now < t2 {
        return Ok((earliest, Some(t1), 0));
    }
    let between = (t2 - t1).num_milliseconds().saturating_add(500) / 1000;
    if between < 1 {
        return Err("time difference between two schedules is less than 1 second".into());
    }
    let elapsed = (now - t1).num_seconds();
    let missed = elapsed / between + 1;
    // Step from just before the estimate, as Kubernetes does, so irregular schedules land on
    // their true latest time.
    // (now >= t2 makes `missed` at least 2.)
    let mut t = t1 + TimeDelta::seconds((missed - 2).max(0).saturating_mul(between));
    let mut latest = None;
    while let Some(next) = schedule.next(t) {
        if next > now {
            break;
        }
        latest = Some(next);
        t = next;
    }
    Ok((earliest, latest, missed))
}

/// How long from `now` until just after the next schedule time.
pub fn until_next(cj: &CronJob, schedule: &Schedule, now: DateTime<Utc>) -> Option<Duration> {
    let from = match most_recent(cj, schedule, now, false) {
        Err(_) => now,
        Ok((earliest, latest, _)) => latest.unwrap_or(earliest),
    };
    let next = schedule.next(from)?;
    Some((next - now).to_std().unwrap_or_default() + NEXT_SCHEDULE_DELTA)
}

/// Plans one pass. `jobs` are the jobs the CronJob controls; `missing` the uids of active
/// jobs confirmed gone from the server.
pub fn plan(
    cj: &CronJob,
    jobs: &[&Job],
    missing: &BTreeSet<String>,
    schedule: &Schedule,
    now: DateTime<Utc>,
) -> Plan {
    let spec = cj.spec.clone().unwrap_or_default();
    let mut status = cj.status.clone().unwrap_or_default();
    let mut out = Plan::default();
    let mut active: Vec<ObjectReference> = status.active.take().unwrap_or_default();
    let in_active =
        |active: &[ObjectReference], uid: &Option<String>| active.iter().any(|r| r.uid == *uid);

    let mut children = BTreeSet::new();
    for job in jobs {
        let uid = job.metadata.uid.clone();
        children.insert(uid.clone().unwrap_or_default());
        let name = job.metadata.name.clone().unwrap_or_default();
        let ended = finished(job);
        let listed = in_active(&active, &uid);
        if !listed && ended.is_none() {
            out.events.push((
                WARNING,
                "UnexpectedJob",
                format!("Saw a job that the controller did not create or forgot: {name}"),
            ));
        } else if let (true, Some(condition)) = (listed, ended) {
            active.retain(|r| r.uid != uid);
            out.events.push((
                NORMAL,
                "SawCompletedJob",
                format!("Saw completed job: {name}, condition: {condition}"),
            ));
        }
        if ended == Some("Complete") {
            let completion = job.status.as_ref().and_then(|s| s.completion_time.clone());
            if let Some(at) = completion {
                if status
                    .last_successful_time
                    .as_ref()
                    .is_none_or(|t| at.0 > t.0)
                {
                    status.last_successful_time = Some(at);
                }
            }
        }
    }
    active.retain(|r| {
        let uid = r.uid.clone().unwrap_or_default();
        let gone = !children.contains(&uid) && missing.contains(&uid);
        if gone {
            out.events.push((
                NORMAL,
                "MissingJob",
                format!(
                    "Active job went missing: {}",
                    r.name.clone().unwrap_or_default()
                ),
            ));
        }
        !gone
    });

    out.delete = over_history(&spec, jobs);
    let finish = |mut out: Plan, status: CronJobStatus, active: Vec<ObjectReference>| {
        let mut status = status;
        status.active = (!active.is_empty()).then_some(active);
        out.status = status;
        out
    };

    if spec.suspend == Some(true) {
        return finish(out, status, active);
    }
    out.requeue_after = until_next(cj, schedule, now);
    let (scheduled, missed) = match most_recent(cj, schedule, now, true) {
        Err(message) => {
            out.events.push((
                WARNING,
                "InvalidSchedule",
                format!("invalid schedule: {} : {message}", spec.schedule),
            ));
            return finish(out, status, active);
        }
        Ok((_, None, _)) => return finish(out, status, active),
        Ok((_, Some(t), missed)) => (t, missed),
    };
    if missed > TOO_MANY_MISSED {
        out.events.push((
            WARNING,
            "TooManyMissedTimes",
            "too many missed start times. Set or decrease .spec.startingDeadlineSeconds or check clock skew".into(),
        ));
    }
    if let Some(deadline) = spec.starting_deadline_seconds {
        if scheduled + TimeDelta::seconds(deadline) < now {
            out.events.push((
                WARNING,
                "MissSchedule",
                format!(
                    "Missed scheduled time to start a job: {}",
                    scheduled.format("%a, %d %b %Y %H:%M:%S %z")
                ),
            ));
            return finish(out, status, active);
        }
    }
    let name = job_name(cj.metadata.name.as_deref().unwrap_or(""), scheduled);
    let done_already = active
        .iter()
        .any(|r| r.name.as_deref() == Some(name.as_str()))
        || status.last_schedule_time.as_ref().map(|t| t.0) == Some(scheduled);
    if done_already {
        return finish(out, status, active);
    }
    match spec.concurrency_policy.as_deref() {
        Some("Forbid") if !active.is_empty() => {
            out.events.push((
                NORMAL,
                "JobAlreadyActive",
                "Not starting job because prior execution is running and concurrency policy is Forbid".into(),
            ));
            return finish(out, status, active);
        }
        Some("Replace") => {
            let replaced: Vec<String> = active.iter().filter_map(|r| r.name.clone()).collect();
            for name in replaced.into_iter().rev() {
                if !out.delete.contains(&name) {
                    out.delete.insert(0, name);
                }
            }
            active.clear();
        }
        _ => {}
    }
    out.create = Some(scheduled);
    status.last_schedule_time = Some(Time(scheduled));
    finish(out, status, active)
}

/// Finished jobs beyond `successfulJobsHistoryLimit` / `failedJobsHistoryLimit`, oldest
/// (by start time, then name) first.
fn over_history(
    spec: &keel_client::k8s_openapi::api::batch::v1::CronJobSpec,
    jobs: &[&Job],
) -> Vec<String> {
    let mut out = Vec::new();
    for (condition, limit) in [
        ("Complete", spec.successful_jobs_history_limit),
        ("Failed", spec.failed_jobs_history_limit),
    ] {
        let Some(limit) = limit else { continue };
        let mut ended: Vec<&Job> = jobs
            .iter()
            .filter(|j| finished(j) == Some(condition) && j.metadata.deletion_timestamp.is_none())
            .copied()
            .collect();
        let limit = usize::try_from(limit).unwrap_or(0);
        if ended.len() <= limit {
            continue;
        }
        ended.sort_by_key(|j| {
            let start = j
                .status
                .as_ref()
                .and_then(|s| s.start_time.as_ref())
                .map(|t| t.0);
            // Jobs that never started sort last, as in Kubernetes.
            (start.is_none(), start, j.metadata.name.clone())
        });
        let excess = ended.len() - limit;
        out.extend(
            ended
                .into_iter()
                .take(excess)
                .filter_map(|j| j.metadata.name.clone()),
        );
    }
    out
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
