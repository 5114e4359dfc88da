//! The Node's status as kubelet posts it, computed from what the host, the runtime and the
//! previous status say: capacity, allocatable, conditions, addresses, daemon endpoints,
//! nodeInfo and images; and kubelet's rule for when to post it.

use std::time::Duration;

use keel_types::k8s_openapi::api::core::v1::{
    ContainerImage, DaemonEndpoint, NodeAddress, NodeDaemonEndpoints, NodeStatus, NodeSystemInfo,
};
use keel_types::k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::conditions::{self, Pressure};
use super::config::NodeConfig;
use super::host::{go_arch, HostFacts, HostUsage};
use super::resources;
use crate::cri::Image;

/// kubelet's `--node-status-max-images` default.
pub const MAX_IMAGES_IN_STATUS: usize = 50;
/// kubelet's `maxNamesPerImageInNodeStatus`.
pub const MAX_NAMES_PER_IMAGE: usize = 5;

/// The Kubernetes release whose kubelet this agent stands in for.
pub const KUBERNETES_VERSION: &str = "v1.32.0";

/// The version the Node reports as kubeletVersion and kubeProxyVersion: the Kubernetes
/// release the agent follows, with keel's version as a pre-release part (`v1.32.0-keel.0.2.0`),
/// so that tools that parse it as semver get the release they expect.
pub fn agent_version() -> String {
    format!("{KUBERNETES_VERSION}-keel.{}", env!("CARGO_PKG_VERSION"))
}

/// Everything one status update is computed from.
#[derive(Debug, Clone)]
pub struct Inputs<'a> {
    pub config: &'a NodeConfig,
    pub facts: &'a HostFacts,
    pub usage: HostUsage,
    /// Why the runtime keeps the node from being Ready (empty when it does not).
    pub runtime_errors: Vec<String>,
    /// `<type>://<version>` of the runtime, when it answered `Version`.
    pub runtime_version: Option<String>,
    /// The runtime's images, when it answered `ListImages` (else the previous list stays).
    pub images: Option<Vec<Image>>,
    pub now: Time,
}

/// The status to post, from the Node's `previous` status, and the node events to record.
pub fn compute(previous: &NodeStatus, inputs: Inputs<'_>) -> (NodeStatus, Vec<&'static str>) {
    let config = inputs.config;
    let facts = inputs.facts;
    let (conditions, events) = conditions::update(
        previous.conditions.as_deref().unwrap_or_default(),
        Pressure::of(&inputs.usage),
        &inputs.runtime_errors,
        &inputs.now,
    );
    let previous_runtime = previous
        .node_info
        .as_ref()
        .map(|info| info.container_runtime_version.clone());
    let runtime_version = inputs
        .runtime_version
        .or(previous_runtime)
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "Unknown://Unknown".to_owned());
    let version = agent_version();
    let node_info = NodeSystemInfo {
        machine_id: facts.machine_id.clone(),
        system_uuid: facts.system_uuid.clone(),
        boot_id: facts.boot_id.clone(),
        kernel_version: facts.kernel_version.clone(),
        os_image: facts.os_image.clone(),
        container_runtime_version: runtime_version,
        kubelet_version: version.clone(),
        kube_proxy_version: version,
        operating_system: std::env::consts::OS.to_owned(),
        architecture: go_arch(std::env::consts::ARCH).to_owned(),
    };
    let images = match inputs.images {
        Some(list) => Some(status_images(list)),
        None => previous.images.clone(),
    };
    let status = NodeStatus {
        capacity: Some(resources::capacity(
            facts,
            inputs.usage.nodefs,
            config.max_pods,
        )),
        allocatable: Some(resources::allocatable(
            facts,
            inputs.usage.nodefs,
            config.max_pods,
        )),
        conditions: Some(conditions),
        addresses: Some(vec![
            NodeAddress {
                type_: "InternalIP".into(),
                address: config.node_ip.to_string(),
            },
            NodeAddress {
                type_: "Hostname".into(),
                address: config.node_name.clone(),
            },
        ]),
        daemon_endpoints: Some(NodeDaemonEndpoints {
            kubelet_endpoint: Some(DaemonEndpoint {
                port: i32::from(config.port),
            }),
        }),
        node_info: Some(node_info),
        images,
        ..previous.clone()
    };
    (status, events)
}

/// The images as the status lists them: largest first, at most
/// [`MAX_IMAGES_IN_STATUS`], each named by its digests then its tags (at most
/// [`MAX_NAMES_PER_IMAGE`] names).
pub fn status_images(mut images: Vec<Image>) -> Vec<ContainerImage> {
    images.sort_by(|a, b| b.size.cmp(&a.size).then_with(|| a.id.cmp(&b.id)));
    images
        .into_iter()
        .take(MAX_IMAGES_IN_STATUS)
        .map(|image| {
            let mut names = image.repo_digests;
            names.extend(image.repo_tags);
            names.truncate(MAX_NAMES_PER_IMAGE);
            ContainerImage {
                names: Some(names),
                size_bytes: i64::try_from(image.size).ok(),
            }
        })
        .collect()
}

/// Whether `new` differs from `old` in anything but heartbeat times (kubelet's
/// `nodeStatusHasChanged`).
pub fn changed(old: &NodeStatus, new: &NodeStatus) -> bool {
    let strip = |status: &NodeStatus| {
        let mut status = status.clone();
        for condition in status.conditions.iter_mut().flatten() {
            condition.last_heartbeat_time = None;
        }
        status
    };
    strip(old) != strip(new)
}

