//! The Endpoints a Service should have, from the pods it selects, as Kubernetes' endpoint
//! controller computes them: one address per pod (ready ones in `addresses`, the others in
//! `notReadyAddresses`, all ready with publishNotReadyAddresses), ports resolved per pod, and
//! addresses that offer the same ports packed into one subset (Kubernetes' RepackSubsets).
//! Beyond 1000 addresses the Endpoints are truncated and annotated as over capacity. Pure.

use std::collections::{BTreeMap, BTreeSet};

use keel_client::k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, ObjectReference, Pod, Service,
};
use keel_client::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::{pods, service_pods};

/// Set on an Endpoints holding only part of its Service's addresses.
pub const OVER_CAPACITY: &str = "endpoints.kubernetes.io/over-capacity";
/// The annotation Kubernetes sets to when the pods last changed; this controller does not.
pub const LAST_CHANGE_TRIGGER_TIME: &str = "endpoints.kubernetes.io/last-change-trigger-time";
/// Addresses an Endpoints object holds at most.
pub const MAX_CAPACITY: usize = 1000;
/// Marks Endpoints this controller manages.
pub const MANAGED_BY: &str = "endpoints.kubernetes.io/managed-by";
pub const CONTROLLER_NAME: &str = "endpoint-controller";
/// Marks the Endpoints (and slices) of a Service without a cluster IP.
pub const HEADLESS: &str = "service.kubernetes.io/headless";

/// What to write for a Service.
#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    /// The Endpoints are as they should be.
    Nothing,
    Create(Endpoints),
    /// Replace the current Endpoints with this (it carries their resourceVersion).
    Update(Endpoints),
}

/// Whether the Service has a cluster IP (not headless).
fn has_cluster_ip(service: &Service) -> bool {
    let ip = service.spec.as_ref().and_then(|s| s.cluster_ip.as_deref());
    !matches!(ip, None | Some("") | Some("None"))
}

/// A pod's address for the Service.
fn address(pod: &Pod, service: &Service, ip: String) -> EndpointAddress {
    EndpointAddress {
        ip,
        hostname: service_pods::hostname(pod, service),
        node_name: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
        target_ref: Some(ObjectReference {
            kind: Some("Pod".into()),
            namespace: pod.metadata.namespace.clone(),
            name: pod.metadata.name.clone(),
            uid: pod.metadata.uid.clone(),
            ..Default::default()
        }),
    }
}

/// Sort key of an address: by IP, then by the pod's UID.
fn address_key(a: &EndpointAddress) -> AddressKey {
    let uid = a.target_ref.as_ref().and_then(|r| r.uid.clone());
    (a.ip.clone(), uid.unwrap_or_default())
}

/// Sort key of a port. Kubernetes orders ports by a hash; any fixed order serves, as long as
/// desired and current are compared in the same one.
fn port_key(p: &EndpointPort) -> PortKey {
    (
        p.name.clone().unwrap_or_default(),
        p.port,
        p.protocol.clone().unwrap_or_default(),
    )
}

/// An address's sort key (IP, pod UID).
type AddressKey = (String, String);
/// A port's sort key (name, number, protocol).
type PortKey = (String, i32, String);
/// Addresses by key, each with whether it is ready.
type AddressSet = BTreeMap<AddressKey, (EndpointAddress, bool)>;

/// Ports offered by the same addresses, keyed by those addresses.
type Groups = BTreeMap<Vec<(AddressKey, bool)>, (Vec<EndpointPort>, AddressSet)>;

