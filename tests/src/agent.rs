//! A real node for end-to-end tests: a private containerd (keel_agent's test node: own
//! config, root, state dir, socket and CNI bridge, local images imported) with a `keel agent`
//! process in front of it, which can be killed and started again over the same containerd.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use keel_agent::testing::TestNode;
use keel_agent::RuntimeClient;

use crate::cluster::keel_bin;
use crate::Cluster;

/// A node: containerd and the agent in front of it.
pub struct AgentNode {
    pub name: String,
    agent: Option<Child>,
    log: PathBuf,
    extra: Vec<String>,
    /// The agent server's port (logs, exec, port-forward), free when the node started.
    pub port: u16,
    pki: PathBuf,
    starts: usize,
    // Dropped last: the agent's containerd and its directory.
    pub containerd: TestNode,
}

impl AgentNode {
    /// Starts containerd and an agent named `name` against `cluster`; `None` (having said
    /// why) where this machine cannot run containers. `index` picks the node's subnet.
    pub async fn start(
        cluster: &Cluster,
        name: &str,
        index: u32,
        extra: &[&str],
    ) -> anyhow::Result<Option<AgentNode>> {
        let Some(containerd) = TestNode::start(index).await else {
            return Ok(None);
        };
        let log = containerd.dir.path().join("agent.log");
        // The agent's credentials (its serving certificate and a kubeconfig naming it
        // system:node:<name>), issued on the master as an operator would, once the master
        // serves the API.
        cluster.admin_token()?;
        let pki = containerd.dir.path().join("agent-pki");
        let issued = Command::new(keel_bin()?)
            .arg("node-certificate")
            .arg("--data-dir")
            .arg(&cluster.members[0].data_dir)
            .args(["--node-name", name, "--address", "127.0.0.1", "--out-dir"])
            .arg(&pki)
            .status()?;
        anyhow::ensure!(issued.success(), "keel node-certificate failed");
        let port = crate::cluster::free_ports(1)?
            .first()
            .copied()
            .context("no free port")?;
        let mut node = AgentNode {
            name: name.to_owned(),
            agent: None,
            log,
            extra: extra.iter().map(|s| (*s).to_owned()).collect(),
            port,
            pki,
            starts: 0,
            containerd,
        };
        node.start_agent()?;
        Ok(Some(node))
    }

    /// The runtime the agent drives.
    pub fn runtime(&self) -> &RuntimeClient {
        &self.containerd.client
    }

    /// The subnet pods on this node get addresses from.
    pub fn subnet(&self) -> &str {
        &self.containerd.network.subnet
    }

    /// Starts the agent (again).
    pub fn start_agent(&mut self) -> anyhow::Result<()> {
        anyhow::ensure!(self.agent.is_none(), "the agent already runs");
        self.starts += 1;
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let root = self.containerd.dir.path().join("agent-root");
        let logs = self.containerd.dir.path().join("pod-logs");
        let child = Command::new(keel_bin()?)
            .arg("agent")
            .arg("--kubeconfig")
            .arg(self.pki.join("kubelet.kubeconfig"))
            .args(["--hostname-override", &self.name])
            .args([
                "--container-runtime-endpoint",
                &self
                    .containerd
                    .containerd
                    .as_ref()
                    .context("containerd gone")?
                    .endpoint(),
            ])
            .arg("--root-dir")
            .arg(root)
            .arg("--pod-logs-dir")
            .arg(logs)
            .args(["--node-ip", "127.0.0.1", "--address", "127.0.0.1"])
            .args(["--port", &self.port.to_string()])
            .arg("--tls-cert-file")
            .arg(self.pki.join("kubelet.crt"))
            .arg("--tls-private-key-file")
            .arg(self.pki.join("kubelet.key"))
            .arg("--client-ca-file")
            .arg(self.pki.join("ca.crt"))
            .args(&self.extra)
            .env("KEEL_LOG", "info,keel_agent=debug")
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .context("spawning keel agent")?;
        self.agent = Some(child);
        Ok(())
    }

    /// Kills the agent with SIGKILL, leaving containerd and its containers running.
    pub fn kill_agent(&mut self) -> anyhow::Result<()> {
        let mut child = self.agent.take().context("the agent is not running")?;
        child.kill()?;
        child.wait()?;
        Ok(())
    }

    /// Stops the agent with SIGTERM; returns whether it exited cleanly.
    pub async fn stop_agent(&mut self) -> anyhow::Result<bool> {
        let mut child = self.agent.take().context("the agent is not running")?;
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()?;
        anyhow::ensure!(status.success(), "kill -TERM failed");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status.success());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                bail!("the agent still runs 30 s after SIGTERM");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The node's host reboots: the agent is killed with everything containerd ran, and
    /// what a host keeps only in memory is lost ([`TestNode::reboot`]); containerd then
    /// starts on what its disk kept, and the agent after it, as at boot.
    pub async fn reboot(&mut self) -> anyhow::Result<()> {
        self.kill_agent()?;
        self.containerd.reboot().await?;
        self.start_agent()
    }

    /// What the agent printed so far (over all its starts).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for AgentNode {
    fn drop(&mut self) {
        if let Some(mut child) = self.agent.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // The agent proxied Services in the host's own network namespace: its rules go with
        // it, so no later test meets them (an agent stopping leaves them, as kube-proxy does).
        let _ = Command::new("nft")
            .args(["delete", "table", "ip", keel_agent::proxy::rules::TABLE])
            .stderr(std::process::Stdio::null())
            .status();
    }
}
