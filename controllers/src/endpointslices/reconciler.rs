//! The EndpointSlices a Service should have, and the fewest writes that get there from the
//! slices it has, as Kubernetes' EndpointSlice reconciler decides them: endpoints grouped by
//! the ports they offer, at most `max_per_slice` to a slice; existing slices keep the
//! endpoints they hold (updated in place when a condition, node or zone changes) and lose the
//! ones no longer wanted; new endpoints go first into slices being updated anyway, then into
//! the one unchanged slice that fits them all, then into new slices; a slice that would be
//! deleted while another is created is reused instead. A Service without endpoints keeps one
//! empty placeholder slice. Pure: names of new slices come from the caller.

use std::collections::{BTreeMap, BTreeSet};

use keel_client::k8s_openapi::api::core::v1::{ObjectReference, Pod, Service};
use keel_client::k8s_openapi::api::discovery::v1::{
    Endpoint, EndpointConditions, EndpointPort, EndpointSlice,
};
use keel_client::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::endpoints::desired::HEADLESS;
use crate::{pods, service_pods};

/// Names the Service a slice belongs to.
pub const SERVICE_NAME: &str = "kubernetes.io/service-name";
/// Names the controller that manages a slice.
pub const MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";
pub const CONTROLLER_NAME: &str = "endpointslice-controller.k8s.io";
/// The node label giving its zone.
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";
pub const ADDRESS_TYPE: &str = "IPv4";

/// Identifies an endpoint across reconciles: its address, hostname and pod.
type EndpointKey = (Vec<String>, Option<String>, Option<String>, Option<String>);
/// Identifies a set of ports: each port's name, number, protocol and appProtocol.
type PortsKey = Vec<(String, i32, String, String)>;

/// The writes that bring a Service's slices in line.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Plan {
    /// New slices, named by the caller (their `metadata.name` is left unset).
    pub create: Vec<EndpointSlice>,
    /// Replacements of existing slices (carrying their names and resourceVersions).
    pub update: Vec<EndpointSlice>,
    pub delete: Vec<EndpointSlice>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.create.is_empty() && self.update.is_empty() && self.delete.is_empty()
    }
}

/// What the desired endpoints were computed from besides the Service and its pods.
pub struct Inputs<'a> {
    /// A node's zone, or None when the node has none; the outer None when the node is not
    /// known (yet).
    pub zone_of: &'a dyn Fn(&str) -> Option<Option<String>>,
    pub max_per_slice: usize,
}

fn endpoint_key(e: &Endpoint) -> EndpointKey {
    let r = e.target_ref.as_ref();
    (
        e.addresses.clone(),
        e.hostname.clone(),
        r.and_then(|r| r.namespace.clone()),
        r.and_then(|r| r.name.clone()),
    )
}

fn ports_key(ports: &[EndpointPort]) -> PortsKey {
    let mut key: PortsKey = ports
        .iter()
        .map(|p| {
            (
                p.name.clone().unwrap_or_default(),
                p.port.unwrap_or_default(),
                p.protocol.clone().unwrap_or_default(),
                p.app_protocol.clone().unwrap_or_default(),
            )
        })
        .collect();
    key.sort();
    key
}

