//! The Services the masters serve themselves, as every Kubernetes cluster has them: the
//! `kubernetes` Service in `default` (pods reach the API at the range's first cluster IP on port
//! 443) and, when the masters run the cluster DNS, `kube-dns` in kube-system at the range's
//! tenth address (kubeadm's 10.96.0.10) on port 53, UDP and TCP.
//!
//! Each master announces itself with a Lease in kube-system (`keel-apiserver-<member>`,
//! labelled `apiserver.kubernetes.io/identity=kube-apiserver`, its addresses in annotations) and
//! renews it every [`RENEW`]. Every master then writes each Service's Endpoints and
//! EndpointSlices from the Leases that have not expired, so a master that stops is dropped
//! within a lease duration, as kube-apiserver's lease endpoint reconciler does.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use crate::error::ApiError;
use crate::list::ListOptions;
use crate::meta;
use crate::server::{ApiServer, WriteOptions};
use crate::storage::Storage;

/// How often a master renews its Lease and rewrites the endpoints.
const RENEW: Duration = Duration::from_secs(10);
/// How long a Lease holds after its last renewal.
const LEASE_SECONDS: i64 = 15;
const IDENTITY_LABEL: &str = "apiserver.kubernetes.io/identity";
const ENDPOINT_ANNOTATION: &str = "keel.dev/apiserver-endpoint";
const DNS_ANNOTATION: &str = "keel.dev/dns-endpoint";

/// Who this master is and where pods reach it.
#[derive(Debug, Clone)]
pub struct KubernetesServiceConfig {
    /// The member's name, unique in the cluster.
    pub member: String,
    /// The address and port this master serves HTTPS on, as pods reach it.
    pub advertise: SocketAddr,
    /// Where this master serves the cluster DNS, if it does.
    pub dns: Option<SocketAddr>,
}

/// One of the masters' own Services: where it lives, its ports, and the Lease annotation
/// giving each master's endpoint for it.
struct MasterService {
    namespace: &'static str,
    name: &'static str,
    labels: Value,
    /// The cluster IP's index in the range.
    ip_index: u32,
    /// Name, port and protocol of each Service port; every one goes to the endpoint's port.
    ports: &'static [(&'static str, u16, &'static str)],
    annotation: &'static str,
}

const KUBERNETES: MasterService = MasterService {
    namespace: "default",
    name: "kubernetes",
    labels: Value::Null,
    ip_index: 0,
    ports: &[("https", 443, "TCP")],
    annotation: ENDPOINT_ANNOTATION,
};

fn kube_dns() -> MasterService {
    MasterService {
        namespace: "kube-system",
        name: "kube-dns",
        labels: json!({"k8s-app": "kube-dns", "kubernetes.io/name": "KubeDNS"}),
        ip_index: super::range::DNS_SERVICE_INDEX,
        ports: &[("dns", 53, "UDP"), ("dns-tcp", 53, "TCP")],
        annotation: DNS_ANNOTATION,
    }
}

/// Keeps this master's Lease, the `kubernetes` Service and its endpoints until `stop`.
pub async fn ensure_kubernetes_service<S: Storage>(
    api: &ApiServer<S>,
    config: KubernetesServiceConfig,
    stop: CancellationToken,
) {
    loop {
        if let Err(e) = reconcile(api, &config).await {
            tracing::debug!(error = %e, "keeping the kubernetes Service; retrying");
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(RENEW) => {}
        }
    }
}

async fn reconcile<S: Storage>(
    api: &ApiServer<S>,
    config: &KubernetesServiceConfig,
) -> Result<(), ApiError> {
    renew_lease(api, config).await?;
    let kubernetes = MasterService {
        labels: json!({"component": "apiserver", "provider": "kubernetes"}),
        ..KUBERNETES
    };
    let mut services = vec![(kubernetes, config.advertise.port())];
    if let Some(dns) = config.dns {
        services.push((kube_dns(), dns.port()));
    }
    for (service, target_port) in &services {
        ensure_service(api, service, *target_port).await?;
        let live = live_endpoints(api, service.annotation).await?;
        if live.is_empty() {
            continue;
        }
        write_endpoints(api, service, &live).await?;
        write_slices(api, service, &live).await?;
    }
    Ok(())
}

