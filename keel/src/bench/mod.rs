//! `keel bench`: a closed-loop load generator for any etcd-v3 endpoints (keel or etcd), modelled on etcd's `benchmark` tool.
//!
//! Workloads:
//! - `put`: random keys from `--key-space`, values of `--val-size` bytes.
//! - `get-linearizable` / `get-serializable`: the key space is pre-populated first
//!   (not measured), then random single-key Range requests are measured.
//! - `txn-cas`: read a random key's `mod_revision` (linearizable, not measured), then
//!   a Txn `MOD(key) == rev → put` (measured). Failed comparisons are counted as
//!   conflicts; they are still completed ops.
//! - `fill`: writes every key of the key space once, `--txn-ops` puts per Txn (an op is one
//!   Txn); used to load a data set, e.g. before reading a member's memory use.
//! - `watch-latency`: `--watchers` watch streams on a prefix, a writer puts keys at
//!   `--rate`/s with the send time encoded in the value; the latency is put-send →
//!   event-received, one sample per event per watcher.
//!
//! Keys are `<prefix><zero-padded decimal index>`, padded so that every key is at
//! least `--key-size` bytes (and all keys of a run have the same length).
//! Every row also reports the longest stretch without a successful op (`max_gap_ms`): run with
//! `--duration` and kill the leader midway to measure failover.
//! gRPC errors are counted, not fatal; more than 10% failed ops makes the run fail
//! (after the result is printed).

use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use hdrhistogram::Histogram;
use rand::Rng;
use tonic::transport::{Channel, Endpoint};

pub mod api;
pub mod controllers;
pub mod dns;
mod load;
pub mod pod_startup;
pub mod proxy;
mod report;
pub mod scheduler;
pub mod scheduler_cycle;
mod sim;
mod watch;

use load::*;
use report::*;
use watch::*;
/// Highest latency the histograms can hold (one hour, in microseconds); larger samples saturate.
const HIST_MAX_US: u64 = 3_600_000_000;
/// Marker at the start of a watch-latency value.
const TS_MAGIC: &[u8; 4] = b"kbts";
/// Bytes of a watch-latency value that carry data: magic, run id, send time.
const TS_HEADER_LEN: usize = 4 + 8 + 8;
/// Byte used to pad values up to `--val-size`.
const PAD_BYTE: u8 = b'x';

/// The measured operation.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    /// Put random keys.
    Put,
    /// Linearizable single-key Range on pre-populated keys.
    GetLinearizable,
    /// Serializable single-key Range on pre-populated keys.
    GetSerializable,
    /// Read mod_revision, then Txn compare MOD == rev → put (latency of the Txn).
    TxnCas,
    /// Put → watch event latency.
    WatchLatency,
    /// Write every key of the key space once, in Txns of `--txn-ops` puts.
    Fill,
}

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Workload::Put => "put",
            Workload::GetLinearizable => "get-linearizable",
            Workload::GetSerializable => "get-serializable",
            Workload::TxnCas => "txn-cas",
            Workload::WatchLatency => "watch-latency",
            Workload::Fill => "fill",
        }
    }
}

#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BenchArgs {
    /// A benchmark of a control-plane component instead of the store.
    #[command(subcommand)]
    target: Option<BenchTarget>,
    /// Workload to run (same as --workload).
    #[arg(value_enum, value_name = "WORKLOAD")]
    workload_pos: Option<Workload>,
    /// Workload to run.
    #[arg(long = "workload", value_enum, conflicts_with = "workload_pos")]
    workload: Option<Workload>,
    /// Comma-separated client URLs; connections are spread round-robin over them.
    #[arg(long, value_delimiter = ',', default_value = "http://127.0.0.1:2379")]
    endpoints: Vec<String>,
    /// Concurrent in-flight requests (closed-loop workers; for watch-latency, max in-flight puts).
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// gRPC connections (HTTP/2), assigned round-robin over the endpoints.
    #[arg(long, default_value_t = 8)]
    conns: usize,
    /// Number of ops (for watch-latency: number of puts). Default 20000 (2000 for
    /// watch-latency), unlimited when only --duration is given.
    #[arg(long)]
    total: Option<u64>,
    /// Stop issuing new ops after this many seconds.
    #[arg(long)]
    duration: Option<f64>,
    /// Value size in bytes (watch-latency values are at least 20 bytes).
    #[arg(long, default_value_t = 256)]
    val_size: usize,
    /// Minimum key size in bytes (prefix included).
    #[arg(long, default_value_t = 8)]
    key_size: usize,
    /// Number of distinct keys.
    #[arg(long, default_value_t = 10000)]
    key_space: u64,
    /// Key prefix (watch-latency uses `<prefix>watch/`).
    #[arg(long, default_value = "")]
    prefix: String,
    /// Name printed in the result row (e.g. "keel" or "etcd").
    #[arg(long, default_value = "bench")]
    label: String,
    /// Print the result as one JSON object line instead of a table.
    #[arg(long)]
    json: bool,
    /// watch-latency: puts per second (0 = as fast as --clients allows).
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// watch-latency: number of watch streams (each on its own connection, round-robin).
    #[arg(long, default_value_t = 1)]
    watchers: usize,
    /// Per-request timeout in seconds (a timed-out request counts as an error).
    #[arg(long, default_value_t = 10.0)]
    timeout: f64,
    /// fill: puts per Txn (etcd's default --max-txn-ops is 128).
    #[arg(long, default_value_t = 100)]
    txn_ops: u64,
}

