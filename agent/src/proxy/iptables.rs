//! The proxy's rules where nftables cannot be used: kube-proxy's iptables layout, written with
//! `iptables-restore --noflush` (one transaction per table), for hosts whose kernel or tools
//! lack nftables.
//!
//! In the nat table, `KEEL-SERVICES` (jumped to from PREROUTING and OUTPUT) matches each
//! cluster IP and port and goes to the Service port's `KEEL-SVC-…` chain, which picks an
//! endpoint (the one a client's ClientIP affinity remembers, else at random with
//! `-m statistic`, each rule taking its share of what the rules before it left), whose
//! `KEEL-SEP-…` chain DNATs; node ports on local addresses go through `KEEL-NODEPORTS` to a
//! `KEEL-EXT-…` chain. Marking and masquerading are the nftables ruleset's (node port traffic
//! unless externalTrafficPolicy is Local, and hairpin). In the filter table, `KEEL-REJECT`
//! refuses new connections to Service ports without endpoints (host unreachable). Unlike the
//! nftables table, the first packet's cost grows with the number of Services: that is the
//! layout this mode exists to be compatible with.

use std::collections::BTreeSet;
use std::fmt::Write;
use std::process::Stdio;

use super::model::{Endpoint, ServicePort};
use super::tool::Tools;
use sha2::{Digest, Sha256};

/// Every chain of ours starts with this.
pub const PREFIX: &str = "KEEL-";
const SERVICES: &str = "KEEL-SERVICES";
const NODE_PORTS: &str = "KEEL-NODEPORTS";
const POSTROUTING: &str = "KEEL-POSTROUTING";
const MARK_MASQ: &str = "KEEL-MARK-MASQ";
const REJECT: &str = "KEEL-REJECT";
/// The packet mark bit asking for masquerade on the way out (kube-proxy's).
const MASQUERADE_MARK: &str = "0x4000";

/// The rules in the built-in chains that lead into ours: table, chain, and the rule.
pub const JUMPS: &[(&str, &str, &[&str])] = &[
    ("nat", "PREROUTING", &["-j", SERVICES]),
    ("nat", "OUTPUT", &["-j", SERVICES]),
    ("nat", "POSTROUTING", &["-j", POSTROUTING]),
    (
        "filter",
        "INPUT",
        &["-m", "conntrack", "--ctstate", "NEW", "-j", REJECT],
    ),
    (
        "filter",
        "FORWARD",
        &["-m", "conntrack", "--ctstate", "NEW", "-j", REJECT],
    ),
    (
        "filter",
        "OUTPUT",
        &["-m", "conntrack", "--ctstate", "NEW", "-j", REJECT],
    ),
];

/// A chain name for `key`, short enough for iptables (28 characters): the kind and the first
/// 64 bits of the key's SHA-256, as kube-proxy names its chains.
fn hashed(kind: &str, key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    let mut name = format!("{PREFIX}{kind}-");
    for byte in &digest[..8] {
        let _ = write!(name, "{byte:02X}");
    }
    name
}

fn service_chain(port: &ServicePort) -> String {
    hashed("SVC", &port.id)
}

fn external_chain(port: &ServicePort) -> String {
    hashed("EXT", &port.id)
}

fn endpoint_chain(port: &ServicePort, endpoint: &Endpoint) -> String {
    hashed(
        "SEP",
        &format!("{}__{}/{}", port.id, endpoint.ip, endpoint.port),
    )
}

fn matches_port(protocol: &str, port: u16) -> String {
    format!("-p {protocol} -m {protocol} --dport {port}")
}

