//! `keel agent`: the node agent, with kubelet's flag names where kubelet has the flag. It runs
//! the pods the scheduler binds to its node as real containers through a CRI runtime.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use keel_agent::node::{parse_node_labels, parse_taints, NodeAgent, NodeConfig};
use keel_agent::pods::configs::{resolv_searches, NodeSettings};
use keel_agent::pods::volumes::NodeFiles;
use keel_agent::pods::{self, PodsConfig};
use keel_agent::server::{AgentServer, AgentServerConfig};
use keel_agent::RuntimeClient;
use keel_client::events::Recorder;
use tokio_util::task::TaskTracker;

/// `keel agent`'s command line.
#[derive(Args, Debug, Clone)]
pub struct AgentArgs {
    #[command(flatten)]
    masters: crate::connect::MasterArgs,
    /// The node's name [default: the host's name, lowercased].
    #[arg(long)]
    hostname_override: Option<String>,
    /// The node's address [default: the host's address on its default route].
    #[arg(long)]
    node_ip: Option<IpAddr>,
    /// Labels the node registers with: `key=value,…`.
    #[arg(long, default_value = "")]
    node_labels: String,
    /// Taints the node registers with: `key=value:Effect,…`.
    #[arg(long, default_value = "")]
    register_with_taints: String,
    /// Pods this node runs at most.
    #[arg(long, default_value_t = 110)]
    max_pods: u32,
    /// The port of the agent's own API (logs, exec, port-forward), announced in the Node.
    #[arg(long, default_value_t = 10250)]
    port: u16,
    /// How often the node's status is computed (and posted when it changed).
    #[arg(long, default_value = "10s", value_parser = crate::duration::flag)]
    node_status_update_frequency: std::time::Duration,
    /// Disk usage (percent) of the image filesystem at which unused images are removed.
    #[arg(long, default_value_t = 85)]
    image_gc_high_threshold: u8,
    /// Disk usage (percent) image garbage collection brings the image filesystem down to.
    #[arg(long, default_value_t = 80)]
    image_gc_low_threshold: u8,
    /// How long an unused image is kept before image garbage collection may remove it.
    #[arg(long, default_value = "2m", value_parser = crate::duration::flag)]
    minimum_image_ttl_duration: std::time::Duration,
    /// How often image garbage collection runs (kubelet's fixed ImageGCPeriod, 5 minutes).
    #[arg(long, default_value = "5m", value_parser = crate::duration::flag)]
    image_gc_period: std::time::Duration,
    /// The sandbox (pause) image the runtime uses, never removed by image garbage collection.
    #[arg(long, default_value = keel_agent::image::PAUSE_IMAGE)]
    pod_infra_container_image: String,
    /// The CRI runtime's socket.
    #[arg(long, default_value = "unix:///run/containerd/containerd.sock")]
    container_runtime_endpoint: String,
    /// Where the agent keeps its files (pods' volumes).
    #[arg(long, default_value = "/var/lib/keel-agent")]
    root_dir: PathBuf,
    /// Where pods' container logs go.
    #[arg(long, default_value = "/var/log/pods")]
    pod_logs_dir: PathBuf,
    /// The cluster DNS servers' addresses, written into pods' resolv.conf.
    #[arg(long, value_delimiter = ',')]
    cluster_dns: Vec<IpAddr>,
    /// The cluster's DNS domain.
    #[arg(long, default_value = "cluster.local")]
    cluster_domain: String,
    /// The node's pod CIDR: when given, the agent writes the CNI configuration the runtime
    /// reads (a bridge, addresses from this range, host ports, loopback) into
    /// --cni-conf-dir.
    #[arg(long)]
    pod_cidr: Option<String>,
    /// Where the runtime reads CNI network configurations.
    #[arg(long, default_value = "/etc/cni/net.d")]
    cni_conf_dir: PathBuf,
    /// The agent server's certificate (from `keel node-certificate`): without it and its key,
    /// logs, exec, attach and port-forward are not served.
    #[arg(long, value_name = "FILE", requires = "tls_private_key_file")]
    tls_cert_file: Option<PathBuf>,
    /// The agent server's private key.
    #[arg(long, value_name = "FILE", requires = "tls_cert_file")]
    tls_private_key_file: Option<PathBuf>,
    /// The CA whose client certificates (the API server's) the agent server accepts.
    #[arg(long, value_name = "FILE")]
    client_ca_file: Option<PathBuf>,
    /// The address the agent server listens on.
    #[arg(long, default_value = "0.0.0.0")]
    address: IpAddr,
    /// Pods synced at once.
    #[arg(long, default_value_t = 32)]
    pod_workers: usize,
    /// How Services are proxied on this node, as kube-proxy's --proxy-mode: `nftables`
    /// (rules in the table `ip keel-proxy`, applied with `nft`; iptables where `nft` is
    /// missing), `iptables` (kube-proxy's KEEL- chains, applied with `iptables-restore`) or
    /// `none` (another proxy runs here).
    #[arg(long, default_value = "nftables", value_parser = ["nftables", "iptables", "none"])]
    proxy_mode: String,
}

