//! What a Service's create, update or delete claims and gives back: its cluster IP and node
//! ports, decided from the object alone (the store is asked later, in `mod.rs`).
//!
//! Kubernetes' rules, kept here: ExternalName Services and headless ones (`clusterIP: None`)
//! get no cluster IP; NodePort Services, and LoadBalancer ones unless
//! `allocateLoadBalancerNodePorts` is false, get a node port for every port; a user may choose
//! either number, which must then be in range and free. On update, a cluster IP or node port the
//! request leaves empty is carried over from the stored object, as kube-apiserver does, so
//! `kubectl replace` of a manifest without them keeps them.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use keel_types::field::{FieldError, Rendered};
use keel_types::FieldPath;
use serde_json::{json, Value};

use super::range::{IpRange, PortRange};

/// How a number is to be got: the one the user wrote, or any free one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want<T> {
    Chosen(T),
    Any,
}

/// What one write of a Service claims and releases.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The cluster IP to claim, if the Service needs one it does not hold yet.
    pub ip: Option<Want<Ipv4Addr>>,
    /// The node ports to claim: the index of the Service port each is for, and how.
    pub node_ports: Vec<(usize, Want<u16>)>,
    /// Addresses and ports the stored object held that the new one does not.
    pub release_ip: Option<Ipv4Addr>,
    pub release_ports: Vec<u16>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.ip.is_none()
            && self.node_ports.is_empty()
            && self.release_ip.is_none()
            && self.release_ports.is_empty()
    }
}

fn spec_str<'a>(svc: &'a Value, field: &str) -> &'a str {
    svc.pointer(&format!("/spec/{field}"))
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn service_type(svc: &Value) -> &str {
    match spec_str(svc, "type") {
        "" => "ClusterIP",
        t => t,
    }
}

/// Whether `svc` is given a cluster IP.
pub fn needs_cluster_ip(svc: &Value) -> bool {
    service_type(svc) != "ExternalName" && spec_str(svc, "clusterIP") != "None"
}

/// Whether `svc` is given a node port for each of its ports.
pub fn needs_node_ports(svc: &Value) -> bool {
    match service_type(svc) {
        "NodePort" => true,
        "LoadBalancer" => svc
            .pointer("/spec/allocateLoadBalancerNodePorts")
            .and_then(Value::as_bool)
            .unwrap_or(true),
        _ => false,
    }
}

