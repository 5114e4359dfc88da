//! Shared by the harness's end-to-end tests: runs the real `keel-jepsen` binary against real
//! member processes, one run at a time.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;

use anyhow::{bail, Context, Result};

/// Clusters of real processes on two cores: one run at a time, whatever the test threads.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// The keel binary built alongside the tests.
pub fn keel_bin() -> Result<PathBuf> {
    if let Ok(p) = std::env::var("KEEL_BIN") {
        return Ok(PathBuf::from(p));
    }
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_keel-jepsen"))
        .parent()
        .context("binary has no directory")?
        .join("keel");
    if !bin.exists() {
        bail!("{} not found: build the workspace first", bin.display());
    }
    Ok(bin)
}

/// What one `keel-jepsen run` ended with.
pub struct Outcome {
    pub code: i32,
    pub stdout: String,
    pub out: PathBuf,
}

/// Runs `keel-jepsen run` with `args` (plus the keel binary and a fresh report directory).
pub fn jepsen(args: &[&str]) -> Result<Outcome> {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let out = std::env::temp_dir().join(format!(
        "keel-jepsen-test-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_nanos()
    ));
    let keel = keel_bin()?;
    let result = Command::new(env!("CARGO_BIN_EXE_keel-jepsen"))
        .arg("run")
        .args(args)
        .arg(format!("--keel-bin={}", keel.display()))
        .arg(format!("--out={}", out.display()))
        .output()
        .context("running keel-jepsen")?;
    let stdout = String::from_utf8_lossy(&result.stdout).into_owned();
    eprintln!("{stdout}{}", String::from_utf8_lossy(&result.stderr));
    Ok(Outcome {
        code: result.status.code().unwrap_or(-1),
        stdout,
        out,
    })
}
