//! The cluster under test: N member processes of keel (`keel server --store-only`) or etcd, each
//! in its own network namespace (or on loopback where namespaces are unavailable), with data
//! dirs and logs kept in the run's report directory.

pub mod net;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use keel_proto::etcdserverpb::{PutRequest, RangeRequest, StatusRequest};

use crate::client::{timed, Client};
use crate::Error;
use net::Net;

/// The library that shifts a member's wall clock (Debian package faketime).
pub const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

/// Which server is under test.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    Keel,
    Etcd,
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Target::Keel => "keel",
            Target::Etcd => "etcd",
        })
    }
}

/// How to build the cluster.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    pub target: Target,
    pub nodes: usize,
    pub keel_bin: PathBuf,
    /// More flags for every member.
    pub member_args: Vec<String>,
    /// The run's directory: data/ and logs/ go below it.
    pub dir: PathBuf,
    /// Use network namespaces (true) or loopback.
    pub namespaces: bool,
}

/// One member: fixed identity, current process and fault state.
#[derive(Debug)]
pub struct Member {
    pub name: String,
    pub ip: String,
    pub client_port: u16,
    pub peer_port: u16,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    child: Option<Child>,
    /// FAKETIME offset the member runs with, e.g. "+30s".
    pub skew: Option<String>,
    pub paused: bool,
    /// Removed from the cluster by the membership nemesis (and not re-added).
    pub removed: bool,
    /// Joins an existing cluster on its next start (after being re-added).
    pub join_existing: bool,
    /// Refused to start after a disk fault; left down for the rest of the run.
    pub broken: bool,
}

impl Member {
    pub fn client_url(&self) -> String {
        format!("http://{}:{}", self.ip, self.client_port)
    }
    pub fn peer_url(&self) -> String {
        format!("http://{}:{}", self.ip, self.peer_port)
    }
}

/// A running cluster. Members are killed and the network removed when it is dropped.
pub struct Cluster {
    pub cfg: ClusterConfig,
    pub net: Option<Net>,
    pub members: Vec<Member>,
    /// One client per member, pinned to it.
    pub clients: Vec<Client>,
}

impl Cluster {
    /// Builds the network, starts every member and waits until each serves writes.
    pub async fn start(cfg: ClusterConfig) -> Result<Cluster, Error> {
        let net = if cfg.namespaces {
            Some(Net::create(cfg.nodes)?)
        } else {
            None
        };
        let mut members = Vec::new();
        let ports = match &net {
            Some(_) => Vec::new(),
            None => crate::ports::free_ports(2 * cfg.nodes)
                .map_err(|e| Error::NotReady(format!("choosing loopback ports: {e}")))?,
        };
        for i in 0..cfg.nodes {
            let (ip, client_port, peer_port) = match &net {
                Some(n) => (n.ip(i), 2379, 2380),
                None => ("127.0.0.1".to_string(), ports[2 * i], ports[2 * i + 1]),
            };
            members.push(Member {
                name: format!("m{i}"),
                ip,
                client_port,
                peer_port,
                data_dir: cfg.dir.join("data").join(format!("m{i}")),
                log: cfg.dir.join("logs").join(format!("m{i}.log")),
                child: None,
                skew: None,
                paused: false,
                removed: false,
                join_existing: false,
                broken: false,
            });
        }
        let logs = cfg.dir.join("logs");
        std::fs::create_dir_all(&logs).map_err(|e| Error::io(&logs, e))?;
        let clients = members
            .iter()
            .map(|m| Client::new(&m.client_url()))
            .collect::<Result<_, _>>()?;
        let mut cluster = Cluster {
            cfg,
            net,
            members,
            clients,
        };
        for i in 0..cluster.members.len() {
            cluster.spawn(i)?;
        }
        cluster.wait_ready(Duration::from_secs(30)).await?;
        Ok(cluster)
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    fn initial_cluster(&self) -> String {
        self.members
            .iter()
            .filter(|m| !m.removed)
            .map(|m| format!("{}={}", m.name, m.peer_url()))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Starts member `i`'s process (it must not be running).
    pub fn spawn(&mut self, i: usize) -> Result<(), Error> {
        let initial_cluster = self.initial_cluster();
        let m = &self.members[i];
        let mut args: Vec<String> = match self.cfg.target {
            Target::Keel => vec![
                self.cfg.keel_bin.display().to_string(),
                "server".into(),
                "--store-only".into(),
            ],
            Target::Etcd => vec!["etcd".into()],
        };
        args.extend([
            format!("--name={}", m.name),
            format!("--data-dir={}", m.data_dir.display()),
            format!("--listen-client-urls={}", m.client_url()),
            format!("--advertise-client-urls={}", m.client_url()),
            format!("--listen-peer-urls={}", m.peer_url()),
            format!("--initial-advertise-peer-urls={}", m.peer_url()),
            format!("--initial-cluster={initial_cluster}"),
            format!(
                "--initial-cluster-state={}",
                if m.join_existing { "existing" } else { "new" }
            ),
            "--initial-cluster-token=keel-jepsen".into(),
        ]);
        args.extend(self.cfg.member_args.iter().cloned());
        let mut cmd = match &self.net {
            Some(net) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", &net.namespace(i)]);
                c.args(&args);
                c
            }
            None => {
                let mut c = Command::new(&args[0]);
                c.args(&args[1..]);
                c
            }
        };
        if let Some(skew) = &m.skew {
            cmd.env("LD_PRELOAD", LIBFAKETIME)
                .env("FAKETIME", skew)
                .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
                .env("FAKETIME_DONT_RESET", "1");
        }
        let spawn_err = |e: std::io::Error| Error::Spawn {
            member: i,
            detail: e.to_string(),
        };
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&m.log)
            .map_err(|e| Error::io(&m.log, e))?;
        let log2 = log.try_clone().map_err(spawn_err)?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(spawn_err)?;
        let m = &mut self.members[i];
        m.child = Some(child);
        m.paused = false;
        Ok(())
    }