fn ports(svc: &Value) -> &[Value] {
    svc.pointer("/spec/ports")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn node_port(port: &Value) -> u16 {
    port.get("nodePort")
        .and_then(Value::as_u64)
        .and_then(|p| u16::try_from(p).ok())
        .unwrap_or(0)
}

/// The node ports a stored Service holds.
pub fn held_node_ports(svc: &Value) -> BTreeSet<u16> {
    if !needs_node_ports(svc) {
        return BTreeSet::new();
    }
    ports(svc)
        .iter()
        .map(node_port)
        .filter(|p| *p != 0)
        .collect()
}

/// The cluster IP a stored Service holds.
pub fn held_cluster_ip(svc: &Value) -> Option<Ipv4Addr> {
    if !needs_cluster_ip(svc) {
        return None;
    }
    spec_str(svc, "clusterIP").parse().ok()
}

/// Before an update is validated: a cluster IP or node port the request leaves empty is the
/// stored one (when the Service keeps needing it), and a Service becoming ExternalName drops
/// the numbers it held.
pub fn carry_over(new: &mut Value, old: &Value) {
    if needs_cluster_ip(old) && needs_cluster_ip(new) && spec_str(new, "clusterIP").is_empty() {
        if let Some(spec) = new.get_mut("spec").and_then(Value::as_object_mut) {
            for field in ["clusterIP", "clusterIPs"] {
                if let Some(v) = old.pointer(&format!("/spec/{field}")) {
                    spec.insert(field.into(), v.clone());
                }
            }
        }
    }
    drop_type_dependent_fields(new, old);
    if needs_node_ports(old) && needs_node_ports(new) {
        // A port keeps its node port if the request names the same port and protocol.
        let key = |p: &Value| {
            (
                p.get("port").and_then(Value::as_i64).unwrap_or(0),
                p.get("protocol")
                    .and_then(Value::as_str)
                    .unwrap_or("TCP")
                    .to_string(),
            )
        };
        let old_ports: Vec<((i64, String), u16)> =
            ports(old).iter().map(|p| (key(p), node_port(p))).collect();
        if let Some(list) = new.pointer_mut("/spec/ports").and_then(Value::as_array_mut) {
            for port in list.iter_mut() {
                if node_port(port) != 0 {
                    continue;
                }
                let k = key(port);
                if let Some((_, held)) = old_ports.iter().find(|(ok, np)| *ok == k && *np != 0) {
                    port["nodePort"] = json!(held);
                }
            }
        }
    }
}

/// When an update changes the type, what only the old type had goes, unless the request
/// changed it itself (then validation judges it), as Kubernetes' dropTypeDependentFields does:
/// the cluster IP and IP families for an ExternalName Service, the node ports for a type that
/// has none, and the external traffic policy for a Service no longer reachable from outside.
/// A `kubectl apply` that changes only `type` therefore succeeds.
fn drop_type_dependent_fields(new: &mut Value, old: &Value) {
    let (new_type, old_type) = (service_type(new).to_string(), service_type(old));
    if new_type == old_type {
        return;
    }
    let Some(spec) = new.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    let unchanged = |spec: &serde_json::Map<String, Value>, field: &str| {
        spec.get(field) == old.pointer(&format!("/spec/{field}"))
    };
    if new_type == "ExternalName" {
        for field in ["clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"] {
            if unchanged(spec, field) {
                spec.remove(field);
            }
        }
    }
    if !matches!(new_type.as_str(), "NodePort" | "LoadBalancer") {
        let old_ports = ports(old);
        if let Some(list) = spec.get_mut("ports").and_then(Value::as_array_mut) {
            for (i, port) in list.iter_mut().enumerate() {
                let held = old_ports.get(i).map(node_port).unwrap_or(0);
                if held != 0 && node_port(port) == held {
                    if let Some(p) = port.as_object_mut() {
                        p.remove("nodePort");
                    }
                }
            }
        }
        for field in ["externalTrafficPolicy", "healthCheckNodePort"] {
            if unchanged(spec, field) {
                spec.remove(field);
            }
        }
    }
}

/// What writing `new` over `old` (None on create; `new` None on delete) claims and releases,
/// or the errors Kubernetes gives for numbers out of range or malformed.
pub fn plan(
    new: Option<&Value>,
    old: Option<&Value>,
    ips: &IpRange,
    node_ports: &PortRange,
) -> Result<Plan, Vec<FieldError>> {
    let mut plan = Plan::default();
    let mut errors = Vec::new();
    let old_ip = old.and_then(held_cluster_ip);
    let old_ports = old.map(held_node_ports).unwrap_or_default();
    let mut kept_ports = BTreeSet::new();
    let mut new_ip = None;
    if let Some(new) = new {
        if needs_cluster_ip(new) {
            let written = spec_str(new, "clusterIP");
            let path = FieldPath::new("spec").child("clusterIPs");
            if written.is_empty() {
                plan.ip = Some(Want::Any);
            } else {
                match written.parse::<Ipv4Addr>() {
                    Err(_) => errors.push(FieldError::invalid(
                        &path.index(0),
                        written,
                        "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
                    )),
                    Ok(ip) if Some(ip) == old_ip => new_ip = Some(ip),
                    Ok(ip) if ips.index_of(ip).is_none() => errors.push(FieldError::invalid(
                        &path,
                        Rendered(format!("[]string{{{:?}}}", written)),
                        format!(
                            "failed to allocate IP {ip}: the provided IP ({ip}) is not in the valid range. The range of valid IPs is {ips}"
                        ),
                    )),
                    Ok(ip) => {
                        new_ip = Some(ip);
                        plan.ip = Some(Want::Chosen(ip));
                    }
                }
            }
        }
        if needs_node_ports(new) {
            let mut chosen_here = BTreeSet::new();
            for (i, port) in ports(new).iter().enumerate() {
                let np = node_port(port);
                let path = FieldPath::new("spec")
                    .child("ports")
                    .index(i)
                    .child("nodePort");
                if np == 0 {
                    plan.node_ports.push((i, Want::Any));
                } else if old_ports.contains(&np) {
                    kept_ports.insert(np);
                } else if !node_ports.contains(np) {
                    errors.push(FieldError::invalid(
                        &path,
                        i64::from(np),
                        format!(
                            "provided port is not in the valid range. The range of valid ports is {node_ports}"
                        ),
                    ));
                } else if chosen_here.insert(np) {
                    // The same node port for two protocols of one Service is claimed once.
                    plan.node_ports.push((i, Want::Chosen(np)));
                    kept_ports.insert(np);
                }
            }
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    if old_ip.is_some() && old_ip != new_ip {
        plan.release_ip = old_ip;
    }
    plan.release_ports = old_ports.difference(&kept_ports).copied().collect();
    Ok(plan)
}

/// Writes the numbers got into the Service: `spec.clusterIP` and `clusterIPs`, its IP family,
/// and each port's `nodePort`.
pub fn fill(svc: &mut Value, ip: Option<Ipv4Addr>, node_ports: &[(usize, u16)]) {
    if let Some(spec) = svc.get_mut("spec").and_then(Value::as_object_mut) {
        if let Some(ip) = ip {
            spec.insert("clusterIP".into(), json!(ip.to_string()));
            spec.insert("clusterIPs".into(), json!([ip.to_string()]));
        }
        if needs_family(spec) {
            spec.entry("ipFamilies").or_insert(json!(["IPv4"]));
            spec.entry("ipFamilyPolicy").or_insert(json!("SingleStack"));
        }
        if let Some(list) = spec.get_mut("ports").and_then(Value::as_array_mut) {
            for (i, port) in node_ports {
                if let Some(p) = list.get_mut(*i) {
                    p["nodePort"] = json!(port);
                }
            }
        }
    }
}

/// Every Service but an ExternalName one has an IP family (a headless one too: its endpoints'
/// family).
fn needs_family(spec: &serde_json::Map<String, Value>) -> bool {
    spec.get("type").and_then(Value::as_str) != Some("ExternalName")
}

/// A `clusterIP` set alone is mirrored into `clusterIPs`, as Kubernetes' defaulting does.
pub fn mirror_cluster_ips(svc: &mut Value) {
    let ip = spec_str(svc, "clusterIP").to_string();
    if ip.is_empty() {
        return;
    }
    if let Some(spec) = svc.get_mut("spec").and_then(Value::as_object_mut) {
        let listed = spec
            .get("clusterIPs")
            .and_then(Value::as_array)
            .is_some_and(|l| !l.is_empty());
        if !listed {
            spec.insert("clusterIPs".into(), json!([ip]));
        }
    }
}
