//! `keel bench proxy`: what the Service proxy's rules cost as Services grow. For each count N
//! (1,000 and 10,000 by default) it builds a "node" network namespace joined by veth to a
//! "server" one running an HTTP server, renders keel's nftables ruleset for N Services (all
//! backed by that server) and measures:
//!
//! - sync: rendering and applying the whole table with `nft -f` (the first apply, and again
//!   after one endpoint changed);
//! - first packet: TCP connect time from the node to the cluster IP of the Service inserted
//!   last, median and p99 over many connections, beside a direct connect to the server.
//!
//! The anchor runs on the same machine: the same N Services as kube-proxy's iptables mode lays
//! them out (one rule per Service in a chain walked in order, a chain per Service and per
//! endpoint, DNAT in the last), applied with `iptables-restore`, measured the same way. Needs
//! root, `ip`, `nft`, `iptables-restore` and busybox.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use keel_agent::proxy::bed::{Bed, SERVER_ADDRESS as SERVER, SERVER_PORT};
use keel_agent::proxy::model::{Endpoint, ServicePort};
use keel_agent::proxy::nft::Nft;
use keel_agent::proxy::rules::render;

#[derive(clap::Args, Debug, Clone)]
pub struct ProxyBenchArgs {
    /// Service counts to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1000,10000")]
    services: Vec<u32>,
    /// Connections timed per measurement.
    #[arg(long, default_value_t = 300)]
    connections: usize,
    /// Skip the iptables anchor.
    #[arg(long)]
    no_iptables: bool,
}

/// The `i`th Service's cluster IP, from 10.96.0.0/12.
fn cluster_ip(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 96, 0, 10)) + i)
}

fn ports(n: u32, server: Ipv4Addr) -> Vec<ServicePort> {
    (0..n)
        .map(|i| ServicePort {
            id: format!("bench/svc-{i}/tcp/80"),
            protocol: "tcp",
            cluster_ip: cluster_ip(i),
            port: 80,
            node_port: None,
            internal: vec![Endpoint {
                ip: server,
                port: SERVER_PORT,
                local: false,
            }],
            external: Vec::new(),
            external_local: false,
            affinity_seconds: None,
        })
        .collect()
}

/// kube-proxy's iptables layout for the same Services, as an iptables-restore document.
fn iptables_document(n: u32, server: Ipv4Addr) -> String {
    let mut out = String::from("*nat\n:KEEL-BENCH-SERVICES - [0:0]\n");
    for i in 0..n {
        let _ = writeln!(out, ":KBSVC-{i} - [0:0]\n:KBSEP-{i} - [0:0]");
    }
    out.push_str("-F KEEL-BENCH-SERVICES\n");
    for i in 0..n {
        let _ = writeln!(
            out,
            "-A KEEL-BENCH-SERVICES -d {}/32 -p tcp -m tcp --dport 80 -j KBSVC-{i}",
            cluster_ip(i)
        );
        let _ = writeln!(out, "-A KBSVC-{i} -j KBSEP-{i}");
        let _ = writeln!(
            out,
            "-A KBSEP-{i} -p tcp -m tcp -j DNAT --to-destination {server}:{SERVER_PORT}"
        );
    }
    out.push_str("COMMIT\n");
    out
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn summary(mut times: Vec<Duration>) -> String {
    times.sort_unstable();
    format!(
        "p50 {:>6.1} µs  p99 {:>7.1} µs",
        percentile(&times, 0.5).as_secs_f64() * 1e6,
        percentile(&times, 0.99).as_secs_f64() * 1e6
    )
}

pub async fn run(args: ProxyBenchArgs) -> anyhow::Result<()> {
    let fail = |e: String| anyhow::anyhow!(e);
    let mut bed = Bed::create("kb").map_err(fail)?;
    // The server serves an empty directory: only connections are timed.
    let files = std::env::temp_dir().join(format!("keel-bench-proxy-{}", std::process::id()));
    std::fs::create_dir_all(&files)?;
    let served = bed.serve(&files).map_err(fail);
    let _ = std::fs::remove_dir(&files);
    served?;
    let direct: SocketAddr = (SERVER, SERVER_PORT).into();
    println!(
        "direct to the server (no Services): connect {}",
        summary(bed.connect_times(direct, args.connections).map_err(fail)?)
    );
    let nft = Nft::in_namespace(&bed.node);
    for &n in &args.services {
        let mut services = ports(n, SERVER);
        let started = Instant::now();
        let document = render(&services);
        let rendered = started.elapsed();
        let started = Instant::now();
        nft.apply(&document).await.map_err(fail)?;
        let applied = started.elapsed();
        // One endpoint changes: the whole table is rendered and replaced again.
        if let Some(first) = services.first_mut() {
            first.internal[0].port = SERVER_PORT + 1;
        }
        let started = Instant::now();
        nft.apply(&render(&services)).await.map_err(fail)?;
        let resync = started.elapsed();
        let last: SocketAddr = (cluster_ip(n.saturating_sub(1)), 80).into();
        let times = bed.connect_times(last, args.connections).map_err(fail)?;
        println!(
            "nftables  {n:>6} Services: render {:>7.1} ms, apply {:>8.1} ms, re-sync {:>8.1} ms; first packet to the last Service: connect {}",
            rendered.as_secs_f64() * 1e3,
            applied.as_secs_f64() * 1e3,
            resync.as_secs_f64() * 1e3,
            summary(times)
        );
        let _ = nft.apply(&keel_agent::proxy::rules::remove()).await;
        if args.no_iptables {
            continue;
        }
        let node = bed.node.clone();
        let document = iptables_document(n, SERVER);
        let applied = bed
            .run_in(&node, "iptables-restore", &["--noflush"], &document)
            .map_err(fail)?;
        // kube-proxy's hook: every new connection walks the Services chain from the top.
        let hook = ["-t", "nat", "-I", "OUTPUT", "-j", "KEEL-BENCH-SERVICES"];
        bed.run_in(&node, "iptables", &hook, "").map_err(fail)?;
        let times = bed.connect_times(last, args.connections).map_err(fail)?;
        println!(
            "iptables  {n:>6} Services: apply {:>8.1} ms (iptables-restore); first packet to the last Service: connect {}",
            applied.as_secs_f64() * 1e3,
            summary(times)
        );
        for cleanup in [
            &["-t", "nat", "-D", "OUTPUT", "-j", "KEEL-BENCH-SERVICES"][..],
            &["-t", "nat", "-F"],
            &["-t", "nat", "-X"],
        ] {
            bed.run_in(&node, "iptables", cleanup, "").map_err(fail)?;
        }
    }
    Ok(())
}
