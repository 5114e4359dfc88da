//! What `keel up` makes, decided before anything is made: names, addresses, pod CIDRs and
//! paths of every master and agent, from the command line alone (pure, so that `keel down`
//! and the tests can reason about it too).
//!
//! The layout: one host bridge holds the node network (the first address is the host's;
//! masters take the next ones, as addresses on the bridge itself, since they run on the
//! host); each agent is a network namespace joined to the bridge by a veth pair, with its own
//! /24 pod CIDR, and every node routes each other node's pod CIDR to that node's address, so
//! pod traffic between nodes is routed, never masqueraded, and the host needs no forwarding.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

/// The most masters a cluster may have (Raft groups beyond seven only get slower).
pub const MAX_MASTERS: usize = 7;
/// The most agents: each takes a /24 of the cluster CIDR and an address above the masters'.
pub const MAX_AGENTS: usize = 50;
/// The longest cluster name: interface names (15 bytes at most) are built from it.
pub const MAX_NAME: usize = 8;
/// Where masters and agents start in the node network: masters from `.2`, agents from `.11`.
const FIRST_AGENT_HOST: u32 = 10;

/// The ports each master serves on its own address (the addresses differ, so the ports may
/// be the standard ones).
pub const CLIENT_PORT: u16 = 2379;
pub const PEER_PORT: u16 = 2380;
pub const HTTPS_PORT: u16 = 6443;
pub const DNS_PORT: u16 = 10053;

/// What the command line asked for.
#[derive(Debug, Clone)]
pub struct Request {
    pub name: String,
    pub masters: usize,
    pub agents: usize,
    /// The directory clusters live in; this one's is `<dir>/<name>`.
    pub dir: PathBuf,
    /// The node network, a /24 (`a.b.c.0/24`).
    pub node_network: String,
    /// The cluster's pod addresses, a /16 split into one /24 per agent.
    pub cluster_cidr: String,
}

/// One master.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasterPlan {
    /// Its Raft member name.
    pub name: String,
    pub ip: Ipv4Addr,
    pub data_dir: PathBuf,
    pub log: PathBuf,
}

impl MasterPlan {
    pub fn peer_url(&self) -> String {
        format!("http://{}:{PEER_PORT}", self.ip)
    }

    pub fn client_url(&self) -> String {
        format!("https://{}:{CLIENT_PORT}", self.ip)
    }

    pub fn https_url(&self) -> String {
        format!("https://{}:{HTTPS_PORT}", self.ip)
    }
}

/// One agent: a node in a network namespace of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentPlan {
    /// The Node's name, also its network namespace's.
    pub name: String,
    /// The namespace's name under /run/netns: the cluster's name and the node's.
    pub netns: String,
    /// The host's end of the veth pair (the node's end is `eth0`).
    pub host_veth: String,
    pub ip: Ipv4Addr,
    /// The node's pod CIDR, `a.b.N.0/24`.
    pub pod_cidr: String,
    /// The network (`a.b.N.0`) of the pod CIDR.
    pub pod_network: Ipv4Addr,
    /// Its containerd's directory (config, root, state, socket, CNI config).
    pub containerd_dir: PathBuf,
    /// The agent's root dir, pod logs, credentials and log file.
    pub root_dir: PathBuf,
    pub pod_logs_dir: PathBuf,
    pub pki_dir: PathBuf,
    pub log: PathBuf,
    /// The master whose API this agent talks to (agents are spread over the masters).
    pub master: usize,
}

/// The whole cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub name: String,
    /// Everything the cluster keeps on disk; removed by `keel down`.
    pub dir: PathBuf,
    pub bridge: String,
    /// The host's address on the bridge, every node's gateway.
    pub gateway: Ipv4Addr,
    pub prefix_len: u8,
    pub masters: Vec<MasterPlan>,
    pub agents: Vec<AgentPlan>,
}

