//! `keel bench scheduler`: the scheduler's throughput and latency against running masters, on
//! nodes simulated by a `keel sim-nodes` child process. Pods are created at a set rate in a
//! fresh namespace; a watch sees each one bound. It prints pods scheduled per second and the
//! create → bound latency (from the create request's send to the watch event showing
//! `spec.nodeName`). The workloads mirror kube-scheduler's scheduler_perf cases so the figures
//! compare with its published floors: SchedulingBasic, node affinity, topology spreading and
//! required pod anti-affinity.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use futures::StreamExt;
use hdrhistogram::Histogram;
use keel_client::k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use keel_client::watcher::Event;
use keel_client::{Api, Client, DeleteParams, WatchParams};
use serde_json::{json, Value};
use tokio::sync::Mutex;

use super::sim::Sim;
use crate::connect::MasterArgs;

/// The scheduler_perf case a run mirrors.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SchedWorkload {
    /// SchedulingBasic: pods with plain requests.
    Basic,
    /// SchedulingNodeAffinity: required node affinity to two of the three zones.
    Affinity,
    /// TopologySpreading: DoNotSchedule spread over zones, maxSkew 5.
    Spread,
    /// SchedulingPodAntiAffinity: required anti-affinity on hostname within groups of pods.
    AntiAffinity,
}

impl SchedWorkload {
    pub fn name(self) -> &'static str {
        match self {
            SchedWorkload::Basic => "basic",
            SchedWorkload::Affinity => "affinity",
            SchedWorkload::Spread => "spread",
            SchedWorkload::AntiAffinity => "anti-affinity",
        }
    }
}

/// The simulated cluster and the pods of a scheduler benchmark, the same for `keel bench
/// scheduler` and `keel bench scheduler-cycle` so their figures compare.
#[derive(clap::Args, Debug, Clone)]
pub struct WorkloadArgs {
    /// Simulated nodes (4 CPU, 32 GiB, 110 pods each, 3 zones, as scheduler_perf's).
    #[arg(long, default_value_t = 5000)]
    pub nodes: usize,
    /// Pods to place and time.
    #[arg(long, default_value_t = 30000)]
    pub pods: usize,
    #[arg(long, value_enum, default_value = "basic")]
    pub workload: SchedWorkload,
    /// Anti-affinity group size (pods in a group repel each other per hostname).
    #[arg(long, default_value_t = 1000)]
    pub group_size: usize,
}

impl WorkloadArgs {
    /// Pod number `i` of the workload.
    pub fn pod(&self, i: usize) -> Value {
        pod_for(self.workload, i, self.group_size)
    }
}

/// `keel sim-nodes` flags for the benchmark's nodes (scheduler_perf's node template).
pub const NODE_FLAGS: [&str; 3] = ["--cpu=4", "--memory=32Gi", "--pods=110"];

#[derive(clap::Args, Debug, Clone)]
pub struct SchedulerBenchArgs {
    #[command(flatten)]
    run: WorkloadArgs,
    /// Pods created per second (0: as fast as `--creators` allow).
    #[arg(long, default_value_t = 3000)]
    rate: u32,
    /// Concurrent create requests.
    #[arg(long, default_value_t = 64)]
    creators: usize,
    /// Leave the namespace and the simulated nodes in place afterwards.
    #[arg(long)]
    keep: bool,
    /// Print the result as one JSON object.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    masters: MasterArgs,
}

