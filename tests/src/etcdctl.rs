//! Running the real etcdctl (API v3) against a set of endpoints.

use std::io::Write;
use std::process::{Command, Stdio};

use anyhow::{Context, Result};

/// What one etcdctl invocation printed and how it exited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `etcdctl --endpoints=... <args>` with optional stdin.
pub fn etcdctl(endpoints: &[String], args: &[&str], stdin: Option<&str>) -> Result<Output> {
    let mut cmd = Command::new("etcdctl");
    cmd.env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", endpoints.join(",")))
        .arg("--command-timeout=10s")
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .context("spawning etcdctl (install etcd-client)")?;
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .context("etcdctl stdin")?
            .write_all(input.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    Ok(Output {
        status: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// A long-running etcdctl (e.g. `watch`) whose output is collected when it is finished. Killed if
/// dropped unfinished.
pub struct Running {
    child: std::process::Child,
    stdout: Option<std::thread::JoinHandle<Vec<u8>>>,
    stderr: Option<std::thread::JoinHandle<Vec<u8>>>,
    done: bool,
}

/// Starts `etcdctl --endpoints=... <args>` in the background; pipes are drained by threads so a
/// chatty command never blocks on a full pipe.
pub fn spawn(endpoints: &[String], args: &[&str]) -> Result<Running> {
    let mut child = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", endpoints.join(",")))
        .arg("--command-timeout=10s")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("spawning etcdctl (install etcd-client)")?;
    fn drain(mut pipe: impl std::io::Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = pipe.read_to_end(&mut buf);
            buf
        })
    }
    let stdout = drain(child.stdout.take().context("etcdctl stdout")?);
    let stderr = drain(child.stderr.take().context("etcdctl stderr")?);
    Ok(Running {
        child,
        stdout: Some(stdout),
        stderr: Some(stderr),
        done: false,
    })
}

impl Running {
    /// Waits up to `limit` for the command to exit on its own, then kills it. Returns what it
    /// printed and whether it had to be killed (its status is then -1).
    pub fn finish_within(mut self, limit: std::time::Duration) -> Result<(Output, bool)> {
        let deadline = std::time::Instant::now() + limit;
        let mut killed = false;
        let status = loop {
            if let Some(status) = self.child.try_wait()? {
                break status;
            }
            if std::time::Instant::now() >= deadline {
                self.child.kill()?;
                killed = true;
                break self.child.wait()?;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        self.done = true;
        let join = |h: Option<std::thread::JoinHandle<Vec<u8>>>| {
            h.context("output already taken")?
                .join()
                .map_err(|_| anyhow::anyhow!("etcdctl pipe reader panicked"))
        };
        let stdout = join(self.stdout.take())?;
        let stderr = join(self.stderr.take())?;
        Ok((
            Output {
                status: if killed {
                    -1
                } else {
                    status.code().unwrap_or(-1)
                },
                stdout: String::from_utf8_lossy(&stdout).into_owned(),
                stderr: String::from_utf8_lossy(&stderr).into_owned(),
            },
            killed,
        ))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
