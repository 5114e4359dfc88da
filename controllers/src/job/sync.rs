//! One job's decisions, as kube-controller-manager 1.32's job controller makes them: which
//! finished pods to account for (and when their tracking finalizer may go), the job's counters
//! and conditions, and how many pods to create or delete. Pure over the job, its pods, the
//! clock and the job's backoff record; the async shell carries the plan out.
//!
//! Accounting follows Kubernetes' finalizer protocol, so a finished pod is counted exactly
//! once even if it is deleted right after finishing: every pod carries the
//! `batch.kubernetes.io/job-tracking` finalizer; a finished pod is first recorded in the
//! status (its uid in `uncountedTerminatedPods`, or, for a succeeded Indexed pod, its index in
//! `completedIndexes`), and only once that status is written is the finalizer removed; a
//! recorded uid whose pod is gone or has lost its finalizer moves into `succeeded`/`failed`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use keel_client::k8s_openapi::api::batch::v1::{
    Job, JobCondition, JobStatus, UncountedTerminatedPods,
};
use keel_client::k8s_openapi::api::core::v1::Pod;
use keel_client::k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use keel_client::k8s_openapi::chrono::{DateTime, Utc};

use super::backoff;
use super::failure_policy::{judge, Verdict};
use super::indexes;
use crate::pods::{is_ready, is_terminating, phase};

/// The finalizer that keeps a job's pod until the job has counted it.
pub const TRACKING_FINALIZER: &str = "batch.kubernetes.io/job-tracking";
/// At most this many pods are created or deleted in one pass (Kubernetes'
/// MaxPodCreateDeletePerSync).
pub const MAX_WRITES_PER_PASS: usize = 500;

pub const SUCCESS_REASON: &str = "CompletionsReached";
pub const SUCCESS_MESSAGE: &str = "Reached expected number of succeeded pods";
pub const BACKOFF_REASON: &str = "BackoffLimitExceeded";
pub const BACKOFF_MESSAGE: &str = "Job has reached the specified backoff limit";
pub const DEADLINE_REASON: &str = "DeadlineExceeded";
pub const DEADLINE_MESSAGE: &str = "Job was active longer than specified deadline";
pub const POLICY_REASON: &str = "PodFailurePolicy";

/// An Event the plan asks for: type, reason, message.
pub type Note = (&'static str, &'static str, String);

/// What to do for one job.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// The status to store (written only if it differs from the job's).
    pub status: JobStatus,
    /// One entry per pod to create: its completion index for an Indexed job.
    pub create: Vec<Option<i32>>,
    /// Active pods to delete.
    pub delete: Vec<String>,
    /// Pods whose tracking finalizer may be removed once `status` is stored.
    pub release: Vec<String>,
    pub events: Vec<Note>,
    /// The job's backoff record after this pass.
    pub backoff: backoff::Record,
    /// When to look again even if nothing changes (deadline, backoff).
    pub requeue_after: Option<Duration>,
}

/// The condition of `type_` in `status` if it is True.
pub fn true_condition<'a>(status: &'a JobStatus, type_: &str) -> Option<&'a JobCondition> {
    status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == type_ && c.status == "True")
}

/// Whether the job has finished: Complete or Failed.
pub fn is_finished(status: &JobStatus) -> bool {
    true_condition(status, "Complete").is_some() || true_condition(status, "Failed").is_some()
}

