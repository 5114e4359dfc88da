//! How a Pod becomes CRI configuration, as kubelet translates it: the sandbox (metadata,
//! hostname, DNS, host ports, namespaces, the pod-level security context) and each container
//! (image, command, environment, mounts, log path, cgroup limits, security context), with
//! kubelet's labels so that what the runtime holds can be found again by pod and container.
//!
//! Pure functions over the Pod and what the agent resolved for it (environment and mounts);
//! nothing here talks to the runtime or the API.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use keel_types::k8s_openapi::api::core::v1::{Container, Pod, PodSecurityContext, SecurityContext};
use keel_types::Quantity;
use sha2::{Digest, Sha256};

use crate::cri::{
    Capability, ContainerConfig, ContainerMetadata, DnsConfig, ImageSpec, Int64Value, KeyValue,
    LinuxContainerConfig, LinuxContainerResources, LinuxContainerSecurityContext,
    LinuxPodSandboxConfig, LinuxSandboxSecurityContext, Mount, NamespaceMode, NamespaceOption,
    PodSandboxConfig, PodSandboxMetadata, PortMapping, Protocol,
};
use crate::labels;

/// The CFS period kubelet sets, in microseconds.
const CPU_PERIOD: i64 = 100_000;
/// cgroup v1's smallest cpu.shares, which BestEffort containers get.
const MIN_SHARES: i64 = 2;
/// kubelet's oom_score_adj for Guaranteed and BestEffort containers.
const GUARANTEED_OOM_SCORE_ADJ: i64 = -997;
const BEST_EFFORT_OOM_SCORE_ADJ: i64 = 1000;
/// Linux's longest host name.
const MAX_HOSTNAME: usize = 63;

/// Whether any of the pod's containers (init, app or ephemeral) asks to be privileged.
fn has_privileged_container(pod: &Pod) -> bool {
    let Some(spec) = pod.spec.as_ref() else {
        return false;
    };
    let privileged =
        |security: Option<&SecurityContext>| security.and_then(|s| s.privileged).unwrap_or(false);
    spec.init_containers
        .iter()
        .flatten()
        .chain(&spec.containers)
        .any(|c| privileged(c.security_context.as_ref()))
        || spec
            .ephemeral_containers
            .iter()
            .flatten()
            .any(|c| privileged(c.security_context.as_ref()))
}

/// What the node contributes to every pod's configuration.
#[derive(Debug, Clone)]
pub struct NodeSettings {
    /// The agent's own directory (`--root-dir`), holding pods' files.
    pub root_dir: PathBuf,
    /// Where pods' log directories go (kubelet's /var/log/pods).
    pub logs_dir: PathBuf,
    /// `--cluster-dns`: the cluster DNS servers; empty when the cluster has none.
    pub cluster_dns: Vec<String>,
    /// `--cluster-domain`.
    pub cluster_domain: String,
    /// The host's own resolver search domains, appended after the cluster's as kubelet does.
    pub host_searches: Vec<String>,
    /// The lowest oom_score_adj the runtime can give a container here: the agent's own
    /// score, since without CAP_SYS_RESOURCE no process may go below it.
    pub oom_score_adj_floor: i64,
    /// The node's memory capacity in bytes, which Burstable containers' scores scale by.
    pub memory_capacity: i64,
}

