//! `keel bench controllers`: the controller manager's throughput against running masters, on
//! nodes simulated by a `keel sim-nodes` child. A Deployment is applied in a fresh namespace
//! and timed until every replica is available; then its image is changed and the rolling
//! update is timed until it completes. A watch on the namespace's pods counts the pods the
//! ReplicaSet controller creates, so the printed rate is pods created per second (first create
//! to last) in each phase.
//!
//! The anchor: kube-controller-manager's client is limited to 20 requests per second (burst
//! 30) by default, which holds its ReplicaSet controller near 20 pod creates per second.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use futures::StreamExt;
use keel_client::k8s_openapi::api::apps::v1::Deployment;
use keel_client::k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use keel_client::watcher::{watcher, Event};
use keel_client::{Api, DeleteParams, Patch, WatchParams};
use serde_json::json;
use tokio::sync::Mutex;

use super::sim::Sim;
use crate::connect::MasterArgs;

/// kube-controller-manager's default client rate limit, the anchor the figures compare with.
const ANCHOR_PODS_PER_SECOND: f64 = 20.0;

#[derive(clap::Args, Debug, Clone)]
pub struct ControllersBenchArgs {
    /// Simulated nodes to register (32 CPU, 256 GiB, 110 pods each).
    #[arg(long, default_value_t = 1000)]
    nodes: usize,
    /// The Deployment's replicas.
    #[arg(long, default_value_t = 3000)]
    replicas: usize,
    /// Give up on a phase after this long.
    #[arg(long, default_value = "10m", value_parser = crate::duration::flag)]
    timeout: Duration,
    /// Leave the namespace and the simulated nodes in place afterwards.
    #[arg(long)]
    keep: bool,
    /// Print the result as one JSON object.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    masters: MasterArgs,
}

/// Pod creations seen by the watch, with when.
#[derive(Default)]
struct Creations {
    seen: std::collections::HashSet<String>,
    times: Vec<Instant>,
}

/// One timed phase.
#[derive(Debug, Clone, Copy)]
struct Phase {
    /// From the request to the Deployment being complete.
    seconds: f64,
    pods_created: usize,
    /// Pods created per second, from the phase's first create to its last.
    create_rate: f64,
    /// The longest wait between two consecutive creates: with a master killed mid-phase, how
    /// long the controllers stood still.
    max_gap: f64,
}

pub async fn run(args: ControllersBenchArgs) -> anyhow::Result<()> {
    if args.nodes == 0 || args.replicas == 0 {
        bail!("--nodes and --replicas must be positive");
    }
    let client = args.masters.connect()?;
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let prefix = format!("benchc-{stamp}-node-");
    eprintln!(
        "bench controllers: registering {} simulated nodes ({prefix}*)",
        args.nodes
    );
    let sim = Sim::start(&args.masters, args.nodes, &prefix, &[])?;
    let nodes: Api<Node> = Api::all(client.clone());
    sim.wait_registered(&nodes, args.nodes).await?;
    let namespace = format!("bench-controllers-{stamp}");
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(&serde_json::from_value(
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}),
        )?)
        .await?;
    let outcome = measure(&client, &namespace, &args).await;
    if !args.keep {
        let _ = namespaces
            .delete(&namespace, &DeleteParams::default())
            .await;
        sim.stop(Duration::from_secs(120)).await;
    } else {
        drop(sim);
    }
    let (rollout, update) = outcome?;
    report(&args, rollout, update);
    Ok(())
}

