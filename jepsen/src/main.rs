//! `keel-jepsen`: runs fault-injection tests against keel or etcd and writes reports.
//! Exit status of `run`: 0 every run valid, 1 some run invalid, 2 some run could not complete.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use keel_jepsen::check::Validity;
use keel_jepsen::cluster::Target;
use keel_jepsen::nemesis::{self, Schedule};
use keel_jepsen::run::{run_once, RunConfig};
use keel_jepsen::workload::Workload;
use keel_jepsen::{history, report, workload};

#[derive(Parser)]
#[command(
    name = "keel-jepsen",
    about = "Fault-injection tests for etcd-v3 stores (keel, etcd)"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a workload under faults and check it.
    Run(RunArgs),
    /// Check a recorded run directory again.
    Check {
        #[arg(long, value_enum)]
        workload: Workload,
        dir: PathBuf,
    },
    /// Print the table of runs under a report directory (and rewrite its index).
    Index { out: PathBuf },
    /// Compare two report directories (e.g. keel's and etcd's runs of one matrix).
    Compare { left: PathBuf, right: PathBuf },
}

#[derive(clap::Args)]
struct RunArgs {
    #[arg(long, value_enum)]
    workload: Workload,
    /// Comma-separated faults: kill[-leader|-random], pause[-leader|-random],
    /// partition[-halves|-leader|-ring|-bridge], skew, member, disk, none.
    #[arg(long, default_value = "none")]
    nemesis: String,
    /// Seconds of workload per run.
    #[arg(long, default_value_t = 30)]
    time_limit: u64,
    #[arg(long, value_enum, default_value_t = Target::Keel)]
    target: Target,
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    #[arg(long, default_value_t = 1)]
    runs: usize,
    /// The keel binary (default: `keel` next to this binary, else on PATH).
    #[arg(long)]
    keel_bin: Option<PathBuf>,
    /// Where run directories go.
    #[arg(long, default_value = "jepsen-runs")]
    out: PathBuf,
    /// Client processes (default: two per member).
    #[arg(long)]
    concurrency: Option<usize>,
    /// Mean pause between one process's operations, in milliseconds.
    #[arg(long, default_value_t = 10)]
    think_ms: u64,
    /// Run members on loopback instead of network namespaces.
    #[arg(long)]
    loopback: bool,
    /// Extra flag for every member (repeatable), e.g. --member-arg=--unsafe-fault=stale-reads.
    #[arg(long, allow_hyphen_values = true)]
    member_arg: Vec<String>,
    /// Healthy seconds between faults, and seconds a fault lasts.
    #[arg(long, default_value_t = 3)]
    calm: u64,
    #[arg(long, default_value_t = 5)]
    hold: u64,
}

fn default_keel() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.join("keel")))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("keel"))
}

fn exit_code(valid: &[Validity]) -> i32 {
    if valid.contains(&Validity::Invalid) {
        1
    } else if valid.contains(&Validity::Unknown) {
        2
    } else {
        0
    }
}

async fn run(a: RunArgs) -> anyhow::Result<i32> {
    let faults = nemesis::parse(&a.nemesis)?;
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let secs = |s: u64| Duration::from_millis(s * 1000);
    let cfg = RunConfig {
        workload: a.workload,
        nemesis: a.nemesis.clone(),
        faults,
        time_limit: Duration::from_secs(a.time_limit),
        target: a.target,
        nodes: a.nodes,
        keel_bin: a.keel_bin.unwrap_or_else(default_keel),
        member_args: a.member_arg,
        out: a.out.clone(),
        concurrency: a.concurrency.unwrap_or(2 * a.nodes),
        think: Duration::from_millis(a.think_ms),
        schedule: Schedule {
            calm: (secs(a.calm) / 2, secs(a.calm) * 3 / 2),
            hold: (secs(a.hold) / 2, secs(a.hold) * 3 / 2),
        },
        namespaces: a.loopback.then_some(false),
    };
    let mut valid = Vec::new();
    for k in 0..a.runs {
        // On SIGINT/SIGTERM the run is dropped: members are killed, the network removed.
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let r = tokio::select! {
            r = run_once(&cfg, k) => r,
            _ = tokio::signal::ctrl_c() => anyhow::bail!("interrupted"),
            _ = term.recv() => anyhow::bail!("terminated"),
        };
        println!(
            "{}: {:?} ops={} ok={} info={} ok/s={:.1} p50={:.1}ms p99={:.1}ms faults={}{}",
            r.name,
            r.valid,
            r.stats.ops,
            r.stats.ok,
            r.stats.info,
            r.stats.ok_per_sec,
            r.stats.p50_ms,
            r.stats.p99_ms,
            r.faults,
            r.error
                .as_ref()
                .map(|e| format!(" error: {e}"))
                .unwrap_or_default()
        );
        for p in r.verdict.problems.iter().take(10) {
            println!("  {p}");
        }
        valid.push(r.valid);
    }
    println!("reports in {}", a.out.display());
    Ok(exit_code(&valid))
}

fn main() {
    let cli = Cli::parse();
    let code = match cli.cmd {
        Cmd::Run(a) => tokio::runtime::Runtime::new()
            .context("starting the runtime")
            .and_then(|rt| rt.block_on(run(a))),
        Cmd::Check { workload: w, dir } => (|| {
            let events = history::read_jsonl(&dir.join("history.jsonl"))?;
            let extra = std::fs::read_to_string(dir.join("watch.json"))
                .ok()
                .and_then(|s| serde_json::from_str(&s).ok());
            let v = workload::check(w, &events, &extra);
            println!("{}", serde_json::to_string_pretty(&v)?);
            Ok(exit_code(&[v.valid]))
        })(),
        Cmd::Compare { left, right } => {
            print!(
                "{}",
                report::compare(&report::collect(&left), &report::collect(&right))
            );
            Ok(0)
        }
        Cmd::Index { out } => report::write_index(&out)
            .map(|t| {
                print!("{t}");
                0
            })
            .map_err(anyhow::Error::from),
    };
    match code {
        Ok(c) => std::process::exit(c),
        Err(e) => {
            eprintln!("keel-jepsen: {e:#}");
            std::process::exit(2);
        }
    }
}