fn condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: DateTime<Utc>,
) -> JobCondition {
    JobCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_probe_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

/// Sets `type_` to `status`, replacing an existing condition of that type only if it changes.
/// Returns whether anything changed.
fn set_condition(job_status: &mut JobStatus, new: JobCondition) -> bool {
    let conditions = job_status.conditions.get_or_insert_with(Vec::new);
    match conditions.iter_mut().find(|c| c.type_ == new.type_) {
        Some(existing) if existing.status == new.status => false,
        Some(existing) => {
            *existing = new;
            true
        }
        None => {
            conditions.push(new);
            true
        }
    }
}

fn has_tracking_finalizer(pod: &Pod) -> bool {
    pod.metadata
        .finalizers
        .iter()
        .flatten()
        .any(|f| f == TRACKING_FINALIZER)
}

fn uid(pod: &Pod) -> String {
    pod.metadata.uid.clone().unwrap_or_default()
}

fn name(pod: &Pod) -> String {
    pod.metadata.name.clone().unwrap_or_default()
}

/// Plans one pass over `job` and the pods it controls.
pub fn plan(job: &Job, pods: &[&Pod], now: DateTime<Utc>, record: backoff::Record) -> Plan {
    let spec = job.spec.clone().unwrap_or_default();
    let old = job.status.clone().unwrap_or_default();
    let mut status = old.clone();
    let mut out = Plan {
        backoff: record,
        ..Default::default()
    };

    if is_finished(&old) {
        // A finished job has counted everything it will; leftover finalizers only hold pods.
        out.release = pods
            .iter()
            .filter(|p| has_tracking_finalizer(p))
            .map(|p| name(p))
            .collect();
        out.status = old;
        return out;
    }

    let indexed = spec.completion_mode.as_deref() == Some("Indexed");
    let completions = spec.completions;
    let parallelism = spec.parallelism.unwrap_or(1).max(0);
    let only_failed = spec.pod_replacement_policy.as_deref() == Some("Failed")
        || spec.pod_failure_policy.is_some();
    let suspended = spec.suspend == Some(true);
    let finishing = true_condition(&old, "FailureTarget")
        .or_else(|| true_condition(&old, "SuccessCriteriaMet"))
        .cloned();

    let uncounted = old.uncounted_terminated_pods.clone().unwrap_or_default();
    let mut uncounted_succeeded: BTreeSet<String> =
        uncounted.succeeded.into_iter().flatten().collect();
    let mut uncounted_failed: BTreeSet<String> = uncounted.failed.into_iter().flatten().collect();
    let mut completed = indexes::parse(
        old.completed_indexes.as_deref().unwrap_or(""),
        completions.unwrap_or(0),
    );

    // Flush: uids recorded earlier whose pods no longer hold the finalizer are counted now.
    let holding: BTreeSet<String> = pods
        .iter()
        .filter(|p| has_tracking_finalizer(p))
        .map(|p| uid(p))
        .collect();
    let mut succeeded = old.succeeded.unwrap_or(0);
    let mut failed = old.failed.unwrap_or(0);
    uncounted_succeeded.retain(|u| {
        let keep = holding.contains(u);
        if !keep {
            succeeded += 1;
        }
        keep
    });
    uncounted_failed.retain(|u| {
        let keep = holding.contains(u);
        if !keep {
            failed += 1;
        }
        keep
    });

    // Record newly finished pods; classify the rest.
    let (mut new_successes, mut new_failures) = (0usize, 0usize);
    let mut fail_job: Option<String> = None;
    let mut active: Vec<&Pod> = Vec::new();
    let mut terminating = 0i32;
    let mut restarts = 0i32;
    for pod in pods {
        let pod_phase = phase(pod);
        let gone = is_terminating(pod);
        let is_succeeded = pod_phase == "Succeeded";
        let is_failed = pod_phase == "Failed" || (!only_failed && gone && !is_succeeded);
        if gone && !matches!(pod_phase, "Succeeded" | "Failed") {
            // Still stopping, whether or not it is already counted as failed.
            terminating += 1;
        }
        if !is_succeeded && !is_failed {
            if gone {
                if finishing.is_some() && has_tracking_finalizer(pod) {
                    out.release.push(name(pod));
                }
            } else {
                restarts += pod
                    .status
                    .iter()
                    .flat_map(|s| s.container_statuses.iter().flatten())
                    .map(|c| c.restart_count)
                    .sum::<i32>();
                active.push(pod);
            }
            continue;
        }
        if !has_tracking_finalizer(pod) {
            continue;
        }
        let pod_uid = uid(pod);
        if is_succeeded {
            if indexed {
                let ix = indexes::of_pod(
                    pod.metadata.annotations.as_ref(),
                    pod.metadata.labels.as_ref(),
                    completions.unwrap_or(0),
                );
                if let Some(ix) = ix {
                    if completed.insert(ix) {
                        new_successes += 1;
                    }
                }
            } else if uncounted_succeeded.insert(pod_uid) {
                new_successes += 1;
            }
            out.release.push(name(pod));
            continue;
        }
        if uncounted_failed.contains(&pod_uid) {
            out.release.push(name(pod));
            continue;
        }
        let verdict = if pod_phase == "Failed" {
            judge(spec.pod_failure_policy.as_ref(), pod)
        } else {
            Verdict::Count
        };
        match verdict {
            Verdict::Ignore => {}
            Verdict::FailJob(message) => {
                fail_job.get_or_insert(message);
                uncounted_failed.insert(pod_uid);
                new_failures += 1;
            }
            Verdict::Count => {
                uncounted_failed.insert(pod_uid);
                new_failures += 1;
            }
        }
        out.release.push(name(pod));
    }
    out.backoff = record.after(new_successes, new_failures, now);

    let succeeded_total = if indexed {
        i32::try_from(completed.len()).unwrap_or(i32::MAX)
    } else {
        succeeded.saturating_add(i32::try_from(uncounted_succeeded.len()).unwrap_or(i32::MAX))
    };
    let failed_total =
        failed.saturating_add(i32::try_from(uncounted_failed.len()).unwrap_or(i32::MAX));

    if status.start_time.is_none() && !suspended {
        status.start_time = Some(Time(now));
    }

    // Has the job just met its end?
    let mut finishing = finishing;
    if finishing.is_none() {
        let restart_on_failure = spec
            .template
            .spec
            .as_ref()
            .and_then(|s| s.restart_policy.as_deref())
            == Some("OnFailure");
        let retries = if restart_on_failure {
            failed_total.saturating_add(restarts)
        } else {
            failed_total
        };
        let deadline_passed = !suspended
            && deadline(&spec.active_deadline_seconds, &status.start_time)
                .is_some_and(|at| now >= at);
        let complete = match (indexed, completions) {
            (true, Some(c)) => succeeded_total >= c,
            (false, Some(c)) => succeeded_total >= c,
            (_, None) => succeeded_total > 0 && active.is_empty(),
        };
        let target = if let Some(message) = fail_job {
            Some(("FailureTarget", POLICY_REASON, message))
        } else if retries > spec.backoff_limit.unwrap_or(6) {
            Some(("FailureTarget", BACKOFF_REASON, BACKOFF_MESSAGE.to_string()))
        } else if deadline_passed {
            Some((
                "FailureTarget",
                DEADLINE_REASON,
                DEADLINE_MESSAGE.to_string(),
            ))
        } else if complete {
            Some((
                "SuccessCriteriaMet",
                SUCCESS_REASON,
                SUCCESS_MESSAGE.to_string(),
            ))
        } else {
            None
        };
        if let Some((type_, reason, message)) = target {
            let new = condition(type_, "True", reason, &message, now);
            set_condition(&mut status, new.clone());
            finishing = Some(new);
        }
    }

    let mut running = active.len();
    if let Some(target) = &finishing {
        // Stop whatever still runs; the terminal condition waits until every pod is
        // accounted for and released.
        out.delete = active.iter().map(|p| name(p)).collect();
        running = 0;
        let settled = active.is_empty()
            && terminating == 0
            && holding.is_empty()
            && uncounted_succeeded.is_empty()
            && uncounted_failed.is_empty();
        if settled {
            let reason = target.reason.clone().unwrap_or_default();
            let message = target.message.clone().unwrap_or_default();
            if target.type_ == "SuccessCriteriaMet" {
                set_condition(
                    &mut status,
                    condition("Complete", "True", &reason, &message, now),
                );
                status.completion_time = Some(Time(now));
                out.events
                    .push((crate::events::NORMAL, "Completed", "Job completed".into()));
            } else {
                set_condition(
                    &mut status,
                    condition("Failed", "True", &reason, &message, now),
                );
                let reason: &'static str = match reason.as_str() {
                    BACKOFF_REASON => BACKOFF_REASON,
                    DEADLINE_REASON => DEADLINE_REASON,
                    _ => POLICY_REASON,
                };
                out.events.push((crate::events::WARNING, reason, message));
            }
        }
    } else if suspended {
        out.delete = active.iter().map(|p| name(p)).collect();
        running = 0;
        if set_condition(
            &mut status,
            condition("Suspended", "True", "JobSuspended", "Job suspended", now),
        ) {
            out.events
                .push((crate::events::NORMAL, "Suspended", "Job suspended".into()));
        }
    } else {
        if true_condition(&old, "Suspended").is_some() {
            set_condition(
                &mut status,
                condition("Suspended", "False", "JobResumed", "Job resumed", now),
            );
            // The deadline counts time spent running, so it restarts on resume.
            status.start_time = Some(Time(now));
            out.events
                .push((crate::events::NORMAL, "Resumed", "Job resumed".into()));
        }
        let (create, delete, wait) = scale(
            &spec_shape(indexed, completions, parallelism, only_failed),
            &active,
            terminating,
            succeeded_total,
            &completed,
            out.backoff.remaining(now),
        );
        running = running + create.len() - delete.len().min(running);
        out.create = create;
        out.delete = delete;
        if !wait.is_zero() {
            out.requeue_after = Some(wait);
        }
        if let Some(at) = deadline(&spec.active_deadline_seconds, &status.start_time) {
            let left = (at - now).to_std().unwrap_or_default();
            out.requeue_after = Some(out.requeue_after.map_or(left, |r| r.min(left)));
        }
    }

    status.active = Some(i32::try_from(running).unwrap_or(i32::MAX));
    status.ready = Some(
        i32::try_from(
            active
                .iter()
                .filter(|p| is_ready(p) && !out.delete.contains(&name(p)))
                .count(),
        )
        .unwrap_or(i32::MAX),
    );
    status.terminating = Some(terminating);
    status.succeeded = Some(if indexed { succeeded_total } else { succeeded });
    status.failed = Some(failed);
    if indexed {
        status.completed_indexes = Some(indexes::format(&completed));
    }
    status.uncounted_terminated_pods = Some(UncountedTerminatedPods {
        succeeded: Some(uncounted_succeeded.into_iter().collect()),
        failed: Some(uncounted_failed.into_iter().collect()),
    });
    out.status = status;
    out
}