/// Validated run parameters shared by every worker.
struct Plan {
    workload: Workload,
    endpoints: Vec<String>,
    clients: usize,
    conns: usize,
    total: u64,
    duration: Option<Duration>,
    val_size: usize,
    keys: KeyGen,
    label: String,
    json: bool,
    rate: u64,
    watchers: usize,
    timeout: Duration,
    txn_ops: u64,
}

impl Plan {
    fn from_args(args: BenchArgs) -> anyhow::Result<Plan> {
        let workload = args.workload.or(args.workload_pos).ok_or_else(|| {
            anyhow!("no workload given: use one of put, get-linearizable, get-serializable, txn-cas, watch-latency, fill")
        })?;
        let endpoints: Vec<String> = args
            .endpoints
            .iter()
            .map(|e| e.trim())
            .filter(|e| !e.is_empty())
            .map(normalize_endpoint)
            .collect();
        if endpoints.is_empty() {
            bail!("--endpoints is empty");
        }
        if args.clients == 0 || args.conns == 0 || args.watchers == 0 {
            bail!("--clients, --conns and --watchers must be at least 1");
        }
        if args.key_space == 0 {
            bail!("--key-space must be at least 1");
        }
        if args.txn_ops == 0 {
            bail!("--txn-ops must be at least 1");
        }
        let duration = match args.duration {
            Some(d) if !(d.is_finite() && d > 0.0) => {
                bail!("--duration must be a positive number of seconds")
            }
            Some(d) => Some(Duration::from_secs_f64(d)),
            None => None,
        };
        if !(args.timeout.is_finite() && args.timeout > 0.0) {
            bail!("--timeout must be a positive number of seconds");
        }
        let default_total = if workload == Workload::WatchLatency {
            2000
        } else {
            20000
        };
        let total = match (args.total, duration) {
            (Some(t), _) => t,
            (None, _) if workload == Workload::Fill => args.key_space.div_ceil(args.txn_ops),
            (None, Some(_)) => u64::MAX,
            (None, None) => default_total,
        };
        let prefix = if workload == Workload::WatchLatency {
            format!("{}watch/", args.prefix)
        } else {
            args.prefix
        };
        Ok(Plan {
            workload,
            endpoints,
            clients: args.clients,
            conns: args.conns,
            total,
            duration,
            val_size: args.val_size,
            keys: KeyGen::new(prefix.into_bytes(), args.key_size, args.key_space),
            label: args.label,
            json: args.json,
            rate: args.rate,
            watchers: args.watchers,
            timeout: Duration::from_secs_f64(args.timeout),
            txn_ops: args.txn_ops,
        })
    }
}

