//! `keel bench api`: what writes cost on the API's path, against running masters. A fresh
//! namespace is filled with `--pods` pods (left alone by every scheduler: their schedulerName
//! is nobody's), then each measured kind gets `--writes` creates from `--clients` clients at
//! once: ConfigMaps (nothing on their path but admission and the store), then Services and
//! Deployments, whose selectors the API lints on write against the namespace's pods and
//! workloads. Each kind's row gives writes per second and latency p50, p99 and max; the same
//! run against masters started with `--selector-warnings=false` gives the writes without the
//! lint, and `--pods 0` the lint over an empty namespace.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context as _};
use hdrhistogram::Histogram;
use keel_client::k8s_openapi::api::apps::v1::Deployment;
use keel_client::k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Service};
use keel_client::k8s_openapi::{ListableResource, Resource};
use keel_client::{Api, Client, DeleteParams};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};

use super::report::{fmt_ms, percentiles};
use crate::connect::MasterArgs;

/// Distinct `app` labels among the pods: each Service selects one group.
const GROUPS: usize = 50;

#[derive(clap::Args, Debug, Clone)]
pub struct ApiBenchArgs {
    /// Pods in the namespace before the writes are measured.
    #[arg(long, default_value_t = 5000)]
    pods: usize,
    /// Creates measured for each kind.
    #[arg(long, default_value_t = 2000)]
    writes: usize,
    /// Clients writing at once.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Leave the namespace in place afterwards.
    #[arg(long)]
    keep: bool,
    #[command(flatten)]
    masters: MasterArgs,
}

/// The measured kinds, in the order they are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    ConfigMap,
    Service,
    Deployment,
}

impl Kind {
    const ALL: [Kind; 3] = [Kind::ConfigMap, Kind::Service, Kind::Deployment];

    fn name(self) -> &'static str {
        match self {
            Kind::ConfigMap => "ConfigMap",
            Kind::Service => "Service",
            Kind::Deployment => "Deployment",
        }
    }

    /// Whether the API lints this kind's selector on write.
    fn linted(self) -> bool {
        self != Kind::ConfigMap
    }

    /// The `i`th object of this kind.
    fn object(self, i: usize) -> Value {
        match self {
            Kind::ConfigMap => config_map(i),
            Kind::Service => service(i),
            Kind::Deployment => deployment(i),
        }
    }
}

/// A pod of ordinary shape (700 bytes of JSON as sent, to which the API adds defaults, managed
/// fields and status): labels, one container with command, env, ports, resources and a
/// readiness probe.
pub fn pod(i: usize) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("pod-{i}"), "labels": {
            "app": format!("web-{}", i % GROUPS), "tier": "frontend", "release": "stable"}},
        "spec": {
            "schedulerName": "bench-no-scheduler",
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "web", "image": "registry.example/web:1.4.2",
                "command": ["/bin/web", "--listen=:8080", "--log-level=info"],
                "env": [
                    {"name": "MODE", "value": "production"},
                    {"name": "CACHE_SIZE", "value": "256"},
                    {"name": "UPSTREAM", "value": "http://api.default.svc.cluster.local"}
                ],
                "ports": [{"name": "http", "containerPort": 8080}],
                "resources": {"requests": {"cpu": "100m", "memory": "128Mi"},
                    "limits": {"cpu": "500m", "memory": "256Mi"}},
                "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080},
                    "periodSeconds": 5}
            }]
        }
    })
}

fn config_map(i: usize) -> Value {
    json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": format!("config-{i}"), "labels": {"app": format!("web-{}", i % GROUPS)}},
        "data": {"listen": ":8080", "upstream": "http://api.default.svc.cluster.local"}
    })
}

fn service(i: usize) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": format!("svc-{i}")},
        "spec": {"selector": {"app": format!("web-{}", i % GROUPS)},
            "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}
    })
}

/// A paused Deployment of no replicas: its selector is linted like any other, and the
/// controllers have nothing to roll out.
fn deployment(i: usize) -> Value {
    let app = format!("batch-{i}");
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": format!("deploy-{i}")},
        "spec": {
            "replicas": 0, "paused": true,
            "selector": {"matchLabels": {"app": app}},
            "template": {"metadata": {"labels": {"app": app}},
                "spec": {"containers": [{"name": "c", "image": "registry.example/batch:2"}]}}
        }
    })
}

/// One kind's measured creates.
struct Row {
    kind: Kind,
    writes: usize,
    errors: usize,
    first_error: Option<String>,
    seconds: f64,
    latencies: Histogram<u64>,
}

pub async fn run(args: ApiBenchArgs) -> anyhow::Result<()> {
    if args.writes == 0 || args.clients == 0 {
        bail!("--writes and --clients must be positive");
    }
    let client = args.masters.connect()?;
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let namespace = format!("bench-api-{stamp}");
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(&serde_json::from_value(
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}),
        )?)
        .await
        .context("creating the namespace")?;
    let outcome = measure(&client, &namespace, &args).await;
    if !args.keep {
        remove(&namespaces, &namespace).await;
    }
    let rows = outcome?;
    println!(
        "{:<11} {:>6} {:>7} {:>8} {:>9} {:>9} {:>9} {:>9} {:>7}",
        "kind", "linted", "pods", "clients", "writes/s", "p50 ms", "p99 ms", "max ms", "errors"
    );
    for row in &rows {
        let [p50, _, p99, _, max] = percentiles(&row.latencies);
        println!(
            "{:<11} {:>6} {:>7} {:>8} {:>9.0} {:>9} {:>9} {:>9} {:>7}",
            row.kind.name(),
            if row.kind.linted() { "yes" } else { "no" },
            args.pods,
            args.clients,
            row.writes as f64 / row.seconds.max(f64::EPSILON),
            fmt_ms(p50),
            fmt_ms(p99),
            fmt_ms(max),
            row.errors
        );
    }
    if let Some(row) = rows.iter().find(|r| r.errors > 0) {
        bail!(
            "{} of {} {} creates failed; first: {}",
            row.errors,
            row.writes + row.errors,
            row.kind.name(),
            row.first_error.as_deref().unwrap_or_default()
        );
    }
    Ok(())
}

