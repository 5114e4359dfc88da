//! What a Service makes of the pods it selects, shared by the endpoint and EndpointSlice
//! controllers: which pods a Service selects, whether a pod belongs in its endpoints at all,
//! which port a service port reaches on a pod, and the hostname a pod is published under.
//! Also [`Memberships`] (with [`pod_changes`] and [`services_of`]), which remembers which Services each pod belonged to, so that a pod
//! that stops matching a Service still wakes it. Pure functions over the objects.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Mutex, PoisonError};

use futures::{Stream, StreamExt};
use keel_client::k8s_openapi::api::core::v1::{Pod, Service, ServicePort};
use keel_client::k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use keel_client::store::Store;
use keel_client::watcher::Event;
use keel_client::{Error, ObjectKey};

use crate::pods;

/// The Service's selector, if it has one (a Service without one is left alone by both
/// controllers: its endpoints are someone else's to write).
pub fn selector(service: &Service) -> Option<&BTreeMap<String, String>> {
    service.spec.as_ref()?.selector.as_ref()
}

/// Whether the Service is of type ExternalName (no endpoints at all).
pub fn is_external_name(service: &Service) -> bool {
    service.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("ExternalName")
}

/// Whether `service` selects `pod`: same namespace, and every selector label matches. An
/// empty selector selects every pod of the namespace, as a labels.Set selector does.
pub fn selects(service: &Service, pod: &Pod) -> bool {
    let Some(selector) = selector(service) else {
        return false;
    };
    if service.metadata.namespace != pod.metadata.namespace {
        return false;
    }
    let labels = pod.metadata.labels.as_ref();
    selector
        .iter()
        .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}

/// Whether the Service's spec says to publish pods that are not ready.
pub fn publish_not_ready(service: &Service) -> bool {
    service
        .spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        .unwrap_or(false)
}

/// Whether the Service is headless (clusterIP None): then it may have no ports.
pub fn is_headless(service: &Service) -> bool {
    service.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None")
}

/// The pod's IPv4 address, if it has one.
pub fn pod_ipv4(pod: &Pod) -> Option<String> {
    let status = pod.status.as_ref()?;
    status
        .pod_ips
        .iter()
        .flatten()
        .map(|ip| ip.ip.as_str())
        .chain(status.pod_ip.as_deref())
        .find(|ip| ip.parse::<std::net::Ipv4Addr>().is_ok())
        .map(str::to_string)
}

/// Whether a pod belongs in a Service's endpoints at all (Kubernetes'
/// ShouldPodBeInEndpoints): it has an address, it is not terminating unless
/// `include_terminating`, and it has not finished for good as its restartPolicy sees it.
pub fn should_be_in_endpoints(pod: &Pod, include_terminating: bool) -> bool {
    if pod_ipv4(pod).is_none() {
        return false;
    }
    if !include_terminating && pods::is_terminating(pod) {
        return false;
    }
    let restart_policy = pod.spec.as_ref().and_then(|s| s.restart_policy.as_deref());
    match restart_policy {
        Some("Never") => !matches!(pods::phase(pod), "Failed" | "Succeeded"),
        Some("OnFailure") => pods::phase(pod) != "Succeeded",
        _ => true,
    }
}

/// The protocol of a service port (TCP when unset, as the API server defaults it).
pub fn protocol(port: &ServicePort) -> &str {
    port.protocol.as_deref().unwrap_or("TCP")
}

/// The port on `pod` that `port` targets (Kubernetes' FindPort): a number as is, a name looked
/// up among the pod's container ports of the same protocol (sidecar init containers
/// included). An unset targetPort means the service port itself. None when the pod has no
/// such named port: the pod is left out for that port.
pub fn find_port(pod: &Pod, port: &ServicePort) -> Option<i32> {
    match &port.target_port {
        None => Some(port.port),
        Some(IntOrString::Int(n)) => Some(*n),
        Some(IntOrString::String(name)) => {
            // A target port given as a string of digits is a number (the API server keeps
            // such values as numbers; tolerate them anyway).
            if let Ok(n) = name.parse::<i32>() {
                return Some(n);
            }
            let spec = pod.spec.as_ref()?;
            let sidecars = spec
                .init_containers
                .iter()
                .flatten()
                .filter(|c| c.restart_policy.as_deref() == Some("Always"));
            spec.containers
                .iter()
                .chain(sidecars)
                .flat_map(|c| c.ports.iter().flatten())
                .find(|p| {
                    p.name.as_deref() == Some(name.as_str())
                        && p.protocol.as_deref().unwrap_or("TCP") == protocol(port)
                })
                .map(|p| p.container_port)
        }
    }
}

