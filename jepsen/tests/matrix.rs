//! The short fault matrix CI runs against keel: every nemesis family at least once with the
//! register and the set workloads, plus bank, lease-lock and watch under combined faults. A
//! violation (exit 1) or a run that could not complete (exit 2) fails the test, and the report
//! directory named in the output holds the evidence.

mod common;

use anyhow::{ensure, Result};

/// Seconds of workload per run: long enough for two or three fault windows.
const SECONDS: &str = "20";

fn green(workload: &str, nemesis: &str) -> Result<()> {
    let o = common::jepsen(&[
        &format!("--workload={workload}"),
        &format!("--nemesis={nemesis}"),
        &format!("--time-limit={SECONDS}"),
        "--calm=2",
        "--hold=4",
    ])?;
    ensure!(
        o.code == 0,
        "{workload} under {nemesis}: exit {} (reports in {})\n{}",
        o.code,
        o.out.display(),
        o.stdout
    );
    // Each run left a report with a verdict, a history and a plot.
    let runs: Vec<_> = std::fs::read_dir(&o.out)?
        .flatten()
        .filter(|e| e.path().is_dir())
        .collect();
    ensure!(
        runs.len() == 1,
        "expected one run directory in {}",
        o.out.display()
    );
    for file in [
        "history.jsonl",
        "nemesis.jsonl",
        "verdict.json",
        "latency.svg",
    ] {
        ensure!(
            runs[0].path().join(file).exists(),
            "{file} missing in {}",
            runs[0].path().display()
        );
    }
    ensure!(o.out.join("index.md").exists(), "index.md missing");
    let _ = std::fs::remove_dir_all(&o.out);
    Ok(())
}

#[test]
fn register_survives_kills() -> Result<()> {
    green("register", "kill")
}

#[test]
fn set_survives_kills() -> Result<()> {
    green("set", "kill")
}

#[test]
fn register_survives_pauses() -> Result<()> {
    green("register", "pause")
}

#[test]
fn set_survives_pauses() -> Result<()> {
    green("set", "pause")
}

#[test]
fn register_survives_partitions() -> Result<()> {
    green("register", "partition")
}

#[test]
fn set_survives_partitions() -> Result<()> {
    green("set", "partition")
}

#[test]
fn register_survives_clock_skew() -> Result<()> {
    green("register", "skew")
}

#[test]
fn set_survives_clock_skew() -> Result<()> {
    green("set", "skew")
}

#[test]
fn register_survives_membership_changes() -> Result<()> {
    green("register", "member")
}

#[test]
fn set_survives_membership_changes() -> Result<()> {
    green("set", "member")
}

#[test]
fn register_survives_disk_faults() -> Result<()> {
    green("register", "disk")
}

#[test]
fn set_survives_disk_faults() -> Result<()> {
    green("set", "disk")
}

#[test]
fn bank_survives_kills_and_partitions() -> Result<()> {
    green("bank", "kill,partition")
}

#[test]
fn lease_lock_survives_pauses_and_partitions() -> Result<()> {
    green("lease-lock", "pause,partition")
}

#[test]
fn watch_survives_kills_and_partitions() -> Result<()> {
    green("watch", "kill,partition")
}
