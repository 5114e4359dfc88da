//! The node agent's Node side end to end: a real keel, a private containerd, and the agent's
//! NodeAgent run in this process. The Node registers with kubelet's labels, the node labels,
//! taints and pod CIDR; reports capacity, allocatable, node info and images and is Ready; its
//! Lease is renewed and recreated when deleted; an agent restarted against the existing Node
//! reconciles it; a stopped containerd makes the Node NotReady; kubectl shows all of it.
//!
//! Needs root, containerd, runc, ctr, the CNI plugins and busybox-static
//! (`scripts/install-deps.sh`); without them the test says why and skips.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Event, Node, NodeCondition};
use keel_agent::image::{BUSYBOX_IMAGE, PAUSE_IMAGE};
use keel_agent::node::{config, parse_node_labels, parse_taints, NodeAgent, NodeConfig};
use keel_agent::testing::TestNode;
use keel_client::events::Recorder;
use keel_client::{Api, Client, DeleteParams, ListParams, Patch};
use keel_tests::kubectl::Kubectl;
use keel_tests::sim::until_some;
use keel_tests::{Cluster, Flavor};
use keel_types::k8s_openapi;
use serde_json::json;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

const NODE: &str = "keel-agent-node-e2e";
const WAIT: Duration = Duration::from_secs(60);

/// Polls `check` until it yields a value, or fails saying what was awaited.
async fn eventually<T, F, Fut>(what: &str, check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    until_some(what, WAIT, check).await
}

fn ready(node: &Node) -> Option<NodeCondition> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
        .cloned()
}

/// A node agent running in the background until stopped.
struct Running {
    stop: CancellationToken,
    task: JoinHandle<()>,
    node: tokio::sync::watch::Receiver<Option<Arc<Node>>>,
}

impl Running {
    fn start(
        config: NodeConfig,
        client: &Client,
        node: &TestNode,
        recorder: Arc<Recorder>,
    ) -> Self {
        let agent = NodeAgent::new(config, client.clone(), node.client.clone(), recorder);
        let watched = agent.node();
        let stop = CancellationToken::new();
        let task = tokio::spawn(agent.run(stop.clone()));
        Running {
            stop,
            task,
            node: watched,
        }
    }

    async fn stop(self) -> Result<()> {
        self.stop.cancel();
        self.task.await.context("the node agent panicked")
    }
}

