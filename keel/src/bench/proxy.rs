//! `keel bench proxy`: what the Service proxy's rules cost as Services grow. For each count N
//! (1,000 and 10,000 by default) it builds a "node" network namespace joined by veth to a
//! "server" one running an HTTP server, renders keel's nftables ruleset for N Services (all
//! backed by that server) and measures:
//!
//! - sync: rendering and applying the whole table with `nft -f` (the proxy's first sync), and
//!   applying the change when one endpoint of one Service changed (every later sync);
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
use keel_agent::proxy::rules::{render, render_changes};

#[derive(clap::Args, Debug, Clone)]
pub struct ProxyBenchArgs {
    /// Service counts to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1000,10000")]
    services: Vec<u32>,
    /// Connections timed per measurement.
    #[arg(long, default_value_t = 300)]
    connections: usize,
    /// Endpoints per Service.
    #[arg(long, default_value_t = 1)]
    endpoints: u16,
    /// Skip the iptables anchor.
    #[arg(long)]
    no_iptables: bool,
}

/// The port the benchmark's own listener accepts on (endpoint ports count up from it).
const ACCEPT_PORT: u16 = 9000;

/// The `i`th Service's cluster IP, from 10.96.0.0/12.
fn cluster_ip(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 96, 0, 10)) + i)
}

/// `n` Services, each with `endpoints` endpoints: the server's listener on as many ports.
fn ports(n: u32, server: Ipv4Addr, endpoints: u16) -> Vec<ServicePort> {
    (0..n)
        .map(|i| ServicePort {
            id: format!("bench/svc-{i}/tcp/80"),
            protocol: "tcp",
            cluster_ip: cluster_ip(i),
            port: 80,
            node_port: None,
            internal: (0..endpoints)
                .map(|e| Endpoint {
                    ip: server,
                    port: ACCEPT_PORT + e,
                    local: false,
                })
                .collect(),
            external: Vec::new(),
            external_local: false,
            affinity_seconds: None,
        })
        .collect()
}

/// kube-proxy's iptables layout for the same Services, as an iptables-restore document: a
/// rule per Service in one chain, a chain per Service choosing an endpoint with the statistic
/// match, and a chain per endpoint that DNATs.
fn iptables_document(n: u32, server: Ipv4Addr, endpoints: u16) -> String {
    let mut out = String::from("*nat\n:KEEL-BENCH-SERVICES - [0:0]\n");
    for i in 0..n {
        let _ = writeln!(out, ":KBSVC-{i} - [0:0]");
        for e in 0..endpoints {
            let _ = writeln!(out, ":KBSEP-{i}-{e} - [0:0]");
        }
    }
    out.push_str("-F KEEL-BENCH-SERVICES\n");
    for i in 0..n {
        let _ = writeln!(
            out,
            "-A KEEL-BENCH-SERVICES -d {}/32 -p tcp -m tcp --dport 80 -j KBSVC-{i}",
            cluster_ip(i)
        );
        for e in 0..endpoints {
            let left = endpoints - e;
            if left > 1 {
                let _ = writeln!(
                    out,
                    "-A KBSVC-{i} -m statistic --mode random --probability {:.5} -j KBSEP-{i}-{e}",
                    1.0 / f64::from(left)
                );
            } else {
                let _ = writeln!(out, "-A KBSVC-{i} -j KBSEP-{i}-{e}");
            }
            let _ = writeln!(
                out,
                "-A KBSEP-{i}-{e} -p tcp -m tcp -j DNAT --to-destination {server}:{}",
                ACCEPT_PORT + e
            );
        }
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
    for e in 0..args.endpoints.max(1) {
        bed.accept_on(ACCEPT_PORT + e).map_err(fail)?;
    }
    let direct: SocketAddr = (SERVER, ACCEPT_PORT).into();
    println!(
        "direct to the server (no Services): connect {}",
        summary(bed.connect_times(direct, args.connections).map_err(fail)?)
    );
    let nft = Nft::in_namespace(&bed.node);
    for &n in &args.services {
        let mut services = ports(n, SERVER, args.endpoints.max(1));
        let started = Instant::now();
        let document = render(&services);
        let rendered = started.elapsed();
        let started = Instant::now();
        nft.apply(&document).await.map_err(fail)?;
        let applied = started.elapsed();
        // One endpoint of one Service changes: the proxy rewrites that Service alone.
        let before = services.clone();
        if let Some(first) = services.first_mut() {
            if let Some(endpoint) = first.internal.first_mut() {
                endpoint.port = SERVER_PORT;
            }
        }
        let started = Instant::now();
        if let Some(change) = render_changes(&before, &services) {
            nft.apply(&change).await.map_err(fail)?;
        }
        let resync = started.elapsed();
        let last: SocketAddr = (cluster_ip(n.saturating_sub(1)), 80).into();
        let times = bed.connect_times(last, args.connections).map_err(fail)?;
        println!(
            "nftables  {n:>6} Services: render {:>7.1} ms, full sync {:>8.1} ms, one endpoint changed {:>6.1} ms; first packet to the last Service: connect {}",
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
        let document = iptables_document(n, SERVER, args.endpoints.max(1));
        let applied = bed
            .run_in(&node, "iptables-restore", &["--noflush"], &document)
            .map_err(fail)?;
        // kube-proxy's hook: every new connection walks the Services chain from the top.
        let hook = ["-t", "nat", "-I", "OUTPUT", "-j", "KEEL-BENCH-SERVICES"];
        bed.run_in(&node, "iptables", &hook, "").map_err(fail)?;
        let times = bed.connect_times(last, args.connections).map_err(fail)?;
        println!(
            "iptables  {n:>6} Services: full sync {:>8.1} ms (iptables-restore); first packet to the last Service: connect {}",
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
