//! `keel up` and `keel down`: a whole multi-node cluster on this host with one command, and
//! gone again with another.
//!
//! `keel up` plans the cluster ([`plan`]), makes the node network ([`net`]), starts the
//! masters on the host (each on its own address on the bridge), then per agent a network
//! namespace with a containerd of its own (the local busybox and pause images imported) and a
//! `keel agent` in it; it waits until every Node is Ready, writes a kubeconfig and says how to
//! use it. Every process is detached ([`procs`]) and everything made is recorded as it is made
//! ([`record`]), so `keel down` undoes exactly that, in the reverse order, and checks that
//! nothing is left: no process, namespace, interface, mount or file.

mod net;
mod plan;
mod procs;
mod record;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::Args;
use keel_agent::containerd::{ContainerdConfig, Placement, PrivateContainerd};
use keel_agent::image::PAUSE_IMAGE;
use keel_api::services::range::{IpRange, DEFAULT_SERVICE_CIDR};
use keel_client::{Api, Client, ListParams};
use keel_types::k8s_openapi::api::core::v1::Node;

use plan::{AgentPlan, MasterPlan, Plan, Request, DNS_PORT, HTTPS_PORT};
use record::{Record, Started};

/// Where clusters live unless `--dir` says otherwise.
const DEFAULT_DIR: &str = "/var/lib/keel-up";
/// How long a process gets to exit after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(30);

/// `keel up`'s command line.
#[derive(Args, Debug)]
pub struct UpArgs {
    /// Masters to start (1, 3, 5 or 7 for a useful quorum).
    #[arg(long, default_value_t = 1)]
    masters: usize,
    /// Agents to start, each a node in a network namespace of its own.
    #[arg(long, default_value_t = 1)]
    agents: usize,
    #[command(flatten)]
    at: Where,
    /// The node network: the host bridge's /24 (host .1, masters from .2, agents from .11).
    #[arg(long, default_value = "10.250.0.0/24")]
    node_network: String,
    /// The pods' addresses: a /16 of which agent N gets the /24 numbered N.
    #[arg(long, default_value = "10.244.0.0/16")]
    cluster_cidr: String,
    /// How long to wait for the masters to serve and every node to be Ready.
    #[arg(long, default_value = "3m", value_parser = crate::duration::flag)]
    wait: Duration,
}

/// `keel down`'s command line.
#[derive(Args, Debug)]
pub struct DownArgs {
    #[command(flatten)]
    at: Where,
}

/// Which cluster: its name and the directory clusters live in.
#[derive(Args, Debug)]
struct Where {
    /// The cluster's name (interfaces and network namespaces are named after it).
    #[arg(long, default_value = "keel")]
    name: String,
    /// The directory clusters live in; the cluster's is `<dir>/<name>`.
    #[arg(long, default_value = DEFAULT_DIR)]
    dir: PathBuf,
}

/// Brings a cluster up, or (having removed whatever it made) says why it could not.
pub async fn up(args: UpArgs) -> anyhow::Result<()> {
    let plan = Plan::new(&Request {
        name: args.at.name.clone(),
        masters: args.masters,
        agents: args.agents,
        dir: args.at.dir.clone(),
        node_network: args.node_network.clone(),
        cluster_cidr: args.cluster_cidr.clone(),
    })
    .map_err(anyhow::Error::msg)?;
    preflight(&plan)?;
    crate::private::private_dir(&plan.dir)?;
    let mut record = Record {
        name: plan.name.clone(),
        dir: plan.dir.clone(),
        ..Record::default()
    };
    record.write()?;
    let deadline = Instant::now() + args.wait;
    if let Err(error) = bring_up(&plan, &mut record, deadline).await {
        eprintln!("keel up failed: {error:#}\nremoving what it made…");
        if let Err(teardown) = tear_down(&record).await {
            eprintln!("{teardown:#}");
        }
        return Err(error);
    }
    let kubeconfig = plan.kubeconfig();
    println!(
        "keel cluster {name:?} is up: {masters} master(s), {agents} agent(s).\n\
         \n  export KUBECONFIG={kubeconfig}\n  kubectl get nodes\n\n\
         Masters serve the API at {api}; logs are in {dir}.\n\
         Stop it and remove everything it made with: keel down --name {name}{dir_flag}",
        name = plan.name,
        masters = plan.masters.len(),
        agents = plan.agents.len(),
        kubeconfig = kubeconfig.display(),
        api = plan
            .masters
            .iter()
            .map(MasterPlan::https_url)
            .collect::<Vec<_>>()
            .join(", "),
        dir = plan.dir.display(),
        dir_flag = if args.at.dir == Path::new(DEFAULT_DIR) {
            String::new()
        } else {
            format!(" --dir {}", args.at.dir.display())
        },
    );
    Ok(())
}