/// Whether to post a status: when it changed, or when `since_last_post` (none before the
/// first post) reached the report frequency.
pub fn should_post(
    changed: bool,
    since_last_post: Option<Duration>,
    report_frequency: Duration,
) -> bool {
    changed || since_last_post.is_none_or(|elapsed| elapsed >= report_frequency)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::host::FsStats;
    use keel_types::k8s_openapi::chrono::{TimeZone, Utc};

    fn at(secs: i64) -> Time {
        Time(Utc.timestamp_opt(1_700_000_000 + secs, 0).unwrap())
    }

    fn image(id: &str, size: u64, tags: &[&str], digests: &[&str]) -> Image {
        Image {
            id: id.into(),
            size,
            repo_tags: tags.iter().map(|s| s.to_string()).collect(),
            repo_digests: digests.iter().map(|s| s.to_string()).collect(),
            ..Image::default()
        }
    }

    fn inputs<'a>(config: &'a NodeConfig, facts: &'a HostFacts, now: Time) -> Inputs<'a> {
        Inputs {
            config,
            facts,
            usage: HostUsage {
                memory_available_bytes: 1 << 30,
                nodefs: FsStats {
                    capacity_bytes: 10 << 30,
                    available_bytes: 5 << 30,
                },
                pid_max: 4_194_304,
                pids_running: 300,
            },
            runtime_errors: vec![],
            runtime_version: Some("containerd://1.6.24".into()),
            images: Some(vec![image("sha256:a", 10, &["keel.local/busybox:1"], &[])]),
            now,
        }
    }

    #[test]
    fn images_are_listed_largest_first_digests_then_tags_at_most_fifty() {
        let mut list: Vec<Image> = (0..60)
            .map(|i| image(&format!("sha256:{i}"), i, &[], &[]))
            .collect();
        list.push(image(
            "sha256:big",
            1000,
            &["a:1", "a:2", "a:3", "a:4"],
            &["a@sha256:x", "a@sha256:y"],
        ));
        let images = status_images(list);
        assert_eq!(images.len(), 50);
        assert_eq!(images[0].size_bytes, Some(1000));
        assert_eq!(
            images[0].names.as_deref().unwrap(),
            ["a@sha256:x", "a@sha256:y", "a:1", "a:2", "a:3"]
        );
        assert_eq!(images[1].size_bytes, Some(59));
    }

    #[test]
    fn the_status_carries_addresses_endpoint_and_node_info() {
        let config = NodeConfig::new("node-a", "10.9.8.7".parse().unwrap());
        let facts = HostFacts {
            cpus: 2,
            memory_bytes: 4 << 30,
            kernel_version: "6.1.0".into(),
            os_image: "Debian".into(),
            ..HostFacts::default()
        };
        let (status, _) = compute(&NodeStatus::default(), inputs(&config, &facts, at(0)));
        let addresses = status.addresses.unwrap();
        assert_eq!(addresses[0].type_, "InternalIP");
        assert_eq!(addresses[0].address, "10.9.8.7");
        assert_eq!(
            (addresses[1].type_.as_str(), addresses[1].address.as_str()),
            ("Hostname", "node-a")
        );
        assert_eq!(
            status
                .daemon_endpoints
                .unwrap()
                .kubelet_endpoint
                .unwrap()
                .port,
            10250
        );
        let info = status.node_info.unwrap();
        assert_eq!(info.container_runtime_version, "containerd://1.6.24");
        assert_eq!(info.kubelet_version, agent_version());
        assert!(info.kubelet_version.starts_with("v1.32.0-keel."));
        assert_eq!(info.operating_system, "linux");
        assert_eq!(info.os_image, "Debian");
        assert_eq!(status.capacity.unwrap()["cpu"].0, "2");
        assert_eq!(
            status.images.unwrap()[0].names.as_deref().unwrap(),
            ["keel.local/busybox:1"]
        );
    }

    #[test]
    fn only_heartbeats_moving_is_no_change_and_the_report_frequency_forces_a_post() {
        let config = NodeConfig::new("node-a", "10.9.8.7".parse().unwrap());
        let facts = HostFacts::default();
        let (first, _) = compute(&NodeStatus::default(), inputs(&config, &facts, at(0)));
        let (second, _) = compute(&first, inputs(&config, &facts, at(10)));
        assert!(!changed(&first, &second));
        let mut gone = inputs(&config, &facts, at(20));
        gone.runtime_errors = vec!["container runtime is down".into()];
        let (third, _) = compute(&second, gone);
        assert!(changed(&second, &third));

        let five_minutes = Duration::from_secs(300);
        assert!(should_post(false, None, five_minutes));
        assert!(!should_post(
            false,
            Some(Duration::from_secs(10)),
            five_minutes
        ));
        assert!(should_post(
            true,
            Some(Duration::from_secs(10)),
            five_minutes
        ));
        assert!(should_post(false, Some(five_minutes), five_minutes));
    }

    #[test]
    fn an_unanswered_image_list_or_version_keeps_what_was_posted() {
        let config = NodeConfig::new("node-a", "10.9.8.7".parse().unwrap());
        let facts = HostFacts::default();
        let (first, _) = compute(&NodeStatus::default(), inputs(&config, &facts, at(0)));
        let mut blind = inputs(&config, &facts, at(10));
        blind.images = None;
        blind.runtime_version = None;
        let (second, _) = compute(&first, blind);
        assert_eq!(second.images, first.images);
        assert_eq!(
            second.node_info.unwrap().container_runtime_version,
            "containerd://1.6.24"
        );
    }
}