impl Plan {
    /// The plan for `request`, or why the request cannot be met.
    pub fn new(request: &Request) -> Result<Self, String> {
        valid_name(&request.name)?;
        if !(1..=MAX_MASTERS).contains(&request.masters) {
            return Err(format!(
                "--masters must be between 1 and {MAX_MASTERS}, not {}",
                request.masters
            ));
        }
        if request.agents > MAX_AGENTS {
            return Err(format!(
                "--agents must be at most {MAX_AGENTS}, not {}",
                request.agents
            ));
        }
        let network = network_of(&request.node_network, 24, "--node-network")?;
        let pods = network_of(&request.cluster_cidr, 16, "--cluster-cidr")?;
        let dir = request.dir.join(&request.name);
        let name = &request.name;
        let at = |host: u32| Ipv4Addr::from(u32::from(network) + host);
        let masters = (1..=request.masters)
            .map(|i| {
                let member = format!("master-{i}");
                MasterPlan {
                    ip: at(1 + i as u32),
                    data_dir: dir.join(&member),
                    log: dir.join(format!("{member}.log")),
                    name: member,
                }
            })
            .collect();
        let agents = (1..=request.agents)
            .map(|i| {
                let node = format!("agent-{i}");
                let node_dir = dir.join(&node);
                let pod_network = Ipv4Addr::from(u32::from(pods) + ((i as u32) << 8));
                AgentPlan {
                    netns: format!("{name}-{node}"),
                    host_veth: format!("{name}-a{i}"),
                    ip: at(FIRST_AGENT_HOST + i as u32),
                    pod_cidr: format!("{pod_network}/24"),
                    pod_network,
                    containerd_dir: node_dir.join("containerd"),
                    root_dir: node_dir.join("root"),
                    pod_logs_dir: node_dir.join("pod-logs"),
                    pki_dir: node_dir.join("pki"),
                    log: dir.join(format!("{node}.log")),
                    master: (i - 1) % request.masters,
                    name: node,
                }
            })
            .collect();
        Ok(Self {
            bridge: format!("{name}-br"),
            gateway: at(1),
            prefix_len: 24,
            masters,
            agents,
            dir,
            name: name.clone(),
        })
    }

    /// The `--initial-cluster` every master is started with.
    pub fn initial_cluster(&self) -> String {
        self.masters
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer_url()))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The record of what was made, kept in the cluster's directory.
    pub fn record_path(dir: &Path) -> PathBuf {
        dir.join("cluster.json")
    }

    /// The kubeconfig `keel up` writes for the user.
    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.join("kubeconfig")
    }

    /// The routes a node needs: every other node's pod CIDR through that node.
    pub fn routes_of(&self, agent: &AgentPlan) -> Vec<(String, Ipv4Addr)> {
        self.agents
            .iter()
            .filter(|other| other.name != agent.name)
            .map(|other| (other.pod_cidr.clone(), other.ip))
            .collect()
    }
}

/// A cluster name: a DNS label short enough for the interface names made from it.
pub fn valid_name(name: &str) -> Result<(), String> {
    let label = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if !label {
        return Err(format!(
            "--name {name:?}: lowercase letters, digits and '-', starting and ending with a letter or digit"
        ));
    }
    if name.len() > MAX_NAME {
        return Err(format!(
            "--name {name:?}: at most {MAX_NAME} characters (interface names are built from it)"
        ));
    }
    Ok(())
}