/// The iptables-restore document for `ports`, given the chains of ours each table already
/// has (`(table, chain)`): every chain is declared (which empties it) and written anew, and
/// chains no longer needed are emptied and deleted.
pub fn render(ports: &[ServicePort], existing: &BTreeSet<(String, String)>) -> String {
    let mut nat_chains: Vec<String> = [SERVICES, NODE_PORTS, POSTROUTING, MARK_MASQ]
        .map(str::to_owned)
        .to_vec();
    let mut nat = vec![
        format!("-A {MARK_MASQ} -j MARK --or-mark {MASQUERADE_MARK}"),
        format!("-A {POSTROUTING} -m mark ! --mark {MASQUERADE_MARK}/{MASQUERADE_MARK} -j RETURN"),
        format!("-A {POSTROUTING} -j MARK --xor-mark {MASQUERADE_MARK}"),
        format!("-A {POSTROUTING} -j MASQUERADE --random-fully"),
    ];
    let mut filter = Vec::new();
    for port in ports {
        let service = matches_port(port.protocol, port.port);
        if port.internal.is_empty() {
            filter.push(format!(
                "-A {REJECT} -d {}/32 {service} -j REJECT --reject-with icmp-host-unreachable",
                port.cluster_ip
            ));
        } else {
            let chain = service_chain(port);
            nat.push(format!(
                "-A {SERVICES} -d {}/32 {service} -j {chain}",
                port.cluster_ip
            ));
            nat.extend(pick(&chain, port, &port.internal));
            nat_chains.push(chain);
        }
        if let Some(node_port) = port.node_port {
            let node = matches_port(port.protocol, node_port);
            if port.external.is_empty() {
                filter.push(format!(
                    "-A {REJECT} -m addrtype --dst-type LOCAL {node} -j REJECT --reject-with icmp-host-unreachable"
                ));
            } else {
                let chain = external_chain(port);
                nat.push(format!("-A {NODE_PORTS} {node} -j {chain}"));
                if !port.external_local {
                    nat.push(format!("-A {chain} -j {MARK_MASQ}"));
                }
                nat.extend(pick(&chain, port, &port.external));
                nat_chains.push(chain);
            }
        }
        let mut endpoints: Vec<&Endpoint> = port.internal.iter().collect();
        for e in &port.external {
            if !endpoints.contains(&e) {
                endpoints.push(e);
            }
        }
        for e in endpoints {
            let chain = endpoint_chain(port, e);
            nat.push(format!("-A {chain} -s {}/32 -j {MARK_MASQ}", e.ip));
            let remember = if port.affinity_seconds.is_some() {
                format!(" -m recent --name {chain} --set")
            } else {
                String::new()
            };
            nat.push(format!(
                "-A {chain} -p {}{remember} -j DNAT --to-destination {}:{}",
                port.protocol, e.ip, e.port
            ));
            nat_chains.push(chain);
        }
    }
    // Node ports last, as kube-proxy orders them: a cluster IP's own rule wins.
    nat.push(format!(
        "-A {SERVICES} -m addrtype --dst-type LOCAL -j {NODE_PORTS}"
    ));
    let mut out = String::new();
    table(&mut out, "nat", &nat_chains, &nat, existing);
    table(&mut out, "filter", &[REJECT.to_owned()], &filter, existing);
    out
}

/// One table's section: declarations (ours, and stale ones, which empties them), rules, the
/// stale chains' deletion, COMMIT.
fn table(
    out: &mut String,
    name: &str,
    chains: &[String],
    rules: &[String],
    existing: &BTreeSet<(String, String)>,
) {
    let stale: Vec<&String> = existing
        .iter()
        .filter(|(t, c)| t == name && !chains.contains(c))
        .map(|(_, c)| c)
        .collect();
    let _ = writeln!(out, "*{name}");
    for chain in chains.iter().chain(stale.iter().copied()) {
        let _ = writeln!(out, ":{chain} - [0:0]");
    }
    for rule in rules {
        let _ = writeln!(out, "{rule}");
    }
    for chain in stale {
        let _ = writeln!(out, "-X {chain}");
    }
    let _ = writeln!(out, "COMMIT");
}

