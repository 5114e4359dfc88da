//! When a finished Job's `ttlSecondsAfterFinished` runs out: the time its Complete or Failed
//! condition turned True, plus the TTL. Pure over the job and the clock.

use std::time::Duration;

use keel_client::k8s_openapi::api::batch::v1::Job;
use keel_client::k8s_openapi::chrono::{DateTime, TimeDelta, Utc};

/// What to do about one job now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// No TTL, not finished, or already being deleted.
    Keep,
    /// Look again after this long.
    Wait(Duration),
    /// The TTL has run out.
    Delete,
}

/// When the job finished, if it has: its Complete or Failed condition's transition time.
pub fn finished_at(job: &Job) -> Option<DateTime<Utc>> {
    job.status
        .as_ref()?
        .conditions
        .iter()
        .flatten()
        .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
        .map(|c| {
            c.last_transition_time
                .as_ref()
                .map_or(DateTime::<Utc>::MIN_UTC, |t| t.0)
        })
}

pub fn verdict(job: &Job, now: DateTime<Utc>) -> Verdict {
    if job.metadata.deletion_timestamp.is_some() {
        return Verdict::Keep;
    }
    let Some(ttl) = job.spec.as_ref().and_then(|s| s.ttl_seconds_after_finished) else {
        return Verdict::Keep;
    };
    let Some(finished) = finished_at(job) else {
        return Verdict::Keep;
    };
    let expires = finished + TimeDelta::seconds(i64::from(ttl));
    if now >= expires {
        Verdict::Delete
    } else {
        Verdict::Wait((expires - now).to_std().unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_client::k8s_openapi::api::batch::v1::{JobCondition, JobSpec, JobStatus};
    use keel_client::k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn t(seconds: i64) -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp(1_700_000_000 + seconds, 0).unwrap_or_default()
    }

    fn job(ttl: Option<i32>, finished: Option<(&str, i64)>) -> Job {
        Job {
            spec: Some(JobSpec {
                ttl_seconds_after_finished: ttl,
                ..Default::default()
            }),
            status: Some(JobStatus {
                conditions: finished.map(|(type_, at)| {
                    vec![JobCondition {
                        type_: type_.into(),
                        status: "True".into(),
                        last_transition_time: Some(Time(t(at))),
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_finished_job_is_deleted_once_its_ttl_has_passed() {
        let j = job(Some(30), Some(("Complete", 100)));
        assert_eq!(verdict(&j, t(110)), Verdict::Wait(Duration::from_secs(20)));
        assert_eq!(verdict(&j, t(130)), Verdict::Delete);
        let failed = job(Some(0), Some(("Failed", 100)));
        assert_eq!(verdict(&failed, t(100)), Verdict::Delete);
    }

    #[test]
    fn jobs_without_ttl_or_not_finished_are_kept() {
        assert_eq!(
            verdict(&job(None, Some(("Complete", 0))), t(999)),
            Verdict::Keep
        );
        assert_eq!(verdict(&job(Some(1), None), t(999)), Verdict::Keep);
        assert_eq!(
            verdict(&job(Some(1), Some(("SuccessCriteriaMet", 0))), t(999)),
            Verdict::Keep
        );
    }
}
