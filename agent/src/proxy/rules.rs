//! The nftables ruleset for a node's Services, as one `nft -f` document that replaces the
//! proxy's table in a single transaction.
//!
//! The first packet of a connection finds its Service with one lookup in a verdict map keyed
//! by address, protocol and port (`service-ips`, and `service-nodeports` for node ports on
//! the node's own addresses), however many Services there are. A Service port's chain picks an
//! endpoint at random (`numgen random`), or the one a client was last sent to while its
//! ClientIP affinity lasts; an endpoint's chain DNATs to it. Connections are masqueraded where
//! the reply would otherwise not come back through this node: node port traffic (unless
//! externalTrafficPolicy is Local) and a pod reaching itself through its own Service (hairpin).
//! Traffic to a Service port with no endpoint is rejected as host-unreachable. Established
//! connections live in conntrack, so replacing the table does not break them.

use std::fmt::Write;

use super::model::{Endpoint, ServicePort};

/// The proxy's table (family `ip`).
pub const TABLE: &str = "keel-proxy";
/// The packet mark bit asking for masquerade on the way out.
const MASQUERADE_MARK: &str = "0x4000";

fn service_chain(port: &ServicePort) -> String {
    format!("svc-{}", port.id)
}

fn external_chain(port: &ServicePort) -> String {
    format!("ext-{}", port.id)
}

fn endpoint_chain(port: &ServicePort, endpoint: &Endpoint) -> String {
    format!("ep-{}__{}/{}", port.id, endpoint.ip, endpoint.port)
}

fn affinity_set(port: &ServicePort, endpoint: &Endpoint) -> String {
    format!("affinity-{}__{}/{}", port.id, endpoint.ip, endpoint.port)
}

/// The whole document: the table is created if missing, deleted, and written anew, all in
/// one transaction.
pub fn render(ports: &[ServicePort]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "table ip {TABLE}\ndelete table ip {TABLE}\ntable ip {TABLE} {{"
    );
    render_maps(&mut out, ports);
    render_hooks(&mut out);
    for port in ports {
        render_service(&mut out, port);
    }
    out.push_str("}\n");
    out
}

fn render_maps(out: &mut String, ports: &[ServicePort]) {
    let ips: Vec<String> = ports
        .iter()
        .filter(|p| !p.internal.is_empty())
        .map(|p| {
            format!(
                "{} . {} . {} : goto {}",
                p.cluster_ip,
                p.protocol,
                p.port,
                service_chain(p)
            )
        })
        .collect();
    let node_ports: Vec<String> = ports
        .iter()
        .filter(|p| !p.external.is_empty())
        .filter_map(|p| {
            p.node_port
                .map(|np| format!("{} . {np} : goto {}", p.protocol, external_chain(p)))
        })
        .collect();
    let unreachable: Vec<String> = ports
        .iter()
        .filter(|p| p.internal.is_empty())
        .map(|p| format!("{} . {} . {}", p.cluster_ip, p.protocol, p.port))
        .collect();
    let unreachable_node_ports: Vec<String> = ports
        .iter()
        .filter(|p| p.external.is_empty())
        .filter_map(|p| p.node_port.map(|np| format!("{} . {np}", p.protocol)))
        .collect();
    map(
        out,
        "service-ips",
        "ipv4_addr . inet_proto . inet_service : verdict",
        &ips,
    );
    map(
        out,
        "service-nodeports",
        "inet_proto . inet_service : verdict",
        &node_ports,
    );
    set(
        out,
        "no-endpoint-services",
        "ipv4_addr . inet_proto . inet_service",
        &unreachable,
    );
    set(
        out,
        "no-endpoint-nodeports",
        "inet_proto . inet_service",
        &unreachable_node_ports,
    );
}

fn map(out: &mut String, name: &str, ty: &str, elements: &[String]) {
    let _ = writeln!(out, "\tmap {name} {{\n\t\ttype {ty}");
    if !elements.is_empty() {
        let _ = writeln!(out, "\t\telements = {{ {} }}", elements.join(", "));
    }
    out.push_str("\t}\n");
}

fn set(out: &mut String, name: &str, ty: &str, elements: &[String]) {
    let _ = writeln!(out, "\tset {name} {{\n\t\ttype {ty}");
    if !elements.is_empty() {
        let _ = writeln!(out, "\t\telements = {{ {} }}", elements.join(", "));
    }
    out.push_str("\t}\n");
}