async fn measure(
    client: &Client,
    namespace: &str,
    args: &ApiBenchArgs,
) -> anyhow::Result<Vec<Row>> {
    if args.pods > 0 {
        eprintln!(
            "bench api: creating {} pods in {namespace} (not measured)",
            args.pods
        );
        let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
        let fill = create_all(&pods, args.pods, args.clients, pod).await?;
        if fill.errors > 0 {
            bail!(
                "{} of {} pods could not be created; first: {}",
                fill.errors,
                args.pods,
                fill.first_error.unwrap_or_default()
            );
        }
        eprintln!(
            "bench api: {} pods in {:.1}s ({:.0}/s)",
            args.pods,
            fill.seconds,
            args.pods as f64 / fill.seconds.max(f64::EPSILON)
        );
    }
    let mut rows = Vec::new();
    for kind in Kind::ALL {
        eprintln!("bench api: {} {} creates", args.writes, kind.name());
        let done = match kind {
            Kind::ConfigMap => {
                let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
                create_all(&api, args.writes, args.clients, move |i| kind.object(i)).await?
            }
            Kind::Service => {
                let api: Api<Service> = Api::namespaced(client.clone(), namespace);
                create_all(&api, args.writes, args.clients, move |i| kind.object(i)).await?
            }
            Kind::Deployment => {
                let api: Api<Deployment> = Api::namespaced(client.clone(), namespace);
                create_all(&api, args.writes, args.clients, move |i| kind.object(i)).await?
            }
        };
        rows.push(Row {
            kind,
            writes: args.writes - done.errors,
            errors: done.errors,
            first_error: done.first_error,
            seconds: done.seconds,
            latencies: done.latencies,
        });
    }
    Ok(rows)
}

/// Deletes the namespace and waits (up to 10 minutes) until it is gone, so that a next run
/// does not share the masters with its clean-up.
async fn remove(namespaces: &Api<Namespace>, namespace: &str) {
    let started = Instant::now();
    if let Err(e) = namespaces.delete(namespace, &DeleteParams::default()).await {
        eprintln!("bench api: deleting {namespace}: {e}");
        return;
    }
    while started.elapsed() < std::time::Duration::from_secs(600) {
        if namespaces
            .get(namespace)
            .await
            .is_err_and(|e| e.is_not_found())
        {
            eprintln!(
                "bench api: {namespace} deleted in {:.1}s",
                started.elapsed().as_secs_f64()
            );
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    eprintln!("bench api: {namespace} is still being deleted after 10 minutes");
}

/// What `create_all` did.
struct Done {
    seconds: f64,
    errors: usize,
    first_error: Option<String>,
    latencies: Histogram<u64>,
}

/// Creates objects `make(0..count)` through `api`, `clients` at a time, each create timed.
async fn create_all<K>(
    api: &Api<K>,
    count: usize,
    clients: usize,
    make: impl Fn(usize) -> Value + Send + Sync + 'static,
) -> anyhow::Result<Done>
where
    K: Resource + ListableResource + DeserializeOwned + Serialize + Send + Sync + 'static,
{
    let next = Arc::new(AtomicUsize::new(0));
    let make = Arc::new(make);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients.min(count.max(1)) {
        let (api, next, make) = (api.clone(), next.clone(), make.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = super::new_histogram()?;
            let (mut errors, mut first_error) = (0, None);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    break;
                }
                let object: K = serde_json::from_value(make(i))?;
                let sent = Instant::now();
                match api.create(&object).await {
                    Ok(_) => {
                        let us = u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX);
                        latencies.saturating_record(us);
                    }
                    Err(e) => {
                        errors += 1;
                        first_error.get_or_insert_with(|| e.to_string());
                    }
                }
            }
            anyhow::Ok((latencies, errors, first_error))
        }));
    }
    let mut done = Done {
        seconds: 0.0,
        errors: 0,
        first_error: None,
        latencies: super::new_histogram()?,
    };
    for task in tasks {
        let (latencies, errors, first_error) = task.await.context("a writer panicked")??;
        done.latencies
            .add(&latencies)
            .context("merging latencies")?;
        done.errors += errors;
        if done.first_error.is_none() {
            done.first_error = first_error;
        }
    }
    done.seconds = started.elapsed().as_secs_f64();
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_service_selects_a_group_of_the_pods_and_every_deployment_its_own_template() {
        let labels: std::collections::BTreeSet<String> = (0..GROUPS * 2)
            .map(|i| {
                pod(i)["metadata"]["labels"]["app"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned()
            })
            .collect();
        for i in 0..GROUPS * 2 {
            let selected = service(i)["spec"]["selector"]["app"]
                .as_str()
                .unwrap_or("")
                .to_owned();
            assert!(labels.contains(&selected), "{selected}");
            let d = deployment(i);
            assert_eq!(
                d["spec"]["selector"]["matchLabels"]["app"],
                d["spec"]["template"]["metadata"]["labels"]["app"]
            );
        }
        assert!(serde_json::to_vec(&pod(7)).map_or(0, |b| b.len()) >= 700);
        for kind in Kind::ALL {
            assert_eq!(kind.object(3)["kind"], kind.name());
        }
    }
}