fn deadline(seconds: &Option<i64>, start: &Option<Time>) -> Option<DateTime<Utc>> {
    let seconds = (*seconds)?;
    let start = start.as_ref()?.0;
    Some(start + keel_client::k8s_openapi::chrono::TimeDelta::seconds(seconds))
}

/// What scaling needs to know of the spec.
#[derive(Debug, Clone, Copy)]
struct Shape {
    indexed: bool,
    completions: Option<i32>,
    parallelism: i32,
    only_failed: bool,
}

fn spec_shape(
    indexed: bool,
    completions: Option<i32>,
    parallelism: i32,
    only_failed: bool,
) -> Shape {
    Shape {
        indexed,
        completions,
        parallelism,
        only_failed,
    }
}

/// Pods to create (by index for Indexed jobs) and delete so that as many run as the job
/// wants, and the backoff to wait before creating any.
fn scale(
    shape: &Shape,
    active: &[&Pod],
    terminating: i32,
    succeeded: i32,
    completed: &BTreeSet<i32>,
    backoff: Duration,
) -> (Vec<Option<i32>>, Vec<String>, Duration) {
    let mut delete: Vec<String> = Vec::new();
    let mut keep: Vec<&Pod> = Vec::new();
    let mut running_indexes: BTreeSet<i32> = BTreeSet::new();
    if shape.indexed {
        // One pod per index still to complete; anything else goes.
        let completions = shape.completions.unwrap_or(0);
        let mut by_index: BTreeMap<i32, Vec<&Pod>> = BTreeMap::new();
        for pod in active {
            match indexes::of_pod(
                pod.metadata.annotations.as_ref(),
                pod.metadata.labels.as_ref(),
                completions,
            ) {
                Some(ix) if !completed.contains(&ix) => by_index.entry(ix).or_default().push(pod),
                _ => delete.push(name(pod)),
            }
        }
        for (ix, mut pods) in by_index {
            pods.sort_by(|a, b| deletion_order(a, b).reverse());
            running_indexes.insert(ix);
            let mut pods = pods.into_iter();
            keep.extend(pods.next());
            delete.extend(pods.map(name));
        }
    } else {
        keep = active.to_vec();
    }

    let want = match (shape.indexed, shape.completions) {
        (true, Some(c)) => {
            (c - i32::try_from(completed.len()).unwrap_or(i32::MAX)).min(shape.parallelism)
        }
        (false, Some(c)) => (c - succeeded).min(shape.parallelism),
        (_, None) if succeeded > 0 => i32::try_from(keep.len()).unwrap_or(i32::MAX),
        (_, None) => shape.parallelism,
    }
    .max(0);
    let want = usize::try_from(want).unwrap_or(0);

    if keep.len() > want {
        keep.sort_by(|a, b| deletion_order(a, b));
        delete.extend(keep.iter().take(keep.len() - want).map(|p| name(p)));
        delete.truncate(MAX_WRITES_PER_PASS);
        return (Vec::new(), delete, Duration::ZERO);
    }
    let occupied = keep.len()
        + if shape.only_failed {
            usize::try_from(terminating).unwrap_or(0)
        } else {
            0
        };
    let missing = want.saturating_sub(occupied).min(MAX_WRITES_PER_PASS);
    if missing == 0 {
        return (Vec::new(), delete, Duration::ZERO);
    }
    if !backoff.is_zero() {
        return (Vec::new(), delete, backoff);
    }
    let create = if shape.indexed {
        indexes::to_start(
            shape.completions.unwrap_or(0),
            completed,
            &running_indexes,
            missing,
        )
        .into_iter()
        .map(Some)
        .collect()
    } else {
        vec![None; missing]
    };
    (create, delete, Duration::ZERO)
}

/// Which of two active pods to delete first: unscheduled before scheduled, not ready before
/// ready, newer before older (Kubernetes' ActivePods order, shortened).
fn deletion_order(a: &Pod, b: &Pod) -> std::cmp::Ordering {
    let scheduled = |p: &Pod| p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some();
    let created = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
    scheduled(a)
        .cmp(&scheduled(b))
        .then(is_ready(a).cmp(&is_ready(b)))
        .then(created(b).cmp(&created(a)))
}

#[cfg(test)]
#[path = "sync_tests.rs"]
mod tests;
