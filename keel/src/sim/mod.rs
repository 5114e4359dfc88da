//! `keel sim-nodes`: simulated nodes, in the role KWOK plays for Kubernetes. It registers N
//! Nodes and plays kubelet for them through the real API — Leases renewed, statuses posted,
//! pods bound to them started, ended and deleted — so the scheduler, the controllers and
//! benchmarks have nodes to work with, loading the masters as real nodes would.
//!
//! The pieces, each with one job: `flags` (the command line), `nodes` (the Node objects and
//! addresses), `lifecycle` (a pod's next step), `ipam` (pod addresses) and `schedule` (when a
//! heartbeat is due) are pure and tested without a runtime; `register`, `heartbeat` and
//! `pods` are the async shell that talks to the API through the SDK; `limit` bounds the
//! writes in flight; `stats` logs the write rates.
//!
//! Tasks, all on one [`TaskTracker`] and stopped by one [`CancellationToken`]: the signal
//! watcher, the node cache, the pod controller, the rate reporter, and one heartbeat per
//! registered node, started as soon as its node is registered. Registration itself runs in
//! the calling task. Shutdown order: SIGINT or SIGTERM cancels the token; registration stops;
//! every heartbeat returns at its next wait; the pod controller lets the reconciles in flight
//! finish; the tracker is closed and waited on; then, only with `--delete-on-exit`, the
//! nodes and their Leases are deleted — otherwise they stay registered, as KWOK leaves them.

pub(crate) mod flags;
mod heartbeat;
mod ipam;
mod lifecycle;
mod limit;
pub(crate) mod nodes;
mod pods;
mod register;
mod schedule;
mod stats;

use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use flags::SimArgs;
use heartbeat::Heartbeats;
use limit::WriteLimit;
use nodes::Fleet;
use pods::Pods;
use register::Registrar;
use stats::Stats;

pub async fn run(args: SimArgs) -> anyhow::Result<()> {
    let fleet = Arc::new(Fleet::from_args(&args)?);
    let client = args.masters.connect()?;
    let concurrency = args.concurrency as usize;
    let writes = WriteLimit::new(concurrency);
    let stats = Arc::new(Stats::default());
    let shutdown = CancellationToken::new();
    let tracker = TaskTracker::new();

    tracker.spawn(crate::signals::cancel_on_signal(shutdown.clone()));
    let (nodes, fill_nodes) = heartbeat::node_cache(client.clone());
    tracker.spawn(shutdown.clone().run_until_cancelled_owned(fill_nodes));
    let pods = Arc::new(Pods::new(
        client.clone(),
        fleet.clone(),
        writes.clone(),
        stats.clone(),
    ));
    tracker.spawn(pods.run(concurrency, shutdown.clone()));
    tracker.spawn({
        let (stats, shutdown) = (stats.clone(), shutdown.clone());
        async move { stats.report(shutdown).await }
    });

    let heartbeats = Arc::new(Heartbeats {
        client: client.clone(),
        fleet: fleet.clone(),
        writes: writes.clone(),
        stats: stats.clone(),
        lease_duration: args.lease_duration,
        interval: args.renew_interval,
        epoch: Instant::now(),
        nodes,
    });
    let registrar = Registrar {
        client,
        fleet: fleet.clone(),
        writes,
        stats,
    };
    let started = Instant::now();
    let mut registered = 0usize;
    futures::stream::iter(0..fleet.count())
        .map(|i| {
            let (registrar, shutdown) = (&registrar, &shutdown);
            async move { (i, registrar.register(i, shutdown).await) }
        })
        .buffer_unordered(concurrency)
        .for_each(|(i, node)| {
            if let Some(node) = node {
                registered += 1;
                tracker.spawn(heartbeats.clone().run(i, node, shutdown.clone()));
            }
            futures::future::ready(())
        })
        .await;
    if registered == fleet.count() {
        tracing::info!(
            nodes = registered,
            seconds = format!("{:.2}", started.elapsed().as_secs_f64()),
            "registered every node; running until SIGINT or SIGTERM"
        );
    }

    shutdown.cancelled().await;
    tracker.close();
    tracker.wait().await;
    if args.delete_on_exit {
        futures::stream::iter(0..fleet.count())
            .for_each_concurrent(concurrency, |i| registrar.unregister(i))
            .await;
        tracing::info!(nodes = fleet.count(), "deleted the nodes and their Leases");
    }
    Ok(())
}