/// Benchmarks of components above the store.
#[derive(clap::Subcommand, Debug)]
enum BenchTarget {
    /// Object creates on the API's write path: ConfigMaps, and Services and Deployments whose
    /// selectors are linted on write, into a namespace of many pods, against running masters.
    Api(api::ApiBenchArgs),
    /// Scheduler throughput and create → bound latency on simulated nodes, against running
    /// masters.
    Scheduler(scheduler::SchedulerBenchArgs),
    /// The scheduler's decisions alone, in this process: its cache filled with simulated
    /// nodes, a workload's pods decided one after another; decisions per second.
    SchedulerCycle(scheduler_cycle::SchedulerCycleBenchArgs),
    /// The controller manager: a Deployment applied and rolled on simulated nodes, timed, with
    /// pods created per second.
    Controllers(controllers::ControllersBenchArgs),
    /// A real node agent: pods created at once, create → Running and Ready latency (p50, p99)
    /// and the agent's memory, against running masters (`--local` brings its own node).
    PodStartup(pod_startup::PodStartupBenchArgs),
    /// The Service proxy: nftables rule sync time and first-packet latency at 1,000 and 10,000
    /// Services, beside kube-proxy's iptables layout (needs root).
    Proxy(proxy::ProxyBenchArgs),
    /// The cluster DNS: answers per second and latency against one server holding a zone of
    /// many Services.
    Dns(dns::DnsBenchArgs),
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    match args.target {
        Some(BenchTarget::Api(a)) => return api::run(a).await,
        Some(BenchTarget::Scheduler(a)) => return scheduler::run(a).await,
        Some(BenchTarget::SchedulerCycle(a)) => return scheduler_cycle::run(a).await,
        Some(BenchTarget::Controllers(a)) => return controllers::run(a).await,
        Some(BenchTarget::PodStartup(a)) => return pod_startup::run(a).await,
        Some(BenchTarget::Proxy(a)) => return proxy::run(a).await,
        Some(BenchTarget::Dns(a)) => return dns::run(a).await,
        None => {}
    }
    let plan = Plan::from_args(args)?;
    let channels = connect_all(&plan.endpoints, plan.conns).await?;
    eprintln!(
        "bench: {} against {} ({} conns, {} clients, key-space {}, val-size {})",
        plan.workload.name(),
        plan.endpoints.join(","),
        plan.conns,
        plan.clients,
        plan.keys.space,
        plan.val_size
    );
    let outcome = match plan.workload {
        Workload::Put | Workload::TxnCas => {
            closed_loop(&plan, &channels, plan.workload, plan.total, false).await?
        }
        Workload::GetLinearizable | Workload::GetSerializable => {
            eprintln!(
                "bench: pre-populating {} keys (not measured)",
                plan.keys.space
            );
            let pre = closed_loop(&plan, &channels, Workload::Put, plan.keys.space, true).await?;
            if pre.errors > 0 {
                bail!(
                    "pre-populating failed for {} of {} keys: {}",
                    pre.errors,
                    plan.keys.space,
                    pre.first_error.unwrap_or_default()
                );
            }
            closed_loop(&plan, &channels, plan.workload, plan.total, false).await?
        }
        Workload::WatchLatency => watch_latency(&plan, &channels).await?,
        Workload::Fill => closed_loop(&plan, &channels, plan.workload, plan.total, true).await?,
    };
    let report = Report::new(&plan, &outcome);
    if plan.json {
        println!("{}", report.json());
    } else {
        println!("{}", Report::header());
        println!("{}", report.row());
    }
    if let Some(err) = &outcome.first_error {
        eprintln!("bench: {} errors; first: {err}", outcome.errors);
    }
    if error_rate_exceeded(outcome.ops, outcome.errors) {
        bail!(
            "{} of {} ops failed (more than 10%)",
            outcome.errors,
            outcome.ops + outcome.errors
        );
    }
    if outcome.ops == 0 {
        bail!("no operation completed");
    }
    Ok(())
}

/// `host:port` → `http://host:port`; URLs with a scheme are kept.
fn normalize_endpoint(e: &str) -> String {
    if e.contains("://") {
        e.to_string()
    } else {
        format!("http://{e}")
    }
}

/// Index of the endpoint connection `conn` goes to (round-robin).
fn endpoint_for_conn(conn: usize, endpoints: usize) -> usize {
    conn % endpoints.max(1)
}

async fn connect_all(endpoints: &[String], conns: usize) -> anyhow::Result<Vec<Channel>> {
    let mut channels = Vec::with_capacity(conns);
    for i in 0..conns {
        let url = &endpoints[endpoint_for_conn(i, endpoints.len())];
        let channel = Endpoint::from_shared(url.clone())
            .with_context(|| format!("bad endpoint {url}"))?
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await
            .with_context(|| format!("connecting to {url}"))?;
        channels.push(channel);
    }
    Ok(channels)
}

/// Deterministic key naming: `<prefix><index zero-padded to a fixed width>`.
#[derive(Clone, Debug)]
struct KeyGen {
    prefix: Vec<u8>,
    width: usize,
    space: u64,
}

impl KeyGen {
    fn new(prefix: Vec<u8>, key_size: usize, space: u64) -> KeyGen {
        let digits = decimal_digits(space.saturating_sub(1));
        let width = key_size.saturating_sub(prefix.len()).max(digits);
        KeyGen {
            prefix,
            width,
            space,
        }
    }

    /// Key for `index` (taken modulo the key space).
    fn key(&self, index: u64) -> Vec<u8> {
        let idx = index % self.space.max(1);
        let mut key = Vec::with_capacity(self.prefix.len() + self.width);
        key.extend_from_slice(&self.prefix);
        key.extend_from_slice(format!("{idx:0width$}", width = self.width).as_bytes());
        key
    }

