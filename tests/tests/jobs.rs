//! The job, cronjob and ttl-after-finished controllers end to end: three keel masters running
//! the controller manager, nodes simulated by `keel sim-nodes` that finish pods after their
//! `keel.dev/sim-run-time` with their `keel.dev/sim-exit-code`. Jobs run to completion within
//! their parallelism (NonIndexed and Indexed), fail by backoffLimit or activeDeadlineSeconds,
//! and are deleted after their TTL; a Forbid CronJob never runs two jobs at once, and a
//! five-field schedule fires on the minute.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{Event, Namespace, Pod};
use keel_client::{Api, Client, ListParams};
use keel_tests::sim::{ready, until, Sim};
use keel_tests::{Cluster, Flavor};
use keel_types::k8s_openapi;
use serde_json::{json, Value};

/// A pod template the sim finishes after `run_time` with `exit_code`.
fn template(run_time: &str, exit_code: i32) -> Value {
    json!({
        "metadata": {"annotations": {
            "keel.dev/sim-run-time": run_time,
            "keel.dev/sim-exit-code": exit_code.to_string(),
        }},
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 0,
            "containers": [{"name": "work", "image": "busybox"}],
        },
    })
}

fn job(name: &str, spec: Value) -> Result<Job> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": spec,
    }))?)
}

async fn namespace(client: &Client, name: &str) -> Result<()> {
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}}))?;
    Api::<Namespace>::all(client.clone()).create(&ns).await?;
    Ok(())
}

fn condition(job: &Job, type_: &str) -> Option<(String, String)> {
    job.status
        .as_ref()?
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == type_ && c.status == "True")
        .map(|c| {
            (
                c.reason.clone().unwrap_or_default(),
                c.message.clone().unwrap_or_default(),
            )
        })
}

async fn pods_of(client: &Client, ns: &str, job: &str) -> Vec<Pod> {
    Api::<Pod>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .filter(|p| {
            p.metadata
                .owner_references
                .iter()
                .flatten()
                .any(|o| o.kind == "Job" && o.name == job)
        })
        .collect()
}

async fn events_about(client: &Client, ns: &str, name: &str) -> Vec<(String, String, String)> {
    Api::<Event>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e.involved_object.name.as_deref() == Some(name))
        .map(|e| {
            (
                e.reason.unwrap_or_default(),
                e.message.unwrap_or_default(),
                e.source.and_then(|s| s.component).unwrap_or_default(),
            )
        })
        .collect()
}

/// Waits for `name` to finish with `type_`, checking on every observation that no more
/// than `parallelism` of its pods were running.
async fn finished(
    client: &Client,
    ns: &str,
    name: &str,
    type_: &str,
    parallelism: usize,
    timeout: Duration,
) -> Result<Job> {
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns);
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let job = jobs.get(name).await?;
        let status = job.status.clone().unwrap_or_default();
        ensure!(
            status.active.unwrap_or(0) as usize <= parallelism,
            "{name}: status.active {:?} above parallelism {parallelism}",
            status.active
        );
        let running = pods_of(client, ns, name)
            .await
            .into_iter()
            .filter(|p| {
                p.metadata.deletion_timestamp.is_none()
                    && !matches!(
                        p.status.as_ref().and_then(|s| s.phase.as_deref()),
                        Some("Succeeded" | "Failed")
                    )
            })
            .count();
        ensure!(
            running <= parallelism,
            "{name}: {running} pods running, above parallelism {parallelism}"
        );
        if condition(&job, type_).is_some() {
            return Ok(job);
        }
        ensure!(
            std::time::Instant::now() < deadline,
            "{name} never {type_}: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn a_job_completes_its_completions_never_running_more_than_its_parallelism(
    client: &Client,
) -> Result<()> {
    let ns = "parallel";
    namespace(client, ns).await?;
    let spec = json!({"completions": 5, "parallelism": 2, "template": template("1s", 0)});
    Api::<Job>::namespaced(client.clone(), ns)
        .create(&job("five", spec)?)
        .await?;
    let done = finished(client, ns, "five", "Complete", 2, Duration::from_secs(90)).await?;
    let status = done.status.clone().unwrap_or_default();
    ensure!(status.succeeded == Some(5), "succeeded: {status:?}");
    ensure!(status.failed.unwrap_or(0) == 0, "failed: {status:?}");
    ensure!(status.completion_time.is_some() && status.start_time.is_some());
    ensure!(
        condition(&done, "SuccessCriteriaMet")
            == Some((
                "CompletionsReached".into(),
                "Reached expected number of succeeded pods".into()
            )),
        "{status:?}"
    );
    let pods = pods_of(client, ns, "five").await;
    ensure!(pods.len() == 5, "exactly five pods: {}", pods.len());
    for pod in &pods {
        let name = pod.metadata.name.clone().unwrap_or_default();
        ensure!(
            name.starts_with("five-") && name.len() == "five-".len() + 5,
            "{name}"
        );
        let labels = pod.metadata.labels.clone().unwrap_or_default();
        ensure!(
            labels.get("job-name").map(String::as_str) == Some("five"),
            "{name} labels {labels:?}; job template {:?}",
            done.spec.as_ref().and_then(|s| s.template.metadata.clone())
        );
        ensure!(labels.contains_key("batch.kubernetes.io/controller-uid"));
        ensure!(
            !pod.metadata
                .finalizers
                .iter()
                .flatten()
                .any(|f| f == "batch.kubernetes.io/job-tracking"),
            "{name} still tracked"
        );
    }
    let events = events_about(client, ns, "five").await;
    ensure!(
        events
            .iter()
            .any(|(r, m, c)| r == "Completed" && m == "Job completed" && c == "job-controller"),
        "{events:?}"
    );
    ensure!(events
        .iter()
        .any(|(r, m, _)| r == "SuccessfulCreate" && m.starts_with("Created pod: five-")));
    Ok(())
}

