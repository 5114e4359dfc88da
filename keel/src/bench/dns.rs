//! `keel bench dns`: queries per second and latency of the cluster DNS. It serves, in this
//! process, the zone of `--services` Services (cluster IPs from 10.96.0.0/12, one named port
//! each), the way a master serves it, and sends A questions for random Services of them from
//! `--concurrency` UDP clients, each waiting for its answer before asking again, for
//! `--seconds`. Printed: answers per second, latency p50/p99/max, and any wrong or missing
//! answers. No other DNS server runs here to set beside it.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use keel_client::k8s_openapi::api::core::v1::Service;
use keel_dns::proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use keel_dns::proto::rr::{Name, RecordType};
use keel_dns::{DnsConfig, Zone};
use serde_json::json;
use tokio_util::sync::CancellationToken;

#[derive(clap::Args, Debug, Clone)]
pub struct DnsBenchArgs {
    /// Services in the zone.
    #[arg(long, default_value_t = 10_000)]
    services: u32,
    /// Clients asking at once.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// How long to ask.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
}

fn service(i: u32) -> Option<Arc<Service>> {
    let ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 96, 1, 0)) + i);
    serde_json::from_value(json!({
        "metadata": {"name": format!("svc-{i}"), "namespace": "bench"},
        "spec": {"clusterIP": ip.to_string(), "ports": [{"name": "http", "port": 80}]},
    }))
    .ok()
    .map(Arc::new)
}

#[derive(Default)]
struct Tally {
    latencies: Vec<Duration>,
    wrong: usize,
    timeouts: usize,
}

async fn client(server: SocketAddr, services: u32, until: Instant) -> anyhow::Result<Tally> {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
    socket.connect(server).await?;
    let mut tally = Tally::default();
    let mut buf = vec![0u8; 2048];
    let mut id: u16 = rand::random();
    while Instant::now() < until {
        let i = rand::random::<u32>() % services;
        id = id.wrapping_add(1);
        let mut message = Message::new();
        message
            .set_id(id)
            .set_message_type(MessageType::Query)
            .set_op_code(OpCode::Query)
            .set_recursion_desired(true)
            .add_query(Query::query(
                Name::from_ascii(format!("svc-{i}.bench.svc.cluster.local."))?,
                RecordType::A,
            ));
        let bytes = message.to_vec()?;
        let started = Instant::now();
        socket.send(&bytes).await?;
        match tokio::time::timeout(Duration::from_secs(1), socket.recv(&mut buf)).await {
            Ok(Ok(n)) => {
                tally.latencies.push(started.elapsed());
                let reply = Message::from_vec(&buf[..n])?;
                if reply.id() != id
                    || reply.response_code() != ResponseCode::NoError
                    || reply.answers().len() != 1
                {
                    tally.wrong += 1;
                }
            }
            _ => tally.timeouts += 1,
        }
    }
    Ok(tally)
}

pub async fn run(args: DnsBenchArgs) -> anyhow::Result<()> {
    if args.services == 0 || args.concurrency == 0 {
        bail!("--services and --concurrency must be at least 1");
    }
    let services: Vec<Arc<Service>> = (0..args.services).filter_map(service).collect();
    let started = Instant::now();
    let zone = Zone::build(keel_dns::DEFAULT_DOMAIN, &services, &[]);
    let built = started.elapsed();
    let listen: SocketAddr = std::net::UdpSocket::bind("127.0.0.1:0")?.local_addr()?;
    let (_zones_tx, zones) = tokio::sync::watch::channel(Arc::new(zone));
    let stop = CancellationToken::new();
    let config = DnsConfig {
        listen,
        domain: keel_dns::DEFAULT_DOMAIN.into(),
        upstream: Vec::new(),
    };
    let server_stop = stop.clone();
    let server = tokio::spawn(async move { keel_dns::serve(&config, zones, server_stop).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let until = Instant::now() + Duration::from_secs(args.seconds);
    let clients: Vec<_> = (0..args.concurrency)
        .map(|_| tokio::spawn(client(listen, args.services, until)))
        .collect();
    let mut all = Tally::default();
    for c in clients {
        let t = c.await.context("a client task failed")??;
        all.latencies.extend(t.latencies);
        all.wrong += t.wrong;
        all.timeouts += t.timeouts;
    }
    stop.cancel();
    let _ = server.await;
    all.latencies.sort_unstable();
    let at = |p: f64| {
        let i = ((all.latencies.len().saturating_sub(1)) as f64 * p).round() as usize;
        all.latencies
            .get(i)
            .copied()
            .unwrap_or_default()
            .as_secs_f64()
            * 1e3
    };
    println!(
        "dns: {} Services (zone built in {:.1} ms), {} clients for {} s: {:.0} answers/s, p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms, wrong {}, timed out {}",
        args.services,
        built.as_secs_f64() * 1e3,
        args.concurrency,
        args.seconds,
        all.latencies.len() as f64 / args.seconds as f64,
        at(0.5),
        at(0.99),
        at(1.0),
        all.wrong,
        all.timeouts
    );
    Ok(())
}