/// This process's oom_score_adj: without CAP_SYS_RESOURCE nothing it starts can go lower.
fn own_oom_score_adj() -> i64 {
    std::fs::read_to_string("/proc/self/oom_score_adj")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

fn memory_capacity() -> i64 {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    keel_agent::node::host::meminfo_bytes(&meminfo, "MemTotal")
        .and_then(|bytes| i64::try_from(bytes).ok())
        .unwrap_or(0)
}

/// Writes the pod network's CNI configuration for `cidr`, replacing what an earlier run
/// wrote, atomically (the runtime may read the directory at any time).
fn write_cni_config(dir: &std::path::Path, cidr: &str) -> anyhow::Result<()> {
    let subnet = ipv4_cidr(cidr)
        .with_context(|| format!("--pod-cidr {cidr:?} is not an IPv4 CIDR (e.g. 10.244.1.0/24)"))?;
    let network = keel_agent::containerd::BridgeNetwork {
        name: "keel".into(),
        bridge: "keel0".into(),
        subnet,
        ipam_data_dir: None,
        masquerade: true,
    };
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let file = dir.join("10-keel.conflist");
    let staged = dir.join(".10-keel.conflist.tmp");
    std::fs::write(&staged, network.conflist().to_string())
        .with_context(|| format!("writing {}", staged.display()))?;
    std::fs::rename(&staged, &file).with_context(|| format!("writing {}", file.display()))?;
    tracing::info!(file = %file.display(), %cidr, "wrote the pod network's CNI configuration");
    Ok(())
}

/// `cidr` in its canonical form (the address masked to its prefix), if it is an IPv4 CIDR.
fn ipv4_cidr(cidr: &str) -> Option<String> {
    let (std::net::IpAddr::V4(address), prefix) =
        keel_agent::node::config::parse_cidr(cidr).ok()?
    else {
        return None;
    };
    let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
    Some(format!(
        "{}/{prefix}",
        std::net::Ipv4Addr::from(u32::from(address) & mask)
    ))
}

/// The Service proxy's rules for `--proxy-mode`: nftables where `nft` runs, else iptables
/// (as kube-proxy falls back where its chosen mode cannot work), saying so; none if neither
/// can be used or `none` was asked for.
async fn proxy_backend(mode: &str) -> Option<keel_agent::proxy::Backend> {
    use keel_agent::proxy::{iptables::Iptables, nft::Nft, Backend};
    if mode == "none" {
        return None;
    }
    let nft = Nft::default();
    if mode == "nftables" && nft.available().await {
        return Some(Backend::Nftables(nft));
    }
    let tables = Iptables::default();
    if tables.available().await {
        if mode == "nftables" {
            tracing::warn!("nft is not installed: Services are proxied with iptables instead");
        }
        return Some(Backend::Iptables(tables));
    }
    tracing::warn!(
        mode,
        "neither nft nor iptables-restore can be run: Services are not proxied on this node"
    );
    None
}

/// Runs the agent until SIGINT or SIGTERM.
pub async fn run(args: AgentArgs) -> anyhow::Result<()> {
    let client = args.masters.connect()?;
    let node_name = args
        .hostname_override
        .clone()
        .unwrap_or_else(keel_agent::node::config::default_node_name);
    let node_ip = args
        .node_ip
        .or_else(keel_agent::node::config::default_node_ip)
        .context("no address found for the node: give --node-ip")?;
    let mut node_config = NodeConfig::new(node_name.clone(), node_ip);
    node_config.labels = parse_node_labels(&args.node_labels)?;
    node_config.taints = parse_taints(&args.register_with_taints)?;
    node_config.max_pods = args.max_pods;
    node_config.pod_cidr = args.pod_cidr.clone();
    node_config.port = args.port;
    node_config.root_dir = args.root_dir.clone();
    node_config.status_update_frequency = args.node_status_update_frequency;
    node_config.image_gc_high_threshold = args.image_gc_high_threshold;
    node_config.image_gc_low_threshold = args.image_gc_low_threshold;
    node_config.image_minimum_gc_age = args.minimum_image_ttl_duration;
    node_config.image_gc_period = args.image_gc_period;
    node_config.sandbox_image = args.pod_infra_container_image.clone();
    node_config.validate()?;
    let runtime = RuntimeClient::connect(&args.container_runtime_endpoint)
        .await
        .with_context(|| {
            format!(
                "connecting to the container runtime at {}",
                args.container_runtime_endpoint
            )
        })?;
    let version = runtime
        .version()
        .await
        .context("asking the container runtime for its version")?;
    tracing::info!(node = %node_name, runtime = %version.runtime_name, version = %version.runtime_version, "agent starting");
    std::fs::create_dir_all(&args.root_dir)
        .with_context(|| format!("creating {}", args.root_dir.display()))?;
    std::fs::create_dir_all(&args.pod_logs_dir)
        .with_context(|| format!("creating {}", args.pod_logs_dir.display()))?;
    if let Some(cidr) = &args.pod_cidr {
        write_cni_config(&args.cni_conf_dir, cidr)?;
    }
    let host_ip = node_ip.to_string();
    let settings = NodeSettings {
        root_dir: args.root_dir.clone(),
        logs_dir: args.pod_logs_dir.clone(),
        cluster_dns: args.cluster_dns.iter().map(ToString::to_string).collect(),
        cluster_domain: args.cluster_domain.clone(),
        host_searches: resolv_searches(
            &std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
        ),
        oom_score_adj_floor: own_oom_score_adj(),
        memory_capacity: memory_capacity(),
    };
    let shutdown = tokio_util::sync::CancellationToken::new();
    let signals = tokio::spawn(crate::signals::cancel_on_signal(shutdown.clone()));
    let tasks = TaskTracker::new();
    let recorder = Arc::new(
        Recorder::new(client.clone(), node_name.clone(), tasks.clone())
            .with_host(node_name.clone()),
    );
    let node_agent = NodeAgent::new(
        node_config,
        client.clone(),
        runtime.clone(),
        recorder.clone(),
    );
    let files = Arc::new(NodeFiles::new(
        args.root_dir.clone(),
        client.clone(),
        node_agent.node(),
        host_ip.clone(),
    ));
    tasks.spawn(node_agent.run(shutdown.clone()));
    if let Some(backend) = proxy_backend(&args.proxy_mode).await {
        let proxy =
            keel_agent::proxy::ServiceProxy::new(client.clone(), node_name.clone(), backend);
        tasks.spawn(proxy.run(shutdown.clone()));
    }
    match (&args.tls_cert_file, &args.tls_private_key_file, &args.client_ca_file) {
        (Some(cert), Some(key), Some(ca)) => {
            let config = AgentServerConfig::from_files(
                std::net::SocketAddr::new(args.address, args.port),
                cert.clone(),
                key.clone(),
                ca.clone(),
            );
            let server = AgentServer::bind(config, runtime.clone())
                .await
                .context("starting the agent server")?;
            tracing::info!(listen = ?server.local_addr(), "serving logs, exec, attach and port-forward");
            tasks.spawn(server.run(shutdown.clone()));
        }
        _ => tracing::warn!(
            "no --tls-cert-file, --tls-private-key-file and --client-ca-file: logs, exec, attach and port-forward are not served"
        ),
    }
    let config = PodsConfig {
        node_name,
        host_ip,
        node: settings,
        concurrency: args.pod_workers,
    };
    pods::run(client, runtime, recorder, files, config, shutdown.clone()).await;
    tasks.close();
    tasks.wait().await;
    tracing::info!("agent stopped");
    shutdown.cancel();
    let _ = signals.await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pod_cidr_is_read_in_its_canonical_form() {
        assert_eq!(ipv4_cidr("10.244.1.7/24").as_deref(), Some("10.244.1.0/24"));
        assert_eq!(ipv4_cidr("10.0.0.0/0").as_deref(), Some("0.0.0.0/0"));
        assert_eq!(ipv4_cidr("10.244.1.0/33"), None);
        assert_eq!(ipv4_cidr("fd00::/64"), None);
        assert_eq!(ipv4_cidr("10.244.1.0"), None);
    }
}