async fn an_indexed_job_completes_every_index_once(client: &Client) -> Result<()> {
    let ns = "indexed";
    namespace(client, ns).await?;
    let spec = json!({"completions": 4, "parallelism": 2, "completionMode": "Indexed",
        "template": template("1s", 0)});
    Api::<Job>::namespaced(client.clone(), ns)
        .create(&job("idx", spec)?)
        .await?;
    let done = finished(client, ns, "idx", "Complete", 2, Duration::from_secs(90)).await?;
    let status = done.status.unwrap_or_default();
    ensure!(
        status.completed_indexes.as_deref() == Some("0-3"),
        "{status:?}"
    );
    ensure!(status.succeeded == Some(4), "{status:?}");
    let mut indexes = BTreeSet::new();
    for pod in pods_of(client, ns, "idx").await {
        let annotations = pod.metadata.annotations.clone().unwrap_or_default();
        let ix = annotations
            .get("batch.kubernetes.io/job-completion-index")
            .context("index annotation")?
            .clone();
        let name = pod.metadata.name.clone().unwrap_or_default();
        ensure!(name.starts_with(&format!("idx-{ix}-")), "{name}");
        let spec = pod.spec.clone().unwrap_or_default();
        ensure!(spec.hostname.as_deref() == Some(format!("idx-{ix}").as_str()));
        ensure!(spec.containers[0]
            .env
            .iter()
            .flatten()
            .any(|e| e.name == "JOB_COMPLETION_INDEX"));
        indexes.insert(ix);
    }
    ensure!(
        indexes == ["0", "1", "2", "3"].iter().map(|s| s.to_string()).collect(),
        "{indexes:?}"
    );
    Ok(())
}

async fn a_failing_job_stops_at_its_backoff_limit(client: &Client) -> Result<()> {
    let ns = "failing";
    namespace(client, ns).await?;
    let spec = json!({"backoffLimit": 1, "template": template("1s", 1)});
    Api::<Job>::namespaced(client.clone(), ns)
        .create(&job("broken", spec)?)
        .await?;
    // One failure, a 10 s backoff, a second failure: over the limit of 1.
    let failed = finished(client, ns, "broken", "Failed", 1, Duration::from_secs(90)).await?;
    ensure!(
        condition(&failed, "Failed")
            == Some((
                "BackoffLimitExceeded".into(),
                "Job has reached the specified backoff limit".into()
            )),
        "{:?}",
        failed.status
    );
    ensure!(failed.status.as_ref().and_then(|s| s.failed) == Some(2));
    let events = events_about(client, ns, "broken").await;
    ensure!(
        events.iter().any(|(r, m, _)| r == "BackoffLimitExceeded"
            && m == "Job has reached the specified backoff limit"),
        "{events:?}"
    );
    Ok(())
}

async fn a_job_running_past_its_deadline_fails_and_its_pods_are_stopped(
    client: &Client,
) -> Result<()> {
    let ns = "deadline";
    namespace(client, ns).await?;
    let spec = json!({"activeDeadlineSeconds": 3, "template": template("10m", 0)});
    Api::<Job>::namespaced(client.clone(), ns)
        .create(&job("slow", spec)?)
        .await?;
    let failed = finished(client, ns, "slow", "Failed", 1, Duration::from_secs(60)).await?;
    ensure!(
        condition(&failed, "Failed")
            == Some((
                "DeadlineExceeded".into(),
                "Job was active longer than specified deadline".into()
            )),
        "{:?}",
        failed.status
    );
    until(
        "the slow job's pod is gone",
        Duration::from_secs(30),
        || async { pods_of(client, ns, "slow").await.is_empty() },
    )
    .await?;
    let events = events_about(client, ns, "slow").await;
    ensure!(
        events.iter().any(|(r, _, _)| r == "DeadlineExceeded"),
        "{events:?}"
    );
    ensure!(events
        .iter()
        .any(|(r, m, _)| r == "SuccessfulDelete" && m.starts_with("Deleted pod: slow-")));
    Ok(())
}

