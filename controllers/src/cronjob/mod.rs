//! The `cronjob` controller: creates a CronJob's Jobs at its schedule times, as
//! kube-controller-manager's does (concurrencyPolicy, startingDeadlineSeconds, suspend,
//! history limits, time zones), and requeues each CronJob for just after its next time.
//!
//! [`plan`] decides; this shell reads the caches, confirms with the server that an active job
//! it no longer sees is really gone, and writes: deletions, the new job, then the status.

pub mod plan;
pub mod schedule;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::SecondsFormat;
use futures::future::BoxFuture;
use futures::StreamExt;
use keel_client::k8s_openapi::api::batch::v1::{CronJob, Job};
use keel_client::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use keel_client::k8s_openapi::chrono::Utc;
use keel_client::runtime::{owner_keys, Action, Controller};
use keel_client::DeleteParams;
use tokio_util::sync::CancellationToken;

use crate::context::Context;
use crate::events;
use crate::pods::{controller_reference, is_controlled_by};
use schedule::{Schedule, ScheduleError};

/// The component name on this controller's Events.
pub const COMPONENT: &str = "cronjob-controller";

pub fn start(ctx: Arc<Context>, stop: CancellationToken) -> BoxFuture<'static, ()> {
    Box::pin(async move {
        let cronjobs = ctx.informers.of::<CronJob>().subscribe();
        let jobs = ctx.informers.of::<Job>().subscribe();
        Controller::for_events(cronjobs)
            .watches_events(jobs, owner_keys::<CronJob, Job>)
            .run(reconcile, error_policy, ctx, stop)
            .for_each(|outcome| async move {
                if let Err(error) = outcome {
                    tracing::debug!(%error, "cronjob");
                }
            })
            .await;
    })
}

fn error_policy(_: &Arc<CronJob>, _: &keel_client::Error, _: &Context) -> Action {
    Action::requeue(Duration::from_secs(1))
}