/// The pod's endpoint for the Service, as Kubernetes' podToEndpoint builds it: serving is
/// the pod's readiness, terminating its deletion mark, and ready is serving and not
/// terminating (or always, with publishNotReadyAddresses).
pub fn endpoint(pod: &Pod, service: &Service, ip: String, zone: Option<String>) -> Endpoint {
    let serving = pods::is_ready(pod);
    let terminating = pods::is_terminating(pod);
    let ready = service_pods::publish_not_ready(service) || (serving && !terminating);
    Endpoint {
        addresses: vec![ip],
        conditions: Some(EndpointConditions {
            ready: Some(ready),
            serving: Some(serving),
            terminating: Some(terminating),
        }),
        hostname: service_pods::hostname(pod, service),
        node_name: pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .filter(|n| !n.is_empty()),
        zone,
        target_ref: Some(ObjectReference {
            kind: Some("Pod".into()),
            namespace: pod.metadata.namespace.clone(),
            name: pod.metadata.name.clone(),
            uid: pod.metadata.uid.clone(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The ports a pod offers for the Service (a port whose target the pod lacks is left out).
fn endpoint_ports(pod: &Pod, service: &Service) -> Vec<EndpointPort> {
    let ports = service
        .spec
        .as_ref()
        .and_then(|s| s.ports.clone())
        .unwrap_or_default();
    ports
        .iter()
        .filter_map(|port| {
            let number = service_pods::find_port(pod, port)?;
            Some(EndpointPort {
                name: Some(port.name.clone().unwrap_or_default()),
                port: Some(number),
                protocol: Some(service_pods::protocol(port).to_string()),
                app_protocol: port.app_protocol.clone(),
            })
        })
        .collect()
}

/// The endpoints wanted, grouped by the ports they offer. Also says whether some pod was
/// left out because its node is not known yet (the Service should be looked at again).
#[allow(clippy::type_complexity)]
pub fn desired(
    service: &Service,
    pods: &[&Pod],
    inputs: &Inputs<'_>,
) -> (
    BTreeMap<PortsKey, (Vec<EndpointPort>, BTreeMap<EndpointKey, Endpoint>)>,
    bool,
) {
    let mut groups: BTreeMap<PortsKey, (Vec<EndpointPort>, BTreeMap<EndpointKey, Endpoint>)> =
        BTreeMap::new();
    let mut missing_node = false;
    for pod in pods {
        if !service_pods::selects(service, pod) || !service_pods::should_be_in_endpoints(pod, true)
        {
            continue;
        }
        let Some(ip) = service_pods::pod_ipv4(pod) else {
            continue;
        };
        let node = pod.spec.as_ref().and_then(|s| s.node_name.as_deref());
        let zone = match node.filter(|n| !n.is_empty()) {
            None => None,
            Some(node) => match (inputs.zone_of)(node) {
                Some(zone) => zone,
                None => {
                    missing_node = true;
                    continue;
                }
            },
        };
        let ports = endpoint_ports(pod, service);
        let e = endpoint(pod, service, ip, zone);
        groups
            .entry(ports_key(&ports))
            .or_insert_with(|| (ports, BTreeMap::new()))
            .1
            .insert(endpoint_key(&e), e);
    }
    (groups, missing_node)
}

/// The labels a slice of the Service carries: the Service's own (less the reserved ones),
/// its name, the managing controller, and the headless mark.
pub fn labels(service: &Service) -> BTreeMap<String, String> {
    let mut labels: BTreeMap<String, String> = service
        .metadata
        .labels
        .iter()
        .flatten()
        .filter(|(k, _)| ![SERVICE_NAME, MANAGED_BY, HEADLESS].contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    labels.insert(
        SERVICE_NAME.into(),
        service.metadata.name.clone().unwrap_or_default(),
    );
    labels.insert(MANAGED_BY.into(), CONTROLLER_NAME.into());
    let ip = service.spec.as_ref().and_then(|s| s.cluster_ip.as_deref());
    if matches!(ip, None | Some("") | Some("None")) {
        labels.insert(HEADLESS.into(), String::new());
    }
    labels
}

/// A new (unnamed) slice of the Service offering `ports`.
fn new_slice(service: &Service, ports: Vec<EndpointPort>) -> EndpointSlice {
    EndpointSlice {
        metadata: ObjectMeta {
            namespace: service.metadata.namespace.clone(),
            labels: Some(labels(service)),
            owner_references: Some(vec![pods::controller_reference(service)]),
            ..Default::default()
        },
        address_type: ADDRESS_TYPE.into(),
        endpoints: Vec::new(),
        ports: Some(ports),
    }
}

fn owned_by(slice: &EndpointSlice, service: &Service) -> bool {
    let uid = service.metadata.uid.as_deref().unwrap_or_default();
    pods::is_controlled_by(&slice.metadata, uid)
}

/// An existing endpoint as compared with a desired one: the pod's resourceVersion aside.
fn comparable(e: &Endpoint) -> Endpoint {
    let mut e = e.clone();
    if let Some(r) = e.target_ref.as_mut() {
        r.resource_version = None;
    }
    e
}

/// The writes that turn `existing` (the slices labelled as this Service's) into what the
/// pods call for.
pub fn plan(
    service: &Service,
    pods: &[&Pod],
    existing: &[&EndpointSlice],
    inputs: &Inputs<'_>,
) -> (Plan, bool) {
    let max = inputs.max_per_slice.max(1);
    let (mut wanted, missing_node) = desired(service, pods, inputs);
    let labels = labels(service);
    let mut plan = Plan::default();
    let mut by_ports: BTreeMap<PortsKey, Vec<&EndpointSlice>> = BTreeMap::new();
    for slice in existing {
        if slice.address_type != ADDRESS_TYPE || !owned_by(slice, service) {
            plan.delete.push((*slice).clone());
            continue;
        }
        let key = ports_key(slice.ports.as_deref().unwrap_or_default());
        by_ports.entry(key).or_default().push(slice);
    }
    let keys: BTreeSet<PortsKey> = by_ports.keys().chain(wanted.keys()).cloned().collect();
    for key in keys {
        let slices = by_ports.remove(&key).unwrap_or_default();
        match wanted.remove(&key) {
            Some((ports, endpoints)) => {
                by_port_mapping(service, &labels, ports, endpoints, &slices, max, &mut plan)
            }
            // Ports no pod offers any more.
            None => plan.delete.extend(slices.into_iter().cloned()),
        }
    }
    // A Service with no endpoints keeps one empty slice.
    let existing_owned = existing.len();
    if existing_owned == plan.delete.len() && plan.create.is_empty() {
        let placeholder = new_slice(service, Vec::new());
        let is_placeholder = |s: &EndpointSlice| {
            s.endpoints.is_empty()
                && s.ports.as_deref().unwrap_or_default().is_empty()
                && s.address_type == ADDRESS_TYPE
                && owned_by(s, service)
                && s.metadata.labels.as_ref() == Some(&labels)
        };
        if plan.delete.len() == 1 && is_placeholder(&plan.delete[0]) {
            plan.delete.clear();
        } else {
            plan.create.push(placeholder);
        }
    }
    // Reuse a slice about to be deleted for one about to be created.
    let mut i = 0;
    while i < plan.delete.len() && !plan.create.is_empty() {
        let old = &plan.delete[i];
        if old.address_type == ADDRESS_TYPE && owned_by(old, service) {
            let old = plan.delete.remove(i);
            if let Some(mut slice) = plan.create.pop() {
                slice.metadata.name = old.metadata.name.clone();
                slice.metadata.resource_version = old.metadata.resource_version.clone();
                slice.metadata.uid = old.metadata.uid.clone();
                plan.update.push(slice);
            }
        } else {
            i += 1;
        }
    }
    (plan, missing_node)
}

/// Kubernetes' reconcileByPortMapping for one set of ports.
fn by_port_mapping(
    service: &Service,
    labels: &BTreeMap<String, String>,
    ports: Vec<EndpointPort>,
    mut wanted: BTreeMap<EndpointKey, Endpoint>,
    existing: &[&EndpointSlice],
    max: usize,
    plan: &mut Plan,
) {
    let mut updating: Vec<EndpointSlice> = Vec::new();
    let mut unchanged: Vec<&EndpointSlice> = Vec::new();
    for slice in existing {
        let mut kept = Vec::new();
        let mut changed = false;
        for e in &slice.endpoints {
            match wanted.remove(&endpoint_key(e)) {
                Some(want) => {
                    changed |= comparable(e) != want;
                    kept.push(want);
                }
                None => changed = true,
            }
        }
        let relabel = slice.metadata.labels.as_ref() != Some(labels);
        if changed && kept.is_empty() {
            plan.delete.push((*slice).clone());
        } else if changed || relabel {
            let mut slice = (*slice).clone();
            slice.endpoints = kept;
            slice.metadata.labels = Some(labels.clone());
            updating.push(slice);
        } else {
            unchanged.push(slice);
        }
    }
    let mut rest = wanted.into_values();
    let mut next = rest.next();
    // New endpoints go first into slices that are written anyway, fullest first.
    updating.sort_by_key(|s| std::cmp::Reverse(s.endpoints.len()));
    for slice in &mut updating {
        while slice.endpoints.len() < max {
            let Some(e) = next.take() else { break };
            slice.endpoints.push(e);
            next = rest.next();
        }
    }
    plan.update.extend(updating);
    let mut left: Vec<Endpoint> = next.into_iter().chain(rest).collect();
    while !left.is_empty() {
        // What fits into one unchanged slice goes into the fullest one it fits.
        let fill = if left.len() < max {
            unchanged
                .iter()
                .enumerate()
                .filter(|(_, s)| s.endpoints.len() + left.len() <= max)
                .max_by_key(|(_, s)| s.endpoints.len())
                .map(|(i, _)| i)
        } else {
            None
        };
        let mut slice = match fill {
            Some(i) => unchanged.remove(i).clone(),
            None => new_slice(service, ports.clone()),
        };
        let room = max.saturating_sub(slice.endpoints.len()).min(left.len());
        slice.endpoints.extend(left.drain(..room));
        if slice.metadata.name.is_some() {
            plan.update.push(slice);
        } else {
            plan.create.push(slice);
        }
    }
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

    fn zone(node: &str) -> Option<Option<String>> {
        Some(Some(format!("zone-{node}")))
    }

    fn inputs(max: usize) -> Inputs<'static> {
        Inputs {
            zone_of: &zone,
            max_per_slice: max,
        }
    }

    fn pods(n: usize) -> Vec<Pod> {
        (0..n)
            .map(|i| {
                pod(
                    &format!("p{i}"),
                    &format!("10.1.{}.{}", i / 200, i % 200 + 1),
                    "n",
                    true,
                )
            })
            .collect()
    }

    /// Applies `plan` to `existing` as the API server would, naming new slices in order.
    fn apply(existing: Vec<EndpointSlice>, plan: Plan) -> Vec<EndpointSlice> {
        let mut slices: Vec<EndpointSlice> = existing
            .into_iter()
            .filter(|s| {
                !plan
                    .delete
                    .iter()
                    .chain(plan.update.iter())
                    .any(|d| d.metadata.name == s.metadata.name)
            })
            .collect();
        slices.extend(plan.update);
        for (i, mut s) in plan.create.into_iter().enumerate() {
            s.metadata.name = Some(format!("web-{i}-{}", slices.len()));
            slices.push(s);
        }
        slices
    }

    fn sizes(slices: &[EndpointSlice]) -> Vec<usize> {
        let mut sizes: Vec<usize> = slices.iter().map(|s| s.endpoints.len()).collect();
        sizes.sort();
        sizes
    }

    #[test]
    fn endpoints_are_packed_at_most_max_per_slice_and_labelled_for_the_service() {
        let all = pods(150);
        let refs: Vec<&Pod> = all.iter().collect();
        let (plan, missing) = plan(&web(), &refs, &[], &inputs(100));
        assert!(!missing);
        assert_eq!((plan.create.len(), plan.update.len()), (2, 0));
        assert_eq!(sizes(&plan.create), vec![50, 100]);
        let s = &plan.create[0];
        let labels = s.metadata.labels.clone().unwrap_or_default();
        assert_eq!(labels.get(SERVICE_NAME).map(String::as_str), Some("web"));
        assert_eq!(
            labels.get(MANAGED_BY).map(String::as_str),
            Some(CONTROLLER_NAME)
        );
        assert_eq!(s.address_type, "IPv4");
        assert!(pods::is_controlled_by(&s.metadata, "web-uid"));
        let ports = s.ports.clone().unwrap_or_default();
        assert_eq!(ports[0].port, Some(8080), "the named target port resolved");
    }

    #[test]
    fn an_unchanged_service_needs_no_writes() {
        let all = pods(150);
        let refs: Vec<&Pod> = all.iter().collect();
        let (first, _) = plan(&web(), &refs, &[], &inputs(100));
        let slices = apply(vec![], first);
        let existing: Vec<&EndpointSlice> = slices.iter().collect();
        let (again, _) = plan(&web(), &refs, &existing, &inputs(100));
        assert!(again.is_empty(), "{again:?}");
    }

    #[test]
    fn a_pod_turning_unready_updates_only_its_own_slice() {
        let mut all = pods(150);
        let refs: Vec<&Pod> = all.iter().collect();
        let (first, _) = plan(&web(), &refs, &[], &inputs(100));
        let slices = apply(vec![], first);
        all[3] = pod("p3", "10.1.0.4", "n", false);
        let refs: Vec<&Pod> = all.iter().collect();
        let existing: Vec<&EndpointSlice> = slices.iter().collect();
        let (next, _) = plan(&web(), &refs, &existing, &inputs(100));
        assert_eq!((next.create.len(), next.delete.len()), (0, 0));
        assert_eq!(next.update.len(), 1);
        let e = next.update[0]
            .endpoints
            .iter()
            .find(|e| e.addresses == vec!["10.1.0.4".to_string()])
            .expect("still listed");
        let c = e.conditions.clone().unwrap_or_default();
        assert_eq!(
            (c.ready, c.serving, c.terminating),
            (Some(false), Some(false), Some(false))
        );
    }

    #[test]
    fn terminating_pods_stay_listed_as_not_ready_but_serving() {
        let mut p = pod("a", "10.1.0.1", "n", true);
        p.metadata.deletion_timestamp = Some(Time(Utc::now()));
        let (plan, _) = plan(&web(), &[&p], &[], &inputs(100));
        let e = &plan.create[0].endpoints[0];
        let c = e.conditions.clone().unwrap_or_default();
        assert_eq!(
            (c.ready, c.serving, c.terminating),
            (Some(false), Some(true), Some(true))
        );
        assert_eq!(e.zone.as_deref(), Some("zone-n"));
        assert_eq!(e.node_name.as_deref(), Some("n"));
    }

    #[test]
    fn publish_not_ready_addresses_makes_every_endpoint_ready() {
        let mut svc = web();
        if let Some(spec) = svc.spec.as_mut() {
            spec.publish_not_ready_addresses = Some(true);
        }
        let p = pod("a", "10.1.0.1", "n", false);
        let (plan, _) = plan(&svc, &[&p], &[], &inputs(100));
        let c = plan.create[0].endpoints[0]
            .conditions
            .clone()
            .unwrap_or_default();
        assert_eq!((c.ready, c.serving), (Some(true), Some(false)));
    }

    #[test]
    fn a_service_without_endpoints_keeps_one_placeholder_slice() {
        let (first, _) = plan(&web(), &[], &[], &inputs(100));
        assert_eq!(first.create.len(), 1);
        assert!(first.create[0].endpoints.is_empty());
        let slices = apply(vec![], first);
        let existing: Vec<&EndpointSlice> = slices.iter().collect();
        let (again, _) = plan(&web(), &[], &existing, &inputs(100));
        assert!(again.is_empty(), "the placeholder is kept: {again:?}");
    }

    #[test]
    fn emptied_slices_are_reused_rather_than_deleted_and_created() {
        let all = pods(3);
        let refs: Vec<&Pod> = all.iter().collect();
        let slices = apply(vec![], plan(&web(), &refs, &[], &inputs(100)).0);
        // Every pod replaced by new ones: the old slice is emptied, new endpoints need a slice.
        let fresh: Vec<Pod> = (0..3)
            .map(|i| pod(&format!("q{i}"), &format!("10.2.0.{}", i + 1), "n", true))
            .collect();
        let refs: Vec<&Pod> = fresh.iter().collect();
        let existing: Vec<&EndpointSlice> = slices.iter().collect();
        let (next, _) = plan(&web(), &refs, &existing, &inputs(100));
        assert_eq!(
            (next.create.len(), next.update.len(), next.delete.len()),
            (0, 1, 0)
        );
        assert_eq!(next.update[0].metadata.name, slices[0].metadata.name);
        assert_eq!(next.update[0].endpoints.len(), 3);
    }

    #[test]
    fn slices_of_another_owner_or_address_type_are_deleted() {
        let p = pod("a", "10.1.0.1", "n", true);
        let (first, _) = plan(&web(), &[&p], &[], &inputs(100));
        let mut slices = apply(vec![], first);
        let mut foreign = slices[0].clone();
        foreign.metadata.name = Some("web-old".into());
        foreign.metadata.owner_references = None;
        slices.push(foreign);
        let existing: Vec<&EndpointSlice> = slices.iter().collect();
        let (next, _) = plan(&web(), &[&p], &existing, &inputs(100));
        assert_eq!(next.delete.len(), 1);
        assert_eq!(next.delete[0].metadata.name.as_deref(), Some("web-old"));
        assert!(next.create.is_empty() && next.update.is_empty());
    }

    #[test]
    fn new_endpoints_fill_the_fullest_unchanged_slice_they_fit() {
        let all = pods(150);
        let refs: Vec<&Pod> = all.iter().collect();
        let slices = apply(vec![], plan(&web(), &refs, &[], &inputs(100)).0);
        let more = pods(160);
        let refs: Vec<&Pod> = more.iter().collect();
        let existing: Vec<&EndpointSlice> = slices.iter().collect();
        let (next, _) = plan(&web(), &refs, &existing, &inputs(100));
        assert_eq!((next.create.len(), next.update.len()), (0, 1));
        assert_eq!(next.update[0].endpoints.len(), 60);
    }

    #[test]
    fn a_pod_on_an_unknown_node_is_left_out_for_now() {
        let p = pod("a", "10.1.0.1", "ghost", true);
        let unknown = |_: &str| None;
        let inputs = Inputs {
            zone_of: &unknown,
            max_per_slice: 100,
        };
        let (plan, missing) = plan(&web(), &[&p], &[], &inputs);
        assert!(missing);
        assert!(plan.create[0].endpoints.is_empty());
    }
}
