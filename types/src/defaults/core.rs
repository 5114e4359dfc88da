//! Defaults of the core, RBAC, networking and discovery kinds other than pods: services,
//! secrets, namespaces, volumes and claims, nodes, endpoints, limit ranges, bindings and
//! network policies.

use k8s_openapi::api::core::v1::{
    Endpoints, LimitRange, Namespace, NamespaceSpec, NamespaceStatus, Node, PersistentVolume,
    PersistentVolumeClaim, PersistentVolumeClaimStatus, PersistentVolumeStatus, Secret, Service,
    ServiceSpec, SessionAffinityConfig,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::ByteString;

use super::pod::set_if_empty;

const RBAC_GROUP: &str = "rbac.authorization.k8s.io";
/// Three hours: how long ClientIP session affinity sticks by default.
const DEFAULT_CLIENT_IP_AFFINITY_SECONDS: i32 = 10800;

pub fn default_service(svc: &mut Service) {
    let spec = svc.spec.get_or_insert_with(ServiceSpec::default);
    set_if_empty(&mut spec.session_affinity, "None");
    match spec.session_affinity.as_deref() {
        Some("None") => spec.session_affinity_config = None,
        Some("ClientIP") => {
            let has_timeout = spec
                .session_affinity_config
                .as_ref()
                .and_then(|c| c.client_ip.as_ref())
                .and_then(|c| c.timeout_seconds)
                .is_some();
            if !has_timeout {
                spec.session_affinity_config = Some(SessionAffinityConfig {
                    client_ip: Some(k8s_openapi::api::core::v1::ClientIPConfig {
                        timeout_seconds: Some(DEFAULT_CLIENT_IP_AFFINITY_SECONDS),
                    }),
                });
            }
        }
        _ => {}
    }
    set_if_empty(&mut spec.type_, "ClusterIP");
    for port in spec.ports.iter_mut().flatten() {
        set_if_empty(&mut port.protocol, "TCP");
        let unset = match &port.target_port {
            None => true,
            Some(IntOrString::Int(0)) => true,
            Some(IntOrString::String(s)) => s.is_empty(),
            Some(IntOrString::Int(_)) => false,
        };
        if unset {
            port.target_port = Some(IntOrString::Int(port.port));
        }
    }
    let service_type = spec.type_.clone().unwrap_or_default();
    let externally_accessible = matches!(service_type.as_str(), "LoadBalancer" | "NodePort")
        || (service_type == "ClusterIP"
            && spec
                .external_ips
                .as_ref()
                .is_some_and(|ips| !ips.is_empty()));
    if externally_accessible {
        set_if_empty(&mut spec.external_traffic_policy, "Cluster");
    }
    if matches!(
        service_type.as_str(),
        "ClusterIP" | "NodePort" | "LoadBalancer"
    ) {
        spec.internal_traffic_policy
            .get_or_insert_with(|| "Cluster".into());
        // keel's clusters are single-stack: every service gets one family.
        spec.ip_family_policy
            .get_or_insert_with(|| "SingleStack".into());
    }
    if service_type == "LoadBalancer" {
        spec.allocate_load_balancer_node_ports.get_or_insert(true);
    }
}

/// `stringData` is write-only: its entries replace those of `data` and it is not kept.
pub fn default_secret(secret: &mut Secret) {
    set_if_empty(&mut secret.type_, "Opaque");
    if let Some(string_data) = secret.string_data.take() {
        let data = secret.data.get_or_insert_with(Default::default);
        for (key, value) in string_data {
            data.insert(key, ByteString(value.into_bytes()));
        }
    }
}

/// Every named namespace carries its name as the `kubernetes.io/metadata.name` label.
pub fn default_namespace(ns: &mut Namespace) {
    if let Some(name) = ns.metadata.name.clone().filter(|n| !n.is_empty()) {
        ns.metadata
            .labels
            .get_or_insert_with(Default::default)
            .insert("kubernetes.io/metadata.name".into(), name);
    }
    if let Some(status) = ns.status.as_mut() {
        set_if_empty(&mut status.phase, "Active");
    }
}

/// What a new namespace starts with, set only on create: it is Active, and carries the
/// `kubernetes` finalizer (which the namespace controller removes when it has emptied it, so
/// it must not be defaulted back on update).
pub fn prepare_namespace_for_create(ns: &mut Namespace) {
    ns.status = Some(NamespaceStatus {
        phase: Some("Active".into()),
        ..Default::default()
    });
    let spec = ns.spec.get_or_insert_with(NamespaceSpec::default);
    let finalizers = spec.finalizers.get_or_insert_with(Vec::new);
    if !finalizers.iter().any(|f| f == "kubernetes") {
        finalizers.push("kubernetes".into());
    }
}

pub fn default_pvc(claim: &mut PersistentVolumeClaim) {
    if let Some(spec) = claim.spec.as_mut() {
        spec.volume_mode.get_or_insert_with(|| "Filesystem".into());
    }
    let status = claim
        .status
        .get_or_insert_with(PersistentVolumeClaimStatus::default);
    set_if_empty(&mut status.phase, "Pending");
}

pub fn default_pv(pv: &mut PersistentVolume) {
    let status = pv
        .status
        .get_or_insert_with(PersistentVolumeStatus::default);
    set_if_empty(&mut status.phase, "Pending");
    let spec = pv.spec.get_or_insert_with(Default::default);
    set_if_empty(&mut spec.persistent_volume_reclaim_policy, "Retain");
    spec.volume_mode.get_or_insert_with(|| "Filesystem".into());
}

/// A node that reports capacity but not allocatable offers all of its capacity.
pub fn default_node(node: &mut Node) {
    if let Some(status) = node.status.as_mut() {
        if status.allocatable.is_none() {
            status.allocatable = status.capacity.clone();
        }
    }
}

pub fn default_endpoints(ep: &mut Endpoints) {
    for subset in ep.subsets.iter_mut().flatten() {
        for port in subset.ports.iter_mut().flatten() {
            set_if_empty(&mut port.protocol, "TCP");
        }
    }
}

pub fn default_endpoint_slice(slice: &mut EndpointSlice) {
    for port in slice.ports.iter_mut().flatten() {
        port.name.get_or_insert_with(String::new);
        port.protocol.get_or_insert_with(|| "TCP".into());
    }
}

/// Container limits default from max; default requests from the default limit, then min.
pub fn default_limit_range(lr: &mut LimitRange) {
    for item in lr.spec.iter_mut().flat_map(|s| s.limits.iter_mut()) {
        if item.type_ != "Container" {
            continue;
        }
        let default = item.default.get_or_insert_with(Default::default);
        for (k, v) in item.max.iter().flatten() {
            default.entry(k.clone()).or_insert_with(|| v.clone());
        }
        let default = default.clone();
        let request = item.default_request.get_or_insert_with(Default::default);
        for (k, v) in default.iter().chain(item.min.iter().flatten()) {
            request.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
}

/// Users and groups are RBAC subjects; service accounts are core ones, whose empty group
/// Kubernetes leaves out of the object (`omitempty`), so a re-applied manifest matches.
pub fn default_subjects(subjects: Option<&mut Vec<Subject>>, role_ref: &mut RoleRef) {
    for s in subjects.into_iter().flatten() {
        if s.api_group.as_deref().unwrap_or("").is_empty() {
            s.api_group = match s.kind.as_str() {
                "User" | "Group" => Some(RBAC_GROUP.into()),
                _ => None,
            };
        }
    }
    if role_ref.api_group.is_empty() {
        role_ref.api_group = RBAC_GROUP.into();
    }
}

/// A policy that names no types governs ingress, and egress too if it has egress rules.
pub fn default_network_policy(np: &mut NetworkPolicy) {
    let Some(spec) = np.spec.as_mut() else {
        return;
    };
    for rule in spec.ingress.iter_mut().flatten() {
        for port in rule.ports.iter_mut().flatten() {
            port.protocol.get_or_insert_with(|| "TCP".into());
        }
    }
    for rule in spec.egress.iter_mut().flatten() {
        for port in rule.ports.iter_mut().flatten() {
            port.protocol.get_or_insert_with(|| "TCP".into());
        }
    }
    if spec.policy_types.as_ref().is_none_or(|t| t.is_empty()) {
        let mut types = vec!["Ingress".to_string()];
        if spec.egress.as_ref().is_some_and(|e| !e.is_empty()) {
            types.push("Egress".into());
        }
        spec.policy_types = Some(types);
    }
}
