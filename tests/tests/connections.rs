//! The REST endpoint against connections that misbehave and a process out of file
//! descriptors: a handshake that never comes is cut off, and when accepts fail for want of
//! descriptors the server pauses between attempts, logs a line now and then rather than per
//! failure, does not spin, and serves again once descriptors are free.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use keel_tests::rest::Rest;
use keel_tests::{Cluster, Flavor};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

const FAILING_ACCEPTS: &str = "accepting API connections fails";

fn open_files(pid: u32) -> Result<usize> {
    Ok(std::fs::read_dir(format!("/proc/{pid}/fd"))?.count())
}

/// The process's user and system CPU time so far.
fn cpu_time(pid: u32) -> Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces) in parentheses.
    let after = stat.rsplit_once(')').context("stat")?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
    Ok(Duration::from_millis(ticks * 10))
}

fn set_soft_open_file_limit(pid: u32, soft: u64) -> Result<()> {
    let hard = Command::new("prlimit")
        .args([
            "--pid",
            &pid.to_string(),
            "--nofile",
            "--raw",
            "--noheadings",
        ])
        .args(["--output", "HARD"])
        .output()?;
    let hard = String::from_utf8_lossy(&hard.stdout).trim().to_string();
    let status = Command::new("prlimit")
        .args(["--pid", &pid.to_string()])
        .arg(format!("--nofile={soft}:{hard}"))
        .status()?;
    ensure!(status.success(), "prlimit failed");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_never_finishes_its_handshake_is_closed() -> Result<()> {
    let cluster = Cluster::start(Flavor::Keel, 1).await?;
    cluster.admin_token()?;
    let address = ("127.0.0.1", cluster.members[0].rest_port);
    let mut stalled = TcpStream::connect(address).await?;
    let opened = Instant::now();
    let mut buf = [0u8; 64];
    // The server's handshake timeout is 10 s; it closes without a byte sent.
    let read = tokio::time::timeout(Duration::from_secs(30), stalled.read(&mut buf)).await;
    ensure!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "the stalled connection was still open after {:?}: {read:?}",
        opened.elapsed()
    );
    ensure!(
        opened.elapsed() >= Duration::from_secs(5),
        "closed too soon"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_out_of_descriptors_backs_off_logs_rarely_and_recovers() -> Result<()> {
    let cluster = Cluster::start(Flavor::Keel, 1).await?;
    let rest = Rest::new(&cluster, 0, &cluster.admin_token()?)?;
    let (code, _) = rest.connect().await?.call("GET", "/readyz", None).await?;
    ensure!(code == 200, "not ready: {code}");
    let pid = cluster.pid(0).context("no keel process")?;
    let address = ("127.0.0.1", cluster.members[0].rest_port);
    let logged_before = cluster.log_of(0).matches(FAILING_ACCEPTS).count();

    let in_use = open_files(pid)? as u64;
    set_soft_open_file_limit(pid, in_use + 20)?;
    // More connections than descriptors left: the rest wait in the backlog, and every accept
    // fails with EMFILE.
    let mut flood = Vec::new();
    for _ in 0..100 {
        flood.push(TcpStream::connect(address).await?);
    }
    let cpu_before = cpu_time(pid)?;
    let window = Duration::from_secs(8);
    tokio::time::sleep(window).await;
    let cpu = cpu_time(pid)? - cpu_before;
    let at_limit = open_files(pid)? as u64;
    let logged = cluster.log_of(0).matches(FAILING_ACCEPTS).count() - logged_before;

    drop(flood);
    let deadline = Instant::now() + Duration::from_secs(30);
    let recovered = loop {
        let attempt = async { rest.connect().await?.call("GET", "/readyz", None).await };
        match tokio::time::timeout(Duration::from_secs(5), attempt).await {
            Ok(Ok((200, _))) => break true,
            _ if Instant::now() > deadline => break false,
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    };
    set_soft_open_file_limit(pid, 20_000).ok();
    eprintln!("failing-accept lines: {logged}; CPU over {window:?}: {cpu:?}");
    ensure!(
        at_limit >= in_use + 20,
        "the flood never reached the limit: {at_limit} open"
    );
    ensure!(logged >= 1, "the failing accepts were never logged");
    // One line when failures start, then at most one per 5 s.
    ensure!(logged <= 3, "{logged} lines in {window:?}");
    ensure!(
        cpu < window / 3,
        "the server used {cpu:?} of CPU in {window:?}"
    );
    ensure!(
        recovered,
        "the server did not serve again once descriptors were free"
    );
    Ok(())
}