fn render_hooks(out: &mut String) {
    let _ = write!(
        out,
        "\tchain nat-prerouting {{
\t\ttype nat hook prerouting priority dstnat; policy accept;
\t\tjump services
\t}}
\tchain nat-output {{
\t\ttype nat hook output priority -100; policy accept;
\t\tjump services
\t}}
\tchain nat-postrouting {{
\t\ttype nat hook postrouting priority srcnat; policy accept;
\t\tmeta mark & {MASQUERADE_MARK} == {MASQUERADE_MARK} meta mark set meta mark ^ {MASQUERADE_MARK} masquerade fully-random
\t}}
\tchain filter-forward {{
\t\ttype filter hook forward priority filter - 10; policy accept;
\t\tjump reject-unreachable
\t}}
\tchain filter-input {{
\t\ttype filter hook input priority filter - 10; policy accept;
\t\tjump reject-unreachable
\t}}
\tchain filter-output {{
\t\ttype filter hook output priority filter - 10; policy accept;
\t\tjump reject-unreachable
\t}}
\tchain reject-unreachable {{
\t\tct state new ip daddr . meta l4proto . th dport @no-endpoint-services reject with icmp host-unreachable
\t\tct state new fib daddr type local meta l4proto . th dport @no-endpoint-nodeports reject with icmp host-unreachable
\t}}
\tchain services {{
\t\tip daddr . meta l4proto . th dport vmap @service-ips
\t\tfib daddr type local meta l4proto . th dport vmap @service-nodeports
\t}}
\tchain mark-for-masquerade {{
\t\tmeta mark set meta mark | {MASQUERADE_MARK}
\t}}
"
    );
}

fn render_service(out: &mut String, port: &ServicePort) {
    let affinity = port.affinity_seconds;
    let mut endpoints: Vec<&Endpoint> = port.internal.iter().collect();
    for e in &port.external {
        if !endpoints.contains(&e) {
            endpoints.push(e);
        }
    }
    if let Some(seconds) = affinity {
        for e in &endpoints {
            let _ = writeln!(
                out,
                "\tset {} {{\n\t\ttype ipv4_addr\n\t\tflags dynamic,timeout\n\t\ttimeout {seconds}s\n\t}}",
                affinity_set(port, e)
            );
        }
    }
    if !port.internal.is_empty() {
        pick_chain(out, &service_chain(port), port, &port.internal);
    }
    if port.node_port.is_some() && !port.external.is_empty() {
        if port.external_local || port.external != port.internal {
            // Node port traffic has endpoints of its own: a chain choosing among them.
            let chooser = format!("{}/external", service_chain(port));
            pick_chain(out, &chooser, port, &port.external);
            chain_with(out, &external_chain(port), |out| {
                if !port.external_local {
                    out.push_str("\t\tjump mark-for-masquerade\n");
                }
                let _ = writeln!(out, "\t\tgoto {chooser}");
            });
        } else {
            chain_with(out, &external_chain(port), |out| {
                out.push_str("\t\tjump mark-for-masquerade\n");
                let _ = writeln!(out, "\t\tgoto {}", service_chain(port));
            });
        }
    }
    for e in endpoints {
        chain_with(out, &endpoint_chain(port, e), |out| {
            let _ = writeln!(out, "\t\tip saddr {} jump mark-for-masquerade", e.ip);
            if affinity.is_some() {
                let _ = writeln!(out, "\t\tupdate @{} {{ ip saddr }}", affinity_set(port, e));
            }
            let _ = writeln!(
                out,
                "\t\tmeta l4proto {} dnat to {}:{}",
                port.protocol, e.ip, e.port
            );
        });
    }
}

/// A chain sending a connection to one of `endpoints`: the affinity one first, then at random.
fn pick_chain(out: &mut String, name: &str, port: &ServicePort, endpoints: &[Endpoint]) {
    chain_with(out, name, |out| {
        if port.affinity_seconds.is_some() {
            for e in endpoints {
                let _ = writeln!(
                    out,
                    "\t\tip saddr @{} goto {}",
                    affinity_set(port, e),
                    endpoint_chain(port, e)
                );
            }
        }
        let choices: Vec<String> = endpoints
            .iter()
            .enumerate()
            .map(|(i, e)| format!("{i} : goto {}", endpoint_chain(port, e)))
            .collect();
        let _ = writeln!(
            out,
            "\t\tnumgen random mod {} vmap {{ {} }}",
            endpoints.len(),
            choices.join(", ")
        );
    });
}

fn chain_with(out: &mut String, name: &str, body: impl FnOnce(&mut String)) {
    let _ = writeln!(out, "\tchain {name} {{");
    body(out);
    out.push_str("\t}\n");
}

/// The document that removes the proxy's table (when proxying is turned off).
pub fn remove() -> String {
    format!("table ip {TABLE}\ndelete table ip {TABLE}\n")
}