/// A Service port's chain choosing among `endpoints`: the one a client's affinity remembers,
/// else at random, each rule taking 1/k of what is left for the k endpoints still to come.
fn pick(chain: &str, port: &ServicePort, endpoints: &[Endpoint]) -> Vec<String> {
    let mut rules = Vec::new();
    if let Some(seconds) = port.affinity_seconds {
        for e in endpoints {
            let target = endpoint_chain(port, e);
            rules.push(format!(
                "-A {chain} -m recent --name {target} --rcheck --seconds {seconds} --reap -j {target}"
            ));
        }
    }
    let n = endpoints.len();
    for (i, e) in endpoints.iter().enumerate() {
        let target = endpoint_chain(port, e);
        let left = n - i;
        if left > 1 {
            rules.push(format!(
                "-A {chain} -m statistic --mode random --probability {:.10} -j {target}",
                1.0 / left as f64
            ));
        } else {
            rules.push(format!("-A {chain} -j {target}"));
        }
    }
    rules
}

/// Our chains in `iptables-save` output: `(table, chain)`.
pub fn chains_in(saved: &str) -> BTreeSet<(String, String)> {
    let mut table = String::new();
    let mut found = BTreeSet::new();
    for line in saved.lines() {
        if let Some(name) = line.strip_prefix('*') {
            table = name.trim().to_owned();
        } else if let Some(declared) = line.strip_prefix(':') {
            if let Some(chain) = declared.split_whitespace().next() {
                if chain.starts_with(PREFIX) {
                    found.insert((table.clone(), chain.to_owned()));
                }
            }
        }
    }
    found
}

/// Runs the iptables tools in the agent's own network namespace (the node's), or through a
/// command that enters another (`ip netns exec <name> …`).
#[derive(Debug, Clone, Default)]
pub struct Iptables {
    tools: Tools,
}

impl Iptables {
    /// The tools run inside the named network namespace.
    pub fn in_namespace(namespace: &str) -> Self {
        Iptables {
            tools: Tools::in_namespace(namespace),
        }
    }

    /// Whether `iptables-restore` can be run here.
    pub async fn available(&self) -> bool {
        self.tools.available("iptables-restore").await
    }