fn info(api_version: &str, kind: &str) -> Result<&'static keel_types::ResourceInfo, ApiError> {
    keel_types::kinds::by_kind(api_version, kind)
        .ok_or_else(|| ApiError::Internal(format!("{kind} is not a known kind")))
}

/// Creates `obj`, or replaces the stored one when it differs in what `same` compares.
async fn upsert<S: Storage>(
    api: &ApiServer<S>,
    info: &'static keel_types::ResourceInfo,
    namespace: &str,
    obj: Value,
    same: impl Fn(&Value, &Value) -> bool,
) -> Result<(), ApiError> {
    let name = meta::name(&obj).to_string();
    match api.get(info, Some(namespace), &name).await {
        Err(ApiError::NotFound { .. }) => {
            match api
                .create(info, Some(namespace), obj, &WriteOptions::default())
                .await
            {
                Ok(_) | Err(ApiError::AlreadyExists { .. }) => Ok(()),
                Err(e) => Err(e),
            }
        }
        Err(e) => Err(e),
        Ok(current) if same(&current, &obj) => Ok(()),
        Ok(current) => {
            let mut next = obj;
            next["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"].clone();
            match api
                .update(
                    info,
                    Some(namespace),
                    &name,
                    None,
                    next,
                    &WriteOptions::default(),
                )
                .await
            {
                // Another master wrote first: the next round compares again.
                Ok(_) | Err(ApiError::Conflict { .. }) => Ok(()),
                Err(e) => Err(e),
            }
        }
    }
}

async fn renew_lease<S: Storage>(
    api: &ApiServer<S>,
    config: &KubernetesServiceConfig,
) -> Result<(), ApiError> {
    let mut annotations = json!({ENDPOINT_ANNOTATION: config.advertise.to_string()});
    if let Some(dns) = config.dns {
        annotations[DNS_ANNOTATION] = json!(dns.to_string());
    }
    let lease = json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {
            "name": format!("keel-apiserver-{}", config.member),
            "namespace": "kube-system",
            "labels": {IDENTITY_LABEL: "kube-apiserver"},
            "annotations": annotations,
        },
        "spec": {
            "holderIdentity": config.member,
            "leaseDurationSeconds": LEASE_SECONDS,
            "renewTime": meta::now_micro(),
        },
    });
    upsert(
        api,
        info("coordination.k8s.io/v1", "Lease")?,
        "kube-system",
        lease,
        |_, _| false,
    )
    .await
}

