//! `keel bench pod-startup`: how fast a real node agent starts pods. N pods (busybox, image
//! present) bound to one agent's node are created at once in a fresh namespace; a watch on the
//! namespace notes when each is Running with Ready=True. Printed: per-pod latency from its
//! create request to that watch event (p50, p90, p99, max), the time until all N ran, and the
//! agent's resident memory with all N running.
//!
//! With `--local` the benchmark brings its own node: a private containerd (own config, root,
//! state and socket; local images imported) and a `keel agent` child process; otherwise it
//! uses the agent of `--node`, already running. Pods are bound to the node by name, so
//! scheduling is not part of the figure (`keel bench scheduler` measures that).
//!
//! The anchor: Kubernetes' pod startup SLO, p99 ≤ 5 s for stateless pods with their image
//! present, create to Running as seen by a watch.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures::StreamExt;
use keel_agent::containerd::{BridgeNetwork, ContainerdConfig, PrivateContainerd};
use keel_agent::image::busybox::write_host_archive;
use keel_agent::image::{BUSYBOX_IMAGE, PAUSE_IMAGE};
use keel_client::k8s_openapi::api::core::v1::{Namespace, Pod};
use keel_client::watcher::{watcher, Event};
use keel_client::{Api, Client, DeleteParams, ListParams, WatchParams};
use serde_json::json;
use tokio::sync::Mutex;

use crate::connect::MasterArgs;

/// Kubernetes' pod startup SLO (p99), the anchor.
const SLO_P99: Duration = Duration::from_secs(5);
/// Pod creates in flight at once.
const CREATE_CONCURRENCY: usize = 16;

#[derive(clap::Args, Debug, Clone)]
pub struct PodStartupBenchArgs {
    /// Pods to start.
    #[arg(long, default_value_t = 100)]
    pods: usize,
    /// The node whose agent runs the pods (with --local: the name the benchmark's agent
    /// registers).
    #[arg(long, default_value = "bench-node")]
    node: String,
    /// Start a private containerd and a `keel agent` for the run, and stop them after.
    #[arg(long)]
    local: bool,
    /// With --local: where the private containerd and the agent keep their files [default: a
    /// fresh directory under /var/tmp].
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Create the pods at this many per second, as Kubernetes' start-up SLO is measured (pods
    /// arriving at a steady rate, each timed alone) [default: all at once, a burst whose
    /// latencies are mostly time spent queued behind the others].
    #[arg(long)]
    rate: Option<f64>,
    /// Give up after this long.
    #[arg(long, default_value = "5m", value_parser = crate::duration::flag)]
    timeout: Duration,
    /// Print the result as one JSON object.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    masters: MasterArgs,
}

/// The node the benchmark brought: containerd and the agent.
struct LocalNode {
    agent: Child,
    containerd: Option<PrivateContainerd>,
    bridge: String,
    dir: PathBuf,
}

impl LocalNode {
    async fn start(args: &PodStartupBenchArgs) -> anyhow::Result<LocalNode> {
        let dir = match &args.dir {
            Some(dir) => dir.clone(),
            None => PathBuf::from(format!("/var/tmp/keel-bench-pods-{}", std::process::id())),
        };
        std::fs::create_dir_all(&dir)?;
        let bridge = format!("kb{}", std::process::id() % 100_000);
        let network = BridgeNetwork {
            name: "keel-bench".into(),
            bridge: bridge.clone(),
            subnet: "10.250.0.0/22".into(),
            ipam_data_dir: Some(dir.join("ipam").display().to_string()),
            masquerade: false,
        };
        let config = ContainerdConfig::under(&dir, PAUSE_IMAGE);
        std::fs::create_dir_all(&config.cni_conf_dir)?;
        std::fs::write(
            config.cni_conf_dir.join("10-keel.conflist"),
            network.conflist().to_string(),
        )?;
        let containerd = PrivateContainerd::start(&dir, config)
            .await
            .context("starting a private containerd")?;
        let archive = dir.join("images.tar");
        write_host_archive(&archive)?;
        containerd.import(&archive).await?;
        let mut command = Command::new(std::env::current_exe()?);
        command
            .arg("agent")
            .args(["--hostname-override", &args.node])
            .args(["--container-runtime-endpoint", &containerd.endpoint()])
            .arg("--root-dir")
            .arg(dir.join("agent-root"))
            .arg("--pod-logs-dir")
            .arg(dir.join("pod-logs"));
        command.args(args.masters.forwarded());
        let log = std::fs::File::create(dir.join("agent.log"))?;
        let agent = command
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting keel agent")?;
        eprintln!(
            "bench pod-startup: containerd and agent {} running under {}",
            args.node,
            dir.display()
        );
        Ok(LocalNode {
            agent,
            containerd: Some(containerd),
            bridge,
            dir,
        })
    }