    fn random_key(&self, rng: &mut impl Rng) -> Vec<u8> {
        self.key(rng.random_range(0..self.space.max(1)))
    }
}

fn decimal_digits(mut n: u64) -> usize {
    let mut d = 1;
    while n >= 10 {
        n /= 10;
        d += 1;
    }
    d
}

/// Smallest key greater than every key starting with `prefix` (etcd's `GetPrefixRangeEnd`).
fn prefix_range_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // Empty or all-0xff prefix: everything from the key on.
    vec![0]
}

fn random_value(rng: &mut impl Rng, size: usize) -> Vec<u8> {
    (0..size)
        .map(|_| b'a' + rng.random_range(0..26u8))
        .collect()
}

/// Watch-latency value: magic, run id, send time (ns since the run's base instant), padding.
fn encode_ts(run_id: u64, sent_ns: u64, val_size: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(val_size.max(TS_HEADER_LEN));
    v.extend_from_slice(TS_MAGIC);
    v.extend_from_slice(&run_id.to_be_bytes());
    v.extend_from_slice(&sent_ns.to_be_bytes());
    v.resize(val_size.max(TS_HEADER_LEN), PAD_BYTE);
    v
}

/// Send time from a value written by [`encode_ts`] with the same run id.
fn decode_ts(value: &[u8], run_id: u64) -> Option<u64> {
    let rest = value.strip_prefix(TS_MAGIC.as_slice())?;
    let id = u64::from_be_bytes(rest.get(0..8)?.try_into().ok()?);
    if id != run_id {
        return None;
    }
    Some(u64::from_be_bytes(rest.get(8..16)?.try_into().ok()?))
}

