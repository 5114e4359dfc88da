//! Helpers for end-to-end tests of control loops: a running `keel sim-nodes` (nodes that run
//! the pods bound to them as a kubelet would report it), waiting for a master to serve the
//! API, and polling until a condition holds.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use k8s_openapi::api::core::v1::Namespace;
use keel_client::{Api, Client};
use keel_types::k8s_openapi;

use crate::cluster::keel_bin;
use crate::Cluster;

/// A running `keel sim-nodes`, killed if the test ends before stopping it.
pub struct Sim {
    child: Option<Child>,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

/// The flags that point `keel sim-nodes` (or any command taking the masters' flags) at every
/// master of `cluster`: their HTTPS ports, the cluster CA, the admin token.
pub fn sim_masters(cluster: &Cluster) -> anyhow::Result<Vec<String>> {
    let servers: Vec<String> = cluster.members.iter().map(|m| m.rest_url()).collect();
    Ok(vec![
        format!("--server={}", servers.join(",")),
        format!("--certificate-authority={}", cluster.ca_file()?.display()),
        format!("--token={}", cluster.admin_token()?),
    ])
}

impl Sim {
    /// Starts `keel sim-nodes` with `flags` against every master of `cluster`.
    pub fn start(cluster: &Cluster, flags: &[&str]) -> anyhow::Result<Sim> {
        let dir = tempfile::tempdir()?;
        let log = dir.path().join("sim.log");
        let out = std::fs::File::create(&log)?;
        let child = Command::new(keel_bin()?)
            .arg("sim-nodes")
            .args(flags)
            .args(sim_masters(cluster)?)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .context("spawning keel sim-nodes")?;
        Ok(Sim {
            child: Some(child),
            log,
            _dir: dir,
        })
    }

    /// What the process has printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends SIGTERM and waits for the process to exit; returns whether it exited cleanly.
    pub async fn terminate(&mut self) -> anyhow::Result<bool> {
        let mut child = self.child.take().context("already stopped")?;
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()?;
        anyhow::ensure!(status.success(), "kill -TERM failed");
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status.success());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                bail!("sim-nodes still running 15 s after SIGTERM");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Waits until the master `client` reaches serves the API (its system namespaces exist).
pub async fn ready(client: &Client) -> anyhow::Result<()> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let deadline = Instant::now() + Duration::from_secs(30);
    while namespaces.get("kube-system").await.is_err() {
        anyhow::ensure!(Instant::now() < deadline, "no kube-system namespace");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// Polls `check` until it yields a value, or fails after `timeout` saying what was awaited.
pub async fn until_some<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return Ok(value);
        }
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls `check` every 100 ms until it returns true; fails after `timeout` naming `what`.
pub async fn until<F, Fut>(what: &str, timeout: Duration, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !check().await {
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting until {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}