fn node_config(root: &std::path::Path) -> Result<NodeConfig> {
    let ip = config::default_node_ip().unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let mut config = NodeConfig::new(NODE, ip);
    config.labels = parse_node_labels("pool=blue,node.kubernetes.io/tier=e2e")?;
    config.taints = parse_taints("dedicated=db:NoSchedule")?;
    config.pod_cidr = Some("10.244.7.0/24".into());
    config.root_dir = root.to_path_buf();
    // Short periods so that the test sees several renewals and updates.
    config.lease_duration = Duration::from_secs(4);
    config.status_update_frequency = Duration::from_secs(1);
    config.runtime_check_period = Duration::from_millis(500);
    config.sandbox_image = PAUSE_IMAGE.into();
    config.validate()?;
    Ok(config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_registers_heartbeats_reports_its_status_and_goes_not_ready_without_containerd(
) -> Result<()> {
    let Some(mut test_node) = TestNode::start(5).await else {
        return Ok(());
    };
    let cluster = Cluster::start(Flavor::Keel, 1).await?;
    let client = cluster.client()?;
    let tasks = TaskTracker::new();
    let recorder =
        Arc::new(Recorder::new(client.clone(), NODE.into(), tasks.clone()).with_host(NODE.into()));
    let root = tempfile::tempdir()?;
    let config = node_config(root.path())?;
    let nodes: Api<Node> = Api::all(client.clone());
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");

    let mut agent = Running::start(config.clone(), &client, &test_node, recorder.clone());

    // Registered, Ready, and reporting what the host and the runtime have.
    let node = eventually("the node to be Ready", || async {
        let node = nodes.get(NODE).await.ok()?;
        (ready(&node)?.status == "True").then_some(node)
    })
    .await?;
    let condition = ready(&node).context("Ready")?;
    assert_eq!(condition.reason.as_deref(), Some("KubeletReady"));
    assert_eq!(
        condition.message.as_deref(),
        Some("kubelet is posting ready status")
    );
    let labels = node.metadata.labels.clone().unwrap_or_default();
    assert_eq!(labels["kubernetes.io/hostname"], NODE);
    assert_eq!(labels["kubernetes.io/os"], "linux");
    assert_eq!(labels["beta.kubernetes.io/os"], "linux");
    assert!(["amd64", "arm64"].contains(&labels["kubernetes.io/arch"].as_str()));
    assert_eq!(
        labels["beta.kubernetes.io/arch"],
        labels["kubernetes.io/arch"]
    );
    assert_eq!(labels["pool"], "blue");
    assert_eq!(labels["node.kubernetes.io/tier"], "e2e");
    let spec = node.spec.clone().unwrap_or_default();
    assert_eq!(spec.pod_cidr.as_deref(), Some("10.244.7.0/24"));
    let taints = spec.taints.unwrap_or_default();
    assert!(
        taints.iter().any(|t| t.key == "dedicated"
            && t.value.as_deref() == Some("db")
            && t.effect == "NoSchedule"),
        "{taints:?}"
    );
    let status = node.status.clone().unwrap_or_default();
    let capacity = status.capacity.unwrap_or_default();
    let allocatable = status.allocatable.unwrap_or_default();
    for resource in [
        "cpu",
        "memory",
        "ephemeral-storage",
        "pods",
        "hugepages-2Mi",
    ] {
        assert!(capacity.contains_key(resource), "capacity lacks {resource}");
        assert!(
            allocatable.contains_key(resource),
            "allocatable lacks {resource}"
        );
    }
    assert_eq!(capacity["pods"].0, "110");
    assert_ne!(capacity["memory"], allocatable["memory"], "100Mi held back");
    let info = status.node_info.unwrap_or_default();
    assert!(
        info.container_runtime_version
            .starts_with("containerd://1.6"),
        "{}",
        info.container_runtime_version
    );
    assert!(info.kubelet_version.starts_with("v1.32.0-keel."));
    assert_eq!(info.operating_system, "linux");
    assert!(!info.boot_id.is_empty() && !info.kernel_version.is_empty());
    let addresses = status.addresses.unwrap_or_default();
    assert_eq!(addresses[0].type_, "InternalIP");
    assert_eq!(addresses[0].address, config.node_ip.to_string());
    assert_eq!(
        status
            .daemon_endpoints
            .and_then(|d| d.kubelet_endpoint)
            .map(|e| e.port),
        Some(10250)
    );
    let images = status.images.unwrap_or_default();
    assert!(
        images
            .iter()
            .any(|i| i.names.iter().flatten().any(|n| n == BUSYBOX_IMAGE)),
        "{images:?}"
    );

    // The pod side sees the node as posted.
    let seen = agent
        .node
        .borrow()
        .clone()
        .context("the node is published")?;
    assert!(seen
        .status
        .as_ref()
        .and_then(|s| s.allocatable.as_ref())
        .is_some());

    // The Lease is held by the node, owned by it, and renewed.
    let lease = eventually("the node Lease", || async { leases.get(NODE).await.ok() }).await?;
    let spec = lease.spec.clone().unwrap_or_default();
    assert_eq!(spec.holder_identity.as_deref(), Some(NODE));
    assert_eq!(spec.lease_duration_seconds, Some(4));
    let owner = &lease.metadata.owner_references.clone().unwrap_or_default()[0];
    assert_eq!(owner.kind, "Node");
    assert_eq!(Some(&owner.uid), node.metadata.uid.as_ref());
    let first_renewal = spec.renew_time.context("renewTime")?;
    eventually("the Lease to be renewed", || async {
        let renewed = leases.get(NODE).await.ok()?.spec?.renew_time?;
        (renewed.0 > first_renewal.0).then_some(())
    })
    .await?;

    // A deleted Lease is written again.
    let old_uid = lease.metadata.uid.clone();
    leases.delete(NODE, &DeleteParams::default()).await?;
    eventually("the Lease to be recreated", || async {
        let lease = leases.get(NODE).await.ok()?;
        (lease.metadata.uid != old_uid).then_some(())
    })
    .await?;

    // kubectl shows the node Ready, with its address and runtime.
    let kubectl = Kubectl::for_cluster(&cluster).await?;
    let wide = kubectl.ok(&["get", "nodes", "-o", "wide"]);
    let line = wide
        .lines()
        .find(|l| l.starts_with(NODE))
        .with_context(|| format!("no {NODE} in:\n{wide}"))?;
    assert!(line.contains(" Ready "), "{wide}");
    assert!(line.contains(&config.node_ip.to_string()), "{wide}");
    assert!(line.contains("containerd://1.6"), "{wide}");

    // The node's readiness was recorded as kubelet records it.
    eventually("a NodeReady event", || async {
        let events: Api<Event> = Api::namespaced(client.clone(), "default");
        let list = events.list(&ListParams::default()).await.ok()?;
        list.items
            .iter()
            .any(|e| {
                e.reason.as_deref() == Some("NodeReady")
                    && e.involved_object.name.as_deref() == Some(NODE)
            })
            .then_some(())
    })
    .await?;

    // A restarted agent finds its Node, with labels it owns changed meanwhile, and puts
    // them back rather than failing or registering another.
    agent.stop().await?;
    let tampered = json!({"metadata": {"labels": {
        "kubernetes.io/hostname": "someone-else",
        "kubernetes.io/arch": null,
    }}});
    nodes.patch(NODE, &Patch::Merge(tampered)).await?;
    agent = Running::start(config.clone(), &client, &test_node, recorder.clone());
    let reconciled = eventually("the node's labels to be reconciled", || async {
        let node = nodes.get(NODE).await.ok()?;
        let labels = node.metadata.labels.clone()?;
        (labels.get("kubernetes.io/hostname").map(String::as_str) == Some(NODE)
            && labels.contains_key("kubernetes.io/arch"))
        .then_some(node)
    })
    .await?;
    assert_eq!(reconciled.metadata.uid, node.metadata.uid, "the same Node");
    assert_eq!(
        reconciled.spec.and_then(|s| s.pod_cidr).as_deref(),
        Some("10.244.7.0/24")
    );
    let all = nodes.list(&ListParams::default()).await?;
    assert_eq!(
        all.items
            .iter()
            .filter(|n| n.metadata.name.as_deref() == Some(NODE))
            .count(),
        1
    );

    // Without containerd the node is not ready, saying why.
    let containerd = test_node.containerd.take().context("containerd")?;
    containerd.stop().await?;
    let not_ready = eventually("the node to be NotReady", || async {
        let node = nodes.get(NODE).await.ok()?;
        let condition = ready(&node)?;
        (condition.status == "False").then_some(condition)
    })
    .await?;
    assert_eq!(not_ready.reason.as_deref(), Some("KubeletNotReady"));
    assert_eq!(
        not_ready.message.as_deref(),
        Some("container runtime is down")
    );

    agent.stop().await?;
    tasks.close();
    tasks.wait().await;
    Ok(())
}