    /// Writes the rules for `ports`: each table in one `iptables-restore` transaction, then
    /// the jumps into our chains where they are missing.
    pub async fn sync(&self, ports: &[ServicePort]) -> Result<(), String> {
        let saved = self.tools.run("iptables-save", &[], None).await?;
        let document = render(ports, &chains_in(&saved));
        self.tools
            .run("iptables-restore", &["--noflush"], Some(&document))
            .await?;
        for (table, chain, rule) in JUMPS {
            let check = self
                .tools
                .command("iptables")
                .args(["-w", "-t", table, "-C", chain])
                .args(*rule)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .await
                .map_err(|e| format!("running iptables: {e}"))?;
            if !check.success() {
                let mut args = vec!["-w", "-t", table, "-I", chain];
                args.extend_from_slice(rule);
                self.tools.run("iptables", &args, None).await?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn port(endpoints: &[[u8; 4]], affinity: Option<u32>) -> ServicePort {
        let endpoints: Vec<Endpoint> = endpoints
            .iter()
            .map(|ip| Endpoint {
                ip: Ipv4Addr::from(*ip),
                port: 8080,
                local: false,
            })
            .collect();
        ServicePort {
            id: "shop/web/tcp/80".into(),
            protocol: "tcp",
            cluster_ip: Ipv4Addr::new(10, 96, 0, 20),
            port: 80,
            node_port: Some(30080),
            internal: endpoints.clone(),
            external: endpoints,
            external_local: false,
            affinity_seconds: affinity,
        }
    }

    #[test]
    fn chain_names_fit_iptables_and_differ_per_port_and_endpoint() {
        let p = port(&[[10, 244, 1, 5]], None);
        let names = [
            service_chain(&p),
            external_chain(&p),
            endpoint_chain(&p, &p.internal[0]),
        ];
        assert!(names.iter().all(|n| n.len() <= 28), "{names:?}");
        assert_eq!(names[0], service_chain(&p), "stable");
        assert_ne!(names[0], names[1]);
    }

    #[test]
    fn endpoints_are_chosen_evenly_and_the_last_takes_what_is_left() {
        let p = port(&[[10, 244, 1, 5], [10, 244, 1, 6], [10, 244, 1, 7]], None);
        let doc = render(std::slice::from_ref(&p), &BTreeSet::new());
        let svc = service_chain(&p);
        let picks: Vec<&str> = doc
            .lines()
            .filter(|l| l.starts_with(&format!("-A {svc} ")))
            .collect();
        assert_eq!(picks.len(), 3, "{doc}");
        assert!(
            picks[0].contains("--probability 0.3333333333"),
            "{}",
            picks[0]
        );
        assert!(
            picks[1].contains("--probability 0.5000000000"),
            "{}",
            picks[1]
        );
        assert!(!picks[2].contains("statistic"), "{}", picks[2]);
        assert!(doc.contains(&format!(
            "-A {SERVICES} -d 10.96.0.20/32 -p tcp -m tcp --dport 80 -j {svc}"
        )));
        assert!(doc.contains(&format!(
            "-A {NODE_PORTS} -p tcp -m tcp --dport 30080 -j {}",
            external_chain(&p)
        )));
        let last_services_rule = doc
            .lines()
            .rfind(|l| l.starts_with(&format!("-A {SERVICES} ")));
        assert_eq!(
            last_services_rule,
            Some(format!("-A {SERVICES} -m addrtype --dst-type LOCAL -j {NODE_PORTS}").as_str())
        );
    }

    #[test]
    fn affinity_is_checked_before_the_random_choice_and_set_on_dnat() {
        let p = port(&[[10, 244, 1, 5], [10, 244, 1, 6]], Some(600));
        let doc = render(std::slice::from_ref(&p), &BTreeSet::new());
        let sep = endpoint_chain(&p, &p.internal[0]);
        let svc: Vec<&str> = doc
            .lines()
            .filter(|l| l.starts_with(&format!("-A {} ", service_chain(&p))))
            .collect();
        assert!(svc[0].contains(&format!("--name {sep} --rcheck --seconds 600 --reap")));
        assert!(svc[2].contains("statistic"));
        assert!(doc.contains(&format!(
            "-A {sep} -p tcp -m recent --name {sep} --set -j DNAT --to-destination 10.244.1.5:8080"
        )));
    }

    #[test]
    fn ports_without_endpoints_are_rejected_and_stale_chains_deleted() {
        let p = port(&[], None);
        let stale = hashed("SVC", "gone/svc/tcp/1");
        let existing = BTreeSet::from([
            ("nat".to_string(), stale.clone()),
            ("nat".to_string(), SERVICES.to_string()),
        ]);
        let doc = render(&[p], &existing);
        assert!(doc.contains(
            "-A KEEL-REJECT -d 10.96.0.20/32 -p tcp -m tcp --dport 80 -j REJECT --reject-with icmp-host-unreachable"
        ));
        assert!(doc.contains(
            "-A KEEL-REJECT -m addrtype --dst-type LOCAL -p tcp -m tcp --dport 30080 -j REJECT"
        ));
        assert!(doc.contains(&format!(":{stale} - [0:0]\n")), "{doc}");
        assert!(doc.contains(&format!("-X {stale}\nCOMMIT")), "{doc}");
        assert!(!doc.contains(&format!("-X {SERVICES}")));
    }

    #[test]
    fn our_chains_are_read_back_from_iptables_save() {
        let saved = "*nat\n:PREROUTING ACCEPT [0:0]\n:KEEL-SERVICES - [0:0]\n-A PREROUTING -j KEEL-SERVICES\nCOMMIT\n*filter\n:KEEL-REJECT - [0:0]\nCOMMIT\n";
        assert_eq!(
            chains_in(saved),
            BTreeSet::from([
                ("nat".to_string(), "KEEL-SERVICES".to_string()),
                ("filter".to_string(), "KEEL-REJECT".to_string()),
            ])
        );
    }
}