fn new_histogram() -> anyhow::Result<Histogram<u64>> {
    Histogram::new_with_bounds(1, HIST_MAX_US, 3).context("creating latency histogram")
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// More than 10% of the attempted ops failed.
fn error_rate_exceeded(ops: u64, errors: u64) -> bool {
    u128::from(errors) * 10 > u128::from(ops) + u128::from(errors)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use clap::Parser;
    use rand::rngs::StdRng;
    use rand::SeedableRng;
    use std::time::Instant;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: BenchArgs,
    }

    fn plan(argv: &[&str]) -> anyhow::Result<Plan> {
        let cli = Cli::try_parse_from(std::iter::once("bench").chain(argv.iter().copied()))?;
        Plan::from_args(cli.args)
    }

    #[test]
    fn keys_have_fixed_width_and_wrap() {
        let g = KeyGen::new(Vec::new(), 8, 10000);
        assert_eq!(g.key(0), b"00000000");
        assert_eq!(g.key(42), b"00000042");
        assert_eq!(g.key(10042), b"00000042");
        let g = KeyGen::new(b"bench/".to_vec(), 8, 10000);
        assert_eq!(g.key(7), b"bench/0007");
        assert_eq!(g.key(9999), b"bench/9999");
        let g = KeyGen::new(b"p/".to_vec(), 3, 1);
        assert_eq!(g.key(5), b"p/0");
    }

    #[test]
    fn random_keys_stay_in_space() {
        let g = KeyGen::new(b"k".to_vec(), 4, 50);
        let mut rng = StdRng::seed_from_u64(1);
        for _ in 0..1000 {
            let k = g.random_key(&mut rng);
            assert_eq!(k.len(), 4);
            let n: u64 = std::str::from_utf8(&k[1..]).unwrap().parse().unwrap();
            assert!(n < 50);
        }
    }

    #[test]
    fn digits() {
        assert_eq!(decimal_digits(0), 1);
        assert_eq!(decimal_digits(9), 1);
        assert_eq!(decimal_digits(10), 2);
        assert_eq!(decimal_digits(9999), 4);
        assert_eq!(decimal_digits(u64::MAX), 20);
    }

    #[test]
    fn range_end_of_prefix() {
        assert_eq!(prefix_range_end(b"watch/"), b"watch0");
        assert_eq!(prefix_range_end(b"a\xff"), b"b");
        assert_eq!(prefix_range_end(b"\xff\xff"), vec![0]);
        assert_eq!(prefix_range_end(b""), vec![0]);
    }

    #[test]
    fn timestamp_round_trip() {
        let v = encode_ts(7, 123_456_789, 256);
        assert_eq!(v.len(), 256);
        assert_eq!(decode_ts(&v, 7), Some(123_456_789));
        assert_eq!(decode_ts(&v, 8), None, "other run");
        let short = encode_ts(7, u64::MAX, 0);
        assert_eq!(short.len(), TS_HEADER_LEN);
        assert_eq!(decode_ts(&short, 7), Some(u64::MAX));
        assert_eq!(decode_ts(&short[..TS_HEADER_LEN - 1], 7), None);
        assert_eq!(decode_ts(b"plain value that is long enough", 7), None);
    }

    #[test]
    fn millisecond_formatting() {
        assert_eq!(fmt_ms(0), "0.000");
        assert_eq!(fmt_ms(1), "0.001");
        assert_eq!(fmt_ms(1234), "1.234");
        assert_eq!(fmt_ms(1_500_000), "1500.000");
        assert_eq!(ms(1234), 1.234);
        assert_eq!(round3(2.0004), 2.0);
    }

    #[test]
    fn percentiles_of_histogram() {
        let mut h = new_histogram().unwrap();
        assert_eq!(percentiles(&h), [0; 5]);
        for v in 1..=1000u64 {
            h.saturating_record(v);
        }
        let [p50, p90, p99, p999, max] = percentiles(&h);
        assert_eq!((p50, p90, p99, p999, max), (500, 900, 990, 999, 1000));
        h.saturating_record(u64::MAX);
        assert!(percentiles(&h)[4] >= HIST_MAX_US);
    }

    #[test]
    fn gaps_count_the_stretches_without_a_success() {
        let start = Instant::now();
        let gaps = GapTracker::new(start);
        gaps.success(start + Duration::from_millis(10));
        gaps.success(start + Duration::from_millis(900));
        // A success reported late (an earlier completion) does not shorten or lengthen a gap.
        gaps.success(start + Duration::from_millis(500));
        gaps.success(start + Duration::from_millis(950));
        assert_eq!(
            gaps.longest(start + Duration::from_millis(1000)),
            Duration::from_millis(890)
        );
        assert_eq!(
            gaps.longest(start + Duration::from_millis(2000)),
            Duration::from_millis(1050),
            "the tail after the last success counts"
        );
        assert_eq!(
            GapTracker::new(start).longest(start + Duration::from_millis(30)),
            Duration::from_millis(30)
        );
    }

    #[test]
    fn error_threshold() {
        assert!(!error_rate_exceeded(0, 0));
        assert!(!error_rate_exceeded(90, 10));
        assert!(error_rate_exceeded(89, 11));
        assert!(error_rate_exceeded(0, 1));
        assert!(!error_rate_exceeded(u64::MAX, u64::MAX / 20));
    }

    #[test]
    fn endpoints_and_conns() {
        assert_eq!(
            normalize_endpoint("127.0.0.1:2379"),
            "http://127.0.0.1:2379"
        );
        assert_eq!(
            normalize_endpoint("http://127.0.0.1:2379"),
            "http://127.0.0.1:2379"
        );
        let assigned: Vec<usize> = (0..5).map(|c| endpoint_for_conn(c, 2)).collect();
        assert_eq!(assigned, vec![0, 1, 0, 1, 0]);
    }

    #[test]
    fn argument_defaults_and_workloads() {
        let p = plan(&["put"]).unwrap();
        assert_eq!(p.workload, Workload::Put);
        assert_eq!(
            (p.clients, p.conns, p.total, p.val_size),
            (64, 8, 20000, 256)
        );
        assert_eq!(p.endpoints, vec!["http://127.0.0.1:2379".to_string()]);

        let p = plan(&[
            "--workload",
            "watch-latency",
            "--endpoints",
            "127.0.0.1:1,http://127.0.0.1:2",
        ])
        .unwrap();
        assert_eq!(p.workload, Workload::WatchLatency);
        assert_eq!(p.total, 2000);
        assert_eq!(p.keys.prefix, b"watch/");
        assert_eq!(p.endpoints.len(), 2);

        let p = plan(&["txn-cas", "--duration", "2"]).unwrap();
        assert_eq!(p.total, u64::MAX);
        let p = plan(&["get-serializable", "--duration", "2", "--total", "5"]).unwrap();
        assert_eq!(p.total, 5);

        let p = plan(&["fill", "--key-space", "1000", "--txn-ops", "128"]).unwrap();
        assert_eq!(p.total, 8, "1000 keys in txns of 128 puts");
        assert!(plan(&["fill", "--txn-ops", "0"]).is_err());

        assert!(plan(&[]).is_err());
        assert!(plan(&["put", "--workload", "put"]).is_err());
        assert!(plan(&["put", "--clients", "0"]).is_err());
        assert!(plan(&["nope"]).is_err());
    }
}
