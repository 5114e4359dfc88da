//! The command line's contract: exit 2 when a run cannot happen, with the reason on the output.

use std::process::Command;

use anyhow::{ensure, Result};

#[test]
fn a_member_binary_that_does_not_exist_means_exit_2_with_the_reason() -> Result<()> {
    let out = std::env::temp_dir().join(format!("keel-jepsen-cli-{}", std::process::id()));
    let o = Command::new(env!("CARGO_BIN_EXE_keel-jepsen"))
        .args([
            "run",
            "--workload=register",
            "--nemesis=kill",
            "--time-limit=1",
            "--loopback",
        ])
        .arg("--keel-bin=/nonexistent/keel")
        .arg(format!("--out={}", out.display()))
        .output()?;
    let stdout = String::from_utf8_lossy(&o.stdout);
    ensure!(
        o.status.code() == Some(2),
        "exit {:?}: {stdout}",
        o.status.code()
    );
    ensure!(stdout.contains("cluster did not start"), "{stdout}");
    // The failed run still has a verdict on disk, and the index counts it.
    let index = std::fs::read_to_string(out.join("index.md"))?;
    ensure!(index.contains("| Unknown |"), "{index}");
    let _ = std::fs::remove_dir_all(&out);
    Ok(())
}

#[test]
fn an_unknown_nemesis_is_refused_with_exit_2() -> Result<()> {
    let o = Command::new(env!("CARGO_BIN_EXE_keel-jepsen"))
        .args([
            "run",
            "--workload=register",
            "--nemesis=kill,meteor",
            "--time-limit=1",
        ])
        .output()?;
    ensure!(o.status.code() == Some(2), "exit {:?}", o.status.code());
    ensure!(String::from_utf8_lossy(&o.stderr).contains("unknown nemesis \"meteor\""));
    Ok(())
}