    /// The agent's resident memory in KiB.
    fn agent_rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.agent.id())).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|l| l.split_whitespace().next()?.parse().ok())
    }

    async fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.agent.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while matches!(self.agent.try_wait(), Ok(None)) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let _ = self.agent.kill();
        let _ = self.agent.wait();
        if let Some(containerd) = self.containerd.take() {
            if let Err(error) = containerd.stop().await {
                eprintln!("bench pod-startup: stopping containerd: {error}");
            }
        }
        let _ = Command::new("ip")
            .args(["link", "delete", &self.bridge])
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn running_and_ready(pod: &Pod) -> bool {
    let Some(status) = pod.status.as_ref() else {
        return false;
    };
    status.phase.as_deref() == Some("Running")
        && status
            .conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == "Ready" && c.status == "True")
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

pub async fn run(args: PodStartupBenchArgs) -> anyhow::Result<()> {
    if args.pods == 0 {
        bail!("--pods must be positive");
    }
    let client = args.masters.connect()?;
    let local = if args.local {
        Some(LocalNode::start(&args).await?)
    } else {
        None
    };
    let result = measure(&client, &args, local.as_ref()).await;
    if let Some(local) = local {
        local.stop().await;
    }
    result
}

async fn measure(
    client: &Client,
    args: &PodStartupBenchArgs,
    local: Option<&LocalNode>,
) -> anyhow::Result<()> {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let namespace = format!("bench-pods-{stamp}");
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(&serde_json::from_value(
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}),
        )?)
        .await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let created: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let ready: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let watching = {
        let ready = ready.clone();
        let events = watcher(pods.clone(), WatchParams::default());
        let total = args.pods;
        tokio::spawn(async move {
            futures::pin_mut!(events);
            while let Some(event) = events.next().await {
                let seen: Vec<Pod> = match event {
                    Ok(Event::Applied(pod)) => vec![pod],
                    Ok(Event::Restarted(pods)) => pods,
                    _ => continue,
                };
                let mut ready = ready.lock().await;
                for pod in seen.iter().filter(|p| running_and_ready(p)) {
                    let name = pod.metadata.name.clone().unwrap_or_default();
                    ready.entry(name).or_insert_with(Instant::now);
                }
                if ready.len() >= total {
                    return;
                }
            }
        })
    };
    // The watch must be established before the first create, or early events are missed.
    tokio::time::sleep(Duration::from_millis(500)).await;
    match args.rate {
        Some(rate) => eprintln!(
            "bench pod-startup: creating {} pods on node {}, {rate} per second",
            args.pods, args.node
        ),
        None => eprintln!(
            "bench pod-startup: creating {} pods on node {} at once",
            args.pods, args.node
        ),
    }
    let started = Instant::now();
    let names: Vec<String> = (0..args.pods).map(|i| format!("pod-{i}")).collect();
    let pace = args.rate.filter(|r| *r > 0.0).map(|r| 1.0 / r);
    let creates = futures::stream::iter(names.clone())
        .enumerate()
        .map(|(i, name)| {
            let pods = pods.clone();
            let created = created.clone();
            let node = args.node.clone();
            async move {
                if let Some(every) = pace {
                    tokio::time::sleep_until(
                        (started + Duration::from_secs_f64(every * i as f64)).into(),
                    )
                    .await;
                }
                let pod: Pod = serde_json::from_value(json!({
                    "apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": name},
                    "spec": {
                        "nodeName": node,
                        "terminationGracePeriodSeconds": 1,
                        "containers": [{"name": "app", "image": BUSYBOX_IMAGE,
                                        "command": ["sleep", "3600"]}],
                    },
                }))?;
                created.lock().await.insert(name, Instant::now());
                pods.create(&pod).await?;
                anyhow::Ok(())
            }
        });
    let results: Vec<anyhow::Result<()>> =
        creates.buffer_unordered(CREATE_CONCURRENCY).collect().await;
    if let Some(error) = results.into_iter().find_map(Result::err) {
        bail!("creating pods: {error}");
    }
    let finished = tokio::time::timeout(args.timeout, watching).await;
    let all_running = started.elapsed();
    if finished.is_err() {
        eprintln!(
            "bench pod-startup: gave up after {:?} with {} of {} running",
            args.timeout,
            ready.lock().await.len(),
            args.pods
        );
    }
    let rss = local.and_then(LocalNode::agent_rss_kib);
    let created = created.lock().await.clone();
    let ready = ready.lock().await.clone();
    let mut latencies: Vec<Duration> = names
        .iter()
        .filter_map(|name| {
            Some(
                ready
                    .get(name)?
                    .saturating_duration_since(*created.get(name)?),
            )
        })
        .collect();
    latencies.sort();
    let (p50, p90, p99, max) = (
        percentile(&latencies, 50.0),
        percentile(&latencies, 90.0),
        percentile(&latencies, 99.0),
        latencies.last().copied().unwrap_or_default(),
    );
    if args.json {
        println!(
            "{}",
            json!({
                "pods": args.pods, "rate": args.rate, "running": latencies.len(),
                "p50_ms": ms(p50), "p90_ms": ms(p90), "p99_ms": ms(p99), "max_ms": ms(max),
                "all_running_s": all_running.as_secs_f64(),
                "agent_rss_mib": rss.map(|kib| kib as f64 / 1024.0),
                "slo_p99_ms": ms(SLO_P99),
            })
        );
    } else {
        println!(
            "{:<12} {:>6} {:>7} {:>9} {:>9} {:>9} {:>9} {:>9} {:>14} {:>12}",
            "pod-startup",
            "pods",
            "rate/s",
            "running",
            "p50_ms",
            "p90_ms",
            "p99_ms",
            "max_ms",
            "all_running_s",
            "agent_MiB"
        );
        println!(
            "{:<12} {:>6} {:>7} {:>9} {:>9.0} {:>9.0} {:>9.0} {:>9.0} {:>14.2} {:>12}",
            "keel",
            args.pods,
            args.rate.map_or("burst".into(), |r| format!("{r}")),
            latencies.len(),
            ms(p50),
            ms(p90),
            ms(p99),
            ms(max),
            all_running.as_secs_f64(),
            rss.map_or("-".into(), |kib| format!("{:.1}", kib as f64 / 1024.0))
        );
        println!(
            "{:<12} {:>6} {:>7} {:>9} {:>9} {:>9} {:>9.0} {:>9} {:>14} {:>12}",
            "SLO",
            "",
            "",
            "",
            "",
            "",
            ms(SLO_P99),
            "",
            "",
            ""
        );
    }
    // Clean up: pods deleted (the agent stops their containers), then the namespace.
    eprintln!("bench pod-startup: deleting the pods");
    delete_all(&pods, &names).await;
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        match pods.list(&ListParams::default()).await {
            Ok(list) if list.items.is_empty() => break,
            _ => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
    let _ = namespaces
        .delete(&namespace, &DeleteParams::default())
        .await;
    if latencies.len() < args.pods {
        bail!(
            "only {} of {} pods became Running and Ready",
            latencies.len(),
            args.pods
        );
    }
    Ok(())
}

/// Deletes the pods named, a few at a time; failures are left to the namespace's deletion.
async fn delete_all(pods: &Api<Pod>, names: &[String]) {
    futures::stream::iter(names)
        .for_each_concurrent(CREATE_CONCURRENCY, |name| async move {
            let _ = pods.delete(name, &DeleteParams::default()).await;
        })
        .await;
}