/// The pod a workload creates, number `i`.
pub fn pod_for(workload: SchedWorkload, i: usize, group_size: usize) -> Value {
    let mut spec = json!({
        "containers": [{
            "name": "pause", "image": "registry.k8s.io/pause:3.10",
            "resources": {"requests": {"cpu": "100m", "memory": "500Mi"}},
        }],
        "terminationGracePeriodSeconds": 0,
    });
    let mut labels = json!({"app": "bench"});
    match workload {
        SchedWorkload::Basic => {}
        SchedWorkload::Affinity => {
            spec["affinity"] = json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [{
                    "key": "topology.kubernetes.io/zone", "operator": "In",
                    "values": ["zone-0", "zone-1"]}]}]}}});
        }
        SchedWorkload::Spread => {
            labels["color"] = json!("blue");
            spec["topologySpreadConstraints"] = json!([{
                "maxSkew": 5, "topologyKey": "topology.kubernetes.io/zone",
                "whenUnsatisfiable": "DoNotSchedule",
                "labelSelector": {"matchLabels": {"color": "blue"}}}]);
        }
        SchedWorkload::AntiAffinity => {
            let group = format!("g{}", i / group_size.max(1));
            labels["group"] = json!(group);
            spec["affinity"] = json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{
                "labelSelector": {"matchLabels": {"group": group}},
                "topologyKey": "kubernetes.io/hostname"}]}});
        }
    }
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("bench-{i:06}"), "labels": labels},
        "spec": spec,
    })
}

/// What one run measured.
struct Outcome {
    bound: usize,
    seconds: f64,
    latency_ms: Histogram<u64>,
    create_errors: usize,
    /// The longest time between two consecutive binds.
    max_gap: Duration,
}

pub async fn run(args: SchedulerBenchArgs) -> anyhow::Result<()> {
    if args.run.nodes == 0 || args.run.pods == 0 || args.creators == 0 {
        bail!("--nodes, --pods and --creators must be positive");
    }
    let client = args.masters.connect()?;
    let nodes: Api<Node> = Api::all(client.clone());
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let prefix = format!("bench-{stamp}-node-");
    eprintln!(
        "bench scheduler: registering {} simulated nodes ({prefix}*)",
        args.run.nodes
    );
    let sim = Sim::start(&args.masters, args.run.nodes, &prefix, &NODE_FLAGS)?;
    let started = Instant::now();
    sim.wait_registered(&nodes, args.run.nodes).await?;
    eprintln!(
        "bench scheduler: {} nodes in {:.1}s; creating {} pods ({}) at {}/s",
        args.run.nodes,
        started.elapsed().as_secs_f64(),
        args.run.pods,
        args.run.workload.name(),
        args.rate
    );
    let namespace = format!("bench-scheduler-{stamp}");
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
        // Leave the child's nodes registered: it is killed without deleting them.
        drop(sim);
    }
    let outcome = outcome?;
    report(&args, &outcome);
    if outcome.bound < args.run.pods {
        bail!(
            "only {} of {} pods were bound ({} creates failed)",
            outcome.bound,
            args.run.pods,
            outcome.create_errors
        );
    }
    Ok(())
}

