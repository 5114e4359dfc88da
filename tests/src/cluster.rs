//! A cluster of real member processes (keel or etcd) on 127.0.0.1 with ports picked at start.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use keel_proto::etcdserverpb::cluster_client::ClusterClient;
use keel_proto::etcdserverpb::kv_client::KvClient;
use keel_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use keel_proto::etcdserverpb::{
    compare, request_op, Compare, HashKvRequest, MemberAddRequest, MemberRemoveRequest, PutRequest,
    RangeRequest, RequestOp, StatusRequest, TxnRequest,
};
use tonic::transport::Channel;

/// Which server the cluster runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// keel as a control plane: the store, and the API server on the same port.
    Keel,
    /// keel as an etcd stand-in (`--store-only`): the keyspace holds only what clients write.
    KeelStore,
    Etcd,
}

/// One member's fixed identity: name, ports and data dir survive restarts.
#[derive(Debug)]
pub struct MemberSpec {
    pub name: String,
    pub client_port: u16,
    pub peer_port: u16,
    /// The Kubernetes REST API's HTTPS port (keel control planes only).
    pub rest_port: u16,
    /// The cluster DNS this member serves (UDP and TCP).
    pub dns_port: u16,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    /// Added to a running cluster (starts with `--initial-cluster-state=existing`).
    pub joined: bool,
    /// Removed from the cluster: no longer named in `--initial-cluster`.
    pub removed: bool,
    /// The client port requires TLS with client certificates (a keel control plane without
    /// `--store-insecure`): the member makes its store CA and a client certificate on its first
    /// start, in its data dir.
    pub tls: bool,
}

impl MemberSpec {
    pub fn client_url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.client_port)
    }

    /// The HTTPS port's URL (REST, and gRPC beside it), for a keel control plane.
    pub fn rest_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.rest_port)
    }

    /// The store CA, client certificate and key for this member's client port, as the member
    /// writes them (see `keel server --store-insecure`).
    pub fn store_credentials(&self) -> [PathBuf; 3] {
        let dir = self.data_dir.join("pki").join("store");
        ["ca.crt", "client.crt", "client.key"].map(|f| dir.join(f))
    }

    /// etcdctl's flags for this member's client port: none for a plain port.
    pub fn etcdctl_flags(&self) -> Vec<String> {
        if !self.tls {
            return Vec::new();
        }
        let [ca, cert, key] = self.store_credentials();
        vec![
            format!("--cacert={}", ca.display()),
            format!("--cert={}", cert.display()),
            format!("--key={}", key.display()),
        ]
    }

    pub fn peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.peer_port)
    }

    /// The admin kubeconfig the member writes once it serves the REST API.
    pub fn kubeconfig(&self) -> PathBuf {
        self.data_dir.join("admin.kubeconfig")
    }
}

/// A running (or partly stopped) cluster. Members are killed when it is dropped.
pub struct Cluster {
    pub flavor: Flavor,
    pub members: Vec<MemberSpec>,
    /// More flags for every member.
    extra_args: Vec<String>,
    procs: Vec<Option<Child>>,
    dir: tempfile::TempDir,
}

/// Loopback ports that were free a moment ago, outside the kernel's ephemeral range so no
/// outgoing connection takes one before its server binds it.
pub fn free_ports(n: usize) -> Result<Vec<u16>> {
    Ok(keel_jepsen::ports::free_ports(n)?)
}

