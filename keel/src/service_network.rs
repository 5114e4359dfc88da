//! The master's Service networking flags, with kube-apiserver's names where it has them: the
//! ranges cluster IPs and node ports are allocated from, the address the `kubernetes` Service
//! sends pods to, and the cluster DNS each master serves.

use std::net::{IpAddr, SocketAddr};

use clap::Args;
use keel_api::services::range::{IpRange, PortRange, DEFAULT_NODE_PORTS, DEFAULT_SERVICE_CIDR};
use keel_api::services::{KubernetesServiceConfig, ServiceNetwork};

#[derive(Args, Debug, Clone)]
pub struct ServiceNetworkArgs {
    /// The IPv4 range Services' cluster IPs come from; its first address is the `kubernetes`
    /// Service's. Every master of a cluster needs the same.
    #[arg(long, default_value = DEFAULT_SERVICE_CIDR)]
    service_cluster_ip_range: String,
    /// The ports NodePort Services are given, `first-last`.
    #[arg(long, default_value = DEFAULT_NODE_PORTS)]
    service_node_port_range: String,
    /// The address pods reach this master at, listed in the `kubernetes` Service's endpoints
    /// [default: --bind-address, or 127.0.0.1 when that is unspecified].
    #[arg(long)]
    advertise_address: Option<IpAddr>,
    /// The cluster DNS's domain.
    #[arg(long, default_value = keel_dns::DEFAULT_DOMAIN)]
    cluster_domain: String,
    /// The port this master serves the cluster DNS on (UDP and TCP, on --bind-address), behind
    /// the kube-dns Service's port 53; 0 serves none.
    #[arg(long, default_value_t = 10053)]
    dns_port: u16,
}

impl ServiceNetworkArgs {
    /// The ranges, or why a flag does not parse.
    pub fn network(&self) -> anyhow::Result<ServiceNetwork> {
        Ok(ServiceNetwork {
            ips: IpRange::parse(&self.service_cluster_ip_range)
                .map_err(|e| anyhow::anyhow!("--service-cluster-ip-range: {e}"))?,
            node_ports: PortRange::parse(&self.service_node_port_range)
                .map_err(|e| anyhow::anyhow!("--service-node-port-range: {e}"))?,
        })
    }

    /// Who this master is in the `kubernetes` Service's endpoints.
    pub fn kubernetes_service(&self, member: &str, listen: SocketAddr) -> KubernetesServiceConfig {
        let ip = self
            .advertise_address
            .unwrap_or(if listen.ip().is_unspecified() {
                IpAddr::from([127, 0, 0, 1])
            } else {
                listen.ip()
            });
        KubernetesServiceConfig {
            member: member.to_string(),
            advertise: SocketAddr::new(ip, listen.port()),
            dns: (self.dns_port != 0).then(|| SocketAddr::new(ip, self.dns_port)),
        }
    }

    /// The names and addresses in-cluster clients reach a master by, which its serving
    /// certificate must hold as kube-apiserver's does: the `kubernetes` Service's address,
    /// `kubernetes`, `kubernetes.default`, `kubernetes.default.svc` and the name in the
    /// cluster domain, and the advertised address.
    pub fn serving_names(&self, network: &ServiceNetwork, advertise: IpAddr) -> Vec<String> {
        vec![
            network.ips.kubernetes_service_ip().to_string(),
            advertise.to_string(),
            "kubernetes".to_string(),
            "kubernetes.default".to_string(),
            "kubernetes.default.svc".to_string(),
            format!("kubernetes.default.svc.{}", self.cluster_domain),
        ]
    }

    /// The cluster DNS this master serves, if any: on the REST API's address, forwarding
    /// other names to the host's resolvers.
    pub fn dns(&self, listen_ip: IpAddr) -> Option<keel_dns::DnsConfig> {
        if self.dns_port == 0 {
            return None;
        }
        let listen = SocketAddr::new(listen_ip, self.dns_port);
        let resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        Some(keel_dns::DnsConfig {
            listen,
            domain: self.cluster_domain.clone(),
            upstream: keel_dns::server::upstream_from_resolv_conf(&resolv, &[listen]),
        })
    }
}
