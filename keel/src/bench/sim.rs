//! The simulated nodes a benchmark runs on: a `keel sim-nodes` child process registering
//! nodes under a prefix of the benchmark's own, against the masters the benchmark uses.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use keel_client::k8s_openapi::api::core::v1::Node;
use keel_client::{Api, ListParams};

use crate::connect::MasterArgs;

/// A `keel sim-nodes` child holding the benchmark's nodes; killed when dropped.
pub struct Sim {
    child: tokio::process::Child,
    prefix: String,
}

impl Sim {
    /// Starts `count` nodes named `<prefix><index>` (in three zones) with `flags` (capacity).
    pub fn start(
        masters: &MasterArgs,
        count: usize,
        prefix: &str,
        flags: &[&str],
    ) -> anyhow::Result<Sim> {
        let exe: PathBuf = std::env::current_exe().context("finding the keel binary")?;
        let mut cmd = tokio::process::Command::new(exe);
        cmd.arg("sim-nodes")
            .arg(format!("--count={count}"))
            .arg(format!("--name-prefix={prefix}"))
            .args(flags)
            .arg("--zones=3")
            .arg("--delete-on-exit")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        cmd.args(masters.forwarded());
        Ok(Sim {
            child: cmd.spawn().context("starting keel sim-nodes")?,
            prefix: prefix.to_string(),
        })
    }

    /// Waits (up to ten minutes) until `count` of this child's nodes are registered.
    pub async fn wait_registered(&self, nodes: &Api<Node>, count: usize) -> anyhow::Result<()> {
        let started = Instant::now();
        loop {
            let n = count_nodes(nodes, &self.prefix).await?;
            if n >= count {
                return Ok(());
            }
            if started.elapsed() > Duration::from_secs(600) {
                bail!("only {n} of {count} nodes registered after 10 minutes");
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Stops the child with SIGTERM so it deletes its nodes, waiting up to `grace`.
    pub async fn stop(mut self, grace: Duration) {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
        if tokio::time::timeout(grace, self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

async fn count_nodes(nodes: &Api<Node>, prefix: &str) -> anyhow::Result<usize> {
    let mut n = 0;
    let mut token = String::new();
    loop {
        let page = nodes
            .list(&ListParams {
                limit: 1000,
                continue_token: token,
                ..Default::default()
            })
            .await?;
        n += page
            .items
            .iter()
            .filter(|node| {
                node.metadata
                    .name
                    .as_deref()
                    .is_some_and(|name| name.starts_with(prefix))
            })
            .count();
        if page.metadata.continue_token.is_empty() {
            return Ok(n);
        }
        token = page.metadata.continue_token;
    }
}
