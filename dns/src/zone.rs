//! The cluster's DNS zone as the Kubernetes DNS specification (1.0.1) defines it, built from
//! Services and EndpointSlices and answered without I/O.
//!
//! - `<svc>.<ns>.svc.<zone>`: A with the cluster IP; for a headless Service, an A per ready
//!   endpoint; for an ExternalName Service, a CNAME to the external name.
//! - `<hostname>.<svc>.<ns>.svc.<zone>`: A for each ready endpoint of a headless Service, named
//!   by its hostname (or its address with dashes, `10-244-1-5`).
//! - `_<port>._<proto>.<svc>.<ns>.svc.<zone>`: SRV for each named port, pointing at the
//!   Service (or at each endpoint's name, for a headless one).
//! - PTR for cluster IPs and for headless endpoints with a hostname.
//! - `dns-version.<zone>`: TXT with the specification's version.
//! - `<a-b-c-d>.<ns>.pod.<zone>`: A with that address, as CoreDNS's `pods insecure` mode.
//!
//! A name under the zone with no record of the asked type is NODATA when the name exists
//! (also as a parent of another name, like `<ns>.svc.<zone>`), NXDOMAIN otherwise.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;

use keel_types::k8s_openapi::api::core::v1::Service;
use keel_types::k8s_openapi::api::discovery::v1::EndpointSlice;

/// The specification's version, served as TXT at `dns-version.<zone>`.
pub const SPEC_VERSION: &str = "1.0.1";
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// A record, owner names lower-case and without the final dot.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Record {
    A(String, Ipv4Addr),
    Cname(String, String),
    Srv {
        name: String,
        priority: u16,
        weight: u16,
        port: u16,
        target: String,
    },
    Ptr(String, String),
    Txt(String, String),
}

impl Record {
    fn owner(&self) -> &str {
        match self {
            Record::A(n, _) | Record::Cname(n, _) | Record::Ptr(n, _) | Record::Txt(n, _) => n,
            Record::Srv { name, .. } => name,
        }
    }

    fn kind(&self) -> QueryType {
        match self {
            Record::A(..) => QueryType::A,
            Record::Cname(..) => QueryType::Cname,
            Record::Srv { .. } => QueryType::Srv,
            Record::Ptr(..) => QueryType::Ptr,
            Record::Txt(..) => QueryType::Txt,
        }
    }
}

/// The types of question the zone tells apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryType {
    A,
    Aaaa,
    Cname,
    Srv,
    Ptr,
    Txt,
    Any,
    Other,
}

/// What the zone says to one question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Records(Vec<Record>),
    /// The name exists; no record of that type.
    NoData,
    NxDomain,
    /// Not under the zone (nor a reverse name the zone holds): for the upstream servers.
    Elsewhere,
}

/// How many CNAMEs in a row an answer follows (a loop of ExternalName Services ends here).
pub const MAX_CNAME_CHAIN: usize = 8;

/// An answer with its CNAMEs followed as far as the zone goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub answer: Answer,
    /// The CNAME target outside the zone the answer ends at, if it does.
    pub external: Option<String>,
}

/// The target of the CNAME among `records`, if there is one.
fn cname_target(records: &[Record]) -> Option<String> {
    records.iter().find_map(|r| match r {
        Record::Cname(_, target) => Some(target.clone()),
        _ => None,
    })
}

/// The zone at one moment.
#[derive(Debug, Clone, Default)]
pub struct Zone {
    domain: String,
    records: HashMap<String, Vec<Record>>,
    /// Every name that exists, owners and their parents under the zone.
    names: BTreeSet<String>,
}

fn dashed(ip: Ipv4Addr) -> String {
    ip.to_string().replace('.', "-")
}

fn reverse_name(ip: Ipv4Addr) -> String {
    let [a, b, c, d] = ip.octets();
    format!("{d}.{c}.{b}.{a}.in-addr.arpa")
}

/// Lower-cases and drops the final dot.
pub fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

