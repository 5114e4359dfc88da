//! `keel bench scheduler-cycle`: the scheduler's decisions alone, in this process, with no API.
//! It fills the scheduler's cache with the nodes `keel sim-nodes` registers (the same objects,
//! status included) and feeds it the pods of a `keel bench scheduler` workload, as the
//! scheduling loop does: snapshot, decide, assume; then, as the informer would report them,
//! each pod bound and then running. It prints decisions per second and the time per decision,
//! so what the scheduler's own work costs can be told apart from the API's and the store's.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use hdrhistogram::Histogram;
use keel_client::k8s_openapi::api::core::v1::{Node, Pod, PodStatus};
use keel_client::k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use keel_client::k8s_openapi::chrono::Utc;
use keel_scheduler::cache::Cache;
use keel_scheduler::cycle::{Algorithm, Nominated};
use keel_scheduler::framework::{PodInfo, Snapshot};
use keel_scheduler::plugins::default_profile;
use serde_json::json;

use super::scheduler::{WorkloadArgs, NODE_FLAGS};
use crate::sim::flags::SimArgs;
use crate::sim::nodes::Fleet;

#[derive(clap::Args, Debug, Clone)]
pub struct SchedulerCycleBenchArgs {
    #[command(flatten)]
    run: WorkloadArgs,
    /// Decisions whose binds are in flight (assumed, not yet reported bound) at a time.
    #[arg(long, default_value_t = 64)]
    in_flight: usize,
    /// Print the result as one JSON object.
    #[arg(long)]
    json: bool,
}

/// The fleet `keel bench scheduler` starts, as objects with their posted status.
fn nodes(count: usize) -> anyhow::Result<Vec<Node>> {
    #[derive(Parser)]
    struct Cmd {
        #[command(flatten)]
        sim: SimArgs,
    }
    let count = count.to_string();
    let flags = [
        "sim-nodes",
        "--count",
        &count,
        "--name-prefix",
        "bench-node-",
    ];
    let cmd =
        Cmd::try_parse_from(flags.into_iter().chain(NODE_FLAGS)).context("simulated node flags")?;
    let fleet = Fleet::from_args(&cmd.sim).context("simulated nodes")?;
    let now = Time(Utc::now());
    Ok((0..fleet.count())
        .map(|i| {
            let mut node = fleet.node(i);
            node.status = Some(fleet.status(i, now.clone(), now.clone()));
            node
        })
        .collect())
}

fn pod(run: &WorkloadArgs, i: usize) -> anyhow::Result<Pod> {
    let mut value = run.pod(i);
    value["metadata"]["namespace"] = json!("bench");
    value["metadata"]["uid"] = json!(format!("uid-{i:08}"));
    value["spec"]["schedulerName"] = json!("default-scheduler");
    value["spec"]["priority"] = json!(0);
    Ok(serde_json::from_value(value)?)
}

/// What the informer reports for a bound pod: first the bind, then the kubelet's Running.
fn reported(pod: &Pod, node: &str, running: bool) -> PodInfo {
    let mut pod = pod.clone();
    if let Some(spec) = pod.spec.as_mut() {
        spec.node_name = Some(node.to_string());
    }
    if running {
        pod.status = Some(PodStatus {
            phase: Some("Running".into()),
            pod_ip: Some("10.0.0.1".into()),
            ..Default::default()
        });
    }
    PodInfo::new(Arc::new(pod))
}

/// What one run measured.
struct Measured {
    seconds: f64,
    unschedulable: usize,
    evaluated: usize,
    informer: Duration,
    latency: Histogram<u64>,
}

