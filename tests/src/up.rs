//! A cluster brought up by `keel up` for a test, with a name and networks of its own so that
//! it meets no other cluster on the host, taken down by `keel down` when dropped (so a failed
//! test leaves nothing behind either); and what a host shows of such a cluster, to check that
//! `keel down` removed all of it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use anyhow::{ensure, Context as _};

use crate::cluster::keel_bin;
use crate::kubectl::Kubectl;

/// A running `keel up` cluster.
pub struct UpCluster {
    pub name: String,
    /// The directory clusters live in (the cluster's own is `<dir>/<name>`).
    pub parent: tempfile::TempDir,
    /// The node network's first three octets (`10.251.0`): the host is `.1`, masters from
    /// `.2`, agents from `.11`.
    pub node_prefix: String,
    down: bool,
}

impl UpCluster {
    /// Runs `keel up` with `masters` and `agents`; `third_octet` picks the networks (node
    /// network `10.<third_octet>.0.0/24`, pods `10.<third_octet + 1>.0.0/16`).
    pub fn up(name: &str, masters: usize, agents: usize, octet: u8) -> anyhow::Result<Self> {
        let parent = tempfile::Builder::new().prefix("keel-up-").tempdir()?;
        let node_network = format!("10.{octet}.0.0/24");
        let cluster_cidr = format!("10.{}.0.0/16", octet + 1);
        let cluster = UpCluster {
            name: name.to_owned(),
            node_prefix: format!("10.{octet}.0"),
            parent,
            down: false,
        };
        let out = Command::new(keel_bin()?)
            .arg("up")
            .args(["--name", name])
            .arg("--dir")
            .arg(cluster.parent.path())
            .args(["--masters", &masters.to_string()])
            .args(["--agents", &agents.to_string()])
            .args(["--node-network", &node_network])
            .args(["--cluster-cidr", &cluster_cidr])
            .stdin(Stdio::null())
            .output()
            .context("running keel up")?;
        ensure!(
            out.status.success(),
            "keel up failed: {}\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let said = String::from_utf8_lossy(&out.stdout);
        ensure!(
            said.contains(&format!(
                "export KUBECONFIG={}",
                cluster.kubeconfig().display()
            )),
            "keel up did not say how to use the cluster: {said}"
        );
        Ok(cluster)
    }

    /// The cluster's own directory.
    pub fn dir(&self) -> PathBuf {
        self.parent.path().join(&self.name)
    }

    /// The kubeconfig `keel up` wrote.
    pub fn kubeconfig(&self) -> PathBuf {
        self.dir().join("kubeconfig")
    }

    pub fn kubectl(&self) -> anyhow::Result<Kubectl> {
        Kubectl::for_kubeconfig(&self.kubeconfig())
    }

    /// The address of agent `n` (from 1) on the node network.
    pub fn agent_ip(&self, n: usize) -> String {
        format!("{}.{}", self.node_prefix, 10 + n)
    }

    /// A log of one of the cluster's processes (`master-1`, `agent-2`), for failures.
    pub fn log(&self, process: &str) -> String {
        std::fs::read_to_string(self.dir().join(format!("{process}.log"))).unwrap_or_default()
    }

    /// Runs `keel down`.
    pub fn down(&mut self) -> anyhow::Result<Output> {
        self.down = true;
        Command::new(keel_bin()?)
            .arg("down")
            .args(["--name", &self.name])
            .arg("--dir")
            .arg(self.parent.path())
            .stdin(Stdio::null())
            .output()
            .context("running keel down")
    }
}

impl Drop for UpCluster {
    fn drop(&mut self) {
        if !self.down {
            let _ = self.down();
        }
    }
}

/// What the host shows that a cluster could leave behind: processes naming a directory,
/// named network namespaces, interfaces, mounts under a directory, routes, and nftables
/// tables of the host's own namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostState {
    pub processes: BTreeSet<String>,
    pub netns: BTreeSet<String>,
    pub links: BTreeSet<String>,
    pub mounts: BTreeSet<String>,
    pub routes: BTreeSet<String>,
    pub nft_tables: BTreeSet<String>,
}

impl HostState {
    /// The host now, with processes and mounts counted only under `dir`.
    pub fn now(dir: &Path) -> Self {
        let names = |path: &str| -> BTreeSet<String> {
            std::fs::read_dir(path)
                .map(|entries| {
                    entries
                        .filter_map(|e| e.ok()?.file_name().into_string().ok())
                        .collect()
                })
                .unwrap_or_default()
        };
        let lines = |program: &str, args: &[&str]| -> BTreeSet<String> {
            Command::new(program)
                .args(args)
                .output()
                .map(|o| {
                    String::from_utf8_lossy(&o.stdout)
                        .lines()
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default()
        };
        let dir_text = dir.display().to_string();
        // Every live process: pid, parent and command line.
        let table: Vec<(String, String, String)> = names("/proc")
            .into_iter()
            .filter(|pid| pid.bytes().all(|b| b.is_ascii_digit()))
            .filter_map(|pid| {
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
                let ppid = stat[stat.rfind(')')? + 1..]
                    .split_whitespace()
                    .nth(1)?
                    .to_owned();
                let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
                let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
                Some((pid, ppid, text))
            })
            .collect();
        // Those naming the directory, and everything below them (a shim's containers name
        // nothing of ours).
        let mut ours: BTreeSet<String> = table
            .iter()
            .filter(|(_, _, text)| !text.is_empty() && text.contains(&dir_text))
            .map(|(pid, _, _)| pid.clone())
            .collect();
        loop {
            let below: Vec<String> = table
                .iter()
                .filter(|(pid, ppid, _)| ours.contains(ppid) && !ours.contains(pid))
                .map(|(pid, _, _)| pid.clone())
                .collect();
            if below.is_empty() {
                break;
            }
            ours.extend(below);
        }
        let processes = table
            .iter()
            .filter(|(pid, _, _)| ours.contains(pid))
            .map(|(pid, _, text)| format!("{pid}: {text}"))
            .collect();
        let mounts = std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter_map(|line| line.split(' ').nth(4))
            .filter(|point| point.starts_with(&dir_text))
            .map(str::to_owned)
            .collect();
        HostState {
            processes,
            netns: names("/run/netns"),
            links: names("/sys/class/net"),
            mounts,
            routes: lines("ip", &["route", "show"]),
            nft_tables: lines("nft", &["list", "tables"]),
        }
    }
}
