//! The harness must catch a planted bug: members started with the test-only
//! `--unsafe-fault=stale-reads` answer "linearizable" reads from local state, so an isolated
//! ex-leader serves stale values, and the register checker must call the history invalid.

mod common;

use anyhow::{ensure, Result};

#[test]
fn stale_reads_from_an_isolated_leader_are_caught() -> Result<()> {
    let o = common::jepsen(&[
        "--workload=register",
        "--nemesis=partition-leader",
        "--time-limit=20",
        "--calm=2",
        "--hold=6",
        "--runs=2",
        "--member-arg=--unsafe-fault=stale-reads",
    ])?;
    ensure!(
        o.code == 1,
        "expected an invalid verdict (exit 1), got exit {}\n{}",
        o.code,
        o.stdout
    );
    ensure!(o.stdout.contains("Invalid"), "{}", o.stdout);
    // The report names a failing sub-history.
    let verdicts: Vec<serde_json::Value> = std::fs::read_dir(&o.out)?
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path().join("verdict.json")).ok())
        .filter_map(|s| serde_json::from_str(&s).ok())
        .collect();
    let invalid = verdicts.iter().find(|v| v["valid"] == "invalid");
    ensure!(
        invalid.is_some_and(|v| v["failing_subhistory"]
            .as_array()
            .is_some_and(|a| !a.is_empty())),
        "no invalid verdict with a failing sub-history in {}",
        o.out.display()
    );
    let _ = std::fs::remove_dir_all(&o.out);
    Ok(())
}

#[test]
fn the_same_run_without_the_planted_bug_is_valid() -> Result<()> {
    let o = common::jepsen(&[
        "--workload=register",
        "--nemesis=partition-leader",
        "--time-limit=15",
        "--calm=2",
        "--hold=6",
    ])?;
    ensure!(o.code == 0, "exit {}\n{}", o.code, o.stdout);
    let _ = std::fs::remove_dir_all(&o.out);
    Ok(())
}