async fn reconcile(cj: Arc<CronJob>, ctx: Arc<Context>) -> Result<Action, keel_client::Error> {
    if cj.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let job_store = ctx.informers.of::<Job>().store();
    job_store.wait_until_ready().await?;
    let namespace = cj.metadata.namespace.clone().unwrap_or_default();
    let name = cj.metadata.name.clone().unwrap_or_default();
    let uid = cj.metadata.uid.clone().unwrap_or_default();
    let spec = cj.spec.clone().unwrap_or_default();
    let job_api = ctx.api::<Job>(&namespace);
    let note = |type_: &'static str, reason: &str, message: String| {
        ctx.recorder.event(
            COMPONENT,
            events::reference(cj.as_ref()),
            type_,
            reason,
            message,
        )
    };

    let schedule = match Schedule::parse(&spec.schedule, spec.time_zone.as_deref()) {
        Ok(s) => s,
        Err(ScheduleError::UnknownTimeZone(zone)) => {
            note(
                events::WARNING,
                "UnknownTimeZone",
                format!("invalid timeZone: {zone:?}: unknown time zone {zone}"),
            );
            return Ok(Action::await_change());
        }
        Err(ScheduleError::Unparseable(message)) => {
            note(
                events::WARNING,
                "UnparseableSchedule",
                format!("unparseable schedule: {:?} : {message}", spec.schedule),
            );
            return Ok(Action::await_change());
        }
    };

    let owned: Vec<Arc<Job>> = job_store
        .state()
        .into_iter()
        .filter(|j| j.metadata.namespace.as_deref() == Some(namespace.as_str()))
        .filter(|j| is_controlled_by(&j.metadata, &uid))
        .collect();
    let jobs: Vec<&Job> = owned.iter().map(|j| j.as_ref()).collect();

    // An active job the cache does not hold may only be lagging: ask the server.
    let mut missing = BTreeSet::new();
    for reference in cj.status.iter().flat_map(|s| s.active.iter().flatten()) {
        let ref_uid = reference.uid.clone().unwrap_or_default();
        if jobs
            .iter()
            .any(|j| j.metadata.uid.as_deref() == Some(ref_uid.as_str()))
        {
            continue;
        }
        match job_api.get(reference.name.as_deref().unwrap_or("")).await {
            Err(e) if e.is_not_found() => {
                missing.insert(ref_uid);
            }
            Err(e) => return Err(e),
            Ok(job) if job.metadata.uid.as_deref() != Some(ref_uid.as_str()) => {
                missing.insert(ref_uid);
            }
            Ok(_) => {}
        }
    }

    let mut plan = plan::plan(&cj, &jobs, &missing, &schedule, Utc::now());

    let background = DeleteParams {
        propagation_policy: Some("Background".into()),
        ..Default::default()
    };
    for job_name in &plan.delete {
        match job_api.delete(job_name, &background).await {
            Ok(_) => note(
                events::NORMAL,
                "SuccessfulDelete",
                format!("Deleted job {job_name}"),
            ),
            Err(e) if e.is_not_found() => {}
            Err(e) => {
                note(events::WARNING, "FailedDelete", format!("Deleted job: {e}"));
                return Err(e);
            }
        }
    }

    if let Some(scheduled) = plan.create {
        let job = new_job(&cj, &schedule, scheduled);
        let job_name = job.metadata.name.clone().unwrap_or_default();
        let created = match job_api.create(&job).await {
            Ok(created) => {
                note(
                    events::NORMAL,
                    "SuccessfulCreate",
                    format!("Created job {job_name}"),
                );
                created
            }
            Err(e) if e.code() == Some(409) => {
                // Ours from an earlier pass whose status write was lost: record it; anyone
                // else's is left alone and this time retried.
                let existing = job_api.get(&job_name).await?;
                if !is_controlled_by(&existing.metadata, &uid) {
                    return Err(e);
                }
                existing
            }
            Err(e) => {
                note(
                    events::WARNING,
                    "FailedCreate",
                    format!("Error creating job: {e}"),
                );
                return Err(e);
            }
        };
        if plan::finished(&created).is_none() {
            let active = plan.status.active.get_or_insert_with(Vec::new);
            if !active.iter().any(|r| r.uid == created.metadata.uid) {
                active.push(plan::reference(&created));
            }
        }
    }

    if cj.status.as_ref() != Some(&plan.status) {
        let mut updated = (*cj).clone();
        updated.status = Some(plan.status.clone());
        ctx.api::<CronJob>(&namespace)
            .replace_status(&name, &updated)
            .await?;
    }
    for (type_, reason, message) in plan.events.drain(..) {
        note(type_, reason, message);
    }
    Ok(plan
        .requeue_after
        .map_or_else(Action::await_change, Action::requeue))
}

/// The Job for `scheduled`: the template's labels, annotations and spec, named for the
/// minute, annotated with the scheduled time in the schedule's zone, controlled by `cj`.
fn new_job(cj: &CronJob, schedule: &Schedule, scheduled: chrono::DateTime<Utc>) -> Job {
    let template = cj
        .spec
        .as_ref()
        .map(|s| s.job_template.clone())
        .unwrap_or_default();
    let meta = template.metadata.unwrap_or_default();
    let mut annotations = meta.annotations.unwrap_or_default();
    annotations.insert(
        plan::SCHEDULED_TIMESTAMP.into(),
        scheduled
            .with_timezone(&schedule.zone())
            .to_rfc3339_opts(SecondsFormat::Secs, true),
    );
    Job {
        metadata: ObjectMeta {
            name: Some(plan::job_name(
                cj.metadata.name.as_deref().unwrap_or(""),
                scheduled,
            )),
            namespace: cj.metadata.namespace.clone(),
            labels: meta.labels,
            annotations: Some(annotations),
            owner_references: Some(vec![controller_reference(cj)]),
            ..Default::default()
        },
        spec: template.spec,
        status: None,
    }
}