/// Stops a cluster and removes everything `keel up` made for it.
pub async fn down(args: DownArgs) -> anyhow::Result<()> {
    plan::valid_name(&args.at.name).map_err(anyhow::Error::msg)?;
    let dir = args.at.dir.join(&args.at.name);
    if !Plan::record_path(&dir).exists() {
        bail!(
            "no cluster named {:?} under {} (nothing to do)",
            args.at.name,
            args.at.dir.display()
        );
    }
    let record = Record::read(&dir)?;
    tear_down(&record).await?;
    println!(
        "keel cluster {:?} is down; nothing of it is left",
        record.name
    );
    Ok(())
}

/// What `keel up` needs and must not find already there.
fn preflight(plan: &Plan) -> anyhow::Result<()> {
    if !rustix::process::geteuid().is_root() {
        bail!("keel up needs root: it makes network namespaces, a bridge and routes");
    }
    if let Some(reason) = keel_agent::containerd::process::cannot_run_containers() {
        bail!("this host cannot run containers: {reason}");
    }
    for program in ["nsenter", "ip", "nft"] {
        if !keel_agent::host::on_path(program) {
            bail!("{program} is not installed (scripts/install-deps.sh installs it)");
        }
    }
    if Plan::record_path(&plan.dir).exists() {
        bail!(
            "a cluster named {:?} is already up ({}): `keel down --name {}` first",
            plan.name,
            plan.dir.display(),
            plan.name
        );
    }
    if net::link_exists(&plan.bridge) {
        bail!(
            "an interface named {} exists already: choose another --name",
            plan.bridge
        );
    }
    for agent in &plan.agents {
        if net::netns_exists(&agent.netns) || net::link_exists(&agent.host_veth) {
            bail!(
                "a network namespace {} or interface {} exists already: choose another --name",
                agent.netns,
                agent.host_veth
            );
        }
    }
    Ok(())
}