async fn measure(
    client: &keel_client::Client,
    namespace: &str,
    args: &ControllersBenchArgs,
) -> anyhow::Result<(Phase, Phase)> {
    let creations = Arc::new(Mutex::new(Creations::default()));
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let stop = tokio_util::sync::CancellationToken::new();
    let watching = {
        let creations = creations.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let stream = watcher(pods, WatchParams::default());
            let mut stream = std::pin::pin!(stream);
            loop {
                let event = tokio::select! {
                    _ = stop.cancelled() => return,
                    event = stream.next() => event,
                };
                let Some(event) = event else { return };
                let applied = match event {
                    Ok(Event::Applied(p)) => vec![p],
                    Ok(Event::Restarted(ps)) => ps,
                    _ => continue,
                };
                let now = Instant::now();
                let mut c = creations.lock().await;
                for p in applied {
                    if let Some(name) = p.metadata.name {
                        if c.seen.insert(name) {
                            c.times.push(now);
                        }
                    }
                }
            }
        })
    };
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let replicas = args.replicas as i32;
    eprintln!("bench controllers: applying a Deployment of {replicas} replicas");
    let started = Instant::now();
    deployments
        .create(&serde_json::from_value(json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "bench", "namespace": namespace},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": "bench"}},
                "template": {
                    "metadata": {"labels": {"app": "bench"}},
                    "spec": {"terminationGracePeriodSeconds": 1,
                        "containers": [{"name": "app", "image": "bench:1",
                            "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]}
                }
            }
        }))?)
        .await?;
    complete(&deployments, replicas, started, args.timeout).await?;
    let rollout = phase(&creations, started, 0).await;
    eprintln!(
        "bench controllers: all available after {:.1}s; rolling out a new image",
        rollout.seconds
    );
    let before = creations.lock().await.times.len();
    let started = Instant::now();
    deployments
        .patch(
            "bench",
            &Patch::Merge(json!({"spec": {"template": {"spec": {"containers": [
                {"name": "app", "image": "bench:2"}]}}}})),
        )
        .await?;
    complete(&deployments, replicas, started, args.timeout).await?;
    let update = phase(&creations, started, before).await;
    stop.cancel();
    let _ = watching.await;
    Ok((rollout, update))
}

/// Waits until the Deployment's newest spec is fully rolled out and available.
async fn complete(
    deployments: &Api<Deployment>,
    replicas: i32,
    started: Instant,
    timeout: Duration,
) -> anyhow::Result<()> {
    loop {
        let d = deployments.get("bench").await?;
        let s = d.status.clone().unwrap_or_default();
        if s.observed_generation == d.metadata.generation
            && s.updated_replicas == Some(replicas)
            && s.available_replicas == Some(replicas)
            && s.replicas == Some(replicas)
        {
            return Ok(());
        }
        if started.elapsed() > timeout {
            bail!(
                "not complete after {timeout:?}: updated {:?}, available {:?}, replicas {:?}",
                s.updated_replicas,
                s.available_replicas,
                s.replicas
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn phase(creations: &Mutex<Creations>, started: Instant, from: usize) -> Phase {
    let c = creations.lock().await;
    let times = &c.times[from.min(c.times.len())..];
    let span = match (times.first(), times.last()) {
        (Some(a), Some(b)) if b > a => b.duration_since(*a).as_secs_f64(),
        _ => 0.0,
    };
    let max_gap = times
        .windows(2)
        .map(|w| w[1].duration_since(w[0]).as_secs_f64())
        .fold(0.0, f64::max);
    Phase {
        max_gap,
        seconds: started.elapsed().as_secs_f64(),
        pods_created: times.len(),
        create_rate: if span > 0.0 {
            times.len() as f64 / span
        } else {
            0.0
        },
    }
}

fn report(args: &ControllersBenchArgs, rollout: Phase, update: Phase) {
    if args.json {
        println!(
            "{}",
            json!({
                "nodes": args.nodes,
                "replicas": args.replicas,
                "apply_to_available_s": rollout.seconds,
                "apply_pods_created": rollout.pods_created,
                "apply_pods_per_s": rollout.create_rate,
                "update_s": update.seconds,
                "update_pods_created": update.pods_created,
                "update_pods_per_s": update.create_rate,
                "apply_max_gap_s": rollout.max_gap,
                "update_max_gap_s": update.max_gap,
                "anchor_pods_per_s": ANCHOR_PODS_PER_SECOND,
            })
        );
        return;
    }
    println!(
        "controllers: Deployment of {} replicas on {} simulated nodes",
        args.replicas, args.nodes
    );
    println!(
        "  apply → all available: {:>8.1} s   pods created {:>6}   {:>8.0} pods/s   max gap {:.2} s",
        rollout.seconds, rollout.pods_created, rollout.create_rate, rollout.max_gap
    );
    println!(
        "  rolling update:        {:>8.1} s   pods created {:>6}   {:>8.0} pods/s   max gap {:.2} s",
        update.seconds, update.pods_created, update.create_rate, update.max_gap
    );
    println!(
        "  anchor: kube-controller-manager's default client limit holds it near {ANCHOR_PODS_PER_SECOND:.0} pods/s"
    );
}