/// The subsets for `service` from the pods it selects (`pods` may hold others; they are
/// filtered here), packed and sorted.
pub fn subsets(service: &Service, pods: &[&Pod]) -> Vec<EndpointSubset> {
    let publish = service_pods::publish_not_ready(service);
    let ports = service
        .spec
        .as_ref()
        .and_then(|s| s.ports.clone())
        .unwrap_or_default();
    // For each port (None: the sentinel of a headless Service without ports), the addresses
    // offering it, with whether each is ready.
    let mut by_port: BTreeMap<Option<PortKey>, (Option<EndpointPort>, AddressSet)> =
        BTreeMap::new();
    for pod in pods {
        if !service_pods::selects(service, pod)
            || !service_pods::should_be_in_endpoints(pod, publish)
        {
            continue;
        }
        let Some(ip) = service_pods::pod_ipv4(pod) else {
            continue;
        };
        let addr = address(pod, service, ip);
        let ready = publish || pods::is_ready(pod);
        let mut add = |port: Option<EndpointPort>| {
            let key = port.as_ref().map(port_key);
            by_port
                .entry(key)
                .or_insert_with(|| (port, BTreeMap::new()))
                .1
                .insert(address_key(&addr), (addr.clone(), ready));
        };
        if ports.is_empty() && service_pods::is_headless(service) {
            add(None);
            continue;
        }
        for port in &ports {
            let Some(number) = service_pods::find_port(pod, port) else {
                continue;
            };
            add(Some(EndpointPort {
                name: port.name.clone(),
                port: number,
                protocol: Some(service_pods::protocol(port).to_string()),
                app_protocol: port.app_protocol.clone(),
            }));
        }
    }
    // Ports offered by exactly the same addresses share a subset.
    let mut groups = Groups::new();
    for (_, (port, addresses)) in by_port {
        let key: Vec<_> = addresses
            .iter()
            .map(|(k, (_, r))| (k.clone(), *r))
            .collect();
        let group = groups.entry(key).or_insert_with(|| (Vec::new(), addresses));
        group.0.extend(port);
    }
    let subsets = groups
        .into_values()
        .map(|(ports, addresses)| {
            let (ready, not_ready): (Vec<_>, Vec<_>) = addresses.into_values().partition(|a| a.1);
            EndpointSubset {
                addresses: non_empty(ready.into_iter().map(|a| a.0).collect()),
                not_ready_addresses: non_empty(not_ready.into_iter().map(|a| a.0).collect()),
                ports: non_empty(ports),
            }
        })
        .collect();
    canonical(subsets)
}

fn non_empty<T>(v: Vec<T>) -> Option<Vec<T>> {
    (!v.is_empty()).then_some(v)
}

/// `subsets` in one fixed order (addresses by IP and pod, ports by name and number, subsets
/// by their ports then addresses), so that equal contents compare equal.
pub fn canonical(mut subsets: Vec<EndpointSubset>) -> Vec<EndpointSubset> {
    for s in &mut subsets {
        for list in [&mut s.addresses, &mut s.not_ready_addresses]
            .into_iter()
            .flatten()
        {
            list.sort_by_key(address_key);
            for a in list.iter_mut() {
                // The pod's resourceVersion is not part of what the Endpoints say.
                if let Some(r) = a.target_ref.as_mut() {
                    r.resource_version = None;
                }
            }
        }
        if let Some(ports) = s.ports.as_mut() {
            ports.sort_by_key(port_key);
        }
        s.addresses = s.addresses.take().and_then(non_empty);
        s.not_ready_addresses = s.not_ready_addresses.take().and_then(non_empty);
        s.ports = s.ports.take().and_then(non_empty);
    }
    subsets.retain(|s| s.addresses.is_some() || s.not_ready_addresses.is_some());
    subsets.sort_by_key(subset_key);
    subsets
}

fn subset_key(s: &EndpointSubset) -> (Vec<PortKey>, Vec<AddressKey>) {
    let ports = s.ports.iter().flatten().map(port_key).collect();
    let addresses = s
        .addresses
        .iter()
        .chain(s.not_ready_addresses.iter())
        .flatten()
        .map(address_key)
        .collect();
    (ports, addresses)
}

/// Cuts `subsets` down to [`MAX_CAPACITY`] addresses, as Kubernetes does: not-ready ones go
/// first; each subset keeps its share (rounded up) of what is kept. Returns whether anything
/// was cut.
pub fn truncate(subsets: &mut [EndpointSubset]) -> bool {
    let count = |l: &Option<Vec<EndpointAddress>>| l.as_ref().map_or(0, Vec::len);
    let ready: usize = subsets.iter().map(|s| count(&s.addresses)).sum();
    let not_ready: usize = subsets.iter().map(|s| count(&s.not_ready_addresses)).sum();
    if ready + not_ready <= MAX_CAPACITY {
        return false;
    }
    let truncate_ready = ready > MAX_CAPACITY;
    let (max, total) = if truncate_ready {
        (MAX_CAPACITY, ready)
    } else {
        (MAX_CAPACITY - ready, not_ready)
    };
    let mut room = max;
    for s in subsets.iter_mut() {
        let list = if truncate_ready {
            s.not_ready_addresses = None;
            &mut s.addresses
        } else {
            &mut s.not_ready_addresses
        };
        let here = count(list);
        let share = (here * max).div_ceil(total).min(room);
        if let Some(l) = list.as_mut() {
            l.truncate(share);
        }
        room -= share;
    }
    true
}

/// The labels the Endpoints carry: the Service's, marked as managed here and as headless
/// when the Service has no cluster IP.
fn labels(service: &Service) -> BTreeMap<String, String> {
    let mut labels = service.metadata.labels.clone().unwrap_or_default();
    labels.insert(MANAGED_BY.into(), CONTROLLER_NAME.into());
    if has_cluster_ip(service) {
        labels.remove(HEADLESS);
    } else {
        labels.insert(HEADLESS.into(), String::new());
    }
    labels
}