    pub fn is_running(&mut self, i: usize) -> bool {
        let m = &mut self.members[i];
        match m.child.as_mut().map(|c| c.try_wait()) {
            Some(Ok(None)) => true,
            Some(_) => {
                m.child = None;
                false
            }
            None => false,
        }
    }

    pub fn pid(&self, i: usize) -> Option<u32> {
        self.members[i].child.as_ref().map(Child::id)
    }

    /// SIGKILL: no chance to flush or say goodbye.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.members[i].paused = false;
    }

    /// Sends SIGSTOP or SIGCONT.
    pub fn signal(&mut self, i: usize, stop: bool) -> Result<(), Error> {
        let Some(pid) = self.pid(i) else {
            return Ok(());
        };
        net::sh(
            "kill",
            &[if stop { "-STOP" } else { "-CONT" }, &pid.to_string()],
        )?;
        self.members[i].paused = stop;
        Ok(())
    }

    /// Index of the member that reports itself leader, asking every running member.
    pub async fn leader(&mut self) -> Option<usize> {
        for i in 0..self.len() {
            if !self.is_running(i) || self.members[i].paused || self.members[i].removed {
                continue;
            }
            let mut c = self.clients[i].maintenance.clone();
            if let Ok(Ok(s)) =
                tokio::time::timeout(Duration::from_secs(1), c.status(StatusRequest {})).await
            {
                let s = s.into_inner();
                let own = s.header.map(|h| h.member_id).unwrap_or(0);
                if s.leader != 0 && s.leader == own {
                    return Some(i);
                }
            }
        }
        None
    }

    /// Member ids as the cluster knows them, by our member index.
    pub async fn member_id(&mut self, i: usize) -> Option<u64> {
        let mut c = self.clients[i].maintenance.clone();
        let s = timed(c.status(StatusRequest {})).await.ok()?;
        s.header.map(|h| h.member_id)
    }

    /// Waits until a write and a linearizable read through every running member succeed.
    pub async fn wait_ready(&mut self, timeout: Duration) -> Result<(), Error> {
        let deadline = Instant::now() + timeout;
        for i in 0..self.len() {
            if !self.is_running(i) || self.members[i].removed || self.members[i].broken {
                continue;
            }
            loop {
                let mut kv = self.clients[i].kv.clone();
                let put = timed(kv.put(PutRequest {
                    key: b"__ready".to_vec(),
                    value: b"1".to_vec(),
                    ..Default::default()
                }))
                .await;
                let read = match put {
                    Ok(_) => timed(kv.range(RangeRequest {
                        key: b"__ready".to_vec(),
                        ..Default::default()
                    }))
                    .await
                    .map(|_| ()),
                    Err(e) => Err(e),
                };
                match read {
                    Ok(()) => break,
                    Err(e) if Instant::now() > deadline => {
                        return Err(Error::NotReady(format!(
                            "member {i} ({}) not writable within {timeout:?}: {e}; log tail:\n{}",
                            self.members[i].client_url(),
                            tail(&self.members[i].log, 2000)
                        )));
                    }
                    Err(_) => {
                        if !self.is_running(i) {
                            return Err(Error::NotReady(format!(
                                "member {i} exited; log tail:\n{}",
                                tail(&self.members[i].log, 2000)
                            )));
                        }
                        tokio::time::sleep(Duration::from_millis(200)).await
                    }
                }
            }
        }
        Ok(())
    }

    /// Kills every member (resuming paused ones first so they die promptly).
    pub fn stop_all(&mut self) {
        for i in 0..self.len() {
            if self.members[i].paused {
                let _ = self.signal(i, false);
            }
            self.kill(i);
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop_all();
    }
}

/// The last `n` bytes of a file, for error messages.
pub fn tail(path: &Path, n: usize) -> String {
    let s = std::fs::read(path).unwrap_or_default();
    String::from_utf8_lossy(&s[s.len().saturating_sub(n)..]).into_owned()
}
