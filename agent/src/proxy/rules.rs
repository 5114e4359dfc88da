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

/// One element of one of the table's maps or sets: its key, and for a map its verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Element {
    container: &'static str,
    key: String,
    verdict: Option<String>,
}

impl Element {
    fn text(&self) -> String {
        match &self.verdict {
            Some(v) => format!("{} : {v}", self.key),
            None => self.key.clone(),
        }
    }
}

/// What one Service port puts in the table: map and set elements, affinity sets (name and
/// timeout in seconds) and chains (name and rules).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct Parts {
    elements: Vec<Element>,
    sets: Vec<(String, u32)>,
    chains: Vec<(String, Vec<String>)>,
}

const SERVICE_IPS: &str = "service-ips";
const SERVICE_NODE_PORTS: &str = "service-nodeports";
const NO_ENDPOINT_IPS: &str = "no-endpoint-services";
const NO_ENDPOINT_NODE_PORTS: &str = "no-endpoint-nodeports";

fn parts(port: &ServicePort) -> Parts {
    let mut parts = Parts::default();
    let ip_key = format!("{} . {} . {}", port.cluster_ip, port.protocol, port.port);
    if port.internal.is_empty() {
        parts.elements.push(Element {
            container: NO_ENDPOINT_IPS,
            key: ip_key,
            verdict: None,
        });
    } else {
        parts.elements.push(Element {
            container: SERVICE_IPS,
            key: ip_key,
            verdict: Some(format!("goto {}", service_chain(port))),
        });
        parts
            .chains
            .push(pick_chain(&service_chain(port), port, &port.internal));
    }
    if let Some(node_port) = port.node_port {
        let key = format!("{} . {node_port}", port.protocol);
        if port.external.is_empty() {
            parts.elements.push(Element {
                container: NO_ENDPOINT_NODE_PORTS,
                key,
                verdict: None,
            });
        } else {
            parts.elements.push(Element {
                container: SERVICE_NODE_PORTS,
                key,
                verdict: Some(format!("goto {}", external_chain(port))),
            });
            let mut rules = Vec::new();
            if !port.external_local {
                rules.push("jump mark-for-masquerade".to_string());
            }
            if port.external_local || port.external != port.internal {
                // Node port traffic has endpoints of its own: a chain choosing among them.
                let chooser = format!("{}/external", service_chain(port));
                parts
                    .chains
                    .push(pick_chain(&chooser, port, &port.external));
                rules.push(format!("goto {chooser}"));
            } else {
                rules.push(format!("goto {}", service_chain(port)));
            }
            parts.chains.push((external_chain(port), rules));
        }
    }
    let mut endpoints: Vec<&Endpoint> = port.internal.iter().collect();
    for e in &port.external {
        if !endpoints.contains(&e) {
            endpoints.push(e);
        }
    }
    for e in endpoints {
        let mut rules = vec![format!("ip saddr {} jump mark-for-masquerade", e.ip)];
        if let Some(seconds) = port.affinity_seconds {
            parts.sets.push((affinity_set(port, e), seconds));
            rules.push(format!("update @{} {{ ip saddr }}", affinity_set(port, e)));
        }
        rules.push(format!(
            "meta l4proto {} dnat to {}:{}",
            port.protocol, e.ip, e.port
        ));
        parts.chains.push((endpoint_chain(port, e), rules));
    }
    parts
}

/// A chain sending a connection to one of `endpoints`: the affinity one first, then at random.
fn pick_chain(name: &str, port: &ServicePort, endpoints: &[Endpoint]) -> (String, Vec<String>) {
    let mut rules = Vec::new();
    if port.affinity_seconds.is_some() {
        for e in endpoints {
            rules.push(format!(
                "ip saddr @{} goto {}",
                affinity_set(port, e),
                endpoint_chain(port, e)
            ));
        }
    }
    if let [only] = endpoints {
        // One endpoint needs no choice (and no anonymous map, which costs the kernel a set
        // object per Service).
        rules.push(format!("goto {}", endpoint_chain(port, only)));
    } else {
        let choices: Vec<String> = endpoints
            .iter()
            .enumerate()
            .map(|(i, e)| format!("{i} : goto {}", endpoint_chain(port, e)))
            .collect();
        rules.push(format!(
            "numgen random mod {} vmap {{ {} }}",
            endpoints.len(),
            choices.join(", ")
        ));
    }
    (name.to_string(), rules)
}