/// The sandbox of `pod`, as RunPodSandbox and every CreateContainer in it take it.
pub fn sandbox_config(pod: &Pod, node: &NodeSettings, attempt: u32) -> PodSandboxConfig {
    let meta = &pod.metadata;
    let spec = pod.spec.clone().unwrap_or_default();
    let (namespace, name, uid) = identity(pod);
    let host_network = spec.host_network.unwrap_or(false);
    let mut labels_map: HashMap<String, String> = meta
        .labels
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    labels_map.extend(pod_labels(pod));
    labels_map.insert(labels::CONTAINER_TYPE.into(), "podsandbox".into());
    let security = spec.security_context.clone().unwrap_or_default();
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: name.clone(),
            uid: uid.clone(),
            namespace: namespace.clone(),
            attempt,
        }),
        hostname: if host_network {
            String::new()
        } else {
            hostname(pod)
        },
        log_directory: labels::pod_log_dir(&node.logs_dir, &namespace, &name, &uid)
            .display()
            .to_string(),
        dns_config: dns_config(pod, node),
        port_mappings: port_mappings(pod),
        labels: labels_map,
        annotations: meta
            .annotations
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect(),
        linux: Some(LinuxPodSandboxConfig {
            security_context: Some(LinuxSandboxSecurityContext {
                namespace_options: Some(namespaces(pod)),
                run_as_user: security.run_as_user.map(|value| Int64Value { value }),
                run_as_group: security.run_as_group.map(|value| Int64Value { value }),
                supplemental_groups: supplemental_groups(&security),
                // As kubelet: the runtime lets a container be privileged only in a sandbox
                // that is.
                privileged: has_privileged_container(pod),
                ..Default::default()
            }),
            sysctls: security
                .sysctls
                .unwrap_or_default()
                .into_iter()
                .map(|s| (s.name, s.value))
                .collect(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The namespace, name and uid of `pod` (empty where missing).
pub fn identity(pod: &Pod) -> (String, String, String) {
    let meta = &pod.metadata;
    (
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
        meta.uid.clone().unwrap_or_default(),
    )
}

/// kubelet's labels naming the pod, on its sandbox and every container.
fn pod_labels(pod: &Pod) -> [(String, String); 4] {
    let (namespace, name, uid) = identity(pod);
    [
        (labels::POD_NAME.into(), name),
        (labels::POD_NAMESPACE.into(), namespace),
        (labels::POD_UID.into(), uid),
        (labels::MANAGED_BY.into(), "true".into()),
    ]
}

/// The pod's host name: spec.hostname, else its name, cut to what Linux allows (kubelet
/// trims a trailing `-` or `.` left by the cut).
pub fn hostname(pod: &Pod) -> String {
    let spec = pod.spec.as_ref();
    let name = spec
        .and_then(|s| s.hostname.clone())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| pod.metadata.name.clone().unwrap_or_default());
    if name.len() <= MAX_HOSTNAME {
        return name;
    }
    name.chars()
        .take(MAX_HOSTNAME)
        .collect::<String>()
        .trim_end_matches(['-', '.'])
        .to_owned()
}

/// The resolver configuration as kubelet derives it from dnsPolicy and dnsConfig. `None`
/// leaves the runtime to give the pod the host's own resolv.conf (policy Default, host
/// network, or a cluster without DNS).
pub fn dns_config(pod: &Pod, node: &NodeSettings) -> Option<DnsConfig> {
    let spec = pod.spec.as_ref()?;
    let host_network = spec.host_network.unwrap_or(false);
    let policy = spec.dns_policy.as_deref().unwrap_or("ClusterFirst");
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let cluster = match policy {
        "ClusterFirstWithHostNet" => true,
        "ClusterFirst" => !host_network,
        _ => false,
    };
    let mut config = if policy == "None" {
        DnsConfig::default()
    } else if cluster && !node.cluster_dns.is_empty() {
        let domain = node.cluster_domain.trim_end_matches('.');
        let mut searches = vec![
            format!("{namespace}.svc.{domain}"),
            format!("svc.{domain}"),
            domain.to_owned(),
        ];
        searches.extend(node.host_searches.iter().cloned());
        DnsConfig {
            servers: node.cluster_dns.clone(),
            searches,
            options: vec!["ndots:5".into()],
        }
    } else if spec.dns_config.is_none() {
        return None;
    } else {
        DnsConfig::default()
    };
    if let Some(extra) = &spec.dns_config {
        config
            .servers
            .extend(extra.nameservers.clone().unwrap_or_default());
        config
            .searches
            .extend(extra.searches.clone().unwrap_or_default());
        // An option named again replaces the earlier one, as kubelet merges them.
        for option in extra.options.clone().unwrap_or_default() {
            let Some(name) = option.name else { continue };
            config
                .options
                .retain(|o| o.split(':').next() != Some(name.as_str()));
            config.options.push(match option.value {
                Some(value) => format!("{name}:{value}"),
                None => name,
            });
        }
    }
    dedup(&mut config.searches);
    dedup(&mut config.servers);
    Some(config)
}

fn dedup(items: &mut Vec<String>) {
    let mut seen = std::collections::HashSet::new();
    items.retain(|item| seen.insert(item.clone()));
}

/// The host ports the pod asks for, one mapping per container port that names one.
fn port_mappings(pod: &Pod) -> Vec<PortMapping> {
    let spec = pod.spec.as_ref();
    spec.map(|s| s.containers.iter())
        .into_iter()
        .flatten()
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|port| {
            let host_port = port.host_port.filter(|p| *p > 0)?;
            let protocol = match port.protocol.as_deref() {
                Some("UDP") => Protocol::Udp,
                Some("SCTP") => Protocol::Sctp,
                _ => Protocol::Tcp,
            };
            Some(PortMapping {
                protocol: protocol as i32,
                container_port: port.container_port,
                host_port,
                host_ip: port.host_ip.clone().unwrap_or_default(),
            })
        })
        .collect()
}

/// kubelet's namespaces: the sandbox's network (or the host's), IPC shared in the pod (or the
/// host's), PID per container unless the pod shares one (or uses the host's).
pub fn namespaces(pod: &Pod) -> NamespaceOption {
    let spec = pod.spec.clone().unwrap_or_default();
    let mode = |host: Option<bool>, otherwise: NamespaceMode| {
        if host.unwrap_or(false) {
            NamespaceMode::Node as i32
        } else {
            otherwise as i32
        }
    };
    let pid = if spec.share_process_namespace.unwrap_or(false) {
        NamespaceMode::Pod
    } else {
        NamespaceMode::Container
    };
    NamespaceOption {
        network: mode(spec.host_network, NamespaceMode::Pod),
        pid: mode(spec.host_pid, pid),
        ipc: mode(spec.host_ipc, NamespaceMode::Pod),
        ..Default::default()
    }
}

fn supplemental_groups(security: &PodSecurityContext) -> Vec<i64> {
    let mut groups = security.supplemental_groups.clone().unwrap_or_default();
    if let Some(fs_group) = security.fs_group {
        groups.push(fs_group);
    }
    groups
}

/// What the agent resolved for one container before creating it.
#[derive(Debug, Clone, Default)]
pub struct Resolved {
    /// The image reference the runtime holds for the container's image (its id).
    pub image_ref: String,
    pub envs: Vec<KeyValue>,
    pub mounts: Vec<Mount>,
}

/// The configuration of instance `restart_count` of `container` in `pod`.
pub fn container_config(
    pod: &Pod,
    container: &Container,
    restart_count: u32,
    resolved: Resolved,
    node: &NodeSettings,
) -> ContainerConfig {
    let mut labels_map: HashMap<String, String> = pod_labels(pod).into_iter().collect();
    labels_map.insert(labels::CONTAINER_NAME.into(), container.name.clone());
    let grace = pod
        .spec
        .as_ref()
        .and_then(|s| s.termination_grace_period_seconds)
        .unwrap_or(30);
    let annotations = HashMap::from([
        (labels::RESTART_COUNT.to_owned(), restart_count.to_string()),
        (labels::CONTAINER_HASH.to_owned(), spec_hash(container)),
        (
            labels::CONTAINER_IMAGE.to_owned(),
            container.image.clone().unwrap_or_default(),
        ),
        (
            labels::TERMINATION_MESSAGE_POLICY.to_owned(),
            container
                .termination_message_policy
                .clone()
                .unwrap_or_else(|| "File".into()),
        ),
        (
            labels::TERMINATION_GRACE_PERIOD.to_owned(),
            grace.to_string(),
        ),
        (
            labels::TERMINATION_MESSAGE_PATH.to_owned(),
            container
                .termination_message_path
                .clone()
                .unwrap_or_else(|| "/dev/termination-log".into()),
        ),
    ]);
    let env: BTreeMap<&str, &str> = resolved
        .envs
        .iter()
        .map(|kv| (kv.key.as_str(), kv.value.as_str()))
        .collect();
    let expand = |items: &Option<Vec<String>>| -> Vec<String> {
        items
            .iter()
            .flatten()
            .map(|item| expand_vars(item, &env))
            .collect()
    };
    let command = expand(&container.command);
    let args = expand(&container.args);
    let image = if resolved.image_ref.is_empty() {
        container.image.clone().unwrap_or_default()
    } else {
        resolved.image_ref.clone()
    };
    ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: container.name.clone(),
            attempt: restart_count,
        }),
        image: Some(ImageSpec {
            image,
            user_specified_image: container.image.clone().unwrap_or_default(),
            ..Default::default()
        }),
        command,
        args,
        working_dir: container.working_dir.clone().unwrap_or_default(),
        envs: resolved.envs,
        mounts: resolved.mounts,
        labels: labels_map,
        annotations,
        log_path: labels::container_log_path(&container.name, restart_count)
            .display()
            .to_string(),
        stdin: container.stdin.unwrap_or(false),
        stdin_once: container.stdin_once.unwrap_or(false),
        tty: container.tty.unwrap_or(false),
        linux: Some(LinuxContainerConfig {
            resources: Some(resources(pod, container, node)),
            security_context: Some(container_security(pod, container)),
        }),
        ..Default::default()
    }
}