/// The network address of `cidr`, which must have prefix length `len` and no host bits.
fn network_of(cidr: &str, len: u8, flag: &str) -> Result<Ipv4Addr, String> {
    let (address, prefix) = cidr
        .split_once('/')
        .ok_or_else(|| format!("{flag} {cidr:?}: not a CIDR (a.b.c.d/{len})"))?;
    let address: Ipv4Addr = address
        .parse()
        .map_err(|_| format!("{flag} {cidr:?}: {address:?} is not an IPv4 address"))?;
    if prefix != len.to_string() {
        return Err(format!("{flag} {cidr:?}: the prefix length must be /{len}"));
    }
    let host_bits = u32::MAX >> len;
    if u32::from(address) & host_bits != 0 {
        return Err(format!(
            "{flag} {cidr:?}: host bits are set (the network is {}/{len})",
            Ipv4Addr::from(u32::from(address) & !host_bits)
        ));
    }
    Ok(address)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(masters: usize, agents: usize) -> Request {
        Request {
            name: "keel".into(),
            masters,
            agents,
            dir: PathBuf::from("/var/lib/keel-up"),
            node_network: "10.250.0.0/24".into(),
            cluster_cidr: "10.244.0.0/16".into(),
        }
    }

    #[test]
    fn masters_and_agents_get_distinct_addresses_names_and_pod_cidrs() {
        let plan = Plan::new(&request(3, 2)).expect("plan");
        assert_eq!(plan.dir, Path::new("/var/lib/keel-up/keel"));
        assert_eq!(plan.bridge, "keel-br");
        assert_eq!(plan.gateway, Ipv4Addr::new(10, 250, 0, 1));
        let masters: Vec<_> = plan
            .masters
            .iter()
            .map(|m| (m.name.as_str(), m.ip))
            .collect();
        assert_eq!(
            masters,
            [
                ("master-1", Ipv4Addr::new(10, 250, 0, 2)),
                ("master-2", Ipv4Addr::new(10, 250, 0, 3)),
                ("master-3", Ipv4Addr::new(10, 250, 0, 4)),
            ]
        );
        let a2 = &plan.agents[1];
        assert_eq!(a2.name, "agent-2");
        assert_eq!(a2.netns, "keel-agent-2");
        assert_eq!(a2.host_veth, "keel-a2");
        assert_eq!(a2.ip, Ipv4Addr::new(10, 250, 0, 12));
        assert_eq!(a2.pod_cidr, "10.244.2.0/24");
        assert_eq!(a2.master, 1);
        assert_eq!(
            plan.initial_cluster(),
            "master-1=http://10.250.0.2:2380,master-2=http://10.250.0.3:2380,master-3=http://10.250.0.4:2380"
        );
    }

    #[test]
    fn each_node_routes_every_other_nodes_pods_through_that_node() {
        let plan = Plan::new(&request(1, 3)).expect("plan");
        let routes = plan.routes_of(&plan.agents[0]);
        assert_eq!(
            routes,
            [
                ("10.244.2.0/24".to_string(), Ipv4Addr::new(10, 250, 0, 12)),
                ("10.244.3.0/24".to_string(), Ipv4Addr::new(10, 250, 0, 13)),
            ]
        );
    }

    #[test]
    fn interface_names_fit_the_kernels_limit_at_the_largest_sizes() {
        let mut asked = request(MAX_MASTERS, MAX_AGENTS);
        asked.name = "abcdefgh".into();
        let plan = Plan::new(&asked).expect("plan");
        assert!(plan.bridge.len() <= 15);
        assert!(plan.agents.iter().all(|a| a.host_veth.len() <= 15));
        let last = plan.agents.last().expect("agents");
        assert_eq!(last.ip, Ipv4Addr::new(10, 250, 0, 60));
        assert_eq!(last.pod_cidr, "10.244.50.0/24");
    }

    #[test]
    fn bad_requests_say_what_is_wrong() {
        let mut bad = request(0, 1);
        assert!(Plan::new(&bad).unwrap_err().contains("--masters"));
        bad = request(1, MAX_AGENTS + 1);
        assert!(Plan::new(&bad).unwrap_err().contains("--agents"));
        bad = request(1, 1);
        bad.name = "Keel".into();
        assert!(Plan::new(&bad).unwrap_err().contains("lowercase"));
        bad.name = "much-too-long".into();
        assert!(Plan::new(&bad).unwrap_err().contains("at most 8"));
        bad = request(1, 1);
        bad.node_network = "10.250.0.1/24".into();
        assert!(Plan::new(&bad).unwrap_err().contains("host bits"));
        bad = request(1, 1);
        bad.cluster_cidr = "10.244.0.0/24".into();
        assert!(Plan::new(&bad).unwrap_err().contains("/16"));
    }
}
