//! What the proxy needs of Services and EndpointSlices, read out of the API objects: for each
//! Service port, its cluster IP, node port and the endpoints traffic may go to from this node.
//!
//! Kubernetes' rules, kept here: headless and ExternalName Services get no rules; an endpoint
//! takes traffic when ready, and when a Service has no ready endpoint, its serving but
//! terminating ones take it instead; `internalTrafficPolicy: Local` (for cluster IP traffic)
//! and `externalTrafficPolicy: Local` (for node port traffic) keep to this node's endpoints.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use keel_types::k8s_openapi::api::core::v1::Service;
use keel_types::k8s_openapi::api::discovery::v1::EndpointSlice;

/// The label naming the Service an EndpointSlice belongs to.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// Session affinity's default timeout (Kubernetes': 3 hours).
const DEFAULT_AFFINITY_SECONDS: u32 = 10800;

/// One endpoint of a Service port.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Endpoint {
    pub ip: Ipv4Addr,
    pub port: u16,
    /// On this node.
    pub local: bool,
}

/// One port of a Service, with where its traffic goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePort {
    /// `namespace/name/protocol/port`: unique, and readable in the rules.
    pub id: String,
    /// `tcp`, `udp` or `sctp`, as nftables names them.
    pub protocol: &'static str,
    pub cluster_ip: Ipv4Addr,
    pub port: u16,
    pub node_port: Option<u16>,
    /// Endpoints for traffic to the cluster IP.
    pub internal: Vec<Endpoint>,
    /// Endpoints for traffic to the node port.
    pub external: Vec<Endpoint>,
    /// Whether node port traffic keeps its source (externalTrafficPolicy Local).
    pub external_local: bool,
    /// ClientIP session affinity's timeout, if the Service has it.
    pub affinity_seconds: Option<u32>,
}

fn nft_protocol(protocol: Option<&str>) -> Option<&'static str> {
    match protocol.unwrap_or("TCP") {
        "TCP" => Some("tcp"),
        "UDP" => Some("udp"),
        "SCTP" => Some("sctp"),
        _ => None,
    }
}

/// The endpoints of one Service port (by name and protocol) across its slices.
fn endpoints_for(
    slices: &[&EndpointSlice],
    port_name: &str,
    protocol: &str,
    node: &str,
) -> Vec<(Endpoint, bool, bool)> {
    let mut found = Vec::new();
    for slice in slices {
        if slice.address_type != "IPv4" {
            continue;
        }
        let port = slice.ports.iter().flatten().find(|p| {
            p.name.as_deref().unwrap_or("") == port_name
                && p.protocol.as_deref().unwrap_or("TCP") == protocol
        });
        let Some(port) = port
            .and_then(|p| p.port)
            .and_then(|p| u16::try_from(p).ok())
        else {
            continue;
        };
        for endpoint in &slice.endpoints {
            let conditions = endpoint.conditions.clone().unwrap_or_default();
            // Unset conditions are read as Kubernetes reads them: ready unless known not to be,
            // serving as ready, terminating false.
            let ready = conditions.ready.unwrap_or(true);
            let serving = conditions.serving.unwrap_or(ready);
            let terminating = conditions.terminating.unwrap_or(false);
            let local = endpoint.node_name.as_deref() == Some(node);
            for address in &endpoint.addresses {
                if let Ok(ip) = address.parse() {
                    found.push((Endpoint { ip, port, local }, ready, serving && terminating));
                }
            }
        }
    }
    found
}

/// Ready endpoints, or when there are none, the serving terminating ones; each once, sorted.
fn usable(candidates: &[(Endpoint, bool, bool)], only_local: bool) -> Vec<Endpoint> {
    let pick = |want_ready: bool| -> Vec<Endpoint> {
        let mut list: Vec<Endpoint> = candidates
            .iter()
            .filter(|(e, ready, terminating)| {
                (!only_local || e.local) && if want_ready { *ready } else { *terminating }
            })
            .map(|(e, _, _)| e.clone())
            .collect();
        list.sort();
        list.dedup();
        list
    };
    let ready = pick(true);
    if ready.is_empty() {
        pick(false)
    } else {
        ready
    }
}

/// Every Service port this node proxies, from the Services and EndpointSlices in the cache.
pub fn service_ports(
    services: &[std::sync::Arc<Service>],
    slices: &[std::sync::Arc<EndpointSlice>],
    node: &str,
) -> Vec<ServicePort> {
    let mut by_service: BTreeMap<(String, String), Vec<&EndpointSlice>> = BTreeMap::new();
    for slice in slices {
        let Some(service) = slice
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(SERVICE_NAME_LABEL))
        else {
            continue;
        };
        let namespace = slice.metadata.namespace.clone().unwrap_or_default();
        by_service
            .entry((namespace, service.clone()))
            .or_default()
            .push(slice);
    }
    let mut ports = Vec::new();
    for service in services {
        let Some(spec) = service.spec.as_ref() else {
            continue;
        };
        if spec.type_.as_deref() == Some("ExternalName") {
            continue;
        }
        let Some(cluster_ip) = spec
            .cluster_ip
            .as_deref()
            .and_then(|ip| ip.parse::<Ipv4Addr>().ok())
        else {
            continue; // headless, or not allocated yet
        };
        let namespace = service.metadata.namespace.clone().unwrap_or_default();
        let name = service.metadata.name.clone().unwrap_or_default();
        let slices = by_service
            .get(&(namespace.clone(), name.clone()))
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let internal_local = spec.internal_traffic_policy.as_deref() == Some("Local");
        let external_local = spec.external_traffic_policy.as_deref() == Some("Local");
        let affinity_seconds = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
            spec.session_affinity_config
                .as_ref()
                .and_then(|c| c.client_ip.as_ref())
                .and_then(|c| c.timeout_seconds)
                .and_then(|s| u32::try_from(s).ok())
                .unwrap_or(DEFAULT_AFFINITY_SECONDS)
        });
        for port in spec.ports.iter().flatten() {
            let Some(protocol) = nft_protocol(port.protocol.as_deref()) else {
                continue;
            };
            let Ok(number) = u16::try_from(port.port) else {
                continue;
            };
            let candidates = endpoints_for(
                slices,
                port.name.as_deref().unwrap_or(""),
                port.protocol.as_deref().unwrap_or("TCP"),
                node,
            );
            ports.push(ServicePort {
                id: format!("{namespace}/{name}/{protocol}/{number}"),
                protocol,
                cluster_ip,
                port: number,
                node_port: port
                    .node_port
                    .and_then(|p| u16::try_from(p).ok())
                    .filter(|p| *p != 0),
                internal: usable(&candidates, internal_local),
                external: usable(&candidates, external_local),
                external_local,
                affinity_seconds,
            });
        }
    }
    ports.sort_by(|a, b| a.id.cmp(&b.id));
    ports
}