async fn a_finished_job_is_deleted_after_its_ttl(client: &Client) -> Result<()> {
    let ns = "ttl";
    namespace(client, ns).await?;
    let spec = json!({"ttlSecondsAfterFinished": 2, "template": template("1s", 0)});
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns);
    jobs.create(&job("brief", spec)?).await?;
    finished(client, ns, "brief", "Complete", 1, Duration::from_secs(60)).await?;
    until(
        "the finished job is deleted",
        Duration::from_secs(30),
        || async { jobs.get("brief").await.is_err_and(|e| e.is_not_found()) },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_complete_within_parallelism_fail_by_limit_or_deadline_and_expire_after_their_ttl(
) -> Result<()> {
    let cluster = Cluster::start(Flavor::Keel, 3).await?;
    let client = cluster.client()?;
    ready(&client).await?;
    let sim = Sim::start(&cluster, &["--count", "3"])?;
    let outcome = tokio::try_join!(
        a_job_completes_its_completions_never_running_more_than_its_parallelism(&client),
        an_indexed_job_completes_every_index_once(&client),
        a_failing_job_stops_at_its_backoff_limit(&client),
        a_job_running_past_its_deadline_fails_and_its_pods_are_stopped(&client),
        a_finished_job_is_deleted_after_its_ttl(&client),
    );
    outcome
        .map(|_| ())
        .with_context(|| format!("sim log:\n{}", sim.log()))
}

fn cronjob(name: &str, schedule: &str, policy: &str, run_time: &str) -> Result<CronJob> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": name},
        "spec": {
            "schedule": schedule,
            "concurrencyPolicy": policy,
            "jobTemplate": {"spec": {"template": template(run_time, 0)}},
        },
    }))?)
}

async fn jobs_of(client: &Client, ns: &str) -> Vec<Job> {
    Api::<Job>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
}

/// A five-field Forbid schedule whose jobs outlast a minute: the first fires on the minute,
/// named for it and annotated with its time; the next minute finds it still running and
/// starts nothing.
async fn a_forbid_cronjob_fires_on_the_minute_and_never_runs_two_jobs_at_once(
    client: &Client,
) -> Result<()> {
    let ns = "forbid";
    namespace(client, ns).await?;
    Api::<CronJob>::namespaced(client.clone(), ns)
        .create(&cronjob("tick", "* * * * *", "Forbid", "10m")?)
        .await?;
    let deadline = std::time::Instant::now() + Duration::from_secs(150);
    loop {
        let jobs = jobs_of(client, ns).await;
        ensure!(
            jobs.len() <= 1,
            "a Forbid cronjob started a second job: {jobs:?}"
        );
        let events = events_about(client, ns, "tick").await;
        if events.iter().any(|(r, m, c)| {
            r == "JobAlreadyActive"
                && m == "Not starting job because prior execution is running and concurrency policy is Forbid"
                && c == "cronjob-controller"
        }) {
            break;
        }
        ensure!(
            std::time::Instant::now() < deadline,
            "no JobAlreadyActive: {events:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let jobs = jobs_of(client, ns).await;
    let job = jobs.first().context("a job")?;
    let name = job.metadata.name.clone().unwrap_or_default();
    let stamp = job
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("batch.kubernetes.io/cronjob-scheduled-timestamp"))
        .context("scheduled-timestamp annotation")?;
    let scheduled = k8s_openapi::chrono::DateTime::parse_from_rfc3339(stamp)?;
    ensure!(scheduled.timestamp() % 60 == 0, "on the minute: {stamp}");
    ensure!(
        name == format!("tick-{}", scheduled.timestamp() / 60),
        "{name} for {stamp}"
    );
    let cj = Api::<CronJob>::namespaced(client.clone(), ns)
        .get("tick")
        .await?;
    let status = cj.status.unwrap_or_default();
    ensure!(
        status.last_schedule_time.as_ref().map(|t| t.0.timestamp()) == Some(scheduled.timestamp()),
        "{status:?}"
    );
    ensure!(
        status
            .active
            .iter()
            .flatten()
            .filter_map(|r| r.name.clone())
            .collect::<Vec<_>>()
            == vec![name],
        "{status:?}"
    );
    let events = events_about(client, ns, "tick").await;
    ensure!(
        events.iter().any(|(r, m, _)| r == "SuccessfulCreate"
            && m == &format!(
                "Created job {}",
                job.metadata.name.clone().unwrap_or_default()
            )),
        "{events:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forbid_cronjob_fires_on_schedule_and_never_overlaps() -> Result<()> {
    let cluster = Cluster::start(Flavor::Keel, 3).await?;
    let client = cluster.client()?;
    ready(&client).await?;
    let sim = Sim::start(&cluster, &["--count", "3"])?;
    a_forbid_cronjob_fires_on_the_minute_and_never_runs_two_jobs_at_once(&client)
        .await
        .with_context(|| format!("sim log:\n{}", sim.log()))
}
