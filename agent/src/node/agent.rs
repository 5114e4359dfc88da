//! [`NodeAgent`]: the Node's side of the agent. It registers the Node, then until stopped
//! renews its Lease, posts its status and collects unused images, and publishes the Node as
//! last read or written for the pod side (allocatable, addresses).

use std::sync::Arc;
use std::time::Instant;

use keel_client::events::{Recorder, NORMAL};
use keel_client::{Api, Client, Patch};
use keel_types::k8s_openapi::api::core::v1::Node;
use keel_types::k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use keel_types::k8s_openapi::chrono::Utc;
use serde_json::json;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::conditions::RuntimeHealth;
use super::config::NodeConfig;
use super::host::{HostFacts, HostUsage};
use super::image_gc::ImageGc;
use super::{lease, node_reference, register, status};
use crate::RuntimeClient;

const COMPONENT: &str = "kubelet";

/// The Node's side of the agent, for one node.
pub struct NodeAgent {
    config: NodeConfig,
    client: Client,
    runtime: RuntimeClient,
    recorder: Arc<Recorder>,
    node: watch::Sender<Option<Arc<Node>>>,
}

impl NodeAgent {
    /// An agent for the node `config` describes, talking to the API through `client` and to
    /// the container runtime through `runtime`, writing Events through `recorder`.
    pub fn new(
        config: NodeConfig,
        client: Client,
        runtime: RuntimeClient,
        recorder: Arc<Recorder>,
    ) -> Self {
        let (node, _) = watch::channel(None);
        Self {
            config,
            client,
            runtime,
            recorder,
            node,
        }
    }

    /// The Node as last registered, read or posted: `None` until registered. Pods read their
    /// node's allocatable (resourceFieldRef) and InternalIP (status.hostIP) from it.
    pub fn node(&self) -> watch::Receiver<Option<Arc<Node>>> {
        self.node.subscribe()
    }

    /// Registers the Node, then renews its Lease, posts its status and collects images until
    /// `stop`. Never fails: what goes wrong is logged (or an Event) and retried.
    pub async fn run(self, stop: CancellationToken) {
        let Some(registered) = register::register(&self.client, &self.config, &stop).await else {
            return;
        };
        let uid = registered.metadata.uid.clone().unwrap_or_default();
        self.node.send_replace(Some(Arc::new(registered)));
        let lease = lease::run(
            self.client.clone(),
            self.config.node_name.clone(),
            uid,
            self.config.lease_duration,
            self.config.lease_renew_interval(),
            stop.clone(),
        );
        let mut reporter = StatusReporter {
            agent: &self,
            facts: HostFacts::read(),
            health: RuntimeHealth::Unchecked,
            runtime_version: None,
            last_post: None,
        };
        let gc = ImageGc::new(self.runtime.clone(), self.config.clone());
        tokio::join!(
            lease,
            reporter.run(stop.clone()),
            gc.run(&self.recorder, stop.clone())
        );
    }
}

/// The status loop's state.
struct StatusReporter<'a> {
    agent: &'a NodeAgent,
    facts: HostFacts,
    health: RuntimeHealth,
    runtime_version: Option<String>,
    last_post: Option<Instant>,
}

impl StatusReporter<'_> {
    /// Checks the runtime every check period and updates the status every update period, at
    /// once when the runtime's readiness changed.
    async fn run(&mut self, stop: CancellationToken) {
        let config = &self.agent.config;
        let mut next_check = tokio::time::Instant::now();
        let mut next_update = tokio::time::Instant::now();
        loop {
            let wake = next_check.min(next_update);
            if stop
                .run_until_cancelled(tokio::time::sleep_until(wake))
                .await
                .is_none()
            {
                return;
            }
            let now = tokio::time::Instant::now();
            if now >= next_check {
                let was_ready = self.health.is_ready();
                self.check_runtime().await;
                next_check = now + config.runtime_check_period;
                if self.health.is_ready() != was_ready {
                    next_update = now;
                }
            }
            if now >= next_update {
                self.update().await;
                next_update = now + config.status_update_frequency;
            }
        }
    }

    async fn check_runtime(&mut self) {
        let runtime = &self.agent.runtime;
        self.health = match runtime.status().await {
            Ok(reply) => RuntimeHealth::from_status(&reply),
            Err(error) => {
                tracing::warn!(%error, "the container runtime does not answer");
                RuntimeHealth::Down
            }
        };
        if let Ok(version) = runtime.version().await {
            self.runtime_version = Some(format!(
                "{}://{}",
                version.runtime_name, version.runtime_version
            ));
        }
    }

    /// One status update: read the Node, compute its status, post it if due.
    async fn update(&mut self) {
        let agent = self.agent;
        let name = &agent.config.node_name;
        let nodes: Api<Node> = Api::all(agent.client.clone());
        let current = match nodes.get(name).await {
            Ok(node) => node,
            Err(error) => {
                tracing::warn!(node = %name, %error, "reading the node for its status failed");
                return;
            }
        };
        let images = match agent.runtime.list_images().await {
            Ok(images) => Some(images),
            Err(error) => {
                tracing::debug!(%error, "listing images for the node status");
                None
            }
        };
        let previous = current.status.clone().unwrap_or_default();
        let inputs = status::Inputs {
            config: &agent.config,
            facts: &self.facts,
            usage: HostUsage::read(&agent.config.root_dir),
            runtime_errors: self.health.errors(),
            runtime_version: self.runtime_version.clone(),
            images,
            now: Time(Utc::now()),
        };
        let (next, events) = status::compute(&previous, inputs);
        let since = self.last_post.map(|at| at.elapsed());
        let changed = status::changed(&previous, &next);
        if !status::should_post(changed, since, agent.config.status_report_frequency) {
            agent.node.send_replace(Some(Arc::new(current)));
            return;
        }
        let patch = Patch::Merge(json!({ "status": next }));
        match nodes.patch_status(name, &patch).await {
            Ok(posted) => {
                self.last_post = Some(Instant::now());
                agent.node.send_replace(Some(Arc::new(posted)));
                for event in events {
                    agent.recorder.event(
                        COMPONENT,
                        node_reference(name),
                        NORMAL,
                        event,
                        format!("Node {name} status is now: {event}"),
                    );
                }
            }
            Err(error) => {
                tracing::warn!(node = %name, %error, "posting the node status failed; retrying");
            }
        }
    }
}
