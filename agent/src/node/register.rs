//! Registering the Node as kubelet does: the object it creates (its default labels, the
//! `--node-labels`, the `--register-with-taints`, the pod CIDR), and, when a Node of that name
//! exists already (the agent restarted), bringing the labels kubelet owns up to date instead
//! of failing. Retried with kubelet's backoff until the API answers.

use std::collections::BTreeMap;
use std::time::Duration;

use keel_client::{Api, Client};
use keel_types::k8s_openapi::api::core::v1::{Node, NodeSpec, NodeStatus};
use keel_types::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use tokio_util::sync::CancellationToken;

use super::config::NodeConfig;
use super::host::go_arch;

pub const LABEL_HOSTNAME: &str = "kubernetes.io/hostname";
pub const LABEL_OS: &str = "kubernetes.io/os";
pub const LABEL_ARCH: &str = "kubernetes.io/arch";
pub const LABEL_OS_BETA: &str = "beta.kubernetes.io/os";
pub const LABEL_ARCH_BETA: &str = "beta.kubernetes.io/arch";

/// The labels kubelet owns on its Node and keeps as it would set them: set when its value
/// differs, removed when it would not set them. Zone, region and instance type come from a
/// cloud provider, which this agent has none of.
pub const DEFAULT_LABELS: [&str; 11] = [
    LABEL_HOSTNAME,
    "topology.kubernetes.io/zone",
    "topology.kubernetes.io/region",
    "failure-domain.beta.kubernetes.io/zone",
    "failure-domain.beta.kubernetes.io/region",
    "node.kubernetes.io/instance-type",
    "beta.kubernetes.io/instance-type",
    LABEL_OS,
    LABEL_ARCH,
    LABEL_OS_BETA,
    LABEL_ARCH_BETA,
];

/// The annotation saying volumes of this node are attached and detached by the controller
/// manager, which kubelet sets by default (`--enable-controller-attach-detach`).
pub const CONTROLLER_MANAGED_ATTACH_DETACH: &str =
    "volumes.kubernetes.io/controller-managed-attach-detach";

/// The Node the agent registers (without status; that is posted by the status loop).
pub fn initial_node(config: &NodeConfig) -> Node {
    let os = std::env::consts::OS;
    let arch = go_arch(std::env::consts::ARCH);
    let mut labels: BTreeMap<String, String> = [
        (LABEL_HOSTNAME, config.node_name.as_str()),
        (LABEL_OS, os),
        (LABEL_ARCH, arch),
        (LABEL_OS_BETA, os),
        (LABEL_ARCH_BETA, arch),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_owned(), value.to_owned()))
    .collect();
    // As kubelet's, `--node-labels` override the defaults (it logs that they do).
    labels.extend(config.labels.clone());
    let annotations = BTreeMap::from([(
        CONTROLLER_MANAGED_ATTACH_DETACH.to_owned(),
        "true".to_owned(),
    )]);
    Node {
        metadata: ObjectMeta {
            name: Some(config.node_name.clone()),
            labels: Some(labels),
            annotations: Some(annotations),
            ..ObjectMeta::default()
        },
        spec: Some(NodeSpec {
            pod_cidr: config.pod_cidr.clone(),
            pod_cidrs: config.pod_cidr.clone().map(|cidr| vec![cidr]),
            taints: (!config.taints.is_empty()).then(|| config.taints.clone()),
            ..NodeSpec::default()
        }),
        status: Some(NodeStatus::default()),
    }
}

/// The existing Node brought in line with the one the agent would register, or `None` when
/// it already is: kubelet's default labels updated (the `--node-labels` and taints are only
/// applied at registration, as kubelet applies them), its attach-detach annotation set, and
/// the pod CIDR set if it has none (one it has is kept).
pub fn reconcile(existing: &Node, initial: &Node) -> Option<Node> {
    let mut node = existing.clone();
    let wanted = initial.metadata.labels.clone().unwrap_or_default();
    let labels = node.metadata.labels.get_or_insert_with(BTreeMap::new);
    for key in DEFAULT_LABELS {
        match wanted.get(key) {
            Some(value) if labels.get(key) != Some(value) => {
                labels.insert(key.to_owned(), value.clone());
            }
            None => {
                labels.remove(key);
            }
            Some(_) => {}
        }
    }
    let annotations = node.metadata.annotations.get_or_insert_with(BTreeMap::new);
    if annotations
        .get(CONTROLLER_MANAGED_ATTACH_DETACH)
        .map(String::as_str)
        != Some("true")
    {
        annotations.insert(
            CONTROLLER_MANAGED_ATTACH_DETACH.to_owned(),
            "true".to_owned(),
        );
    }
    let spec = node.spec.get_or_insert_with(NodeSpec::default);
    let wanted_spec = initial.spec.clone().unwrap_or_default();
    if spec.pod_cidr.as_deref().unwrap_or_default().is_empty() && wanted_spec.pod_cidr.is_some() {
        spec.pod_cidr = wanted_spec.pod_cidr;
        spec.pod_cidrs = wanted_spec.pod_cidrs;
    }
    let same = node.metadata.labels == existing.metadata.labels
        && node.metadata.annotations == existing.metadata.annotations
        && node.spec == existing.spec;
    (!same).then_some(node)
}

/// kubelet's registration backoff: 100 ms doubling up to 7 s.
pub fn backoff(attempt: u32) -> Duration {
    let doubled = Duration::from_millis(100).saturating_mul(2u32.saturating_pow(attempt.min(16)));
    doubled.min(Duration::from_secs(7))
}