/// Every step of `keel up`, recording each thing as it is made.
async fn bring_up(plan: &Plan, record: &mut Record, deadline: Instant) -> anyhow::Result<()> {
    net::make_bridge(plan)?;
    record.bridge = Some(plan.bridge.clone());
    record.write()?;
    let keel = std::env::current_exe().context("finding the keel binary")?;
    let certificate_key = plan.dir.join("certificate.key");
    crate::rest::write_private(
        &certificate_key,
        &format!("{}\n", crate::sealing::new_key_hex()),
    )?;
    for master in &plan.masters {
        println!("starting {} at {}", master.name, master.https_url());
        let args = master_args(plan, master, &certificate_key);
        let child = procs::spawn_detached(&keel, &args, None, &master.log)?;
        record.masters.push(Started {
            name: master.name.clone(),
            pid: child.id(),
        });
        record.write()?;
    }
    for master in &plan.masters {
        wait_for(
            deadline,
            &format!("{} to serve the API", master.name),
            || crate::rest::kubeconfig_path(&master.data_dir).exists(),
            || exited(record, &master.name, &master.log),
        )
        .await?;
    }
    let service_range = IpRange::parse(DEFAULT_SERVICE_CIDR).map_err(anyhow::Error::msg)?;
    let dns = service_range
        .dns_service_ip()
        .context("the Service range has no room for the DNS Service")?;
    let images = plan.dir.join("images.tar");
    keel_agent::image::busybox::write_host_archive(&images)?;
    for agent in &plan.agents {
        println!(
            "starting {} ({}, pods {})",
            agent.name, agent.ip, agent.pod_cidr
        );
        // Recorded first: a failure half-way leaves what it made for the teardown to find.
        record.netns.push(agent.netns.clone());
        record.veths.push(agent.host_veth.clone());
        record.write()?;
        net::make_node(plan, agent)?;
        let containerd = start_containerd(agent, &images).await?;
        let endpoint = containerd.endpoint();
        let pid = containerd
            .detach()
            .context("containerd has no pid once started")?;
        record.containerds.push((
            agent.containerd_dir.clone(),
            Started {
                name: agent.name.clone(),
                pid,
            },
        ));
        record.write()?;
        let master = &plan.masters[agent.master];
        crate::rest::write_node_certificate(
            &master.data_dir,
            &agent.name,
            &[agent.ip.to_string()],
            Some(&master.https_url()),
            &agent.pki_dir,
        )?;
        let args = agent_args(agent, &endpoint, &dns.to_string());
        let child = procs::spawn_detached(&keel, &args, Some(&agent.netns), &agent.log)?;
        record.agents.push(Started {
            name: agent.name.clone(),
            pid: child.id(),
        });
        record.write()?;
    }
    let admin = crate::rest::kubeconfig_path(&plan.masters[0].data_dir);
    let text =
        std::fs::read_to_string(&admin).with_context(|| format!("reading {}", admin.display()))?;
    crate::rest::write_private(&plan.kubeconfig(), &text)?;
    let client = Client::from_kubeconfig(plan.kubeconfig())?;
    let nodes: Api<Node> = Api::all(client);
    let mut ready = 0;
    while ready < plan.agents.len() {
        if let Some(agent) = plan
            .agents
            .iter()
            .find(|a| exited(record, &a.name, &a.log).is_some())
        {
            bail!(
                "{} stopped: {}",
                agent.name,
                exited(record, &agent.name, &agent.log).unwrap_or_default()
            );
        }
        if Instant::now() > deadline {
            bail!(
                "only {ready} of {} nodes became Ready in time (agents' logs are in {})",
                plan.agents.len(),
                plan.dir.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        ready = match nodes.list(&ListParams::default()).await {
            Ok(list) => list.items.iter().filter(|n| is_ready(n)).count(),
            Err(_) => 0,
        };
    }
    Ok(())
}

/// A master's command line: every port on its own address on the bridge.
fn master_args(plan: &Plan, master: &MasterPlan, certificate_key: &Path) -> Vec<String> {
    let ip = master.ip;
    vec![
        "server".into(),
        format!("--name={}", master.name),
        format!("--data-dir={}", master.data_dir.display()),
        format!("--bind-address={ip}"),
        format!("--secure-port={HTTPS_PORT}"),
        format!("--advertise-address={ip}"),
        format!("--dns-port={DNS_PORT}"),
        format!("--listen-client-urls={}", master.client_url()),
        format!("--advertise-client-urls={}", master.client_url()),
        format!("--listen-peer-urls={}", master.peer_url()),
        format!("--initial-advertise-peer-urls={}", master.peer_url()),
        format!("--initial-cluster={}", plan.initial_cluster()),
        "--initial-cluster-state=new".into(),
        format!("--initial-cluster-token=keel-up-{}", plan.name),
        format!("--certificate-key-file={}", certificate_key.display()),
    ]
}

/// An agent's command line, run inside its node's network namespace.
fn agent_args(agent: &AgentPlan, endpoint: &str, dns: &str) -> Vec<String> {
    let pki = |file: &str| agent.pki_dir.join(file).display().to_string();
    vec![
        "agent".into(),
        format!("--kubeconfig={}", pki("kubelet.kubeconfig")),
        format!("--hostname-override={}", agent.name),
        format!("--node-ip={}", agent.ip),
        format!("--container-runtime-endpoint={endpoint}"),
        format!("--root-dir={}", agent.root_dir.display()),
        format!("--pod-logs-dir={}", agent.pod_logs_dir.display()),
        format!("--pod-cidr={}", agent.pod_cidr),
        format!(
            "--cni-conf-dir={}",
            ContainerdConfig::under(&agent.containerd_dir, PAUSE_IMAGE)
                .cni_conf_dir
                .display()
        ),
        format!("--cluster-dns={dns}"),
        format!("--tls-cert-file={}", pki("kubelet.crt")),
        format!("--tls-private-key-file={}", pki("kubelet.key")),
        format!("--client-ca-file={}", pki("ca.crt")),
    ]
}

/// The node's containerd, in its network namespace, with the local images imported.
async fn start_containerd(agent: &AgentPlan, images: &Path) -> anyhow::Result<PrivateContainerd> {
    let placement = Placement {
        netns: Some(PathBuf::from("/run/netns").join(&agent.netns)),
        own_process_group: true,
    };
    let config = ContainerdConfig::under(&agent.containerd_dir, PAUSE_IMAGE);
    let containerd = PrivateContainerd::start_placed(&agent.containerd_dir, config, &placement)
        .await
        .with_context(|| format!("starting {}'s containerd", agent.name))?;
    containerd
        .import(images)
        .await
        .with_context(|| format!("importing images into {}'s containerd", agent.name))?;
    Ok(containerd)
}

/// Why a started process is no longer running, with the end of its log, if it is not.
fn exited(record: &Record, name: &str, log: &Path) -> Option<String> {
    let started = record
        .masters
        .iter()
        .chain(&record.agents)
        .find(|s| s.name == name)?;
    if procs::is_ours(started.pid, &record.dir) {
        return None;
    }
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    Some(format!(
        "it exited; the end of {}:\n{}",
        log.display(),
        lines[lines.len().saturating_sub(15)..].join("\n")
    ))
}

/// Polls `done` until it holds; fails at the deadline or as soon as `failed` says why.
async fn wait_for(
    deadline: Instant,
    what: &str,
    mut done: impl FnMut() -> bool,
    mut failed: impl FnMut() -> Option<String>,
) -> anyhow::Result<()> {
    loop {
        if done() {
            return Ok(());
        }
        if let Some(why) = failed() {
            bail!("waiting for {what}: {why}");
        }
        if Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn is_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|conditions| {
            conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
        })
}

/// Undoes what `record` says was made, in the reverse order: agents, then each node's
/// containerd with everything it ran, then the masters; then namespaces, the bridge, mounts
/// and the directory. Goes on past failures, and fails at the end if anything is left.
async fn tear_down(record: &Record) -> anyhow::Result<()> {
    let dir = &record.dir;
    let pids = |started: &[Started]| started.iter().map(|s| s.pid).collect::<Vec<_>>();
    procs::stop(&pids(&record.agents), dir, STOP_GRACE);
    let mut problems = Vec::new();
    for (containerd_dir, started) in &record.containerds {
        let containerd = PrivateContainerd::attach(containerd_dir, PAUSE_IMAGE, Some(started.pid));
        if let Err(error) = containerd.stop().await {
            // The sandboxes it could not remove went with its shims all the same.
            tracing::warn!(node = %started.name, %error, "removing the node's pods through CRI failed");
        }
    }
    procs::stop(&pids(&record.masters), dir, STOP_GRACE);
    // Anything else still naming the directory (a process started by one of ours).
    procs::stop(&procs::all_ours(dir), dir, Duration::ZERO);
    // Deleting one end of a veth pair deletes both at once; a namespace's own interfaces
    // would otherwise go only when the kernel gets round to freeing it.
    for veth in &record.veths {
        if let Err(error) = net::remove_link(veth) {
            problems.push(format!("{error:#}"));
        }
    }
    for netns in &record.netns {
        if let Err(error) = net::remove_netns(netns) {
            problems.push(format!("{error:#}"));
        }
    }
    if let Some(bridge) = &record.bridge {
        if let Err(error) = net::remove_link(bridge) {
            problems.push(format!("{error:#}"));
        }
    }
    for mount_point in keel_agent::containerd::process::mounts_under(dir) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&mount_point)
            .status();
    }
    if dir.exists() {
        if let Err(error) = std::fs::remove_dir_all(dir) {
            problems.push(format!("removing {}: {error}", dir.display()));
        }
    }
    let left = procs::all_ours(dir);
    if !left.is_empty() {
        problems.push(format!("processes still running: {left:?}"));
    }
    problems.extend(
        record
            .netns
            .iter()
            .filter(|n| net::netns_exists(n))
            .map(|n| format!("network namespace {n} still exists")),
    );
    problems.extend(
        record
            .bridge
            .iter()
            .chain(&record.veths)
            .filter(|link| net::link_exists(link))
            .map(|link| format!("interface {link} still exists")),
    );
    if problems.is_empty() {
        Ok(())
    } else {
        bail!("keel down left things behind:\n  {}", problems.join("\n  "))
    }
}