/// What to write so that `service`'s Endpoints (now `current`) match the pods.
pub fn reconcile(service: &Service, pods: &[&Pod], current: Option<&Endpoints>) -> Write {
    let mut subsets = subsets(service, pods);
    let over = truncate(&mut subsets);
    let labels = labels(service);
    let mut annotations = current
        .and_then(|e| e.metadata.annotations.clone())
        .unwrap_or_default();
    annotations.remove(LAST_CHANGE_TRIGGER_TIME);
    if over {
        annotations.insert(OVER_CAPACITY.into(), "truncated".into());
    } else {
        annotations.remove(OVER_CAPACITY);
    }
    if let Some(current) = current {
        let same_subsets = canonical(current.subsets.clone().unwrap_or_default()) == subsets;
        let same_labels = current.metadata.labels.clone().unwrap_or_default() == labels;
        let same_annotations =
            current.metadata.annotations.clone().unwrap_or_default() == annotations;
        if same_subsets && same_labels && same_annotations {
            return Write::Nothing;
        }
    }
    let metadata = ObjectMeta {
        name: service.metadata.name.clone(),
        namespace: service.metadata.namespace.clone(),
        labels: Some(labels),
        annotations: non_empty_map(annotations),
        ..current.map(|e| e.metadata.clone()).unwrap_or_default()
    };
    let endpoints = Endpoints {
        metadata,
        subsets: non_empty(subsets),
    };
    match current {
        None => Write::Create(endpoints),
        Some(_) => Write::Update(endpoints),
    }
}

fn non_empty_map(m: BTreeMap<String, String>) -> Option<BTreeMap<String, String>> {
    (!m.is_empty()).then_some(m)
}