/// The hostname a pod is published under for `service`: its own hostname, when its
/// subdomain is the Service's name in the same namespace.
pub fn hostname(pod: &Pod, service: &Service) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    let hostname = spec.hostname.as_deref().filter(|h| !h.is_empty())?;
    let same_namespace = pod.metadata.namespace == service.metadata.namespace;
    (same_namespace && spec.subdomain.as_deref() == service.metadata.name.as_deref())
        .then(|| hostname.to_string())
}

/// Which Services each pod last belonged to, so that a pod whose labels stop matching a
/// Service (or that is deleted) still wakes that Service: the cache only holds the pod as it
/// is now.
#[derive(Debug, Default)]
pub struct Memberships {
    by_pod: Mutex<HashMap<ObjectKey, HashSet<ObjectKey>>>,
}

impl Memberships {
    pub fn new() -> Self {
        Self::default()
    }

    /// The Services to wake for a change of `pod`, given the Services that select it as it
    /// is now (or was when deleted): those and the ones it belonged to before.
    pub fn update(&self, pod: &ObjectKey, now: Vec<ObjectKey>, deleted: bool) -> Vec<ObjectKey> {
        let mut by_pod = self.by_pod.lock().unwrap_or_else(PoisonError::into_inner);
        let before = if deleted {
            by_pod.remove(pod).unwrap_or_default()
        } else {
            by_pod
                .insert(pod.clone(), now.iter().cloned().collect())
                .unwrap_or_default()
        };
        let mut left: Vec<ObjectKey> = before.into_iter().filter(|k| !now.contains(k)).collect();
        left.sort();
        let mut keys = now;
        keys.append(&mut left);
        keys
    }
}

/// The keys of the Services in `services` that select `pod`.
pub fn selecting<'a>(services: impl IntoIterator<Item = &'a Service>, pod: &Pod) -> Vec<ObjectKey> {
    services
        .into_iter()
        .filter(|s| selects(s, pod))
        .map(ObjectKey::of)
        .collect()
}

/// A pod event's pod, with whether it went away (for [`Memberships`]).
pub struct PodChange {
    pub pod: Pod,
    pub deleted: bool,
}

/// The pod events, each telling whether its pod is gone.
pub fn pod_changes(
    events: impl Stream<Item = Result<Event<Pod>, Error>> + Send + 'static,
) -> impl Stream<Item = Result<Event<PodChange>, Error>> + Send + 'static {
    let change = |pod, deleted| PodChange { pod, deleted };
    events.map(move |event| {
        event.map(|event| match event {
            Event::Applied(pod) => Event::Applied(change(pod, false)),
            Event::Deleted(pod) => Event::Deleted(change(pod, true)),
            Event::Restarted(pods) => {
                Event::Restarted(pods.into_iter().map(|pod| change(pod, false)).collect())
            }
        })
    })
}