/// Decides every pod of the run, as the scheduling loop does.
fn measure(args: &SchedulerCycleBenchArgs) -> anyhow::Result<Measured> {
    let mut cache = Cache::new();
    for node in nodes(args.run.nodes)? {
        cache.set_node(Arc::new(node));
    }
    let pods: Vec<Pod> = (0..args.run.pods)
        .map(|i| pod(&args.run, i))
        .collect::<anyhow::Result<_>>()?;
    let mut algorithm = Algorithm::new(default_profile(), 0, 0x5eed);
    let mut snapshot = Snapshot::default();
    let nominated = Nominated::new();
    let mut latency = Histogram::<u64>::new(3)?;
    // Decided pods whose bind the informer has not reported yet.
    let mut in_flight: std::collections::VecDeque<(usize, String)> = Default::default();
    let mut evaluated = 0usize;
    let mut unschedulable = 0usize;
    let mut informer = Duration::ZERO;
    let started = Instant::now();
    for (i, pod) in pods.iter().enumerate() {
        let t = Instant::now();
        let info = Arc::new(PodInfo::new(Arc::new(pod.clone())));
        cache.update_snapshot(&mut snapshot);
        match algorithm.schedule(&info, &snapshot, &nominated) {
            Ok(placement) => {
                evaluated += placement.evaluated;
                cache.assume(info, &placement.node)?;
                in_flight.push_back((i, placement.node));
            }
            Err(_) => unschedulable += 1,
        }
        latency.record(t.elapsed().as_micros() as u64)?;
        while in_flight.len() > args.in_flight {
            let t = Instant::now();
            if let Some((j, node)) = in_flight.pop_front() {
                cache.set_bound_pod(Arc::new(reported(&pods[j], &node, false)), &node);
                cache.set_bound_pod(Arc::new(reported(&pods[j], &node, true)), &node);
            }
            informer += t.elapsed();
        }
    }
    Ok(Measured {
        seconds: started.elapsed().as_secs_f64(),
        unschedulable,
        evaluated,
        informer,
        latency,
    })
}

pub async fn run(args: SchedulerCycleBenchArgs) -> anyhow::Result<()> {
    if args.run.nodes == 0 || args.run.pods == 0 || args.in_flight == 0 {
        bail!("--nodes, --pods and --in-flight must be positive");
    }
    let Measured {
        seconds,
        unschedulable,
        evaluated,
        informer,
        latency,
    } = measure(&args)?;
    let decided = args.run.pods - unschedulable;
    let per_second = args.run.pods as f64 / seconds;
    let (p50, p99, max) = (
        latency.value_at_quantile(0.5),
        latency.value_at_quantile(0.99),
        latency.max(),
    );
    if args.json {
        println!(
            "{}",
            json!({
                "workload": args.run.workload.name(), "nodes": args.run.nodes, "pods": args.run.pods,
                "decided": decided, "unschedulable": unschedulable, "seconds": seconds,
                "decisions_per_second": per_second, "decision_us_p50": p50, "decision_us_p99": p99,
                "decision_us_max": max, "nodes_evaluated_mean": evaluated as f64 / decided.max(1) as f64,
                "informer_seconds": informer.as_secs_f64(),
            })
        );
    } else {
        println!(
            "scheduler-cycle {}: {} nodes, {} pods: {per_second:.0} decisions/s ({decided} placed, {unschedulable} unschedulable) in {seconds:.2}s; per decision p50 {p50} µs, p99 {p99} µs, max {max} µs; {:.0} nodes filtered per decision; informer updates {:.2}s of it",
            args.run.workload.name(),
            args.run.nodes,
            args.run.pods,
            evaluated as f64 / decided.max(1) as f64,
            informer.as_secs_f64(),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::scheduler::SchedWorkload;

    fn args(workload: SchedWorkload) -> SchedulerCycleBenchArgs {
        SchedulerCycleBenchArgs {
            run: WorkloadArgs {
                nodes: 30,
                pods: 120,
                workload,
                group_size: 10,
            },
            in_flight: 8,
            json: false,
        }
    }

    /// Every workload's pods fit the fleet (30 nodes of 4 CPU; anti-affinity groups of 10),
    /// so a run that leaves any unplaced has a broken cache or plugin.
    #[test]
    fn every_workload_places_every_pod_on_the_simulated_fleet() {
        for workload in [
            SchedWorkload::Basic,
            SchedWorkload::Affinity,
            SchedWorkload::Spread,
            SchedWorkload::AntiAffinity,
        ] {
            let measured = measure(&args(workload)).expect("runs");
            assert_eq!(measured.unschedulable, 0, "{workload:?}");
            assert_eq!(measured.latency.len(), 120, "{workload:?}");
            assert!(measured.evaluated >= 120, "{workload:?}");
        }
    }

    /// Anti-affinity groups larger than the fleet cannot all be placed: the extra pods are
    /// reported unschedulable, not placed beside a group member.
    #[test]
    fn anti_affinity_beyond_one_pod_per_node_is_unschedulable() {
        let mut args = args(SchedWorkload::AntiAffinity);
        args.run.group_size = 60;
        let measured = measure(&args).expect("runs");
        assert_eq!(measured.unschedulable, 60);
    }
}