/// The addresses of `endpoints`, ready and not, as (IP, ready) pairs in order: for tests and
/// logs.
pub fn addresses(endpoints: &Endpoints) -> BTreeSet<(String, bool)> {
    endpoints
        .subsets
        .iter()
        .flatten()
        .flat_map(|s| {
            let ready = s.addresses.iter().flatten().map(|a| (a.ip.clone(), true));
            let not = s
                .not_ready_addresses
                .iter()
                .flatten()
                .map(|a| (a.ip.clone(), false));
            ready.chain(not)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service_pods::tests::{pod, port, service};
    use keel_client::k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use keel_client::k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    use keel_client::k8s_openapi::chrono::Utc;

    fn web() -> Service {
        service(
            "web",
            &[("app", "web")],
            vec![port("http", 80, Some(IntOrString::String("http".into())))],
        )
    }

    fn created(write: Write) -> Endpoints {
        match write {
            Write::Create(e) | Write::Update(e) => e,
            Write::Nothing => Endpoints::default(),
        }
    }

    #[test]
    fn ready_pods_are_addresses_and_the_others_not_ready_addresses() {
        let a = pod("a", "10.1.0.2", "n1", true);
        let b = pod("b", "10.1.0.1", "n2", false);
        let e = created(reconcile(&web(), &[&a, &b], None));
        assert_eq!(e.metadata.name.as_deref(), Some("web"));
        let subsets = e.subsets.clone().unwrap_or_default();
        assert_eq!(subsets.len(), 1, "same ports: one subset");
        let s = &subsets[0];
        let ready: Vec<_> = s
            .addresses
            .iter()
            .flatten()
            .map(|a| a.ip.as_str())
            .collect();
        let not: Vec<_> = s
            .not_ready_addresses
            .iter()
            .flatten()
            .map(|a| a.ip.as_str())
            .collect();
        assert_eq!((ready, not), (vec!["10.1.0.2"], vec!["10.1.0.1"]));
        let addr = &s.addresses.as_ref().expect("ready")[0];
        assert_eq!(addr.node_name.as_deref(), Some("n1"));
        let target = addr.target_ref.as_ref().expect("target");
        assert_eq!(
            (target.kind.as_deref(), target.name.as_deref()),
            (Some("Pod"), Some("a"))
        );
        let ports = s.ports.clone().unwrap_or_default();
        assert_eq!(
            (ports[0].name.as_deref(), ports[0].port),
            (Some("http"), 8080)
        );
    }

    #[test]
    fn publish_not_ready_addresses_makes_every_pod_ready_terminating_ones_included() {
        let mut svc = web();
        if let Some(spec) = svc.spec.as_mut() {
            spec.publish_not_ready_addresses = Some(true);
        }
        let a = pod("a", "10.1.0.1", "n", false);
        let mut gone = pod("b", "10.1.0.2", "n", true);
        gone.metadata.deletion_timestamp = Some(Time(Utc::now()));
        let e = created(reconcile(&svc, &[&a, &gone], None));
        assert_eq!(
            addresses(&e),
            [
                ("10.1.0.1".to_string(), true),
                ("10.1.0.2".to_string(), true)
            ]
            .into()
        );
        let e = created(reconcile(&web(), &[&a, &gone], None));
        assert_eq!(
            addresses(&e),
            [("10.1.0.1".to_string(), false)].into(),
            "without it, terminating pods are left out"
        );
    }

    #[test]
    fn a_pod_lacking_a_named_port_is_left_out_for_that_port_only() {
        let svc = service(
            "web",
            &[("app", "web")],
            vec![
                port("http", 80, Some(IntOrString::String("http".into()))),
                port("metrics", 9100, Some(IntOrString::Int(9100))),
            ],
        );
        let a = pod("a", "10.1.0.1", "n", true);
        let mut b = pod("b", "10.1.0.2", "n", true);
        if let Some(spec) = b.spec.as_mut() {
            spec.containers[0].ports = None;
        }
        let e = created(reconcile(&svc, &[&a, &b], None));
        let subsets = e.subsets.unwrap_or_default();
        let shape: Vec<(Vec<String>, Vec<i32>)> = subsets
            .iter()
            .map(|s| {
                (
                    s.addresses.iter().flatten().map(|a| a.ip.clone()).collect(),
                    s.ports.iter().flatten().map(|p| p.port).collect(),
                )
            })
            .collect();
        assert_eq!(
            shape,
            vec![
                (vec!["10.1.0.1".to_string()], vec![8080]),
                (
                    vec!["10.1.0.1".to_string(), "10.1.0.2".to_string()],
                    vec![9100]
                ),
            ]
        );
    }

    #[test]
    fn unchanged_endpoints_are_not_written_and_labels_follow_the_service() {
        let a = pod("a", "10.1.0.1", "n", true);
        let mut svc = web();
        let e = created(reconcile(&svc, &[&a], None));
        assert_eq!(reconcile(&svc, &[&a], Some(&e)), Write::Nothing);
        svc.metadata.labels = Some([("team".to_string(), "x".to_string())].into());
        let updated = created(reconcile(&svc, &[&a], Some(&e)));
        let labels = updated.metadata.labels.unwrap_or_default();
        assert_eq!(labels.get("team").map(String::as_str), Some("x"));
        assert_eq!(
            labels.get(MANAGED_BY).map(String::as_str),
            Some(CONTROLLER_NAME)
        );
    }

    #[test]
    fn pods_of_other_services_and_pods_without_addresses_are_ignored() {
        let mut other = pod("x", "10.1.0.9", "n", true);
        other.metadata.labels = None;
        let mut pending = pod("p", "10.1.0.8", "n", true);
        pending.status = None;
        let e = created(reconcile(&web(), &[&other, &pending], None));
        assert!(addresses(&e).is_empty());
        assert!(e.subsets.is_none());
    }

    #[test]
    fn a_headless_service_without_ports_still_lists_its_pods() {
        let mut svc = service("db", &[("app", "web")], vec![]);
        if let Some(spec) = svc.spec.as_mut() {
            spec.cluster_ip = Some("None".into());
        }
        let e = created(reconcile(&svc, &[&pod("a", "10.1.0.1", "n", true)], None));
        let subsets = e.subsets.clone().unwrap_or_default();
        assert_eq!(subsets.len(), 1);
        assert!(subsets[0].ports.is_none());
        assert_eq!(
            e.metadata.labels.unwrap_or_default().get(HEADLESS),
            Some(&String::new())
        );
    }

    #[test]
    fn beyond_capacity_not_ready_addresses_are_cut_first() {
        let mut subsets = vec![EndpointSubset {
            addresses: Some(
                (0..900)
                    .map(|i| EndpointAddress {
                        ip: format!("10.0.{}.{}", i / 250, i % 250),
                        ..Default::default()
                    })
                    .collect(),
            ),
            not_ready_addresses: Some(
                (0..300)
                    .map(|i| EndpointAddress {
                        ip: format!("10.9.{}.{}", i / 250, i % 250),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ports: None,
        }];
        assert!(truncate(&mut subsets));
        assert_eq!(subsets[0].addresses.as_ref().map(Vec::len), Some(900));
        assert_eq!(
            subsets[0].not_ready_addresses.as_ref().map(Vec::len),
            Some(100)
        );
    }
}