/// A digest of the container's spec: a container whose spec no longer matches it is replaced.
pub fn spec_hash(container: &Container) -> String {
    let bytes = serde_json::to_vec(container).unwrap_or_default();
    let digest = Sha256::digest(&bytes);
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// `$(VAR)` references replaced by the variable's value, as Kubernetes expands command, args
/// and env values: `$$` is a literal `$`, and a reference to an unknown variable stays as
/// written.
pub fn expand_vars(input: &str, env: &BTreeMap<&str, &str>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('(') {
            match body.find(')') {
                Some(end) => {
                    let name = &body[..end];
                    match env.get(name) {
                        Some(value) => out.push_str(value),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &body[end + 1..];
                }
                None => {
                    out.push_str("$(");
                    rest = body;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

fn quantity(container: &Container, limits: bool, resource: &str) -> Option<Quantity> {
    let resources = container.resources.as_ref()?;
    let map = if limits {
        resources.limits.as_ref()
    } else {
        resources.requests.as_ref()
    }?;
    Quantity::parse(&map.get(resource)?.0).ok()
}

/// The pod's QoS class, as Kubernetes computes it from its containers' requests and limits.
pub fn qos_class(pod: &Pod) -> &'static str {
    let Some(spec) = pod.spec.as_ref() else {
        return "BestEffort";
    };
    let containers: Vec<&Container> = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .collect();
    let mut any = false;
    let mut guaranteed = true;
    for container in &containers {
        for resource in ["cpu", "memory"] {
            let request = quantity(container, false, resource);
            let limit = quantity(container, true, resource);
            if request.as_ref().is_some_and(|q| !q.is_zero())
                || limit.as_ref().is_some_and(|q| !q.is_zero())
            {
                any = true;
            }
            match (request, limit) {
                (_, None) => guaranteed = false,
                (Some(r), Some(l)) if r.milli_value() != l.milli_value() => guaranteed = false,
                _ => {}
            }
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

/// The container's cgroup settings: cpu shares from its request, a CFS quota from its limit,
/// its memory limit, and kubelet's oom_score_adj for its QoS class, never below what the
/// runtime can set here.
fn resources(pod: &Pod, container: &Container, node: &NodeSettings) -> LinuxContainerResources {
    let cpu_request = quantity(container, false, "cpu").map(|q| q.milli_value());
    let cpu_limit = quantity(container, true, "cpu").map(|q| q.milli_value());
    let memory_limit = quantity(container, true, "memory").map(|q| q.value());
    let memory_request = quantity(container, false, "memory").map(|q| q.value());
    let cpu_shares = cpu_request
        .or(cpu_limit)
        .map_or(MIN_SHARES, |m| (m * 1024 / 1000).max(MIN_SHARES));
    let cpu_quota = cpu_limit.map_or(0, |m| (m * CPU_PERIOD / 1000).max(1000));
    let oom = match qos_class(pod) {
        "Guaranteed" => GUARANTEED_OOM_SCORE_ADJ,
        "BestEffort" => BEST_EFFORT_OOM_SCORE_ADJ,
        _ => {
            let request = memory_request.unwrap_or(0);
            let capacity = node.memory_capacity.max(1);
            // kubelet's formula: the larger a share of the node a container asked for, the
            // less likely it is picked; kept within (2, 999) to stay above Guaranteed and
            // below BestEffort.
            (1000 - (1000 * request) / capacity).clamp(2, 999)
        }
    };
    LinuxContainerResources {
        cpu_period: if cpu_quota > 0 { CPU_PERIOD } else { 0 },
        cpu_quota,
        cpu_shares,
        memory_limit_in_bytes: memory_limit.unwrap_or(0),
        oom_score_adj: oom.max(node.oom_score_adj_floor),
        ..Default::default()
    }
}

fn container_security(pod: &Pod, container: &Container) -> LinuxContainerSecurityContext {
    let pod_security = pod
        .spec
        .as_ref()
        .and_then(|s| s.security_context.clone())
        .unwrap_or_default();
    let own: SecurityContext = container.security_context.clone().unwrap_or_default();
    let capabilities = own.capabilities.as_ref().map(|c| Capability {
        add_capabilities: c.add.clone().unwrap_or_default(),
        drop_capabilities: c.drop.clone().unwrap_or_default(),
        ..Default::default()
    });
    let privileged = own.privileged.unwrap_or(false);
    LinuxContainerSecurityContext {
        capabilities,
        privileged,
        namespace_options: Some(namespaces(pod)),
        run_as_user: own
            .run_as_user
            .or(pod_security.run_as_user)
            .map(|value| Int64Value { value }),
        run_as_group: own
            .run_as_group
            .or(pod_security.run_as_group)
            .map(|value| Int64Value { value }),
        readonly_rootfs: own.read_only_root_filesystem.unwrap_or(false),
        supplemental_groups: supplemental_groups(&pod_security),
        // allowPrivilegeEscalation: false means no_new_privs; privileged containers may
        // always escalate.
        no_new_privs: !privileged && own.allow_privilege_escalation == Some(false),
        ..Default::default()
    }
}

/// The host's resolver search list, from a resolv.conf's text.
pub fn resolv_searches(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            matches!(words.next(), Some("search" | "domain")).then(|| {
                words
                    .map(|w| w.trim_end_matches('.').to_owned())
                    .collect::<Vec<_>>()
            })
        })
        .next_back()
        .unwrap_or_default()
}

/// The absolute path of a container instance's log file.
pub fn log_file(node: &NodeSettings, pod: &Pod, container: &str, restart_count: u32) -> PathBuf {
    let (namespace, name, uid) = identity(pod);
    labels::pod_log_dir(&node.logs_dir, &namespace, &name, &uid)
        .join(labels::container_log_path(container, restart_count))
}

#[cfg(test)]
#[path = "configs_tests.rs"]
mod tests;