/// The last `lines` lines of a log file (empty if it cannot be read).
fn tail(log: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Path of the keel binary built alongside the test executables.
pub fn keel_bin() -> Result<PathBuf> {
    if let Ok(p) = std::env::var("KEEL_BIN") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe()?;
    // target/<profile>/deps/<test> -> target/<profile>/keel
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .context("test binary has no parent dir")?;
    let bin = dir.join("keel");
    if !bin.exists() {
        bail!(
            "{} not found: build it first (cargo build --bins)",
            bin.display()
        );
    }
    Ok(bin)
}

impl Cluster {
    /// Starts `n` members and waits until they elect a leader and serve writes.
    pub async fn start(flavor: Flavor, n: usize) -> Result<Cluster> {
        Self::start_with(flavor, n, &[]).await
    }

    /// Starts `n` members with `extra_args` on every member's command line.
    pub async fn start_with(flavor: Flavor, n: usize, extra_args: &[String]) -> Result<Cluster> {
        Self::start_prepared(flavor, n, extra_args, |_, _| Ok(())).await
    }

    /// Starts `n` members after `prepare(i, data_dir)` has run for each (to restore a backup
    /// into it, say).
    pub async fn start_prepared(
        flavor: Flavor,
        n: usize,
        extra_args: &[String],
        mut prepare: impl FnMut(usize, &Path) -> Result<()>,
    ) -> Result<Cluster> {
        let dir = tempfile::tempdir()?;
        let ports = free_ports(4 * n)?;
        let tls = flavor == Flavor::Keel && !extra_args.iter().any(|a| a == "--store-insecure");
        let members: Vec<MemberSpec> = (0..n)
            .map(|i| MemberSpec {
                name: format!("m{i}"),
                client_port: ports[4 * i],
                peer_port: ports[4 * i + 1],
                rest_port: ports[4 * i + 2],
                dns_port: ports[4 * i + 3],
                data_dir: dir.path().join(format!("m{i}")),
                log: dir.path().join(format!("m{i}.log")),
                joined: false,
                removed: false,
                tls,
            })
            .collect();
        let mut cluster = Cluster {
            flavor,
            members,
            extra_args: extra_args.to_vec(),
            procs: (0..n).map(|_| None).collect(),
            dir,
        };
        for i in 0..n {
            prepare(i, &cluster.members[i].data_dir)?;
            cluster.spawn(i)?;
        }
        cluster.wait_writable(Duration::from_secs(30)).await?;
        Ok(cluster)
    }

    /// The cluster's admin token, from the kubeconfig a master writes once it serves the API
    /// and accepts the token. Waits (up to a minute) until every running master has written
    /// its own, so any of them accepts the token.
    pub fn admin_token(&self) -> Result<String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let tokens: Vec<Option<String>> = self
                .members
                .iter()
                .zip(&self.procs)
                .filter(|(_, p)| p.is_some())
                .map(|(m, _)| keel_client::Kubeconfig::read(m.kubeconfig()).ok()?.token)
                .collect();
            if let Some(Some(token)) = tokens.first() {
                if tokens.iter().all(Option::is_some) {
                    return Ok(token.clone());
                }
            }
            if Instant::now() > deadline {
                let missing: Vec<String> = self
                    .members
                    .iter()
                    .zip(&self.procs)
                    .zip(&tokens)
                    .filter(|((_, p), t)| p.is_some() && t.is_none())
                    .map(|((m, _), _)| format!("{}:\n{}", m.name, tail(&m.log, 20)))
                    .collect();
                bail!(
                    "the running masters did not all write an admin kubeconfig within a minute; the last lines of those that did not:\n{}",
                    missing.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// An SDK client for every master (their HTTPS ports, with the cluster CA), as the
    /// cluster's admin.
    pub fn client(&self) -> Result<keel_client::Client> {
        self.client_for(&(0..self.members.len()).collect::<Vec<_>>())
    }

    /// As [`Cluster::client`], for the masters `members` only.
    pub fn client_for(&self, members: &[usize]) -> Result<keel_client::Client> {
        self.admin_token()?;
        let admin = self
            .members
            .iter()
            .map(MemberSpec::kubeconfig)
            .find(|k| k.exists())
            .context("no admin kubeconfig")?;
        let config = keel_client::Kubeconfig::read(admin)?;
        let servers: Vec<String> = members
            .iter()
            .map(|&i| self.members[i].rest_url())
            .collect();
        Ok(keel_client::Client::from_config_for(&config, &servers)?)
    }

    /// The cluster CA, as the masters write it into their data dirs (PEM file).
    pub fn ca_file(&self) -> Result<PathBuf> {
        self.admin_token()?;
        self.members
            .iter()
            .map(|m| m.data_dir.join("pki").join("ca.crt"))
            .find(|p| p.exists())
            .context("no master wrote the cluster CA")
    }

    /// A gRPC channel to member `i`'s client port: over TLS with the member's client
    /// certificate where the port asks for one (waiting for the member to write it).
    pub async fn channel(&self, i: usize) -> Result<Channel> {
        let m = &self.members[i];
        if !m.tls {
            return connect(&m.client_url()).await;
        }
        let [ca, cert, key] = m.store_credentials();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !key.exists() {
            if Instant::now() > deadline {
                bail!("member {i} wrote no store credentials");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let files = keel_store::config::TlsFiles {
            cert,
            key,
            trusted_ca: Some(ca),
            client_cert_auth: false,
        };
        let tls = keel_store::tls::client_config(&files)?;
        Ok(keel_store::tls::channel(&m.client_url(), Some(tls))?)
    }

    fn initial_cluster(&self) -> String {
        self.members
            .iter()
            .filter(|m| !m.removed)
            .map(|m| format!("{}={}", m.name, m.peer_url()))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn spawn(&mut self, i: usize) -> Result<()> {
        let m = &self.members[i];
        let (program, mut args) = match self.flavor {
            Flavor::Keel => (
                keel_bin()?,
                vec![
                    "server".to_string(),
                    format!("--secure-port={}", m.rest_port),
                    format!("--dns-port={}", m.dns_port),
                ],
            ),
            Flavor::KeelStore => (
                keel_bin()?,
                vec!["server".to_string(), "--store-only".to_string()],
            ),
            Flavor::Etcd => (PathBuf::from("etcd"), vec![]),
        };
        args.extend([
            format!("--name={}", m.name),
            format!("--data-dir={}", m.data_dir.display()),
            format!("--listen-client-urls={}", m.client_url()),
            format!("--advertise-client-urls={}", m.client_url()),
            format!("--listen-peer-urls={}", m.peer_url()),
            format!("--initial-advertise-peer-urls={}", m.peer_url()),
            format!("--initial-cluster={}", self.initial_cluster()),
            format!(
                "--initial-cluster-state={}",
                if m.joined { "existing" } else { "new" }
            ),
            "--initial-cluster-token=keel-test".to_string(),
        ]);
        // Every master of a cluster seals the cluster's keys with the same certificate key,
        // unless the test brings its own.
        if self.flavor == Flavor::Keel
            && !self
                .extra_args
                .iter()
                .any(|a| a.starts_with("--certificate-key-file"))
        {
            args.push(format!(
                "--certificate-key-file={}",
                self.certificate_key_file()?.display()
            ));
        }
        args.extend(self.extra_args.iter().cloned());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&m.log)?;
        let child = Command::new(&program)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("spawning {}", program.display()))?;
        self.procs[i] = Some(child);
        Ok(())
    }

    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(MemberSpec::client_url).collect()
    }

    /// The certificate key file every master of this cluster is given, made on first use.
    pub fn certificate_key_file(&self) -> Result<PathBuf> {
        let path = self.dir.path().join("certificate.key");
        if !path.exists() {
            let out = Command::new(keel_bin()?).arg("certificate-key").output()?;
            ensure!(out.status.success(), "keel certificate-key failed");
            std::fs::write(&path, &out.stdout)?;
        }
        Ok(path)
    }

    /// Endpoints of members that are running.
    pub fn live_endpoints(&self) -> Vec<String> {
        self.members
            .iter()
            .zip(&self.procs)
            .filter(|(_, p)| p.is_some())
            .map(|(m, _)| m.client_url())
            .collect()
    }

    /// SIGTERM: the member shuts down as an operator would stop it. Returns at once; see
    /// [`Cluster::wait_exit`].
    pub fn terminate(&self, i: usize) -> Result<()> {
        let child = self.procs[i].as_ref().context("member is not running")?;
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()?;
        anyhow::ensure!(status.success(), "kill -TERM failed: {status}");
        Ok(())
    }

    /// SIGKILL: no chance to flush or say goodbye.
    pub fn kill(&mut self, i: usize) -> Result<()> {
        if let Some(mut child) = self.procs[i].take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// Adds a member through `via`'s Cluster API (etcd's MemberAdd), then starts it. Returns its
    /// index and member ID.
    pub async fn add_member(&mut self, via: usize, learner: bool) -> Result<(usize, u64)> {
        let ports = free_ports(4)?;
        let i = self.members.len();
        let spec = MemberSpec {
            name: format!("m{i}"),
            client_port: ports[0],
            peer_port: ports[1],
            rest_port: ports[2],
            dns_port: ports[3],
            data_dir: self.dir.path().join(format!("m{i}")),
            log: self.dir.path().join(format!("m{i}.log")),
            joined: true,
            removed: false,
            tls: self.members.first().is_some_and(|m| m.tls),
        };
        let added = self
            .cluster_api(via)
            .await?
            .member_add(MemberAddRequest {
                peer_ur_ls: vec![spec.peer_url()],
                is_learner: learner,
            })
            .await?
            .into_inner();
        let id = added.member.context("MemberAdd answered no member")?.id;
        self.members.push(spec);
        self.procs.push(None);
        self.spawn(i)?;
        Ok((i, id))
    }

    /// Removes member `i` through `via`'s Cluster API (etcd's MemberRemove). The process is left
    /// running: a removed member is expected to stop by itself.
    pub async fn remove_member(&mut self, via: usize, i: usize) -> Result<()> {
        let id = self.member_id(i).await?;
        self.cluster_api(via)
            .await?
            .member_remove(MemberRemoveRequest { id })
            .await?;
        self.members[i].removed = true;
        Ok(())
    }

    /// Member `i`'s ID, as its own status reports it.
    pub async fn member_id(&self, i: usize) -> Result<u64> {
        let status = self
            .maintenance(i)
            .await?
            .status(StatusRequest {})
            .await?
            .into_inner();
        Ok(status.header.context("status without header")?.member_id)
    }

    /// Every key under `prefix`, read linearizably through member `i`.
    pub async fn keys_under(&self, i: usize, prefix: &str) -> Result<BTreeSet<String>> {
        let mut end = prefix.as_bytes().to_vec();
        if let Some(last) = end.last_mut() {
            *last += 1;
        }
        let resp = self
            .kv(i)
            .await?
            .range(RangeRequest {
                key: prefix.as_bytes().to_vec(),
                range_end: end,
                keys_only: true,
                ..Default::default()
            })
            .await?
            .into_inner();
        Ok(resp
            .kvs
            .into_iter()
            .map(|kv| String::from_utf8_lossy(&kv.key).into_owned())
            .collect())
    }

    /// Member `i`'s HashKV at `revision`, waiting while the member has not applied it yet (it
    /// calls it a future revision until then).
    pub async fn hash_kv_at(&self, i: usize, revision: i64) -> Result<u32> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self
                .maintenance(i)
                .await?
                .hash_kv(HashKvRequest { revision })
                .await
            {
                Ok(h) => return Ok(h.into_inner().hash),
                Err(e) if Instant::now() > deadline => return Err(e.into()),
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    pub async fn cluster_api(&self, i: usize) -> Result<ClusterClient<Channel>> {
        Ok(ClusterClient::new(self.channel(i).await?))
    }

    /// Waits for member `i`'s process to exit by itself; returns its exit status.
    pub async fn wait_exit(
        &mut self,
        i: usize,
        timeout: Duration,
    ) -> Result<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            let child = self.procs[i].as_mut().context("member is not running")?;
            if let Some(status) = child.try_wait()? {
                self.procs[i] = None;
                return Ok(status);
            }
            if Instant::now() > deadline {
                bail!("member {i} still running after {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn restart(&mut self, i: usize) -> Result<()> {
        self.kill(i)?;
        self.spawn(i)
    }

    /// The process id of member `i`, if it runs.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.procs[i].as_ref().map(Child::id)
    }

    /// SIGSTOP (`stop`) or SIGCONT to member `i`: a pause the member does not see coming.
    pub fn signal(&self, i: usize, stop: bool) -> Result<()> {
        let Some(pid) = self.pid(i) else {
            bail!("member {i} is not running");
        };
        let status = Command::new("kill")
            .args([if stop { "-STOP" } else { "-CONT" }, &pid.to_string()])
            .status()?;
        if !status.success() {
            bail!("kill -{} {pid} failed", if stop { "STOP" } else { "CONT" });
        }
        Ok(())
    }

    pub fn is_running(&self, i: usize) -> bool {
        self.procs[i].is_some()
    }

    pub fn log_of(&self, i: usize) -> String {
        std::fs::read_to_string(&self.members[i].log).unwrap_or_default()
    }

    pub async fn kv(&self, i: usize) -> Result<KvClient<Channel>> {
        Ok(KvClient::new(self.channel(i).await?))
    }

    pub async fn maintenance(&self, i: usize) -> Result<MaintenanceClient<Channel>> {
        Ok(MaintenanceClient::new(self.channel(i).await?))
    }

    /// Index of the member the running members agree is leader.
    pub async fn leader(&self) -> Result<usize> {
        for (i, m) in self.members.iter().enumerate() {
            if !self.is_running(i) {
                continue;
            }
            let Ok(mut client) = self.maintenance(i).await else {
                continue;
            };
            let Ok(status) = client.status(StatusRequest {}).await else {
                continue;
            };
            let status = status.into_inner();
            let own = status.header.map(|h| h.member_id).unwrap_or(0);
            if status.leader != 0 && status.leader == own {
                return Ok(i);
            }
            let _ = m;
        }
        Err(anyhow!("no running member reports itself leader"))
    }

    /// Waits until a write through every running member succeeds.
    pub async fn wait_writable(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        for i in 0..self.members.len() {
            if !self.is_running(i) {
                continue;
            }
            loop {
                let attempt = async {
                    let mut kv = self.kv(i).await?;
                    // One write per member, however often this is retried: an attempt that
                    // timed out here may still have been applied, and tests count revisions.
                    let mark = format!("ready-{i}").into_bytes();
                    // (A value compare on a missing key fails, as in etcd: the put is the
                    // failure branch.)
                    kv.txn(TxnRequest {
                        compare: vec![Compare {
                            result: compare::CompareResult::Equal as i32,
                            target: compare::CompareTarget::Value as i32,
                            key: b"__ready".to_vec(),
                            target_union: Some(compare::TargetUnion::Value(mark.clone())),
                            range_end: Vec::new(),
                        }],
                        success: vec![],
                        failure: vec![RequestOp {
                            request: Some(request_op::Request::RequestPut(PutRequest {
                                key: b"__ready".to_vec(),
                                value: mark,
                                ..Default::default()
                            })),
                        }],
                    })
                    .await?;
                    kv.range(RangeRequest {
                        key: b"__ready".to_vec(),
                        ..Default::default()
                    })
                    .await?;
                    anyhow::Ok(())
                };
                match tokio::time::timeout(Duration::from_secs(3), attempt).await {
                    Ok(Ok(())) => break,
                    _ if Instant::now() > deadline => {
                        bail!(
                            "member {i} not writable within {timeout:?}; log:\n{}",
                            self.log_of(i)
                        )
                    }
                    _ => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        }
        Ok(())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for child in self.procs.iter_mut().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // KEEL_KEEP_DATA=1 keeps data dirs and member logs for a post-mortem.
        if std::env::var_os("KEEL_KEEP_DATA").is_some() {
            let kept = std::mem::replace(
                &mut self.dir,
                match tempfile::tempdir() {
                    Ok(d) => d,
                    Err(_) => return,
                },
            );
            eprintln!("cluster data kept in {}", kept.keep().display());
        }
    }
}

/// Connects a gRPC channel to `url`, retrying briefly while the server starts.
pub async fn connect(url: &str) -> Result<Channel> {
    let endpoint = tonic::transport::Endpoint::from_shared(url.to_string())?
        .connect_timeout(Duration::from_secs(1))
        .timeout(Duration::from_secs(10));
    Ok(endpoint.connect().await?)
}