/// The Services a pod change wakes: those selecting it now and those it belonged to.
pub fn services_of(
    services: &Store<Service>,
    memberships: &Memberships,
    change: &PodChange,
) -> Vec<ObjectKey> {
    // A deleted pod still carries its labels: the Services selecting them lose it.
    let all = services.state();
    let now = selecting(all.iter().map(|s| s.as_ref()), &change.pod);
    memberships.update(&ObjectKey::of(&change.pod), now, change.deleted)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use keel_client::k8s_openapi::api::core::v1::{
        Container, ContainerPort, PodCondition, PodIP, PodSpec, PodStatus, ServiceSpec,
    };
    use keel_client::k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
    use keel_client::k8s_openapi::chrono::Utc;

    pub fn service(name: &str, selector: &[(&str, &str)], ports: Vec<ServicePort>) -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                uid: Some(format!("{name}-uid")),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                selector: Some(
                    selector
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ports: Some(ports),
                cluster_ip: Some("10.0.0.1".into()),
                ..Default::default()
            }),
            status: None,
        }
    }

    pub fn port(name: &str, port: i32, target: Option<IntOrString>) -> ServicePort {
        ServicePort {
            name: Some(name.into()),
            port,
            target_port: target,
            protocol: Some("TCP".into()),
            ..Default::default()
        }
    }

    /// A running pod labelled app=web at `ip` on `node`, ready or not, with container port
    /// `http` = 8080.
    pub fn pod(name: &str, ip: &str, node: &str, ready: bool) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                uid: Some(format!("{name}-uid")),
                labels: Some([("app".to_string(), "web".to_string())].into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: Some(node.into()),
                containers: vec![Container {
                    name: "c".into(),
                    ports: Some(vec![ContainerPort {
                        name: Some("http".into()),
                        container_port: 8080,
                        protocol: Some("TCP".into()),
                        ..Default::default()
                    }]),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: Some("Running".into()),
                pod_ip: Some(ip.into()),
                pod_ips: Some(vec![PodIP { ip: ip.into() }]),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    last_transition_time: Some(Time(Utc::now())),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn a_service_selects_pods_of_its_namespace_with_every_selector_label() {
        let svc = service("web", &[("app", "web")], vec![]);
        assert!(selects(&svc, &pod("a", "10.1.0.1", "n", true)));
        let mut other = pod("b", "10.1.0.2", "n", true);
        other.metadata.namespace = Some("elsewhere".into());
        assert!(!selects(&svc, &other));
        let narrower = service("web", &[("app", "web"), ("tier", "db")], vec![]);
        assert!(!selects(&narrower, &pod("a", "10.1.0.1", "n", true)));
        let mut no_selector = svc.clone();
        if let Some(spec) = no_selector.spec.as_mut() {
            spec.selector = None;
        }
        assert!(!selects(&no_selector, &pod("a", "10.1.0.1", "n", true)));
    }

    #[test]
    fn named_target_ports_resolve_to_the_pods_container_port_of_that_protocol() {
        let p = pod("a", "10.1.0.1", "n", true);
        let named = port("web", 80, Some(IntOrString::String("http".into())));
        assert_eq!(find_port(&p, &named), Some(8080));
        let mut udp = named.clone();
        udp.protocol = Some("UDP".into());
        assert_eq!(find_port(&p, &udp), None, "no UDP port named http");
        let missing = port("web", 80, Some(IntOrString::String("grpc".into())));
        assert_eq!(find_port(&p, &missing), None);
        assert_eq!(
            find_port(&p, &port("web", 80, Some(IntOrString::Int(9090)))),
            Some(9090)
        );
        assert_eq!(find_port(&p, &port("web", 80, None)), Some(80));
    }

    #[test]
    fn pods_without_an_address_or_finished_for_good_are_not_endpoints() {
        let mut p = pod("a", "10.1.0.1", "n", true);
        assert!(should_be_in_endpoints(&p, false));
        p.metadata.deletion_timestamp = Some(Time(Utc::now()));
        assert!(!should_be_in_endpoints(&p, false));
        assert!(should_be_in_endpoints(&p, true));
        let mut never = pod("b", "10.1.0.2", "n", true);
        if let Some(spec) = never.spec.as_mut() {
            spec.restart_policy = Some("Never".into());
        }
        if let Some(status) = never.status.as_mut() {
            status.phase = Some("Failed".into());
        }
        assert!(!should_be_in_endpoints(&never, true));
        let mut no_ip = pod("c", "10.1.0.3", "n", true);
        no_ip.status = None;
        assert!(!should_be_in_endpoints(&no_ip, true));
    }

    #[test]
    fn a_pod_is_published_under_its_hostname_only_in_its_subdomains_service() {
        let svc = service("web", &[("app", "web")], vec![]);
        let mut p = pod("a", "10.1.0.1", "n", true);
        if let Some(spec) = p.spec.as_mut() {
            spec.hostname = Some("a-0".into());
            spec.subdomain = Some("web".into());
        }
        assert_eq!(hostname(&p, &svc).as_deref(), Some("a-0"));
        let other = service("api", &[("app", "web")], vec![]);
        assert_eq!(hostname(&p, &other), None);
    }

    #[test]
    fn a_pod_that_stops_matching_still_wakes_the_services_it_left() {
        let m = Memberships::new();
        let pod = ObjectKey::namespaced("ns", "a");
        let web = ObjectKey::namespaced("ns", "web");
        let api = ObjectKey::namespaced("ns", "api");
        assert_eq!(m.update(&pod, vec![web.clone()], false), vec![web.clone()]);
        assert_eq!(
            m.update(&pod, vec![api.clone()], false),
            vec![api.clone(), web.clone()]
        );
        assert_eq!(m.update(&pod, vec![], true), vec![api.clone()]);
        assert_eq!(
            m.update(&pod, vec![web.clone()], true),
            vec![web],
            "a pod deleted before its membership was seen still wakes its Services"
        );
        assert_eq!(m.update(&pod, vec![], false), Vec::<ObjectKey>::new());
    }
}