async fn ensure_service<S: Storage>(
    api: &ApiServer<S>,
    service: &MasterService,
    target_port: u16,
) -> Result<(), ApiError> {
    let info = info("v1", "Service")?;
    match api.get(info, Some(service.namespace), service.name).await {
        Ok(_) => return Ok(()),
        Err(ApiError::NotFound { .. }) => {}
        Err(e) => return Err(e),
    }
    let Some(ip) = api.service_network.ips.nth(service.ip_index) else {
        return Err(ApiError::Internal(format!(
            "the service cluster IP range has no room for {}",
            service.name
        )));
    };
    let ports: Vec<Value> = service
        .ports
        .iter()
        .map(|(name, port, protocol)| {
            json!({"name": name, "port": port, "protocol": protocol, "targetPort": target_port})
        })
        .collect();
    let object = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {
            "name": service.name, "namespace": service.namespace,
            "labels": service.labels,
        },
        "spec": {
            "type": "ClusterIP",
            "clusterIP": ip.to_string(),
            "ports": ports,
            "sessionAffinity": "None",
        },
    });
    match api
        .create(
            info,
            Some(service.namespace),
            object,
            &WriteOptions::default(),
        )
        .await
    {
        Ok(_) | Err(ApiError::AlreadyExists { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

/// The endpoints of the masters whose Leases hold, sorted.
async fn live_endpoints<S: Storage>(
    api: &ApiServer<S>,
    annotation: &str,
) -> Result<Vec<SocketAddr>, ApiError> {
    let leases = api
        .list(
            info("coordination.k8s.io/v1", "Lease")?,
            Some("kube-system"),
            &ListOptions {
                label_selector: format!("{IDENTITY_LABEL}=kube-apiserver"),
                ..Default::default()
            },
        )
        .await?;
    let now = chrono::Utc::now();
    let mut live: Vec<SocketAddr> = leases["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|lease| {
            let renewed = lease
                .pointer("/spec/renewTime")
                .and_then(Value::as_str)
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok());
            let seconds = lease
                .pointer("/spec/leaseDurationSeconds")
                .and_then(Value::as_i64)
                .unwrap_or(LEASE_SECONDS);
            renewed.is_some_and(|t| t + chrono::Duration::seconds(seconds) > now)
        })
        .filter_map(|lease| {
            lease
                .pointer(&format!(
                    "/metadata/annotations/{}",
                    annotation.replace('/', "~1")
                ))
                .and_then(Value::as_str)
                .and_then(|a| a.parse().ok())
        })
        .collect();
    live.sort();
    live.dedup();
    Ok(live)
}

/// The masters grouped by port: one Endpoints subset (and one EndpointSlice) per port.
fn by_port(live: &[SocketAddr]) -> BTreeMap<u16, Vec<String>> {
    let mut groups: BTreeMap<u16, Vec<String>> = BTreeMap::new();
    for addr in live {
        groups
            .entry(addr.port())
            .or_default()
            .push(addr.ip().to_string());
    }
    groups
}

fn endpoint_ports(service: &MasterService, port: u16) -> Vec<Value> {
    service
        .ports
        .iter()
        .map(|(name, _, protocol)| json!({"name": name, "port": port, "protocol": protocol}))
        .collect()
}

async fn write_endpoints<S: Storage>(
    api: &ApiServer<S>,
    service: &MasterService,
    live: &[SocketAddr],
) -> Result<(), ApiError> {
    let subsets: Vec<Value> = by_port(live)
        .into_iter()
        .map(|(port, ips)| {
            json!({
                "addresses": ips.iter().map(|ip| json!({"ip": ip})).collect::<Vec<_>>(),
                "ports": endpoint_ports(service, port),
            })
        })
        .collect();
    let endpoints = json!({
        "apiVersion": "v1", "kind": "Endpoints",
        "metadata": {
            "name": service.name, "namespace": service.namespace,
            "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"},
        },
        "subsets": subsets,
    });
    upsert(
        api,
        info("v1", "Endpoints")?,
        service.namespace,
        endpoints,
        |current, wanted| current.get("subsets") == wanted.get("subsets"),
    )
    .await
}

/// One slice per port: `<name>` for the first, `<name>-<port>` for others (masters serving
/// on different ports, as on one host); slices for ports no master serves go.
async fn write_slices<S: Storage>(
    api: &ApiServer<S>,
    service: &MasterService,
    live: &[SocketAddr],
) -> Result<(), ApiError> {
    let info = info("discovery.k8s.io/v1", "EndpointSlice")?;
    let mut wanted = Vec::new();
    for (i, (port, ips)) in by_port(live).into_iter().enumerate() {
        let name = if i == 0 {
            service.name.to_string()
        } else {
            format!("{}-{port}", service.name)
        };
        wanted.push(name.clone());
        let slice = json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {
                "name": name, "namespace": service.namespace,
                "labels": {"kubernetes.io/service-name": service.name},
            },
            "addressType": "IPv4",
            "endpoints": ips.iter().map(|ip| json!({
                "addresses": [ip], "conditions": {"ready": true},
            })).collect::<Vec<_>>(),
            "ports": endpoint_ports(service, port),
        });
        upsert(api, info, service.namespace, slice, |current, wanted| {
            current.get("endpoints") == wanted.get("endpoints")
                && current.get("ports") == wanted.get("ports")
        })
        .await?;
    }
    let existing = api
        .list(
            info,
            Some(service.namespace),
            &ListOptions {
                label_selector: format!("kubernetes.io/service-name={}", service.name),
                ..Default::default()
            },
        )
        .await?;
    for slice in existing["items"].as_array().into_iter().flatten() {
        let name = meta::name(slice);
        if !wanted.iter().any(|w| w == name) {
            match api
                .delete(info, Some(service.namespace), name, &Default::default())
                .await
            {
                Ok(_) | Err(ApiError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}