/// Registers the Node (or reconciles the one that exists) and returns it as stored, retrying
/// until it succeeds; `None` if `stop` came first.
pub async fn register(
    client: &Client,
    config: &NodeConfig,
    stop: &CancellationToken,
) -> Option<Node> {
    let nodes: Api<Node> = Api::all(client.clone());
    let initial = initial_node(config);
    let mut attempt = 0u32;
    loop {
        match try_register(&nodes, &initial).await {
            Ok(node) => {
                tracing::info!(node = %config.node_name, "node registered");
                return Some(node);
            }
            Err(error) => {
                tracing::warn!(node = %config.node_name, %error, "registering the node failed; retrying");
            }
        }
        let delay = backoff(attempt);
        attempt = attempt.saturating_add(1);
        stop.run_until_cancelled(tokio::time::sleep(delay)).await?;
    }
}

async fn try_register(nodes: &Api<Node>, initial: &Node) -> Result<Node, keel_client::Error> {
    let name = initial.metadata.name.clone().unwrap_or_default();
    match nodes.create(initial).await {
        Ok(node) => return Ok(node),
        Err(error) if error.is_conflict() => {}
        Err(error) => return Err(error),
    }
    let existing = nodes.get(&name).await?;
    match reconcile(&existing, initial) {
        // Conditional on the version read: a conflict retries from a fresh read.
        Some(updated) => nodes.replace(&name, &updated).await,
        None => Ok(existing),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::config::{parse_node_labels, parse_taints};

    fn config() -> NodeConfig {
        let mut config = NodeConfig::new("node-a", "10.0.0.5".parse().unwrap());
        config.labels = parse_node_labels("pool=blue").unwrap();
        config.taints = parse_taints("dedicated=db:NoSchedule").unwrap();
        config.pod_cidr = Some("10.244.1.0/24".into());
        config
    }

    #[test]
    fn the_node_carries_kubelets_labels_the_node_labels_taints_and_pod_cidr() {
        let node = initial_node(&config());
        let labels = node.metadata.labels.unwrap();
        assert_eq!(labels[LABEL_HOSTNAME], "node-a");
        assert_eq!(labels[LABEL_OS], "linux");
        assert_eq!(labels[LABEL_OS_BETA], "linux");
        assert_eq!(labels[LABEL_ARCH], go_arch(std::env::consts::ARCH));
        assert_eq!(labels[LABEL_ARCH_BETA], labels[LABEL_ARCH]);
        assert_eq!(labels["pool"], "blue");
        let spec = node.spec.unwrap();
        assert_eq!(spec.pod_cidr.as_deref(), Some("10.244.1.0/24"));
        assert_eq!(spec.pod_cidrs.unwrap(), ["10.244.1.0/24"]);
        let taints = spec.taints.unwrap();
        assert_eq!(taints[0].key, "dedicated");
        assert_eq!(taints[0].effect, "NoSchedule");
        assert_eq!(
            node.metadata.annotations.unwrap()[CONTROLLER_MANAGED_ATTACH_DETACH],
            "true"
        );
    }

    #[test]
    fn node_labels_override_the_default_labels() {
        let mut config = config();
        config.labels = parse_node_labels("kubernetes.io/hostname=alias").unwrap();
        let labels = initial_node(&config).metadata.labels.unwrap();
        assert_eq!(labels[LABEL_HOSTNAME], "alias");
    }

    #[test]
    fn an_existing_node_as_registered_needs_no_update() {
        let initial = initial_node(&config());
        let mut existing = initial.clone();
        existing.metadata.resource_version = Some("5".into());
        existing
            .metadata
            .labels
            .as_mut()
            .unwrap()
            .insert("added-by-someone".into(), "x".into());
        assert_eq!(reconcile(&existing, &initial), None);
    }

    #[test]
    fn an_existing_node_gets_kubelets_labels_back_and_keeps_its_pod_cidr() {
        let initial = initial_node(&config());
        let mut existing = initial.clone();
        let labels = existing.metadata.labels.as_mut().unwrap();
        labels.insert(LABEL_HOSTNAME.into(), "old-name".into());
        labels.insert("topology.kubernetes.io/zone".into(), "stale".into());
        labels.remove(LABEL_ARCH);
        labels.remove("pool");
        existing.metadata.annotations = None;
        let spec = existing.spec.as_mut().unwrap();
        spec.pod_cidr = Some("10.244.9.0/24".into());
        spec.pod_cidrs = Some(vec!["10.244.9.0/24".into()]);

        let updated = reconcile(&existing, &initial).expect("an update");
        let labels = updated.metadata.labels.unwrap();
        assert_eq!(labels[LABEL_HOSTNAME], "node-a");
        assert!(labels.contains_key(LABEL_ARCH));
        assert!(!labels.contains_key("topology.kubernetes.io/zone"));
        assert!(
            !labels.contains_key("pool"),
            "--node-labels apply at registration only"
        );
        assert_eq!(
            updated.spec.unwrap().pod_cidr.as_deref(),
            Some("10.244.9.0/24")
        );
        assert!(updated.metadata.annotations.is_some());
    }

    #[test]
    fn an_existing_node_without_a_pod_cidr_gets_the_configured_one() {
        let initial = initial_node(&config());
        let mut existing = initial.clone();
        existing.spec = Some(NodeSpec::default());
        let updated = reconcile(&existing, &initial).expect("an update");
        assert_eq!(
            updated.spec.unwrap().pod_cidr.as_deref(),
            Some("10.244.1.0/24")
        );
    }

    #[test]
    fn registration_backs_off_from_a_tenth_of_a_second_to_seven() {
        assert_eq!(backoff(0), Duration::from_millis(100));
        assert_eq!(backoff(1), Duration::from_millis(200));
        assert_eq!(backoff(10), Duration::from_secs(7));
        assert_eq!(backoff(u32::MAX), Duration::from_secs(7));
    }
}