async fn measure(
    client: &Client,
    namespace: &str,
    args: &SchedulerBenchArgs,
) -> anyhow::Result<Outcome> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    // Send times by pod name; the watch looks them up when a pod shows its node.
    let sent: Arc<Mutex<HashMap<String, Instant>>> = Arc::new(Mutex::new(HashMap::new()));
    // A watch that resumes on another master if its master dies (the failover run kills one).
    let mut stream = Box::pin(keel_client::watcher::watcher(
        pods.clone(),
        WatchParams::default(),
    ));
    let watcher = {
        let sent = sent.clone();
        let total = args.run.pods;
        tokio::spawn(async move {
            let mut latency = Histogram::<u64>::new_with_bounds(1, 3_600_000, 3)?;
            let mut bound: HashMap<String, ()> = HashMap::new();
            let mut last = Instant::now();
            // The longest stretch without a bind once binding began: a failover's cost when a
            // master is killed mid-run.
            let mut first: Option<Instant> = None;
            let mut max_gap = Duration::ZERO;
            while bound.len() < total {
                let ev = match tokio::time::timeout(Duration::from_secs(60), stream.next()).await {
                    Ok(Some(Ok(ev))) => ev,
                    // Interrupted: the watcher resumes by itself.
                    Ok(Some(Err(_))) => continue,
                    Ok(None) => bail!("watch ended"),
                    Err(_) => break,
                };
                let seen = match ev {
                    Event::Applied(p) => vec![p],
                    Event::Restarted(list) => list,
                    Event::Deleted(_) => continue,
                };
                for p in seen {
                    let has_node = p
                        .spec
                        .as_ref()
                        .and_then(|s| s.node_name.as_deref())
                        .is_some_and(|n| !n.is_empty());
                    let name = p.metadata.name.unwrap_or_default();
                    if !has_node || bound.contains_key(&name) {
                        continue;
                    }
                    let now = Instant::now();
                    if let Some(at) = sent.lock().await.get(&name) {
                        latency
                            .saturating_record(now.duration_since(*at).as_millis().max(1) as u64);
                    }
                    bound.insert(name, ());
                    if first.is_some() {
                        max_gap = max_gap.max(now.duration_since(last));
                    }
                    first.get_or_insert(now);
                    last = now;
                }
            }
            Ok((bound.len(), latency, last, max_gap))
        })
    };
    let started = Instant::now();
    let interval = (args.rate > 0).then(|| Duration::from_secs_f64(1.0 / f64::from(args.rate)));
    let errors = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    futures::stream::iter(0..args.run.pods)
        .map(|i| {
            let pods = pods.clone();
            let sent = sent.clone();
            let errors = errors.clone();
            let body = args.run.pod(i);
            async move {
                if let Some(step) = interval {
                    tokio::time::sleep_until((started + step * i as u32).into()).await;
                }
                let name = format!("bench-{i:06}");
                let pod: Pod = match serde_json::from_value(body) {
                    Ok(p) => p,
                    Err(_) => {
                        errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        return;
                    }
                };
                sent.lock().await.insert(name, Instant::now());
                // A create refused with 429 (the API's fairness turning load away) is sent
                // again after a second, up to ten times, as client-go retries it; its time
                // to bound still counts from the first send.
                let mut attempts = 1;
                let result = loop {
                    match pods.create(&pod).await {
                        Err(e) if e.code() == Some(429) && attempts < 10 => {
                            attempts += 1;
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                        other => break other,
                    }
                };
                if let Err(e) = result {
                    if errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed) == 0 {
                        eprintln!("bench scheduler: create failed: {e}");
                    }
                }
            }
        })
        .buffer_unordered(args.creators)
        .collect::<Vec<()>>()
        .await;
    let created_in = started.elapsed();
    let (bound, latency_ms, last, max_gap) = watcher.await??;
    eprintln!(
        "bench scheduler: created {} pods in {:.1}s ({:.0}/s)",
        args.run.pods,
        created_in.as_secs_f64(),
        args.run.pods as f64 / created_in.as_secs_f64().max(1e-9)
    );
    Ok(Outcome {
        bound,
        seconds: last.duration_since(started).as_secs_f64(),
        latency_ms,
        create_errors: errors.load(std::sync::atomic::Ordering::Relaxed),
        max_gap,
    })
}

fn report(args: &SchedulerBenchArgs, o: &Outcome) {
    let rate = if o.seconds > 0.0 {
        o.bound as f64 / o.seconds
    } else {
        0.0
    };
    let q = |p: f64| o.latency_ms.value_at_quantile(p);
    if args.json {
        println!(
            "{}",
            json!({
                "workload": args.run.workload.name(), "nodes": args.run.nodes, "pods": args.run.pods,
                "create_rate": args.rate, "bound": o.bound, "seconds": o.seconds,
                "pods_per_second": rate, "p50_ms": q(0.5), "p99_ms": q(0.99),
                "max_ms": o.latency_ms.max(), "create_errors": o.create_errors,
                "max_gap_ms": o.max_gap.as_millis() as u64,
            })
        );
    } else {
        println!(
            "scheduler {:<13} nodes={} pods={} create-rate={}/s  scheduled/s={:.0}  create→bound p50={}ms p99={}ms max={}ms  max_gap={}ms  ({} bound in {:.1}s, {} create errors)",
            args.run.workload.name(),
            args.run.nodes,
            args.run.pods,
            args.rate,
            rate,
            q(0.5),
            q(0.99),
            o.latency_ms.max(),
            o.max_gap.as_millis(),
            o.bound,
            o.seconds,
            o.create_errors
        );
    }
}