impl Zone {
    /// The zone `domain` (`cluster.local`) for these Services and their EndpointSlices.
    pub fn build(
        domain: &str,
        services: &[std::sync::Arc<Service>],
        slices: &[std::sync::Arc<EndpointSlice>],
    ) -> Zone {
        let mut zone = Zone {
            domain: normalize(domain),
            ..Zone::default()
        };
        let mut slices_of: BTreeMap<(String, String), Vec<&EndpointSlice>> = BTreeMap::new();
        for slice in slices {
            if let Some(service) = slice
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(SERVICE_NAME_LABEL))
            {
                slices_of
                    .entry((
                        slice.metadata.namespace.clone().unwrap_or_default(),
                        service.clone(),
                    ))
                    .or_default()
                    .push(slice);
            }
        }
        zone.add(Record::Txt(
            format!("dns-version.{}", zone.domain),
            SPEC_VERSION.into(),
        ));
        for service in services {
            let namespace = service.metadata.namespace.clone().unwrap_or_default();
            let name = service.metadata.name.clone().unwrap_or_default();
            let slices = slices_of
                .get(&(namespace.clone(), name.clone()))
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            zone.add_service(service, &namespace, &name, slices);
        }
        zone
    }

    fn add(&mut self, record: Record) {
        let owner = record.owner().to_string();
        // The owner and each parent down to the zone (or to in-addr.arpa) exist.
        let mut name = owner.as_str();
        loop {
            self.names.insert(name.to_string());
            if name == self.domain || name == "in-addr.arpa" {
                break;
            }
            match name.split_once('.') {
                Some((_, parent)) => name = parent,
                None => break,
            }
        }
        let list = self.records.entry(owner).or_default();
        if !list.contains(&record) {
            list.push(record);
        }
    }

    fn add_service(
        &mut self,
        service: &Service,
        namespace: &str,
        name: &str,
        slices: &[&EndpointSlice],
    ) {
        let Some(spec) = service.spec.as_ref() else {
            return;
        };
        let fqdn = format!("{name}.{namespace}.svc.{}", self.domain);
        if spec.type_.as_deref() == Some("ExternalName") {
            if let Some(external) = spec.external_name.as_deref().filter(|e| !e.is_empty()) {
                self.add(Record::Cname(fqdn, normalize(external)));
            }
            return;
        }
        let ports: Vec<(String, String, u16)> = spec
            .ports
            .iter()
            .flatten()
            .filter_map(|p| {
                let port_name = p.name.clone().filter(|n| !n.is_empty())?;
                let protocol = p.protocol.as_deref().unwrap_or("TCP").to_ascii_lowercase();
                Some((port_name, protocol, u16::try_from(p.port).ok()?))
            })
            .collect();
        let cluster_ip = spec
            .cluster_ip
            .as_deref()
            .and_then(|ip| ip.parse::<Ipv4Addr>().ok());
        match cluster_ip {
            Some(ip) => {
                self.add(Record::A(fqdn.clone(), ip));
                self.add(Record::Ptr(reverse_name(ip), fqdn.clone()));
                for (port, protocol, number) in &ports {
                    self.add(Record::Srv {
                        name: format!("_{port}._{protocol}.{fqdn}"),
                        priority: 0,
                        weight: 100,
                        port: *number,
                        target: fqdn.clone(),
                    });
                }
            }
            None if spec.cluster_ip.as_deref() == Some("None") => {
                self.add_headless(&fqdn, &ports, slices);
            }
            // Not allocated yet: nothing to say.
            None => {
                self.names.insert(fqdn);
            }
        }
    }

    fn add_headless(
        &mut self,
        fqdn: &str,
        ports: &[(String, String, u16)],
        slices: &[&EndpointSlice],
    ) {
        // The Service's name exists even with no endpoint (NODATA, not NXDOMAIN).
        self.names.insert(fqdn.to_string());
        for slice in slices {
            if slice.address_type != "IPv4" {
                continue;
            }
            for endpoint in &slice.endpoints {
                let ready = endpoint
                    .conditions
                    .as_ref()
                    .and_then(|c| c.ready)
                    .unwrap_or(true);
                if !ready {
                    continue;
                }
                for address in &endpoint.addresses {
                    let Ok(ip) = address.parse::<Ipv4Addr>() else {
                        continue;
                    };
                    let host = endpoint
                        .hostname
                        .clone()
                        .filter(|h| !h.is_empty())
                        .map(|h| h.to_ascii_lowercase());
                    let endpoint_name =
                        format!("{}.{fqdn}", host.clone().unwrap_or_else(|| dashed(ip)));
                    self.add(Record::A(fqdn.to_string(), ip));
                    self.add(Record::A(endpoint_name.clone(), ip));
                    if host.is_some() {
                        self.add(Record::Ptr(reverse_name(ip), endpoint_name.clone()));
                    }
                    for (port, protocol, _) in ports {
                        // The endpoint's own port for this Service port, by name.
                        let number = slice
                            .ports
                            .iter()
                            .flatten()
                            .find(|p| p.name.as_deref() == Some(port.as_str()))
                            .and_then(|p| p.port)
                            .and_then(|p| u16::try_from(p).ok());
                        if let Some(number) = number {
                            self.add(Record::Srv {
                                name: format!("_{port}._{protocol}.{fqdn}"),
                                priority: 0,
                                weight: 100,
                                port: number,
                                target: endpoint_name.clone(),
                            });
                        }
                    }
                }
            }
        }
    }

    /// Whether `name` (normalized) is this zone's business.
    fn in_zone(&self, name: &str) -> bool {
        name == self.domain || name.ends_with(&format!(".{}", self.domain))
    }

    /// The answer to a question of type `qtype` about `qname`.
    pub fn lookup(&self, qname: &str, qtype: QueryType) -> Answer {
        let name = normalize(qname);
        let reverse = name.ends_with(".in-addr.arpa");
        let held_reverse = reverse && self.records.contains_key(&name);
        if !(self.in_zone(&name) || held_reverse) {
            return Answer::Elsewhere;
        }
        if let Some(ip) = self.pod_address(&name) {
            return match qtype {
                QueryType::A | QueryType::Any => Answer::Records(vec![Record::A(name, ip)]),
                _ => Answer::NoData,
            };
        }
        let Some(records) = self.records.get(&name) else {
            return if self.names.contains(&name) {
                Answer::NoData
            } else {
                Answer::NxDomain
            };
        };
        let mut matching: Vec<Record> = records
            .iter()
            .filter(|r| {
                qtype == QueryType::Any || r.kind() == qtype || r.kind() == QueryType::Cname
            })
            .cloned()
            .collect();
        matching.sort();
        if matching.is_empty() {
            Answer::NoData
        } else {
            Answer::Records(matching)
        }
    }

    /// As [`Zone::lookup`], with a CNAME's target followed as CoreDNS's kubernetes plugin
    /// follows an ExternalName Service's: within the zone, its records are added to the
    /// answer (a chain of at most [`MAX_CNAME_CHAIN`] links); a target outside the zone is
    /// returned for the server to ask its upstream servers about.
    pub fn resolve(&self, qname: &str, qtype: QueryType) -> Resolved {
        let mut answer = self.lookup(qname, qtype);
        let mut external = None;
        if let Answer::Records(records) = &mut answer {
            if !matches!(qtype, QueryType::Cname | QueryType::Any) {
                let mut target = cname_target(records);
                for _ in 0..MAX_CNAME_CHAIN {
                    let Some(next) = target.take() else { break };
                    match self.lookup(&next, qtype) {
                        Answer::Records(more) => {
                            target = cname_target(&more);
                            records.extend(more);
                        }
                        Answer::Elsewhere => {
                            external = Some(next);
                            break;
                        }
                        Answer::NoData | Answer::NxDomain => break,
                    }
                }
            }
        }
        Resolved { answer, external }
    }

    /// `a-b-c-d.<ns>.pod.<zone>` → a.b.c.d.
    fn pod_address(&self, name: &str) -> Option<Ipv4Addr> {
        let rest = name.strip_suffix(&format!(".pod.{}", self.domain))?;
        let (host, namespace) = rest.split_once('.')?;
        if namespace.contains('.') {
            return None;
        }
        host.replace('-', ".").parse().ok()
    }
}