/// The whole document: the table is created if missing, deleted, and written anew, all in
/// one transaction.
pub fn render(ports: &[ServicePort]) -> String {
    let all: Vec<Parts> = ports.iter().map(parts).collect();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "table ip {TABLE}\ndelete table ip {TABLE}\ntable ip {TABLE} {{"
    );
    for (container, ty, is_map) in [
        (
            SERVICE_IPS,
            "ipv4_addr . inet_proto . inet_service : verdict",
            true,
        ),
        (
            SERVICE_NODE_PORTS,
            "inet_proto . inet_service : verdict",
            true,
        ),
        (
            NO_ENDPOINT_IPS,
            "ipv4_addr . inet_proto . inet_service",
            false,
        ),
        (NO_ENDPOINT_NODE_PORTS, "inet_proto . inet_service", false),
    ] {
        let elements: Vec<String> = all
            .iter()
            .flat_map(|p| &p.elements)
            .filter(|e| e.container == container)
            .map(Element::text)
            .collect();
        let kind = if is_map { "map" } else { "set" };
        let _ = writeln!(out, "\t{kind} {container} {{\n\t\ttype {ty}");
        if !elements.is_empty() {
            let _ = writeln!(out, "\t\telements = {{ {} }}", elements.join(", "));
        }
        out.push_str("\t}\n");
    }
    render_hooks(&mut out);
    for part in &all {
        for (name, seconds) in &part.sets {
            let _ = writeln!(
                out,
                "\tset {name} {{\n\t\t{}\n\t}}",
                affinity_spec(*seconds)
            );
        }
        for (name, rules) in &part.chains {
            let _ = writeln!(out, "\tchain {name} {{");
            for rule in rules {
                let _ = writeln!(out, "\t\t{rule}");
            }
            out.push_str("\t}\n");
        }
    }
    out.push_str("}\n");
    out
}

fn affinity_spec(seconds: u32) -> String {
    format!("type ipv4_addr; flags dynamic,timeout; timeout {seconds}s;")
}

/// The document that turns the table written for `old` into the one for `new`, touching only
/// the Service ports that changed: their elements, sets and chains are replaced; chains and
/// sets no port uses any more are emptied, then deleted. None when nothing changed. One
/// transaction, like [`render`], but its size follows the change, not the number of Services.
pub fn render_changes(old: &[ServicePort], new: &[ServicePort]) -> Option<String> {
    use std::collections::BTreeMap;
    let before: BTreeMap<&str, &ServicePort> = old.iter().map(|p| (p.id.as_str(), p)).collect();
    let after: BTreeMap<&str, &ServicePort> = new.iter().map(|p| (p.id.as_str(), p)).collect();
    let mut gone = Parts::default();
    let mut written = Parts::default();
    for (id, port) in &before {
        match after.get(id) {
            Some(now) if *now == *port => {}
            _ => {
                let p = parts(port);
                gone.elements.extend(p.elements);
                gone.sets.extend(p.sets);
                gone.chains.extend(p.chains);
            }
        }
    }
    for (id, port) in &after {
        if before.get(id) == Some(port) {
            continue;
        }
        let p = parts(port);
        written.elements.extend(p.elements);
        written.sets.extend(p.sets);
        written.chains.extend(p.chains);
    }
    if gone == Parts::default() && written == Parts::default() {
        return None;
    }
    let mut out = String::new();
    // Elements first: nothing then refers to a chain about to go.
    for e in gone
        .elements
        .iter()
        .filter(|e| !written.elements.contains(e))
    {
        let _ = writeln!(
            out,
            "delete element ip {TABLE} {} {{ {} }}",
            e.container, e.key
        );
    }
    for (name, seconds) in &written.sets {
        let _ = writeln!(
            out,
            "add set ip {TABLE} {name} {{ {} }}",
            affinity_spec(*seconds)
        );
    }
    for (name, _) in &written.chains {
        let _ = writeln!(out, "add chain ip {TABLE} {name}");
    }
    for (name, rules) in &written.chains {
        let _ = writeln!(out, "flush chain ip {TABLE} {name}");
        for rule in rules {
            let _ = writeln!(out, "add rule ip {TABLE} {name} {rule}");
        }
    }
    let stale: Vec<&String> = gone
        .chains
        .iter()
        .map(|(name, _)| name)
        .filter(|name| !written.chains.iter().any(|(n, _)| n == *name))
        .collect();
    // Emptied first, so no stale chain still jumps to another when it is deleted.
    for name in &stale {
        let _ = writeln!(out, "flush chain ip {TABLE} {name}");
    }
    for name in &stale {
        let _ = writeln!(out, "delete chain ip {TABLE} {name}");
    }
    for (name, _) in gone
        .sets
        .iter()
        .filter(|(n, _)| !written.sets.iter().any(|(w, _)| w == n))
    {
        let _ = writeln!(out, "delete set ip {TABLE} {name}");
    }
    for e in written
        .elements
        .iter()
        .filter(|e| !gone.elements.contains(e))
    {
        let _ = writeln!(
            out,
            "add element ip {TABLE} {} {{ {} }}",
            e.container,
            e.text()
        );
    }
    Some(out)
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

/// The document that removes the proxy's table (when proxying is turned off).
pub fn remove() -> String {
    format!("table ip {TABLE}\ndelete table ip {TABLE}\n")
}
